"""Kroupa (2001) initial mass function: sampling and integrals."""

import numpy as np

__all__ = ["M_MIN", "M_MAX", "kroupa_pdf", "mean_mass", "sample_masses",
           "number_fraction_above", "integrate"]

#: Mass range of the IMF [Msun]: hydrogen-burning limit to the most massive
#: star of the PARSEC grid.
M_MIN, M_MAX = 0.08, 120.0
_BREAK = 0.5
_ALPHA = (1.3, 2.3)


def kroupa_pdf(m):
    """Kroupa IMF dN/dm normalised to one star over [M_MIN, M_MAX]."""
    m = np.asarray(m, dtype=float)
    shape = np.where(m < _BREAK, (m / _BREAK) ** -_ALPHA[0], (m / _BREAK) ** -_ALPHA[1])
    return np.where((m >= M_MIN) & (m <= M_MAX), shape / _NORM, 0.0)


def _segment_integral(a, b, alpha, power):
    """Integral of (m/break)^-alpha * m^power from a to b."""
    k = power - alpha + 1.0
    return _BREAK ** alpha * (b ** k - a ** k) / k


def _raw_integral(a, b, power):
    a, b = np.asarray(a, float), np.asarray(b, float)
    lo = np.clip(a, M_MIN, _BREAK), np.clip(b, M_MIN, _BREAK)
    hi = np.clip(a, _BREAK, M_MAX), np.clip(b, _BREAK, M_MAX)
    return (_segment_integral(*lo, _ALPHA[0], power)
            + _segment_integral(*hi, _ALPHA[1], power))


_NORM = float(_raw_integral(M_MIN, M_MAX, 0))
_C_BREAK = float(_raw_integral(M_MIN, _BREAK, 0))


def _cumulative(m):
    """Unnormalised number of stars below scalar mass ``m`` (fast scalar path)."""
    m = min(max(m, M_MIN), M_MAX)
    if m <= _BREAK:
        k = 1.0 - _ALPHA[0]
        return _BREAK ** _ALPHA[0] * (m ** k - M_MIN ** k) / k
    k = 1.0 - _ALPHA[1]
    return _C_BREAK + _BREAK ** _ALPHA[1] * (m ** k - _BREAK ** k) / k


def number_fraction_above(m):
    """Fraction of stars born with mass above ``m``."""
    return _raw_integral(m, M_MAX, 0) / _NORM


def mean_mass(lo=M_MIN, hi=M_MAX):
    """Mean stellar mass [Msun] of the IMF between ``lo`` and ``hi``."""
    return float(_raw_integral(lo, hi, 1) / _raw_integral(lo, hi, 0))


def integrate(values, masses):
    """IMF-weighted integral of a quantity tabulated along an isochrone.

    Parameters
    ----------
    values : array, shape (n, ...)
        Quantity per star (e.g. flux) at increasing initial ``masses``.
    masses : array, shape (n,)
        Initial masses [Msun].

    Returns
    -------
    array, shape (...)
        Sum over the isochrone of the quantity times the number of stars per
        Msun of initial cluster mass (trapezoid in mass); stars more massive
        than the isochrone's last point are dead and contribute nothing.
    """
    masses = np.asarray(masses, float)
    w = kroupa_pdf(masses) / mean_mass()
    dm = np.gradient(masses)
    return np.tensordot(w * dm, np.asarray(values, float), axes=(0, 0))


def sample_masses(rng, n, lo=M_MIN, hi=M_MAX):
    """Draw ``n`` stellar masses from the Kroupa IMF truncated to [lo, hi].

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
    lo, hi : float
        Truncation of the IMF [Msun].

    Returns
    -------
    ndarray, shape (n,)
    """
    if n <= 0:
        return np.empty(0)
    c_lo = _cumulative(lo)
    u = c_lo + rng.random(n) * (_cumulative(hi) - c_lo)
    # Invert the piecewise power-law CDF analytically.
    c_break = _C_BREAK
    out = np.empty(n)
    low = u < c_break
    k0 = 1.0 - _ALPHA[0]
    out[low] = (M_MIN ** k0 + u[low] * k0 / _BREAK ** _ALPHA[0]) ** (1.0 / k0)
    k1 = 1.0 - _ALPHA[1]
    out[~low] = (_BREAK ** k1 + (u[~low] - c_break) * k1 / _BREAK ** _ALPHA[1]) ** (1.0 / k1)
    return np.clip(out, lo, hi)
