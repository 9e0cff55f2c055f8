"""Classification of glue datasets and its results in the data collection (no Qt).

The glue plugin's Qt layer only gathers choices and runs `run_job` in a
worker thread; everything else is here:

- `region_box` and `catalog_sources`: the sources of a region subset drawn on
  a mosaic, from a catalog linked to it or (`ClassifyJob` without sources)
  detected in the region's bounding box and kept where the region's mask is
  set;
- `run_job`: models, detection, `glue_starclf.core.predict.predict` and aperture
  magnitudes (for the colour-colour and luminosity-function views), with a
  ``callback(done, total)`` that may raise to cancel;
- `merge_results`: the results dataset (``"star clusters"``) of a mosaic,
  created and linked to it by pixel and world coordinates, or updated: rows
  of sources already in it (same position within `MATCH_RADIUS_PX`) are
  replaced, others appended, and component ids are kept, so subsets, links
  and viewers follow;
- `attach_results`: the result columns added to (or updated on) a catalog
  dataset, which is linked to the mosaic;
- `posterior_maps`: the age-A_V posterior of the physical network,
  marginalised over mass (the inspector's maps, as 004 Fig. 21).
"""

import logging
import math
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..io.bands import BANDS
from .data import (COLUMNS_KEY, RESULTS, RESULTS_META_KEY, KIND_KEY, kind_of, result_label,
                   table_to_data)

__all__ = ["RESULTS_LABEL", "MATCH_RADIUS_PX", "GUI_BATCH", "MAG_RADIUS_PX", "MAG_COLUMNS",
           "COLOUR_COLUMNS",
           "MOSAIC_KEY", "MOSAIC_UUID_KEY", "NoSources", "ClassifyJob", "default_distance",
           "region_box", "linked_catalogs", "catalog_sources", "run_job", "aperture_magnitudes",
           "results_for", "merge_results", "attach_results", "link_to_mosaic",
           "made_on", "is_linked", "world_agrees", "posterior_maps", "column", "mosaic_of",
           "models_folder_of", "models_summary", "detection_summary"]

log = logging.getLogger("glue_starclf")

#: Label of the results dataset of the first mosaic.
RESULTS_LABEL = "star clusters"

#: Sources closer than this [px] to a row of the results are the same source.
MATCH_RADIUS_PX = 0.5

#: Sources per batch in the GUI: the cancel callback runs after each batch.
GUI_BATCH = 256

#: Aperture radius [px] of the magnitudes added to the results (LEGUS: 4 px,
#: sky from the 7-8 px annulus).
MAG_RADIUS_PX = 4.0

#: Extra result columns: aperture Vega magnitudes per band.
MAG_COLUMNS = tuple(f"mag_{b}" for b in BANDS)

#: Extra result columns: the colours of the colour-colour diagram (StarcNet
#: Fig. 9), ``{name: (band minuend, band subtrahend)}`` of `MAG_COLUMNS`.
COLOUR_COLUMNS = {"V-I": ("F555W", "F814W"), "U-B": ("F336W", "F438W")}

#: ``Data.meta`` key of a results dataset naming its mosaic dataset (its label).
MOSAIC_KEY = "starclf_mosaic"

#: ``Data.meta`` key of the ``uuid`` of that mosaic dataset: results are
#: matched to their mosaic by it (two mosaics may share a label).
MOSAIC_UUID_KEY = "starclf_mosaic_uuid"

#: Largest offset ["] between a catalog's ra/dec and the mosaic WCS at its
#: pixels for the catalog to be linked by world coordinates too.
_WORLD_LINK_TOL_ARCSEC = 0.2


class NoSources(ValueError):
    """The region (or catalog) holds no source to classify."""


@dataclass
class ClassifyJob:
    """Everything the worker needs, gathered in the GUI thread.

    Attributes
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    distance_mpc : float
    models : str or None
        Folder of the models; None for the bundled ensembles.
    sources : astropy.table.Table or None
        ``id``, ``x``, ``y`` of the sources; None to detect them in ``box``
        where ``mask`` is set.
    box : (int, int, int, int) or None
        0-based half-open ``(x0, y0, x1, y1)`` of the region.
    mask : ndarray of bool or None
        The region inside ``box``, shape ``(y1 - y0, x1 - x0)``.
    batch : int
        Sources per batch (the cancel latency).
    class_balanced : bool
        Class probabilities without the models' class prior
        (`glue_starclf.core.class_prior`), as if the classes were equally common.
    stellar_ci : float or None
        The field's stellar CI [mag] (V band, 1 px vs 3 px, of a star) for
        classifier members that take it and detection's CI cut; None to
        measure it on the mosaic (`glue_starclf.core.predict.field_stellar_ci`).
    ci_min : float or None
        A fixed CI cut for detection; None for the field's own (its stellar
        CI + 0.05, `glue_starclf.core.detection.detect_sources`).
    """

    mosaic: object
    distance_mpc: float
    models: Optional[str] = None
    sources: object = None
    box: Optional[tuple] = None
    mask: Optional[np.ndarray] = None
    batch: int = GUI_BATCH
    class_balanced: bool = False
    stellar_ci: Optional[float] = None
    ci_min: Optional[float] = None


def default_distance(mosaic_data):
    """A galaxy distance [Mpc] for a mosaic dataset, and where it came from.

    The ``DISTMPC`` header keyword (mock mosaics), else the LEGUS field named
    in the file names (StarcNet Table 6), else None.

    Returns
    -------
    (float or None, str)
    """
    from ..io.catalogs import LEGUS_FIELDS
    from .data import mosaic_from_data
    try:
        mosaic = mosaic_from_data(mosaic_data)
    except ValueError:
        return None, "not a mosaic"
    for band, header in mosaic.headers.items():
        if "DISTMPC" in header:
            return float(header["DISTMPC"]), f"header DISTMPC of the {band} file"
    for path in mosaic.paths.values():
        for name in re.findall(r"(ngc\d+|ic\d+|ugca?\d+|ugc\d+)", path.name.lower()):
            if name in LEGUS_FIELDS:
                return LEGUS_FIELDS[name], f"LEGUS field {name} (StarcNet Table 6)"
    return None, "unknown: give the distance"


def _roi_bounds(roi):
    """``(xmin, xmax, ymin, ymax)`` of a glue ROI, or None when unknown."""
    from glue.core.roi import CircularROI, EllipticalROI, RectangularROI, VertexROIBase
    if isinstance(roi, RectangularROI):
        return roi.xmin, roi.xmax, roi.ymin, roi.ymax
    if isinstance(roi, CircularROI):
        return roi.xc - roi.radius, roi.xc + roi.radius, roi.yc - roi.radius, roi.yc + roi.radius
    if isinstance(roi, EllipticalROI):
        (x0, x1), (y0, y1) = roi.bounds()
        return x0, x1, y0, y1
    if isinstance(roi, VertexROIBase) and len(roi.vx):
        return min(roi.vx), max(roi.vx), min(roi.vy), max(roi.vy)
    return None


def region_box(subset_state, mosaic_data):
    """Pixel box and mask of a region subset on a mosaic dataset.

    Parameters
    ----------
    subset_state : glue.core.subset.SubsetState
    mosaic_data : glue.core.data.Data

    Returns
    -------
    box : (int, int, int, int)
        ``(x0, y0, x1, y1)``, 0-based, half-open: the region's bounding box
        for pixel ROIs, else the whole image.
    mask : ndarray of bool
        The region inside the box.

    Raises
    ------
    NoSources
        If the region covers no pixel of the mosaic.
    glue.core.exceptions.IncompatibleAttribute
        If the subset cannot be evaluated on the mosaic.
    """
    from glue.core.subset import RoiSubsetState
    ny, nx = mosaic_data.shape
    box = (0, 0, nx, ny)
    pix = mosaic_data.pixel_component_ids
    if isinstance(subset_state, RoiSubsetState) and \
            {subset_state.xatt, subset_state.yatt} == {pix[0], pix[1]}:
        bounds = _roi_bounds(subset_state.roi)
        if bounds is not None and all(np.isfinite(bounds)):
            xmin, xmax, ymin, ymax = bounds
            if subset_state.xatt is pix[0]:  # x axis of the viewer is the image's y
                xmin, xmax, ymin, ymax = ymin, ymax, xmin, xmax
            box = (max(int(math.floor(xmin)), 0), max(int(math.floor(ymin)), 0),
                   min(int(math.ceil(xmax)) + 1, nx), min(int(math.ceil(ymax)) + 1, ny))
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise NoSources("the region lies outside the mosaic")
    mask = np.asarray(subset_state.to_mask(mosaic_data, view=(slice(y0, y1), slice(x0, x1))),
                      bool)
    if not mask.any():
        raise NoSources("the region covers no pixel of the mosaic")
    return box, mask


def is_linked(data, mosaic_data):
    """True if the mosaic's pixel coordinates can be computed on ``data`` (a glue link)."""
    from glue.core.exceptions import IncompatibleAttribute
    try:
        data[mosaic_data.pixel_component_ids[1], slice(0, 1)]
        data[mosaic_data.pixel_component_ids[0], slice(0, 1)]
    except IncompatibleAttribute:
        return False
    return True


def linked_catalogs(data_collection, mosaic_data):
    """Tabular datasets with ``x``/``y`` linked to a mosaic (results datasets excluded)."""
    out = []
    for d in data_collection:
        if d is mosaic_data or d.ndim != 1 or kind_of(d) == RESULTS or d.size == 0:
            continue
        labels = {c.label for c in d.main_components}
        if {"x", "y"} <= labels and is_linked(d, mosaic_data):
            out.append(d)
    return out


def catalog_sources(catalog_data, mask=None):
    """``id``, ``x``, ``y`` of a catalog dataset's rows (those of ``mask``) as a table.

    Parameters
    ----------
    catalog_data : glue.core.data.Data
        A tabular dataset with ``x`` and ``y`` (0-based mosaic pixels).
    mask : array_like of bool, optional
        The rows to take (a subset's mask); default all.

    Returns
    -------
    astropy.table.Table
        ``id`` (the catalog's, else 1, 2, ...), ``x``, ``y`` (float).

    Raises
    ------
    ValueError
        If the dataset has no ``x``/``y`` components.
    """
    from astropy.table import Table
    labels = {c.label: c for c in catalog_data.main_components}
    if "x" not in labels or "y" not in labels:
        raise ValueError(f"catalog {catalog_data.label!r} has no x/y columns "
                         f"(0-based pixel positions) to classify")
    n = catalog_data.shape[0]
    sel = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
    ids = np.asarray(catalog_data[labels["id"]]) if "id" in labels else np.arange(1, n + 1)
    return Table({"id": ids[sel], "x": np.asarray(catalog_data[labels["x"]], float)[sel],
                  "y": np.asarray(catalog_data[labels["y"]], float)[sel]})


def _detect(job):
    from ..core.detection import detect_sources
    x0, y0, x1, y1 = job.box
    found = detect_sources(job.mosaic, region=job.box, distance_mpc=job.distance_mpc,
                           stellar_ci=job.stellar_ci,
                           ci_min="field" if job.ci_min is None else job.ci_min)
    if len(found):
        ix = np.clip(np.floor(np.asarray(found["x"]) + 0.5).astype(int) - x0, 0, x1 - x0 - 1)
        iy = np.clip(np.floor(np.asarray(found["y"]) + 0.5).astype(int) - y0, 0, y1 - y0 - 1)
        found = found[job.mask[iy, ix]]
    log.info("detected %d candidates in the region", len(found))
    out = found["id", "x", "y"]
    out.meta = dict(found.meta)
    return out


def run_job(job, callback=None):
    """Classify the sources of a job (runs in the GUI's worker thread).

    Parameters
    ----------
    job : ClassifyJob
    callback : callable, optional
        ``callback(done, total)``, see `glue_starclf.core.predict.predict`; an
        exception it raises stops the work and propagates.

    Returns
    -------
    astropy.table.Table
        Every results-schema column plus `MAG_COLUMNS`; ``meta["detected"]``
        is True when the sources were detected.

    Raises
    ------
    NoSources
        If there is nothing to classify.
    FileNotFoundError, ValueError
        If the models cannot be loaded (no models, corrupt weights).
    """
    from ..core.detection import detected_stellar_ci, detection_provenance
    from ..core.predict import load_ensemble, predict
    sources = job.sources if job.sources is not None else _detect(job)
    if len(sources) == 0:
        raise NoSources("no sources in the region" if job.sources is not None else
                        "no candidate sources were detected in the region")
    if callback is not None:
        callback(0, len(sources))
    classifier = load_ensemble("classifier", job.models, class_prior=not job.class_balanced)
    physical = load_ensemble("physical", job.models)
    # Without ra/dec in the input, predict computes them from the mosaic WCS; detected
    # candidates are classified with the stellar CI their cut was set by.
    stellar_ci, source = detected_stellar_ci(sources, given=job.stellar_ci)
    table = predict(job.mosaic, sources["id", "x", "y"], job.distance_mpc,
                    classifier=classifier, physical=physical, batch=job.batch,
                    callback=callback, stellar_ci=stellar_ci, stellar_ci_source=source)
    mags = aperture_magnitudes(job.mosaic, table["x"], table["y"])
    for name in MAG_COLUMNS:
        table[name] = mags[name]
        table[name].unit = "mag"
    for name, (a, b) in COLOUR_COLUMNS.items():  # columns now: no derived component later
        table[name] = mags[f"mag_{a}"] - mags[f"mag_{b}"]
        table[name].unit = "mag"
    table.meta["detected"] = job.sources is None
    if job.sources is None:
        table.meta.update(detection_provenance(sources))
    table.meta["models_folder"] = job.models or "bundled"
    for name, ens in (("classifier", classifier), ("physical", physical)):
        cards = [card for _, card in ens.members]
        table.meta[f"{name}_architecture"] = cards[0].get("architecture", "?")
        dates = [str((card.get("training") or {}).get("date", "")) for card in cards]
        table.meta[f"{name}_card_date"] = max(dates) if any(dates) else "?"
    return table


def detection_summary(provenance):
    """The CI cut candidates were detected with, in one line ("" when not detected).

    Parameters
    ----------
    provenance : dict
        The results' ``meta`` of `run_job`.

    Returns
    -------
    str
        E.g. ``"candidates detected with CI >= 1.362 mag (the field's stellar CI
        1.312 mag, measured in region ..., + 0.05)"``.
    """
    cut = provenance.get("detection_ci_min")
    if not provenance.get("detected") or cut is None:
        return ""
    text = f"candidates detected with CI >= {float(cut):.3f} mag"
    source = provenance.get("detection_stellar_ci_source")
    if source:
        text += (f" (the field's stellar CI {float(provenance['detection_stellar_ci']):.3f} "
                 f"mag, {source}, + {float(cut) - float(provenance['detection_stellar_ci']):.2f})")
    else:
        text += " (a fixed cut)"
    return text


def models_summary(provenance):
    """Which models made a classification, in one line (family, members, card date), and
    the stellar CI given to members that take it.

    Parameters
    ----------
    provenance : dict
        The results' ``meta`` of `run_job` (`RESULTS_META_KEY` of a dataset).

    Returns
    -------
    str
        E.g. ``"bundled models: classifier StarClassifier × 5 (classifier-s0 …
        classifier-s4, cards of 2026-11-22); physical …"``; "" when unknown.
    """
    parts = []
    for name in ("classifier", "physical"):
        members = list(provenance.get(f"{name}_models") or [])
        if not members:
            continue
        names = members[0] if len(members) == 1 else f"{members[0]} … {members[-1]}"
        part = (f"{name} {provenance.get(f'{name}_architecture', '?')} × {len(members)} "
                f"({names}, cards of {provenance.get(f'{name}_card_date', '?')})")
        if name == "classifier" and "class_prior" in provenance:
            part += (" with its LEGUS class prior" if provenance["class_prior"]
                     else ", class-balanced")
        parts.append(part)
    if not parts:
        return ""
    from pathlib import Path

    from ..core.checkpoints import bundled_models_dir
    folder = provenance.get("models_folder") or "bundled"
    bundled = folder == "bundled" or Path(folder).resolve() == bundled_models_dir().resolve()
    where = "bundled models" if bundled else f"models of {folder}"
    text = f"{where}: " + "; ".join(parts)
    source = provenance.get("stellar_ci_source")
    if source:
        text += f"; stellar CI {provenance['stellar_ci']:.3f} mag, {source}"
        if source.startswith("default"):
            text += " (every result flagged stellar_ci; enter the field's value in the dialog)"
    return text


def _aperture_mask(size, radius):
    from photutils.aperture import CircularAperture
    c = (size - 1) / 2.0
    ap = CircularAperture((c, c), r=radius).to_mask(method="exact").to_image((size, size))
    yy, xx = np.indices((size, size))
    r = np.hypot(xx - c, yy - c)
    from ..core.photometry import SKY_ANNULUS
    return ap, (r >= SKY_ANNULUS[0]) & (r <= SKY_ANNULUS[1])


def aperture_magnitudes(mosaic, x, y, radius=MAG_RADIUS_PX, batch=2048):
    """Vega magnitudes in a circular aperture, local sky subtracted, all bands.

    The aperture sits on the pixel nearest each source (as the stamps of
    `glue_starclf.core.cutouts.extract_stamps`); the sky is the median of the
    7-8 px annulus. Zeropoints are `glue_starclf.io.mosaic.Mosaic.zeropoint`.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    x, y : array_like
        0-based pixel positions of the sources.
    radius : float
        Aperture radius [px].
    batch : int
        Sources whose stamps are cut at once (bounds memory).

    Returns
    -------
    dict
        ``{"mag_<band>": ndarray}``; NaN for missing bands, non-positive
        fluxes and sources off the image.
    """
    from ..core.cutouts import extract_stamps
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    size = 17
    ap, annulus = _aperture_mask(size, radius)
    out = {f"mag_{b}": np.full(len(x), np.nan) for b in BANDS}
    zps = {b: mosaic.zeropoint(b)[0] for b in mosaic.bands}
    for start in range(0, len(x), batch):
        sl = slice(start, start + batch)
        stamps = extract_stamps(mosaic, x[sl], y[sl], size=size, mosaic_flags=False).stamps
        ring = stamps[..., annulus]
        empty = np.isnan(ring).all(axis=-1)  # off the image: no sky (and no warning)
        sky = np.nanmedian(np.where(empty[..., None], 0.0, ring), axis=-1)
        with np.errstate(invalid="ignore"):
            flux = np.einsum("nbij,ij->nb", stamps, ap) - np.where(empty, np.nan, sky) * ap.sum()
        for j, band in enumerate(BANDS):
            if band in zps:
                f = flux[:, j]
                good = np.isfinite(f) & (f > 0)
                out[f"mag_{band}"][sl] = np.where(
                    good, zps[band] - 2.5 * np.log10(np.where(good, f, 1.0)), np.nan)
    return out


# -- results in the data collection ----------------------------------------------------

def _world_ids(mosaic_data):
    """``(ra_cid, dec_cid)`` of a mosaic dataset with a celestial WCS, else None."""
    from astropy.wcs import WCS
    coords = mosaic_data.coords
    if not isinstance(coords, WCS) or not coords.has_celestial or \
            len(mosaic_data.world_component_ids) != 2:
        return None
    lng = coords.wcs.lng  # FITS axis order; glue's are in numpy order
    world = mosaic_data.world_component_ids
    return world[1 - lng], world[lng]


def link_to_mosaic(data_collection, data, mosaic_data, world=True):
    """Link a tabular dataset's ``x``/``y`` (and ``ra``/``dec``) to a mosaic's coordinates.

    Parameters
    ----------
    data_collection : glue.core.data_collection.DataCollection
    data : glue.core.data.Data
        With ``x``, ``y`` (0-based pixels) and optionally ``ra``, ``dec``.
    mosaic_data : glue.core.data.Data
    world : bool
        Also link ``ra``/``dec`` to the mosaic's world coordinates (when it
        has a celestial WCS).

    Returns
    -------
    list of str
        What was linked, e.g. ``["pixel", "world"]`` (empty when it already was).
    """
    from glue.core.link_helpers import LinkSame
    labels = {c.label: c for c in data.main_components}
    done = []
    if not is_linked(data, mosaic_data):
        pix = mosaic_data.pixel_component_ids
        data_collection.add_link([LinkSame(labels["x"], pix[1]), LinkSame(labels["y"], pix[0])])
        done.append("pixel")
        ids = _world_ids(mosaic_data)
        if world and ids is not None and "ra" in labels and "dec" in labels:
            data_collection.add_link([LinkSame(labels["ra"], ids[0]),
                                      LinkSame(labels["dec"], ids[1])])
            done.append("world")
    return done


def world_agrees(data, mosaic_data):
    """True if a catalog's ra/dec agree with the mosaic WCS at its pixels."""
    labels = {c.label: c for c in data.main_components}
    if _world_ids(mosaic_data) is None or not {"x", "y", "ra", "dec"} <= set(labels):
        return False
    x = np.asarray(data[labels["x"]], float)
    y = np.asarray(data[labels["y"]], float)
    ra, dec = mosaic_data.coords.celestial.all_pix2world(x, y, 0)
    cra = np.asarray(data[labels["ra"]], float)
    cdec = np.asarray(data[labels["dec"]], float)
    ok = np.isfinite(cra) & np.isfinite(cdec) & np.isfinite(ra)
    if not ok.any():
        return False
    d = np.hypot((ra[ok] - cra[ok]) * np.cos(np.radians(dec[ok])), dec[ok] - cdec[ok]) * 3600
    return bool(np.max(d) <= _WORLD_LINK_TOL_ARCSEC)


def made_on(data, mosaic_data):
    """True if a results dataset (or catalog with results) was classified on ``mosaic_data``.

    Matched by the mosaic dataset's identity (its ``uuid``, kept in saved
    sessions); results of older sessions, which name only the label, by label.
    """
    uuid = data.meta.get(MOSAIC_UUID_KEY)
    if uuid:
        return uuid == getattr(mosaic_data, "uuid", None)
    return data.meta.get(MOSAIC_KEY) == mosaic_data.label


def results_for(data_collection, mosaic_data):
    """The results dataset of a mosaic in the collection, or None."""
    for d in data_collection:
        if kind_of(d) == RESULTS and made_on(d, mosaic_data):
            return d
    return None


def merge_results(data_collection, mosaic_data, table):
    """Add a job's results to the results dataset of a mosaic (made and linked if new).

    Parameters
    ----------
    data_collection : glue.core.data_collection.DataCollection
    mosaic_data : glue.core.data.Data
    table : astropy.table.Table
        Output of `run_job`.

    Returns
    -------
    data : glue.core.data.Data
        The results dataset.
    n_new, n_updated : int
        Rows appended and rows replaced (same source as before).
    """
    from astropy.table import Table
    from scipy.spatial import cKDTree
    data = results_for(data_collection, mosaic_data)
    if data is None:
        taken = {d.label for d in data_collection}
        label = RESULTS_LABEL if RESULTS_LABEL not in taken else \
            f"{RESULTS_LABEL} ({mosaic_data.label})"
        data = table_to_data(table, label)
        _stamp_meta(data, mosaic_data, table)
        data_collection.append(data)
        link_to_mosaic(data_collection, data, mosaic_data, world=True)
        return data, len(table), 0
    n_old = data.shape[0]
    ox = np.asarray(data["x"], float)
    oy = np.asarray(data["y"], float)
    nx_, ny_ = np.asarray(table["x"], float), np.asarray(table["y"], float)
    dist, idx = cKDTree(np.column_stack([ox, oy])).query(np.column_stack([nx_, ny_]),
                                                         distance_upper_bound=MATCH_RADIUS_PX)
    matched = np.isfinite(dist)
    new_rows = np.flatnonzero(~matched)
    n_total = n_old + len(new_rows)
    rows_to = np.where(matched, idx, 0)
    rows_to[new_rows] = n_old + np.arange(len(new_rows))
    if table.meta.get("detected"):
        # Detected sources are numbered per run: continue the dataset's numbering.
        old_ids = np.asarray(data["id"])
        start = int(np.max(old_ids)) + 1 if len(old_ids) else 1
        ids = np.asarray(table["id"]).copy()
        ids[matched] = old_ids[idx[matched]]
        ids[new_rows] = start + np.arange(len(new_rows))
        table = table.copy(copy_data=False)
        table["id"] = ids
    merged = Table()
    # Derived components (e.g. colours the user or the diagnostics layout
    # defined) are given their values too, so that glue keeps them as they are.
    for comp in data.main_components + data.derived_components:
        old = np.asarray(data[comp])
        if comp.label in table.colnames:
            new = np.asarray(table[comp.label])
            kind = "U" if old.dtype.kind in "US" or new.dtype.kind in "US" else None
            dtype = np.result_type(old.dtype, new.dtype) if kind is None else \
                np.dtype(f"U{max(old.dtype.itemsize, new.dtype.itemsize) // 4 or 1}")
            col = np.empty(n_total, dtype)
            col[:n_old] = old
            col[rows_to] = new
        else:  # a column the user added: kept, NaN (or empty) for the new rows
            col = np.empty(n_total, old.dtype if old.dtype.kind in "fUS" else float)
            col[:n_old] = old
            col[n_old:] = "" if col.dtype.kind in "US" else np.nan
        merged[comp.label] = col
    for name in table.colnames:
        if name not in merged.colnames:
            col = np.full(n_total, np.nan) if table[name].dtype.kind != "U" else \
                np.full(n_total, "", dtype=table[name].dtype)
            col[rows_to] = np.asarray(table[name])
            merged[name] = col
    for name in table.colnames:
        if table[name].unit is not None:
            merged[name].unit = table[name].unit
    new_data = table_to_data(merged, data.label)
    data.update_values_from_data(new_data)
    _stamp_meta(data, mosaic_data, table)
    return data, len(new_rows), int(matched.sum())


def _stamp_meta(data, mosaic_data, table):
    data.meta[KIND_KEY] = RESULTS
    data.meta[MOSAIC_KEY] = mosaic_data.label
    data.meta[MOSAIC_UUID_KEY] = mosaic_data.uuid
    data.meta[RESULTS_META_KEY] = dict(table.meta)
    data.meta[COLUMNS_KEY] = {c: c for c in table.colnames}


def attach_results(data_collection, catalog_data, mosaic_data, table):
    """Put a job's result columns on the catalog dataset they were computed for.

    Columns are added the first time and updated in place (same component
    ids) on re-runs. A column whose name the catalog already uses for its
    own data (e.g. LEGUS's visual ``class``) is added as ``<name>_starclf``;
    ``id``, ``x``, ``y`` and the catalog's own ``ra``/``dec`` are not
    duplicated. The catalog is linked to the mosaic by pixel coordinates,
    and by world coordinates when its ra/dec agree with the mosaic's WCS.

    Parameters
    ----------
    data_collection : glue.core.data_collection.DataCollection
    catalog_data : glue.core.data.Data
    mosaic_data : glue.core.data.Data
    table : astropy.table.Table
        Output of `run_job` on every row of the catalog, in order.

    Returns
    -------
    added, updated : list of str
        Component labels added and updated.
    linked : list of str
        What was linked (see `link_to_mosaic`).
    """
    from glue.core.component import CategoricalComponent
    if len(table) != catalog_data.shape[0]:
        raise ValueError(f"{len(table)} results for the {catalog_data.shape[0]} rows of "
                         f"{catalog_data.label!r}")
    mapping = dict(catalog_data.meta.get(COLUMNS_KEY) or {})
    by_label = {c.label: c for c in catalog_data.main_components}
    own = set(by_label) - set(mapping.values())
    added, updated, changes = [], [], {}
    for name in table.colnames:
        if name in ("id", "x", "y") or (name in ("ra", "dec") and name in own):
            continue
        label = mapping.get(name) or (name if name not in own else f"{name}_starclf")
        values = np.asarray(table[name])
        if values.dtype.kind in "SUO":
            values = values.astype(str)
        if label in by_label:
            comp = catalog_data.get_component(by_label[label])
            if isinstance(comp, CategoricalComponent):
                # update_components cannot change categories: swap the values in.
                comp._data = CategoricalComponent(values)._data
            else:
                changes[by_label[label]] = values
            updated.append(label)
        else:
            cid = catalog_data.add_component(values, label)
            if table[name].unit is not None:
                catalog_data.get_component(cid).units = str(table[name].unit)
            added.append(label)
        mapping[name] = label
    catalog_data.meta[COLUMNS_KEY] = mapping
    catalog_data.meta[RESULTS_META_KEY] = dict(table.meta)
    catalog_data.meta[MOSAIC_KEY] = mosaic_data.label
    catalog_data.meta[MOSAIC_UUID_KEY] = mosaic_data.uuid
    if changes:
        catalog_data.update_components(changes)
    linked = link_to_mosaic(data_collection, catalog_data, mosaic_data,
                            world=world_agrees(catalog_data, mosaic_data))
    return added, updated, linked


def posterior_maps(mosaic, x, y, distance_mpc, physical, stellar_ci=None):
    """Age-A_V posteriors of sources, marginalised over mass (004 Fig. 21).

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    x, y : array_like
        0-based positions.
    distance_mpc : float
    physical : glue_starclf.core.predict.Ensemble
        The physical-parameter ensemble.
    stellar_ci : float, optional
        The field's stellar CI, for members that take it (the classification's,
        from its provenance); default measured on the mosaic
        (`glue_starclf.core.predict.field_stellar_ci`).

    Returns
    -------
    ndarray, shape (n, len(LOG_AGE_BINS), len(AV_BINS))
        Ensemble-mean probability per (log age, A_V) bin; NaN rows for
        sources off the image.
    """
    from ..core.cutouts import extract_stamps
    from ..core.networks import GRID_SHAPE
    from ..core.predict import _centre_crop, _physical, field_stellar_ci
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    out = np.full((len(x),) + GRID_SHAPE[:2], np.nan)
    if len(x) == 0:
        return out
    cut = extract_stamps(mosaic, x, y, size=physical.stamp_size)
    ok = ~np.all(np.isnan(cut.stamps), axis=(1, 2, 3))
    if ok.any():
        mask = np.tile(mosaic.band_mask.astype(np.float32), (int(ok.sum()), 1))
        ci, _ = field_stellar_ci(physical, mosaic, x, y, stellar_ci, "given")
        post = _physical(physical, _centre_crop(cut.stamps[ok], physical.stamp_size), mask,
                         float(distance_mpc), stellar_ci=ci)
        out[ok] = post["grid"].reshape((-1,) + GRID_SHAPE).sum(axis=3)
    return out


def column(data, name):
    """Values of a result column of a dataset (see `glue_starclf.glue.data.result_label`)."""
    label = result_label(data, name)
    return None if label is None else np.asarray(data[label])


def mosaic_of(data_collection, data):
    """The mosaic dataset a results dataset (or catalog with results) was classified on.

    The one its ``meta`` names (`made_on`), else the first mosaic of the
    collection, else None.
    """
    from .data import MOSAIC
    named = [d for d in data_collection if d.ndim == 2 and made_on(data, d)]
    mosaics = named or [d for d in data_collection if kind_of(d) == MOSAIC]
    return mosaics[0] if mosaics else None


def models_folder_of(data):
    """Models folder of a dataset's last classification (None: bundled or unknown)."""
    folder = (data.meta.get(RESULTS_META_KEY) or {}).get("models_folder")
    return None if folder in (None, "", "bundled") else folder
