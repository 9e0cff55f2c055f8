"""Spatial profiles of mock sources: EFF clusters and Sersic galaxies."""

import numpy as np
from scipy.special import gammaincinv

__all__ = ["eff_core_radius", "eff_half_number_radius", "sample_eff", "sample_sersic",
           "sersic_b"]


def eff_half_number_radius(a, gamma):
    """Projected radius holding half the stars of an EFF profile.

    The EFF surface density (004 eq. 1) mu(r) = mu0 (1 + r^2/a^2)^(-gamma/2)
    encloses N(<R) ∝ 1 - (1 + R^2/a^2)^(1 - gamma/2) for gamma > 2.
    """
    return a * np.sqrt(2.0 ** (2.0 / (np.asarray(gamma) - 2.0)) - 1.0)


def eff_core_radius(r_h, gamma):
    """EFF scale radius ``a`` that gives half-number radius ``r_h``."""
    return r_h / np.sqrt(2.0 ** (2.0 / (np.asarray(gamma) - 2.0)) - 1.0)


def sample_eff(rng, n, r_h, gamma, q=1.0, theta=0.0, r_max=None):
    """Draw ``n`` projected positions from an EFF profile.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
    r_h : float
        Half-number radius (any length unit; the output has the same unit).
    gamma : float
        EFF power-law slope (> 2).
    q : float
        Axis ratio of the isophotes (1 = round).
    theta : float
        Position angle of the major axis [rad].
    r_max : float, optional
        Truncation radius (default 50 r_h), so that shallow profiles stay finite.

    Returns
    -------
    dx, dy : ndarray
        Offsets from the centre.
    """
    a = eff_core_radius(r_h, gamma)
    k = 1.0 - gamma / 2.0
    r_max = 50.0 * r_h if r_max is None else r_max
    u_max = 1.0 - (1.0 + (r_max / a) ** 2) ** k
    u = rng.random(n) * u_max
    r = a * np.sqrt((1.0 - u) ** (1.0 / k) - 1.0)
    return _place(rng, r, q, theta)


def sersic_b(n):
    """The Sersic b_n such that r_e encloses half the light."""
    return gammaincinv(2.0 * n, 0.5)


def sample_sersic(rng, npts, r_e, n, q=1.0, theta=0.0):
    """Draw positions from a Sersic profile with effective radius ``r_e``.

    The enclosed light of a Sersic profile is the regularised lower incomplete
    gamma function P(2n, b_n (r/r_e)^(1/n)), inverted here in closed form.
    """
    u = rng.random(npts) * 0.995  # truncate the far wings
    r = r_e * (gammaincinv(2.0 * n, u) / sersic_b(n)) ** n
    return _place(rng, r, q, theta)


def _place(rng, r, q, theta):
    phi = rng.random(r.size) * 2.0 * np.pi
    x, y = r * np.cos(phi), r * np.sin(phi) * q
    c, s = np.cos(theta), np.sin(theta)
    return x * c - y * s, x * s + y * c
