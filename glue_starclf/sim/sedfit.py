"""Fit simple-stellar-population models of the shipped table to 5-band photometry.

Used to anchor mock sources on real catalogs (the age, extinction and mass
that reproduce a LEGUS source's colours with our isochrones) and to check
the table against real clusters.
"""

import functools

import numpy as np

from ..io.bands import BANDS
from .isochrones import load_isochrones
from .populations import distance_modulus

__all__ = ["ERROR_FLOOR_MAG", "EBV_GRID", "R_V", "ssp_grid", "fit_ssp"]

#: Photometric error floor [mag] added in quadrature.
ERROR_FLOOR_MAG = 0.05

#: E(B-V) grid [mag] of the fit; A_V = R_V E(B-V).
EBV_GRID = np.round(np.arange(0.0, 1.5001, 0.02), 2)
R_V = 3.1


@functools.lru_cache(maxsize=2)
def ssp_grid(mh=0.0):
    """Absolute magnitudes per Msun on the age x E(B-V) grid.

    Returns
    -------
    log_ages : ndarray, shape (na,)
    mags : ndarray, shape (na, ne, 5)
    """
    tab = load_isochrones()
    ages = np.asarray(tab.log_ages)
    mags = np.array([[tab.ssp_abs_mag(a, R_V * e, mh) for e in EBV_GRID] for a in ages])
    return ages, mags


def fit_ssp(mags, errors, distance_mpc, mh=0.0):
    """Best-fitting age, extinction and mass for many sources at once.

    The magnitude offset (mass) is fitted analytically for every model:
    chi^2 = S(w r^2) - S(w r)^2 / S(w) with r = observed - model, which the
    matrix products below evaluate for all sources and models together.

    Parameters
    ----------
    mags, errors : ndarray, shape (n, 5)
        Apparent Vega magnitudes and errors in `BANDS` order (NaN: missing).
    distance_mpc : float
    mh : float

    Returns
    -------
    dict of ndarray, each shape (n,)
        ``log_age``, ``av``, ``log_mass`` (initial mass), ``chi2_red``
        (chi^2 / (N_bands - 3) with the `ERROR_FLOOR_MAG`, NaN below 4
        bands) and ``n_bands``.
    """
    mags = np.asarray(mags, float)
    errors = np.asarray(errors, float)
    ok = np.isfinite(mags) & np.isfinite(errors)
    w = np.where(ok, 1.0 / (np.where(ok, errors, 0.0) ** 2 + ERROR_FLOOR_MAG ** 2), 0.0)
    obs = np.where(ok, mags, 0.0)
    ages, grid = ssp_grid(mh)
    models = (grid + distance_modulus(distance_mpc)).reshape(-1, len(BANDS))
    sw = np.maximum(w.sum(axis=1), 1e-300)[:, None]
    wm = w * obs
    s_wr = wm.sum(axis=1)[:, None] - w @ models.T
    s_wr2 = (wm * obs).sum(axis=1)[:, None] - 2 * wm @ models.T + w @ (models.T ** 2)
    chi2 = s_wr2 - s_wr ** 2 / sw
    best = chi2.argmin(axis=1)
    idx = np.arange(len(obs))
    offset = s_wr[idx, best] / sw[:, 0]                 # observed - model, magnitudes
    ia, ie = np.unravel_index(best, grid.shape[:2])
    n_bands = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2_red = np.where(n_bands > 3, chi2[idx, best] / (n_bands - 3), np.nan)
    return {"log_age": ages[ia], "av": R_V * EBV_GRID[ie], "log_mass": -0.4 * offset,
            "chi2_red": chi2_red, "n_bands": n_bands}
