"""glue datasets of mosaics, catalogs and results, and their exporters (no Qt, no torch).

A mosaic becomes one glue `~glue.core.data.Data` with one component per band,
named by band (``F275W`` ... ``F814W``; missing bands are simply absent), on
the mosaic's pixel grid with its WCS as coordinates. The band arrays are the
memory maps of `glue_starclf.io.mosaic.open_mosaic`: nothing is read until a
viewer shows it. The dataset is made through glue's `load_data` with
`mosaic_factory`, so a saved session stores the file names, not the pixels.

A catalog (LEGUS ``.tab``, PHANGS-HST FITS, ECSV/CSV/FITS) becomes a tabular
dataset with the columns of `glue_starclf.io.catalogs.read_catalog`: ``id``,
0-based ``x``/``y`` (the glue/numpy convention, whatever the file's), ``ra``,
``dec``, then the file's own columns.

`setup` registers the data factories and the exporters (results to ECSV or
FITS, DS9 regions) with ``glue.config``; `glue_starclf.setup` calls it
lazily through glue's plugin registries.
"""

import logging
import re
import warnings
from pathlib import Path

import numpy as np

__all__ = ["KIND_KEY", "MOSAIC", "CATALOG", "RESULTS", "COLUMNS_KEY", "RESULTS_META_KEY",
           "setup", "band_siblings", "detect_band", "unique_label", "mosaic_label",
           "RELOCATORS", "MOVED", "MISSING", "mosaic_layout", "mosaic_factory",
           "missing_files", "load_mosaic", "mosaic_data", "mosaic_from_data", "is_legus_catalog",
           "is_phangs_catalog",
           "is_star_cluster_catalog", "catalog_factory", "load_catalog", "table_to_data",
           "kind_of", "result_label", "results_table",
           "export_results", "export_regions",
           "REGION_RADIUS_PX", "export_regions_fk5"]

#: ``Data.meta`` key naming what a dataset is: `MOSAIC`, `CATALOG` or `RESULTS`.
KIND_KEY = "starclf"
MOSAIC = "mosaic"
CATALOG = "catalog"
RESULTS = "results"

#: ``Data.meta`` key of ``{schema column: component label}`` for the result
#: columns a dataset holds (a catalog's own column of the same name keeps its
#: name, and ours gets the ``_starclf`` suffix).
COLUMNS_KEY = "starclf_columns"

#: ``Data.meta`` key of the provenance of the last classification (models,
#: hashes, distance, bands: the metadata of `glue_starclf.core.predict.predict`).
RESULTS_META_KEY = "starclf_provenance"

#: Callables ``ask(label, missing_paths) -> folder or None`` that find the band
#: files of a restored session's mosaic again (the Qt plugin adds a folder dialog).
RELOCATORS = []

#: Band files found elsewhere when a session was restored: ``{old path: new path}``.
MOVED = {}

#: Band files not found when a session was restored (their mosaics have no pixels).
MISSING = set()

log = logging.getLogger("glue_starclf")

_BAND_TOKEN = re.compile(r"(?<![a-z0-9])(f\d{3}w)(?![a-z0-9])", re.I)
_registered = False


def band_siblings(path):
    """The band files of a mosaic, found from one of them by its file name.

    LEGUS and PHANGS-HST name the files of a field alike except for the
    filter (``..._f555w_...drc.fits``); the siblings are the existing files
    whose name differs only in the filter token.

    Parameters
    ----------
    path : path-like
        One band file.

    Returns
    -------
    list of str
        ``"BAND=path"`` items for `glue_starclf.io.mosaic.open_mosaic`, or the
        path alone when its name holds no filter token.
    """
    from ..io.bands import ALIASES, BANDS, canonical_band
    path = Path(path)
    m = list(_BAND_TOKEN.finditer(path.name))
    if len(m) != 1:
        return [str(path)]
    token = m[0]
    found = {}
    for name in BANDS + tuple(ALIASES):
        written = name.lower() if token.group(1).islower() else name
        cand = path.with_name(path.name[:token.start()] + written + path.name[token.end():])
        band = canonical_band(name)
        if cand.is_file() and band not in found:
            found[band] = cand
    return [f"{b}={found[b]}" for b in BANDS if b in found]


def detect_band(path):
    """The model band of an image file: its FILTER keywords, else its name; or None.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    str or None
    """
    from astropy.io import fits

    from ..io.bands import canonical_band
    from ..io.mosaic import band_from_header
    try:
        with fits.open(path) as hdul:
            found = band_from_header([h.header for h in hdul[:2]], path)
    except (OSError, ValueError, TypeError):
        found = None
    if found:
        return found[0]
    tokens = {m.group(1) for m in _BAND_TOKEN.finditer(Path(path).name)}
    for token in tokens:
        try:
            return canonical_band(token)
        except ValueError:
            continue
    return None


def unique_label(data_collection, label):
    """``label``, or ``"label (2)"``, ``"label (3)"``... when a dataset has it already."""
    taken = {d.label for d in data_collection}
    n, out = 1, label
    while out in taken:
        n += 1
        out = f"{label} ({n})"
    return out


def mosaic_label(paths):
    """Dataset label of a mosaic: the first file's stem without its filter token."""
    stem = Path(str(paths[0]).split("=", 1)[-1]).name
    stem = re.sub(r"\.fits(\.gz)?$", "", stem, flags=re.I)
    return re.sub(r"[_-]+", "_", _BAND_TOKEN.sub("", stem)).strip("_") or "mosaic"


def mosaic_data(mosaic, label="mosaic", images=()):
    """A glue dataset of a `~glue_starclf.io.mosaic.Mosaic`: one component per present band.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    label : str
    images : sequence of str
        The ``BAND=path`` items it was opened from (kept in ``meta``).

    Returns
    -------
    glue.core.data.Data
        Coordinates are the mosaic's celestial WCS (pixel-only without one).
    """
    from glue.core import Data
    data = Data(label=label, coords=mosaic.wcs)
    for band in mosaic.bands:
        data.add_component(mosaic[band], band)
    data.meta[KIND_KEY] = MOSAIC
    data.meta["starclf_images"] = [str(i) for i in images] or \
        [f"{b}={p}" for b, p in mosaic.paths.items()]
    data.meta["starclf_missing_bands"] = list(mosaic.missing_bands)
    data.meta["starclf_has_wcs"] = mosaic.wcs is not None
    return data


def mosaic_layout(mosaic):
    """What a saved session keeps of a mosaic besides its file names (see `mosaic_factory`).

    Returns
    -------
    dict
        ``shape``, ``bands`` and the celestial ``wcs`` header ("" without one).
    """
    return {"shape": [int(n) for n in mosaic.shape], "bands": list(mosaic.bands),
            "wcs": mosaic.wcs.to_header_string() if mosaic.wcs is not None else ""}


def _relocate(items, label):
    """``BAND=path`` items found again through `RELOCATORS`, or None."""
    from ..io.mosaic import parse_image_arg
    missing = [parse_image_arg(i)[1] for i in items if not parse_image_arg(i)[1].is_file()]
    for ask in RELOCATORS:
        folder = ask(label, missing)
        if not folder:
            continue
        moved = []
        for item in items:
            band, old = parse_image_arg(item)
            new = Path(folder) / old.name
            moved.append(f"{band}={new}" if band else str(new))
        if all(parse_image_arg(i)[1].is_file() for i in moved):
            return moved
    return None


def _pixelless(items, layout, label):
    """A mosaic dataset without pixels (NaN) on the saved grid (a session whose files moved)."""
    from astropy.wcs import WCS
    from glue.core import Data
    shape = tuple(layout["shape"])
    wcs = WCS(layout["wcs"]) if layout.get("wcs") else None
    data = Data(label=label, coords=wcs)
    nan = np.broadcast_to(np.float32(np.nan), shape)  # no memory per band
    for band in layout["bands"]:
        data.add_component(nan, band)
    data.meta[KIND_KEY] = MOSAIC
    data.meta["starclf_images"] = list(items)
    return data


def mosaic_factory(path, images=None, layout=None):
    """glue data factory: a mosaic from its band files.

    Parameters
    ----------
    path : str
        One band file (glue's file dialog gives one); with ``images`` None
        its siblings (`band_siblings`) make the mosaic.
    images : sequence of str, optional
        ``"BAND=path"`` items (or plain paths) of every band.
    layout : dict, optional
        `mosaic_layout`, given by `load_mosaic` and so kept in saved
        sessions. When band files are gone at restore time, the callables of
        `RELOCATORS` are asked for their new folder (`MOVED` maps old paths
        to new); without one, the dataset is restored without pixels (NaN)
        on its grid, so that catalogs, results, labels and links come back,
        and its files are listed in `MISSING`.

    Returns
    -------
    glue.core.data.Data
    """
    from ..io.mosaic import open_mosaic, parse_image_arg
    items = [str(i) for i in images] if images else band_siblings(path)
    if layout is not None and not all(parse_image_arg(i)[1].is_file() for i in items):
        label = mosaic_label(items)
        moved = _relocate(items, label)
        if moved is None:
            gone = [str(parse_image_arg(i)[1]) for i in items]
            MISSING.update(gone)
            log.warning("the band files of mosaic %s were not found (%s): restored without "
                        "pixels", label, ", ".join(gone))
            return _pixelless(items, layout, label)
        MOVED.update({str(parse_image_arg(a)[1]): str(parse_image_arg(b)[1])
                      for a, b in zip(items, moved)})
        items = moved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no WCS: stated in meta instead
        mosaic = open_mosaic(items)
    return mosaic_data(mosaic, label=mosaic_label(items), images=items)


def missing_files(data):
    """Band files of a mosaic dataset that were not found when its session was restored."""
    from ..io.mosaic import parse_image_arg
    items = data.meta.get("starclf_images") or []
    return [str(parse_image_arg(i)[1]) for i in items
            if str(parse_image_arg(i)[1]) in MISSING and not parse_image_arg(i)[1].is_file()]


def load_mosaic(images, label=None):
    """Open a mosaic as a glue dataset through glue's `load_data` (session-restorable).

    Parameters
    ----------
    images : sequence of str
        ``"BAND=path"`` items or plain paths.
    label : str, optional
        Default `mosaic_label`.

    Returns
    -------
    glue.core.data.Data

    Raises
    ------
    FileNotFoundError, ValueError
        As `glue_starclf.io.mosaic.open_mosaic` (the message names file and band).
    """
    from glue.core.data_factories import load_data

    from ..io.mosaic import open_mosaic, parse_image_arg
    items = [str(i) for i in images]
    if not items:
        raise ValueError("no image given: choose at least one band file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        layout = mosaic_layout(open_mosaic(items))  # bad files are refused here
    data = load_data(str(parse_image_arg(items[0])[1]), factory=mosaic_factory, images=items,
                     layout=layout)
    if label:
        data.label = label
    return data


def _moved(item):
    from ..io.mosaic import parse_image_arg
    band, path = parse_image_arg(item)
    new = MOVED.get(str(path), str(path))
    return f"{band}={new}" if band else new


def _wcs_of(data):
    from astropy.wcs import WCS
    coords = getattr(data, "coords", None)
    if isinstance(coords, WCS) and coords.has_celestial:
        return coords.celestial
    return None


def mosaic_from_data(data):
    """The `~glue_starclf.io.mosaic.Mosaic` behind a mosaic dataset.

    The band files named in ``meta`` are reopened (memory-mapped, with their
    headers, so zeropoints and provenance are kept) when they all still
    exist and fit the dataset; otherwise the dataset's own arrays are used.

    Parameters
    ----------
    data : glue.core.data.Data
        A dataset of `mosaic_data` (or any 2-D dataset whose components are
        named by band).

    Returns
    -------
    glue_starclf.io.mosaic.Mosaic

    Raises
    ------
    ValueError
        If the dataset is not 2-D or has no component named by a band.
    """
    from ..io.bands import BANDS
    from ..io.mosaic import Mosaic, open_mosaic, parse_image_arg
    if data.ndim != 2:
        raise ValueError(f"{data.label!r} is not an image (it has {data.ndim} dimensions)")
    labels = {c.label: c for c in data.main_components}
    present = [b for b in BANDS if b in labels]
    if not present:
        raise ValueError(f"{data.label!r} has no component named by a band "
                         f"({', '.join(BANDS)})")
    gone = missing_files(data)
    if gone:
        raise ValueError(f"the band files of {data.label!r} were not found ({', '.join(gone)}): "
                         f"open them again with Plugins → Open HST mosaic…")
    items = data.meta.get("starclf_images") or []
    if any(str(parse_image_arg(i)[1]) in MOVED for i in items):  # a restored session's
        items = [_moved(i) for i in items]
        data.meta["starclf_images"] = items
    paths = [parse_image_arg(i)[1] for i in items]
    if items and all(p.is_file() for p in paths):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                mosaic = open_mosaic(items)
            if mosaic.shape == tuple(data.shape) and list(mosaic.bands) == present:
                return mosaic
        except (OSError, ValueError):
            pass  # the files changed since: use the arrays in the dataset
    images = [np.asarray(data[labels[b]]) if b in labels else None for b in BANDS]
    return Mosaic.from_arrays(images, wcs=_wcs_of(data))


# -- catalogs --------------------------------------------------------------------

def is_legus_catalog(path, **kwargs):
    """glue identifier: a LEGUS ``.tab`` catalog (numeric rows of at least 34 columns)."""
    from ..io.catalogs import DEFAULT_CLASS_COLUMN
    path = Path(path)
    if path.suffix.lower() != ".tab" or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(8192).decode("ascii")
    except (OSError, UnicodeDecodeError):
        return False
    first = next((ln for ln in head.splitlines() if ln.strip() and not ln.startswith("#")), "")
    try:
        return len([float(v) for v in first.split()]) >= DEFAULT_CLASS_COLUMN
    except ValueError:
        return False


def is_phangs_catalog(path, **kwargs):
    """glue identifier: a PHANGS-HST cluster catalog (FITS table with ``PHANGS_X``)."""
    from astropy.io import fits
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            if not f.read(9) == b"SIMPLE  =":
                return False
        with fits.open(path, memmap=True) as hdul:
            for hdu in hdul:
                if isinstance(hdu, fits.BinTableHDU):
                    return "PHANGS_X" in [n.upper() for n in hdu.columns.names]
    except (OSError, ValueError):
        return False
    return False


def is_star_cluster_catalog(path, **kwargs):
    """glue identifier: a LEGUS or PHANGS-HST catalog."""
    return is_legus_catalog(path) or is_phangs_catalog(path)


def table_to_data(table, label):
    """A tabular glue dataset of an astropy table (1-D columns; masked values as NaN).

    Parameters
    ----------
    table : astropy.table.Table
    label : str

    Returns
    -------
    glue.core.data.Data
        One component per 1-D column, strings as categorical components,
        units kept.
    """
    from glue.core import Data
    data = Data(label=label)
    for name in table.colnames:
        col = table[name]
        if col.ndim != 1:
            continue
        values = np.asarray(col) if not hasattr(col, "mask") else (
            np.ma.filled(col, np.nan) if col.dtype.kind == "f" else np.ma.filled(col))
        if values.dtype.kind in "SU":
            values = values.astype(str)
        elif values.dtype.kind == "O":
            values = np.asarray([str(v) for v in values])
        cid = data.add_component(values, name)
        unit = getattr(col, "unit", None)
        if unit is not None:
            data.get_component(cid).units = str(unit)
    return data


def catalog_factory(path):
    """glue data factory: a star-cluster catalog with 0-based ``x``/``y``.

    Parameters
    ----------
    path : str

    Returns
    -------
    glue.core.data.Data
        Columns of `glue_starclf.io.catalogs.read_catalog`; ``meta`` records the
        format and the pixel convention.
    """
    from ..io.catalogs import read_catalog
    table = read_catalog(path)
    stem = re.sub(r"\.(tab|fits(\.gz)?|fit|ecsv|csv|txt)$", "", Path(path).name, flags=re.I)
    data = table_to_data(table, stem)
    data.meta[KIND_KEY] = CATALOG
    data.meta["starclf_path"] = str(path)
    data.meta["pixel_convention"] = str(table.meta.get("pixel_convention",
                                                       "x, y are 0-based (numpy/glue)"))
    return data


def load_catalog(path):
    """Open a catalog as a glue dataset through glue's `load_data` (session-restorable)."""
    from glue.core.data_factories import load_data
    return load_data(str(path), factory=catalog_factory)


def kind_of(data):
    """`MOSAIC`, `CATALOG`, `RESULTS` or None for a dataset we did not make."""
    return data.meta.get(KIND_KEY) if hasattr(data, "meta") else None


# -- results -----------------------------------------------------------------------

def result_label(data, name):
    """Component label of the result column ``name`` in a dataset, or None.

    Parameters
    ----------
    data : glue.core.data.Data
    name : str
        A results-schema column (or an extra column such as ``mag_F555W``).

    Returns
    -------
    str or None
    """
    mapping = data.meta.get(COLUMNS_KEY) or {}
    label = mapping.get(name)
    if label is None and (kind_of(data) == RESULTS or name in ("id", "x", "y", "ra", "dec")):
        label = name  # a catalog's own positions are not duplicated
    if label is None:
        return None
    return label if label in [c.label for c in data.components] else None


def results_table(layer, components=None):
    """Result columns of a dataset or subset as an astropy table with schema names.

    Parameters
    ----------
    layer : glue.core.data.Data or glue.core.subset.Subset
    components : sequence of ComponentID, optional
        Export only these (glue's export dialog passes the checked ones);
        positions, ``id`` and ``class`` are always kept for region files.

    Returns
    -------
    astropy.table.Table
        Schema columns first (under their schema names), then the other
        chosen components; ``meta`` is the provenance of the classification.
    """
    from astropy.table import Table
    from glue.core import Subset
    data = layer.data if isinstance(layer, Subset) else layer
    mask = layer.to_mask() if isinstance(layer, Subset) else None
    mapping = dict(data.meta.get(COLUMNS_KEY) or {})
    if kind_of(data) == RESULTS:
        mapping.update({c.label: c.label for c in data.main_components
                        if c.label not in mapping})
    chosen = None if components is None else {c.label for c in components}
    table = Table(meta=dict(data.meta.get(RESULTS_META_KEY) or {}))
    by_label = {c.label: c for c in data.main_components}
    keep = {"id", "x", "y", "class"}
    used = set()
    for name, label in mapping.items():
        if label not in by_label or (chosen is not None and label not in chosen
                                     and name not in keep):
            continue
        values = np.asarray(data[by_label[label]])
        table[name] = values if mask is None else values[mask]
        used.add(label)
        unit = data.get_component(by_label[label]).units
        if unit:
            table[name].unit = unit
    for label, cid in by_label.items():
        if label in used or label in table.colnames or (chosen is not None and
                                                        label not in chosen):
            continue
        values = np.asarray(data[cid])
        table[label] = values if mask is None else values[mask]
    return table


def export_results(filename, data, components=None):
    """glue data exporter: results (dataset or subset) to ECSV or FITS, atomically.

    Parameters
    ----------
    filename : str
        The file to write (replaced if it exists); its extension (``.ecsv``,
        ``.fits``) chooses the format.
    data : glue.core.data.Data or glue.core.subset.Subset
        A results dataset or catalog with results, or a subset of one.
    components : sequence of ComponentID, optional
        The components checked in glue's export dialog (`results_table`).
    """
    from ..io.writers import write_table
    write_table(results_table(data, components), filename, overwrite=True)


def export_regions(filename, data, components=None):
    """glue data exporter: a DS9 region file in image pixels, one circle per source by class.

    Parameters
    ----------
    filename : str
        The file to write (replaced if it exists).
    data : glue.core.data.Data or glue.core.subset.Subset
        A results dataset or catalog with results, or a subset of one.
    components : sequence of ComponentID, optional
        Ignored: a region file takes the positions, ``id`` and ``class``.
    """
    from ..io.writers import write_regions
    write_regions(results_table(data), filename, overwrite=True)


#: Radius of the region circles [mosaic pixels] (that of `export_regions`).
REGION_RADIUS_PX = 4.0


def _pixel_scale_arcsec(table):
    """Pixel scale ["/px] of the mosaic the results were made on.

    From the WCS of a band file named in the provenance, else from the
    sources' own ra/dec and x/y (two or more); None when neither is known.
    """
    from astropy.io import fits
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales
    for path in (table.meta.get("bands") or {}).values():
        try:
            with fits.open(path) as hdul:
                for hdu in hdul[:2]:
                    wcs = WCS(hdu.header)
                    if wcs.has_celestial:
                        return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600)
        except (OSError, ValueError):
            continue
    if not {"x", "y", "ra", "dec"} <= set(table.colnames):
        return None
    x, y, ra, dec = (np.asarray(table[c], float) for c in ("x", "y", "ra", "dec"))
    ok = np.isfinite(x + y + ra + dec)
    if ok.sum() < 2:
        return None
    x, y, ra, dec = x[ok], y[ok], ra[ok], dec[ok]
    pix = np.hypot(np.diff(x), np.diff(y))
    sky = np.hypot(np.diff(ra) * np.cos(np.radians(dec[1:])), np.diff(dec)) * 3600
    good = pix > 1
    return float(np.median(sky[good] / pix[good])) if good.any() else None


def export_regions_fk5(filename, data, components=None):
    """glue data exporter: a DS9 region file in sky coordinates (fk5), by class.

    One circle of `REGION_RADIUS_PX` (in arcsec at the mosaic's pixel scale)
    per source with finite ra/dec, coloured and labelled by class as
    `export_regions`, whose parameters it takes.

    Raises
    ------
    ValueError
        When the results have no sky positions (a mosaic without WCS).
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from regions import CircleSkyRegion, Regions

    from ..io.writers import CLASS_COLOURS, UNKNOWN_COLOUR, atomic_write
    table = results_table(data)
    ra = np.asarray(table["ra"], float) if "ra" in table.colnames else np.array([np.nan])
    dec = np.asarray(table["dec"], float) if "dec" in table.colnames else np.array([np.nan])
    ok = np.isfinite(ra) & np.isfinite(dec)
    scale = _pixel_scale_arcsec(table)
    if not ok.any() or scale is None:
        raise ValueError(f"“{data.label}” has no sky positions (its mosaic has no celestial "
                         f"WCS): export the regions in image pixels instead")
    cls = np.asarray(table["class"]) if "class" in table.colnames else np.zeros(len(table))
    ids = np.asarray(table["id"]) if "id" in table.colnames else None
    shapes = []
    for i in np.flatnonzero(ok):
        c = int(cls[i]) if np.isfinite(float(cls[i])) else 0
        meta = {"text": str(c) if c in CLASS_COLOURS else "?"}
        if ids is not None:
            meta["tag"] = [f"id={ids[i]}"]
        shapes.append(CircleSkyRegion(SkyCoord(ra[i], dec[i], unit="deg", frame="fk5"),
                                      REGION_RADIUS_PX * scale * u.arcsec, meta=meta,
                                      visual={"color": CLASS_COLOURS.get(c, UNKNOWN_COLOUR)}))
    # regions names the frame "j2000", DS9's alias of fk5: say fk5.
    text = re.sub(r"(?m)^j2000$", "fk5", Regions(shapes).serialize(format="ds9"), count=1)

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(filename, write, overwrite=True)


def setup():
    """Register the data factories and exporters with ``glue.config`` (once)."""
    global _registered
    if _registered:
        return
    from glue.config import data_exporter, data_factory
    data_factory("HST mosaic (all bands of a field)", identifier=None,
                 priority=0)(mosaic_factory)
    data_factory("Star-cluster catalog (LEGUS .tab, PHANGS-HST FITS)",
                 identifier=is_star_cluster_catalog, priority=200)(catalog_factory)
    data_exporter("Star-cluster results (ECSV)", extension=["ecsv"])(export_results)
    data_exporter("Star-cluster results (FITS)", extension=["fits"])(export_results)
    data_exporter("Star-cluster DS9 regions", extension=["reg"])(export_regions)
    data_exporter("Star-cluster DS9 regions (sky, fk5)", extension=["reg"])(export_regions_fk5)
    _registered = True
