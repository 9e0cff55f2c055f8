"""Candidate detection when no catalog is given, with LEGUS-like cuts.

LEGUS (Adamo et al. 2017) extracts sources with SExtractor on a white-light
image, keeps those with a V-band concentration index CI = mag(1 px) -
mag(3 px) above the field's stellar CI (about 1.3-1.4 mag) and then those
brighter than M_V = -6 mag. Here candidates come from photutils'
`DAOStarFinder` on the V band (or a noise-weighted white-light sum) inside a
box of the mosaic, after subtracting a `Background2D` map (or a single
sigma-clipped level for small boxes); the CI and a 4 px aperture magnitude
are measured in V with `glue_starclf.core.photometry`. Only the box is read from
the memory maps.
"""

import inspect
import logging

import numpy as np
from astropy.stats import SigmaClip, sigma_clipped_stats
from astropy.table import Table
from photutils.background import Background2D, MedianBackground
from photutils.detection import DAOStarFinder

from ..io.bands import canonical_band
from .photometry import aperture_fluxes, concentration_index

__all__ = ["detect_sources", "parse_region", "sources_to_classify", "MAG_APERTURE_PX"]

log = logging.getLogger("glue_starclf")

#: LEGUS total-magnitude aperture radius [px] (sky from a 7-8 px annulus).
MAG_APERTURE_PX = 4.0


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


def detect_sources(mosaic, region=None, band="F555W", fwhm=2.2, threshold_sigma=5.0,
                   ci_min=1.3, mag_limit=None, abs_mag_limit=None, distance_mpc=None,
                   white_light=False, box_size=64, sharpness_range=(0.0, 1.0),
                   roundness_range=(-1.0, 1.0), min_separation=None, max_sources=None,
                   zeropoint=None, aperture_correction=0.0):
    """Find cluster candidates in a box of the mosaic and apply LEGUS-like cuts.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    region : (x0, y0, x1, y1) or str, optional
        0-based half-open pixel box (see `parse_region`); default the whole
        mosaic. Only this box is read.
    band : str
        Band in which the CI and magnitude are measured and, unless
        ``white_light``, sources are found (LEGUS: V = F555W).
    fwhm : float
        DAOStarFinder kernel FWHM [px].
    threshold_sigma : float
        Detection threshold in units of the background rms.
    ci_min : float or None
        Keep sources with CI >= ``ci_min`` (LEGUS: 1.3-1.4, above the
        stellar CI); None keeps all (CI NaN included).
    mag_limit : float, optional
        Keep sources with ``mag_v <= mag_limit`` (apparent Vega mag).
    abs_mag_limit, distance_mpc : float, optional
        Alternatively the LEGUS absolute cut (M_V <= -6) at a distance; the
        brighter (smaller) of the two limits applies when both are given.
    white_light : bool
        Detect on the noise-weighted sum of all present bands.
    box_size : int
        `Background2D` box [px]; boxes smaller than twice this use one
        sigma-clipped level. 0 forces the single level.
    sharpness_range, roundness_range : (float, float)
        DAOStarFinder shape limits (clusters are broader than stars, so the
        sharpness range is wider than photutils' default).
    min_separation : float, optional
        Smallest distance between detections [px] (DAOStarFinder default
        when None).
    max_sources : int, optional
        Keep at most this many, the brightest, before the cuts.
    zeropoint : float, optional
        Vega zeropoint of ``band`` for 1 image unit; default from the header
        (`Mosaic.zeropoint`).
    aperture_correction : float
        Added to the 4 px aperture magnitude (LEGUS applies an average
        aperture correction of a few 0.1 mag; 0 keeps the aperture mag).

    Returns
    -------
    astropy.table.Table
        ``id`` (1..n), ``x``, ``y`` (0-based mosaic pixels), ``ra``, ``dec``
        (NaN without a WCS), ``ci``, ``mag_v``, in detection order (DAOStarFinder's
        order: by position). ``meta`` records the options, the background
        rms, the zeropoint used and the counts before each cut.

    Raises
    ------
    ValueError
        If the band is unknown or missing from the mosaic, or an option is
        out of range.
    """
    band = canonical_band(band)
    if band not in mosaic.bands:
        raise ValueError(f"band {band} is not in the mosaic (bands given: "
                         f"{', '.join(mosaic.bands)}): detection measures CI in it")
    if not (fwhm > 0):
        raise ValueError(f"fwhm {fwhm!r} must be positive")
    if not (threshold_sigma > 0):
        raise ValueError(f"threshold_sigma {threshold_sigma!r} must be positive")
    if abs_mag_limit is not None:
        if distance_mpc is None or not distance_mpc > 0:
            raise ValueError("abs_mag_limit needs a positive distance_mpc")
        app = abs_mag_limit + 5 * np.log10(distance_mpc * 1e6) - 5
        mag_limit = app if mag_limit is None else min(mag_limit, app)
    box = parse_region(region, mosaic.shape)
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
    meta = {"band": band, "region": list(box), "fwhm": fwhm, "threshold_sigma": threshold_sigma,
            "ci_min": ci_min, "mag_limit": mag_limit, "white_light": bool(white_light),
            "background_rms": rms}
    empty = Table({"id": np.zeros(0, np.int64), "x": np.zeros(0), "y": np.zeros(0),
                   "ra": np.zeros(0), "dec": np.zeros(0), "ci": np.zeros(0),
                   "mag_v": np.zeros(0)}, meta=meta)
    if det_bad.all() or not (rms > 0):
        log.warning("region %s: no usable pixels in %s", box, band)
        return empty
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
        log.info("region %s: no sources above %g sigma", box, threshold_sigma)
        return empty
    xs = np.asarray(found["x_centroid"] if "x_centroid" in found.colnames
                    else found["xcentroid"], float)
    ys = np.asarray(found["y_centroid"] if "y_centroid" in found.colnames
                    else found["ycentroid"], float)

    # CI and magnitude on the V image itself, with the LEGUS local sky annulus.
    ci = concentration_index(clean, xs, ys)
    flux = aperture_fluxes(clean, xs, ys, (MAG_APERTURE_PX,))[:, 0]
    zp, source = (float(zeropoint), "given") if zeropoint is not None else mosaic.zeropoint(band)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1)) + zp
                       + aperture_correction, np.nan)
    keep = np.ones(len(xs), bool)
    meta["n_found"] = int(len(xs))
    if ci_min is not None:
        keep &= ci >= ci_min
        meta["n_after_ci"] = int(keep.sum())
    if mag_limit is not None:
        keep &= mag <= mag_limit
        meta["n_after_mag"] = int(keep.sum())
    meta["zeropoint"] = zp
    meta["zeropoint_source"] = source
    log.info("detected %d sources in %s, %d pass the cuts (CI >= %s, mag <= %s; zeropoint %.3f "
             "from %s)", len(xs), box, int(keep.sum()), ci_min, mag_limit, zp, source)

    x = xs[keep] + x0
    y = ys[keep] + y0
    ra, dec = mosaic.pixel_to_sky(x, y)
    out = Table(meta=meta)
    out["id"] = np.arange(1, keep.sum() + 1, dtype=np.int64)
    out["x"], out["y"] = x, y
    out["ra"], out["dec"] = ra, dec
    out["ci"] = ci[keep]
    out["mag_v"] = mag[keep]
    for name, unit in (("x", "pix"), ("y", "pix"), ("ra", "deg"), ("dec", "deg"),
                       ("ci", "mag"), ("mag_v", "mag")):
        out[name].unit = unit
    return out


def sources_to_classify(mosaic, catalog=None, region=None):
    """The sources ``starclf classify`` (and each batch field) classifies.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    catalog : str or path-like, optional
        A catalog file (`glue_starclf.io.catalogs.read_catalog`); without
        one, candidates are detected with `detect_sources`.
    region : sequence of 4 numbers, str "x0,y0,x1,y1", or None
        0-based pixel box; catalog rows outside it are dropped.

    Returns
    -------
    astropy.table.Table
        With ``x``, ``y`` (0-based) and the catalog's other columns.
    """
    if catalog:
        from ..io.catalogs import read_catalog
        table = read_catalog(catalog, wcs=mosaic.wcs, shape=mosaic.shape)
        if region and len(table):
            x0, y0, x1, y1 = parse_region(region, mosaic.shape)
            x, y = table["x"], table["y"]
            table = table[(x >= x0) & (x < x1) & (y >= y0) & (y < y1)]
        return table
    table = detect_sources(mosaic, region=region)
    log.info("detected %d candidates", len(table))
    return table
