"""Spatial profiles of mock sources: EFF clusters and Sersic galaxies."""

import functools

import numpy as np
from scipy.special import gammaincinv

__all__ = ["EFF_TRUNCATION", "eff_core_radius", "sample_eff", "sample_sersic", "sersic_b"]


#: EFF profiles are truncated at this many half-number radii, so that the
#: shallowest slopes (gamma -> 2) keep a finite number of stars.
EFF_TRUNCATION = 50.0


@functools.lru_cache(maxsize=64)
def _core_ratio_table(truncation=EFF_TRUNCATION):
    """a / r_h of the EFF profile truncated at ``truncation`` r_h, on a grid of gamma."""
    gammas = np.linspace(2.01, 10.0, 400)
    k = 1.0 - gammas / 2.0

    # Half of the stars within r_h = 1 of the profile truncated at ``truncation``:
    # f falls from +1/2 (a -> 0) to below 0 (a -> inf); bisection on all gammas at once.
    def f(log_a):
        inv_a2 = np.exp(-2.0 * log_a)
        inner = 1.0 - (1.0 + inv_a2) ** k
        total = 1.0 - (1.0 + truncation ** 2 * inv_a2) ** k
        return inner - 0.5 * total

    lo, hi = np.full(gammas.size, -60.0), np.full(gammas.size, 10.0)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        above = f(mid) > 0
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return gammas, 0.5 * (lo + hi)


def eff_core_radius(r_h, gamma, truncation=EFF_TRUNCATION):
    """EFF scale radius ``a`` giving half-number radius ``r_h``.

    The EFF surface density (004 eq. 1) mu(r) = mu0 (1 + r^2/a^2)^(-gamma/2)
    encloses N(<R) ∝ 1 - (1 + R^2/a^2)^(1 - gamma/2); ``r_h`` is the radius
    holding half the stars of the profile truncated at ``truncation`` r_h
    (default `EFF_TRUNCATION`; domain randomisation draws 5-50).
    """
    truncation = round(float(truncation), 1)
    if not 2.0 <= truncation <= 100.0:
        raise ValueError(f"EFF truncation {truncation} r_h outside 2-100")
    gammas, log_ratio = _core_ratio_table(truncation)
    if not gammas[0] <= gamma <= gammas[-1]:
        raise ValueError(f"EFF gamma {gamma} outside {gammas[0]:.2f}-{gammas[-1]:.0f}")
    return r_h * np.exp(np.interp(gamma, gammas, log_ratio))


def sample_eff(rng, n, r_h, gamma, q=1.0, theta=0.0, truncation=EFF_TRUNCATION):
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
    truncation : float
        Truncation radius in units of r_h; r_h stays the half-number radius
        of the truncated profile.

    Returns
    -------
    dx, dy : ndarray
        Offsets from the centre.
    """
    truncation = round(float(truncation), 1)
    a = eff_core_radius(r_h, gamma, truncation)
    k = 1.0 - gamma / 2.0
    r_max = truncation * r_h
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

    Parameters
    ----------
    rng : numpy.random.Generator
    npts : int
    r_e : float
        Effective (half-light) radius (any length unit; the output has the
        same unit).
    n : float
        Sersic index.
    q : float
        Axis ratio of the isophotes (1 = round).
    theta : float
        Position angle of the major axis [rad].

    Returns
    -------
    dx, dy : ndarray
        Offsets from the centre; the outer 0.5% of the light is cut.
    """
    u = rng.random(npts) * 0.995  # truncate the far wings
    r = r_e * (gammaincinv(2.0 * n, u) / sersic_b(n)) ** n
    return _place(rng, r, q, theta)


def _place(rng, r, q, theta):
    phi = rng.random(r.size) * 2.0 * np.pi
    x, y = r * np.cos(phi), r * np.sin(phi) * q
    c, s = np.cos(theta), np.sin(theta)
    return x * c - y * s, x * s + y * c
