"""Distance-dependent recalibration of the physical ensemble's posteriors.

The members' averaged posteriors are not calibrated at every distance: at
14-20 Mpc they put too little weight on high masses (the two highest mass
bins get 0.145 and 0.063 of the far clusters' probability, where 0.158 and
0.080 of them lie), so every estimate of a far, massive cluster is too low.
A posterior tilt corrects that with a log-linear reweighting of each
parameter's bins whose strength depends on the distance::

    q(bins) ∝ p(bins) · exp(Σ_k β_k(d) z_k),   β_k(d) = c_k0 + c_k1 u + c_k2 u²

with ``u = (d - 11.5 Mpc) / 8.5 Mpc`` (-1 at 3 Mpc, +1 at 20 Mpc, clipped there) and
``z_k`` the bin centres of parameter ``k`` standardised to mean 0 and
standard deviation 1. The joint age x A_V x mass grid takes the terms of
log age, A_V and log mass; the r_h posterior that of log r_h. The
coefficients are fitted by maximum likelihood on validation banks
(`glue_starclf.learn.intervals.fit_posterior_tilt`, ``python -m training
calibrate-intervals``) and stored in every physical model card as
``posterior_tilt``.
"""

import numpy as np

from .networks import AV_BINS, GRID_SHAPE, LOG_AGE_BINS, LOG_MASS_BINS, LOG_RH_BINS

__all__ = ["TILT_PARAMETERS", "TILT_CENTRE_MPC", "TILT_HALF_RANGE_MPC", "tilt_basis",
           "standard_bins", "check_tilt", "tilt_grid", "tilt_1d", "tilt_posteriors"]

#: Parameters with a tilt: the three axes of the joint grid, then log r_h.
TILT_PARAMETERS = ("log_age", "av", "log_mass", "log_r_h")

#: The distance range 3-20 Mpc mapped onto u = -1 ... +1.
TILT_CENTRE_MPC = 11.5
TILT_HALF_RANGE_MPC = 8.5

_BINS = {"log_age": LOG_AGE_BINS, "av": AV_BINS, "log_mass": LOG_MASS_BINS,
         "log_r_h": LOG_RH_BINS}


def tilt_basis(distance_mpc):
    """The basis (1, u, u²) of the tilt strength at each distance, shape (n, 3).

    Distances outside 3-20 Mpc take the value at the nearer end (u clipped to
    -1 ... 1): the tilt is not extrapolated where it was not fitted.
    """
    d = np.atleast_1d(np.asarray(distance_mpc, float)).reshape(-1)
    u = np.clip((d - TILT_CENTRE_MPC) / TILT_HALF_RANGE_MPC, -1.0, 1.0)
    return np.stack([np.ones_like(u), u, u * u], axis=1)


def standard_bins(name):
    """Bin centres of ``name`` standardised to mean 0 and standard deviation 1."""
    b = _BINS[name]
    return (b - b.mean()) / b.std()


def check_tilt(tilt, source="posterior_tilt"):
    """``tilt`` as ``{name: float ndarray (3,)}``, or a one-line ValueError naming ``source``.

    Parameters
    ----------
    tilt : dict
        `TILT_PARAMETERS` (any subset) -> three coefficients.
    source : str
        Where it came from (a card's path), for the message.
    """
    if not isinstance(tilt, dict):
        raise ValueError(f"{source}: posterior_tilt must map parameters to 3 coefficients")
    out = {}
    for name, c in tilt.items():
        if name not in TILT_PARAMETERS:
            raise ValueError(f"{source}: posterior_tilt names {name!r}; expected "
                             f"{', '.join(TILT_PARAMETERS)}")
        try:
            c = np.asarray(c, float).reshape(-1)
        except (TypeError, ValueError):
            c = np.array([np.nan])
        if c.size != 3 or not np.all(np.isfinite(c)):
            raise ValueError(f"{source}: posterior_tilt {name!r} must be 3 finite numbers, "
                             f"got {tilt[name]!r}")
        out[name] = c
    return out


def _log_weights(distance_mpc, tilt, names, n):
    basis = tilt_basis(distance_mpc)
    if len(basis) == 1 and n != 1:
        basis = np.repeat(basis, n, axis=0)
    if len(basis) != n:
        raise ValueError(f"{len(basis)} distances for {n} posteriors")
    return [(basis @ tilt[k])[:, None] * standard_bins(k)[None, :] if k in tilt
            else np.zeros((n, len(_BINS[k]))) for k in names]


def tilt_grid(grid, distance_mpc, tilt):
    """The joint age x A_V x mass posteriors reweighted by the tilt, renormalised.

    Parameters
    ----------
    grid : ndarray, shape (n, 2800) or (n, 20, 10, 14)
        Probabilities on `glue_starclf.core.networks.GRID_SHAPE`.
    distance_mpc : float or array_like, shape (n,)
    tilt : dict
        `check_tilt`'s output; ``log_age``, ``av`` and ``log_mass`` are used.

    Returns
    -------
    ndarray
        The shape of ``grid``, in its floating type (at least float32); rows
        sum to 1.
    """
    p = np.asarray(grid)
    p = p.astype(np.result_type(p.dtype, np.float32), copy=False)
    shape = p.shape
    p = p.reshape((-1,) + GRID_SHAPE)
    la, lv, lm = (_factor(lw, p.dtype) for lw in _log_weights(
        distance_mpc, tilt, ("log_age", "av", "log_mass"), len(p)))
    q = p * (la[:, :, None, None] * lv[:, None, :, None]) * lm[:, None, None, :]
    q /= np.clip(q.sum(axis=(1, 2, 3), keepdims=True), np.finfo(p.dtype).tiny, None)
    return q.reshape(shape)


def _factor(log_weight, dtype):
    # The maximum is divided out: exp() never overflows, the ratios are kept.
    return np.exp(log_weight - log_weight.max(axis=1, keepdims=True)).astype(dtype)


def tilt_1d(probs, distance_mpc, tilt, name="log_r_h"):
    """A 1-D posterior (the r_h head's) reweighted by the tilt of ``name``, renormalised.

    Parameters
    ----------
    probs : ndarray, shape (n, bins)
        Probabilities over the bins of ``name``.
    distance_mpc : float or array_like, shape (n,)
    tilt : dict
        `check_tilt`'s output; without ``name`` the posterior is only
        renormalised.
    name : str
        One of `TILT_PARAMETERS`.

    Returns
    -------
    ndarray, shape (n, bins)
        In the floating type of ``probs`` (at least float32); rows sum to 1.
    """
    p = np.asarray(probs)
    p = p.astype(np.result_type(p.dtype, np.float32), copy=False)
    (lw,) = _log_weights(distance_mpc, tilt, (name,), len(p))
    q = p * _factor(lw, p.dtype)
    return q / np.clip(q.sum(axis=1, keepdims=True), np.finfo(p.dtype).tiny, None)


def tilt_posteriors(posteriors, distance_mpc, tilt):
    """The physical heads' averaged outputs with ``grid`` and ``r_h`` tilted.

    Parameters
    ----------
    posteriors : dict of ndarray
        ``grid``, ``r_h``, ``cb``, ``visibility`` (the ensemble's averaged
        softmax outputs).
    distance_mpc : float or array_like
        One distance, or one per row.
    tilt : dict or None
        `check_tilt`'s output; None or empty returns ``posteriors`` as given.

    Returns
    -------
    dict of ndarray
        A new dict; the other heads are the same arrays.
    """
    if not tilt:
        return posteriors
    out = dict(posteriors)
    out["grid"] = tilt_grid(posteriors["grid"], distance_mpc, tilt)
    if "log_r_h" in tilt:
        out["r_h"] = tilt_1d(posteriors["r_h"], distance_mpc, tilt)
    return out
