"""Opening mosaics (through the menu's code path) and catalogs as glue datasets."""

import numpy as np
from astropy.io import fits
from astropy.table import Table
from conftest import (band_items, menu_action, open_through_menu, region_on, truth_catalog,
                      wait_for)
from qtpy import QtWidgets

from glue_starclf.glue.data import (CATALOG, MOSAIC, RESULTS, band_siblings, catalog_factory,
                                    kind_of, mosaic_factory, mosaic_from_data)
from glue_starclf.io.bands import BANDS
from glue_starclf.qt.common import MESSAGES
from glue_starclf.qt.dialogs import OpenMosaicDialog
from glue_starclf.qt.image_viewer import StarClusterImageViewer


def test_open_mosaic_through_the_menu(app, qtbot, mock_files, mock_field, tmp_path):
    cat_path, cat = truth_catalog(mock_files, tmp_path)
    menu_action(app, "Open HST mosaic…").trigger()
    dialog = app.findChildren(OpenMosaicDialog)[-1]
    assert dialog.isVisible()
    unknown = dialog.set_files([mock_files[b] for b in BANDS])  # placed by FILTER keyword
    assert unknown == []
    dialog.catalog_edit.setText(str(cat_path))
    dialog.buttons.button(dialog.buttons.Ok).click()
    dc = app.data_collection
    mosaic = next(d for d in dc if kind_of(d) == MOSAIC)
    assert [c.label for c in mosaic.main_components] == list(BANDS)
    assert mosaic.shape == mock_field.images.shape[1:]
    np.testing.assert_array_equal(mosaic["F555W"], mock_field.images[3].astype(np.float32))
    assert mosaic.coords.has_celestial  # WCS kept
    ra, dec = mosaic.coords.pixel_to_world_values(10.0, 20.0)
    ra0, dec0 = mock_field.wcs.all_pix2world(10.0, 20.0, 0)
    assert abs(ra - ra0) < 1e-9 and abs(dec - dec0) < 1e-9
    catalog = next(d for d in dc if kind_of(d) == CATALOG)
    np.testing.assert_allclose(catalog["x"], cat["x"])
    # The catalog is linked: the mosaic's world coordinates of its rows are its ra/dec.
    ra_img = catalog[mosaic.world_component_ids[1]]
    np.testing.assert_allclose(ra_img, cat["ra"], atol=1e-6)
    viewer = app.viewers[0][0]
    assert isinstance(viewer, StarClusterImageViewer)
    images = [la for la in viewer.layers if la.layer is mosaic]
    assert [la.state.attribute.label for la in images] == ["F814W", "F438W", "F336W"]
    assert viewer.state.color_mode == "One color per layer"
    assert any(la.layer is catalog for la in viewer.layers)  # markers
    assert "Opened mosaic" in MESSAGES[-1][1]


def test_dialog_needs_a_band(app, qtbot):
    dialog = OpenMosaicDialog()
    qtbot.addWidget(dialog)
    dialog.open()
    dialog.accept()
    assert dialog.isVisible() and "at least one band" in dialog.error.text()


def test_mosaic_data_factory_finds_the_other_bands(mock_files):
    assert band_siblings(mock_files["F336W"]) == band_items(mock_files)
    data = mosaic_factory(str(mock_files["F336W"]))
    assert [c.label for c in data.main_components] == list(BANDS)
    mosaic = mosaic_from_data(data)
    assert mosaic.bands == BANDS and str(mosaic.paths["F814W"]) == str(mock_files["F814W"])


def _legus_tab(path, rows):
    """A LEGUS-like .tab: 34 numeric columns, x/y 1-based in columns 2-3."""
    lines = []
    for i, (x, y, ra, dec, cls) in enumerate(rows, 1):
        vals = [i, x + 1, y + 1, ra, dec] + [20.0, 0.05] * 5 + [1.5] + [1e7, 0, 0, 1e4, 0, 0,
                                                                     0.1, 0, 0] + [0] * 7
        vals += [5, cls]
        assert len(vals) == 34
        lines.append(" ".join(f"{v}" for v in vals))
    path.write_text("\n".join(lines) + "\n")


def test_legus_and_phangs_catalogs_open_with_0_based_pixels(tmp_path):
    from glue.core.data_factories import find_factory, load_data
    tab = tmp_path / "hlsp_legus_hst_wfc3_ngc628-c_multiband_v1_padagb-mwext-avgapcor.tab"
    _legus_tab(tab, [(10.0, 20.0, 24.1, 15.7, 1), (30.5, 40.25, 24.2, 15.8, 3)])
    assert find_factory(str(tab)) is catalog_factory
    data = load_data(str(tab))
    assert kind_of(data) == CATALOG
    np.testing.assert_allclose(data["x"], [10.0, 30.5])  # file 11, 31.5: 1-based
    np.testing.assert_allclose(data["y"], [20.0, 40.25])
    assert list(data["class"]) == [1, 3]
    assert "1-based" in data.meta["pixel_convention"]
    t = Table({"ID_PHANGS_CLUSTERS": [7, 8], "PHANGS_X": [5.0, 6.0], "PHANGS_Y": [7.0, 8.0],
               "PHANGS_RA": [1.0, 1.1], "PHANGS_DEC": [2.0, 2.1]})
    fpath = tmp_path / "hlsp_phangs-hst_ngc1566_cluster_catalog.fits"
    fits.BinTableHDU(t).writeto(fpath)
    assert find_factory(str(fpath)) is catalog_factory
    data = load_data(str(fpath))
    np.testing.assert_allclose(data["x"], [5.0, 6.0])
    assert list(data["id"]) == [7, 8]


def test_same_mosaic_twice_gets_its_own_label_and_results(app, qtbot, mock_files, models,
                                                          tmp_path):
    """Issue 16, bug 7: results follow the dataset, not its label."""
    from glue_starclf.glue.results import mosaic_of, results_for
    open_through_menu(app, mock_files)
    open_through_menu(app, mock_files)
    first, second = [d for d in app.data_collection if kind_of(d) == MOSAIC]
    assert first.label != second.label
    viewer = next(v for tab in app.viewers for v in tab
                  if v.state.reference_data is second)
    region_on(viewer, 40, 280, 40, 280)
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    assert second.label in dialog.findChild(QtWidgets.QLabel).text()
    dialog.models.set_folder(models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    res = next(d for d in app.data_collection if kind_of(d) == RESULTS)
    assert results_for(app.data_collection, second) is res
    assert results_for(app.data_collection, first) is None
    assert mosaic_of(app.data_collection, res) is second


def _fills(viewer, tab):
    """The viewer's window covers its tab's area (within a few pixels)."""
    area = tab.viewport().size()
    geo = viewer.parent().geometry()
    return (geo.x() <= 2 and geo.y() <= 2 and geo.width() >= area.width() - 4
            and geo.height() >= area.height() - 4)


def test_image_viewer_opens_filling_its_tab(app, qtbot, mock_files):
    app.show()
    open_through_menu(app, mock_files)
    viewer = app.viewers[0][0]
    assert _fills(viewer, app.tab(0))
    open_through_menu(app, mock_files)  # the tab is taken: a new one, filled
    assert app.tab_count == 2 and _fills(app.viewers[1][0], app.tab(1))


def _image_pixels(viewer, shape):
    """RGB [0, 1] of the viewer's canvas over the mosaic (inset by 10 %)."""
    canvas = viewer.figure.canvas
    canvas.draw()
    buf = np.asarray(canvas.buffer_rgba())[..., :3] / 255.0
    ny, nx = shape
    (x0, y0), (x1, y1) = viewer.axes.transData.transform([(0.1 * nx, 0.1 * ny),
                                                          (0.9 * nx, 0.9 * ny)])
    h = buf.shape[0]
    return buf[int(h - y1):int(h - y0), int(x0):int(x1)].reshape(-1, 3)


def test_rgb_composite_looks_like_the_preview(app, qtbot, mock_files, mock_field):
    """Issue 16: the colour balance of `starclf simulate --preview`, no green cast."""
    from glue_starclf.sim.preview import rgb_image
    open_through_menu(app, mock_files)
    viewer = app.viewers[0][0]
    viewer.state.reset_limits()
    shown = _image_pixels(viewer, mock_field.images.shape[1:])
    ny, nx = mock_field.images.shape[1:]
    preview = rgb_image(mock_field.images)[int(0.1 * ny):int(0.9 * ny),
                                           int(0.1 * nx):int(0.9 * nx)].reshape(-1, 3)
    # the brighter pixels (sources): their mean colour, as fractions of R + G + B
    def colour(rgb):
        bright = rgb[rgb.sum(axis=1) > np.percentile(rgb.sum(axis=1), 90)]
        mean = bright.mean(axis=0)
        return mean / mean.sum()
    print("glue", colour(shown), "preview", colour(preview))
    np.testing.assert_allclose(colour(shown), colour(preview), atol=0.06)


def test_a_file_in_the_wrong_band_row_is_refused(app, qtbot, mock_files):
    """Issue 16, bug 3 in glue: the F814W file in the F555W row, a one-line message."""
    menu_action(app, "Open HST mosaic…").trigger()
    dialog = app.findChildren(OpenMosaicDialog)[-1]
    dialog.band_edits["F555W"].setText(str(mock_files["F814W"]))
    dialog.band_edits["F814W"].setText(str(mock_files["F555W"]))
    dialog.buttons.button(dialog.buttons.Ok).click()
    level, text = MESSAGES[-1]
    assert level == "error" and len(text.splitlines()) == 1
    assert str(mock_files["F814W"]) in text and "F555W" in text and "F814W" in text
    assert "--force-band" not in text and "Open HST mosaic" in text
    assert not any(kind_of(d) == MOSAIC for d in app.data_collection)
