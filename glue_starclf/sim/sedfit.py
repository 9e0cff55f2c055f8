"""Fit simple-stellar-population models of the shipped table to 5-band photometry.

Used to anchor mock sources on real catalogs (the age, extinction and mass
that reproduce a LEGUS source's colours with our isochrones) and to check
the table against real clusters.
"""

import functools

import numpy as np

from ..bands import BANDS
from .isochrones import load_isochrones
from .populations import distance_modulus

__all__ = ["ERROR_FLOOR_MAG", "EBV_GRID", "R_V", "ssp_grid", "fit_ssp"]

#: Photometric error floor [mag] added in quadrature.
ERROR_FLOOR_MAG = 0.05

#: E(B-V) grid [mag] of the fit; A_V = R_V E(B-V).
EBV_GRID = np.round(np.arange(0.0, 1.51, 0.05), 2)
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
        (chi^2 / (N_bands - 3), with the error floor) and ``n_bands``.
    """
    mags = np.asarray(mags, float)
    err = np.sqrt(np.asarray(errors, float) ** 2 + ERROR_FLOOR_MAG ** 2)
    ok = np.isfinite(mags) & np.isfinite(err)
    w = np.where(ok, 1.0 / err ** 2, 0.0)
    m = np.where(ok, mags, 0.0)
    ages, model = ssp_grid(mh)
    model = model + distance_modulus(distance_mpc)              # (na, ne, 5)
    # Mass offset: weighted mean of (data - model) per source and model.
    sw = w.sum(axis=1)                                          # (n,)
    d = (m[:, None, None, :] - model[None]) * w[:, None, None, :]
    offset = d.sum(-1) / np.where(sw > 0, sw, 1.0)[:, None, None]
    resid = m[:, None, None, :] - model[None] - offset[..., None]
    chi2 = (resid ** 2 * w[:, None, None, :]).sum(-1)           # (n, na, ne)
    flat = chi2.reshape(len(m), -1).argmin(axis=1)
    ia, ie = np.unravel_index(flat, chi2.shape[1:])
    n_bands = ok.sum(axis=1)
    idx = np.arange(len(m))
    dof = np.where(n_bands > 3, n_bands - 3, np.nan)
    return {"log_age": ages[ia], "av": R_V * EBV_GRID[ie],
            "log_mass": -0.4 * offset[idx, ia, ie],
            "chi2_red": chi2[idx, ia, ie] / dof, "n_bands": n_bands}
