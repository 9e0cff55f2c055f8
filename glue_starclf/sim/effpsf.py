"""Effective PSFs of drizzled mosaics, per field: TinyTim or empirical STDPSFs.

A drizzled LEGUS mosaic's PSF is the single-exposure *effective* PSF (the
PSF already integrated over the detector pixel: TinyTim's pixel-sampled
models, or Anderson's empirical ``PSFSTD_WFC3UV_<band>.fits`` library)
convolved with the drizzle drop (pixfrac x input pixel) and the output
pixel. Averaged over a dither pattern that is a triangle of one pixel in x
and y for pixfrac 1 and equal pixel scales. Jitter, focus breathing and
imperfect registration broaden it further; that broadening is not known
per field, so it is a Gaussian solved for so that the F555W stellar CI
equals the field's stellar locus (`stellar_locus`), or drawn by the domain
randomisation.

The STDPSF library is not shipped with the package (its PyPI source states
no licence): `EffectivePSF` reads it from a folder given by the caller
(``stdpsf_dir``), and `stdpsf_provenance` records what was read.

All kernels are computed on a 4x supersampled grid and sampled at the
output pixel centres, so sub-pixel convolutions are exact.
"""

import functools
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.ndimage import shift as ndshift
from scipy.optimize import brentq
from scipy.signal import fftconvolve

from ..core.photometry import centred_ci
from ..io.bands import BANDS
from .psf import load_psf

__all__ = ["SUPERSAMPLE", "STDPSF_SIZE", "LOCUS_BELOW_CUT", "DEFAULT_LOCUS", "EffectivePSF",
           "effective_kernels", "stellar_ci", "psf_for_locus", "stellar_locus",
           "read_stdpsf", "check_stdpsf_library", "stdpsf_provenance", "STDPSF_BANDS"]

#: Supersampling of the STDPSF library and of the kernel computations.
SUPERSAMPLE = 4

#: Side of the STDPSF samples (101 at 4x: 25 native pixels).
STDPSF_SIZE = 101

#: STDPSF file of each model band (F438W/F555W slots also have ACS fields; the
#: WFC3/UVIS library stands for them).
STDPSF_BANDS = {b: f"PSFSTD_WFC3UV_{b}.fits" for b in BANDS}

#: LEGUS put each field's CI cut just above the stellar locus; the catalogs
#: hold only sources above the cut (their 1st percentile is the cut to 0.01
#: mag), and we place the locus this far below it.
LOCUS_BELOW_CUT = 0.05

#: Stellar CI for fields without a catalog: the median LEGUS cut (1.30, the
#: 36 catalogs of ../shared/data/legus) less `LOCUS_BELOW_CUT`.
DEFAULT_LOCUS = 1.25

#: Radius [px] inside which an STDPSF kernel is used; TinyTim supplies the
#: wings outside (STDPSFs stop at 12.5 px).
_CORE_RADIUS = 11.5

_CI_STAMP = 19


@dataclass(frozen=True)
class EffectivePSF:
    """Recipe of a field's effective PSF (hashable: kernels are cached on it).

    Attributes
    ----------
    family : str
        ``"tinytim"`` (shipped) or ``"stdpsf"`` (empirical, from ``stdpsf_dir``).
    broadening_px : float
        Gaussian sigma [px] of extra broadening (jitter, registration).
    detector_xy : (float, float)
        WFC3/UVIS detector position (pixels of the 4096 x 4102 frame) at
        which the STDPSF grid is interpolated.
    stdpsf_dir : str or None
        Folder holding the ``PSFSTD_WFC3UV_<band>.fits`` files.
    shifts : tuple of (dx, dy) per band, or None
        Band-to-band registration offsets [px] (the whole band image moves).
    """

    family: str = "tinytim"
    broadening_px: float = 0.0
    detector_xy: tuple = (2048.0, 2048.0)
    stdpsf_dir: str = None
    shifts: tuple = None

    def __post_init__(self):
        if self.family not in ("tinytim", "stdpsf"):
            raise ValueError(f"PSF family {self.family!r}: expected 'tinytim' or 'stdpsf'")
        if not 0.0 <= self.broadening_px <= 3.0:
            raise ValueError(f"PSF broadening {self.broadening_px!r} px outside 0-3")
        if self.family == "stdpsf" and not self.stdpsf_dir:
            raise ValueError("the stdpsf PSF family needs stdpsf_dir (the STDPSF folder)")

    def kernels(self, size):
        """(5, size, size) unit-sum kernels in `BANDS` order (read-only, cached)."""
        return effective_kernels(self, size)

    def describe(self):
        """Plain dict for a bank's or field's metadata."""
        d = {"family": self.family, "broadening_px": round(float(self.broadening_px), 4),
             "drizzle": "pixfrac 1 drop x output pixel (1-px triangle)"}
        if self.family == "stdpsf":
            d["detector_xy"] = [float(v) for v in self.detector_xy]
            d["stdpsf"] = stdpsf_provenance(self.stdpsf_dir)
        if self.shifts is not None:
            d["registration_px"] = [list(v) for v in self.shifts]
        return d


def read_stdpsf(path):
    """The STDPSF grid of one file: PSFs (n, 101, 101) and grid positions.

    Raises
    ------
    ValueError
        One line naming the file if it is not a cube of NXPSFS x NYPSFS
        finite 101 x 101 PSFs with their ``IPSFXnn``/``JPSFYnn`` positions.
    """
    return _read_stdpsf(str(path))


def check_stdpsf_library(folder):
    """Read every band's STDPSF file of ``folder`` up front (one-line errors, see `read_stdpsf`).

    So that a bad library fails before anything is rendered or written.
    """
    for name in STDPSF_BANDS.values():
        read_stdpsf(Path(folder) / name)


@functools.lru_cache(maxsize=16)
def _read_stdpsf(path):
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: STDPSF file missing")
    try:
        # Some library files lack the END card and carry non-ASCII comments.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(p, ignore_missing_end=True) as hdul:
                data = np.array(hdul[0].data, dtype=np.float64)
                h = hdul[0].header
                nx, ny = int(h["NXPSFS"]), int(h["NYPSFS"])
                xs = np.array([float(h[f"IPSFX{i:02d}"]) for i in range(1, nx + 1)])
                ys = np.array([float(h[f"JPSFY{i:02d}"]) for i in range(1, ny + 1)])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{p}: not an STDPSF file ({exc})") from None
    if data.ndim != 3 or data.shape != (nx * ny, STDPSF_SIZE, STDPSF_SIZE):
        raise ValueError(f"{p}: STDPSF cube of shape {data.shape}, expected "
                         f"({nx * ny}, {STDPSF_SIZE}, {STDPSF_SIZE})")
    # The outermost row and column of the grid's edge PSFs hold a -0.1 fill value.
    data[:, [0, -1], :] = 0.0
    data[:, :, [0, -1]] = 0.0
    if not np.all(np.isfinite(data)) or np.any(data.sum(axis=(1, 2)) <= 0):
        raise ValueError(f"{p}: STDPSF cube has non-finite or empty PSFs")
    data.flags.writeable = False
    return data, xs, ys


def stdpsf_provenance(folder):
    """File names and sha256 of the STDPSF files read from ``folder``."""
    out = {"folder": str(folder), "source": "space-phot 0.4.9 wheel, "
           "space_phot/wfc3_photometry/psfs (Anderson 2016, WFC3 ISR 2016-12)"}
    for b, name in STDPSF_BANDS.items():
        p = Path(folder) / name
        out[name] = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else None
    return out


def _stdpsf_at(path, x, y):
    """Bilinear interpolation of the STDPSF grid at detector (x, y), 4x samples.

    The two UVIS chips share the grid row at y = 2048; each chip interpolates
    among its own rows.
    """
    data, xs, ys = read_stdpsf(path)
    nx = xs.size
    x = float(np.clip(x, xs[0], xs[-1]))
    y = float(np.clip(y, ys[0], ys[-1]))
    rows = np.arange(ys.size)
    # Chip boundary: duplicated y value; pick the rows on y's side.
    dup = np.flatnonzero(np.diff(ys) == 0)
    if dup.size:
        k = dup[0]
        rows = rows[:k + 1] if y <= ys[k] else rows[k + 1:]
    yr = ys[rows]
    j = int(np.clip(np.searchsorted(yr, y) - 1, 0, yr.size - 2))
    i = int(np.clip(np.searchsorted(xs, x) - 1, 0, nx - 2))
    fx = (x - xs[i]) / (xs[i + 1] - xs[i])
    fy = (y - yr[j]) / (yr[j + 1] - yr[j])
    r0, r1 = rows[j], rows[j + 1]
    psf = ((1 - fx) * (1 - fy) * data[r0 * nx + i] + fx * (1 - fy) * data[r0 * nx + i + 1]
           + (1 - fx) * fy * data[r1 * nx + i] + fx * fy * data[r1 * nx + i + 1])
    return psf


def _drizzle_and_sample(epsf4, sigma_px, size, shift=(0.0, 0.0)):
    """4x effective PSF -> drizzled, broadened (shifted) kernel on a size x size grid."""
    s = SUPERSAMPLE
    # Only the samples that reach the output grid through the kernels matter.
    half = s * (size // 2 + 2 + int(np.ceil(5 * sigma_px + abs(shift[0]) + abs(shift[1]))))
    c0 = epsf4.shape[0] // 2
    if c0 > half:
        epsf4 = epsf4[c0 - half:c0 + half + 1, c0 - half:c0 + half + 1]
    box = np.ones(s) / s
    tri = np.convolve(box, box)                     # 7 samples: drop (x) output pixel
    k = fftconvolve(epsf4, tri[None, :], mode="full")
    k = fftconvolve(k, tri[:, None], mode="full")
    if sigma_px > 0:
        k = gaussian_filter(k, sigma_px * s, mode="constant", truncate=5.0)
    if shift[0] or shift[1]:
        k = ndshift(k, (shift[1] * s, shift[0] * s), order=1, mode="constant")
    c = k.shape[0] // 2                             # odd side, centred
    h = size // 2
    idx = c + s * (np.arange(size) - h)
    inside = (idx >= 0) & (idx < k.shape[0])
    out = np.zeros((size, size))
    sub = k[np.ix_(idx[inside], idx[inside])]
    out[np.ix_(inside, inside)] = sub
    return np.clip(out, 0.0, None)


def _tinytim4(band):
    """TinyTim's pixel-sampled PSF of a band, cubic-spline supersampled 4x (odd grid)."""
    p = np.asarray(load_psf(band), float)
    n = p.shape[0]
    t = np.arange(SUPERSAMPLE * (n - 1) + 1) / SUPERSAMPLE
    yy, xx = np.meshgrid(t, t, indexing="ij")
    up = map_coordinates(p, [yy.ravel(), xx.ravel()], order=3).reshape(yy.shape)
    return np.clip(up, 0.0, None)


@functools.lru_cache(maxsize=64)
def effective_kernels(spec, size):
    """Kernels of an `EffectivePSF` at an odd ``size`` (cached; read-only)."""
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"PSF size must be a positive odd integer, got {size!r}")
    out = np.stack([_band_kernel(spec, b, size) for b in range(len(BANDS))])
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=512)
def _band_kernel(spec, b, size):
    """Unit-sum kernel of band index ``b`` (the solver needs F555W alone)."""
    band = BANDS[b]
    shift = (0.0, 0.0) if spec.shifts is None else tuple(spec.shifts[b])
    tt = _drizzle_and_sample(_tinytim_cached(band), spec.broadening_px, size, shift)
    if spec.family == "stdpsf":
        path = Path(spec.stdpsf_dir) / STDPSF_BANDS[band]
        core = _drizzle_and_sample(_stdpsf_at(path, *spec.detector_xy),
                                   spec.broadening_px, size, shift)
        yy, xx = np.indices((size, size)) - size // 2
        inner = np.hypot(xx - shift[0], yy - shift[1]) <= _CORE_RADIUS
        # STDPSF core, TinyTim wings holding TinyTim's encircled fraction.
        core = np.where(inner, core, 0.0)
        k = np.where(inner, core * tt[inner].sum() / core.sum(), tt)
    else:
        k = tt
    k = k / k.sum()
    k.flags.writeable = False
    return k


@functools.lru_cache(maxsize=8)
def _tinytim_cached(band):
    return _tinytim4(band)


def stellar_ci(spec):
    """F555W CI (1 px vs 3 px, sky annulus 7-8 px) of a star on this PSF."""
    c, h = 20, _CI_STAMP // 2
    k = _band_kernel(spec, BANDS.index("F555W"), 41)
    return float(centred_ci(k[None, c - h:c + h + 1, c - h:c + h + 1])[0])


def psf_for_locus(locus, family="tinytim", detector_xy=(2048.0, 2048.0), stdpsf_dir=None):
    """The `EffectivePSF` of a family whose stellar CI equals ``locus``.

    The Gaussian broadening is solved for; a locus below the family's
    unbroadened CI gets no broadening (its CI is then the family's).

    Parameters
    ----------
    locus : float
        Stellar CI [mag] (F555W, 1 px vs 3 px), rounded to 0.001.
    family : {"tinytim", "stdpsf"}
    detector_xy : (float, float)
        WFC3/UVIS detector position [px] (for ``"stdpsf"``).
    stdpsf_dir : str, optional
        STDPSF folder; required for ``"stdpsf"``.

    Returns
    -------
    EffectivePSF
    """
    base = EffectivePSF(family, 0.0, tuple(detector_xy), stdpsf_dir)
    return _solve(base, round(float(locus), 3))


@functools.lru_cache(maxsize=256)
def _solve(base, locus):
    def f(s):
        return stellar_ci(EffectivePSF(base.family, s, base.detector_xy, base.stdpsf_dir)) - locus
    if f(0.0) >= 0:
        return base
    if f(3.0) <= 0:
        raise ValueError(f"stellar locus CI {locus} is beyond the reach of the PSF model")
    s = brentq(f, 0.0, 3.0, xtol=1e-3)
    return EffectivePSF(base.family, round(s, 4), base.detector_xy, base.stdpsf_dir)


def stellar_locus(catalog_ci):
    """A field's stellar-locus CI from its catalog CIs.

    LEGUS catalogs hold only sources above the field's CI cut, which sits
    just above the stellar locus: the cut is taken as the 1st percentile of
    the catalog CI, and the locus `LOCUS_BELOW_CUT` below it.
    """
    ci = np.asarray(catalog_ci, float)
    ci = ci[np.isfinite(ci)]
    if ci.size < 20:
        return DEFAULT_LOCUS
    return float(np.percentile(ci, 1)) - LOCUS_BELOW_CUT
