import numpy as np
import pytest

from glue_starclf.sim.bank import DETECTION_LIMITS, physical_bank


@pytest.fixture(scope="module")
def bank():
    return physical_bank(60, seed=11, background_fraction=0.2)


def test_bank_shapes_and_ranges(bank):
    stamps, truth = bank
    assert stamps.shape == (60, 5, 64, 64) and stamps.dtype == np.float32
    cl = truth["p_cb"] == 1
    assert cl.sum() == 48 and (~cl).sum() == 12
    t = truth[cl]
    assert np.all((t["log_age"] >= 6.6) & (t["log_age"] <= 10.1))
    assert np.allclose(t["log_age"] * 20, np.round(t["log_age"] * 20))      # 0.05 dex grid
    assert np.all((t["log_mass"] >= 3.0) & (t["log_mass"] <= 5.5))
    assert np.all((t["av"] >= 0) & (t["av"] <= 3.0))
    assert np.all((t["r_h"] >= 0.5) & (t["r_h"] <= 10.0))
    assert np.all((t["distance_mpc"] >= 3) & (t["distance_mpc"] <= 20))
    assert np.all(np.abs(t["dx"]) <= 1) and np.all(np.abs(t["dy"]) <= 1)
    # Every kept cluster passes the detection cut in at least one band.
    passed = np.zeros(len(t), bool)
    for band, limit in DETECTION_LIMITS.items():
        passed |= t[f"mag_{band}"] <= limit + 0.3    # IMF sampling scatters the total
    assert passed.mean() > 0.95
    bg = truth[~cl]
    assert np.all(np.isnan(bg["log_age"])) and np.all(bg["visibility"] == 0)
    assert np.all(t["visibility"] > 0)


def test_bank_is_reproducible(bank):
    stamps, truth = physical_bank(60, seed=11, background_fraction=0.2)
    np.testing.assert_array_equal(stamps, bank[0])


def test_visibility_grows_with_mass():
    _, lo = physical_bank(30, seed=1, log_mass=3.6, log_age=7.0, av=0.0, r_h=2.0,
                          distance_mpc=8.0, background_fraction=0)
    _, hi = physical_bank(30, seed=1, log_mass=5.0, log_age=7.0, av=0.0, r_h=2.0,
                          distance_mpc=8.0, background_fraction=0)
    assert np.median(hi["visibility"]) > 5 * np.median(lo["visibility"])


@pytest.mark.parametrize("kw,word", [({"log_age": 5.0}, "log_age 5"),
                                     ({"log_mass": 6.0}, "log_mass 6"),
                                     ({"av": -0.5}, "av -0.5"),
                                     ({"r_h": 50.0}, "r_h 50"),
                                     ({"distance_mpc": 0.5}, "distance_mpc 0.5"),
                                     ({"ranges": {"log_age": (6.0, 7.0)}}, "log_age 6")])
def test_parameters_outside_the_table(kw, word):
    with pytest.raises(ValueError, match=word):
        physical_bank(4, **kw)


def test_a_changed_condition_renders_the_same_sources():
    # Robustness banks compare one source set under two conditions: the noise
    # of the first chunk must not shift the draws of the later chunks' sources.
    import dataclasses

    from glue_starclf.sim.bank import _CHUNK
    from glue_starclf.sim.domain import NOMINAL
    n = _CHUNK + 20
    shallow = dataclasses.replace(NOMINAL, exposure_factor=(0.5,) * 5)
    _, a = physical_bank(n, seed=3, background_fraction=0.0)
    _, b = physical_bank(n, seed=3, background_fraction=0.0, domain=shallow)
    for col in ("log_mass", "gamma", "mag_F275W", "mag_F555W", "mag_F814W"):
        np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]), err_msg=col)
    assert np.all(np.asarray(b["exposure_factor"]) == 0.5)
