"""Stellar photometry along isochrones: the shipped PARSEC + MIST table.

The table ``glue_starclf/data/isochrones_parsec_mist_wfc3.fits`` is built by
``python -m training build-photometry`` (``training/build_photometry.py``):
PARSEC v1.2S isochrones (log t = 6.60-10.10 in 0.05 dex, [M/H] = 0 and -1),
WFC3/UVIS Vega absolute magnitudes from MIST bolometric corrections, and the
band extinction A_band / A_V of a star's SED as a function of its log Teff
and A_V (Cardelli et al. 1989, R_V = 3.1). Its primary header cites the
sources. Only numpy, scipy and astropy are needed here.

Examples
--------
>>> tab = load_isochrones()
>>> iso = tab.isochrone(8.0)
>>> iso.mags_at([1.0, 3.0], av=0.5).shape
(2, 5)
>>> tab.ssp_abs_mag(8.0).shape
(5,)
"""

import functools
from importlib import resources
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..io.bands import BANDS
from . import imf

__all__ = ["IsochroneTable", "Isochrone", "load_isochrones"]

#: File name of the shipped table inside ``glue_starclf/data``.
TABLE_NAME = "isochrones_parsec_mist_wfc3.fits"

#: Half the age step: how far outside the grid a requested age may be.
_AGE_TOLERANCE = 0.025


class _ExtinctionGrid:
    """Bilinear interpolation of A_band / A_V on a (log Teff, A_V) grid."""

    def __init__(self, log_teff, av, ratio):
        self.log_teff = log_teff          # (nt,)
        self.av = av                      # (na,)
        self.ratio = ratio                # (nt, na, 5)

    @staticmethod
    def _locate(grid, x):
        x = np.clip(x, grid[0], grid[-1])
        i = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2)
        return i, (x - grid[i]) / (grid[i + 1] - grid[i])

    def __call__(self, log_teff, av):
        """A_band / A_V, shape (n, 5), for stars of ``log_teff`` (n,) and scalar ``av``."""
        i, fi = self._locate(self.log_teff, np.asarray(log_teff, float))
        j, fj = self._locate(self.av, np.float64(av))
        r = self.ratio
        lo = r[i, j] * (1 - fj) + r[i, j + 1] * fj
        hi = r[i + 1, j] * (1 - fj) + r[i + 1, j + 1] * fj
        return lo * (1 - fi)[:, None] + hi * fi[:, None]


class Isochrone:
    """One isochrone of the table: stars of one age and metallicity.

    Attributes
    ----------
    log_age : float
        log10 age [yr] (a grid value).
    mh : float
        [M/H].
    mass_ini : ndarray, shape (n,)
        Initial masses [Msun], strictly increasing.
    abs_mag : ndarray, shape (n, 5)
        Vega absolute magnitudes in `glue_starclf.io.bands.BANDS` order,
        without extinction.
    log_teff, log_g, log_l : ndarray, shape (n,)
        log10 of effective temperature [K], gravity [cgs], luminosity [Lsun].
    m_max : float
        Most massive initial mass still alive (the last point); heavier
        stars are remnants and emit nothing.
    """

    def __init__(self, log_age, mh, mass_ini, abs_mag, log_teff, log_g, log_l,
                 extinction):
        """Built by `IsochroneTable.isochrone`: the arguments are the attributes of the
        same names, and ``extinction(log_teff, av)`` gives A_band / A_V, shape (n, 5)."""
        self.log_age = float(log_age)
        self.mh = float(mh)
        self.mass_ini = mass_ini
        self.abs_mag = abs_mag
        self.log_teff = log_teff
        self.log_g = log_g
        self.log_l = log_l
        self.m_max = float(mass_ini[-1])
        self._extinction = extinction
        for arr in (mass_ini, abs_mag, log_teff, log_g, log_l):
            arr.flags.writeable = False

    def __repr__(self):
        return (f"Isochrone(log_age={self.log_age:.2f}, mh={self.mh:+.1f}, "
                f"n={len(self.mass_ini)}, m_max={self.m_max:.3f})")

    def band_extinction(self, av):
        """Extinction of every star in each band.

        Parameters
        ----------
        av : float
            V-band extinction A_V [mag] (Cardelli et al. 1989, R_V = 3.1).

        Returns
        -------
        ndarray, shape (n, 5)
            A_band [mag] for each star, from its own SED (log Teff) through
            the band's total throughput.
        """
        av = float(av)
        if av < 0:
            raise ValueError(f"A_V must be >= 0, got {av}")
        if av == 0:
            return np.zeros_like(self.abs_mag)
        return self._extinction(self.log_teff, av) * av

    def mags_at(self, masses, av=0.0):
        """Absolute magnitudes of stars of given initial masses.

        Parameters
        ----------
        masses : array_like, shape (k,)
            Initial masses [Msun].
        av : float
            V-band extinction [mag], applied star by star.

        Returns
        -------
        ndarray, shape (k, 5)
            Vega absolute magnitudes (with extinction), linear in initial
            mass between isochrone points; masses above `m_max` are dead and
            get ``+inf``; masses below the first point take its magnitudes.
        """
        masses = np.atleast_1d(np.asarray(masses, float))
        mags = self.abs_mag + self.band_extinction(av)
        out = np.empty((len(masses), mags.shape[1]))
        for b in range(mags.shape[1]):
            out[:, b] = np.interp(masses, self.mass_ini, mags[:, b])
        out[masses > self.m_max] = np.inf
        return out


class IsochroneTable:
    """The shipped isochrone photometry table; build with `load_isochrones`.

    Parameters
    ----------
    path : path-like
        The FITS table.

    Attributes
    ----------
    log_ages : ndarray
        Grid of log10 ages [yr] for [M/H] = 0.
    metallicities : tuple of float
        Available [M/H].
    log_age_range : tuple of float
        (min, max) of `log_ages`.
    bands : tuple of str
        Band order of the magnitudes.
    pivots : ndarray, shape (5,)
        Pivot wavelengths [Angstrom].
    header : astropy.io.fits.Header
        Primary header (sources and method).
    """

    def __init__(self, path):
        with fits.open(path, memmap=False) as hdul:
            self.header = hdul[0].header.copy()
            iso = hdul["ISOCHRONES"].data
            cols = {name: np.array(iso[name]) for name in iso.columns.names}
            ext = hdul["EXTINCTION"].data
            bands = hdul["BANDS"].data
            self.bands = tuple(str(b).strip() for b in bands["BAND"])
            self.pivots = np.array(bands["PIVOT"], float)
            ext_t = np.array(ext["LOG_TEFF"], float)
            ext_a = np.array(ext["AV"], float)
            ext_r = np.array(ext["A_OVER_AV"], float)
        if self.bands != tuple(BANDS):
            raise ValueError(f"{path}: bands {self.bands} differ from {BANDS}")
        grid_t, grid_a = np.unique(ext_t), np.unique(ext_a)
        order = np.lexsort((ext_a, ext_t))
        self._extinction = _ExtinctionGrid(
            grid_t, grid_a, ext_r[order].reshape(len(grid_t), len(grid_a), -1))

        mh = np.round(cols["MH"].astype(float), 2)
        age = np.round(cols["LOG_AGE"].astype(float), 2)
        self._rows = {}
        for key in sorted(set(zip(mh.tolist(), age.tolist()))):
            sel = np.flatnonzero((mh == key[0]) & (age == key[1]))
            self._rows[key] = sel
        self._cols = cols
        self.metallicities = tuple(sorted({k[0] for k in self._rows}))
        self._ages = {m: np.array(sorted(a for mm, a in self._rows if mm == m))
                      for m in self.metallicities}
        if 0.0 not in self._ages:
            raise ValueError(f"{path}: no [M/H] = 0 isochrones")
        self.log_ages = self._ages[0.0]
        self.log_age_range = (float(self.log_ages[0]), float(self.log_ages[-1]))
        self._cache = {}

    def _check_mh(self, mh):
        mh = float(mh)
        for m in self.metallicities:
            if abs(m - mh) < 1e-6:
                return m
        raise ValueError(
            f"unknown metallicity [M/H] = {mh:g}: the photometry table has "
            f"{', '.join(f'{m:g}' for m in self.metallicities)}")

    def isochrone(self, log_age, mh=0.0):
        """The isochrone nearest in age.

        Parameters
        ----------
        log_age : float
            log10 age [yr]; the nearest grid age is used.
        mh : float
            [M/H]; one of `metallicities`.

        Returns
        -------
        Isochrone

        Raises
        ------
        ValueError
            If ``log_age`` is more than half a grid step outside the table or
            ``mh`` is not tabulated.
        """
        mh = self._check_mh(mh)
        ages = self._ages[mh]
        log_age = float(log_age)
        if not (ages[0] - _AGE_TOLERANCE - 1e-9 <= log_age
                <= ages[-1] + _AGE_TOLERANCE + 1e-9):
            raise ValueError(
                f"log_age {log_age:.2f} is outside the photometry table's range "
                f"{ages[0]:.2f}\u2013{ages[-1]:.2f}")
        grid_age = float(ages[np.argmin(np.abs(ages - log_age))])
        key = (mh, grid_age)
        if key not in self._cache:
            sel, c = self._rows[key], self._cols
            self._cache[key] = Isochrone(
                grid_age, mh,
                mass_ini=c["MASS_INI"][sel].astype(float),
                abs_mag=c["MAG"][sel].astype(float),
                log_teff=c["LOG_TEFF"][sel].astype(float),
                log_g=c["LOG_G"][sel].astype(float),
                log_l=c["LOG_L"][sel].astype(float),
                extinction=self._extinction)
        return self._cache[key]

    def ssp_abs_mag(self, log_age, av=0.0, mh=0.0):
        """Integrated magnitudes of a simple stellar population.

        Parameters
        ----------
        log_age : float
            log10 age [yr] (nearest grid age).
        av : float
            V-band extinction [mag], applied star by star for its own SED.
        mh : float
            [M/H].

        Returns
        -------
        ndarray, shape (5,)
            Vega absolute magnitudes of 1 Msun of initial mass drawn from
            the Kroupa IMF (0.08-120 Msun; stars above the isochrone's
            `Isochrone.m_max` are dead).
        """
        iso = self.isochrone(log_age, mh)
        flux = 10.0 ** (-0.4 * (iso.abs_mag + iso.band_extinction(av)))
        return -2.5 * np.log10(imf.integrate(flux, iso.mass_ini))


def _table_path():
    """Path of the shipped table inside the installed package."""
    ref = resources.files("glue_starclf") / "data" / TABLE_NAME
    path = Path(str(ref))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: build it with `python -m training build-photometry`")
    return path


@functools.lru_cache(maxsize=None)
def load_isochrones(path=None):
    """Load the isochrone photometry table (cached).

    Parameters
    ----------
    path : path-like, optional
        A table file; default the one shipped in ``glue_starclf/data``.

    Returns
    -------
    IsochroneTable
    """
    return IsochroneTable(_table_path() if path is None else path)
