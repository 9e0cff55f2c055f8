"""Stamps of many sources in all bands at once, read straight from the memory maps.

Every stamp of a band is gathered by one fancy-indexing call on the band's
memory-mapped image (`numpy.take` on its flat view), so only the pixels
under the stamps are read and there is no Python loop over sources.

A stamp of side ``size`` is centred on the pixel nearest to the source's
0-based position: pixel ``(round(x), round(y))`` (halves rounded up) lands
at stamp index ``[size // 2, size // 2]``, which is the exact centre for an
odd ``size`` and the pixel right/above of centre for an even one. The
sub-pixel offset is not resampled away.
"""

from typing import NamedTuple

import numpy as np

from ..io.bands import BANDS, PIXEL_SCALE_ARCSEC

__all__ = ["Cutouts", "extract_stamps", "has_flag", "stamp_centre", "native_stamp_size",
           "needs_resampling", "FLAG_NAMES", "ZERO_WEIGHT_BOX", "SCALE_TOLERANCE"]

#: Relative difference from the models' 0.04"/px within which a mosaic's
#: pixels are used as they are; beyond it stamps are resampled.
SCALE_TOLERANCE = 0.02

#: Per-source flags, in the order they are written.
FLAG_NAMES = ("outside", "edge", "nan_pixels", "zero_weight")

#: Side of the central box searched for exact-zero (zero-weight) pixels.
ZERO_WEIGHT_BOX = 5


class Cutouts(NamedTuple):
    """Result of `extract_stamps`.

    Attributes
    ----------
    stamps : ndarray, float32, shape (n, 5, size, size)
        Bands in `BANDS` order; missing bands are zeros, pixels outside the
        image and NaN pixels of the image are NaN, and so is the whole stamp
        (every band) of a source flagged ``outside``.
    flags : ndarray of str, shape (n,)
        Comma-separated flags per source ("" when clean): ``outside`` (the
        centre is off the image; the stamp is all NaN), ``edge`` (the stamp
        crosses the image border), ``nan_pixels`` (a NaN image pixel inside
        the stamp), ``zero_weight`` (an exact-zero pixel in the central
        5x5 box of a band: no exposure there), ``missing:<BAND>`` per absent
        band, then the mosaic-wide flags (e.g. ``F225W-as-F275W``).
    """

    stamps: np.ndarray
    flags: np.ndarray


def stamp_centre(x, y):
    """Integer pixel a stamp is centred on: nearest pixel, halves rounded up.

    Parameters
    ----------
    x, y : array_like
        0-based positions.

    Returns
    -------
    (ndarray, ndarray)
        int64 pixel indices (a large negative number for non-finite input).
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    bad = np.iinfo(np.int64).min // 4
    ix = np.where(ok, np.floor(np.where(ok, x, 0) + 0.5), bad).astype(np.int64)
    iy = np.where(ok, np.floor(np.where(ok, y, 0) + 0.5), bad).astype(np.int64)
    return ix, iy


def has_flag(flags, name):
    """Boolean mask of the sources whose flags string holds ``name``.

    Parameters
    ----------
    flags : array_like of str
    name : str

    Returns
    -------
    ndarray of bool
    """
    flags = np.asarray(flags, dtype=str)
    return np.array([name in f.split(",") for f in flags], bool) if flags.size else \
        np.zeros(0, bool)


def _join(masks, n):
    out = np.full(n, "", dtype=object)
    for name, mask in masks:
        out = out + np.where(mask, "," + name, "").astype(object)
    return np.array([s[1:] for s in out], dtype=str) if n else np.zeros(0, dtype=str)


def needs_resampling(pixel_scale):
    """True if a mosaic of ``pixel_scale`` ["/px, None: unknown] is resampled to 0.04"/px."""
    return pixel_scale is not None and \
        abs(pixel_scale / PIXEL_SCALE_ARCSEC - 1.0) > SCALE_TOLERANCE


def native_stamp_size(size, pixel_scale):
    """Side [mosaic px] of the stamp cut around a source before it is resampled to ``size``."""
    if not needs_resampling(pixel_scale):
        return int(size)
    return int(np.ceil(size * PIXEL_SCALE_ARCSEC / pixel_scale)) + 3


def _pixel_wcs(scale, centre):
    from astropy.wcs import WCS
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [0.0, 0.0]
    w.wcs.crpix = [centre[0] + 1.0, centre[1] + 1.0]
    w.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    return w


def _resample(stamps, dx, dy, scale, size):
    """Stamps of ``scale`` ["/px] around sources at sub-pixel offsets (dx, dy) from
    their centre pixel, resampled onto ``size`` px of 0.04" with each source at the
    same fraction of a pixel from the centre pixel.

    Bicubic interpolation (`reproject.reproject_interp`) keeps the profile as
    sharp as the networks saw it (an area-weighted resampling alone smooths a
    0.04"-sampled PSF visibly); each band of each stamp is then scaled so that
    its total equals the flux-conserving resampling's
    (`reproject.reproject_adaptive`, ``conserve_flux=True``, Hann kernel) over
    the same sky area.
    """
    from reproject import reproject_adaptive, reproject_interp
    n, nb, s, _ = stamps.shape
    out = np.full((n, nb, size, size), np.nan, np.float32)
    c_in, c_out = s // 2, size // 2
    area = (PIXEL_SCALE_ARCSEC / scale) ** 2
    shape = (nb, size, size)
    for i in range(n):
        if not np.isfinite(dx[i]) or np.all(np.isnan(stamps[i])):
            continue
        w_in = _pixel_wcs(scale, (c_in + dx[i], c_in + dy[i]))
        w_out = _pixel_wcs(PIXEL_SCALE_ARCSEC, (c_out + dx[i], c_out + dy[i]))
        nan_in = np.isnan(stamps[i])
        data = np.where(nan_in, 0.0, stamps[i])
        sharp, _ = reproject_interp((data, w_in), w_out, shape_out=shape, order="bicubic")
        sharp *= area
        flux, _ = reproject_adaptive((data, w_in), w_out, shape_out=shape, conserve_flux=True,
                                     kernel="hann", boundary_mode="constant",
                                     boundary_fill_value=0.0)
        total, got = np.nansum(flux, axis=(1, 2)), np.nansum(sharp, axis=(1, 2))
        ok = np.abs(got) > 1e-6 * np.maximum(np.nansum(np.abs(sharp), axis=(1, 2)), 1e-30)
        sharp[ok] *= (total[ok] / got[ok])[:, None, None]
        # NaN wherever a NaN (or off-image) pixel of the native stamp reaches
        bad, _ = reproject_interp((nan_in.astype(np.float64), w_in), w_out, shape_out=shape,
                                  order="bilinear")
        sharp[~(np.nan_to_num(bad, nan=1.0) < 0.01)] = np.nan
        out[i] = sharp
    return out


def extract_stamps(mosaic, x, y, size=32, mosaic_flags=True):
    """Cut ``size`` x ``size`` stamps of every source in all five bands.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    x, y : array_like
        0-based pixel positions (NaN allowed: flagged ``outside``).
    size : int
        Stamp side [px], at least 1.
    mosaic_flags : bool
        Append the mosaic's flags (``mosaic.flags``) to every source's.

    Returns
    -------
    Cutouts
        ``(stamps, flags)``; see `Cutouts`. The output takes
        ``n * 5 * size**2 * 4`` bytes: call it in batches of sources to bound
        memory.

    Notes
    -----
    Pixel values are multiplied by the mosaic's calibration factors
    (`Mosaic.factors`: reference WFC3/UVIS e-/s). A mosaic whose pixel scale
    differs from 0.04"/px by more than `SCALE_TOLERANCE` is cut in larger
    stamps (`native_stamp_size`) that are resampled, flux-conserving, to
    ``size`` px of 0.04"; the flags are those of the native stamps.
    """
    size = int(size)
    scale = getattr(mosaic, "pixel_scale", None)
    factors = getattr(mosaic, "factors", None)
    if needs_resampling(scale):
        xa = np.atleast_1d(np.asarray(x, float))
        ya = np.atleast_1d(np.asarray(y, float))
        cut = _extract(mosaic, xa, ya, native_stamp_size(size, scale), mosaic_flags, factors)
        ix, iy = stamp_centre(xa, ya)
        stamps = _resample(cut.stamps, xa - ix, ya - iy, scale, size)
        return Cutouts(stamps, cut.flags)
    return _extract(mosaic, x, y, size, mosaic_flags, factors)


def _extract(mosaic, x, y, size, mosaic_flags, factors):
    size = int(size)
    if size < 1:
        raise ValueError(f"stamp size {size} must be at least 1 pixel")
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got shapes {x.shape} and {y.shape}")
    n = x.size
    ny, nx = mosaic.shape
    stamps = np.zeros((n, len(BANDS), size, size), np.float32)

    ix, iy = stamp_centre(x, y)
    outside = (ix < 0) | (ix >= nx) | (iy < 0) | (iy >= ny)
    off = np.arange(size) - size // 2
    cols = ix[:, None] + off  # (n, size)
    rows = iy[:, None] + off
    col_in = (cols >= 0) & (cols < nx)
    row_in = (rows >= 0) & (rows < ny)
    inside = row_in[:, :, None] & col_in[:, None, :]  # (n, size, size)
    edge = ~outside & ~inside.all(axis=(1, 2))
    # Flat indices, clipped so that out-of-image pixels read a valid pixel
    # (overwritten with NaN below).
    rows_c = np.clip(rows, 0, ny - 1)
    cols_c = np.clip(cols, 0, nx - 1)
    flat_idx = rows_c[:, :, None] * nx + cols_c[:, None, :]
    outside_px = ~inside
    any_outside = bool(outside_px.any())

    nan_any = np.zeros(n, bool)
    zero_any = np.zeros(n, bool)
    h = size // 2
    lo = max(h - ZERO_WEIGHT_BOX // 2, 0)
    box = slice(lo, min(lo + ZERO_WEIGHT_BOX, size))
    for j, image in enumerate(mosaic.images):
        if image is None:
            continue
        if n == 0:
            continue
        band = stamps[:, j]
        if image.flags.c_contiguous:
            # A flat view of a memory map reads only the pixels taken.
            band[...] = np.take(image.reshape(-1), flat_idx)
        else:
            band[...] = image[rows_c[:, :, None], cols_c[:, None, :]]
        if any_outside:
            band[outside_px] = np.nan
        nan_any |= (np.isnan(band) & inside).any(axis=(1, 2))
        zero_any |= (band[:, box, box] == 0).any(axis=(1, 2))
        if factors is not None and factors[j] != 1:
            band *= factors[j]

    # No data of an off-image source is used, even where its stamp overlaps the image.
    stamps[outside] = np.nan
    masks = list(zip(FLAG_NAMES, (outside, edge, nan_any & ~outside, zero_any & ~outside)))
    masks += [(f"missing:{b}", np.ones(n, bool)) for b in mosaic.missing_bands]
    if mosaic_flags:
        masks += [(f, np.ones(n, bool)) for f in getattr(mosaic, "flags", ())]
    return Cutouts(stamps, _join(masks, n))
