"""The field's stellar CI: the concentration index of its point sources, measured on the image.

LEGUS places its CI cut just above the CI of the field's stars (the stellar
locus, 001 §2), which depends on the PSF of the observation. Classifier
members trained with the ``stellar_ci`` input (`StarClassifier`) take it as
a property of the field, so that a compact cluster under a broad PSF is not
mistaken for a star, nor a star under a sharp one for a cluster. It is
measured here the way an observer would: the low end (5th percentile) of the
V-band CI of the brightest isolated detections, where stars pile up. On the
four mock audit fields this is within -0.021 to +0.030 mag of the PSF's own
stellar CI (`models/README.md`).
"""

import numpy as np

from ..io.bands import PIXEL_SCALE_ARCSEC, canonical_band
from .cutouts import needs_resampling
from .photometry import concentration_index

__all__ = ["measure_stellar_ci", "stellar_ci_or_default", "sources_centre", "STELLAR_CI_RANGE",
           "STELLAR_CI_DEFAULT", "STELLAR_CI_BOX_PX", "STELLAR_CI_N_BRIGHTEST",
           "STELLAR_CI_ISOLATION_PX", "STELLAR_CI_PERCENTILE", "STELLAR_CI_MIN_SOURCES",
           "CI_CUT_ABOVE_STELLAR", "field_ci_cut", "checked_stellar_ci"]

#: Stellar CIs [mag] accepted, given or measured: the training fields' measured
#: values span 1.12-1.46 (their PSFs 1.15-1.47). A measurement outside (too few
#: stars in a small region, noise) is not trusted: the default is taken.
STELLAR_CI_RANGE = (1.1, 1.55)
#: Taken where it cannot be measured: the median stellar locus of the 35 LEGUS
#: catalogs (1.15-1.35; `glue_starclf.sim.effpsf.stellar_locus`).
STELLAR_CI_DEFAULT = 1.25
#: Side [px] of the box the stellar CI is measured in (centred on the sources).
STELLAR_CI_BOX_PX = 2048
#: The brightest isolated detections used, and how isolated [px to the nearest detection].
STELLAR_CI_N_BRIGHTEST = 200
STELLAR_CI_ISOLATION_PX = 10.0
#: Percentile of their CI taken as the stellar CI.
STELLAR_CI_PERCENTILE = 5.0
#: Fewer usable detections than this: no measurement.
STELLAR_CI_MIN_SOURCES = 30
#: A field's own CI cut [mag] sits this far above its stellar CI, as in the
#: LEGUS catalogs (cuts 1.2-1.4 by field; `glue_starclf.sim.effpsf.LOCUS_BELOW_CUT`).
CI_CUT_ABOVE_STELLAR = 0.05


def sources_centre(x, y):
    """The median (x, y) of the finite source positions, or None: the box's centre."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    return (float(np.median(x[ok])), float(np.median(y[ok]))) if ok.any() else None


def measure_stellar_ci(mosaic, centre=None, box=STELLAR_CI_BOX_PX, band="F555W"):
    """Measure the stellar CI (mag(1 px) - mag(3 px) in V of a star) of a mosaic.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    centre : (float, float), optional
        0-based pixel (x, y) the box is centred on; default the mosaic's centre.
    box : int
        Side [px] of the box searched (clipped to the mosaic).
    band : str
        The band the CI is measured in (LEGUS: V = F555W).

    Returns
    -------
    stellar_ci : float
    info : dict
        ``region`` searched, ``n_found`` detections, ``n_used`` (the
        brightest isolated ones).

    Raises
    ------
    ValueError
        If the band is missing or too few isolated detections allow a measurement.
    """
    from scipy.spatial import cKDTree

    from .finder import find_peaks
    band = canonical_band(band)
    if band not in mosaic.bands:
        raise ValueError(f"the stellar CI is measured in {band}, which the mosaic lacks "
                         f"(bands given: {', '.join(mosaic.bands)})")
    ny, nx = mosaic.shape
    cx, cy = (nx / 2.0, ny / 2.0) if centre is None else (float(centre[0]), float(centre[1]))
    side = int(box)
    if side < 64:
        raise ValueError(f"box {box!r} px: need at least 64")
    x0 = int(np.clip(round(cx - side / 2), 0, max(nx - side, 0)))
    y0 = int(np.clip(round(cy - side / 2), 0, max(ny - side, 0)))
    region = (x0, y0, min(x0 + side, nx), min(y0 + side, ny))
    peaks = find_peaks(mosaic, region, band)
    zp = mosaic.zeropoint(band)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(peaks.flux > 0, -2.5 * np.log10(np.where(peaks.flux > 0, peaks.flux, 1))
                       + zp, np.nan)
    ci = np.asarray(peaks.ci, float)
    px, py = peaks.x + region[0], peaks.y + region[1]
    info = {"region": list(region), "n_found": len(px), "n_used": 0}
    if len(px) > 1:
        xy = np.column_stack([px, py])
        isolated = cKDTree(xy).query(xy, k=2)[0][:, 1] > STELLAR_CI_ISOLATION_PX
    else:
        isolated = np.zeros(len(px), bool)
    ok = isolated & np.isfinite(ci) & np.isfinite(mag)
    if ok.sum() < STELLAR_CI_MIN_SOURCES:
        raise ValueError(f"region {region}: {int(ok.sum())} isolated detections in {band}, too "
                         f"few (< {STELLAR_CI_MIN_SOURCES}) to measure the stellar CI")
    idx = np.flatnonzero(ok)
    brightest = idx[np.argsort(mag[idx], kind="stable")[:STELLAR_CI_N_BRIGHTEST]]
    info["n_used"] = int(len(brightest))
    values = ci[brightest]
    scale = getattr(mosaic, "pixel_scale", None)
    if needs_resampling(scale):
        # The classifier's stamps are resampled to 0.04"/px: measure in those pixels.
        x0, y0, x1, y1 = region
        values = concentration_index(
            mosaic.section(band, x0, y0, x1, y1, dtype=np.float64),
            px[brightest] - x0, py[brightest] - y0, scale=PIXEL_SCALE_ARCSEC / scale)
        if np.isfinite(values).sum() < STELLAR_CI_MIN_SOURCES:
            raise ValueError(f"region {region}: too few isolated detections in {band} with a "
                             "CI at 0.04\"/px to measure the stellar CI")
    return float(np.nanpercentile(values, STELLAR_CI_PERCENTILE)), info


def stellar_ci_or_default(mosaic, centre=None):
    """`measure_stellar_ci`, or `STELLAR_CI_DEFAULT` where the mosaic does not allow it.

    A mosaic without the V band, or with too few isolated stars near the
    sources (a small region, a sparse dwarf), is no user error: the typical
    LEGUS value is taken and the reason returned, for the caller to warn and
    flag.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    centre : (float, float), optional
        As in `measure_stellar_ci`.

    Returns
    -------
    value : float
    source : str
        ``"measured in region (x0, y0, x1, y1) from the N brightest isolated
        detections"`` or ``"default (not measured: <reason>)"``.
    measured : bool
    """
    lo, hi = STELLAR_CI_RANGE
    try:
        value, info = measure_stellar_ci(mosaic, centre)
    except ValueError as exc:
        reason = str(exc)
    else:
        if lo <= value <= hi:
            return value, (f"measured in region {tuple(info['region'])} from the "
                           f"{info['n_used']} brightest isolated detections"), True
        reason = (f"the value measured in region {tuple(info['region'])}, {value:.3f} mag, "
                  f"is outside {lo:g}-{hi:g}")
    return STELLAR_CI_DEFAULT, f"default (not measured: {reason})", False


def checked_stellar_ci(value):
    """A stellar CI given by the user, as a float inside `STELLAR_CI_RANGE`.

    Raises
    ------
    ValueError
        If it is not a number inside the range.
    """
    lo, hi = STELLAR_CI_RANGE
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = np.nan
    if not lo <= v <= hi:
        raise ValueError(f"stellar CI {value!r} mag outside {lo:g}-{hi:g} "
                         "(the V-band CI, 1 px vs 3 px, of a star)")
    return v


def field_ci_cut(mosaic, centre=None, stellar_ci=None):
    """The field's own CI cut: its stellar CI plus `CI_CUT_ABOVE_STELLAR`.

    LEGUS set the CI cut of each field just above its stellar locus, not at
    one value for all (the catalogs' cuts run from 1.2 to 1.4 mag); a fixed
    cut passes many more stars on a field with a broad PSF than on one with
    a sharp PSF.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    centre : (float, float), optional
        As in `measure_stellar_ci`.
    stellar_ci : float, optional
        A stellar CI [mag] given by the user (`checked_stellar_ci`), used
        instead of a measurement.

    Returns
    -------
    cut : float
        The CI cut [mag].
    source : str
        As in `stellar_ci_or_default`; ``"given"`` for a ``stellar_ci`` given.
    measured : bool
        True if measured on the mosaic or given.

    Raises
    ------
    ValueError
        If ``stellar_ci`` is given but outside `STELLAR_CI_RANGE`.
    """
    if stellar_ci is not None:
        return checked_stellar_ci(stellar_ci) + CI_CUT_ABOVE_STELLAR, "given", True
    value, source, measured = stellar_ci_or_default(mosaic, centre)
    return value + CI_CUT_ABOVE_STELLAR, source, measured
