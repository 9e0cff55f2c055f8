"""Out-of-distribution flags (`glue_starclf.core.ood`, ``python -m training ood-stats``).

With the tiny session-trained models: statistics fitted on the classifier
bank, a threshold on a second bank; stamps like the training ones are
rarely flagged, stamps unlike them (bright striping every third row) are.
"""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from glue_starclf.core.ood import OOD_FILE, load_statistics
from glue_starclf.core.predict import RESULT_COLUMNS, load_ensemble, predict
from training_runs import run_training


@pytest.fixture(scope="module")
def models_with_ood(trained_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ood-models")
    for p in trained_models["models"].iterdir():
        if p.is_file():
            shutil.copy(p, folder / p.name)
    val = tmp_path_factory.mktemp("ood-val") / "bank"
    status, out, err = run_training("make-bank", "--kind", "classifier", "--n", 200, "--seed", 9,
                                    "--out", val)
    assert status == 0, err
    status, out, err = run_training("ood-stats", "--models", folder, "--fit-bank",
                                    trained_models["classifier_bank"], "--val-bank", val,
                                    "--percentile", 95)
    assert status == 0, err
    assert "threshold" in out and OOD_FILE in out
    return folder


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=21, shape=(256, 256), n_sources=30)
    paths = write_mosaic(mock, tmp_path_factory.mktemp("ood-field"), prefix="o")
    return mock, {b: Path(p) for b, p in paths.items() if b != "truth"}


def _predict(images, mock, folder):
    return predict(images, mock.truth[["id", "x", "y"]], 10.0,
                   classifier=load_ensemble("classifier", folder),
                   physical=load_ensemble("physical", folder))


def _flagged(t):
    return np.array(["ood" in f.split(",") for f in t["flags"]])


def _bank_features(ens, folder):
    """The member's pooled features of a bank's stamps, centre-cropped to its stamp size."""
    from glue_starclf.core.networks import band_mask
    from glue_starclf.core.ood import member_features
    from glue_starclf.learn.banks import bank_stellar_ci, open_bank
    s = open_bank(folder)[0]
    o = (s.shape[-1] - ens.stamp_size) // 2
    x = np.asarray(s[:, :, o:o + ens.stamp_size, o:o + ens.stamp_size], np.float32)
    ci = bank_stellar_ci([folder]) if ens.needs_stellar_ci else None
    return member_features(ens, np.nan_to_num(x), band_mask(x).astype(np.float32),
                           stellar_ci=ci)


def test_statistics_file_is_safetensors_with_threshold(models_with_ood):
    from glue_starclf.core.ood import scores
    stats = load_statistics(models_with_ood)
    assert stats.mean.shape[0] == 1 and stats.precision.shape[1:] == (stats.mean.shape[1],) * 2
    assert stats.meta["percentile"] == 95
    ens = load_ensemble("classifier", models_with_ood)
    assert stats.matches(ens.hashes)
    # the mean is the fit bank's mean feature vector
    (fit_bank,), (val_bank,) = stats.meta["fit_banks"], stats.meta["val_banks"]
    fit = _bank_features(ens, fit_bank)
    np.testing.assert_allclose(stats.mean[0], fit[0].mean(axis=0), rtol=1e-5, atol=1e-6)
    # the threshold is the 95th percentile of the validation bank's scores
    val = scores(_bank_features(ens, val_bank), stats.mean, stats.precision)
    assert len(val) == stats.meta["n_val"] == 200
    below = np.mean(val <= stats.threshold)
    assert abs(below - 0.95) <= 1 / len(val), below
    assert np.median(val) == pytest.approx(stats.meta["val_median_score"], rel=1e-4)


def test_scrambled_stamps_are_flagged(models_with_ood, field, tmp_path):
    from astropy.io import fits
    mock, paths = field
    clean = _predict(list(paths.values()), mock, models_with_ood)
    assert clean.colnames == list(RESULT_COLUMNS)
    assert np.isfinite(clean["ood_score"]).all()
    assert clean.meta["ood_threshold"] == load_statistics(models_with_ood).threshold
    odd = []
    for b, p in paths.items():
        with fits.open(p) as hdul:
            data, header = hdul[0].data.astype(np.float32), hdul[0].header
        data[::3] += 50.0  # bright striping every third row: no sky looks like this
        fits.PrimaryHDU(data, header=header).writeto(tmp_path / p.name)
        odd.append(tmp_path / p.name)
    scrambled = _predict(odd, mock, models_with_ood)
    print("flagged clean", _flagged(clean).mean(), "scrambled", _flagged(scrambled).mean(),
          "median scores", np.median(clean["ood_score"]), np.median(scrambled["ood_score"]))
    assert _flagged(clean).mean() <= 0.2
    assert _flagged(scrambled).mean() >= 0.8
    assert np.median(scrambled["ood_score"]) > 3 * np.median(clean["ood_score"])


def test_statistics_of_other_members_are_not_used(models_with_ood, trained_models, field,
                                                  tmp_path, caplog):
    mock, paths = field
    other = tmp_path / "models"
    other.mkdir()
    for p in models_with_ood.iterdir():
        shutil.copy(p, other / p.name)
    for suffix in (".safetensors", ".json"):  # another classifier member
        (other / f"classifier-s0{suffix}").unlink()
        shutil.copy(trained_models["classifier_s1"].with_suffix(suffix),
                    other / f"classifier-s1{suffix}")
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        t = _predict(list(paths.values()), mock, other)
    assert "made for other classifier members; no 'ood' flags" in caplog.text
    assert np.isnan(t["ood_score"]).all() and not _flagged(t).any()
    assert t.meta["ood_threshold"] is None


def test_statistics_of_another_feature_count_are_not_used(models_with_ood, field, tmp_path,
                                                          caplog):
    """A file made by an older version (another feature tap) for the same members."""
    from glue_starclf.core.ood import OODStats, save_statistics
    mock, paths = field
    other = tmp_path / "models"
    shutil.copytree(models_with_ood, other)
    stats = load_statistics(other)
    d = stats.mean.shape[1] + 3
    save_statistics(other / OOD_FILE, OODStats(np.zeros((1, d)), np.eye(d)[None], 2.0,
                                               stats.sha256, stats.meta))
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        t = _predict(list(paths.values()), mock, other)
    assert f"statistics of {d} features" in caplog.text and "ood-stats" in caplog.text
    assert np.isnan(t["ood_score"]).all() and not _flagged(t).any()


def test_ood_stats_refuses_to_replace_or_write_into_bundled_models(models_with_ood,
                                                                   trained_models):
    from glue_starclf.core.checkpoints import bundled_models_dir
    bank = trained_models["classifier_bank"]
    status, _, err = run_training("ood-stats", "--models", models_with_ood, "--fit-bank", bank,
                                  "--val-bank", bank)
    assert status == 2 and "exists (use --overwrite" in err
    shipped = bundled_models_dir() / OOD_FILE
    before = shipped.read_bytes()
    status, _, err = run_training("ood-stats", "--fit-bank", bank, "--val-bank", bank)
    assert status == 2 and str(shipped) in err and "--overwrite" in err
    assert shipped.read_bytes() == before


def test_bundled_statistics_flag_striped_stamps_not_clean_ones():
    """The shipped classifier.ood.safetensors with the bundled members."""
    from glue_starclf.io.mosaic import Mosaic
    from glue_starclf.sim.mosaic import random_field
    classifier, physical = load_ensemble("classifier"), load_ensemble("physical")
    assert classifier.ood is not None and classifier.ood.meta["n_fit"] > 1000
    mock = random_field(seed=23, shape=(256, 256), n_sources=30)
    images = mock.images.astype(np.float32)
    clean = predict(Mosaic.from_arrays(list(images)), mock.truth[["x", "y"]], 10.0,
                    classifier=classifier, physical=physical)
    images[:, ::3] += 50.0
    striped = predict(Mosaic.from_arrays(list(images)), mock.truth[["x", "y"]], 10.0,
                      classifier=classifier, physical=physical)
    print("bundled: flagged clean", _flagged(clean).mean(), "striped", _flagged(striped).mean())
    assert _flagged(clean).mean() <= 0.1
    assert _flagged(striped).mean() >= 0.8


def test_scores_are_the_mean_squared_mahalanobis_distance_per_feature():
    from glue_starclf.core.ood import scores
    rng = np.random.default_rng(4)
    feats = [rng.normal(0, 1, (30, 6)) for _ in range(2)]
    mean = rng.normal(0, 0.1, (2, 6))
    a = rng.normal(0, 1, (2, 6, 6))
    precision = a @ a.transpose(0, 2, 1) + np.eye(6)
    ref = np.mean([[(f[i] - m) @ p @ (f[i] - m) / 6 for i in range(30)]
                   for f, m, p in zip(feats, mean, precision)], axis=0)
    np.testing.assert_allclose(scores(feats, mean, precision), ref, rtol=1e-12)
