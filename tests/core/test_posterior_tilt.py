"""The posterior tilt of `glue_starclf.core.posterior_tilt` and its use by the ensemble."""

import json
import shutil

import numpy as np
import pytest

from glue_starclf.core import networks as N
from glue_starclf.core import posterior_tilt as T


def _flat_grid(n):
    return np.full((n, int(np.prod(N.GRID_SHAPE))), 1.0 / np.prod(N.GRID_SHAPE))


def test_zero_tilt_is_the_identity():
    rng = np.random.default_rng(0)
    g = rng.dirichlet(np.ones(int(np.prod(N.GRID_SHAPE))), 5)
    tilt = T.check_tilt({k: [0, 0, 0] for k in T.TILT_PARAMETERS})
    np.testing.assert_allclose(T.tilt_grid(g, 10.0, tilt), g, rtol=1e-12)
    assert T.tilt_posteriors({"grid": g}, 10.0, None)["grid"] is g


def test_mass_tilt_moves_mass_with_distance_only():
    # beta = c0 + c1 u + c2 u^2, u = (d - 11.5) / 8.5 clipped to +-1 (by hand, not
    # tilt_basis): d = 3, 7.25, 11.5, 20, 40 Mpc -> u = -1, -0.5, 0, 1, 1 (not extrapolated).
    tilt = T.check_tilt({"log_mass": [0.3, 1.0, 0.5]})
    d = np.array([3.0, 7.25, 11.5, 20.0, 40.0])
    beta = np.array([-0.2, -0.075, 0.3, 1.8, 1.8])
    q = T.tilt_grid(_flat_grid(len(d)), d, tilt).reshape((-1,) + N.GRID_SHAPE)
    np.testing.assert_allclose(q.sum(axis=(1, 2, 3)), 1.0)
    # On a flat grid log q steps by beta * dz between mass bins; the standardised step of
    # n evenly spaced centres is 1 / std = sqrt(12 / (n^2 - 1)) = 0.24807 for n = 14.
    dz = np.sqrt(12.0 / (N.LOG_MASS_BINS.size ** 2 - 1))
    steps = np.diff(np.log(q.sum(axis=(1, 2))), axis=1)
    np.testing.assert_allclose(steps, np.repeat(beta[:, None] * dz, steps.shape[1], axis=1),
                               atol=1e-5)
    # the age and A_V marginals of a flat grid stay flat
    np.testing.assert_allclose(q.sum(axis=(2, 3)), 1.0 / N.GRID_SHAPE[0])


def test_r_h_tilt():
    tilt = T.check_tilt({"log_r_h": [-0.8, 0.0, 0.0]})
    p = np.full((2, N.LOG_RH_BINS.size), 1.0 / N.LOG_RH_BINS.size)
    out = T.tilt_posteriors({"grid": _flat_grid(2), "r_h": p, "cb": "kept"}, [5.0, 15.0], tilt)
    assert out["cb"] == "kept"
    assert np.all(out["r_h"] @ N.LOG_RH_BINS < N.LOG_RH_BINS.mean() - 0.1)
    np.testing.assert_allclose(out["grid"], _flat_grid(2))   # no grid terms


@pytest.mark.parametrize("tilt, needle", [
    ({"log_mas": [0, 0, 0]}, "'log_mas'"),
    ({"log_mass": [0, 0]}, "3 finite numbers"),
    ({"log_mass": [0, "x", 0]}, "3 finite numbers"),
    ({"log_mass": [0, float("nan"), 0]}, "3 finite numbers"),
    ([0, 0, 0], "must map parameters"),
])
def test_bad_tilts(tilt, needle):
    with pytest.raises(ValueError, match="card.json") as e:
        T.check_tilt(tilt, "card.json")
    assert needle in str(e.value) and "\n" not in str(e.value)


def _physical_folder(trained_models, tmp_path, tilts):
    folder = tmp_path / "models"
    folder.mkdir(parents=True)
    src = trained_models["physical"]
    for k, tilt in enumerate(tilts):
        shutil.copy(src, folder / f"physical-s{k}.safetensors")
        card = json.loads(src.with_suffix(".json").read_text())
        if tilt is not None:
            card["posterior_tilt"] = tilt
        (folder / f"physical-s{k}.json").write_text(json.dumps(card))
    return folder


def test_ensemble_applies_its_cards_tilt(trained_models, tmp_path):
    from glue_starclf.core.predict import _physical, load_ensemble
    tilt = {"log_mass": [0.5, 1.5, 0.0], "log_r_h": [-0.5, 0.0, 0.0]}
    plain = load_ensemble("physical", _physical_folder(trained_models, tmp_path / "a", [None]))
    tilted = load_ensemble("physical", _physical_folder(trained_models, tmp_path / "b", [tilt]))
    assert plain.posterior_tilt is None and set(tilted.posterior_tilt) == set(tilt)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (6, 5, 64, 64)).astype(np.float32)
    m = np.ones((6, 5), np.float32)
    raw, out = _physical(plain, x, m, 17.0), _physical(tilted, x, m, 17.0)
    want = T.tilt_posteriors(raw, 17.0, T.check_tilt(tilt))
    for k in ("grid", "r_h", "cb", "visibility"):
        np.testing.assert_allclose(out[k], want[k], rtol=1e-5, atol=1e-9)
    assert not np.allclose(out["grid"], raw["grid"])


def test_ensemble_cards_must_agree_on_the_tilt(trained_models, tmp_path):
    from glue_starclf.core.predict import load_ensemble
    folder = _physical_folder(trained_models, tmp_path,
                              [{"log_mass": [0, 1, 0]}, {"log_mass": [0, 2, 0]}])
    with pytest.raises(ValueError, match="different posterior_tilt"):
        load_ensemble("physical", folder)
    bad = _physical_folder(trained_models, tmp_path / "bad", [{"log_mass": [1]}])
    with pytest.raises(ValueError, match="physical-s0.json: posterior_tilt 'log_mass'"):
        load_ensemble("physical", bad)
