"""Peaks in a box of the mosaic, with their V-band CI and 4 px aperture flux, before any cut.

The first step of `glue_starclf.core.detection.detect_sources` and of the
stellar-CI measurement (`glue_starclf.core.stellar_ci`): photutils'
`DAOStarFinder` on the V band (or a noise-weighted white-light sum) after
subtracting a `Background2D` map (or a single sigma-clipped level for small
boxes), then the CI and the aperture flux on the V image itself. Only the
box is read from the memory maps.
"""

import inspect
from typing import NamedTuple

import numpy as np
from astropy.stats import SigmaClip, sigma_clipped_stats

from .photometry import aperture_fluxes, concentration_index

__all__ = ["MAG_APERTURE_PX", "Peaks", "centroids", "find_peaks", "parse_region"]

#: LEGUS total-magnitude aperture radius [px] (sky from a 7-8 px annulus).
MAG_APERTURE_PX = 4.0


class Peaks(NamedTuple):
    """What `find_peaks` found in a box.

    ``x``, ``y`` are 0-based and relative to the box; ``ci`` and ``flux``
    (4 px aperture, local sky subtracted) are measured on ``image``, the
    box of the band as float32 with NaN where there is no data; ``rms`` is
    the background rms of the detection image; ``status`` is ``"ok"``,
    ``"no pixels"`` (nothing usable in the box) or ``"no sources"``.
    """

    x: np.ndarray
    y: np.ndarray
    ci: np.ndarray
    flux: np.ndarray
    image: np.ndarray
    rms: float
    status: str


def parse_region(region, shape):
    """Clip a pixel box to the image: ``(x0, y0, x1, y1)`` ints, half-open.

    Parameters
    ----------
    region : sequence of 4 numbers, str "x0,y0,x1,y1", or None
        0-based box ``x0 <= x < x1``, ``y0 <= y < y1``; None is the whole
        image.
    shape : (int, int)
        ``(ny, nx)`` of the image.

    Returns
    -------
    (int, int, int, int)

    Raises
    ------
    ValueError
        If the box is malformed or does not overlap the image.
    """
    ny, nx = shape
    if region is None:
        return 0, 0, nx, ny
    if isinstance(region, str):
        try:
            region = [float(v) for v in region.split(",")]
        except ValueError:
            raise ValueError(f"region {region!r}: expected x0,y0,x1,y1") from None
    try:
        x0, y0, x1, y1 = (float(v) for v in region)
    except (TypeError, ValueError):
        raise ValueError(f"region {region!r}: expected x0,y0,x1,y1") from None
    if not all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"region {tuple(region)!r}: needs x0 < x1 and y0 < y1")
    bx0, by0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    bx1, by1 = min(int(np.ceil(x1)), nx), min(int(np.ceil(y1)), ny)
    if bx1 <= bx0 or by1 <= by0:
        raise ValueError(f"region {tuple(region)!r} does not overlap the {nx}x{ny} mosaic")
    return bx0, by0, bx1, by1


def _background(data, mask, box_size):
    """Background map (or level) and its rms, inside the box."""
    from photutils.background import Background2D, MedianBackground
    ny, nx = data.shape
    if box_size and ny >= 2 * box_size and nx >= 2 * box_size:
        try:
            bkg = Background2D(data, box_size, mask=mask, filter_size=(3, 3),
                               sigma_clip=SigmaClip(sigma=3.0), bkg_estimator=MedianBackground())
            return bkg.background, float(np.median(bkg.background_rms))
        except ValueError:  # too few unmasked pixels per box
            pass
    _, median, std = sigma_clipped_stats(data, mask=mask, sigma=3.0)
    return float(median), float(std)


def _white_light(mosaic, box, box_size):
    """Sum of the present bands, each background-subtracted and divided by its rms."""
    x0, y0, x1, y1 = box
    total, bad = None, None
    for band in mosaic.bands:
        data = mosaic.section(band, x0, y0, x1, y1)
        mask = ~np.isfinite(data) | (data == 0)
        if mask.all():  # no exposure here: adds nothing
            continue
        level, rms = _background(np.where(mask, 0, data), mask, box_size)
        scaled = (data - level) / (rms if rms > 0 else 1.0)
        total = np.where(mask, 0, scaled) if total is None else total + np.where(mask, 0, scaled)
        bad = mask if bad is None else bad & mask
    if total is None:
        shape = (y1 - y0, x1 - x0)
        return np.zeros(shape, np.float32), np.ones(shape, bool)
    return total, bad


def centroids(found):
    """x, y of a DAOStarFinder table, under photutils' old or new column names."""
    return tuple(np.asarray(found[k if k in found.colnames else k.replace("_", "")], float)
                 for k in ("x_centroid", "y_centroid"))


def find_peaks(mosaic, box, band, fwhm=2.2, threshold_sigma=5.0, white_light=False,
               box_size=64, sharpness_range=(0.0, 1.0), roundness_range=(-1.0, 1.0),
               min_separation=None, max_sources=None):
    """Find peaks in a box of the mosaic and measure their CI and aperture flux in ``band``.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    box : (int, int, int, int)
        0-based half-open ``(x0, y0, x1, y1)`` (`parse_region`).
    band : str
        Canonical band the CI and flux are measured in and, unless
        ``white_light``, peaks are found in.
    fwhm, threshold_sigma, white_light, box_size, sharpness_range, roundness_range, \
min_separation, max_sources
        As in `glue_starclf.core.detection.detect_sources`.

    Returns
    -------
    Peaks
    """
    from photutils.detection import DAOStarFinder
    x0, y0, x1, y1 = box
    # One float32 copy of the box: NaN where there is no data (NaN or
    # exact-zero, i.e. zero-weight, pixels) for the photometry.
    clean = mosaic.section(band, x0, y0, x1, y1)
    bad = ~np.isfinite(clean) | (clean == 0)
    clean[bad] = np.nan
    if white_light:
        det, det_bad = _white_light(mosaic, box, box_size)
    else:
        det, det_bad = clean, bad
    level, rms = _background(det, det_bad, box_size) if not det_bad.all() else (0.0, 0.0)
    none = np.zeros(0)
    if det_bad.all() or not (rms > 0):
        return Peaks(none, none, none, none, clean, rms, "no pixels")
    kwargs = {"n_brightest": max_sources}
    if "sharpness_range" in inspect.signature(DAOStarFinder).parameters:
        kwargs.update(sharpness_range=tuple(sharpness_range),
                      roundness_range=tuple(roundness_range))
    else:  # photutils < 3 names the limits separately
        kwargs.update(sharplo=sharpness_range[0], sharphi=sharpness_range[1],
                      roundlo=roundness_range[0], roundhi=roundness_range[1])
    if min_separation is not None:
        kwargs["min_separation"] = min_separation
    finder = DAOStarFinder(threshold_sigma * rms, fwhm, **kwargs)
    residual = det - level
    residual[det_bad] = 0.0
    found = finder(residual, mask=det_bad)
    del residual
    if found is None or len(found) == 0:
        return Peaks(none, none, none, none, clean, rms, "no sources")
    xs, ys = centroids(found)
    # CI and flux on the V image itself, with the LEGUS local sky annulus.
    ci = concentration_index(clean, xs, ys)
    flux = aperture_fluxes(clean, xs, ys, (MAG_APERTURE_PX,))[:, 0]
    return Peaks(xs, ys, ci, flux, clean, rms, "ok")
