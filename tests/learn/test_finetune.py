"""``python -m training finetune`` and `glue_starclf.learn.finetune`: the fine-tuned model
and its card, the report, soft labels from votes, frozen layers, cancelling,
and bad input (one-line errors, exit status 2, nothing written)."""

import json
import shutil

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.core.checkpoints import load_checkpoint, sha256_file
from training_runs import run_training
from glue_starclf.learn.finetune import (finetune, labelled_sources, layer_groups, read_labels,
                                         report_paths, write_finetuned)
from training.train_classifier import labelled_stamps


#: Quick settings: every training is one short epoch.
FAST = ["--folds", "2", "--curve-folds", "1", "--epochs", "1"]


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A 384 x 384 mock field at 15 Mpc (the bank is 3-20 Mpc) with 60 sources."""
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=3, shape=(384, 384), n_sources=60, distance_mpc=15.0)
    folder = tmp_path_factory.mktemp("ftfield")
    paths = write_mosaic(mock, folder, prefix="f")
    images = [f"{b}={p}" for b, p in paths.items() if b != "truth"]
    return {"truth": mock.truth, "images": images, "catalog": paths["truth"], "folder": folder}


def _argv(model, labels, out, images, *extra):
    argv = ["finetune", "--from", model, "--labels", labels, "--out", out]
    for image in images:
        argv += ["--image", image]
    return argv + list(extra)


def _one_line_error(status, err, *words):
    assert status == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _write(table, path):
    table.write(path, format="ascii.csv" if str(path).endswith(".csv") else "ascii.ecsv",
                overwrite=True)
    return path


@pytest.fixture(scope="module")
def cli_run(trained_models, field, tmp_path_factory):
    """One fine-tuning run from the command line on hard labels with x, y."""
    folder = tmp_path_factory.mktemp("ft")
    labels = _write(field["truth"]["id", "x", "y", "class"], folder / "labels.ecsv")
    out = folder / "mine.safetensors"
    argv = _argv(trained_models["classifier"], labels, out, field["images"], *FAST,
                 "--freeze", "1")
    status, stdout, err = run_training(*argv)
    assert status == 0, err
    return {"out": out, "argv": argv, "stdout": stdout, "labels": labels}


def test_cli_writes_model_card_and_report(trained_models, cli_run):
    out = cli_run["out"]
    parent = trained_models["classifier"]
    model, card = load_checkpoint(out)
    assert card["family"] == "classifier" and card["stamp_size"] == 32
    assert card["parent"]["sha256"] == sha256_file(parent)
    assert card["parent"]["name"] == parent.stem
    assert card["training"]["labels"] == str(cli_run["labels"])
    assert card["training"]["command"] == "python -m training " + " ".join(
        str(a) for a in cli_run["argv"])
    assert card["training"]["date"] and card["training"]["wall_time_s"] > 0
    assert card["finetune"]["freeze"] == 1 and len(card["finetune"]["frozen_layers"]) == 1
    assert card["finetune"]["n_labels"] == 60 and card["finetune"]["folds"] == 2
    assert card["training"]["labels_info"]["unknown_ids"] == 0
    for when in ("cv_before", "cv_after"):
        acc = card["metrics"][when]["accuracy"]
        assert 0 <= acc["mean"] <= 1 and len(acc["folds"]) == 2
        assert card["metrics"][when]["pooled"]["n"] == 60
    assert card["temperature"] > 0
    curve = card["metrics"]["learning_curve"]
    assert [r["fraction"] for r in curve] == [0.125, 0.25, 0.5, 1.0]
    assert all("finetune" in r and "scratch" in r for r in curve)
    assert [r["n_scratch"] for r in curve] == sorted(r["n_scratch"] for r in curve)
    md, png = report_paths(out)
    text = md.read_text()
    for words in ("2-fold cross-validation", "original model", "fine-tuned", "from scratch",
                  png.name, parent.stem):
        assert words in text
    assert png.stat().st_size > 5_000
    assert "-fold accuracy" in cli_run["stdout"]
    # fine-tuning changed the weights, and the frozen first layer did not change
    before, _ = load_checkpoint(parent)
    a, b = before.state_dict(), model.state_dict()
    changed = [k for k in a if not np.array_equal(a[k].numpy(), b[k].numpy())]
    assert changed
    first = {id(m) for m in layer_groups(model)[0][1]}
    frozen = [name for name, m in model.named_modules() if id(m) in first]
    assert frozen and not any(k.rsplit(".", 1)[0] in frozen for k in changed)


def test_cli_never_overwrites(trained_models, field, cli_run, tmp_path):
    out = cli_run["out"]
    digest = sha256_file(out)
    status, _, err = run_training(*_argv(trained_models["classifier"], cli_run["labels"], out,
                                         field["images"], *FAST))
    _one_line_error(status, err, str(out), "--overwrite")
    assert sha256_file(out) == digest
    # the report alone existing is enough to stop
    other = tmp_path / "other.safetensors"
    report_paths(other)[0].write_text("mine")
    status, _, err = run_training(*_argv(trained_models["classifier"], cli_run["labels"], other,
                                         field["images"], *FAST))
    _one_line_error(status, err, "other_finetune.md")
    assert not other.exists()
    # nor the parent, even with --overwrite
    status, _, err = run_training(*_argv(trained_models["classifier"], cli_run["labels"],
                                         trained_models["classifier"], field["images"], *FAST,
                                         "--overwrite"))
    _one_line_error(status, err, "fine-tuned from")


def test_cv_before_is_the_parent_accuracy(trained_models, field):
    """The 'before' numbers are the original model's, on the same stamps and labels."""
    import torch

    from glue_starclf.core.cutouts import extract_stamps
    from glue_starclf.io.mosaic import open_mosaic
    from glue_starclf.learn.classifier import predict_logits
    truth = field["truth"]
    mosaic = open_mosaic(field["images"])
    stamps = np.nan_to_num(extract_stamps(mosaic, truth["x"], truth["y"], 32).stamps)
    mask = np.ones((len(truth), 5), np.float32)
    result = finetune(trained_models["classifier"], stamps, np.asarray(truth["class"]), mask,
                      folds=3, curve_folds=0, epochs=1)
    parent, card = load_checkpoint(trained_models["classifier"])
    logits = predict_logits(parent, stamps, mask) / card.get("temperature", 1.0)
    acc = float((torch.as_tensor(logits).argmax(1).numpy() == np.asarray(truth["class"]) - 1)
                .mean())
    assert result.report["cv"]["before"]["pooled"]["accuracy"] == pytest.approx(acc)
    assert result.report["cv"]["after"]["pooled"]["n"] == len(truth)
    assert result.report["curve"] == [{"fraction": f} for f in (0.125, 0.25, 0.5, 1.0)]
    assert not result.report["soft"]


# -- labels: votes, fractions, ids ---------------------------------------------------

def test_votes_of_several_labellers_become_soft_labels(tmp_path):
    t = Table({"id": [7, 7, 8, 8, 8, 9, 10], "x": [1.0, 1.0, 5.0, 5.0, 5.0, 9.0, 12.0],
               "y": [2.0, 2.0, 6.0, 6.0, 6.0, 9.0, 12.0],
               "class": [1, 2, 3, 3, 4, 0, 2], "labeller": list("ababcaa")})
    table, targets, info = read_labels(_write(t, tmp_path / "votes.csv"))
    assert list(table["id"]) == [7, 8, 10]
    np.testing.assert_allclose(targets, [[0.5, 0.5, 0, 0], [0, 0, 2 / 3, 1 / 3], [0, 1, 0, 0]])
    assert info == {"kind": "votes", "rows": 7, "unlabelled": 1, "max_votes": 3}
    # without ids, votes are merged by position
    del t["id"]
    table, targets2, _ = read_labels(_write(t, tmp_path / "votes_xy.ecsv"))
    np.testing.assert_allclose(targets2, targets)


def test_vote_fraction_columns_are_soft_labels(tmp_path):
    t = Table({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0], "p_class1": [0.2, 0.0, 0.0],
               "p_class2": [0.2, 0.0, 0.0], "p_class3": [0.0, 0.0, 3.0],
               "p_class4": [0.6, 0.0, 1.0]})
    _, targets, info = read_labels(_write(t, tmp_path / "p.ecsv"))
    np.testing.assert_allclose(targets, [[0.2, 0.2, 0, 0.6], [0, 0, 0.75, 0.25]])
    assert info["kind"] == "fractions" and info["unlabelled"] == 1


def test_finetune_on_soft_labels(trained_models, tmp_path):
    x, y, mask, _ = labelled_stamps([trained_models["classifier_bank"]])
    soft = np.full((40, 4), 0.1)
    soft[np.arange(40), y[:40]] = 0.7
    result = finetune(trained_models["classifier"], x[:40], soft, mask[:40], folds=2,
                      curve_folds=0, epochs=1)
    assert result.report["soft"] and result.card["finetune"]["soft_labels"]
    assert result.report["cv"]["after"]["rmse"]["mean"] > 0
    path = write_finetuned(result, tmp_path / "soft.safetensors")
    model, card = load_checkpoint(path)
    assert card["sha256"] == sha256_file(tmp_path / "soft.safetensors")
    assert "given in Python" in report_paths(tmp_path / "soft.safetensors")[0].read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_finetuned(result, tmp_path / "soft.safetensors")


def test_member_conditioned_on_the_stellar_ci_needs_it(trained_models, tmp_path):
    import torch

    from glue_starclf.core.checkpoints import load_card, save_checkpoint
    from glue_starclf.core.networks import StarClassifier
    card = load_card(trained_models["classifier"])
    keep = {k: v for k, v in card.items() if k not in ("_path", "sha256", "weights")}
    keep["kwargs"] = {"stellar_ci": True}
    torch.manual_seed(0)
    parent = save_checkpoint(StarClassifier(stellar_ci=True), tmp_path / "ci.safetensors", keep)
    x, y, mask, _ = labelled_stamps([trained_models["classifier_bank"]])
    with pytest.raises(ValueError, match="takes the field's stellar CI; give it"):
        finetune(parent, x[:40], y[:40] + 1, mask[:40], folds=2, curve_folds=0, epochs=1)
    result = finetune(parent, x[:40], y[:40] + 1, mask[:40], folds=2, curve_folds=0, epochs=1,
                      stellar_ci=1.3)
    assert result.card["kwargs"] == {"stellar_ci": True}
    assert result.card["finetune"]["stellar_ci"] == 1.3
    model, _ = load_checkpoint(write_finetuned(result, tmp_path / "tuned.safetensors"))
    assert model.stellar_ci
    # A member without the input ignores a given value.
    plain = finetune(trained_models["classifier"], x[:40], y[:40] + 1, mask[:40], folds=2,
                     curve_folds=0, epochs=1, stellar_ci=1.3)
    assert plain.card["finetune"]["stellar_ci"] is None


def test_labelled_field_stellar_ci_measured_or_default(caplog):
    import logging

    from glue_starclf.core.stellar_ci import STELLAR_CI_DEFAULT, measure_stellar_ci
    from glue_starclf.io.mosaic import Mosaic
    from glue_starclf.learn.finetune import labelled_field_stellar_ci
    from glue_starclf.sim.mosaic import random_field
    takes, plain = {"kwargs": {"stellar_ci": True}}, {"kwargs": {}}
    rich = Mosaic.from_arrays(random_field(seed=3, shape=(1024, 1024), n_sources=150).images)
    assert labelled_field_stellar_ci(plain, rich, [500.0], [500.0]) is None
    assert labelled_field_stellar_ci(takes, rich, [512.0], [512.0]) == pytest.approx(
        measure_stellar_ci(rich, (512.0, 512.0))[0])
    sparse = Mosaic.from_arrays(random_field(seed=1, shape=(128, 128), n_sources=3).images)
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        assert labelled_field_stellar_ci(takes, sparse, [60.0], [60.0]) == STELLAR_CI_DEFAULT
    assert any("not measured" in r.getMessage() for r in caplog.records)


def test_ids_looked_up_in_a_catalog_unknown_ones_skipped(trained_models, field, tmp_path):
    truth = field["truth"]
    t = Table({"id": list(truth["id"][:30]) + [9001, 9002, 9003],
               "class": list(truth["class"][:30]) + [1, 2, 3]})
    labels = _write(t, tmp_path / "ids.csv")
    out = tmp_path / "ids.safetensors"
    status, stdout, err = run_training(*_argv(trained_models["classifier"], labels, out,
                                              field["images"], "--catalog", field["catalog"],
                                              *FAST))
    assert status == 0, err
    assert "3 labelled ids not in" in err and "9001" in err
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["labels_info"]["unknown_ids"] == 3
    assert card["finetune"]["n_labels"] == 30
    # positions come from the catalog: the same as those of the truth rows
    from glue_starclf.io.mosaic import open_mosaic
    x, y, targets, info = labelled_sources(labels, open_mosaic(field["images"]),
                                           field["catalog"])
    np.testing.assert_allclose(x, truth["x"][:30], atol=1e-6)
    assert targets.argmax(1).tolist() == (np.asarray(truth["class"][:30]) - 1).tolist()


# -- bad input -----------------------------------------------------------------------

def test_only_unknown_ids(trained_models, field, tmp_path):
    labels = _write(Table({"id": [9001, 9002], "class": [1, 2]}), tmp_path / "l.csv")
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(*_argv(trained_models["classifier"], labels, out,
                                         field["images"], "--catalog", field["catalog"]))
    _one_line_error(status, err, "none of its 2 labelled ids", "9001")
    assert not out.exists()


def test_ids_without_a_catalog(trained_models, field, tmp_path):
    labels = _write(Table({"id": [1, 2], "class": [1, 2]}), tmp_path / "l.csv")
    status, _, err = run_training(*_argv(trained_models["classifier"], labels,
                                         tmp_path / "m.safetensors", field["images"]))
    _one_line_error(status, err, "--catalog")


@pytest.mark.parametrize("bad", [5, -1, 2.5])
def test_unknown_class(trained_models, field, tmp_path, bad):
    t = field["truth"]["x", "y", "class"].copy()
    t["class"] = t["class"].astype(float)
    t["class"][4] = bad
    labels = _write(t, tmp_path / "l.ecsv")
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(*_argv(trained_models["classifier"], labels, out,
                                         field["images"]))
    _one_line_error(status, err, "unknown class", "row 5")
    assert not out.exists()


def test_fewer_labels_than_classes(trained_models, field, tmp_path):
    labels = _write(field["truth"]["x", "y", "class"][:3], tmp_path / "l.ecsv")
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(*_argv(trained_models["classifier"], labels, out,
                                         field["images"]))
    _one_line_error(status, err, "only 3 labelled sources", "number of classes")
    assert not out.exists()


def test_labels_off_the_mosaic(trained_models, field, tmp_path):
    t = field["truth"]["x", "y", "class"].copy()
    t["x"] += 5000
    labels = _write(t, tmp_path / "l.ecsv")
    status, _, err = run_training(*_argv(trained_models["classifier"], labels,
                                         tmp_path / "m.safetensors", field["images"]))
    _one_line_error(status, err, "no labelled source lies on the mosaic")


def test_band_the_model_lacks(trained_models, field, cli_run, tmp_path):
    src = trained_models["classifier"]
    model = tmp_path / "four.safetensors"
    shutil.copy(src, model)
    card = json.loads(src.with_suffix(".json").read_text())
    card["bands"] = ["F336W", "F438W", "F555W", "F814W"]
    card["weights"] = model.name
    model.with_suffix(".json").write_text(json.dumps(card))
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(*_argv(model, cli_run["labels"], out, field["images"]))
    _one_line_error(status, err, "no band F275W")
    assert not out.exists()


def test_corrupt_checkpoint(trained_models, field, cli_run, tmp_path):
    src = trained_models["classifier"]
    model = tmp_path / "bad.safetensors"
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    card = json.loads(src.with_suffix(".json").read_text())
    card["weights"] = model.name
    model.with_suffix(".json").write_text(json.dumps(card))
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(*_argv(model, cli_run["labels"], out, field["images"]))
    _one_line_error(status, err, "sha256 differs")
    # a card that is not JSON
    model.with_suffix(".json").write_text("{not json")
    status, _, err = run_training(*_argv(model, cli_run["labels"], out, field["images"]))
    _one_line_error(status, err, "not a readable model card")
    assert not out.exists()


def test_physical_model_is_refused(trained_models, field, cli_run, tmp_path):
    status, _, err = run_training(*_argv(trained_models["physical"], cli_run["labels"],
                                         tmp_path / "m.safetensors", field["images"]))
    _one_line_error(status, err, "physical model", "classifier")


def test_wrong_shape_stamps(trained_models):
    stamps = np.zeros((8, 5, 64, 64), np.float32)
    with pytest.raises(ValueError, match=r"not \(n, 5, 32, 32\)"):
        finetune(trained_models["classifier"], stamps, np.arange(8) % 4 + 1)
    with pytest.raises(ValueError, match="8 labels for 6 stamps"):
        finetune(trained_models["classifier"], stamps[:6, :, :32, :32], np.arange(8) % 4 + 1)
    with pytest.raises(ValueError, match="unknown class 7"):
        finetune(trained_models["classifier"], stamps[:, :, :32, :32], [7] * 8)


def test_freeze_too_deep(trained_models):
    model, _ = load_checkpoint(trained_models["classifier"])
    n = len(layer_groups(model))
    stamps = np.random.default_rng(0).normal(size=(8, 5, 32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match=f"has {n} layers"):
        finetune(trained_models["classifier"], stamps, np.arange(8) % 4 + 1, freeze=n)


def test_layer_groups_count_parallel_pathways_once(trained_models):
    import torch
    model, _ = load_checkpoint(trained_models["classifier"])
    groups = layer_groups(model)
    weighted = [m for m in model.modules()
                if getattr(m, "weight", None) is not None and m.weight.dim() >= 2]
    n_paths = len(model.pathways)
    assert n_paths > 1
    # every conv/linear module is in exactly one layer, the pathways' side by side
    members = [m for _, mods in groups for m in mods if m in weighted]
    assert len(members) == len(weighted) == len(set(map(id, members)))
    assert len(groups) < len(weighted)
    first = [m for m in groups[0][1] if isinstance(m, torch.nn.Conv2d)]
    assert len(first) == n_paths


def test_cancel_stops_and_writes_nothing(trained_models, tmp_path):
    x, y, mask, _ = labelled_stamps([trained_models["classifier_bank"]])
    calls = []

    class Cancelled(Exception):
        pass

    def callback(done, total):
        calls.append((done, total))
        if done >= 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        finetune(trained_models["classifier"], x[:40], y[:40] + 1, mask[:40], folds=2,
                 curve_folds=1, epochs=2, callback=callback)
    assert calls[0][0] == 0 and calls[-1][0] == 3
    assert calls[0][1] > 10  # the total is known from the start
    assert list(tmp_path.iterdir()) == []


def test_cli_never_writes_into_the_bundled_models(trained_models, field, cli_run):
    from glue_starclf.core.checkpoints import bundled_models_dir
    folder = bundled_models_dir()
    before = sorted(p.name for p in folder.iterdir())
    status, _, err = run_training(*_argv(trained_models["classifier"], cli_run["labels"],
                                         folder / "classifier-s0-ft.safetensors",
                                         field["images"], *FAST))
    _one_line_error(status, err, "bundled models folder", "--overwrite")
    assert sorted(p.name for p in folder.iterdir()) == before
