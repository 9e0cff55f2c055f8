"""The Classify dialog's "Stellar CI" row: for classifiers trained with ``--stellar-ci``."""

import re
import shutil

import pytest
from conftest import (band_items, menu_action, region_on, save_screenshot, truth_catalog,
                      wait_for)
from qtpy import QtWidgets
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from glue_starclf.glue.data import RESULTS_META_KEY
from glue_starclf.qt.actions import open_mosaic_files
from glue_starclf.qt.common import MESSAGES
from glue_starclf.qt.dialogs import STELLAR_CI_OFF_TIP, STELLAR_CI_TIP, ClassifyDialog
from training_runs import classifier_argv, run_training


@pytest.fixture(scope="module")
def ci_models(trained_models, tmp_path_factory):
    """A models folder whose classifier takes the stellar CI (one epoch, the test bank)."""
    folder = tmp_path_factory.mktemp("ci-models")
    status, _, err = run_training(*classifier_argv(
        trained_models["classifier_bank"], folder / "classifier-s0.safetensors", 0, 1,
        "--stellar-ci"))
    assert status == 0, err
    for name in ("physical-s0.json", "physical-s0.safetensors"):
        shutil.copy(trained_models["models"] / name, folder / name)
    return str(folder)


def open_catalog_dialog(app, mock_files, tmp_path, bands=None):
    """A mosaic (``bands`` of the mock) and its catalog; Plugins → Classify catalog sources…."""
    cat_path, _ = truth_catalog(mock_files, tmp_path)
    assert open_mosaic_files(app.session, band_items(mock_files, bands), str(cat_path))
    catalog = next(d for d in app.data_collection if d.label == "catalog")
    return classify_menu(app), catalog


def classify_menu(app):
    """Plugins → Classify catalog sources…: the dialog it opened."""
    before = set(app.findChildren(ClassifyDialog))
    menu_action(app, "Classify catalog sources…").trigger()
    dialog = next(d for d in app.findChildren(ClassifyDialog) if d not in before)
    assert dialog.isVisible()
    return dialog


def type_stellar_ci(dialog, text):
    """Clear the Stellar CI field and type ``text`` into it, key by key."""
    edit = dialog.stellar_ci
    edit.setFocus()
    QTest.keyClick(edit, Qt.Key_A, Qt.ControlModifier)
    QTest.keyClick(edit, Qt.Key_Delete)
    QTest.keyClicks(edit, text)
    assert edit.text() == text


def press_classify(dialog):
    QTest.mouseClick(dialog.buttons.button(QtWidgets.QDialogButtonBox.Ok), Qt.LeftButton)


def row_enabled(dialog):
    return dialog.stellar_ci.isEnabled() and dialog.stellar_ci_label.isEnabled()


def test_stellar_ci_given_in_the_dialog_reaches_the_results(app, qtbot, mock_files, tmp_path,
                                                           ci_models, models, screenshots):
    dialog, catalog = open_catalog_dialog(app, mock_files, tmp_path)
    # bundled by default: whether they take it is theirs to say; the test chooses folders
    dialog.models.set_folder(models)
    assert not row_enabled(dialog) and dialog.stellar_ci.toolTip() == STELLAR_CI_OFF_TIP
    dialog.models.set_folder(ci_models)  # the row follows the choice
    assert row_enabled(dialog) and dialog.stellar_ci.toolTip() == STELLAR_CI_TIP
    assert dialog.stellar_ci.text() == ""
    assert "measured on the image" in dialog.stellar_ci.placeholderText()
    assert "V-band" in STELLAR_CI_TIP and "1 px" in STELLAR_CI_TIP and "F555W" in STELLAR_CI_TIP
    type_stellar_ci(dialog, "1.30")
    save_screenshot(dialog, screenshots / "classify_dialog_stellar_ci.png")
    for text, reason in (("1,3", "not a number"), ("2.5", "outside 1.1–1.55 mag"),
                         ("0.3", "outside 1.1–1.55 mag")):
        type_stellar_ci(dialog, text)
        press_classify(dialog)
        assert dialog.isVisible() and dialog.runner is None, text
        assert reason in dialog.error.text() and "\n" not in dialog.error.text(), text
    type_stellar_ci(dialog, "1.30")
    press_classify(dialog)
    assert not dialog.isVisible() and dialog.values["stellar_ci"] == 1.3
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    meta = catalog.meta[RESULTS_META_KEY]
    assert meta["stellar_ci"] == 1.3 and meta["stellar_ci_source"] == "given"
    # empty: measured on the image around the sources; this 320 px field's few stars
    # give 1.040 mag, outside the trained range, so the default is taken and said so
    from glue_starclf.core.stellar_ci import STELLAR_CI_DEFAULT
    dialog = classify_menu(app)
    dialog.models.set_folder(ci_models)
    press_classify(dialog)
    assert dialog.values["stellar_ci"] is None
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    meta = catalog.meta[RESULTS_META_KEY]
    assert meta["stellar_ci_source"].startswith(
        "default (not measured: the value measured in region (0, 0, 320, 320)")
    assert "is outside 1.1-1.55" in meta["stellar_ci_source"]
    assert meta["stellar_ci"] == STELLAR_CI_DEFAULT


def test_models_without_it_disable_the_row(app, qtbot, mock_files, tmp_path, ci_models,
                                           models):
    dialog, catalog = open_catalog_dialog(app, mock_files, tmp_path)
    dialog.models.set_folder(ci_models)
    type_stellar_ci(dialog, "9")  # typed for other models: not theirs to check
    dialog.models.set_folder(models)
    assert not row_enabled(dialog)
    for widget in (dialog.stellar_ci, dialog.stellar_ci_label):
        assert widget.toolTip() == STELLAR_CI_OFF_TIP
    dialog.models.folder.setText(str(tmp_path / "nothing here"))
    assert not row_enabled(dialog)
    dialog.models.set_folder(models)
    press_classify(dialog)
    assert dialog.values["stellar_ci"] is None
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    meta = catalog.meta[RESULTS_META_KEY]
    assert meta["stellar_ci"] is None and meta["stellar_ci_source"] is None


def test_unmeasurable_stellar_ci_runs_with_the_default_and_says_so(app, qtbot, mock_files,
                                                                   tmp_path, ci_models):
    """Without F555W it cannot be measured: the typical value is used, every row flagged, the
    closing message says so and where to give it; a value typed in the field then counts."""
    from glue_starclf.core.stellar_ci import STELLAR_CI_DEFAULT
    bands = ["F275W", "F336W", "F438W", "F814W"]
    dialog, catalog = open_catalog_dialog(app, mock_files, tmp_path, bands)
    dialog.models.set_folder(ci_models)
    press_classify(dialog)
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    meta = catalog.meta[RESULTS_META_KEY]
    assert meta["stellar_ci"] == STELLAR_CI_DEFAULT
    assert meta["stellar_ci_source"].startswith("default (not measured:")
    assert "F555W" in meta["stellar_ci_source"]
    flags = catalog["flags"]
    assert len(flags) and all("stellar_ci" in str(f).split(",") for f in flags)
    level, text = MESSAGES[-1]
    assert "stellar CI 1.250 mag, default (not measured:" in text
    assert "flagged stellar_ci" in text
    dialog = classify_menu(app)
    dialog.models.set_folder(ci_models)
    type_stellar_ci(dialog, "1.3")
    press_classify(dialog)
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    assert catalog.meta[RESULTS_META_KEY]["stellar_ci_source"] == "given"
    assert not any("stellar_ci" in str(f).split(",") for f in catalog["flags"])


def test_recompute_gives_the_stellar_ci_again(app, qtbot, mock_files, tmp_path, ci_models):
    from glue_starclf.qt.labelling import recompute_results
    bands = ["F275W", "F336W", "F438W", "F814W"]  # not measurable: the default, unless given
    dialog, catalog = open_catalog_dialog(app, mock_files, tmp_path, bands)
    dialog.models.set_folder(ci_models)
    type_stellar_ci(dialog, "1.25")
    press_classify(dialog)
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    runner = recompute_results(app.session, catalog, ci_models)
    assert wait_for(qtbot, runner) == "done", runner.message
    meta = catalog.meta[RESULTS_META_KEY]
    assert meta["stellar_ci"] == 1.25 and meta["stellar_ci_source"] == "given"


def test_region_tool_gives_the_stellar_ci(app, qtbot, mock_files, tmp_path, ci_models):
    """The image viewer's tool, on catalog rows and on detected candidates."""
    from glue_starclf.glue.results import results_for
    cat_path, _ = truth_catalog(mock_files, tmp_path)
    mosaic = open_mosaic_files(app.session, band_items(mock_files), str(cat_path))
    viewer = app.viewers[0][0]
    region_on(viewer, 20, 300, 20, 300)
    for source, text in ((0, "1.2"), (1, "1.4")):  # catalog rows, then "Detect candidates"
        viewer.toolbar.actions["starclf:classify"].trigger()
        dialog = viewer.last_dialog
        dialog.sources.setCurrentIndex(source)
        dialog.models.set_folder(ci_models)
        type_stellar_ci(dialog, text)
        press_classify(dialog)
        assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
        meta = results_for(app.data_collection, mosaic).meta[RESULTS_META_KEY]
        assert meta["stellar_ci"] == float(text) and meta["stellar_ci_source"] == "given"
        assert meta["detected"] == (source == 1)
    # The candidates were cut 0.05 mag above the stellar CI given, and the message says so.
    assert meta["detection_ci_min"] == pytest.approx(1.45)
    assert meta["detection_stellar_ci_source"] == "given"
    assert ("Candidates detected with CI >= 1.450 mag (the field's stellar CI 1.400 mag, given, "
            "+ 0.05).") in MESSAGES[-1][1]
    # Left empty: the candidates are classified with the stellar CI their cut was set by
    # (on this small field the default, so every row is flagged).
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    dialog.sources.setCurrentIndex(1)
    dialog.models.set_folder(ci_models)
    type_stellar_ci(dialog, "")
    press_classify(dialog)
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    results = results_for(app.data_collection, mosaic)
    meta = results.meta[RESULTS_META_KEY]
    assert meta["stellar_ci_source"] == meta["detection_stellar_ci_source"]
    assert meta["stellar_ci_source"].startswith("default (not measured:")
    assert meta["detection_ci_min"] == pytest.approx(meta["stellar_ci"] + 0.05)
    # Only this run's rows are flagged (the two runs before had a stellar CI given).
    n = int(re.search(r"Classified (\d+) sources", MESSAGES[-1][1]).group(1))
    assert n > 0 and sum("stellar_ci" in f for f in results["flags"]) == n
