"""`glue_starclf.core.predict`: the results table of results-schema.md from a mosaic,
sources and the (tiny, session-trained) ensembles."""

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.core.predict import RESULT_COLUMNS, Ensemble, load_ensemble, predict

SHAPE = (256, 256)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A 256 x 256 mock field with 20 sources, written as five FITS files."""
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=5, shape=SHAPE, n_sources=20)
    paths = write_mosaic(mock, tmp_path_factory.mktemp("field"), prefix="f")
    images = [f"{b}={p}" for b, p in paths.items() if b != "truth"]
    return mock, paths, images


@pytest.fixture(scope="module")
def ensembles(trained_models):
    return (load_ensemble("classifier", trained_models["models"]),
            load_ensemble("physical", trained_models["models"]))


@pytest.fixture(scope="module")
def result(field, ensembles):
    mock, _, images = field
    sources = mock.truth[["id", "x", "y"]]
    return predict(images, sources, 10.0, classifier=ensembles[0], physical=ensembles[1])


def _probs(table):
    return np.column_stack([np.asarray(table[f"p_class{k}"], float) for k in range(1, 5)])


def test_columns_in_schema_order(result, field):
    mock = field[0]
    assert tuple(result.colnames) == RESULT_COLUMNS
    assert len(result) == len(mock.truth) == 20
    np.testing.assert_array_equal(result["id"], mock.truth["id"])
    np.testing.assert_allclose(result["x"], mock.truth["x"])
    np.testing.assert_allclose(result["y"], mock.truth["y"])
    assert np.isfinite(result["ra"]).all() and np.isfinite(result["dec"]).all()
    assert str(result["r_h"].unit) == "pc"


def test_probabilities_class_and_entropy(result):
    p = _probs(result)
    assert np.isfinite(p).all()
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(result["class"], p.argmax(axis=1) + 1)
    np.testing.assert_allclose(result["p_cluster"], p[:, 0] + p[:, 1], atol=1e-6)
    ent = np.asarray(result["class_entropy"], float)
    assert ((ent >= 0) & (ent <= math.log(4) + 1e-6)).all()
    np.testing.assert_allclose(ent, -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1), atol=1e-5)
    np.testing.assert_array_equal(result["class_agreement"], 1.0)  # one member


def test_physical_estimates(result):
    """A 1-epoch network gives flat posteriors: only ranges are checked here."""
    from glue_starclf.core.networks import AV_BINS, LOG_AGE_BINS, LOG_MASS_BINS, LOG_RH_BINS
    ranges = {"log_age": LOG_AGE_BINS, "log_mass": LOG_MASS_BINS, "av": AV_BINS,
              "r_h": 10 ** LOG_RH_BINS}
    for name, bins in ranges.items():
        est, lo, hi = (np.asarray(result[c], float) for c in (name, f"{name}_lo", f"{name}_hi"))
        for v in (est, lo, hi):
            assert np.isfinite(v).all(), name
            assert (v >= bins[0] - 1e-9).all() and (v <= bins[-1] + 1e-9).all(), name
        assert (lo <= hi).all(), name
    assert (np.asarray(result["r_h"]) > 0).all()
    assert (np.asarray(result["r_h_lo"]) > 0).all()
    p_cb = np.asarray(result["p_cb"], float)
    assert ((p_cb >= 0) & (p_cb <= 1)).all()
    assert (np.asarray(result["visibility"]) > 0).all()


@pytest.fixture(scope="module")
def peaked_physical(trained_models, tmp_path_factory):
    """The physical member with its grid and r_h heads replaced by fixed, peaked
    posteriors: log age 8.0, A_V 1.0, log mass 4.2, r_h 3 pc for every source."""
    import json

    import torch

    from glue_starclf.core import networks as N
    from glue_starclf.core.checkpoints import load_checkpoint, save_checkpoint
    model, card = load_checkpoint(trained_models["physical"])
    grid = N.gaussian_targets_3d(np.array([8.0]), np.array([1.0]), np.array([4.2]))[0]
    rh = N.gaussian_targets_1d(np.array([np.log10(3.0)]), N.LOG_RH_BINS)[0]
    with torch.no_grad():
        for name, target in (("grid", grid), ("r_h", rh)):
            head = model.heads[name]
            head.weight.zero_()
            head.bias.copy_(torch.log(torch.as_tensor(target, dtype=torch.float32) + 1e-12))
    keep = {k: v for k, v in card.items() if k not in ("_path", "sha256", "weights")}
    path = tmp_path_factory.mktemp("peaked") / "physical-peaked.safetensors"
    card_path = save_checkpoint(model, path, keep)
    assert json.loads(card_path.read_text())["family"] == "physical"
    return Ensemble([card_path])


def test_estimates_lie_within_their_percentiles(field, ensembles, peaked_physical):
    mock, _, images = field
    t = predict(images, mock.truth[["x", "y"]], 10.0, classifier=ensembles[0],
                physical=peaked_physical)
    truth = {"log_age": 8.0, "av": 1.0, "log_mass": 4.2, "r_h": 3.0}
    for name, want in truth.items():
        est, lo, hi = (np.asarray(t[c], float) for c in (name, f"{name}_lo", f"{name}_hi"))
        inside = (lo <= est + 1e-9) & (est <= hi + 1e-9)
        assert inside.mean() >= 0.9, (name, lo, est, hi)
        assert (lo < hi).all(), name
        rel = abs(np.log10(est / want)) if name == "r_h" else abs(est - want)
        assert (rel < 0.1).all(), (name, est, want)
    assert t.meta["physical_models"] == ["physical-peaked"]


def test_metadata(result, field, ensembles, trained_models):
    meta = result.meta
    assert meta["classifier_models"] == ["classifier-s0"]
    assert meta["physical_models"] == ["physical-s0"]
    # the weights' hashes, computed here, not by the function that writes them
    for family in ("classifier", "physical"):
        digest = hashlib.sha256(Path(trained_models[family]).read_bytes()).hexdigest()
        assert meta[f"{family}_sha256"] == [digest]
    assert meta["distance_mpc"] == 10.0
    assert set(meta["bands"]) == {"F275W", "F336W", "F438W", "F555W", "F814W"}
    assert meta["bands"]["F555W"] == str(field[1]["F555W"])
    assert meta["generator"].startswith("glue-starclf")


def test_two_member_ensemble_is_the_mean_of_its_members(field, ensembles, trained_models):
    mock, _, images = field
    sources = mock.truth[["x", "y"]]
    card0 = trained_models["classifier"].with_suffix(".json")
    card1 = trained_models["classifier_s1"].with_suffix(".json")
    phys = ensembles[1]
    both = predict(images, sources, 10.0, classifier=Ensemble([card0, card1]), physical=phys)
    one = [predict(images, sources, 10.0, classifier=Ensemble([c]), physical=phys)
           for c in (card0, card1)]
    assert both.meta["classifier_models"] == ["classifier-s0", "classifier-s1"]
    np.testing.assert_allclose(_probs(both), (_probs(one[0]) + _probs(one[1])) / 2, atol=1e-6)
    agreement = np.asarray(both["class_agreement"], float)
    # two members: 1.0 (both vote for the mean's class), 0.5 (one does), or 0.0
    # when the mean's most probable class is neither member's vote
    assert set(np.unique(agreement)) <= {0.0, 0.5, 1.0}
    votes = np.column_stack([np.asarray(o["class"]) for o in one])
    expected = (votes == np.asarray(both["class"])[:, None]).mean(axis=1)
    np.testing.assert_array_equal(agreement, expected)
    np.testing.assert_array_equal(both["class"], _probs(both).argmax(axis=1) + 1)
    # the physical columns do not depend on the classifier ensemble
    np.testing.assert_array_equal(both["log_age"], one[0]["log_age"])


def test_positions_outside_the_image(field, ensembles):
    _, _, images = field
    sources = Table({"x": [-50.0, 100.0, 1000.0, np.nan], "y": [10.0, 120.0, 5.0, 3.0]})
    t = predict(images, sources, 10.0, classifier=ensembles[0], physical=ensembles[1])
    assert len(t) == 4
    outside = [0, 2, 3]
    for i in outside:
        assert "outside" in t["flags"][i].split(","), t["flags"][i]
        for c in ("p_class1", "p_cluster", "log_age", "log_mass", "av", "r_h", "p_cb"):
            assert np.isnan(t[c][i]), (i, c)
    assert "outside" not in t["flags"][1]
    assert np.isfinite(t["p_class1"][1])
    np.testing.assert_array_equal(t["id"], [1, 2, 3, 4])


def test_empty_catalog(field, ensembles):
    _, _, images = field
    t = predict(images, Table({"x": np.zeros(0), "y": np.zeros(0)}), 10.0,
                classifier=ensembles[0], physical=ensembles[1])
    assert len(t) == 0
    assert tuple(t.colnames) == RESULT_COLUMNS


def test_three_band_mosaic(field, ensembles):
    mock, paths, _ = field
    images = [f"{b}={paths[b]}" for b in ("F336W", "F438W", "F814W")]
    t = predict(images, mock.truth[["x", "y"]], 10.0, classifier=ensembles[0],
                physical=ensembles[1])
    assert len(t) == 20
    for f in t["flags"]:
        parts = f.split(",")
        assert "missing:F275W" in parts and "missing:F555W" in parts, f
    p = _probs(t)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert np.isfinite(np.asarray(t["log_age"], float)).all()
    assert set(t.meta["bands"]) == {"F336W", "F438W", "F814W"}


@pytest.mark.parametrize("distance", [0.0, -3.0, float("nan")])
def test_distance_must_be_positive(field, ensembles, distance):
    mock, _, images = field
    with pytest.raises(ValueError, match="distance"):
        predict(images, mock.truth[["x", "y"]], distance, classifier=ensembles[0],
                physical=ensembles[1])


def test_load_ensemble_of_a_folder_without_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="no classifier models"):
        load_ensemble("classifier", tmp_path)


def test_ensemble_refuses_mixed_families(trained_models):
    with pytest.raises(ValueError, match="families"):
        Ensemble([trained_models["classifier"].with_suffix(".json"),
                  trained_models["physical"].with_suffix(".json")])


def test_predict_callback_reports_progress_and_cancels(ensembles):
    from glue_starclf.io.mosaic import Mosaic
    rng = np.random.default_rng(3)
    mosaic = Mosaic.from_arrays(rng.normal(0, 0.01, (5, 200, 200)).astype(np.float32))
    src = Table({"x": rng.uniform(40, 160, 25), "y": rng.uniform(40, 160, 25)})
    clf, phys = ensembles
    seen = []
    predict(mosaic, src, 10.0, clf, phys, batch=10, callback=lambda d, n: seen.append((d, n)))
    assert seen == [(0, 25), (10, 25), (20, 25), (25, 25)]

    class Stop(Exception):
        pass

    def cancel(done, total):
        if done >= 10:
            raise Stop

    with pytest.raises(Stop):
        predict(mosaic, src, 10.0, clf, phys, batch=10, callback=cancel)


def test_predict_releases_pages_every_release_sources(ensembles, monkeypatch):
    from glue_starclf.core import predict as P
    from glue_starclf.io.mosaic import Mosaic
    rng = np.random.default_rng(4)
    mosaic = Mosaic.from_arrays(rng.normal(0, 0.01, (5, 200, 200)).astype(np.float32))
    src = Table({"x": rng.uniform(40, 160, 95), "y": rng.uniform(40, 160, 95)})
    released, cut = [], []
    monkeypatch.setattr(P, "RELEASE_SOURCES", 25)
    monkeypatch.setattr(Mosaic, "release_pages", lambda self: released.append(sum(cut)))
    from glue_starclf.core import cutouts
    original = cutouts.extract_stamps

    def counting(mosaic, x, y, size):
        cut.append(len(x))
        return original(mosaic, x, y, size=size)

    # predict imports extract_stamps at call time, so it gets the counting one.
    monkeypatch.setattr(cutouts, "extract_stamps", counting)
    predict(mosaic, src, 10.0, *ensembles, batch=10)
    # Batches of 10: released after 30, 60 and 90 sources, not after every batch.
    assert released == [30, 60, 90]


@pytest.mark.parametrize("distance, flagged", [(2.0, True), (25.0, True), (3.0, False),
                                               (20.0, False)])
def test_distance_outside_the_trained_range_is_flagged(field, ensembles, distance, flagged,
                                                       caplog):
    import logging
    mock, _, images = field
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        t = predict(images, mock.truth[["x", "y"]], distance, classifier=ensembles[0],
                    physical=ensembles[1])
    has = [("distance" in f.split(",")) for f in t["flags"]]
    assert all(has) if flagged else not any(has)
    assert ("outside the 3-20 Mpc the models were trained for" in caplog.text) == flagged


def test_all_nan_or_zero_band_is_treated_as_missing(field, ensembles, tmp_path, caplog):
    import logging

    from astropy.io import fits
    mock, paths, _ = field
    images = []
    for b, fill in (("F275W", np.nan), ("F336W", 0.0)):
        with fits.open(paths[b]) as hdul:
            data = np.full_like(hdul[0].data, fill)
            fits.PrimaryHDU(data, header=hdul[0].header).writeto(tmp_path / f"{b}.fits")
        images.append(f"{b}={tmp_path / f'{b}.fits'}")
    images += [f"{b}={paths[b]}" for b in ("F438W", "F555W", "F814W")]
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        t = predict(images, mock.truth[["x", "y"]], 10.0, classifier=ensembles[0],
                    physical=ensembles[1])
    assert "F275W.fits: all NaN or zero over the mosaic; band F275W treated as missing" in \
        caplog.text
    assert "band F336W treated as missing" in caplog.text
    three = predict(images[2:], mock.truth[["x", "y"]], 10.0, classifier=ensembles[0],
                    physical=ensembles[1])
    # the same as a mosaic without those bands: masked, not fed as data
    assert list(t["flags"]) == list(three["flags"])
    assert all("missing:F275W" in f and "missing:F336W" in f for f in t["flags"])
    np.testing.assert_allclose(np.asarray(t["p_class1"]), np.asarray(three["p_class1"]))


@pytest.fixture(scope="module")
def stellar_field(tmp_path_factory):
    """A 1024 x 1024 mock field: enough isolated stars to measure its stellar CI."""
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=3, shape=(1024, 1024), n_sources=150)
    paths = write_mosaic(mock, tmp_path_factory.mktemp("stellar"), prefix="s")
    return mock, [f"{b}={p}" for b, p in paths.items() if b != "truth"]


def _conditioned_member(card_path, folder, name):
    """An ensemble of one member like ``card_path``'s that takes the stellar CI (untrained
    weights: the plumbing)."""
    import torch

    from glue_starclf.core.checkpoints import load_card, save_checkpoint
    from glue_starclf.core.networks import build_network
    card = load_card(card_path)
    keep = {k: v for k, v in card.items() if k not in ("_path", "sha256", "weights")}
    keep["kwargs"] = {**card["kwargs"], "stellar_ci": True}
    torch.manual_seed(0)
    net = build_network(card["architecture"], **keep["kwargs"])
    return Ensemble([save_checkpoint(net, folder / name, keep)])


@pytest.fixture(scope="module")
def conditioned(trained_models, tmp_path_factory):
    """A classifier member that takes the stellar CI."""
    return _conditioned_member(trained_models["classifier"],
                               tmp_path_factory.mktemp("conditioned"), "classifier-ci.safetensors")


def test_conditioned_classifier_gets_the_measured_stellar_ci(stellar_field, conditioned,
                                                               ensembles):
    from glue_starclf.core.stellar_ci import measure_stellar_ci
    from glue_starclf.io.mosaic import open_mosaic
    mock, images = stellar_field
    sources = mock.truth[["id", "x", "y"]][:40]
    assert conditioned.needs_stellar_ci and not ensembles[0].needs_stellar_ci
    measured = predict(images, sources, 10.0, classifier=conditioned, physical=ensembles[1])
    centre = (np.median(sources["x"]), np.median(sources["y"]))
    expect, _ = measure_stellar_ci(open_mosaic(images), centre)
    assert measured.meta["stellar_ci"] == pytest.approx(expect, abs=1e-4)
    assert measured.meta["stellar_ci_source"].startswith("measured in region")
    given = predict(images, sources, 10.0, classifier=conditioned, physical=ensembles[1],
                    stellar_ci=1.5)
    assert given.meta["stellar_ci"] == 1.5 and given.meta["stellar_ci_source"] == "given"
    # The input reaches the network.
    assert not np.allclose(_probs(measured), _probs(given))
    plain = predict(images, sources, 10.0, classifier=ensembles[0], physical=ensembles[1],
                    stellar_ci=1.5)
    assert plain.meta["stellar_ci"] is None and plain.meta["stellar_ci_source"] is None


@pytest.fixture(scope="module")
def conditioned_physical(trained_models, tmp_path_factory):
    """A physical member that takes the stellar CI."""
    return _conditioned_member(trained_models["physical"],
                               tmp_path_factory.mktemp("conditioned-physical"),
                               "physical-ci.safetensors")


def _physical_columns(table):
    return np.column_stack([np.asarray(table[c], float) for c in
                            ("log_age", "log_mass", "av", "r_h", "p_cb")])


def test_conditioned_physical_gets_the_measured_stellar_ci(stellar_field, conditioned_physical,
                                                           ensembles):
    from glue_starclf.core.predict import _physical, field_stellar_ci
    from glue_starclf.io.mosaic import open_mosaic
    mock, images = stellar_field
    sources = mock.truth[["id", "x", "y"]][:40]
    # Measured because the physical members take it, though the classifier does not.
    measured = predict(images, sources, 10.0, classifier=ensembles[0],
                       physical=conditioned_physical)
    assert measured.meta["stellar_ci_source"].startswith("measured in region")
    expect, _ = field_stellar_ci(conditioned_physical, open_mosaic(images), sources["x"],
                                 sources["y"])
    assert measured.meta["stellar_ci"] == pytest.approx(expect, abs=1e-4)
    given = predict(images, sources, 10.0, classifier=ensembles[0],
                    physical=conditioned_physical, stellar_ci=1.5)
    assert given.meta["stellar_ci_source"] == "given"
    # The input reaches the network; the classifier, which does not take it, is unchanged.
    assert not np.allclose(_physical_columns(measured), _physical_columns(given))
    np.testing.assert_allclose(_probs(measured), _probs(given))
    x = np.zeros((2, 5, 64, 64), np.float32)
    with pytest.raises(ValueError, match="need the field's stellar CI"):
        _physical(conditioned_physical, x, np.ones((2, 5), np.float32), 10.0)


def test_conditioned_physical_posterior_maps_follow_the_stellar_ci(stellar_field,
                                                                   conditioned_physical):
    from glue_starclf.glue.results import posterior_maps
    from glue_starclf.io.mosaic import open_mosaic
    mock, images = stellar_field
    x, y = np.asarray(mock.truth["x"][:3]), np.asarray(mock.truth["y"][:3])
    mosaic = open_mosaic(images)
    low = posterior_maps(mosaic, x, y, 10.0, conditioned_physical, stellar_ci=1.2)
    high = posterior_maps(mosaic, x, y, 10.0, conditioned_physical, stellar_ci=1.5)
    measured = posterior_maps(mosaic, x, y, 10.0, conditioned_physical)
    assert np.isfinite(measured).all() and not np.allclose(low, high)
    np.testing.assert_allclose(measured.sum(axis=(1, 2)), 1.0, atol=1e-5)


@pytest.mark.parametrize("value", [0.2, 3.0, float("nan")])
def test_stellar_ci_outside_its_range_is_one_line(stellar_field, ensembles, value):
    mock, images = stellar_field
    with pytest.raises(ValueError, match="stellar CI .* outside 1.1-1.55") as err:
        predict(images, mock.truth[["x", "y"]][:5], 10.0, classifier=ensembles[0],
                physical=ensembles[1], stellar_ci=value)
    assert "\n" not in str(err.value)


def test_conditioned_classifier_on_a_field_too_small_to_measure(conditioned, ensembles,
                                                                tmp_path, caplog):
    import logging

    from glue_starclf.core.stellar_ci import STELLAR_CI_DEFAULT
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=1, shape=(128, 128), n_sources=3)
    paths = write_mosaic(mock, tmp_path, prefix="t")
    images = [f"{b}={p}" for b, p in paths.items() if b != "truth"]
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        out = predict(images, mock.truth[["x", "y"]], 10.0, classifier=conditioned,
                      physical=ensembles[1])
    # The typical value, flagged on every row and warned about once, in one line.
    assert out.meta["stellar_ci"] == STELLAR_CI_DEFAULT
    assert out.meta["stellar_ci_source"].startswith("default (not measured: region")
    assert all("stellar_ci" in f.split(",") for f in out["flags"])
    warned = [r.getMessage() for r in caplog.records if "stellar CI" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0] and "too few" in warned[0]
    given = predict(images, mock.truth[["x", "y"]], 10.0, classifier=conditioned,
                    physical=ensembles[1], stellar_ci=1.3)
    assert np.isfinite(_probs(given)).all()
    assert not any("stellar_ci" in f.split(",") for f in given["flags"])
    assert not np.allclose(_probs(out), _probs(given))


def test_takes_stellar_ci_reads_the_cards_only(conditioned, conditioned_physical,
                                               trained_models, tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    from glue_starclf.core import checkpoints
    from glue_starclf.core.predict import takes_stellar_ci
    assert not takes_stellar_ci(trained_models["models"])
    # the card of a member that takes it, beside weights that cannot be loaded
    card = Path(conditioned.members[0][1]["_path"])
    folder = tmp_path / "cards"
    folder.mkdir()
    shutil.copy(card, folder / card.name)
    (folder / card.name).with_suffix(".safetensors").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="sha256"):
        load_ensemble("classifier", folder)
    assert takes_stellar_ci(folder) and takes_stellar_ci(str(folder))
    # one member that takes it is enough (as Ensemble.needs_stellar_ci)
    for name in ("classifier-s0.json", "classifier-s0.safetensors"):
        shutil.copy(trained_models["models"] / name, folder / name)
    assert takes_stellar_ci(folder)
    # no folder: the bundled models
    monkeypatch.setattr(checkpoints, "bundled_models_dir", lambda: folder)
    assert takes_stellar_ci()
    # a physical member that takes it, beside classifier members that do not
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("classifier-s0.json", "classifier-s0.safetensors"):
        shutil.copy(trained_models["models"] / name, mixed / name)
    assert not takes_stellar_ci(mixed)
    phys = Path(conditioned_physical.members[0][1]["_path"])
    for path in (phys, phys.with_suffix(".safetensors")):
        shutil.copy(path, mixed / path.name)
    assert takes_stellar_ci(mixed)
    with pytest.raises(FileNotFoundError, match="no classifier models"):
        takes_stellar_ci(tmp_path / "empty")


def test_detected_candidates_take_the_stellar_ci_of_their_cut(stellar_field, conditioned,
                                                               ensembles, monkeypatch):
    """Detection measures the field's stellar CI for its cut; classifying the candidates
    reuses that one measurement (its value and source) instead of measuring again."""
    from glue_starclf.core import stellar_ci
    from glue_starclf.core.detection import detect_sources, detected_stellar_ci
    from glue_starclf.io.mosaic import open_mosaic
    mock, images = stellar_field
    calls = []
    measure = stellar_ci.measure_stellar_ci
    monkeypatch.setattr(stellar_ci, "measure_stellar_ci",
                        lambda *a, **k: calls.append(1) or measure(*a, **k))
    mosaic = open_mosaic(images)
    det = detect_sources(mosaic, distance_mpc=10.0)
    assert len(calls) == 1 and det.meta["stellar_ci_source"].startswith("measured in region")
    value, source = detected_stellar_ci(det)
    res = predict(mosaic, det, 10.0, classifier=conditioned, physical=ensembles[1],
                  stellar_ci=value, stellar_ci_source=source)
    assert len(calls) == 1
    assert res.meta["stellar_ci"] == pytest.approx(det.meta["stellar_ci"], abs=1e-4)
    assert res.meta["stellar_ci_source"] == det.meta["stellar_ci_source"]
    assert not any("stellar_ci" in f for f in res["flags"])
    # A cut on the default locus passes the default on, and its results are flagged.
    default = predict(mosaic, det[:5], 10.0, classifier=conditioned, physical=ensembles[1],
                      stellar_ci=1.25, stellar_ci_source="default (not measured: no F555W)")
    assert default.meta["stellar_ci_source"] == "default (not measured: no F555W)"
    assert all("stellar_ci" in f for f in default["flags"])


def test_bundled_ensembles_recover_a_mock_fields_truth():
    """The shipped checkpoints through the whole prediction path: classes and physical
    estimates of a random mock field must be far better than chance (a broken checkpoint,
    class order or posterior decoding fails here; the tiny fixtures above cannot show it)."""
    from glue_starclf.io.mosaic import Mosaic
    from glue_starclf.sim.mosaic import random_field
    mock = random_field(seed=5, shape=(768, 768), n_sources=80)
    result = predict(Mosaic.from_arrays(list(mock.images.astype(np.float32))),
                     mock.truth[["x", "y"]], 10.0, classifier=load_ensemble("classifier"),
                     physical=load_ensemble("physical"))
    true, called = np.asarray(mock.truth["class"]), np.asarray(result["class"])
    assert np.bincount(true, minlength=5)[1:].min() >= 15  # every class is there
    assert np.mean(true == called) >= 0.5  # chance: 0.25 (measured 0.68)
    assert np.mean((true <= 2) == (called <= 2)) >= 0.7  # measured 0.81
    clusters = true <= 3
    for name, bound in (("log_age", 0.4), ("log_mass", 0.3), ("av", 0.45)):  # 0.19 / 0.17 / 0.28
        err = np.asarray(result[name])[clusters] - np.asarray(mock.truth[name])[clusters]
        assert np.median(np.abs(err)) <= bound, name
    err = np.log10(np.asarray(result["r_h"])[clusters] / np.asarray(mock.truth["r_h"])[clusters])
    assert np.median(np.abs(err)) <= 0.2  # measured 0.09
