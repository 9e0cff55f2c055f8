"""Candidate detection when no catalog is given, with LEGUS-like cuts.

LEGUS (Adamo et al. 2017; the catalogs' headers) extracts sources with
SExtractor on a white-light image and keeps those with a V-band
concentration index CI = mag(1 px) - mag(3 px) just above the field's
stellar CI (1.2-1.4 mag by field; by default here the field's measured
stellar CI + 0.05, `glue_starclf.core.stellar_ci.field_ci_cut`); it fits
and inspects only those brighter than M_V = -6 mag and detected in at
least four bands with a photometric error of at most 0.3 mag.
Here candidates come from photutils' `DAOStarFinder` on the V band (or a
noise-weighted white-light sum) inside a box of the mosaic
(`glue_starclf.core.finder`), after
subtracting a `Background2D` map (or a single sigma-clipped level for small
boxes); the CI and 4 px aperture magnitudes (sky from the 7-8 px annulus,
errors from the annulus scatter) are measured with
`glue_starclf.core.photometry`, and the LEGUS cuts are the defaults of
`detect_sources`. Only the box is read from the memory maps.
"""

import logging

import numpy as np
from astropy.stats import SigmaClip
from astropy.table import Table

from ..io.bands import canonical_band

from .finder import MAG_APERTURE_PX, find_peaks, parse_region
from .photometry import SKY_ANNULUS, aperture_fluxes

# photutils is imported inside the functions that use it: it takes about a second
# to import, and classifying the sources of a catalog never needs it.

__all__ = ["detect_sources", "parse_region", "sources_to_classify", "detected_stellar_ci",
           "band_photometry", "detection_provenance",
           "MAG_APERTURE_PX", "LEGUS_CI_MIN", "LEGUS_ABS_MAG_LIMIT", "LEGUS_MIN_BANDS",
           "LEGUS_MAX_MAG_ERROR", "average_aperture_correction"]

log = logging.getLogger("glue_starclf")

#: LEGUS cuts (the catalogs' headers): M_V <= -6 mag, detected in >= 4 bands
#: with a magnitude error <= 0.3 mag; the CI cut is each field's own (just
#: above its stellar locus), 1.4 mag the highest of the 35 fields' cuts and
#: this package's fixed default before the field's own.
LEGUS_CI_MIN = 1.4
LEGUS_ABS_MAG_LIMIT = -6.0
LEGUS_MIN_BANDS = 4
LEGUS_MAX_MAG_ERROR = 0.3

#: LEGUS average aperture correction (the "avgapcor" catalogs): mag(20 px,
#: sky 21-22 px) - mag(4 px) of isolated clusters, averaged over the field.
APCOR_APERTURE_PX = 20.0
APCOR_SKY_ANNULUS = (21.0, 22.0)
APCOR_N_SOURCES = 40
APCOR_MIN_SOURCES = 5

#: 2.5 / ln 10: magnitude error per unit relative flux error.
_MAG_PER_REL_FLUX = 2.5 / np.log(10.0)


def band_photometry(mosaic, x, y, box=None, radius=MAG_APERTURE_PX):
    """4 px aperture fluxes and magnitude errors of sources in every present band.

    The sky is the median of the `SKY_ANNULUS` pixels; the error combines
    the annulus scatter over the aperture and the sky estimate (IRAF
    ``phot``'s formula) with the source's Poisson noise where the header
    gives ``EXPTIME``.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    x, y : array_like
        0-based positions relative to ``box``.
    box : (x0, y0, x1, y1), optional
        The part of the mosaic read (default: all).
    radius : float
        Aperture radius [px].

    Returns
    -------
    dict
        band -> ``(flux, mag_error)`` arrays; the error is inf where the flux
        is not positive.
    """
    from photutils.aperture import ApertureStats, CircularAnnulus
    x0, y0, x1, y1 = box if box is not None else (0, 0, mosaic.shape[1], mosaic.shape[0])
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    pos = np.column_stack([xs, ys])
    n_ap = np.pi * radius ** 2
    n_sky = np.pi * (SKY_ANNULUS[1] ** 2 - SKY_ANNULUS[0] ** 2)
    out = {}
    for band in mosaic.bands:
        image = mosaic.section(band, x0, y0, x1, y1)
        image[~np.isfinite(image) | (image == 0)] = np.nan
        if not len(xs):
            out[band] = (np.zeros(0), np.zeros(0))
            continue
        flux = aperture_fluxes(image, xs, ys, (radius,))[:, 0]
        sky_sd = np.atleast_1d(ApertureStats(image, CircularAnnulus(pos, *SKY_ANNULUS),
                                             sigma_clip=SigmaClip(sigma=3.0)).std)
        var = n_ap * sky_sd ** 2 * (1 + n_ap / n_sky)
        exptime = mosaic.headers.get(band, {}).get("EXPTIME")
        if exptime:
            var = var + np.clip(flux, 0, None) / float(exptime)
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.where(flux > 0, _MAG_PER_REL_FLUX * np.sqrt(var) / flux, np.inf)
        out[band] = (flux, np.where(np.isfinite(err), err, np.inf))
    return out


def _check_cut(name, value, low, integer=False):
    ok = (value is None or (isinstance(value, (int, float, np.number))
                            and not isinstance(value, bool) and np.isfinite(value)
                            and value >= low and (not integer or float(value).is_integer())))
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} {value!r} must be {kind} >= {low} (or None: no cut)")


def average_aperture_correction(image, x, y, ci, flux, ci_min=LEGUS_CI_MIN,
                                n_sources=APCOR_N_SOURCES, min_sources=APCOR_MIN_SOURCES):
    """The field's average aperture correction, as LEGUS measured it.

    The median of mag(20 px) - mag(4 px) (each with its own sky annulus) over
    the ``n_sources`` brightest candidates that pass the CI cut and have no
    other detection within 20 px.

    Parameters
    ----------
    image : 2-D ndarray
        The band's pixels, NaN where there is no data.
    x, y : ndarray
        Every detection (the isolation test uses them all).
    ci : ndarray
        Their concentration index.
    flux : ndarray
        Their 4 px aperture fluxes (sky-subtracted).
    ci_min : float or None
        CI cut of the candidates used.
    n_sources, min_sources : int
        Use at most the ``n_sources`` brightest; fewer than ``min_sources``
        usable ones give None.

    Returns
    -------
    correction : float or None
        Magnitudes to add to the 4 px magnitudes (negative), or None.
    n : int
        Sources it is the median of.
    """
    from scipy.spatial import cKDTree
    x, y, ci, flux = (np.asarray(a, float) for a in (x, y, ci, flux))
    if len(x) < 2:
        return None, 0
    dist, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    ok = (dist[:, 1] > APCOR_APERTURE_PX) & (flux > 0)
    if ci_min is not None:
        ok &= ci >= ci_min
    idx = np.flatnonzero(ok)
    idx = idx[np.argsort(-flux[idx])][:n_sources]
    if len(idx) < min_sources:
        return None, int(len(idx))
    big = aperture_fluxes(image, x[idx], y[idx], (APCOR_APERTURE_PX,),
                          sky_annulus=APCOR_SKY_ANNULUS)[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = -2.5 * np.log10(big / flux[idx])
    corr = corr[np.isfinite(corr)]
    if len(corr) < min_sources:
        return None, int(len(corr))
    return float(np.median(corr)), int(len(corr))


def detect_sources(mosaic, region=None, band="F555W", fwhm=2.2, threshold_sigma=5.0,
                   ci_min="field", mag_limit=None, abs_mag_limit=LEGUS_ABS_MAG_LIMIT,
                   distance_mpc=None, min_bands=LEGUS_MIN_BANDS,
                   max_mag_error=LEGUS_MAX_MAG_ERROR, white_light=False, box_size=64,
                   sharpness_range=(0.0, 1.0), roundness_range=(-1.0, 1.0),
                   min_separation=None, max_sources=None, zeropoint=None,
                   aperture_correction="field", stellar_ci=None, quiet=False):
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
    ci_min : "field", float or None
        Keep sources with CI >= the cut. ``"field"`` (default): the field's
        own cut, as LEGUS placed it just above each field's stellar locus
        (the catalogs' cuts run 1.2-1.4 mag): its stellar CI + 0.05 mag
        (`glue_starclf.core.stellar_ci.field_ci_cut`), the stellar CI given
        as ``stellar_ci`` or measured in a box centred on the region; where
        it cannot be measured (too few isolated stars) the median LEGUS
        locus, 1.25, is taken with a warning. A number: that cut (1.4 is
        the highest of the LEGUS fields'). None keeps all (CI NaN included).
    mag_limit : float, optional
        Keep sources with ``mag_v <= mag_limit`` (apparent Vega mag).
    abs_mag_limit : float or None
        The LEGUS absolute cut M_V <= ``abs_mag_limit`` (default -6) at
        ``distance_mpc``; the brighter (smaller) of it and ``mag_limit``
        applies. Without a distance it is not applied (a warning says so,
        and ``meta["mag_limit"]`` is None).
    distance_mpc : float, optional
        Galaxy distance for ``abs_mag_limit``.
    min_bands, max_mag_error : int and float, or None
        Keep sources detected (4 px aperture magnitude error <=
        ``max_mag_error``, default 0.3) in at least ``min_bands`` bands
        (default 4; LEGUS fits only those). When the mosaic has fewer bands
        than ``min_bands``, all its bands are required (a warning says so).
        None for either: no band cut.
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
    aperture_correction : "field" or float
        Added to the 4 px aperture magnitude before the magnitude cuts, as
        LEGUS cut on aperture-corrected magnitudes: ``"field"`` measures the
        field's average correction (`average_aperture_correction`; 0 with a
        warning when fewer than 5 isolated candidates allow it); a number is
        used as given (0 keeps the aperture magnitude). The value used is in
        the table's ``meta["aperture_correction"]``.
    stellar_ci : float, optional
        The field's stellar CI [mag] for ``ci_min="field"``, given instead
        of measured (`glue_starclf.core.stellar_ci.STELLAR_CI_RANGE`).
    quiet : bool
        Log the summary at DEBUG, not INFO (detection as a step of another
        measurement).

    Returns
    -------
    astropy.table.Table
        ``id`` (1..n), ``x``, ``y`` (0-based mosaic pixels), ``ra``, ``dec``
        (NaN without a WCS), ``ci``, ``mag_v``, ``n_bands`` (bands with a
        magnitude error <= ``max_mag_error``; -1 without the band cut), in
        detection order (DAOStarFinder's order: by position). ``meta``
        records the options, the background rms, the zeropoint used and the
        counts after each cut (``n_found``, ``n_after_ci``,
        ``n_after_mag``, ``n_after_bands``); with the field's own CI cut
        also ``ci_min_rule`` ``"field"``, the ``stellar_ci`` and its
        ``stellar_ci_source``.

    Raises
    ------
    ValueError
        If the band is unknown or missing from the mosaic, or an option is
        out of range.
    """
    log_level = logging.DEBUG if quiet else logging.INFO
    band = canonical_band(band)
    if band not in mosaic.bands:
        raise ValueError(f"band {band} is not in the mosaic (bands given: "
                         f"{', '.join(mosaic.bands)}): detection measures CI in it")
    if not (fwhm > 0):
        raise ValueError(f"fwhm {fwhm!r} must be positive")
    if not (threshold_sigma > 0):
        raise ValueError(f"threshold_sigma {threshold_sigma!r} must be positive")
    field_cut = isinstance(ci_min, str)
    if field_cut and ci_min != "field":
        raise ValueError(f"ci_min {ci_min!r} must be 'field', a number or None (no cut)")
    if not field_cut:
        _check_cut("ci_min", ci_min, -np.inf)
    if stellar_ci is not None:
        from .stellar_ci import checked_stellar_ci
        stellar_ci = checked_stellar_ci(stellar_ci)
    _check_cut("mag_limit", mag_limit, -np.inf)
    _check_cut("abs_mag_limit", abs_mag_limit, -np.inf)
    _check_cut("min_bands", min_bands, 1, integer=True)
    _check_cut("max_mag_error", max_mag_error, 0.001)
    if isinstance(aperture_correction, str):
        apcor_ok = aperture_correction == "field"
    else:
        apcor_ok = (isinstance(aperture_correction, (int, float, np.number))
                    and np.isfinite(aperture_correction))
    if not apcor_ok:
        raise ValueError(f"aperture_correction {aperture_correction!r} must be 'field' or a "
                         f"number of magnitudes")
    if distance_mpc is not None and not (isinstance(distance_mpc, (int, float, np.number))
                                         and np.isfinite(distance_mpc) and distance_mpc > 0):
        raise ValueError(f"distance_mpc {distance_mpc!r} must be a positive number of Mpc")
    if abs_mag_limit is not None:
        if distance_mpc is None:
            log.warning("no distance given: the M_V <= %g cut is not applied", abs_mag_limit)
        else:
            app = abs_mag_limit + 5 * np.log10(distance_mpc * 1e6) - 5
            mag_limit = app if mag_limit is None else min(mag_limit, app)
    band_cut = min_bands is not None and max_mag_error is not None
    if band_cut and int(min_bands) > len(mosaic.bands):
        log.warning("the mosaic has %d bands (%s): requiring detection in all of them, "
                    "not %d", len(mosaic.bands), ", ".join(mosaic.bands), min_bands)
        min_bands = len(mosaic.bands)
    box = parse_region(region, mosaic.shape)
    x0, y0, x1, y1 = box
    field_meta = {}
    if field_cut:
        ci_min, field_meta = _field_cut(mosaic, box, stellar_ci, log_level)

    peaks = find_peaks(mosaic, box, band, fwhm=fwhm, threshold_sigma=threshold_sigma,
                       white_light=white_light, box_size=box_size,
                       sharpness_range=sharpness_range, roundness_range=roundness_range,
                       min_separation=min_separation, max_sources=max_sources)
    rms = peaks.rms
    meta = {"band": band, "region": list(box), "fwhm": fwhm, "threshold_sigma": threshold_sigma,
            "ci_min": ci_min, "mag_limit": mag_limit, "distance_mpc": distance_mpc,
            "min_bands": int(min_bands) if band_cut else None,
            "max_mag_error": max_mag_error if band_cut else None,
            "white_light": bool(white_light), "background_rms": rms, **field_meta}
    empty = Table({"id": np.zeros(0, np.int64), "x": np.zeros(0), "y": np.zeros(0),
                   "ra": np.zeros(0), "dec": np.zeros(0), "ci": np.zeros(0),
                   "mag_v": np.zeros(0), "n_bands": np.zeros(0, np.int64)}, meta=meta)
    if peaks.status == "no pixels":
        log.warning("region %s: no usable pixels in %s", box, band)
        return empty
    if peaks.status == "no sources":
        log.log(log_level, "region %s: no sources above %g sigma", box, threshold_sigma)
        return empty
    xs, ys, ci, flux, clean = peaks.x, peaks.y, peaks.ci, peaks.flux, peaks.image

    zp, source = (float(zeropoint), "given") if zeropoint is not None else mosaic.zeropoint(band)
    if isinstance(aperture_correction, str):
        aperture_correction, n_apcor = average_aperture_correction(clean, xs, ys, ci, flux,
                                                                   ci_min)
        if aperture_correction is None:
            log.warning("region %s: %d isolated candidates, too few for the field's aperture "
                        "correction; magnitudes are 4 px aperture magnitudes", box, n_apcor)
            aperture_correction = 0.0
        meta["aperture_correction_n"] = n_apcor
    meta["aperture_correction"] = float(aperture_correction)
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
    n_bands = np.full(len(xs), -1, np.int64)
    if band_cut:
        sel = np.flatnonzero(keep)
        phot = band_photometry(mosaic, xs[sel], ys[sel], box)
        n_bands[sel] = sum((err <= max_mag_error).astype(np.int64) for _, err in phot.values())
        keep &= n_bands >= int(min_bands)
        meta["n_after_bands"] = int(keep.sum())
    meta["zeropoint"] = zp
    meta["zeropoint_source"] = source
    log.log(log_level, "detected %d sources in %s, %d pass the cuts (CI >= %s, mag <= %s, "
            ">= %s bands with error <= %s mag; zeropoint %.3f from %s)", len(xs), box,
            int(keep.sum()), None if ci_min is None else round(float(ci_min), 3),
            None if mag_limit is None else round(float(mag_limit), 3), meta["min_bands"],
            meta["max_mag_error"], zp, source)

    x = xs[keep] + x0
    y = ys[keep] + y0
    ra, dec = mosaic.pixel_to_sky(x, y)
    out = Table(meta=meta)
    out["id"] = np.arange(1, keep.sum() + 1, dtype=np.int64)
    out["x"], out["y"] = x, y
    out["ra"], out["dec"] = ra, dec
    out["ci"] = ci[keep]
    out["mag_v"] = mag[keep]
    out["n_bands"] = n_bands[keep]
    for name, unit in (("x", "pix"), ("y", "pix"), ("ra", "deg"), ("dec", "deg"),
                       ("ci", "mag"), ("mag_v", "mag")):
        out[name].unit = unit
    return out


def _field_cut(mosaic, box, stellar_ci, log_level):
    """The field's own CI cut for a box, and the table's meta entries that say why."""
    from .stellar_ci import CI_CUT_ABOVE_STELLAR, field_ci_cut
    x0, y0, x1, y1 = box
    cut, source, measured = field_ci_cut(mosaic, ((x0 + x1) / 2, (y0 + y1) / 2), stellar_ci)
    stellar = cut - CI_CUT_ABOVE_STELLAR
    if measured:
        log.log(log_level, "CI cut %.3f mag: the field's stellar CI %.3f (%s) + %g", cut,
                stellar, source, CI_CUT_ABOVE_STELLAR)
    else:
        log.warning("CI cut %.3f mag: the field's stellar CI is the %s + %g (give the field's "
                    "stellar CI with --stellar-ci or in the Classify dialog)", cut, source,
                    CI_CUT_ABOVE_STELLAR)
    return cut, {"ci_min_rule": "field", "stellar_ci": round(float(stellar), 4),
                 "stellar_ci_source": source}


def detection_provenance(table):
    """The CI cut candidates were detected with, as results metadata.

    Parameters
    ----------
    table : astropy.table.Table
        Sources from `detect_sources` (or a catalog: nothing to say).

    Returns
    -------
    dict
        ``detection_ci_min`` and, with the field's own cut,
        ``detection_stellar_ci`` and ``detection_stellar_ci_source``; empty
        for sources that were not detected.
    """
    meta = table.meta
    if "threshold_sigma" not in meta or "ci_min" not in meta:
        return {}
    out = {"detection_ci_min": meta["ci_min"]}
    for key in ("stellar_ci", "stellar_ci_source"):
        if meta.get(key) is not None:
            out[f"detection_{key}"] = meta[key]
    return out


def detected_stellar_ci(table, given=None):
    """The field's stellar CI that detection set its CI cut by, for `predict` to reuse.

    Classifying detected candidates then takes the field's stellar CI from
    the one measurement the cut was made with, instead of measuring it
    again in a box centred on the candidates (the same field, a box that
    differs by at most half the region).

    Parameters
    ----------
    table : astropy.table.Table
        Sources from `detect_sources`, or a catalog.
    given : float, optional
        A stellar CI the user gave: it wins (returned with source None,
        which `predict` records as ``"given"``).

    Returns
    -------
    value : float or None
    source : str or None
        As `detect_sources` recorded them (``meta`` ``stellar_ci`` and
        ``stellar_ci_source``); None and None for a fixed cut or a catalog.
    """
    if given is not None:
        return given, None
    meta = table.meta
    if meta.get("ci_min_rule") != "field" or meta.get("stellar_ci") is None:
        return None, None
    return float(meta["stellar_ci"]), meta.get("stellar_ci_source")


def sources_to_classify(mosaic, catalog=None, region=None, distance_mpc=None, stellar_ci=None):
    """The sources ``starclf classify`` (and each batch field) classifies.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    catalog : str or path-like, optional
        A catalog file (`glue_starclf.io.catalogs.read_catalog`); without
        one, candidates are detected with `detect_sources`.
    region : sequence of 4 numbers, str "x0,y0,x1,y1", or None
        0-based pixel box; catalog rows outside it are dropped.
    distance_mpc : float, optional
        Galaxy distance: with it, detection applies the LEGUS M_V <= -6 cut.
    stellar_ci : float, optional
        The field's stellar CI, for detection's CI cut (else measured).

    Returns
    -------
    astropy.table.Table
        With ``x``, ``y`` (0-based) and the catalog's other columns; detected
        ones carry `detect_sources`' ``meta``.
    """
    if catalog:
        from ..io.catalogs import read_catalog
        table = read_catalog(catalog, wcs=mosaic.wcs, shape=mosaic.shape)
        if region and len(table):
            x0, y0, x1, y1 = parse_region(region, mosaic.shape)
            x, y = table["x"], table["y"]
            table = table[(x >= x0) & (x < x1) & (y >= y0) & (y < y1)]
        return table
    table = detect_sources(mosaic, region=region, distance_mpc=distance_mpc,
                           stellar_ci=stellar_ci)
    log.info("detected %d candidates", len(table))
    return table
