"""Many galaxies at once: ``starclf classify-batch`` on a dask.distributed cluster.

A YAML manifest lists fields (band files, a catalog or ``detect``, the
distance, the output table; see `read_manifest`). `run_batch` classifies
them on any dask.distributed cluster (a `distributed.LocalCluster` of worker
processes, or a scheduler started elsewhere, e.g. by dask-jobqueue on
SLURM) in two phases:

1. one task per field reads its catalog, or detects candidates on the whole
   mosaic, exactly as ``starclf classify`` does;
2. per field, three kinds of tasks: *pieces* cut the stamps of the sources
   of one network batch that lie in one tile, reading only that tile's box
   plus a halo of half the stamp size from the memory-mapped bands;
   *batches* run the ensembles on one network batch; one *write* task
   stacks the batches into the field's results table and writes it
   atomically.

The results equal those of ``starclf classify`` on the same inputs, bit for
bit, by construction rather than by tolerance: CPU convolutions and matrix
products give results that depend on the batch a source is evaluated in and
on the number of threads, so the batch tasks evaluate exactly the batches of
`glue_starclf.core.predict.predict` (sources ``[k B, (k + 1) B)`` in input
order, ``B`` = `glue_starclf.core.predict.BATCH`) with identical stamps (stamps
depend only on a source's nearest pixel, so cutting them from a tile box
that holds the whole stamp gives the same pixels and flags), through
`predict` itself, with a fixed number of torch threads per task (one by
default: the same as ``starclf classify`` run with ``OMP_NUM_THREADS=1``).
To let `predict` evaluate the gathered stamps, a batch task lays them side
by side in a *stamp sheet*, a `Mosaic` of ``size x (n size)`` pixels per
band, and puts each source at the centre of its slot; positions and flags
are then set back to the mosaic's.

Models load once per worker process (`_ensemble` caches them by folder and
checksum). A field that fails (a missing file, a bad catalog) is reported
and does not stop the others. Outputs record a fingerprint of their inputs
and models, so a re-run skips fields whose outputs are complete and an
interrupted batch resumes where it stopped; the merged table (every field's
rows with a ``field`` column) is written once every field is complete.
"""

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ManifestError", "Field", "Manifest", "FieldOutcome", "Piece", "DEFAULT_TILE",
           "MIN_TILE", "OUTPUT_FORMATS", "read_manifest", "plan_pieces", "run_batch", "command", "bench"]

#: Side [px] of the tiles a mosaic is cut into (before the halo).
DEFAULT_TILE = 2048

#: Smallest tile side a manifest may ask for [px].
MIN_TILE = 16

#: Output formats of a batch: both keep the metadata a re-run checks.
OUTPUT_FORMATS = (".ecsv", ".fits")

_FIELD_KEYS = ("name", "images", "catalog", "region", "distance_mpc", "out")
_REQUIRED_KEYS = ("name", "images", "catalog", "distance_mpc", "out")
_TOP_KEYS = ("fields", "merged", "models", "tile")

#: Ensembles loaded in this process, by (family, folder, sha256 of the members).
_ENSEMBLES = {}


class ManifestError(ValueError):
    """A mistake in a manifest; the message names the file, the field and the key."""


@dataclass(frozen=True)
class Field:
    """One field of a manifest, with absolute paths.

    Attributes
    ----------
    name : str
    images : tuple of str
        ``"BAND=/path"`` or ``"/path"`` (band from the FITS header), as
        `glue_starclf.io.mosaic.open_mosaic` takes them.
    catalog : str or None
        Catalog path; None to detect candidates.
    region : str or None
        ``"x0,y0,x1,y1"`` (0-based pixels) to restrict the sources to.
    distance_mpc : float
    out : str
        Results table (``.ecsv`` or ``.fits``).
    """

    name: str
    images: tuple
    catalog: object
    region: object
    distance_mpc: float
    out: str


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest.

    Attributes
    ----------
    path : Path
    fields : tuple of Field
    merged : str
        The merged table of every field (``.ecsv`` or ``.fits``).
    models : str or None
        Folder of model cards; None for the bundled models.
    tile : int
        Tile side [px].
    """

    path: Path
    fields: tuple
    merged: str
    models: object
    tile: int


@dataclass
class FieldOutcome:
    """What became of one field in a run.

    Attributes
    ----------
    name : str
    status : str
        ``"done"``, ``"skipped"`` (its output was complete) or ``"failed"``.
    out : str
    n_sources : int or None
        Rows written (None when failed or skipped).
    message : str
        Why it failed, or ``""``.
    """

    name: str
    status: str
    out: str
    n_sources: object = None
    message: str = ""


class Piece:
    """The sources of one network batch that lie in one tile.

    Attributes
    ----------
    batch : int
        Index of the network batch.
    tile : int
        Index of the tile (row-major over the mosaic).
    index : ndarray of int
        Source rows, ascending.
    box : (int, int, int, int)
        ``x0, y0, x1, y1``: the pixels read, the union of the sources'
        stamps clipped to the mosaic; it lies in the tile plus a halo of
        ``size // 2``.
    """

    __slots__ = ("batch", "tile", "index", "box")

    def __init__(self, batch, tile, index, box):
        self.batch, self.tile, self.index, self.box = batch, tile, index, box

    def __repr__(self):
        return (f"<Piece batch {self.batch} tile {self.tile}: {len(self.index)} sources, "
                f"box {self.box}>")


# -- the manifest --------------------------------------------------------------

def _where(path, i, name):
    label = f"field {name!r} (#{i})" if isinstance(name, str) and name else f"field #{i}"
    return f"{path}: {label}"


def _resolve(base, value, what):
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ManifestError(f"{what}: expected a path, got {value!r}")
    p = Path(os.path.expanduser(str(value).strip()))
    return str(p if p.is_absolute() else (base / p).resolve())


def _output(base, value, what):
    path = _resolve(base, value, what)
    if Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise ManifestError(f"{what}: {value!r} must end in {' or '.join(OUTPUT_FORMATS)} "
                            "(tables that keep the metadata a re-run checks)")
    return path


def _images(base, value, what):
    from ..io.bands import canonical_band
    from ..io.mosaic import parse_image_arg
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [parse_image_arg(str(v)) for v in value]
    else:
        raise ManifestError(f"{what}: expected a mapping BAND: path or a list of "
                            f"BAND=path, got {value!r}")
    if not items:
        raise ManifestError(f"{what}: no image given")
    out = []
    for band, path in items:
        where = f"{what} {band}" if band is not None else what
        p = _resolve(base, path, where)
        if band is None:
            out.append(p)
            continue
        try:
            canonical_band(str(band))
        except ValueError as exc:
            raise ManifestError(f"{what}: {exc}") from None
        out.append(f"{band}={p}")
    return tuple(out)


def _region(value, what):
    """``"x0,y0,x1,y1"``; whether it overlaps the mosaic is checked when the field runs."""
    import math
    text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise ManifestError(f"{what}: {value!r} is not x0,y0,x1,y1") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise ManifestError(f"{what}: {value!r} needs finite x0 < x1 and y0 < y1")
    return text


def _distance(value, what):
    from ..sim.mosaic import check_distance
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{what}: expected a number of Mpc, got {value!r}")
    try:
        return check_distance(value)
    except ValueError as exc:
        raise ManifestError(f"{what}: {exc}") from None


def _field(base, path, i, entry):
    if not isinstance(entry, dict):
        raise ManifestError(f"{path}: field #{i}: expected a mapping of "
                            f"{', '.join(_FIELD_KEYS)}, got {entry!r}")
    name = entry.get("name")
    where = _where(path, i, name)
    for key in entry:
        if key not in _FIELD_KEYS:
            raise ManifestError(f"{where}, key {key!r}: unknown key (expected "
                                f"{', '.join(_FIELD_KEYS)})")
    for key in _REQUIRED_KEYS:
        if entry.get(key) is None:
            raise ManifestError(f"{where}, key {key!r}: missing")
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ManifestError(f"{where}, key 'name': expected a non-empty name without "
                            f"surrounding spaces, got {name!r}")
    catalog = entry["catalog"]
    if catalog != "detect":
        catalog = _resolve(base, catalog, f"{where}, key 'catalog'")
    region = entry.get("region")
    return Field(
        name=name,
        images=_images(base, entry["images"], f"{where}, key 'images'"),
        catalog=None if catalog == "detect" else catalog,
        region=None if region is None else _region(region, f"{where}, key 'region'"),
        distance_mpc=_distance(entry["distance_mpc"], f"{where}, key 'distance_mpc'"),
        out=_output(base, entry["out"], f"{where}, key 'out'"))


def read_manifest(path):
    """Read and check a batch manifest.

    The manifest is YAML::

        merged: results/all.ecsv          # optional: <manifest name>-merged.ecsv
        models: models/                   # optional: --models, else the bundled
        tile: 2048                        # optional tile side [px]
        fields:
          - name: ngc628
            images: {F275W: ngc628_f275w.fits, F336W: ..., F814W: ...}
            catalog: ngc628.tab           # or: detect
            region: 0,0,4000,4000         # optional x0,y0,x1,y1
            distance_mpc: 9.9
            out: results/ngc628.ecsv

    ``images`` may also be a list of ``BAND=path`` or plain paths (band
    from the FITS header). Relative paths are relative to the manifest's
    folder and become absolute, so that workers on other machines find the
    files on a shared file system. Files are not opened here: a missing
    file fails its field when the batch runs.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Manifest

    Raises
    ------
    FileNotFoundError
        If the manifest does not exist.
    ManifestError
        If it is not valid YAML or a field or key is wrong; the message
        names the field (name and position) and the key.
    """
    import yaml
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: expected a mapping with a 'fields' list")
    for key in doc:
        if key not in _TOP_KEYS:
            raise ManifestError(f"{path}: key {key!r}: unknown key (expected "
                                f"{', '.join(_TOP_KEYS)})")
    entries = doc.get("fields")
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path}: key 'fields': expected a non-empty list of fields")
    base = path.resolve().parent
    fields = tuple(_field(base, path, i, e) for i, e in enumerate(entries, 1))
    names, outs = {}, {}
    for i, f in enumerate(fields, 1):
        if f.name in names:
            raise ManifestError(f"{_where(path, i, f.name)}, key 'name': also the name of "
                                f"field #{names[f.name]}")
        if f.out in outs:
            raise ManifestError(f"{_where(path, i, f.name)}, key 'out': {f.out} is also the "
                                f"output of field {outs[f.out]!r}")
        names[f.name], outs[f.out] = i, f.name
    merged = doc.get("merged")
    merged = (_output(base, merged, f"{path}: key 'merged'") if merged is not None else
              str(base / f"{path.stem}-merged.ecsv"))
    if merged in outs:
        raise ManifestError(f"{path}: key 'merged': {merged} is also the output of field "
                            f"{outs[merged]!r}")
    models = doc.get("models")
    models = None if models is None else _resolve(base, models, f"{path}: key 'models'")
    tile = doc.get("tile", DEFAULT_TILE)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < MIN_TILE:
        raise ManifestError(f"{path}: key 'tile': expected a whole number of pixels "
                            f">= {MIN_TILE}, got {tile!r}")
    return Manifest(path=path, fields=fields, merged=merged, models=models, tile=tile)


# -- planning ------------------------------------------------------------------

def plan_pieces(x, y, shape, size, tile, batch):
    """Split sources into pieces: one network batch within one tile.

    Parameters
    ----------
    x, y : array_like
        0-based positions (NaN and off-image positions allowed).
    shape : (int, int)
        ``(ny, nx)`` of the mosaic.
    size : int
        Stamp side [px].
    tile : int
        Tile side [px]; a source belongs to the tile of its stamp's centre
        pixel (`glue_starclf.core.cutouts.stamp_centre`), clipped to the mosaic.
    batch : int
        Sources per network batch, in input order.

    Returns
    -------
    list of Piece
        By batch, then tile. Every source is in exactly one piece.
    """
    import numpy as np

    from ..core.cutouts import stamp_centre
    ny, nx = shape
    ix, iy = stamp_centre(x, y)
    cx, cy = np.clip(ix, 0, nx - 1), np.clip(iy, 0, ny - 1)
    n = cx.size
    tiles_x = -(-nx // tile)
    t = (cy // tile) * tiles_x + cx // tile
    k = np.arange(n) // batch
    order = np.lexsort((np.arange(n), t, k))
    key = k[order] * (t.max(initial=0) + 1) + t[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if n else np.zeros(0, int)
    ends = np.r_[starts[1:], n].astype(int)
    h = size // 2
    pieces = []
    for s, e in zip(starts, ends):
        idx = order[s:e]
        box = (max(int(cx[idx].min()) - h, 0), max(int(cy[idx].min()) - h, 0),
               min(int(cx[idx].max()) - h + size, nx), min(int(cy[idx].max()) - h + size, ny))
        pieces.append(Piece(int(k[idx[0]]), int(t[idx[0]]), idx, box))
    return pieces


def _fingerprint(field, hashes, batch):
    """sha256 of what a field's results depend on."""
    from ..version import __version__
    doc = {"name": field.name, "images": list(field.images), "catalog": field.catalog,
           "region": field.region, "distance_mpc": field.distance_mpc, "models": hashes,
           "batch": batch, "version": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _recorded(path, key):
    """A metadata value of an ECSV or FITS table, read from its header alone; None if absent."""
    if str(path).lower().endswith(".fits"):
        from astropy.io import fits
        return fits.getheader(path, 1).get(key.upper())
    from astropy.table.meta import get_header_from_yaml
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line[2:] if line.startswith("# ") else line[1:])
    return get_header_from_yaml(lines).get("meta", {}).get(key)


def _existing(path, fingerprint):
    """None when ``path`` is absent, "complete" when it is this fingerprint's, else why not."""
    if not os.path.exists(path):
        return None
    try:
        recorded = _recorded(path, "batch_fingerprint")
    except Exception as exc:  # any unreadable file is reported, not trusted
        return f"{path} exists but is not a readable table ({exc}); use --overwrite to replace it"
    if recorded == fingerprint:
        return "complete"
    return (f"{path} exists but was not written by this manifest entry with these models "
            f"and inputs; use --overwrite to replace it")


# -- tasks (run on the workers) --------------------------------------------------

def _card_hashes(family, folder):
    """sha256 of the members of a family in a folder, from their cards (no weights read)."""
    from ..core.checkpoints import bundled_models_dir, list_models
    cards = [c for c in list_models(folder) if c.get("family") == family]
    if not cards:
        raise FileNotFoundError(f"no {family} models in {folder or bundled_models_dir()} "
                                "(train them with python -m training, see the README, or "
                                "pass --models DIR)")
    return tuple(c["sha256"] for c in cards)


def _ensemble(family, folder, sha256):
    """An ensemble, loaded once per process, folder and members; checked against ``sha256``.

    The classifier's class prior (a small JSON file) is read again at every
    call, so that a long-lived worker follows the folder as the client does.
    """
    from ..core.predict import load_ensemble
    key = (family, folder, tuple(sha256))
    ens = _ENSEMBLES.get(key)
    if ens is None:
        ens = load_ensemble(family, folder)
        if tuple(ens.hashes) != key[2]:
            raise ValueError(f"the {family} models in {folder or 'the bundled folder'} on "
                             f"this worker differ from the client's (sha256); workers need "
                             f"the same model files")
        _ENSEMBLES[key] = ens
    elif family == "classifier":
        ens.reload_class_prior()
    return ens


def _model_spec(models):
    """``(folder, classifier sha256, physical sha256)``, the models as tasks name them."""
    folder = None if models is None else str(Path(models).resolve())
    return (folder, _card_hashes("classifier", folder), _card_hashes("physical", folder))


def _read_sources(field, models):
    """Phase 1: the sources of a field, as ``starclf classify`` finds them, and the
    field's stellar CI where the networks take it (measured once per field)."""
    from ..core.detection import detected_stellar_ci, detection_provenance, sources_to_classify
    from ..core.predict import field_stellar_ci
    from ..io.mosaic import open_mosaic
    with open_mosaic(list(field.images)) as mosaic:
        sources = sources_to_classify(mosaic, field.catalog, field.region,
                                      distance_mpc=field.distance_mpc)
        ensembles = (_ensemble("classifier", models[0], models[1]),
                     _ensemble("physical", models[0], models[2]))
        stellar_ci = (field_stellar_ci(ensembles, mosaic, sources["x"], sources["y"],
                                       *detected_stellar_ci(sources))
                      if len(sources) else (None, None))
        return {"shape": mosaic.shape, "band_mask": mosaic.band_mask, "stellar_ci": stellar_ci,
                "detection": detection_provenance(sources),
                "bands": {b: str(p) for b, p in mosaic.paths.items()},
                "pixel_scale": mosaic.pixel_scale,
                "calibration": {b: c.as_meta() for b, c in mosaic.calibration.items()},
                "sources": sources[["id", "x", "y", "ra", "dec"]]}


def _cut_piece(images, box, cx, cy, size):
    """Stamps and flags of a piece's sources, reading only ``box`` of each band.

    ``cx``, ``cy`` are the sources' positions relative to the box (their
    sub-pixel part matters where stamps are resampled). Since
    the box holds every stamp wholly unless the stamp crosses the mosaic's
    own border (where the box ends too), the stamps and their flags equal
    those cut from the whole mosaic.
    """
    from ..io.bands import BANDS
    from ..core.cutouts import extract_stamps
    from ..io.mosaic import Mosaic, open_mosaic
    x0, y0, x1, y1 = box
    with open_mosaic(list(images)) as mosaic:
        sections = [mosaic.section(b, x0, y0, x1, y1, dtype=mosaic[b].dtype.newbyteorder("="))
                    if present else None for b, present in zip(BANDS, mosaic.band_mask)]
        tile = Mosaic(sections, (y1 - y0, x1 - x0), None, mosaic.paths, mosaic.filters, {},
                      calibration=mosaic.calibration, pixel_scale=mosaic.pixel_scale)
    return extract_stamps(tile, cx, cy, size=size)


#: Flags `predict` sets from the models and the run, not from the stamps.
_MODEL_FLAGS = ("distance", "stellar_ci", "ood")


def _classify_batch(cutouts, slots, sources, band_mask, distance_mpc, models, torch_threads,
                    stellar_ci=(None, None)):
    """Results of one network batch, through `predict` on a stamp sheet (``stellar_ci``:
    the field's value and where it came from, `_read_sources`)."""
    import numpy as np
    import torch
    from astropy.table import Table

    from ..io.mosaic import Mosaic
    from ..core.predict import predict
    folder, cls_sha, phys_sha = models
    classifier = _ensemble("classifier", folder, cls_sha)
    physical = _ensemble("physical", folder, phys_sha)
    size = max(classifier.stamp_size, physical.stamp_size)
    n = len(sources)
    # sheet[j, r, i, c] is pixel (r, c) of source i's stamp in band j
    sheet = np.empty((len(band_mask), size, n, size), np.float32)
    flags = np.empty(n, dtype=object)
    for cut, slot in zip(cutouts, slots):
        sheet[:, :, slot, :] = cut.stamps.transpose(1, 2, 0, 3)
        flags[slot] = cut.flags
    images = [sheet[j].reshape(size, n * size) if present else None
              for j, present in enumerate(band_mask)]
    on_sheet = Table({"id": sources["id"], "x": (np.arange(n) * size + size // 2).astype(float),
                      "y": np.full(n, size // 2, float), "ra": sources["ra"],
                      "dec": sources["dec"]})
    torch.set_num_threads(torch_threads)
    result = predict(Mosaic(images, (size, n * size), None, {}, {}, {}), on_sheet, distance_mpc,
                     classifier=classifier, physical=physical, batch=max(n, 1),
                     stellar_ci=stellar_ci[0])
    if stellar_ci[1] is not None:
        result.meta["stellar_ci_source"] = stellar_ci[1]
    result["x"][:] = np.asarray(sources["x"], float)
    result["y"][:] = np.asarray(sources["y"], float)
    # The stamps' own flags come from the mosaic, not the sheet; the models' flags from predict.
    model = [[f for f in str(row).split(",") if f in _MODEL_FLAGS] for row in result["flags"]]
    result["flags"] = (np.array([",".join([f for f in (flags[i] or "").split(",") if f] + model[i])
                                 for i in range(n)], dtype=str) if n else np.array([], str))
    return result


def _write_field(tables, out, name, meta, fingerprint, overwrite):
    """Stack a field's batches into its results table and write it atomically."""
    from astropy.table import vstack

    from ..io.writers import write_table
    result = vstack(tables, metadata_conflicts="silent")
    result.meta.clear()  # vstack concatenates list values; every batch has the same metadata
    result.meta.update(tables[0].meta)
    result.meta.update(meta)
    result.meta["field"] = name
    result.meta["batch_fingerprint"] = fingerprint
    write_table(result, out, overwrite=overwrite)
    return len(result)


def _peak_rss_gb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _load_models(models):
    """Load (once) the ensembles of a model spec; the number of ensembles this process loaded."""
    folder, cls_sha, phys_sha = models
    _ensemble("classifier", folder, cls_sha)
    _ensemble("physical", folder, phys_sha)
    return len(_ENSEMBLES)


# -- the driver ----------------------------------------------------------------

def _message(exc):
    if isinstance(exc, (ValueError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _submit_field(client, field, info, models, size, tile, batch, torch_threads, fingerprint,
                  overwrite):
    """Submit the pieces, batches and write task of a field; the write task's future.

    Only the write task's future is kept: dask frees each piece once its
    batch is done and each batch once the field is written.
    """
    import numpy as np

    from ..core.cutouts import native_stamp_size, needs_resampling
    sources = info["sources"]
    n = len(sources)
    x = np.asarray(sources["x"], float)
    y = np.asarray(sources["y"], float)
    by_batch = {}
    halo = native_stamp_size(size, info.get("pixel_scale"))  # the stamps cut before resampling
    for p in plan_pieces(x, y, info["shape"], halo, tile, batch):
        by_batch.setdefault(p.batch, []).append(p)
    tables = []
    for k in range(max(-(-n // batch), 1)):  # an empty field still gets its (empty) table
        start = k * batch
        mine = by_batch.get(k, [])
        cutouts = [client.submit(_cut_piece, field.images, p.box,
                                 x[p.index] - p.box[0], y[p.index] - p.box[1], size,
                                 pure=False)
                   for p in mine]
        tables.append(client.submit(_classify_batch, cutouts, [p.index - start for p in mine],
                                    sources[start:start + batch], info["band_mask"],
                                    field.distance_mpc, models, torch_threads,
                                    info["stellar_ci"], pure=False))
    scale = info["pixel_scale"]
    meta = {"bands": info["bands"], "calibration": info["calibration"],
            "pixel_scale_arcsec": None if scale is None else round(scale, 5),
            "resampled_to_arcsec": 0.04 if needs_resampling(scale) else None,
            **info.get("detection", {})}
    return client.submit(_write_field, tables, field.out, field.name, meta,
                         fingerprint, overwrite, pure=False)


def _merge(manifest, fingerprints, fresh, overwrite):
    """Write the merged table unless it is complete; its `FieldOutcome`.

    ``fresh``: a field was written in this run, so even a merged table with
    the same fingerprint is rewritten from the new outputs.
    """
    from astropy.table import Table, vstack

    from ..version import __version__
    from ..io.writers import write_table
    out = manifest.merged
    fingerprint = hashlib.sha256(json.dumps(fingerprints).encode()).hexdigest()
    state = _existing(out, fingerprint)
    if state == "complete" and not fresh:
        return FieldOutcome("merged", "skipped", out)
    if state not in (None, "complete") and not overwrite:
        try:
            ours = _recorded(out, "manifest") == str(manifest.path.resolve())
        except Exception:  # unreadable: not this manifest's table
            ours = False
        if not ours:
            return FieldOutcome("merged", "failed", out, message=state)
    try:
        tables = []
        for f in manifest.fields:
            t = Table.read(f.out)
            t.add_column([f.name] * len(t), name="field", index=0)
            tables.append(t)
        merged = vstack(tables, metadata_conflicts="silent")
        first = tables[0].meta
        merged.meta.clear()
        merged.meta.update({
            "generator": f"glue-starclf {__version__}",
            "manifest": str(manifest.path.resolve()),
            "fields": {f.name: {"out": f.out, "distance_mpc": f.distance_mpc}
                       for f in manifest.fields},
            **{k: first[k] for k in ("classifier_models", "classifier_sha256", "class_prior",
                                     "physical_models", "physical_sha256", "pixel_convention")
               if k in first},
            "batch_fingerprint": fingerprint})
        write_table(merged, out, overwrite=True)
    except (ValueError, OSError) as exc:
        return FieldOutcome("merged", "failed", out, message=_message(exc))
    return FieldOutcome("merged", "done", out, n_sources=len(merged))


def run_batch(manifest, client, models=None, overwrite=False, torch_threads=1, batch=None,
              progress=False, merge=True):
    """Classify every field of a manifest on a dask.distributed cluster.

    Parameters
    ----------
    manifest : Manifest or path-like
    client : distributed.Client
    models : path-like, optional
        Folder of model cards; default the manifest's ``models``, else the
        bundled models. Workers must see the same files at the same path
        (checked by sha256).
    overwrite : bool
        Recompute every field and replace its output. Without it, a field
        whose output is complete (written by this manifest entry with the
        same inputs, models and batch) is skipped, and any other existing
        file fails its field.
    torch_threads : int
        Torch threads per task. Results equal ``starclf classify`` run with
        this many torch threads (``OMP_NUM_THREADS``).
    batch : int, optional
        Sources per network batch; default `glue_starclf.core.predict.BATCH`,
        that of ``starclf classify``. Results equal
        ``predict(..., batch=batch)``.
    progress : bool
        Show dask's progress bars (sources, then classification).
    merge : bool
        Write the merged table once every field is complete.

    Returns
    -------
    outcomes : list of FieldOutcome
        One per field, in manifest order.
    merged : FieldOutcome or None
        The merged table's (``name`` "merged"): done, skipped (complete) or
        failed (e.g. a file that is not this manifest's is in the way);
        None when a field failed or ``merge`` is False.

    Raises
    ------
    FileNotFoundError, ValueError
        If the models cannot be found or loaded on the client, or an
        option is out of range (nothing is submitted).
    """
    from distributed import progress as show_progress
    from distributed import wait

    from ..core.predict import BATCH
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    batch = BATCH if batch is None else int(batch)
    if batch < 1:
        raise ValueError(f"batch {batch} must be >= 1")
    if torch_threads < 1:
        raise ValueError(f"--torch-threads {torch_threads} must be >= 1")
    spec = _model_spec(models if models is not None else manifest.models)
    classifier = _ensemble("classifier", spec[0], spec[1])
    size = max(classifier.stamp_size, _ensemble("physical", spec[0], spec[2]).stamp_size)
    prior = classifier.class_prior
    # The class prior changes the classes: outputs made with another one are not this run's.
    hashes = [list(spec[1]), list(spec[2]),
              None if prior is None else [prior.temperature, prior.log_prior.tolist()]]
    fingerprints = {f.name: _fingerprint(f, hashes, batch) for f in manifest.fields}
    block = show_progress if progress else wait

    outcomes, todo = {}, []
    for f in manifest.fields:
        state = None if overwrite else _existing(f.out, fingerprints[f.name])
        if state == "complete":
            outcomes[f.name] = FieldOutcome(f.name, "skipped", f.out)
        elif state is not None:
            outcomes[f.name] = FieldOutcome(f.name, "failed", f.out, message=state)
        elif not os.path.isdir(os.path.dirname(f.out)):
            outcomes[f.name] = FieldOutcome(f.name, "failed", f.out, message=(
                f"{f.out}: folder {os.path.dirname(f.out)} does not exist"))
        else:
            todo.append(f)

    found = {f.name: client.submit(_read_sources, f, spec, pure=False) for f in todo}
    if found:
        block(list(found.values()))
    written = {}
    for f in todo:
        future = found.pop(f.name)
        if future.status == "error":
            outcomes[f.name] = FieldOutcome(f.name, "failed", f.out,
                                            message=_message(future.exception()))
            continue
        written[f.name] = _submit_field(client, f, future.result(), spec, size, manifest.tile,
                                        batch, torch_threads, fingerprints[f.name], overwrite)
    if written:
        block(list(written.values()))
    for f in todo:
        future = written.get(f.name)
        if future is None:
            continue
        if future.status == "error":
            outcomes[f.name] = FieldOutcome(f.name, "failed", f.out,
                                            message=_message(future.exception()))
        else:
            outcomes[f.name] = FieldOutcome(f.name, "done", f.out, n_sources=future.result())
    ordered = [outcomes[f.name] for f in manifest.fields]
    merged = None
    if merge and all(o.status != "failed" for o in ordered):
        merged = _merge(manifest, [[f.name, fingerprints[f.name]] for f in manifest.fields],
                        any(o.status == "done" for o in ordered), overwrite)
    return ordered, merged


# -- the command ---------------------------------------------------------------

def _quiet_task_failures(client):
    """Keep the workers from logging a failed task's traceback.

    A failed field is reported by the driver on one line; the worker's
    "Compute Failed" block (key, task, traceback) would bury it. A worker
    plugin also reaches workers that join later.
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietTaskFailures(WorkerPlugin):
        name = "starclf-quiet-task-failures"

        def setup(self, worker):
            import logging
            logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)

    client.register_plugin(QuietTaskFailures())


@contextlib.contextmanager
def _client(scheduler=None, workers=None):
    """A client of ``scheduler``'s cluster, or of a new LocalCluster of ``workers``
    single-threaded worker processes (closed on exit)."""
    from distributed import Client, LocalCluster
    if scheduler:
        with Client(scheduler) as client:
            _quiet_task_failures(client)
            yield client
    else:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            _quiet_task_failures(client)
            yield client


def command(args):
    """``starclf classify-batch``: run a manifest, or ``--bench``; the exit status.

    Prints one line per field. A failed field is reported on stderr as
    ``starclf: field NAME failed: ...`` and makes the exit status 1 (the
    other fields are done). Argument and manifest mistakes raise ValueError
    before anything starts (one line, exit status 2, from
    `glue_starclf.cli.main.main`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``classify-batch`` arguments: ``manifest``, ``bench``,
        ``scheduler``, ``local_workers``, ``torch_threads``, ``models`` and
        ``overwrite``.

    Returns
    -------
    int
        0 when every field (and the merged table) is done, 1 when one failed.
    """
    import sys
    workers = args.local_workers
    if workers is not None and workers < 1:
        raise ValueError(f"--local-workers {workers} must be >= 1")
    if args.torch_threads < 1:
        raise ValueError(f"--torch-threads {args.torch_threads} must be >= 1")
    if args.bench:
        if args.manifest or args.scheduler:
            raise ValueError("--bench takes no manifest and no --scheduler (it starts local "
                             "clusters of 1 and --local-workers (default 2) workers)")
        print(json.dumps(bench(models=args.models, workers=(1, workers or 2),
                               torch_threads=args.torch_threads)))
        return 0
    if not args.manifest:
        raise ValueError("classify-batch needs a MANIFEST (or --bench)")
    manifest = read_manifest(args.manifest)
    _model_spec(args.models if args.models is not None else manifest.models)  # fail early
    t0 = time.perf_counter()
    with _client(args.scheduler, workers or os.cpu_count()) as client:
        outcomes, merged = run_batch(manifest, client, models=args.models,
                                     overwrite=args.overwrite, torch_threads=args.torch_threads,
                                     progress=sys.stdout.isatty())
    for o in outcomes + ([merged] if merged is not None else []):
        what = "merged table" if o is merged else o.name
        if o.status == "done":
            print(f"{what}: {o.n_sources} sources; wrote {o.out}")
        elif o.status == "skipped":
            print(f"{what}: skipped, {o.out} is complete")
        else:
            print(f"starclf: {'merged table' if o is merged else 'field ' + o.name} failed: "
                  f"{o.message}", file=sys.stderr)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"starclf: {len(failed)} of {len(outcomes)} fields failed; the merged table "
              f"{manifest.merged} is written once every field is complete (a re-run skips "
              f"the complete fields)", file=sys.stderr)
        return 1
    print(f"{len(outcomes)} fields in {time.perf_counter() - t0:.1f} s")
    return 1 if merged.status == "failed" else 0


# -- benchmark -----------------------------------------------------------------

def _bench_fields(folder, n_fields, side, n_sources):
    """Mock fields written as FITS, each with a catalog of random positions; a manifest."""
    import numpy as np
    import yaml
    from astropy.table import Table

    from ..sim.mosaic import random_field, write_mosaic
    fields = []
    for i in range(n_fields):
        mock = random_field(seed=100 + i, shape=(side, side), n_sources=min(n_sources, 300))
        paths = write_mosaic(mock, folder / f"field{i}", prefix=f"f{i}")
        rng = np.random.default_rng(i)
        cat = Table({"id": np.arange(1, n_sources + 1),
                     "x": rng.uniform(0, side - 1, n_sources),
                     "y": np.sort(rng.uniform(0, side - 1, n_sources))})
        cat.write(folder / f"field{i}" / "sources.ecsv")
        fields.append({"name": f"field{i}",
                       "images": {b: str(p) for b, p in paths.items() if b != "truth"},
                       "catalog": f"field{i}/sources.ecsv", "distance_mpc": 10.0,
                       "out": f"out/field{i}.ecsv"})
    (folder / "out").mkdir()
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump({"fields": fields}))
    return path


def _cpu_seconds():
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _single_process(manifest, spec, torch_threads):
    """Wall and CPU seconds of ``starclf classify`` of every field, one after the other."""
    import torch

    from ..io.catalogs import read_catalog
    from ..io.mosaic import open_mosaic
    from ..core.predict import predict
    classifier = _ensemble("classifier", spec[0], spec[1])
    physical = _ensemble("physical", spec[0], spec[2])
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        t, cpu = time.perf_counter(), _cpu_seconds()
        for f in manifest.fields:
            with open_mosaic(list(f.images)) as mosaic:
                sources = read_catalog(f.catalog, wcs=mosaic.wcs, shape=mosaic.shape)
                predict(mosaic, sources, f.distance_mpc, classifier=classifier,
                        physical=physical)
        return time.perf_counter() - t, _cpu_seconds() - cpu
    finally:
        torch.set_num_threads(before)


def bench(models=None, workers=(1, 2), n_fields=2, side=2048, n_sources=3000, torch_threads=1,
          stream=None):
    """Throughput of `run_batch` on local clusters of 1 and N worker processes.

    Mock fields (``side`` x ``side`` x 5 FITS, catalogs of ``n_sources``
    random positions ordered by y, as LEGUS catalogs are) are classified in
    this process as ``starclf classify`` does (the baseline), then on each
    cluster size, timed after the models are loaded in every worker (the
    cluster start and model loading are reported apart). Worker CPU time is
    measured too: on a busy machine the wall-clock scaling is bounded by
    the share of the cores the workers get, which is reported.

    Parameters
    ----------
    models : path-like, optional
        Folder of model cards (default: the bundled models).
    workers : sequence of int
        Cluster sizes (one thread per worker).
    n_fields, side, n_sources : int
        Fields, their side [px] and sources per field.
    torch_threads : int
    stream : file, optional
        Where the report goes (default stdout).

    Returns
    -------
    dict
        The set-up; the single-process seconds and CPU ms per source; per
        cluster size: seconds, sources/s, scaling against the first size,
        worker CPU ms per source, CPU share (worker CPU time over workers x
        wall time), peak worker memory [GB] and ensembles loaded per worker.
    """
    import sys
    import tempfile
    stream = stream or sys.stdout
    spec = _model_spec(models)
    classifier = _ensemble("classifier", spec[0], spec[1])
    physical = _ensemble("physical", spec[0], spec[2])
    total = n_fields * n_sources
    result = {"fields": n_fields, "side": side, "sources": total,
              "classifier_members": len(classifier.members),
              "physical_members": len(physical.members), "torch_threads": torch_threads,
              "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(), "runs": []}
    print(f"classify-batch benchmark: {n_fields} fields of {side}x{side}x5 FITS, {total} "
          f"sources, classifier {len(classifier.members)} and physical "
          f"{len(physical.members)} member(s), {torch_threads} torch thread(s) per worker; "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}", file=stream)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = read_manifest(_bench_fields(tmp, n_fields, side, n_sources))
        seconds, cpu = _single_process(manifest, spec, torch_threads)
        result["single_process"] = {"seconds": round(seconds, 2),
                                    "sources_per_s": round(total / seconds, 1),
                                    "cpu_ms_per_source": round(1e3 * cpu / total, 2)}
        print(f"single process: {total} sources in {seconds:.1f} s = {total / seconds:.1f} "
              f"sources/s, {1e3 * cpu / total:.2f} CPU ms per source", file=stream)
        base = None
        for n in workers:
            for f in (tmp / "out").iterdir():
                f.unlink()
            t0 = time.perf_counter()
            with _client(workers=n) as client:
                client.run(_load_models, spec)
                start = time.perf_counter() - t0
                cpu0 = client.run(_cpu_seconds)
                t = time.perf_counter()
                outcomes, _ = run_batch(manifest, client, models=models,
                                        torch_threads=torch_threads, merge=False)
                seconds = time.perf_counter() - t
                cpu1 = client.run(_cpu_seconds)
                peak = max(client.run(_peak_rss_gb).values())
                loads = max(client.run(_load_models, spec).values())
            bad = [o.message for o in outcomes if o.status != "done"]
            if bad:
                raise RuntimeError(f"benchmark batch failed: {bad[0]}")
            cpu = sum(cpu1[w] - cpu0[w] for w in cpu1)
            rate = total / seconds
            base = base or rate
            run = {"workers": n, "seconds": round(seconds, 2), "sources_per_s": round(rate, 1),
                   "scaling": round(rate / base, 2),
                   "cpu_ms_per_source": round(1e3 * cpu / total, 2),
                   "cpu_share": round(cpu / (n * seconds), 2),
                   "peak_worker_rss_gb": round(peak, 2), "ensembles_loaded_per_worker": loads,
                   "cluster_start_s": round(start, 1)}
            result["runs"].append(run)
            print(f"{n} worker(s): {total} sources in {seconds:.1f} s = {rate:.1f} sources/s, "
                  f"scaling {rate / base:.2f}x; {1e3 * cpu / total:.2f} worker CPU ms per "
                  f"source, workers got {100 * cpu / (n * seconds):.0f}% of {n} core(s); peak "
                  f"worker memory {peak:.2f} GB; {loads} ensembles loaded per worker; cluster "
                  f"start and model loading {start:.1f} s", file=stream)
    return result
