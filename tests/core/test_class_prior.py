"""Class prior of the classifier ensemble (`glue_starclf.core.class_prior`,
``python -m training calibrate-classes``).

With the tiny session-trained models: the prior is fitted on a labelled
bank, written beside the members, and `predict` then returns the calibrated
probabilities; a prior that strongly favours one class makes every source
that class; a file for other members is ignored.
"""

import json
import re
import shutil

import numpy as np
import pytest

from glue_starclf.core.class_prior import (CLASS_PRIOR_FILE, ClassPrior, fit_class_prior,
                                           load_class_prior, save_class_prior)
from glue_starclf.core.predict import _classify, load_ensemble, predict
from training_runs import run_training


def test_apply_is_the_formula_and_can_be_undone():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), 50)
    prior = ClassPrior(0.8, [-1.0, -0.2, 0.2, 1.0], ["h"])
    q = prior.apply(p)
    z = np.log(p) / 0.8 + prior.log_prior
    ref = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(q, ref, rtol=1e-5)
    np.testing.assert_allclose(q.sum(axis=1), 1, rtol=1e-6)
    undone = q / np.exp(prior.log_prior)
    undone /= undone.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(undone, ClassPrior(0.8, [0] * 4, ["h"]).apply(p), rtol=1e-5)
    np.testing.assert_allclose(ClassPrior(1.0, [0] * 4, ["h"]).apply(p), p, rtol=1e-5)
    members = np.stack([p, p[::-1]])                     # (members, n, 4) as well
    np.testing.assert_allclose(prior.apply(members)[1], q[::-1], rtol=1e-6)


def test_fit_recovers_a_known_temperature_and_prior():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.full(4, 0.7), 20000)
    true = ClassPrior(0.7, np.array([-0.9, -0.3, 0.1, 1.1]) - 0.0, ["h"])
    q = true.apply(p).astype(np.float64)
    y = np.array([rng.choice(4, p=row / row.sum()) for row in q])
    t, b = fit_class_prior(p, y)
    assert t == pytest.approx(0.7, abs=0.03)
    np.testing.assert_allclose(b, true.log_prior - true.log_prior.mean(), atol=0.06)
    assert b.mean() == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("t, b, match", [(0, [0, 0], "temperature"),
                                         (float("nan"), [0, 0], "temperature"),
                                         (1, [0, float("inf")], "log_prior")])
def test_bad_values_are_refused(t, b, match):
    with pytest.raises(ValueError, match=match):
        ClassPrior(t, b, ["h"])


def test_fit_refuses_labels_that_do_not_fit():
    with pytest.raises(ValueError, match="labels must lie"):
        fit_class_prior(np.full((3, 4), 0.25), [0, 1, 4])
    with pytest.raises(ValueError, match="do not fit"):
        fit_class_prior(np.full((3, 4), 0.25), [0, 1])


def test_save_load_round_trip_and_unreadable_file(tmp_path):
    assert load_class_prior(tmp_path) is None
    prior = ClassPrior(0.9, [-0.5, 0, 0.1, 0.4], ["a", "b"], {"n": 3})
    save_class_prior(tmp_path / CLASS_PRIOR_FILE, prior)
    back = load_class_prior(tmp_path)
    assert back.temperature == 0.9 and back.sha256 == ["a", "b"] and back.meta == {"n": 3}
    np.testing.assert_array_equal(back.log_prior, prior.log_prior)
    assert back.matches(["a", "b"]) and not back.matches(["b", "a"])
    unreadable = f"^{re.escape(str(tmp_path / CLASS_PRIOR_FILE))}: not a readable class prior"
    (tmp_path / CLASS_PRIOR_FILE).write_text('{"temperature": 1}')
    with pytest.raises(ValueError, match=unreadable + r" \('log_prior'\)"):  # the missing key
        load_class_prior(tmp_path)
    (tmp_path / CLASS_PRIOR_FILE).write_text("not JSON")
    with pytest.raises(ValueError, match=unreadable + r" \(Expecting value"):
        load_class_prior(tmp_path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=22, shape=(256, 256), n_sources=20)
    paths = write_mosaic(mock, tmp_path_factory.mktemp("prior-field"), prefix="p")
    return [p for b, p in paths.items() if b != "truth"], mock.truth[["id", "x", "y"]]


@pytest.fixture(scope="module")
def models_copy(trained_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prior-models")
    for p in trained_models["models"].iterdir():
        if p.is_file() and p.name != CLASS_PRIOR_FILE:
            shutil.copy(p, folder / p.name)
    return folder


def test_calibrate_classes_writes_a_prior_that_predict_uses(trained_models, models_copy):
    bank = trained_models["classifier_bank"]
    status, out, err = run_training("calibrate-classes", "--models", models_copy,
                                    "--val-bank", bank, "--test-bank", bank)
    assert status == 0, err
    assert "temperature" in out and "with the prior" in out
    assert not (models_copy / CLASS_PRIOR_FILE).exists()          # only with --write
    status, out, err = run_training("calibrate-classes", "--models", models_copy,
                                    "--val-bank", bank, "--write")
    assert status == 0, err
    doc = json.loads((models_copy / CLASS_PRIOR_FILE).read_text())
    ens = load_ensemble("classifier", models_copy)
    assert ens.class_prior is not None and doc["sha256"] == ens.hashes
    after = doc["meta"]["scores"]["validation"]["after"]
    before = doc["meta"]["scores"]["validation"]["before"]
    assert after["nll"] <= before["nll"] + 1e-9                    # the fit's objective
    status, out, err = run_training("calibrate-classes", "--models", models_copy,
                                    "--val-bank", bank, "--write")
    assert status == 2 and "exists" in err and "Traceback" not in err


def test_calibrate_classes_on_the_human_classes_only(trained_models, models_copy, tmp_path):
    """--human-classes fits on the rows with a LEGUS human class; a bank without any is refused."""
    from astropy.table import Table
    bank = tmp_path / "anchored"
    shutil.copytree(trained_models["classifier_bank"], bank)
    t = Table.read(bank / "truth.ecsv")
    t["legus_class"] = np.where(np.arange(len(t)) % 4 == 0, t["class"], 0)
    t.write(bank / "truth.ecsv", overwrite=True)
    models = tmp_path / "models"
    models.mkdir()
    for p in models_copy.iterdir():
        if p.name != CLASS_PRIOR_FILE:
            shutil.copy(p, models / p.name)
    status, out, err = run_training("calibrate-classes", "--models", models,
                                    "--val-bank", bank, "--human-classes", "--write")
    assert status == 0, err
    assert f"from {len(t[::4])} stamps" in out
    doc = json.loads((models / CLASS_PRIOR_FILE).read_text())
    assert doc["meta"]["human_classes_only"] is True
    assert doc["meta"]["class_counts"] == np.bincount(t["class"][::4] - 1, minlength=4).tolist()
    status, out, err = run_training("calibrate-classes", "--models", models_copy, "--val-bank",
                                    trained_models["classifier_bank"], "--human-classes")
    assert status == 2 and "no rows with a LEGUS human class" in err
    assert len(err.strip().splitlines()) == 1


def test_predict_applies_the_prior_and_ignores_one_for_other_members(trained_models,
                                                                     models_copy, tmp_path,
                                                                     scene):
    mosaic, sources = scene
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.05, (40, 5, 32, 32)).astype(np.float32)
    x[:, :, 14:18, 14:18] += rng.uniform(0.5, 5, (40, 5, 1, 1)).astype(np.float32)
    m = np.ones((40, 5), np.float32)
    for p in models_copy.iterdir():
        if p.name != CLASS_PRIOR_FILE:
            shutil.copy(p, tmp_path / p.name)
    plain = load_ensemble("classifier", tmp_path)
    assert plain.class_prior is None
    base, _, _, _ = _classify(plain, x, m)
    save_class_prior(tmp_path / CLASS_PRIOR_FILE, ClassPrior(1.0, [0, 0, -30, 30], plain.hashes))
    ens = load_ensemble("classifier", tmp_path)
    probs, cls, votes, _ = _classify(ens, x, m)
    assert np.all(cls == 4) and np.all(votes == 1.0)
    np.testing.assert_allclose(probs, ens.class_prior.apply(base), rtol=1e-5, atol=1e-7)
    table = predict(mosaic, sources, 10.0, classifier=ens,
                    physical=load_ensemble("physical", tmp_path))
    assert table.meta["class_prior"]["log_prior"] == [0, 0, -30, 30]
    assert set(np.asarray(table["class"])) == {4}
    save_class_prior(tmp_path / CLASS_PRIOR_FILE, ClassPrior(1.0, [0, 0, -30, 30], ["other"]))
    other = load_ensemble("classifier", tmp_path)
    assert other.class_prior is None
    np.testing.assert_allclose(_classify(other, x, m)[0], base, rtol=1e-6)


def test_calibrate_classes_on_a_missing_bank_is_one_line(models_copy, tmp_path):
    status, out, err = run_training("calibrate-classes", "--models", models_copy,
                                    "--val-bank", tmp_path / "nope")
    assert status == 2 and "nope" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
