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
    assert t == pytest.approx((1.5 / 0.7) ** 2, rel=0.15)     # width scales as sqrt(T)
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


def test_fit_posterior_tilt_recovers_a_known_tilt():
    """Truths drawn from tilted posteriors: the fit finds the tilt that drew them, and
    the likelihood of the truths rises with it."""
    from glue_starclf.core import posterior_tilt as T
    rng = np.random.default_rng(3)
    n = 3000
    size = int(np.prod(N.GRID_SHAPE))
    grid = rng.dirichlet(np.full(size, 0.3), n)
    rh = rng.dirichlet(np.full(N.LOG_RH_BINS.size, 1.0), n)
    d = rng.uniform(3, 20, n)
    true_tilt = {"log_age": [0.2, -0.6, 0.0], "av": [0.0, 0.0, 0.0],
                 "log_mass": [0.1, 0.8, 0.4], "log_r_h": [0.5, 0.0, -0.5]}
    q = T.tilt_posteriors({"grid": grid, "r_h": rh}, d, T.check_tilt(true_tilt))
    cells = np.array([rng.choice(size, p=row) for row in q["grid"]])
    ia, iv, im = np.unravel_index(cells, N.GRID_SHAPE)
    ir = np.array([rng.choice(N.LOG_RH_BINS.size, p=row) for row in q["r_h"]])
    truth = Table({"p_cb": np.ones(n), "distance_mpc": d, "log_age": N.LOG_AGE_BINS[ia],
                   "av": N.AV_BINS[iv], "log_mass": N.LOG_MASS_BINS[im],
                   "r_h": 10 ** N.LOG_RH_BINS[ir]})
    # background rows are left out of the fit
    bg = Table({"p_cb": np.zeros(5), "distance_mpc": np.full(5, 10.0),
                **{k: np.full(5, np.nan) for k in ("log_age", "av", "log_mass", "r_h")}})
    post = {"grid": np.concatenate([grid, _uniform(5, size)]),
            "r_h": np.concatenate([rh, _uniform(5, N.LOG_RH_BINS.size)])}
    from astropy.table import vstack
    fitted = I.fit_posterior_tilt([(post, vstack([truth, bg]))])
    for name, c in true_tilt.items():
        np.testing.assert_allclose(fitted[name], c, atol=0.15, err_msg=name)
    before = I.tilt_nll(post, vstack([truth, bg]))
    after = I.tilt_nll(post, vstack([truth, bg]), T.check_tilt(fitted))
    assert after["grid"] < before["grid"] and after["log_r_h"] < before["log_r_h"]


def _uniform(n, k):
    return np.full((n, k), 1.0 / k)


def test_fit_posterior_tilt_needs_clusters():
    with pytest.raises(ValueError, match="at least one bank"):
        I.fit_posterior_tilt([])
    truth = Table({"p_cb": np.zeros(3), "distance_mpc": np.full(3, 5.0), "log_age": np.zeros(3),
                   "av": np.zeros(3), "log_mass": np.zeros(3), "r_h": np.ones(3)})
    post = {"grid": _uniform(3, int(np.prod(N.GRID_SHAPE))), "r_h": _uniform(3, 14)}
    with pytest.raises(ValueError, match="no cluster stamps"):
        I.fit_posterior_tilt([(post, truth)])


def test_shipped_errors_follow_the_estimator_per_parameter():
    rng = np.random.default_rng(5)
    post, truth = _grid_bank(rng, 200)
    m = I.cluster_marginals(post, truth)
    err = I.shipped_errors(m)
    assert set(err) == set(I.PARAMETERS)
    table = I.estimator_errors(m)
    for name, e in err.items():
        est = N.estimator_for(name)
        assert np.percentile(np.abs(e), 95) == pytest.approx(table[est][name]["p95_abs"])
    peak = I.shipped_errors(m, estimator="peak")
    assert np.allclose(peak["log_age"], m["log_age"][2] - m["log_age"][1])


def test_errors_by_quantile_puts_each_error_in_its_bin():
    values = np.arange(100.0)
    # The error grows with the value: the last quarter holds the large ones.
    errors = {"a": np.where(values >= 75, 1.0, 0.1) * np.where(values % 2, 1, -1),
              "b": np.full(100, 0.2)}
    rows = I.errors_by_quantile(errors, values)
    assert [r["n"] for r in rows] == [25, 25, 25, 25]
    assert rows[0]["lo"] == 0 and rows[-1]["hi"] == 99
    assert rows[-1]["a"]["p95_abs"] == pytest.approx(1.0)
    assert rows[0]["a"]["p95_abs"] == pytest.approx(0.1)
    assert rows[1]["b"] == {"p95_abs": pytest.approx(0.2), "median": pytest.approx(0.2)}
    assert len(I.errors_by_quantile(errors, values, n_bins=2)) == 2
    assert I.errors_by_quantile({"a": np.zeros(0)}, np.zeros(0)) == []
    with pytest.raises(ValueError, match="a: 100 errors for 99 values"):
        I.errors_by_quantile({"a": errors["a"]}, values[:99])
    with pytest.raises(ValueError, match="n_bins 0"):
        I.errors_by_quantile(errors, values, n_bins=0)
