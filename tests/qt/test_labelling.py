"""Labelling in the cluster inspector and "Fine-tune on my labels" (issue 6).

The expert is the mock truth: each focused source gets its true class by a
key press. The fine-tuning starts from the tiny one-epoch test model
(trained on the bank) and is scored on a mock field rendered at another
distance (18 Mpc, its own galaxy background), where that model is poor.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from conftest import band_items, menu_action, region_on, truth_catalog, wait_for
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from glue_starclf.glue.finetuning import USER_MODELS_ENV, list_user_models
from glue_starclf.glue.data import RESULTS, kind_of, table_to_data
from glue_starclf.glue.labels import (import_labels, parse_votes, vote_fractions, votes_of)
from glue_starclf.qt.actions import open_inspector, open_mosaic_files
from glue_starclf.qt.common import MESSAGES, ModelChooser
from glue_starclf.qt.inspector import ClusterInspectorViewer
from glue_starclf.qt.labelling import (export_labels_to, import_labels_from, show_confusion)

KEY = {0: Qt.Key_0, 1: Qt.Key_1, 2: Qt.Key_2, 3: Qt.Key_3, 4: Qt.Key_4}


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """The user's models folder, redirected to a temporary one."""
    folder = tmp_path / "user-models"
    monkeypatch.setenv(USER_MODELS_ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def far_field(tmp_path_factory):
    """300 mock sources at 18 Mpc on a 1024 x 1024 field (the model saw a bank of stamps)."""
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=21, shape=(1024, 1024), distance_mpc=18.0, n_sources=300)
    return write_mosaic(mock, tmp_path_factory.mktemp("far"), "far")


def classify_all(app, qtbot, files, models, tmp_path):
    """Open the mosaic and catalog, classify every source with the test models."""
    cat_path, cat = truth_catalog(files, tmp_path)
    open_mosaic_files(app.session, band_items(files), str(cat_path))
    viewer = app.viewers[0][0]
    ny, nx = viewer.state.reference_data.shape
    region_on(viewer, -1, nx, -1, ny)
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    dialog.models.set_folder(models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    res = next(d for d in app.data_collection if kind_of(d) == RESULTS)
    assert res.shape[0] == len(cat)
    return res, Table.read(files["truth"])


def settle(qtbot, inspector):
    """Wait until a pending gallery refresh (a new page) is drawn."""
    qtbot.waitUntil(lambda: not inspector._timer.isActive() and bool(inspector.tiles),
                    timeout=60_000)


def press(qtbot, inspector, key):
    """A key press where the user's keyboard focus is: the gallery's scroll area."""
    qtbot.keyClick(inspector.scroll, key)
    settle(qtbot, inspector)


def truth_of(res, truth):
    """True class of every results row (the results keep the catalog's ids)."""
    by_id = dict(zip(np.asarray(truth["id"]).astype(str), np.asarray(truth["class"], int)))
    return np.array([by_id[str(i)] for i in np.asarray(res["id"])])


def test_label_300_by_keys_finetune_and_recompute(app, qtbot, far_field, models, tmp_path,
                                                   user_models):
    res, truth = classify_all(app, qtbot, far_field, models, tmp_path)
    expert = truth_of(res, truth)
    inspector = open_inspector(app.session)
    inspector.state.max_stamps = 40
    inspector.state.sort_by = "stratified"
    inspector.state.labeller = "expert"
    settle(qtbot, inspector)
    # arrows move the focus; Left on the first source of the first page stays
    first = inspector.focused_row
    press(qtbot, inspector, Qt.Key_Right)
    assert inspector.focused_row == inspector.tiles[1].row
    press(qtbot, inspector, Qt.Key_Left)
    press(qtbot, inspector, Qt.Key_Left)
    assert inspector.focused_row == first
    # the stratified order: the first 40 hold every class the model gives
    model_cls = np.asarray(res["class"], int)
    page = [t.row for t in inspector.tiles]
    assert set(model_cls[page]) == set(model_cls)
    # a "not sure" first, then the expert labels every source in gallery order
    press(qtbot, inspector, KEY[0])
    assert parse_votes(votes_of(res)[first])["expert"][0] == 0
    assert np.asarray(res["class_user"])[first] == 0
    press(qtbot, inspector, Qt.Key_Left)
    assert inspector.focused_row == first
    seen = []
    for _ in range(res.shape[0]):
        row = inspector.focused_row
        seen.append(row)
        press(qtbot, inspector, KEY[int(expert[row])])
    assert sorted(seen) == list(range(res.shape[0]))  # each source once, pages turned
    np.testing.assert_array_equal(np.asarray(res["class_user"]), expert)
    assert set(np.asarray(res["labeller"])) == {"expert"}
    agree = int((model_cls == expert).sum())
    assert "Labelled 300 of 300 (you: 300, not sure: 0)" in inspector.counter.text()
    assert f"model agrees on {agree} of 300" in inspector.counter.text()
    matrix = show_confusion(inspector).matrix
    want = np.zeros((4, 4), int)
    np.add.at(want, (expert - 1, model_cls - 1), 1)
    np.testing.assert_array_equal(matrix[:4, :4], want)
    # "unlabelled only" leaves nothing to show
    inspector.state.unlabelled_only = True
    qtbot.waitUntil(lambda: not inspector._timer.isActive())
    assert inspector.tiles == [] and inspector.note.startswith("0 sources")
    inspector.state.unlabelled_only = False

    # fine-tune on the 300 labels, starting from the tiny model
    inspector.buttons["Fine-tune on my labels…"].click()
    dialog = inspector.last_dialog
    assert "300 labelled sources" in dialog.intro.text()
    card_path = next(Path(models).glob("classifier-*.json"))
    dialog.model.setCurrentIndex(next(i for i in range(dialog.model.count())
                                      if dialog.model.itemData(i)[1]["_path"] == str(card_path)))
    dialog.folds.setValue(3)
    dialog.epochs.setValue(4)
    dialog.buttons.button(dialog.buttons.Ok).click()
    runner = dialog.runner
    assert wait_for(qtbot, runner, timeout=1_200_000) == "done", runner.message
    version = runner.version
    assert version.parent == user_models and [v for _, v in list_user_models()] == [version]
    card = json.loads(next(version.glob("classifier-*.json")).read_text())
    before = card["metrics"]["cv_before"]["accuracy"]["mean"]
    after = card["metrics"]["cv_after"]["accuracy"]["mean"]
    print(f"\n3-fold accuracy on 300 labels at 18 Mpc: before {before:.3f}, after {after:.3f}; "
          f"fine-tuning took {card['training']['wall_time_s']} s")
    assert after > before + 0.05, (before, after)
    assert f"{before:.3f}" in runner.message and f"{after:.3f}" in runner.message
    assert card["parent"]["sha256"] == json.loads(card_path.read_text())["sha256"]
    assert card["training"]["labels_info"]["labellers"] == ["expert"]
    assert len(Table.read(version / "labels.ecsv")) == 301 - 1  # the "not sure" was replaced
    assert {c.stem.split("-")[0] for c in version.glob("*.json")} == {"classifier", "physical"}
    # selectable in the classify tools
    chooser = ModelChooser()
    assert chooser.versions == [(version.name, version)]
    chooser.set_folder(str(version))
    assert chooser.value() == str(version)
    # and the results recomputed with it: labels kept, provenance updated
    button = next(b for b in runner.box.buttons() if b.text() == "Recompute results with it")
    button.click()
    assert wait_for(qtbot, runner.recompute) == "done", runner.recompute.message
    assert res.meta["starclf_provenance"]["models_folder"] == str(version)
    np.testing.assert_array_equal(np.asarray(res["class_user"]), expert)
    acc_old = agree / 300
    acc_new = float((np.asarray(res["class"], int) == expert).mean())
    print(f"results accuracy against the labels: {acc_old:.3f} -> {acc_new:.3f}")
    assert acc_new > acc_old


@pytest.fixture
def small(app, qtbot, mock_files, models, tmp_path):
    """The 40-source mock field of the plugin tests, classified, in an inspector."""
    res, truth = classify_all(app, qtbot, mock_files, models, tmp_path)
    inspector = open_inspector(app.session)
    inspector.state.max_stamps = 100
    settle(qtbot, inspector)
    return res, truth_of(res, truth), inspector


def label_first(qtbot, inspector, classes, labeller):
    """Label the first sources of the gallery with ``classes`` as ``labeller``."""
    inspector.state.labeller = labeller
    inspector.set_focus(0)
    rows = []
    for c in classes:
        rows.append(inspector.focused_row)
        press(qtbot, inspector, KEY[int(c)])
    return rows


def test_two_labellers_session_and_ecsv(app, qtbot, small, mock_files, models, tmp_path):
    from glue_qt.app import GlueApplication

    from training.__main__ import main as training_main
    from glue_starclf.learn.finetune import read_labels
    res, expert, inspector = small
    rows = label_first(qtbot, inspector, [1, 2, 3, 4, 1, 2], "ana")
    label_first(qtbot, inspector, [1, 3, 3, 4, 0, 2], "ben")
    assert rows == [t.row for t in inspector.tiles[:6]]
    cu = np.asarray(res["class_user"])[rows]
    # agreeing votes give the class; a tie goes to the later vote (ben's); "not sure"
    # does not outvote
    np.testing.assert_array_equal(cu, [1, 3, 3, 4, 1, 2])
    assert set(np.asarray(res["labeller"])[rows]) == {"ben"}
    labelled, fractions = vote_fractions(res)
    assert list(labelled) == sorted(rows)
    soft = dict(zip(labelled, fractions))
    np.testing.assert_allclose(soft[rows[1]], [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(soft[rows[4]], [1, 0, 0, 0])
    assert "ana class 2, you class 3" in inspector.tiles[1].user.text()

    # the labels survive a session save and restore
    before = {c: np.asarray(res[c]).copy() for c in ("class_user", "labeller", "labelled_at",
                                                    "votes")}
    path = tmp_path / "labels.glu"
    app.save_session(str(path))
    restored = GlueApplication.restore_session(str(path))
    try:
        res2 = next(d for d in restored.data_collection if kind_of(d) == RESULTS)
        for c, v in before.items():
            np.testing.assert_array_equal(np.asarray(res2[c]), v)
        insp2 = next(v for tab in restored.viewers for v in tab
                     if isinstance(v, ClusterInspectorViewer))
        assert insp2.state.labeller == "ben"
        qtbot.waitUntil(lambda: len(insp2.tiles) > 0, timeout=60_000)
        # labelling goes on in the restored session
        insp2.set_focus(0)
        qtbot.keyClick(insp2.scroll, Qt.Key_4)
        assert parse_votes(votes_of(res2)[insp2.tiles[0].row])["ben"][0] == 4
    finally:
        restored.close()

    # ECSV round trip: one row per vote; read back, the same votes
    out = tmp_path / "labels.ecsv"
    assert export_labels_to(inspector, out) == 12
    t = Table.read(out)
    assert t.colnames == ["id", "x", "y", "ra", "dec", "class_user", "labeller", "labelled_at"]
    fresh = table_to_data(Table({c: np.asarray(res[c]) for c in
                                 ("id", "x", "y", "ra", "dec", "class", "p_class1")}), "fresh")
    report = import_labels(fresh, out)
    assert (report["added"], report["unknown"], report["sources"]) == (12, 0, 6)
    np.testing.assert_array_equal(votes_of(fresh), votes_of(res))
    again = import_labels_from(inspector, out)
    assert (again["added"], again["replaced"], again["unchanged"]) == (0, 0, 12)
    # the training module reads the export as soft labels: two labellers' votes
    from glue_starclf.io.mosaic import open_mosaic
    mosaic = open_mosaic(band_items(mock_files))
    lab, targets, info = read_labels(out, wcs=mosaic.wcs)
    assert info["kind"] == "votes" and info["max_votes"] == 2 and info["unlabelled"] == 1
    by_id = dict(zip(np.asarray(lab["id"]).astype(str), targets))
    np.testing.assert_allclose(by_id[str(np.asarray(res["id"])[rows[1]])], [0, .5, .5, 0])
    # and the command line takes the exported file as it is
    new = tmp_path / "cli.safetensors"
    argv = ["finetune", "--from", str(next(Path(models).glob("classifier-*.safetensors"))),
            "--labels", str(out), "--out", str(new), "--folds", "2", "--curve-folds", "0",
            "--epochs", "1"]
    for item in band_items(mock_files):
        argv += ["--image", item]
    assert training_main(argv) == 0
    card = json.loads(new.with_suffix(".json").read_text())
    assert card["finetune"]["n_labels"] == 6 and card["finetune"]["soft_labels"]


def test_import_reports_unknown_ids(app, qtbot, small, tmp_path):
    res, expert, inspector = small
    ids = np.asarray(res["id"])
    t = Table({"id": np.concatenate([ids[:3], [99901, 99902]]),
               "ra": np.concatenate([np.asarray(res["ra"])[:3], [10.0, 10.0]]),
               "dec": np.concatenate([np.asarray(res["dec"])[:3], [-5.0, -5.0]]),
               "class": [1, 2, 3, 4, 1], "labeller": ["cy"] * 5})
    path = tmp_path / "team.ecsv"
    t.write(path)
    report = import_labels_from(inspector, path)
    assert (report["added"], report["unknown"]) == (3, 2)
    assert report["unknown_examples"] == ["99901", "99902"]
    level, text = MESSAGES[-1]
    assert level == "warning" and "2 rows match no source" in text and "99901" in text
    np.testing.assert_array_equal(np.asarray(res["class_user"])[:3], [1, 2, 3])
    qtbot.waitUntil(lambda: "Labelled 3 of" in inspector.counter.text())
    # a file with a class outside 0-4 changes nothing
    t["class"][0] = 7
    t.write(path, overwrite=True)
    assert import_labels_from(inspector, path) is None
    assert "unknown class 7" in MESSAGES[-1][1]


def test_fewer_labels_than_classes(app, qtbot, small, user_models):
    res, expert, inspector = small
    label_first(qtbot, inspector, [1, 2, 0, 3], "ana")
    inspector.buttons["Fine-tune on my labels…"].click()
    assert inspector.last_dialog is None
    level, text = MESSAGES[-1]
    assert level == "warning" and "at least 4 labelled sources" in text and "has 3" in text
    assert list_user_models() == []


def test_cancel_mid_finetune_registers_nothing(app, qtbot, small, user_models):
    res, expert, inspector = small
    label_first(qtbot, inspector, expert[[t.row for t in inspector.tiles[:12]]], "ana")
    inspector.buttons["Fine-tune on my labels…"].click()
    dialog = inspector.last_dialog
    dialog.folds.setValue(2)
    dialog.epochs.setValue(60)
    dialog.buttons.button(dialog.buttons.Ok).click()
    runner = dialog.runner
    qtbot.waitUntil(lambda: runner.dialog.value() > 0, timeout=240_000)
    cancel = next(b for b in runner.dialog.findChildren(QtWidgets.QPushButton)
                  if b.text() == "Cancel")
    cancel.click()
    assert runner.state == "cancelled"
    assert runner.thread.wait(240_000)
    qtbot.wait(200)
    assert runner.state == "cancelled" and runner.version is None
    assert MESSAGES[-1][1] == "Fine-tuning cancelled: no model was registered."
    assert not user_models.exists() or list(user_models.iterdir()) == []
    assert ModelChooser().versions == []


def test_menu_without_labels(app):
    from glue_starclf.qt.actions import finetune_on_labels
    assert finetune_on_labels(app.session, app.data_collection) is None
    assert "No labels yet" in MESSAGES[-1][1]


def test_finetuned_member_is_named_once(app, qtbot, small, user_models):
    """Issue 16, bug 10: ``classifier-<version>``, not ``classifier-classifier-s0-ft-…``."""
    res, expert, inspector = small
    label_first(qtbot, inspector, expert[[t.row for t in inspector.tiles[:8]]], "ana")
    menu_action(app, "Fine-tune on my labels…").trigger()
    dialog = next(d for d in app.findChildren(QtWidgets.QDialog)
                  if d.windowTitle() == "Fine-tune on my labels" and d.isVisible())
    name = dialog.name.text()
    assert not name.startswith("classifier-") and "-ft-" in name
    dialog.folds.setValue(2)
    dialog.epochs.setValue(1)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner, timeout=600_000) == "done", dialog.runner.message
    version = dialog.runner.version
    assert version.name == name
    members = sorted(p.name for p in version.glob("classifier-*.*"))
    assert {f"classifier-{name}.json", f"classifier-{name}.safetensors"} <= set(members)
    assert not list(version.glob("classifier-classifier-*"))
