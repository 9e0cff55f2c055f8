"""The cluster inspector, the diagnostics layout, exports and session save/restore."""

import numpy as np
import pytest
from astropy.table import Table
from conftest import (band_items, classify_region, menu_action, region_on, save_screenshot,
                      truth_catalog, wait_for)
from qtpy.QtCore import QPoint, Qt

from glue_starclf.glue.data import RESULTS, kind_of
from glue_starclf.core.predict import RESULT_COLUMNS
from glue_starclf.qt.actions import (classify_catalog_dialog, open_diagnostics, open_inspector,
                                     open_mosaic_files)
from glue_starclf.qt.common import MESSAGES
from glue_starclf.qt.style import CLASS_LABELS
from glue_starclf.qt.image_viewer import StarClusterImageViewer
from glue_starclf.qt.inspector import PICK_LABEL, ClusterInspectorViewer


@pytest.fixture
def classified(app, qtbot, mock_files, bundled_models, tmp_path):
    """Mosaic, catalog and the results of a region, with the region subset active."""
    cat_path, cat = truth_catalog(mock_files, tmp_path)
    mosaic = open_mosaic_files(app.session, band_items(mock_files), str(cat_path))
    viewer = app.viewers[0][0]
    region = region_on(viewer, 20, 300, 20, 300)
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    dialog.models.set_folder(bundled_models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    res = next(d for d in app.data_collection if kind_of(d) == RESULTS)
    return mosaic, res, viewer, region


def test_inspector_gallery_and_pick(app, qtbot, classified, screenshots):
    mosaic, res, viewer, region = classified
    young = app.data_collection.new_subset_group(
        "young", res.id["log_age"] < float(np.median(res["log_age"])))
    n_young = int(next(s for s in young.subsets if s.data is res).to_mask().sum())
    inspector = open_inspector(app.session)
    assert isinstance(inspector, ClusterInspectorViewer)
    inspector.state.subset_label = "young"
    inspector.state.max_stamps = 100
    qtbot.waitUntil(lambda: len(inspector.tiles) == n_young, timeout=60_000)
    assert "posterior" not in inspector.note  # the maps were computed
    # sorted by entropy, most uncertain first
    ent = np.asarray(res["class_entropy"])[[t.row for t in inspector.tiles]]
    assert (np.diff(ent) <= 1e-12).all()
    inspector.state.sort_by = "p_cluster"
    qtbot.waitUntil(lambda: inspector.sort_combo.currentText() == "p_cluster")
    pc = np.asarray(res["p_cluster"])[[t.row for t in inspector.tiles]]
    assert (np.diff(pc) <= 1e-12).all()
    inspector.state.sort_by = "magnitude"
    qtbot.waitUntil(lambda: inspector.sort_combo.currentText() == "magnitude")
    mags = np.asarray(res["mag_F555W"])[[t.row for t in inspector.tiles]]
    finite = mags[np.isfinite(mags)]
    assert (np.diff(finite) >= -1e-12).all()
    inspector.state.max_stamps = 3
    qtbot.waitUntil(lambda: len(inspector.tiles) == min(3, n_young))
    # clicking a stamp selects that source in every viewer
    tile = inspector.tiles[1]
    qtbot.mouseClick(tile, Qt.LeftButton, pos=QPoint(20, 20))
    group = next(g for g in app.data_collection.subset_groups if g.label == PICK_LABEL)
    picked = next(s for s in group.subsets if s.data is res)
    assert np.flatnonzero(picked.to_mask()).tolist() == [tile.row]
    artist = next(la for la in viewer.layers if la.layer is picked)
    assert artist.enabled and artist.visible
    qtbot.mouseClick(inspector.tiles[0], Qt.LeftButton, Qt.ControlModifier, QPoint(20, 20))
    assert picked.to_mask().sum() == 2
    inspector.state.max_stamps = 12
    inspector.state.sort_by = "entropy"
    qtbot.waitUntil(lambda: len(inspector.tiles) == min(12, n_young))
    app.show()  # the inspector at its default size
    qtbot.wait(300)
    save_screenshot(inspector, screenshots / "inspector.png")


def test_inspector_refuses_non_results(app, qtbot, classified):
    mosaic, res, viewer, region = classified
    inspector = app.new_data_viewer(ClusterInspectorViewer, data=res)
    assert inspector.add_data(mosaic) is False
    assert inspector.results_data is res


def test_diagnostics_layout(app, qtbot, classified, screenshots):
    mosaic, res, viewer, region = classified
    app.show()
    qtbot.wait(100)
    views = open_diagnostics(app.session)
    assert len(views) == 4
    assert app.tab_widget.tabText(app.tab_count - 1) == "Diagnostics"
    labels = [g.label for g in app.data_collection.subset_groups]
    for name in CLASS_LABELS.values():
        assert name in labels
    cc, am, lf, mf = views
    assert (cc.state.x_att.label, cc.state.y_att.label) == ("V-I", "U-B")
    assert (am.state.x_att.label, am.state.y_att.label) == ("log_age", "log_mass")
    assert lf.state.x_att.label == "mag_F555W" and mf.state.x_att.label == "log_mass"
    np.testing.assert_allclose(res["V-I"], res["mag_F555W"] - res["mag_F814W"])
    for v in views:  # each class is a layer of each view (linked selections)
        shown = {la.layer.label for la in v.layers}
        assert set(CLASS_LABELS.values()) <= shown
    # the four views tile the tab: 2 x 2, filling it
    area = app.current_tab.viewport().size()
    geos = [v.parent().geometry() for v in views]
    assert sum(g.width() * g.height() for g in geos) >= 0.97 * area.width() * area.height()
    assert all(g.right() <= area.width() and g.bottom() <= area.height() for g in geos)
    qtbot.wait(300)
    for v in views:
        v.figure.canvas.draw()
    save_screenshot(app, screenshots / "diagnostics.png")


def test_export_menus(app, qtbot, classified, tmp_path):
    from glue.config import data_exporter

    from glue_starclf.io.writers import read_regions
    mosaic, res, viewer, region = classified
    exporters = {e.label: e.function for e in data_exporter}
    exporters["Star-cluster results (ECSV)"](str(tmp_path / "r.ecsv"), res)
    t = Table.read(tmp_path / "r.ecsv")
    assert set(RESULT_COLUMNS) <= set(t.colnames) and len(t) == res.shape[0]
    # the mock field's distance (its DISTMPC), and each value under its schema name
    assert t.meta["distance_mpc"] == 8.0 and t["r_h"].unit == "pc"
    exporters["Star-cluster results (FITS)"](str(tmp_path / "r.fits"), res)
    for table in (t, Table.read(tmp_path / "r.fits")):
        assert len(table) == res.shape[0]
        for name in ("id", "x", "y", "ra", "class", "p_class1", "p_class4", "log_age", "r_h"):
            np.testing.assert_allclose(np.asarray(table[name], float),
                                       np.asarray(res[name], float), err_msg=name)
    sub = app.data_collection.new_subset_group("old", res.id["log_age"] > 8).subsets
    old = next(s for s in sub if s.data is res)
    exporters["Star-cluster DS9 regions"](str(tmp_path / "r.reg"), old)
    reg = read_regions(tmp_path / "r.reg")
    assert len(reg) == int(old.to_mask().sum())
    # the same in sky coordinates (fk5), for other images of the field
    from astropy.wcs.utils import proj_plane_pixel_scales
    from regions import Regions
    exporters["Star-cluster DS9 regions (sky, fk5)"](str(tmp_path / "sky.reg"), old)
    text = (tmp_path / "sky.reg").read_text()
    assert "fk5" in text and "image" not in text.split("\n")[1]
    sky = Regions.read(str(tmp_path / "sky.reg"), format="ds9")
    mask = old.to_mask()
    assert len(sky) == int(mask.sum())
    np.testing.assert_allclose([r.center.ra.deg for r in sky], res["ra"][mask], atol=1e-7)
    scale = float(np.mean(proj_plane_pixel_scales(mosaic.coords.celestial)) * 3600)
    assert sky[0].radius.to_value("arcsec") == pytest.approx(4 * scale, rel=1e-3)


def test_session_save_and_restore(app, qtbot, classified, tmp_path):
    from glue_qt.app import GlueApplication
    mosaic, res, viewer, region = classified
    catalog = next(d for d in app.data_collection if d.label == "catalog")
    dialog = classify_catalog_dialog(app.session, app.data_collection)
    dialog.models.set_folder(str(res.meta["starclf_provenance"]["models_folder"]))
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done"
    cat_labels = [c.label for c in catalog.components]
    assert len(open_diagnostics(app.session)) == 4
    inspector = open_inspector(app.session)
    inspector.state.sort_by = "p_cluster"
    inspector.state.subset_label = region.label
    n_res = res.shape[0]
    labels = [c.label for c in res.components]
    path = tmp_path / "session.glu"
    app.save_session(str(path))
    restored = GlueApplication.restore_session(str(path))
    try:
        dc = restored.data_collection
        assert {d.label for d in dc} == {d.label for d in app.data_collection}
        res2 = next(d for d in dc if kind_of(d) == RESULTS)
        mosaic2 = next(d for d in dc if d.label == mosaic.label)
        assert res2.shape[0] == n_res and [c.label for c in res2.components] == labels
        np.testing.assert_allclose(res2["p_class1"], res["p_class1"])
        catalog2 = next(d for d in dc if d.label == "catalog")
        assert [c.label for c in catalog2.components] == cat_labels
        np.testing.assert_allclose(catalog2["p_cluster"], catalog["p_cluster"])
        assert catalog2.meta["starclf_columns"]["class"] == "class"
        # links survive: image RA/Dec of the rows, and the region propagates
        np.testing.assert_allclose(res2[mosaic2.world_component_ids[1]], res2["ra"], atol=1e-6,
                                   rtol=0)
        group = next(g for g in dc.subset_groups if g.label == region.label)
        assert next(s for s in group.subsets if s.data is res2).to_mask().all()
        viewers = [v for tab in restored.viewers for v in tab]
        kinds = {type(v).__name__ for v in viewers}
        assert {"StarClusterImageViewer", "ClusterInspectorViewer", "ScatterViewer",
                "HistogramViewer"} <= kinds
        image = next(v for v in viewers if isinstance(v, StarClusterImageViewer))
        assert image.state.color_mode == "One color per layer"
        assert any(la.layer is res2 for la in image.layers)
        insp = next(v for v in viewers if isinstance(v, ClusterInspectorViewer))
        assert insp.state.sort_by == "p_cluster" and insp.state.subset_label == region.label
        qtbot.waitUntil(lambda: len(insp.tiles) == min(n_res, insp.state.max_stamps),
                        timeout=60_000)
        # the mosaic is stored by file name, not by pixels
        assert "mock_f555w_drc.fits" in path.read_text()
        assert path.stat().st_size < mosaic.size * 4  # less than one band's pixels
    finally:
        restored.close()


def _ours(app):
    return {g for g in app.data_collection.subset_groups
            if g.label in set(CLASS_LABELS.values()) | {PICK_LABEL}}


def test_diagnostics_layout_leaves_the_users_subsets_and_styles(app, qtbot, classified):
    """Issue 16, bugs 1 and 6: no class subset left active, no layer restyled."""
    from glue.core.roi import RectangularROI
    mosaic, res, viewer, region = classified
    mode = app.session.edit_subset_mode
    markers = next(la for la in viewer.layers if la.layer is res)
    colour, size = markers.state.color, markers.state.size
    style = (res.style.color, res.style.markersize, res.style.alpha)
    mode.edit_subset = []  # the user's next selection is to make a new subset
    menu_action(app, "Diagnostics layout").trigger()
    qtbot.wait(50)
    assert mode.edit_subset == []
    class4 = next(g for g in app.data_collection.subset_groups
                  if g.label == CLASS_LABELS[4])
    state4 = class4.subset_state
    am = next(v for v in app.viewers[-1] if v.state.title == "Age–mass")
    n_groups = len(app.data_collection.subset_groups)
    am.apply_roi(RectangularROI(xmin=5, xmax=11, ymin=2, ymax=8))  # the rectangle tool's call
    assert class4.subset_state is state4
    assert len(app.data_collection.subset_groups) == n_groups + 1
    assert not set(mode.edit_subset) & _ours(app)
    # the results keep their colour and size on the image (and in the session)
    assert (markers.state.color, markers.state.size) == (colour, size)
    assert (res.style.color, res.style.markersize, res.style.alpha) == style


def test_picking_a_stamp_leaves_the_users_region_active(app, qtbot, classified):
    """Issue 16, bug 2: the pick is not the active subset; the next region is new."""
    mosaic, res, viewer, region = classified
    mode = app.session.edit_subset_mode
    assert mode.edit_subset == [region]
    inspector = open_inspector(app.session)
    qtbot.waitUntil(lambda: len(inspector.tiles) > 1, timeout=60_000)
    qtbot.mouseClick(inspector.tiles[1], Qt.LeftButton, pos=QPoint(20, 20))
    pick = next(g for g in app.data_collection.subset_groups if g.label == PICK_LABEL)
    assert mode.edit_subset == [region]
    mode.edit_subset = []
    qtbot.mouseClick(inspector.tiles[0], Qt.LeftButton, pos=QPoint(20, 20))
    assert mode.edit_subset == []
    pick_state = pick.subset_state
    new = region_on(viewer, 50, 120, 50, 120)
    assert new is not pick and pick.subset_state is pick_state


@pytest.mark.parametrize("found", [True, False], ids=["folder given", "cancelled"])
def test_session_with_moved_band_files(app, qtbot, mock_field, tmp_path, models, monkeypatch,
                                       found):
    """Issue 16, bug 5: File → Save Session, the files move, File → Open Session."""
    import shutil

    from qtpy import QtWidgets, compat

    from glue_starclf.glue.data import MOSAIC
    from glue_starclf.glue.results import mosaic_of
    from glue_starclf.qt.common import MESSAGES
    from glue_starclf.sim.mosaic import write_mosaic
    files = write_mosaic(mock_field, tmp_path / "before", "moved")
    cat_path, cat = truth_catalog(files, tmp_path)
    open_mosaic_files(app.session, band_items(files), str(cat_path))
    classify_region(app.viewers[0][0], qtbot, models, 20, 300, 20, 300)
    res = next(d for d in app.data_collection if kind_of(d) == RESULTS)
    p1 = np.asarray(res["p_class1"]).copy()
    session = tmp_path / "field.glu"
    monkeypatch.setattr(compat, "getsavefilename",
                        lambda *a, **k: (str(session), "Glue Session with absolute paths "
                                                       "to data (*.glu)"))
    app._actions["session_save"].trigger()
    assert session.is_file()
    shutil.move(tmp_path / "before", tmp_path / "after")  # the band files moved
    asked = []

    def choose(parent, title, *args, **kwargs):
        asked.append(title)
        return str(tmp_path / "after") if found else ""
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", choose)
    monkeypatch.setattr(compat, "getopenfilename",
                        lambda *a, **k: (str(session), "Glue sessions (*.glu)"))
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning",
                        lambda *a, **k: QtWidgets.QMessageBox.Ok)
    app._actions["session_restore"].trigger()
    restored = app._new_application
    try:
        assert asked and "moved_f555w_drc.fits" in asked[0]
        dc = restored.data_collection
        mosaic = next(d for d in dc if kind_of(d) == MOSAIC)
        res2 = next(d for d in dc if kind_of(d) == RESULTS)
        np.testing.assert_allclose(res2["p_class1"], p1)
        assert mosaic_of(dc, res2) is mosaic
        catalog = next(d for d in dc if d.label == "catalog")
        np.testing.assert_allclose(catalog[mosaic.world_component_ids[1]], cat["ra"],
                                   atol=1e-6)  # links are back
        if found:
            np.testing.assert_array_equal(mosaic["F555W"], mock_field.images[3])
            from glue_starclf.glue.data import mosaic_from_data
            m = mosaic_from_data(mosaic)
            assert str(m.paths["F555W"]).startswith(str(tmp_path / "after"))
            assert all(str(tmp_path / "after") in i for i in mosaic.meta["starclf_images"])
        else:
            assert np.isnan(mosaic["F555W"]).all() and mosaic.shape == mock_field.images.shape[1:]
            level, text = next(m for m in MESSAGES if "restored without pixels" in m[1])
            assert level == "warning" and "Open HST mosaic" in text
            # classifying it says why not, in one line
            image = next(v for tab in restored.viewers for v in tab
                         if isinstance(v, StarClusterImageViewer))
            region_on(image, 20, 300, 20, 300)
            image.toolbar.actions["starclf:classify"].trigger()
            assert image.last_dialog is None
            assert "were not found" in MESSAGES[-1][1] and len(MESSAGES[-1][1].splitlines()) == 1
    finally:
        restored.close()


def test_inspector_is_readable_at_its_default_size(app, qtbot, classified):
    """Labelling bar fits; band names, posterior axes and colour bar; which models."""
    from glue_starclf.qt.inspector import _Posterior
    mosaic, res, viewer, region = classified
    app.show()
    menu_action(app, "Cluster inspector").trigger()
    inspector = next(v for tab in app.viewers for v in tab
                     if isinstance(v, ClusterInspectorViewer))
    qtbot.waitUntil(lambda: len(inspector.tiles) > 0, timeout=60_000)
    qtbot.wait(100)
    # it opens on the active subset (the user's region), not on all sources or a class
    assert inspector.state.subset_label == region.label
    width = inspector.width()
    for w in [inspector.labeller_edit, inspector.unlabelled_check, *inspector.buttons.values()]:
        right = w.mapTo(inspector, w.rect().topRight()).x()
        assert w.isVisible() and right <= width, (w, right, width)
        assert w.width() >= w.minimumSizeHint().width(), w
    for b in inspector.buttons.values():
        assert b.width() >= b.sizeHint().width(), b.text()
    assert inspector.labeller_edit.width() >= 180
    tile = inspector.tiles[0]
    assert [n.text() for n in tile.band_names] == ["F275W", "F336W", "F438W", "F555W", "F814W"]
    # the map is the age-A_V posterior marginalised over mass: a distribution, its colour
    # bar topped by its largest bin
    assert isinstance(tile.posterior, _Posterior)
    grid = tile.posterior.grid
    assert grid.sum() == pytest.approx(1, abs=1e-4)
    assert tile.posterior.vmax == grid.max() and 1 / grid.size < tile.posterior.vmax <= 1
    assert tile.text.wordWrap()
    # which models made these results: in the completion message and the inspector
    prov = res.meta["starclf_provenance"]
    for text in (inspector.note, next(m for lvl, m in MESSAGES if m.startswith("Classified"))):
        assert "Models: bundled models: classifier StarClassifier × 5" in text
        assert prov["classifier_models"][0] in text and prov["classifier_card_date"] in text
        assert "physical" in text


def test_clicking_a_stamp_pans_the_image_to_the_source(app, qtbot, classified):
    mosaic, res, viewer, region = classified
    st = viewer.state
    st.x_min, st.x_max, st.y_min, st.y_max = 0, 60, 0, 60  # zoomed in on a corner
    viewer.figure.canvas.draw()
    zoom = st.x_max - st.x_min  # as the viewer's aspect ratio made it
    inspector = open_inspector(app.session)
    qtbot.waitUntil(lambda: len(inspector.tiles) > 1, timeout=60_000)
    tile = inspector.tiles[1]
    qtbot.mouseClick(tile, Qt.LeftButton, pos=QPoint(20, 20))
    x, y = float(res["x"][tile.row]), float(res["y"][tile.row])
    assert (st.x_min + st.x_max) / 2 == pytest.approx(x, abs=0.5)
    assert (st.y_min + st.y_max) / 2 == pytest.approx(y, abs=0.5)
    assert st.x_max - st.x_min == pytest.approx(zoom, rel=0.02)  # the zoom is kept
