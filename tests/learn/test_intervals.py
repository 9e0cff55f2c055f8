"""Estimator errors and the interval calibration of `glue_starclf.learn.intervals`."""

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.core import networks as N
from glue_starclf.learn import intervals as I

BINS = N.LOG_RH_BINS


def _posteriors(rng, n, sigma_true, sigma_claimed):
    """Marginals centred on a noisy measurement: truth scatters by ``sigma_true``, the
    marginals claim ``sigma_claimed`` (both in bin widths)."""
    w = BINS[1] - BINS[0]
    true = rng.uniform(BINS[3], BINS[-4], n)
    centre = true + rng.normal(0, sigma_true * w, n)
    return N.gaussian_targets_1d(centre, BINS, sigma_bins=sigma_claimed).astype(float), true


def test_fit_temperature_calibrates_overwide_intervals():
    rng = np.random.default_rng(0)
    marg, true = _posteriors(rng, 4000, 1.0, 2.0)          # intervals twice too wide
    assert I.interval_coverage(marg, BINS, true) > 0.85
    t = I.fit_temperature(marg, BINS, true)
    assert 0.15 < t < 0.45                                    # Gaussian: width scales as sqrt(T)
    fresh, true2 = _posteriors(np.random.default_rng(1), 4000, 1.0, 2.0)
    assert I.interval_coverage(fresh, BINS, true2, t) == pytest.approx(0.68, abs=0.03)


def test_fit_temperature_broadens_overconfident_intervals():
    marg, true = _posteriors(np.random.default_rng(2), 3000, 1.5, 0.7)
    assert I.interval_coverage(marg, BINS, true) < 0.6
    t = I.fit_temperature(marg, BINS, true)
    assert t > 1.2
    assert I.interval_coverage(marg, BINS, true, t) == pytest.approx(0.68, abs=0.02)


def test_fit_temperature_errors():
    marg, true = _posteriors(np.random.default_rng(3), 200, 1.0, 1.0)
    with pytest.raises(ValueError, match="target coverage"):
        I.fit_temperature(marg, BINS, true, target=1.2)
    with pytest.raises(ValueError, match="cannot reach"):
        I.fit_temperature(marg, BINS, true, bounds=(0.9, 1.1), target=0.05)


def _grid_bank(rng, n):
    truth = Table({"log_age": rng.uniform(7, 9.5, n), "av": rng.uniform(0.3, 2.7, n),
                   "log_mass": rng.uniform(3.5, 5, n), "r_h": 10 ** rng.uniform(0, 0.8, n),
                   "p_cb": np.r_[np.ones(n - 5), np.zeros(5)]})
    grid = N.gaussian_targets_3d(truth["log_age"] + rng.normal(0, 0.3, n),
                                 truth["av"] + rng.normal(0, 0.2, n),
                                 truth["log_mass"] + rng.normal(0, 0.1, n), sigma_bins=1.0)
    rh = N.gaussian_targets_1d(np.log10(truth["r_h"]) + rng.normal(0, 0.05, n), BINS,
                               sigma_bins=1.0)
    return {"grid": grid, "r_h": rh}, truth


def test_cluster_marginals_and_estimator_errors():
    rng = np.random.default_rng(4)
    post, truth = _grid_bank(rng, 300)
    m = I.cluster_marginals(post, truth)
    assert list(m) == list(I.PARAMETERS)
    assert all(len(v[1]) == 295 for v in m.values())          # background stamps left out
    err = I.estimator_errors(m)
    assert set(err) == set(N.ESTIMATORS)
    # Unbiased, symmetric posteriors: every estimator near the truth for mass.
    for est in N.ESTIMATORS:
        assert abs(err[est]["log_mass"]["median"]) < 0.03
        assert err[est]["log_mass"]["p95_abs"] < 0.3
    # Age was scattered by 0.3 dex: its errors show it.
    assert err["mean"]["log_age"]["p95_abs"] > 0.3
    temps = I.fit_interval_temperatures(m)
    assert set(temps) == set(I.PARAMETERS) and all(t > 0 for t in temps.values())
    with pytest.raises(ValueError, match="no cluster"):
        I.cluster_marginals(post, Table({**{c: truth[c] for c in truth.colnames if c != "p_cb"},
                                         "p_cb": np.zeros(300)}))


def test_fit_temperature_where_sharpening_raises_the_coverage():
    # Half the mass flat, half in bin 1 where the truth lies: broad intervals
    # (high temperature) hold the middle of the range and miss the truth, so
    # here coverage falls with the temperature (0.82 at T = 1, 0.02 at 20).
    rng = np.random.default_rng(5)
    n = 2000
    true = rng.normal(BINS[1], 0.3 * (BINS[1] - BINS[0]), n)
    marg = 0.5 * np.ones((n, BINS.size)) / BINS.size
    marg[:, 1] += 0.5
    assert I.interval_coverage(marg, BINS, true, 20.0) < 0.1
    t = I.fit_temperature(marg, BINS, true)
    assert 1.0 < t < 20.0
    assert I.interval_coverage(marg, BINS, true, t) == pytest.approx(0.68, abs=0.03)
