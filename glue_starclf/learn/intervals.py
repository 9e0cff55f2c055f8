"""Point estimates and 16th-84th percentile intervals of the physical ensemble, measured.

The ensemble's averaged posteriors on a labelled physical bank give, per
parameter (log age, log mass, A_V, log r_h), the errors of each point
estimator of `glue_starclf.core.networks.ESTIMATORS` and the coverage of the
16th-84th percentile intervals. `fit_interval_temperatures` fits one
temperature per parameter's marginal (`glue_starclf.core.networks.temper`)
on a validation bank so that the intervals hold the true value 68% of the
time; the model cards store them as ``interval_temperature``.
"""

import numpy as np

from ..core.networks import (AV_BINS, ESTIMATORS, GRID_SHAPE, LOG_AGE_BINS, LOG_MASS_BINS,
                             LOG_RH_BINS, _marginal_estimate, _peak_mean, _percentiles,
                             normalise_physical, temper)

__all__ = ["PARAMETERS", "bank_posteriors", "cluster_marginals", "estimator_errors",
           "interval_coverage", "fit_temperature", "fit_interval_temperatures"]

#: The parameters with intervals, in report order, and their bin centres.
PARAMETERS = {"log_age": LOG_AGE_BINS, "log_mass": LOG_MASS_BINS, "av": AV_BINS,
              "log_r_h": LOG_RH_BINS}


def bank_posteriors(members, stamps, distance_mpc, mask=None, batch=256):
    """Softmax outputs of every head averaged over the members, for raw bank stamps.

    Parameters
    ----------
    members : list of (model, card)
        `glue_starclf.core.predict.Ensemble.members` of the physical family.
    stamps : ndarray, shape (n, 5, 64, 64)
        Sky-subtracted count rates (a bank's ``stamps.npy``).
    distance_mpc : array_like, shape (n,)
        Distance of each stamp.
    mask : ndarray of bool, shape (n, 5), optional
        Band availability; default all present.
    batch : int

    Returns
    -------
    dict of ndarray
        ``grid`` (n, 2800), ``r_h`` (n, 14), ``cb`` (n, 2), ``visibility`` (n, 20).
    """
    import torch
    n = len(stamps)
    dist = np.asarray(distance_mpc, np.float32).reshape(-1)
    if dist.size != n or not np.all(dist > 0):
        raise ValueError(f"distance_mpc: need {n} positive distances")
    mask = np.ones((n, 5), bool) if mask is None else np.asarray(mask, bool)
    acc = {}
    with torch.inference_mode():
        for i in range(0, n, batch):
            m = mask[i:i + batch]
            x = torch.from_numpy(normalise_physical(np.asarray(stamps[i:i + batch]), m))
            mt = torch.from_numpy(m.astype(np.float32))
            d = torch.from_numpy(np.log10(dist[i:i + batch]))[:, None]
            for model, _ in members:
                for k, v in model(x, mt, d).items():
                    p = torch.softmax(v.float(), dim=1).numpy() / len(members)
                    if k not in acc:
                        acc[k] = np.zeros((n, p.shape[1]))
                    acc[k][i:i + len(p)] += p
    return acc


def cluster_marginals(posteriors, truth):
    """Per parameter, the cluster stamps' marginals and true values.

    Returns
    -------
    dict
        name -> ``(marginal (n_cl, bins), true (n_cl,), peak (n_cl,))`` for
        `PARAMETERS`; ``peak`` is 004's peak estimate (on the joint grid
        for age, mass and A_V).
    """
    cl = np.asarray(truth["p_cb"]) > 0.5
    if not cl.any():
        raise ValueError("no cluster stamps (p_cb > 0.5) in the bank")
    t = truth[cl]
    grid = np.asarray(posteriors["grid"])[cl].reshape((-1,) + GRID_SHAPE)
    axes = (LOG_AGE_BINS, AV_BINS, LOG_MASS_BINS)
    peaks = _peak_mean(grid, axes)
    out = {}
    for k, name in enumerate(("log_age", "av", "log_mass")):
        marginal = grid.sum(axis=tuple(a for a in (1, 2, 3) if a != k + 1))
        out[name] = (marginal, np.asarray(t[name], float), peaks[k])
    rh = np.asarray(posteriors["r_h"])[cl]
    out["log_r_h"] = (rh, np.log10(np.asarray(t["r_h"], float)),
                      _peak_mean(rh, (LOG_RH_BINS,))[0])
    return {name: out[name] for name in PARAMETERS}


def estimator_errors(marginals):
    """95th percentile of |error| and median error of each estimator and parameter.

    Parameters
    ----------
    marginals : dict
        `cluster_marginals`' output.

    Returns
    -------
    dict
        ``estimator -> name -> {"p95_abs": float, "median": float}``.
    """
    out = {}
    for est in ESTIMATORS:
        out[est] = {}
        for name, (marginal, true, peak) in marginals.items():
            if est == "peak":
                pred = peak
            else:
                pred = _marginal_estimate(marginal, PARAMETERS[name], est)
            err = pred - true
            out[est][name] = {"p95_abs": float(np.percentile(np.abs(err), 95)),
                              "median": float(np.median(err))}
    return out


def interval_coverage(marginal, bins, true, temperature=1.0):
    """Fraction of true values inside the 16th-84th percentiles of the tempered marginals."""
    lo, hi = _percentiles(temper(marginal, temperature), bins)
    true = np.asarray(true, float)
    return float(np.mean((true >= lo) & (true <= hi)))


def fit_temperature(marginal, bins, true, target=0.68, bounds=(0.05, 20.0), n_grid=61,
                    iterations=30):
    """The marginal temperature whose 16th-84th percentile intervals cover ``target``.

    Coverage is evaluated on a grid of ``n_grid`` temperatures spaced evenly
    in log between ``bounds``; of the grid steps where it crosses the target,
    the one nearest to temperature 1 is refined by bisection. (Coverage
    usually grows with the temperature, but not for every posterior: a
    nearly flat one can cover more when sharpened.)

    Parameters
    ----------
    marginal : ndarray, shape (n, len(bins))
    bins : ndarray
    true : ndarray, shape (n,)
    target : float
        Wanted coverage, in (0, 1).
    bounds : (float, float)
        Temperatures searched.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If no temperature within ``bounds`` reaches the target.
    """
    if not 0 < target < 1:
        raise ValueError(f"target coverage {target!r} must lie in (0, 1)")
    logs = np.linspace(np.log(bounds[0]), np.log(bounds[1]), int(n_grid))
    cov = np.array([interval_coverage(marginal, bins, true, np.exp(v)) for v in logs]) - target
    steps = np.flatnonzero((np.sign(cov[:-1]) != np.sign(cov[1:])) | (cov[:-1] == 0))
    if not steps.size:
        raise ValueError(f"coverage runs from {cov.min() + target:.3f} to {cov.max() + target:.3f}"
                         f" over temperatures {bounds[0]}-{bounds[1]}; cannot reach {target}")
    k = steps[np.argmin(np.abs(logs[steps] + logs[steps + 1]))]
    lo, hi, rising = logs[k], logs[k + 1], cov[k + 1] > cov[k]
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = interval_coverage(marginal, bins, true, np.exp(mid)) < target
        if below == rising:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def fit_interval_temperatures(marginals, target=0.68):
    """`fit_temperature` for every parameter of `cluster_marginals`' output."""
    return {name: fit_temperature(marginal, PARAMETERS[name], true, target)
            for name, (marginal, true, _) in marginals.items()}
