"""Result writers: tables (ECSV/FITS/CSV) and DS9 region files, written atomically.

Every writer renders into a temporary file in the target folder and moves it
into place with `os.replace`, so a reader never sees a partial file and a
failure leaves the old file (or nothing) behind. An existing file is
replaced only with ``overwrite=True``.

DS9 files hold one circle per source in the ``image`` frame, which DS9 and
astropy ``regions`` write 1-based: a source at 0-based (10, 20) is written
``circle(11,21,r)``. `regions` converts both ways itself (its `PixCoord`
is 0-based), so `write_regions` / `read_regions` take and give 0-based
positions.
"""

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from astropy.io.fits.verify import VerifyWarning
from astropy.units import UnitsWarning
from astropy.table import Table

__all__ = ["TABLE_FORMATS", "CLASS_COLOURS", "UNKNOWN_COLOUR", "write_table",
           "write_regions", "read_regions", "atomic_write"]

#: Output extension -> astropy table format.
TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".csv": "ascii.csv"}

#: DS9 colour of each LEGUS class.
CLASS_COLOURS = {1: "green", 2: "cyan", 3: "yellow", 4: "red"}
UNKNOWN_COLOUR = "white"


def _check_target(path, overwrite):
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (use --overwrite to replace it)")
    if path.is_dir():
        raise FileExistsError(f"{path} is a folder")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: folder {parent} does not exist")
    return path


def atomic_write(path, write, overwrite=False):
    """Write a file through ``write(tmp_path)`` and move it into place.

    Parameters
    ----------
    path : path-like
        Final file.
    write : callable
        Called with the path of a temporary file in the same folder; it must
        write the whole file there.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        If the folder of ``path`` does not exist.
    """
    path = _check_target(path, overwrite)
    # Same folder: os.replace is then an atomic rename on one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                               dir=path.absolute().parent)
    os.close(fd)
    try:
        write(tmp)
        mode = (path.stat().st_mode & 0o777) if path.exists() else _default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _default_mode():
    # mkstemp makes 0600 files; give the result the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fits_ready(table):
    """A shallow copy whose non-scalar metadata are JSON strings (FITS header values)."""
    out = table.copy(copy_data=False)
    for key, value in list(out.meta.items()):
        if not isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
            out.meta[key] = json.dumps(value, default=str)
    return out


def write_table(table, path, overwrite=False):
    """Write a table as ECSV, FITS or CSV, chosen by the file extension.

    Parameters
    ----------
    table : astropy.table.Table
    path : path-like
        Ends in ``.ecsv``, ``.fits`` or ``.csv`` (any case).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If the extension is none of the three.
    FileExistsError
        If the file exists and ``overwrite`` is False.
    FileNotFoundError
        If its folder does not exist.

    Notes
    -----
    FITS headers hold scalars only: other ``meta`` values are written as
    JSON strings. CSV keeps no metadata.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in TABLE_FORMATS:
        raise ValueError(f"{path}: unknown output extension {ext or '(none)'!r} "
                         f"(use {', '.join(TABLE_FORMATS)})")
    fmt = TABLE_FORMATS[ext]
    if fmt == "fits":
        table = _fits_ready(table)

    def write(tmp):
        with warnings.catch_warnings():
            # Long keys become HIERARCH cards and units such as dex(yr) have no
            # FITS form; astropy reports both, the ECSV output keeps them.
            warnings.simplefilter("ignore", VerifyWarning)
            warnings.simplefilter("ignore", UnitsWarning)
            warnings.filterwarnings("ignore", message=".*could not be saved in native FITS")
            table.write(tmp, format=fmt, overwrite=True)

    return atomic_write(path, write, overwrite=overwrite)


def _class_of(table):
    if "class" not in table.colnames:
        return np.zeros(len(table), np.int64)
    c = np.ma.filled(np.ma.asarray(table["class"], dtype=float), np.nan)
    ok = np.isfinite(c) & (c == np.round(c))
    return np.where(ok, np.where(ok, c, 0), 0).astype(np.int64)


def write_regions(table, path, overwrite=False, radius=4.0):
    """Write a DS9 region file: a circle per source, coloured and labelled by class.

    Parameters
    ----------
    table : astropy.table.Table
        0-based ``x``, ``y`` and optionally ``class`` (1-4; other values and
        a missing column are "unknown") and ``id`` (written as a DS9 tag).
        Rows with non-finite positions are skipped.
    path : path-like
    overwrite : bool
        Replace an existing file.
    radius : float
        Circle radius [px].

    Returns
    -------
    pathlib.Path
    """
    from regions import CirclePixelRegion, PixCoord, Regions

    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"region radius {radius!r} must be a positive number of pixels")
    for name in ("x", "y"):
        if name not in table.colnames:
            raise ValueError(f"table has no {name!r} column to write regions from")
    x = np.ma.filled(np.ma.asarray(table["x"], dtype=float), np.nan)
    y = np.ma.filled(np.ma.asarray(table["y"], dtype=float), np.nan)
    cls = _class_of(table)
    ids = np.asarray(table["id"]) if "id" in table.colnames else None
    shapes = []
    for i in np.flatnonzero(np.isfinite(x) & np.isfinite(y)):
        c = int(cls[i])
        meta = {"text": str(c) if c in CLASS_COLOURS else "?"}
        if ids is not None:
            meta["tag"] = [f"id={ids[i]}"]
        shapes.append(CirclePixelRegion(PixCoord(x[i], y[i]), float(radius), meta=meta,
                                        visual={"color": CLASS_COLOURS.get(c, UNKNOWN_COLOUR)}))
    # regions writes nothing for no shapes; DS9 wants the header and frame.
    text = Regions(shapes).serialize(format="ds9") if shapes else \
        "# Region file format: DS9 astropy/regions\nimage\n"

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, write, overwrite=overwrite)


def read_regions(path):
    """Read circles of a DS9 region file written by `write_regions`.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    astropy.table.Table
        ``x``, ``y`` (0-based), ``radius``, ``class`` (0 when the text is not
        a class), ``color`` and ``id`` (from the tag, "" when absent) per
        circle in the ``image`` frame.
    """
    from regions import CirclePixelRegion, Regions

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such region file")
    regs = [r for r in Regions.read(str(path), format="ds9")
            if isinstance(r, CirclePixelRegion)]
    out = Table()
    out["x"] = np.array([r.center.x for r in regs], float)
    out["y"] = np.array([r.center.y for r in regs], float)
    out["radius"] = np.array([r.radius for r in regs], float)
    texts = [str(r.meta.get("text", "")) for r in regs]
    out["class"] = np.array([int(t) if t.isdigit() else 0 for t in texts], np.int64)
    out["color"] = np.array([str(r.visual.get("color", r.visual.get("edgecolor", "")))
                             for r in regs], dtype=str)
    tags = [r.meta.get("tag", []) for r in regs]
    out["id"] = np.array([next((t[3:] for t in (tg if isinstance(tg, list) else [tg])
                                if str(t).startswith("id=")), "") for tg in tags], dtype=str)
    return out
