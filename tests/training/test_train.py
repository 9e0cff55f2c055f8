"""``python -m training train-classifier | train-physical``: cards, resume,
determinism, the NaN guard and bad input (one-line errors, exit status 2)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table

from glue_starclf.core.checkpoints import load_checkpoint, sha256_file
from glue_starclf.learn.banks import open_bank
from training_runs import classifier_argv, physical_argv, run_training


def _tensors(path):
    from safetensors.numpy import load_file
    return load_file(str(path))


def _error_lines(err):
    """Lines of stderr that are not progress-bar redraws."""
    lines = [ln for chunk in err.split("\n") for ln in chunk.split("\r")]
    return [ln.strip() for ln in lines if ln.strip() and "it/s" not in ln and "s/it" not in ln
            and "?it" not in ln and not ln.startswith("epoch ")]


def _assert_one_line_error(status, err, *words):
    assert status == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in _error_lines(err) if ln.startswith("error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# -- the end-to-end run and its model card -------------------------------------

def _common_card(card, path, family, argv):
    assert card["family"] == family
    assert card["architecture"] == {"classifier": "StarClassifier",
                                    "physical": "PhysicalNet"}[family]
    assert isinstance(card["kwargs"], dict)
    assert card["bands"] == ["F275W", "F336W", "F438W", "F555W", "F814W"]
    assert card["stamp_size"] == {"classifier": 32, "physical": 64}[family]
    assert card["normalisation"]
    assert card["seed"] == 0
    assert card["training"]["command"] == "python -m training " + " ".join(argv)
    assert card["training"]["wall_time_s"] > 0  # seconds for these runs, not 0.0
    assert card["training"]["epochs"] == 1
    assert card["training"]["machine"]["device"] == "cpu"
    assert card["training"]["machine"]["torch_threads"] >= 1
    assert card["weights"] == path.name
    assert card["sha256"] == sha256_file(path)
    assert len(card["sha256"]) == 64


def test_classifier_run_writes_weights_and_card(trained_models):
    path = trained_models["classifier"]
    assert path.suffix == ".safetensors" and path.is_file()
    card = json.loads(path.with_suffix(".json").read_text())
    _common_card(card, path, "classifier", trained_models["classifier_argv"])
    val = card["metrics"]["validation"]
    assert 0 <= val["accuracy"] <= 1
    assert len(val["recall"]) == 4 and all(0 <= r <= 1 for r in val["recall"])
    assert 0 <= val["ece_before"] <= 1 and 0 <= val["ece_after"] <= 1
    assert val["n"] == card["training"]["n_val"] > 0
    assert card["training"]["n_train"] + card["training"]["n_val"] == 400
    assert card["temperature"] > 0
    assert "epoch 1: loss" in trained_models["classifier_stdout"]
    model, loaded = load_checkpoint(path)
    assert loaded["sha256"] == card["sha256"]
    # the metrics are the saved weights' on the held-out sources (the run's split: the
    # first draw of its seed, the default --val-fraction 0.1)
    from glue_starclf.learn.classifier import expected_calibration_error, predict_logits
    from training.train_classifier import labelled_stamps, split
    x, y, mask, fields = labelled_stamps([trained_models["classifier_bank"]])
    held = split(fields, [], 0.1, np.random.default_rng(card["seed"]))
    assert held.sum() == val["n"]
    logits = torch.from_numpy(predict_logits(model, x[held], mask[held]))
    y = y[held]
    pred = logits.argmax(dim=1).numpy()
    conf = np.zeros((4, 4), int)
    np.add.at(conf, (y, pred), 1)
    assert val["confusion"] == conf.tolist()
    assert val["accuracy"] == pytest.approx(np.mean(pred == y))
    assert val["binary_accuracy"] == pytest.approx(np.mean((pred < 2) == (y < 2)))
    assert val["recall"] == pytest.approx([np.mean(pred[y == k] == k) for k in range(4)])
    # a 1-epoch model may predict one class for all: the probabilities tell runs apart
    temp = card["temperature"]
    for key, t in (("ece_before", 1.0), ("ece_after", temp)):
        probs = torch.softmax(logits / t, dim=1).numpy()
        assert val[key] == pytest.approx(expected_calibration_error(probs, y), abs=1e-9), key

    def nll(t):
        return torch.nn.functional.cross_entropy(logits / t, torch.from_numpy(y)).item()
    assert nll(temp) <= min(nll(temp * 1.1), nll(temp / 1.1))  # the fitted temperature


def test_physical_run_writes_weights_and_card(trained_models):
    path = trained_models["physical"]
    assert path.is_file()
    card = json.loads(path.with_suffix(".json").read_text())
    _common_card(card, path, "physical", trained_models["physical_argv"])
    for bands in ("five_bands", "three_bands"):
        val = card["metrics"]["validation"][bands]
        for key in ("p95_abs_err_log_age", "p95_abs_err_log_mass", "p95_abs_err_av",
                    "p95_abs_err_log_r_h"):
            assert np.isfinite(val[key]) and val[key] >= 0, (bands, key, val[key])
        assert 0 <= val["cb_auc"] <= 1
    load_checkpoint(path)


def test_trained_weights_are_finite(trained_models):
    for name in ("classifier", "physical", "classifier_s1"):
        for key, t in _tensors(trained_models[name]).items():
            assert np.isfinite(t).all(), (name, key)


# -- determinism and resume ----------------------------------------------------------

@pytest.fixture(scope="module")
def rerun_s0(trained_models, tmp_path_factory):
    """The fixture's classifier-s0 command again, into another folder."""
    out = tmp_path_factory.mktemp("rerun") / "classifier-s0.safetensors"
    status, stdout, err = run_training(*classifier_argv(trained_models["classifier_bank"], out))
    assert status == 0, err
    return out


def test_same_seed_same_bank_gives_identical_weights(trained_models, rerun_s0):
    a, b = _tensors(trained_models["classifier"]), _tensors(rerun_s0)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # ... and the comparison can fail: another seed gives other weights
    other = _tensors(trained_models["classifier_s1"])
    assert any(not np.array_equal(a[k], other[k]) for k in a)


def test_resume_continues_at_the_next_epoch(trained_models, rerun_s0, tmp_path):
    """``--epochs 1``, then the same command with ``--epochs 2 --resume``."""
    import shutil

    import torch
    out = tmp_path / rerun_s0.name
    state = out.with_suffix(".state.pt")
    for src in (rerun_s0, rerun_s0.with_suffix(".json"), rerun_s0.with_suffix(".state.pt")):
        shutil.copy(src, tmp_path / src.name)
    assert torch.load(state, weights_only=True)["epoch"] == 1
    first = _tensors(out)
    status, out2, err2 = run_training(*classifier_argv(trained_models["classifier_bank"], out,
                                                       0, 2), "--resume")
    assert status == 0, err2
    assert "epoch 2: loss" in out2
    assert "epoch 1" not in out2 + err2
    assert torch.load(state, weights_only=True)["epoch"] == 2
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["epochs"] == 2
    assert card["sha256"] == sha256_file(out)
    second = _tensors(out)
    # epoch 2 trained (a learning rate of zero left from the 1-epoch schedule would not)
    assert any(not np.array_equal(first[k], second[k]) for k in first)
    for t in second.values():
        assert np.isfinite(t).all()


# -- NaN guard ---------------------------------------------------------------------

@pytest.mark.parametrize("family", ["classifier", "physical"])
def test_non_finite_loss_stops_without_writing(trained_models, tmp_path, family):
    from glue_starclf.learn.loop import NonFiniteLoss
    out = tmp_path / f"{family}-nan.safetensors"
    make = classifier_argv if family == "classifier" else physical_argv
    argv = make(trained_models[f"{family}_bank"], out, 0, 2, "--lr", "1e30")
    status, _, err = run_training(*argv)
    line = _assert_one_line_error(status, err, "not finite", "--lr")
    # the line is the NonFiniteLoss message of glue_starclf.learn.loop
    assert issubclass(NonFiniteLoss, RuntimeError)
    assert line.startswith("error: loss was not finite") or \
        line.startswith("error: weights became non-finite")
    assert not out.exists()
    assert not out.with_suffix(".json").exists()


def test_fit_raises_non_finite_loss_even_with_few_batches(tmp_path):
    """One batch per epoch: the guard must not wait for 20 bad batches in a row."""
    import torch

    from glue_starclf.learn.loop import NonFiniteLoss, fit

    model = torch.nn.Linear(3, 1)
    data = torch.utils.data.TensorDataset(torch.ones(8, 3))
    calls = []

    def step(net, batch):
        calls.append(1)
        return net(batch[0]).sum() * float("nan")

    with pytest.raises(NonFiniteLoss, match="not finite"):
        fit(model, data, step, epochs=3, batch_size=8, lr=1e-3, seed=0,
            state_path=tmp_path / "s.pt", progress=False)
    assert len(calls) == 1
    assert not (tmp_path / "s.pt").exists()


@pytest.mark.parametrize("family, width", [("classifier", "8,12,12,24,24"),
                                           ("physical", "8,12,16,24")])
def test_width_and_hidden_go_into_the_card(trained_models, tmp_path, family, width):
    out = tmp_path / "wide.safetensors"
    argv = classifier_argv if family == "classifier" else physical_argv
    status, _, err = run_training(*argv(trained_models[f"{family}_bank"], out),
                                  "--width", width, "--hidden", "20")
    assert status == 0, err
    model, card = load_checkpoint(out)
    assert card["kwargs"] == {"width": [int(c) for c in width.split(",")], "hidden": 20}
    first_conv, hidden = ((model.pathways[0][0], model.head[0]) if family == "classifier"
                          else (model.features[0], model.trunk[0]))
    assert first_conv.out_channels == 8
    assert hidden.out_features == 20


# -- bad input -----------------------------------------------------------------------

def test_out_must_be_safetensors(trained_models, tmp_path):
    out = tmp_path / "x.pt"
    status, _, err = run_training(*classifier_argv(trained_models["classifier_bank"], out))
    _assert_one_line_error(status, err, "x.pt", ".safetensors")
    assert not out.exists()
    status, _, err = run_training(*physical_argv(trained_models["physical_bank"], out))
    _assert_one_line_error(status, err, "x.pt", ".safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train-classifier", "train-physical"])
def test_missing_bank_folder(tmp_path, command):
    missing = tmp_path / "nosuchbank"
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(command, "--bank", missing, "--out", out, "--epochs", 1)
    _assert_one_line_error(status, err, "nosuchbank")
    assert not out.exists()


def test_physical_bank_to_train_classifier(trained_models, tmp_path):
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(*classifier_argv(trained_models["physical_bank"], out))
    _assert_one_line_error(status, err, str(trained_models["physical_bank"]))
    assert not out.exists()


def test_classifier_bank_to_train_physical(trained_models, tmp_path):
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(*physical_argv(trained_models["classifier_bank"], out))
    _assert_one_line_error(status, err, str(trained_models["classifier_bank"]), "classifier")
    assert not out.exists()


@pytest.mark.parametrize("family, option, value", [
    ("classifier", "--width", "8,12,12,24"), ("classifier", "--width", "8,12,x,24,24"),
    ("classifier", "--width", "8,12,0,24,24"), ("classifier", "--hidden", "-3"),
    ("classifier", "--hidden", "many"), ("classifier", "--epochs", "0"),
    ("classifier", "--batch-size", "0"), ("physical", "--width", "8,12,16"),
    ("physical", "--width", "8,12,16,24,32"), ("physical", "--width", "8,0,16,24"),
    ("physical", "--hidden", "0")])
def test_bad_network_size_or_schedule(trained_models, tmp_path, capsys, family, option, value):
    from training.__main__ import main
    out = tmp_path / "m.safetensors"
    argv = classifier_argv if family == "classifier" else physical_argv
    with pytest.raises(SystemExit) as exit_info:
        main(argv(trained_models[f"{family}_bank"], out) + [option, value])
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and option in errors[0] and repr(value) in errors[0], errors
    assert not out.exists()


@pytest.mark.parametrize("family", ["classifier", "physical"])
@pytest.mark.parametrize("option, value", [("--val-fraction", "0"), ("--val-fraction", "1"),
                                           ("--val-fraction", "ten"), ("--band-dropout", "1"),
                                           ("--band-dropout", "-0.1")])
def test_bad_fraction_or_probability(trained_models, tmp_path, capsys, family, option, value):
    from training.__main__ import main
    out = tmp_path / "m.safetensors"
    make = classifier_argv if family == "classifier" else physical_argv
    with pytest.raises(SystemExit) as exit_info:
        main(make(trained_models[f"{family}_bank"], out) + [option, value])
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and option in errors[0] and repr(value) in errors[0], errors
    assert not out.exists()


@pytest.mark.parametrize("family", ["classifier", "physical"])
def test_empty_validation_split(trained_models, tmp_path, family):
    """A tiny fraction of a small bank picks nothing: refused before training."""
    out = tmp_path / "m.safetensors"
    make = classifier_argv if family == "classifier" else physical_argv
    status, _, err = run_training(*make(trained_models[f"{family}_bank"], out),
                                  "--val-fraction", "1e-9")
    _assert_one_line_error(status, err, "--val-fraction", "picked none")
    assert not out.exists() and not out.with_suffix(".state.pt").exists()


@pytest.mark.parametrize("command", ["train-physical", "finetune", "bench-finetune"])
def test_zero_epochs_is_refused(command, tmp_path, capsys):
    """Zero epochs would write an untrained checkpoint; refused before any data is read."""
    from training.__main__ import main
    out = tmp_path / "m.safetensors"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--epochs", "0", "--out", str(out)])
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and "--epochs" in errors[0] and "'0'" in errors[0], errors
    assert not out.exists()


def test_bench_finetune_needs_labels(capsys):
    from training.__main__ import main
    with pytest.raises(SystemExit) as exit_info:
        main(["bench-finetune", "--n", "0"])
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and "--n" in errors[0] and "'0'" in errors[0], errors


def test_unknown_validation_field(trained_models, tmp_path):
    out = tmp_path / "m.safetensors"
    status, _, err = run_training(*classifier_argv(trained_models["classifier_bank"], out),
                                  "--val-fields", "nosuchfield")
    _assert_one_line_error(status, err, "--val-fields", "nosuchfield")
    assert not out.exists()


def test_classifier_on_a_mosaic_and_a_legus_catalog(tmp_path, write_legus_tab):
    """The path of a user with MAST data: FITS bands + a LEGUS .tab with visual classes."""
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=11, shape=(384, 384), n_sources=40)
    paths = write_mosaic(mock, tmp_path / "field", prefix="u")
    t = mock.truth
    cat = tmp_path / "hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab"
    write_legus_tab(cat, t["x"], t["y"], t["ra"], t["dec"], t["class"])
    out = tmp_path / "real.safetensors"
    argv = ["train-classifier", "--catalog", cat, "--out", out, "--epochs", "1",
            "--val-fraction", "0.25"]
    for band, path in paths.items():
        if band != "truth":
            argv += ["--image", f"{band}={path}"]
    status, _, err = run_training(*argv)
    assert status == 0, err
    model, card = load_checkpoint(out)
    assert card["training"]["n_train"] + card["training"]["n_val"] == len(t)
    assert "--catalog" in card["training"]["command"]


@pytest.mark.parametrize("family", ["classifier", "physical"])
def test_existing_model_needs_overwrite(trained_models, tmp_path, family):
    argv = classifier_argv if family == "classifier" else physical_argv
    out = tmp_path / f"{family}.safetensors"
    out.write_bytes(b"someone's model")
    status, _, err = run_training(*argv(trained_models[f"{family}_bank"], out))
    assert status == 2 and str(out) in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert out.read_bytes() == b"someone's model"
    out.unlink()
    out.with_suffix(".json").write_text("{}")  # the card alone is enough to stop
    status, _, err = run_training(*argv(trained_models[f"{family}_bank"], out))
    assert status == 2 and f"{family}.json" in err
    assert not out.exists()


@pytest.mark.parametrize("family", ["classifier", "physical"])
def test_bundled_models_folder_needs_overwrite(trained_models, family):
    from glue_starclf.core.checkpoints import bundled_models_dir
    argv = classifier_argv if family == "classifier" else physical_argv
    folder = bundled_models_dir()
    before = sorted(p.name for p in folder.iterdir())
    out = folder / f"{family}-s99.safetensors"
    status, _, err = run_training(*argv(trained_models[f"{family}_bank"], out))
    assert status == 2 and "bundled models folder" in err and "--overwrite" in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("family", ["classifier", "physical"])
def test_interrupted_and_resumed_run_is_bit_identical(trained_models, tmp_path, family):
    """Epoch 1, stop, resume for epoch 2 == two epochs straight: the sampler, augmentation,
    band-dropout and torch random states are restored with the weights."""
    argv = classifier_argv if family == "classifier" else physical_argv
    bank = trained_models[f"{family}_bank"]
    straight = tmp_path / "straight" / f"{family}.safetensors"
    status, _, err = run_training(*argv(bank, straight, 0, 2))
    assert status == 0, err
    resumed = tmp_path / "resumed" / f"{family}.safetensors"
    status, out, err = run_training(*argv(bank, resumed, 0, 2), "--minutes", "0")
    assert status == 0, err
    assert "epoch 1: loss" in out and "epoch 2" not in out  # stopped after epoch 1
    status, out, err = run_training(*argv(bank, resumed, 0, 2), "--resume")
    assert status == 0, err
    assert "epoch 2: loss" in out and "epoch 1:" not in out
    a, b = _tensors(straight), _tensors(resumed)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_with_other_network_arguments_or_a_bad_state_file(trained_models, tmp_path):
    bank = trained_models["classifier_bank"]
    out = tmp_path / "c.safetensors"
    status, _, err = run_training(*classifier_argv(bank, out, 0, 2), "--minutes", "0",
                                  "--width", "8,8,8,8,8")
    assert status == 0, err
    state = out.with_suffix(".state.pt")
    status, _, err = run_training(*classifier_argv(bank, out, 0, 2), "--resume",
                                  "--width", "8,8,8,16,16")
    lines = _error_lines(err)
    assert status == 2 and len(lines) == 1, err
    assert str(state) in lines[0] and "kwargs" in lines[0] and "[8, 8, 8, 16, 16]" in lines[0]
    blob = state.read_bytes()
    state.write_bytes(blob[:len(blob) // 2])  # a truncated file
    status, _, err = run_training(*classifier_argv(bank, out, 0, 2), "--resume",
                                  "--width", "8,8,8,8,8")
    lines = _error_lines(err)
    assert status == 2 and len(lines) == 1 and str(state) in lines[0], err
    assert "not a readable training state" in lines[0]
    import pickle
    state.write_bytes(pickle.dumps({"anything": object}))  # a foreign pickle
    status, _, err = run_training(*classifier_argv(bank, out, 0, 2), "--resume",
                                  "--width", "8,8,8,8,8")
    lines = _error_lines(err)
    assert status == 2 and len(lines) == 1 and str(state) in lines[0], err
    import torch
    torch.save({"model": {}, "epoch": 1}, state)  # a state of something else
    status, _, err = run_training(*classifier_argv(bank, out, 0, 2), "--resume",
                                  "--width", "8,8,8,8,8")
    lines = _error_lines(err)
    assert status == 2 and len(lines) == 1 and "lacks optimizer" in lines[0], err


def test_physical_rows_span_several_banks_in_order():
    from training.train_physical import _Rows
    a = np.arange(3 * 2).reshape(3, 2)
    b = 100 + np.arange(4 * 2).reshape(4, 2)
    rows = _Rows([a, b], np.array([6, 0, 3, 2]))
    assert len(rows) == 4
    stacked = np.concatenate([a, b])
    for i, r in enumerate([6, 0, 3, 2]):
        np.testing.assert_array_equal(rows[i], stacked[r])


def test_physical_trains_on_two_banks(trained_models, tmp_path):
    out = tmp_path / "two.safetensors"
    bank = trained_models["physical_bank"]
    status, _, err = run_training(*physical_argv(bank, out), "--bank", str(bank))
    assert status == 0, err
    card = load_checkpoint(out)[1]
    n_bank = len(open_bank(bank)[1])
    assert card["training"]["n_train"] + card["training"]["n_val"] == 2 * n_bank


# -- starting from a trained member (--init) ------------------------------------------

def _init_argv(family, trained_models, out):
    argv = classifier_argv if family == "classifier" else physical_argv
    return argv(trained_models[f"{family}_bank"], out)


def _weights(model):
    return {k: v.numpy() for k, v in model.state_dict().items()
            if "running" not in k and "num_batches" not in k}


@pytest.mark.parametrize("family", ["classifier", "physical"])
def test_init_starts_from_the_member(trained_models, tmp_path, family):
    start = trained_models[family]
    first, start_card = load_checkpoint(start)
    out = tmp_path / "more.safetensors"
    # lr 0: the weights stay the member's (only BatchNorm's running statistics move).
    status, _, err = run_training(*_init_argv(family, trained_models, out),
                                  "--init", start.with_suffix(".json"), "--lr", "0")
    assert status == 0, err
    model, card = load_checkpoint(out)
    assert card["kwargs"] == start_card["kwargs"]
    assert card["training"]["init"]["sha256"] == start_card["sha256"]
    assert card["training"]["init"]["card"] == start.with_suffix(".json").name
    assert card["training"]["init"]["training"] == start_card["training"]
    before, after = _weights(first), _weights(model)
    for name in before:
        assert np.array_equal(before[name], after[name]), name
    # A real step moves them.
    moved = tmp_path / "moved.safetensors"
    status, _, err = run_training(*_init_argv(family, trained_models, moved), "--init", start)
    assert status == 0, err
    after = _weights(load_checkpoint(moved)[0])
    assert any(not np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("family, case", [
    ("physical", "other"), ("physical", "sizes"), ("physical", "missing"),
    ("classifier", "other"), ("classifier", "sizes"), ("classifier", "stellar_ci"),
    ("classifier", "missing")])
def test_init_errors(trained_models, tmp_path, family, case):
    out = tmp_path / "m.safetensors"
    other = "classifier" if family == "physical" else "physical"
    init = {"other": trained_models[other], "sizes": trained_models[family],
            "stellar_ci": trained_models[family], "missing": tmp_path / "nosuch.json"}[case]
    size = ["--width", "8,12,16,24"] if family == "physical" else ["--hidden", "7"]
    extra = {"sizes": size, "stellar_ci": ["--stellar-ci"]}.get(case, [])
    status, _, err = run_training(*_init_argv(family, trained_models, out), "--init", init,
                                  *extra)
    words = {"other": ("--init", other), "sizes": tuple(size), "stellar_ci": ("--init",
             "stellar CI"), "missing": ("nosuch.json",)}[case]
    _assert_one_line_error(status, err, *words)
    assert not out.exists()


NGC1566 = (__import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data"
           / "legus" / "hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab")


def test_classifier_conditioned_on_the_measured_stellar_ci(trained_models, tmp_path):
    # An anchored bank measures its field's stellar CI on the rendered image.
    bank = tmp_path / "legus"
    status, _, err = run_training("make-bank", "--kind", "legus", "--catalogs", NGC1566,
                                  "--region-size", 1200, "--seed", 2, "--out", bank)
    assert status == 0, err
    truth = open_bank(bank)[1]
    assert np.isfinite(truth["stellar_ci"]).all()
    assert np.allclose(truth["stellar_ci"], truth["psf_stellar_ci"], atol=0.05)
    out = tmp_path / "ci.safetensors"
    argv = classifier_argv(bank, out, 0, 1, "--stellar-ci", "--stellar-ci-jitter", "0.02")
    status, _, err = run_training(*argv)
    assert status == 0, err
    model, card = load_checkpoint(out)
    assert card["kwargs"] == {"stellar_ci": True} and model.stellar_ci
    # An engine bank has no field to measure on: its stamps take their PSF's value.
    engine = trained_models["classifier_bank"]
    status, _, err = run_training(*classifier_argv(engine, tmp_path / "psf.safetensors", 0, 1,
                                                   "--stellar-ci"))
    assert status == 0, err
    assert "psf_stellar_ci" not in err
    # A field without a measurement falls back to it, and says so.
    unmeasured = tmp_path / "unmeasured"
    shutil.copytree(bank, unmeasured)
    truth = Table.read(unmeasured / "truth.ecsv")
    truth["stellar_ci"][:5] = np.nan
    truth.write(unmeasured / "truth.ecsv", overwrite=True)
    status, _, err = run_training(*classifier_argv(unmeasured, tmp_path / "un.safetensors", 0,
                                                   1, "--stellar-ci"))
    assert status == 0, err
    assert "5 of" in err and "take their PSF's (psf_stellar_ci)" in err
    # A bank with neither value is refused.
    old = tmp_path / "old"
    shutil.copytree(engine, old)
    truth = Table.read(old / "truth.ecsv")
    truth.remove_columns([c for c in ("stellar_ci", "psf_stellar_ci") if c in truth.colnames])
    truth.write(old / "truth.ecsv", overwrite=True)
    status, _, err = run_training(*classifier_argv(old, tmp_path / "no.safetensors", 0, 1,
                                                   "--stellar-ci"))
    _assert_one_line_error(status, err, "classifier", "neither a measured stellar_ci")
    status, _, err = run_training(*classifier_argv(bank, tmp_path / "neg.safetensors", 0, 1,
                                                   "--stellar-ci", "--stellar-ci-jitter", "-1"))
    _assert_one_line_error(status, err, "--stellar-ci-jitter -1")
    status, _, err = run_training(*classifier_argv(bank, tmp_path / "bal.safetensors", 0, 1,
                                                   "--stellar-ci-balance"))
    _assert_one_line_error(status, err, "--stellar-ci-balance needs --stellar-ci")
    assert not (tmp_path / "no.safetensors").exists()
    assert not (tmp_path / "neg.safetensors").exists()
    assert not (tmp_path / "bal.safetensors").exists()


def test_physical_conditioned_on_the_stellar_ci(trained_models, tmp_path):
    from training.train_physical import predict
    bank = trained_models["physical_bank"]
    out = tmp_path / "ci.safetensors"
    status, _, err = run_training(*physical_argv(bank, out, 0, 1, "--stellar-ci"))
    assert status == 0, err
    # A physical bank renders stamps: their PSF's value is the one there is, taken silently.
    assert "psf_stellar_ci" not in err
    model, card = load_checkpoint(out)
    assert card["kwargs"] == {"stellar_ci": True} and model.stellar_ci
    assert card["inputs"][-1] == "stellar_ci"
    # The value reaches every head.
    stamps, truth, _ = open_bank(bank)
    x, d = np.asarray(stamps[:8]), np.asarray(truth["distance_mpc"][:8])
    low, high = predict(model, x, d, stellar_ci=1.2), predict(model, x, d, stellar_ci=1.5)
    assert all(not np.allclose(low[k], high[k]) for k in low)
    with pytest.raises(ValueError, match="needs the field's stellar CI"):
        model(torch.zeros(1, 5, 64, 64), torch.ones(1, 5), torch.ones(1, 1))
    # --init must say whether the network takes it.
    for start, flag in ((out, ()), (trained_models["physical"], ("--stellar-ci",))):
        bad = tmp_path / "bad.safetensors"
        status, _, err = run_training(*physical_argv(bank, bad, 0, 1, "--init", start, *flag))
        _assert_one_line_error(status, err, "--init", "stellar CI")
        assert not bad.exists()
    more = tmp_path / "more.safetensors"
    status, _, err = run_training(*physical_argv(bank, more, 0, 1, "--init", out,
                                                 "--stellar-ci"))
    assert status == 0, err
    status, _, err = run_training(*physical_argv(bank, tmp_path / "neg.safetensors", 0, 1,
                                                 "--stellar-ci", "--stellar-ci-jitter", "-1"))
    _assert_one_line_error(status, err, "--stellar-ci-jitter -1")


def test_stellar_ci_balance_gives_every_class_the_same_stellar_ci_distribution():
    from training.train_classifier import stellar_ci_balance
    rng = np.random.default_rng(0)
    # Class 4 (label 3) comes mostly from broad-PSF fields, the others from sharp ones.
    labels = np.repeat([0, 1, 2, 3], 4000)
    ci = np.where(labels == 3, rng.normal(1.34, 0.05, labels.size),
                  rng.normal(1.27, 0.05, labels.size))
    w = stellar_ci_balance(ci, labels, clip=(0.01, 100.0))
    for k in range(4):  # each class keeps its total weight
        assert w[labels == k].sum() == pytest.approx((labels == k).sum())
    high = ci > 1.38
    share = [w[high & (labels == k)].sum() / w[high].sum() for k in range(4)]
    before = np.mean(labels[high] == 3)
    assert before > 0.4 and share[3] == pytest.approx(0.25, abs=0.03)
    # Clipped factors bound what one stamp can weigh.
    wc = stellar_ci_balance(ci, labels)
    assert wc.max() / wc.min() <= 25 * 1.01
    assert np.allclose(stellar_ci_balance(np.full(8, 1.3), np.arange(8) % 4), 1.0)


def test_three_band_fraction_sets_how_many_stamps_see_only_004s_bands():
    import torch

    from training.train_physical import THREE_BANDS, _masks
    gen = torch.Generator().manual_seed(0)
    for fraction in (0.0, 0.2, 0.5):
        m = _masks(20000, 0.0, gen, fraction).numpy()
        three = (m == THREE_BANDS).all(axis=1)
        assert abs(three.mean() - fraction) < 0.015, fraction
        assert (m[~three] == 1).all()  # no dropout here: the others see all five bands


# -- weighting the rows whose class a bank drew (--drawn-weight) -------------------------

def test_class_balance_weighs_drawn_rows_within_each_class():
    from training.train_classifier import class_balance
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    drawn = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 0], bool)
    np.testing.assert_allclose(class_balance(labels), 1 / np.array([3, 3, 3, 2, 2, 1, 4, 4, 4, 4]))
    w = class_balance(labels, drawn, 3.0)
    np.testing.assert_allclose([w[labels == k].sum() for k in range(4)], 1.0)
    np.testing.assert_allclose(w[:3], [3 / 5, 1 / 5, 1 / 5])          # 3 : 1 : 1
    np.testing.assert_allclose(w[6:], [3 / 6, 1 / 6, 1 / 6, 1 / 6])
    np.testing.assert_allclose(w[3:6], [0.5, 0.5, 1.0])      # all drawn or none: as before


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legus")
                    .is_dir(), reason="../shared/data (LEGUS catalogs) absent")
def test_drawn_weight_run_and_errors(trained_models, ngc1566_bank, tmp_path, capsys):
    from glue_starclf.learn.banks import label_sources
    assert (label_sources([ngc1566_bank]) == 0).any()        # NGC 1566 has uninspected rows
    out = tmp_path / "dw.safetensors"
    status, _, err = run_training(*classifier_argv(ngc1566_bank, out), "--bank",
                                  trained_models["classifier_bank"], "--drawn-weight", "0.3")
    assert status == 0, err
    assert json.loads(out.with_suffix(".json").read_text())["training"]["drawn_weight"] == 0.3
    engine_only = classifier_argv(trained_models["classifier_bank"], tmp_path / "e.safetensors")
    status, _, err = run_training(*engine_only, "--drawn-weight", "0.5")
    _assert_one_line_error(status, err, "--drawn-weight", "no bank has rows whose class was drawn")
    from training.__main__ import main
    for value in ("0", "-1", "inf", "x"):
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in engine_only] + ["--drawn-weight", value])
        assert exit_info.value.code == 2
        errors = capsys.readouterr().err.splitlines()
        assert len(errors) == 1 and f"--drawn-weight: {value!r} is not a positive number" \
            in errors[0], errors
    assert not list(tmp_path.glob("e.*"))
