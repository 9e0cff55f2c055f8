"""The "Classify sources in selection" tool and "Classify catalog sources…" menu item."""

import numpy as np
import pytest
from astropy.table import Table
from conftest import (band_items, drag_rectangle, region_on, save_screenshot, truth_catalog,
                      wait_for, xy_in)
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from glue_starclf.glue.data import RESULTS, kind_of
from glue_starclf.glue.results import RESULTS_LABEL
from glue_starclf.core.predict import RESULT_COLUMNS
from glue_starclf.qt.actions import (classify_catalog_dialog, open_diagnostics, open_inspector,
                                     open_mosaic_files)


@pytest.fixture
def opened(app, mock_files, tmp_path):
    """The mock mosaic and its catalog opened and linked, in a star-cluster image viewer."""
    cat_path, cat = truth_catalog(mock_files, tmp_path)
    mosaic = open_mosaic_files(app.session, band_items(mock_files), str(cat_path))
    viewer = app.viewers[0][0]
    catalog = next(d for d in app.data_collection if d.label == "catalog")
    return mosaic, catalog, viewer, cat


def run_tool(viewer, qtbot, models, source=0):
    """Click the tool, choose a source list and the test models, press Classify, wait."""
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.sources.setCurrentIndex(source)
    dialog.models.set_folder(models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert dialog.runner is not None
    wait_for(qtbot, dialog.runner)
    return dialog.runner


def drawn_xy(artist):
    """Positions of the markers a glue scatter layer artist draws."""
    if artist.plot_artist.get_visible() and len(artist.plot_artist.get_xdata()):
        return np.column_stack(artist.plot_artist.get_data())
    return np.asarray(artist.scatter_artist.get_offsets())


def results_of(app):
    return next(d for d in app.data_collection if kind_of(d) == RESULTS)


def test_region_tool_catalog_rows(app, qtbot, opened, models):
    mosaic, catalog, viewer, cat = opened
    group = drag_rectangle(viewer, 40, 200, 60, 260)  # the rectangle tool, by mouse
    roi = group.subset_state.roi
    assert abs(roi.xmin - 40) < 1 and abs(roi.xmax - 200) < 1
    assert abs(roi.ymin - 60) < 1 and abs(roi.ymax - 260) < 1
    runner = run_tool(viewer, qtbot, models)
    assert runner.state == "done", runner.message
    res = results_of(app)
    assert res.label == RESULTS_LABEL
    # every schema column, one row per catalog source in the region
    labels = [c.label for c in res.main_components]
    assert set(RESULT_COLUMNS) <= set(labels)
    inside = xy_in(cat, 40, 200, 60, 260)
    assert res.shape[0] == inside.sum()
    np.testing.assert_array_equal(np.sort(res["id"]), np.sort(np.asarray(cat["id"])[inside]))
    p = np.column_stack([res[f"p_class{k}"] for k in (1, 2, 3, 4)])
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    # world links: the image's RA/Dec of the result rows (through glue's links)
    # equal the rows' own, and so does the WCS applied to their pixels
    ra_img = res[mosaic.world_component_ids[1]]
    dec_img = res[mosaic.world_component_ids[0]]
    np.testing.assert_allclose(ra_img, res["ra"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(dec_img, res["dec"], atol=1e-6, rtol=0)
    ra_w, dec_w = mosaic.coords.pixel_to_world_values(res["x"], res["y"])
    np.testing.assert_allclose(ra_w, res["ra"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(dec_w, res["dec"], atol=1e-6, rtol=0)
    by_id = {int(i): k for k, i in enumerate(cat["id"])}
    rows = [by_id[int(i)] for i in res["id"]]
    np.testing.assert_allclose(res["ra"], np.asarray(cat["ra"])[rows], atol=1e-6, rtol=0)
    # the region subset selects these rows on the results too (pixel links)
    region = app.data_collection.subset_groups[0]
    sub = next(s for s in region.subsets if s.data is res)
    assert sub.to_mask().all()
    # results are drawn on the image
    assert any(la.layer is res for la in viewer.layers)


def test_subset_on_results_selects_the_same_sources_on_the_image(app, qtbot, opened, models):
    mosaic, catalog, viewer, cat = opened
    region_on(viewer, 20, 300, 20, 300)
    assert run_tool(viewer, qtbot, models).state == "done"
    res = results_of(app)
    threshold = float(np.median(res["log_age"]))
    group = app.data_collection.new_subset_group("young", res.id["log_age"] < threshold)
    on_res = group.subsets[[s.data for s in group.subsets].index(res)]
    chosen = on_res.to_mask()
    assert 0 < chosen.sum() < res.shape[0]
    artist = next(la for la in viewer.layers if la.layer is on_res)
    assert artist.enabled and artist.visible
    drawn = {(round(float(a), 3), round(float(b), 3)) for a, b in drawn_xy(artist)}
    want = {(round(float(a), 3), round(float(b), 3))
            for a, b in zip(res["x"][chosen], res["y"][chosen])}
    assert drawn == want
    # and the same sources of the catalog: the subset propagates through the links
    region = region_on(viewer, 20, 300, 20, 300)
    on_cat = next(s for s in region.subsets if s.data is catalog)
    on_res2 = next(s for s in region.subsets if s.data is res)
    assert on_res2.to_mask().sum() == np.isin(catalog["id"][on_cat.to_mask()], res["id"]).sum()


def test_rerun_updates_and_another_region_adds(app, qtbot, opened, models):
    mosaic, catalog, viewer, cat = opened
    region_on(viewer, 40, 160, 40, 300)
    assert run_tool(viewer, qtbot, models).state == "done"
    res = results_of(app)
    cids = list(res.components)
    n1 = res.shape[0]
    ids1 = set(np.asarray(res["id"]).tolist())
    # same region again: rows updated in place, nothing duplicated
    runner = run_tool(viewer, qtbot, models)
    assert runner.state == "done" and f"0 new, {n1} updated" in runner.message
    assert res.shape[0] == n1 and list(res.components) == cids
    assert len([d for d in app.data_collection if kind_of(d) == RESULTS]) == 1
    # another, overlapping region: the new sources are added
    region_on(viewer, 120, 300, 40, 300)
    runner = run_tool(viewer, qtbot, models)
    assert runner.state == "done", runner.message
    both = xy_in(cat, 40, 160, 40, 300) | xy_in(cat, 120, 300, 40, 300)
    assert res.shape[0] == both.sum()
    assert len(set(np.asarray(res["id"]).tolist())) == res.shape[0]
    assert ids1 <= set(np.asarray(res["id"]).tolist())
    assert list(res.components) == cids  # same component ids: links and subsets hold
    np.testing.assert_allclose(res[mosaic.world_component_ids[1]], res["ra"], atol=1e-6,
                               rtol=0)


def test_detect_in_region(app, qtbot, opened, models):
    mosaic, catalog, viewer, cat = opened
    region_on(viewer, 10, 310, 10, 310)
    runner = run_tool(viewer, qtbot, models, source=1)  # "Detect candidates in the region"
    # the region holds 40 of the mock's sources: finding none is a failure, not "empty"
    assert runner.state == "done", runner.message
    res = results_of(app)
    assert set(RESULT_COLUMNS) <= {c.label for c in res.main_components}
    x, y = np.asarray(res["x"]), np.asarray(res["y"])
    assert ((x > 10) & (x < 310) & (y > 10) & (y < 310)).all()
    # the candidates are the mock's sources, not noise: 27 of 40 lie within 2 px of one
    near = np.hypot(x[:, None] - np.asarray(cat["x"]), y[:, None] - np.asarray(cat["y"]))
    assert (near.min(axis=1) < 2).sum() >= 20


def test_detect_in_region_with_a_fixed_ci_cut(app, qtbot, opened, models, screenshots):
    """The dialog's "CI cut" row: for detection only; empty is the field's own cut, a
    number a fixed one, anything else is refused in the dialog."""
    from qtpy.QtTest import QTest

    from glue_starclf.glue.data import RESULTS_META_KEY
    from glue_starclf.qt.common import MESSAGES
    mosaic, catalog, viewer, cat = opened
    region_on(viewer, 10, 310, 10, 310)
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    dialog.models.set_folder(models)
    from glue_starclf.qt.dialogs import STELLAR_CI_DETECT_TIP, STELLAR_CI_OFF_TIP
    dialog.sources.setCurrentIndex(0)  # the catalog's rows: no detection, no cut
    assert not dialog.ci_cut.isEnabled() and not dialog.ci_cut_label.isEnabled()
    # these models do not take the stellar CI: its row serves detection only
    assert not dialog.stellar_ci.isEnabled() and dialog.stellar_ci.toolTip() == STELLAR_CI_OFF_TIP
    dialog.sources.setCurrentIndex(1)  # "Detect candidates in the region"
    assert dialog.ci_cut.isEnabled() and "stellar CI + 0.05" in dialog.ci_cut.placeholderText()
    assert dialog.stellar_ci.isEnabled() and dialog.stellar_ci.toolTip() == STELLAR_CI_DETECT_TIP
    QTest.keyClicks(dialog.ci_cut, "high")
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert dialog.isVisible() and "CI cut 'high' is not a number" in dialog.error.text()
    dialog.ci_cut.clear()
    QTest.keyClicks(dialog.ci_cut, "1.25")
    save_screenshot(dialog, screenshots / "classify_dialog_ci_cut.png")
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    meta = results_of(app).meta[RESULTS_META_KEY]
    assert meta["detected"] and meta["detection_ci_min"] == 1.25
    assert "Candidates detected with CI >= 1.250 mag (a fixed cut)." in MESSAGES[-1][1]
    # A catalog dialog has no detection, so no "CI cut" row.
    assert classify_catalog_dialog(app.session, app.data_collection).ci_cut is None


def test_classify_catalog_sources_attaches_columns(app, qtbot, opened, models):
    mosaic, catalog, viewer, cat = opened
    n_comp = len(catalog.components)
    dialog = classify_catalog_dialog(app.session, app.data_collection)
    dialog.models.set_folder(models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    labels = [c.label for c in catalog.components]
    for name in RESULT_COLUMNS:
        assert name in labels
    added = len(catalog.components) - n_comp
    cids = list(catalog.components)
    p1 = np.array(catalog["p_class1"])
    # again: the same components are updated, none added
    dialog = classify_catalog_dialog(app.session, app.data_collection)
    dialog.models.set_folder(models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done"
    assert list(catalog.components) == cids and added > 20
    assert f"0 columns added, {added} updated" in dialog.runner.message
    np.testing.assert_allclose(catalog["p_class1"], p1, rtol=1e-5)
    assert not any(d.label == RESULTS_LABEL for d in app.data_collection)
    views = open_diagnostics(app.session)  # the views work on the catalog's columns too
    assert len(views) == 4 and all(v.layers[0].layer is catalog for v in views)
    inspector = open_inspector(app.session)
    qtbot.waitUntil(lambda: len(inspector.tiles) == min(24, catalog.shape[0]), timeout=60_000)


def test_classify_catalog_keeps_the_catalogs_own_class(app, qtbot, mock_files, models,
                                                       tmp_path):
    truth = Table.read(mock_files["truth"])["id", "x", "y", "ra", "dec", "class"]
    path = tmp_path / "visual.ecsv"
    truth.write(path)
    open_mosaic_files(app.session, band_items(mock_files), str(path))
    catalog = next(d for d in app.data_collection if d.label == "visual")
    dialog = classify_catalog_dialog(app.session, app.data_collection)
    dialog.models.set_folder(models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done"
    np.testing.assert_array_equal(catalog["class"], truth["class"])  # the visual class
    assert set(np.unique(catalog["class_starclf"])) <= {1, 2, 3, 4}
    assert catalog.meta["starclf_columns"]["class"] == "class_starclf"


def test_main_window_screenshot(app, qtbot, opened, bundled_models, screenshots):
    """Image, catalog markers, a region and the results, as an astronomer sees them."""
    from glue_starclf.qt.diagnostics import class_subsets
    mosaic, catalog, viewer, cat = opened
    catalog_layer = next(la for la in viewer.layers if la.layer is catalog)
    catalog_layer.state.visible = False
    region = region_on(viewer, 30, 290, 30, 290)
    region.style.alpha = 0.15  # the user's choice: a light region over the image
    assert run_tool(viewer, qtbot, bundled_models).state == "done"
    class_subsets(app.session, results_of(app))  # made by the classification already
    app.show()
    sub = viewer.parent()
    sub.showMaximized()
    qtbot.wait(300)
    viewer.figure.canvas.draw()
    save_screenshot(app, screenshots / "main_window.png")


def test_bad_models_folder_is_refused_and_not_offered_again(app, qtbot, opened, tmp_path,
                                                           monkeypatch):
    """Issue 16, bug 4: the folder is checked on OK, and kept only when good."""
    mosaic, catalog, viewer, cat = opened
    region_on(viewer, 40, 200, 60, 260)
    empty = tmp_path / "not-models"
    empty.mkdir()
    (empty / "classifier-s0.json").write_text("{}")
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    dialog.models.combo.setCurrentIndex(1)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory",
                        lambda *args, **kwargs: str(empty))
    qtbot.mouseClick(dialog.models.browse, Qt.LeftButton)
    assert dialog.models.folder.text() == str(empty)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert dialog.isVisible() and dialog.runner is None
    assert str(empty) in dialog.error.text() and "Browse" in dialog.error.text()
    dialog.reject()
    viewer.toolbar.actions["starclf:classify"].trigger()  # the next dialog
    again = viewer.last_dialog
    assert again.models.folder.text() != str(empty)
    again.reject()


def test_distance_outside_the_models_range_is_warned_before_the_run(app, qtbot, opened, models):
    """Issue 16, bug 8: a warning in the dialog first; "Classify anyway" runs."""
    mosaic, catalog, viewer, cat = opened
    region_on(viewer, 40, 200, 60, 260)
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    dialog.models.set_folder(models)
    ok = dialog.buttons.button(dialog.buttons.Ok)
    dialog.distance.edit.setText("35")
    ok.click()
    assert dialog.isVisible() and dialog.runner is None
    assert "35 Mpc" in dialog.error.text() and "3–20 Mpc" in dialog.error.text()
    assert ok.text() == "Classify anyway"
    dialog.distance.edit.setText("40")  # a new value is warned about again
    assert ok.text() == "Classify"
    ok.click()
    assert dialog.runner is None
    ok.click()
    assert dialog.runner is not None and wait_for(qtbot, dialog.runner) == "done"
    res = results_of(app)
    assert res.meta["starclf_provenance"]["distance_mpc"] == 40


def test_colour_by_class_on_the_image_from_the_first_classification(app, qtbot, opened,
                                                                    models):
    from glue.config import settings
    from matplotlib.colors import to_rgb

    from glue_starclf.qt.style import CLASS_LABELS
    from glue_starclf.qt.style import CLASS_COLOURS
    mosaic, catalog, viewer, cat = opened
    region_on(viewer, 20, 300, 20, 300)
    assert run_tool(viewer, qtbot, models).state == "done"
    res = results_of(app)
    cls = np.asarray(res["class"])
    for k, name in CLASS_LABELS.items():
        group = next(g for g in app.data_collection.subset_groups if g.label == name)
        sub = next(s for s in group.subsets if s.data is res)
        np.testing.assert_array_equal(sub.to_mask(), cls == k)
        artist = next(la for la in viewer.layers if la.layer is sub)
        assert artist.visible and artist.state.color == CLASS_COLOURS[k]
        assert not artist.state.fill
    # the class colours differ from each other and from glue's subset colours
    rgb = {k: np.array(to_rgb(c)) for k, c in CLASS_COLOURS.items()}
    glue_rgb = [np.array(to_rgb(c)) for c in settings.SUBSET_COLORS]
    for k, c in rgb.items():
        assert min(np.abs(c - g).sum() for g in glue_rgb) > 0.45, CLASS_COLOURS[k]
        assert all(np.abs(c - o).sum() > 0.45 for j, o in rgb.items() if j != k)
    assert app.session.edit_subset_mode.edit_subset[0].label not in CLASS_LABELS.values()


def test_markers_scale_with_the_zoom(app, qtbot, opened):
    from glue_starclf.qt.image_viewer import MARKER_POINTS
    mosaic, catalog, viewer, cat = opened
    markers = next(la for la in viewer.layers if la.layer is catalog)
    viewer.state.x_min, viewer.state.x_max = 0, 320
    viewer.figure.canvas.draw()
    far = markers.state.size * markers.state.size_scaling
    viewer.state.x_min, viewer.state.x_max = 100, 140  # 8x closer
    viewer.figure.canvas.draw()
    near = markers.state.size * markers.state.size_scaling
    assert MARKER_POINTS[0] <= far < near <= MARKER_POINTS[1]
    assert near == pytest.approx(min(8 * far, MARKER_POINTS[1]), rel=0.05)
    assert markers.state.size == 9  # the dataset's own size is kept


def test_class_balanced_box_drops_the_models_class_prior(app, qtbot, opened, trained_models,
                                                         tmp_path):
    """By default the models' class prior is applied; the dialog's box classifies without it."""
    import shutil

    from glue_starclf.core.class_prior import CLASS_PRIOR_FILE, ClassPrior, save_class_prior
    from glue_starclf.core.predict import load_ensemble
    from glue_starclf.glue.data import RESULTS_META_KEY
    from glue_starclf.glue.results import models_summary
    folder = tmp_path / "models"
    shutil.copytree(trained_models["models"], folder)
    hashes = load_ensemble("classifier", folder).hashes
    save_class_prior(folder / CLASS_PRIOR_FILE, ClassPrior(1.0, [0, 0, -30, 30], hashes))
    mosaic, catalog, viewer, cat = opened
    region_on(viewer, 40, 200, 60, 260)
    classes = {}
    for balanced in (False, True):
        viewer.toolbar.actions["starclf:classify"].trigger()
        dialog = viewer.last_dialog
        dialog.models.set_folder(str(folder))
        assert not dialog.class_balanced.isChecked()          # the prior is the default
        if balanced:
            qtbot.mouseClick(dialog.class_balanced, Qt.LeftButton,
                             pos=dialog.class_balanced.rect().center())
            assert dialog.class_balanced.isChecked()
        dialog.buttons.button(dialog.buttons.Ok).click()
        assert dialog.runner is not None and wait_for(qtbot, dialog.runner) == "done"
        res = results_of(app)
        meta = res.meta[RESULTS_META_KEY]
        classes[balanced] = np.asarray(res["class"])
        p4 = np.asarray(res["p_class4"])
        assert np.all(p4 > 0.999) != balanced
        summary = models_summary(meta)
        if balanced:
            assert meta["class_prior"] is None and "class-balanced" in summary
        else:
            assert meta["class_prior"]["log_prior"] == [0, 0, -30, 30]
            assert "with its LEGUS class prior" in summary
    assert np.all(classes[False] == 4)
    assert len(classes[True]) == len(classes[False])


def test_a_mosaic_in_the_wrong_units_is_warned_about(app, qtbot, mock_files, tmp_path,
                                                     bundled_models):
    """Pixel values 1e-8 of what their header says (a calibration mistake): every source is
    'ood', and the message after the run is a warning that says what to check."""
    from astropy.io import fits

    from glue_starclf.io.bands import BANDS
    from glue_starclf.qt.common import MESSAGES
    items = []
    for band in BANDS:
        with fits.open(mock_files[band]) as hdul:
            hdul[0].data = hdul[0].data * 1e-8
            path = tmp_path / f"faint_{band}.fits"
            hdul.writeto(path)
        items.append(f"{band}={path}")
    cat_path, _ = truth_catalog(mock_files, tmp_path)
    open_mosaic_files(app.session, items, str(cat_path))
    catalog = next(d for d in app.data_collection if d.label == "catalog")
    dialog = classify_catalog_dialog(app.session, app.data_collection)
    dialog.models.set_folder(bundled_models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    n = catalog.shape[0]
    assert all("ood" in str(f).split(",") for f in catalog["flags"])
    assert f"{n} of {n} sources are out of the training distribution" in dialog.runner.message
    assert MESSAGES[-1][0] == "warning"
