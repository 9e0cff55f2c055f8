"""Point estimates and 16th-84th percentile intervals of the physical ensemble, measured.

The ensemble's averaged posteriors on a labelled physical bank give, per
parameter (log age, log mass, A_V, log r_h), the errors of each point
estimator of `glue_starclf.core.networks.ESTIMATORS` and the coverage of the
16th-84th percentile intervals. `fit_interval_temperatures` fits one
temperature per parameter's marginal (`glue_starclf.core.networks.temper`)
on a validation bank so that the intervals hold the true value 68% of the
time; the model cards store them as ``interval_temperature``.
`fit_posterior_tilt` fits the distance-dependent recalibration of the
posteriors (`glue_starclf.core.posterior_tilt`) on validation banks; the
cards store it as ``posterior_tilt``.
"""

import numpy as np

from ..core.networks import (AV_BINS, ESTIMATORS, GRID_SHAPE, LOG_AGE_BINS, LOG_MASS_BINS,
                             LOG_RH_BINS, _marginal_estimate, _peak_mean, _percentiles,
                             estimator_for, normalise_physical, temper)
from ..core.posterior_tilt import TILT_PARAMETERS, standard_bins, tilt_basis, tilt_posteriors

__all__ = ["PARAMETERS", "bank_posteriors", "cluster_marginals", "estimator_errors",
           "shipped_errors", "errors_by_quantile", "interval_coverage", "fit_temperature", "fit_interval_temperatures",
           "fit_posterior_tilt", "tilt_nll"]

#: The parameters with intervals, in report order, and their bin centres.
PARAMETERS = {"log_age": LOG_AGE_BINS, "log_mass": LOG_MASS_BINS, "av": AV_BINS,
              "log_r_h": LOG_RH_BINS}


def bank_posteriors(members, stamps, distance_mpc, mask=None, batch=256, tilt=None,
                    stellar_ci=None):
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
    tilt : dict, optional
        A posterior tilt (`glue_starclf.core.posterior_tilt.check_tilt`),
        applied as `glue_starclf.core.predict.predict` does; default none.
    stellar_ci : array_like, shape (n,), optional
        Each stamp's field stellar CI (`glue_starclf.learn.banks.stamp_stellar_ci`),
        needed by members that take it.

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
    takes = [bool(getattr(model, "stellar_ci", False)) for model, _ in members]
    if any(takes):
        if stellar_ci is None:
            raise ValueError("these physical members need each stamp's stellar CI")
        stellar_ci = np.broadcast_to(np.asarray(stellar_ci, np.float32), (n,))
    acc = {}
    with torch.inference_mode():
        for i in range(0, n, batch):
            m = mask[i:i + batch]
            x = torch.from_numpy(normalise_physical(np.asarray(stamps[i:i + batch]), m))
            mt = torch.from_numpy(m.astype(np.float32))
            d = torch.from_numpy(np.log10(dist[i:i + batch]))[:, None]
            ci = None if stellar_ci is None else stellar_ci[i:i + batch]
            for (model, _), t in zip(members, takes):
                for k, v in model(x, mt, d, ci if t else None).items():
                    p = torch.softmax(v.float(), dim=1).numpy() / len(members)
                    if k not in acc:
                        acc[k] = np.zeros((n, p.shape[1]))
                    acc[k][i:i + len(p)] += p
    return tilt_posteriors(acc, dist, tilt)


def cluster_marginals(posteriors, truth):
    """Per parameter, the cluster stamps' marginals and true values.

    Parameters
    ----------
    posteriors : dict of ndarray
        `bank_posteriors`' output (``grid`` and ``r_h`` are used).
    truth : astropy.table.Table
        The bank's truth table: ``p_cb`` (> 0.5 for a cluster stamp),
        ``log_age``, ``av``, ``log_mass`` and ``r_h`` [pc].

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
        for name, err in shipped_errors(marginals, est).items():
            out[est][name] = {"p95_abs": float(np.percentile(np.abs(err), 95)),
                              "median": float(np.median(err))}
    return out


def shipped_errors(marginals, estimator=None):
    """Signed errors (estimate - truth) of each parameter with its point estimator.

    Parameters
    ----------
    marginals : dict
        `cluster_marginals`' output.
    estimator : str or dict, optional
        As `glue_starclf.core.networks.estimator_for`; default the shipped
        `glue_starclf.core.networks.DEFAULT_ESTIMATOR`.

    Returns
    -------
    dict
        ``name -> ndarray`` of the cluster stamps' errors.
    """
    out = {}
    for name, (marginal, true, peak) in marginals.items():
        est = estimator_for(name, estimator)
        pred = peak if est == "peak" else _marginal_estimate(marginal, PARAMETERS[name], est)
        out[name] = pred - true
    return out


def errors_by_quantile(errors, values, n_bins=4):
    """95th percentile of |error| and median error per quantile bin of a true quantity.

    Parameters
    ----------
    errors : dict
        ``name -> ndarray`` of signed errors (`shipped_errors`).
    values : array_like
        The quantity to bin by (a true value, the visibility), one per error.
    n_bins : int
        Bins at the quantiles of ``values``; the last includes its upper edge.

    Returns
    -------
    list of dict
        One per bin: ``lo``, ``hi``, ``n`` and ``name -> {"p95_abs", "median"}``.
    """
    values = np.asarray(values, float)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins {n_bins!r} must be at least 1")
    for name, e in errors.items():
        if np.shape(e) != values.shape:
            raise ValueError(f"{name}: {np.size(e)} errors for {values.size} values")
    if not values.size:
        return []
    edges = np.quantile(values, np.linspace(0, 1, int(n_bins) + 1))
    rows = []
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        k = (values >= lo) & ((values <= hi) if j == len(edges) - 2 else (values < hi))
        row = {"lo": float(lo), "hi": float(hi), "n": int(k.sum())}
        for name, e in errors.items():
            e = np.asarray(e, float)[k]
            row[name] = ({"p95_abs": float(np.percentile(np.abs(e), 95)),
                          "median": float(np.median(e))} if k.any() else None)
        rows.append(row)
    return rows


def interval_coverage(marginal, bins, true, temperature=1.0):
    """Fraction of true values inside the 16th-84th percentiles of the tempered marginals.

    Parameters
    ----------
    marginal : ndarray, shape (n, len(bins))
        Probabilities over ``bins``.
    bins : ndarray
        Bin centres (a value of `PARAMETERS`).
    true : array_like, shape (n,)
        True values, in the units of ``bins``.
    temperature : float
        As `glue_starclf.core.networks.temper`; 1 leaves the marginals as
        they are.

    Returns
    -------
    float
        Coverage in [0, 1].
    """
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
    n_grid : int
        Temperatures of the coarse grid.
    iterations : int
        Bisection steps of the refinement.

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
    """`fit_temperature` for every parameter of `cluster_marginals`' output.

    Parameters
    ----------
    marginals : dict
        `cluster_marginals`' output.
    target : float
        Wanted coverage of the 16th-84th percentile intervals, in (0, 1).

    Returns
    -------
    dict
        ``name -> temperature`` (float).
    """
    return {name: fit_temperature(marginal, PARAMETERS[name], true, target)
            for name, (marginal, true, _) in marginals.items()}


def _cells(posteriors, truth):
    """Cluster rows: the grid (n, 20, 10, 14), the r_h posterior, the true bins, the distances."""
    cl = np.asarray(truth["p_cb"]) > 0.5
    t = truth[cl]
    true = {"log_age": np.asarray(t["log_age"], float), "av": np.asarray(t["av"], float),
            "log_mass": np.asarray(t["log_mass"], float),
            "log_r_h": np.log10(np.asarray(t["r_h"], float))}
    idx = {k: np.abs(v[:, None] - PARAMETERS[k][None, :]).argmin(axis=1) for k, v in true.items()}
    return (np.asarray(posteriors["grid"], float)[cl].reshape((-1,) + GRID_SHAPE),
            np.asarray(posteriors["r_h"], float)[cl], idx,
            np.asarray(t["distance_mpc"], float))


def _nll_and_gradient(p, idx, basis, coef, names):
    """Mean negative log-likelihood of the true cells under the tilted posteriors ``p``
    (axes 1.. in ``names`` order) and its gradient in the coefficients (len(names), 3)."""
    n = len(p)
    rows = np.arange(n)
    logw = [(basis @ coef[k])[:, None] * standard_bins(name)[None, :]
            for k, name in enumerate(names)]
    q = p.copy()
    for k, lw in enumerate(logw):
        shape = [n] + [1] * len(names)
        shape[k + 1] = lw.shape[1]
        q *= np.exp(lw - lw.max(axis=1, keepdims=True)).reshape(shape)
    z = q.reshape(n, -1).sum(axis=1)
    q /= z.reshape((n,) + (1,) * len(names))
    cell = q[(rows,) + tuple(idx[name] for name in names)]
    nll = -np.mean(np.log(np.clip(cell, 1e-300, None)))
    grad = np.empty_like(coef)
    for k, name in enumerate(names):
        axes = tuple(a for a in range(1, len(names) + 1) if a != k + 1)
        marginal = q.sum(axis=axes) if axes else q
        zk = standard_bins(name)
        resid = zk[idx[name]] - marginal @ zk           # z of the true bin minus its mean
        grad[k] = -(resid[:, None] * basis).mean(axis=0)
    return nll, grad


def tilt_nll(posteriors, truth, tilt=None):
    """Mean negative log-likelihood of the clusters' true cells of a bank.

    Parameters
    ----------
    posteriors : dict of ndarray
        `bank_posteriors`' output (untilted).
    truth : astropy.table.Table
        The bank's truth.
    tilt : dict, optional
        Applied first (`glue_starclf.core.posterior_tilt.check_tilt`).

    Returns
    -------
    dict
        ``grid``: of the true (log age, A_V, log mass) cell; ``log_r_h``: of
        the true r_h bin.
    """
    tilt = tilt or {}
    grid, rh, idx, dist = _cells(posteriors, truth)
    basis = tilt_basis(dist)
    zero = np.zeros(3)
    cg = np.array([tilt.get(k, zero) for k in TILT_PARAMETERS[:3]])
    cr = np.array([tilt.get("log_r_h", zero)])
    return {"grid": float(_nll_and_gradient(grid, idx, basis, cg, TILT_PARAMETERS[:3])[0]),
            "log_r_h": float(_nll_and_gradient(rh, idx, basis, cr, ("log_r_h",))[0])}


def fit_posterior_tilt(banks):
    """The posterior tilt that maximises the likelihood of the true values on ``banks``.

    The grid's three terms (log age, A_V, log mass) are fitted together on
    the true (age, A_V, mass) cell, the r_h term on the true r_h bin; each
    by L-BFGS on the mean negative log-likelihood over the cluster stamps of
    all banks (background stamps have no parameters).

    Parameters
    ----------
    banks : list of (dict, astropy.table.Table)
        `bank_posteriors`' (untilted) output and the truth of each bank.

    Returns
    -------
    dict
        `glue_starclf.core.posterior_tilt.TILT_PARAMETERS` -> list of 3 floats.
    """
    from scipy.optimize import minimize
    if not banks:
        raise ValueError("fit_posterior_tilt needs at least one bank")
    parts = [_cells(post, truth) for post, truth in banks]
    if not sum(len(p[0]) for p in parts):
        raise ValueError("no cluster stamps (p_cb > 0.5) in the banks")
    grid = np.concatenate([p[0] for p in parts])
    rh = np.concatenate([p[1] for p in parts])
    idx = {k: np.concatenate([p[2][k] for p in parts]) for k in parts[0][2]}
    basis = tilt_basis(np.concatenate([p[3] for p in parts]))
    out = {}
    for p, names in ((grid, TILT_PARAMETERS[:3]), (rh, ("log_r_h",))):
        def f(c):
            nll, grad = _nll_and_gradient(p, idx, basis, c.reshape(len(names), 3), names)
            return nll, grad.ravel()
        res = minimize(f, np.zeros(3 * len(names)), jac=True, method="L-BFGS-B")
        for k, name in enumerate(names):
            out[name] = [round(float(v), 5) for v in res.x[3 * k:3 * k + 3]]
    return out
