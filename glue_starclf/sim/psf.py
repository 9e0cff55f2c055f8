"""TinyTim PSFs of the model bands, as shipped in ``glue_starclf/data/psf``.

The files come from the ``drizzlepac`` wheel (BSD-3-Clause, see
``LICENSE-drizzlepac.txt`` beside them; ``python -m training extract-psfs``
rebuilds them). WFC3/UVIS PSFs are sampled at 0.0399-0.04"/px, the scale of
the LEGUS drizzled mosaics, and are used as they are. The ACS/WFC PSFs (for
fields observed in F435W or F606W) are sampled at the native ACS scale
(``PIXSCALE`` = 0.0495-0.0496"), so `load_psf` rebins them onto the
`~glue_starclf.io.bands.PIXEL_SCALE_ARCSEC` grid with exact area weighting
(flux-conserving, no ringing) before use.

All PSFs are returned normalised to unit sum with the peak in the central
pixel, ``(n // 2, n // 2)`` for an ``n x n`` array.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..io import bands

__all__ = ["load_psf", "psf_stack"]

PSF_DIR = Path(__file__).resolve().parents[1] / "data" / "psf"

#: Filters for which the ACS/WFC PSF is the right one (LEGUS used ACS there).
_ACS_FILTERS = ("F435W", "F606W")

#: Relative pixel-scale mismatch above which a PSF is rebinned.
_SCALE_TOLERANCE = 0.01


def _psf_path(band):
    key = str(band).strip().upper()
    if key in _ACS_FILTERS:
        return PSF_DIR / f"acs_wfc_{key.lower()}.fits"
    try:
        key = bands.canonical_band(band)
    except ValueError:
        raise ValueError(
            f"unknown band {band!r} for a PSF: expected one of "
            f"{', '.join(bands.BANDS)}, {', '.join(bands.ALIASES)}") from None
    return PSF_DIR / f"wfc3_uvis_{key.lower()}.fits"


def _check_size(size):
    if size is None:
        return None
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"PSF size must be a positive odd integer, got {size!r}")
    return int(size)


def load_psf(band, size=None):
    """Load the PSF of a band, normalised to unit sum.

    Parameters
    ----------
    band : str
        Filter name (any case). F435W and F606W give the ACS/WFC PSFs; every
        other name goes through `glue_starclf.io.bands.canonical_band` and gives
        the WFC3/UVIS PSF of that model band.
    size : int, optional
        Odd side length of a centred crop; the crop is renormalised to unit
        sum. Default: the full PSF (149 px; the ACS/WFC ones are 149 px too
        after rebinning to 0.04"/px).

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` float64 array, read-only (it is cached; copy it
        before modifying).

    Raises
    ------
    ValueError
        If the band is unknown, ``size`` is not a positive odd integer, or it
        exceeds the PSF.
    FileNotFoundError
        If the PSF file is missing from the installation.
    """
    return _load(_psf_path(band), _check_size(size))


@lru_cache(maxsize=None)
def _full(path):
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: PSF file missing (rebuild with `python -m training extract-psfs`)")
    with fits.open(path) as hdul:
        data = np.array(hdul[0].data, dtype=np.float64)
        scale = float(hdul[0].header.get("PIXSCALE", bands.PIXEL_SCALE_ARCSEC))
    if data.ndim != 2 or not np.all(np.isfinite(data)) or data.sum() <= 0:
        raise ValueError(f"{path}: not a finite 2-D PSF image with positive sum")
    ratio = scale / bands.PIXEL_SCALE_ARCSEC
    if abs(ratio - 1.0) > _SCALE_TOLERANCE:
        data = _rebin(data, ratio)
    data /= data.sum()
    data.flags.writeable = False
    return data


@lru_cache(maxsize=None)
def _load(path, size):
    full = _full(path)
    if size is None:
        return full
    n = min(full.shape)
    if size > n - (1 - n % 2):
        raise ValueError(f"PSF size {size} exceeds the {full.shape[0]}x{full.shape[1]} "
                         f"PSF in {path.name}")
    cy, cx = full.shape[0] // 2, full.shape[1] // 2
    h = size // 2
    out = full[cy - h:cy + h + 1, cx - h:cx + h + 1].copy()
    out /= out.sum()
    out.flags.writeable = False
    return out


def _overlap_matrix(n_old, ratio):
    """Area weights (new pixel x old pixel) for rebinning one axis.

    Old pixel ``i`` spans ``[i - 0.5, i + 0.5]``; new pixels are ``1 / ratio``
    old pixels wide, centred so the new centre ``h`` falls on old ``n_old // 2``.
    """
    c = n_old // 2
    h = int(np.floor((min(c, n_old - 1 - c) + 0.5) * ratio - 0.5))
    new_edges = c + (np.arange(2 * h + 2) - h - 0.5) / ratio
    old_edges = np.arange(n_old + 1) - 0.5
    lo = np.maximum(new_edges[:-1, None], old_edges[None, :-1])
    hi = np.minimum(new_edges[1:, None], old_edges[None, 1:])
    return np.clip(hi - lo, 0.0, None)


def _rebin(data, ratio):
    """Rebin a PSF whose pixels are ``ratio`` times the target pixels."""
    wy = _overlap_matrix(data.shape[0], ratio)
    wx = _overlap_matrix(data.shape[1], ratio)
    return wy @ data @ wx.T


@lru_cache(maxsize=None)
def _stack(size):
    out = np.stack([load_psf(b, size) for b in bands.BANDS])
    out.flags.writeable = False
    return out


def psf_stack(size):
    """PSFs of the five model bands, in `glue_starclf.io.bands.BANDS` order.

    Parameters
    ----------
    size : int
        Odd side length of the centred crop of each PSF.

    Returns
    -------
    numpy.ndarray
        ``(5, size, size)`` float64 array, each plane summing to 1; read-only.
    """
    return _stack(_check_size(size))
