"""Simple stellar populations: IMF-sampled stars and smooth light in e-/s."""

import functools

import numpy as np

from ..io.bands import BANDS, PIXEL_SCALE_ARCSEC, VEGA_ZEROPOINT
from . import imf
from .isochrones import load_isochrones

__all__ = ["distance_modulus", "pc_per_pixel", "flux_scale", "Population", "population",
           "BRIGHT_STAR_ABS_MAG"]

_ZP = np.array([VEGA_ZEROPOINT[b] for b in BANDS])

#: Stars brighter than this absolute magnitude in any band are drawn one by
#: one; fainter ones make the smooth light (they are below a LEGUS pixel's
#: noise at 3 Mpc and beyond).
BRIGHT_STAR_ABS_MAG = 0.5


def distance_modulus(distance_mpc):
    """Distance modulus for a distance in Mpc."""
    return 5.0 * np.log10(distance_mpc) + 25.0


def pc_per_pixel(distance_mpc):
    """Parsecs per 0.04" pixel at a distance in Mpc."""
    return distance_mpc * 1e6 * np.deg2rad(PIXEL_SCALE_ARCSEC / 3600.0)


def flux_scale(distance_mpc):
    """Factor from absolute-magnitude flux units (10^(-0.4 M)) to e-/s per band."""
    return 10.0 ** (-0.4 * (distance_modulus(distance_mpc) - _ZP))


class Population:
    """A simple stellar population of one age, extinction and metallicity.

    Parameters
    ----------
    log_age : float
        log10 age [yr], a grid age of the photometry table.
    av : float
        V-band extinction [mag], applied star by star for each SED.
    mh : float
        Metallicity [M/H].
    bright_mag : float
        Stars brighter than this absolute magnitude in any band are drawn one
        by one, the rest is smooth light.

    Notes
    -----
    Fluxes are in absolute-magnitude units 10^(-0.4 M) per band; multiply by
    `flux_scale` for e-/s at a distance.
    """

    def __init__(self, log_age, av=0.0, mh=0.0, bright_mag=BRIGHT_STAR_ABS_MAG):
        iso = load_isochrones().isochrone(log_age, mh=mh)
        self.log_age, self.av, self.mh = iso.log_age, float(av), mh
        self._iso = iso
        mags = iso.abs_mag + iso.band_extinction(av)
        self._mags = mags
        flux = 10.0 ** (-0.4 * mags)
        bright = np.flatnonzero(mags.min(axis=1) <= bright_mag)
        self.m_bright = float(iso.mass_ini[bright[0]]) if bright.size else float(iso.m_max)
        faint = iso.mass_ini < self.m_bright
        #: Smooth-light flux per Msun of initial cluster mass, shape (5,).
        self.smooth_per_msun = imf.integrate(flux[faint], iso.mass_ini[faint])
        #: Expected number of individually drawn (alive) stars per Msun.
        self.bright_per_msun = (imf.number_fraction_above(self.m_bright)
                                - imf.number_fraction_above(iso.m_max)) / imf.mean_mass()
        #: Expected total flux per Msun, shape (5,).
        self.flux_per_msun = imf.integrate(flux, iso.mass_ini)

    def star_fluxes(self, rng, n):
        """Fluxes, shape (n, 5), of ``n`` stars drawn above the bright-star mass."""
        m = imf.sample_masses(rng, n, self.m_bright, self._iso.m_max)
        # Linear interpolation in initial mass of the reddened magnitudes.
        grid = self._iso.mass_ini
        j = np.clip(np.searchsorted(grid, m) - 1, 0, grid.size - 2)
        w = ((m - grid[j]) / (grid[j + 1] - grid[j]))[:, None]
        mags = self._mags[j] * (1.0 - w) + self._mags[j + 1] * w
        return 10.0 ** (-0.4 * mags)

    def sample(self, rng, mass):
        """Draw the stars of a population of initial mass ``mass`` [Msun].

        Returns
        -------
        stars : ndarray, shape (k, 5)
            Fluxes of the stars drawn one by one.
        smooth : ndarray, shape (5,)
            Total flux of the fainter stars, rendered as smooth light.
        """
        n = rng.poisson(mass * self.bright_per_msun)
        return self.star_fluxes(rng, n), mass * self.smooth_per_msun


@functools.lru_cache(maxsize=8192)
def _population(log_age, av, mh, bright_mag):
    return Population(log_age, av, mh, bright_mag)


def population(log_age, av=0.0, mh=0.0, bright_mag=BRIGHT_STAR_ABS_MAG):
    """Cached `Population` (A_V rounded to 0.05 mag, age to the grid).

    Parameters
    ----------
    log_age, av, mh, bright_mag : float
        As `Population`; ``bright_mag`` rounded to 0.1 mag.

    Returns
    -------
    Population
        Shared between calls: do not modify it.
    """
    iso = load_isochrones().isochrone(log_age, mh=mh)
    return _population(round(float(iso.log_age), 2), round(float(av) * 20) / 20, float(mh),
                       round(float(bright_mag), 1))
