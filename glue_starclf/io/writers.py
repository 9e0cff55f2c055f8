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

__all__ = ["TABLE_FORMATS", "REGION_EXTENSIONS", "CLASS_COLOURS", "UNKNOWN_COLOUR",
           "write_table", "write_regions", "read_regions", "atomic_write", "OutputSet",
           "table_writer", "regions_writer"]

#: Output extension -> astropy table format.
TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".csv": "ascii.csv"}

#: DS9 colour of each LEGUS class.
CLASS_COLOURS = {1: "green", 2: "cyan", 3: "yellow", 4: "red"}
UNKNOWN_COLOUR = "white"


#: Extension of DS9 region files.
REGION_EXTENSIONS = (".reg",)

# Temporary files carry the writing process's id, so a later run can tell the
# leftovers of a killed run (its process is gone) from those of a live one.
_TMP = ".{name}.starclf-{pid}-"


def _check_target(path, overwrite):
    path = Path(path)
    if path.is_dir():
        raise FileExistsError(f"{path} is a folder")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (use --overwrite to replace it)")
    parent = path.absolute().parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise FileNotFoundError(f"{path}: folder {parent} {what}")
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's live process
        return True
    return True


def _clean_stale(path):
    """Remove temporary files of ``path`` left by runs that were killed."""
    prefix = f".{path.name}.starclf-"
    try:
        names = os.listdir(path.absolute().parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                os.unlink(path.absolute().parent / name)
            except OSError:
                pass


class _BlockedSignals:
    """SIGINT/SIGTERM held back while the files are moved into place."""

    def __enter__(self):
        import signal
        import threading
        self._old = None
        if hasattr(signal, "pthread_sigmask") and threading.current_thread() is \
                threading.main_thread():
            self._old = signal.pthread_sigmask(signal.SIG_BLOCK,
                                               {signal.SIGINT, signal.SIGTERM})
        return self

    def __exit__(self, *exc):
        import signal
        if self._old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


class OutputSet:
    """Output files written as one transaction: all new, or all as they were.

    Every target is checked when the set is made, before any work: its folder
    exists, it is not a folder, it is not given twice, it does not exist
    unless ``overwrite`` (and, for kinds given, its extension); a temporary
    file is created next to each target then, which also proves the folder
    writable. `write` fills a target's temporary file; `commit` moves all of
    them into place with SIGINT/SIGTERM held back, undoing the moves already
    made if one fails, so an interruption leaves either every old file or
    every new one. Without ``overwrite`` a target that appeared after the set
    was made (a second run writing the same file) is never replaced. Used as a
    context manager, an exception (or leaving without `commit`) removes the
    temporary files; those of a killed run are removed by the next run that
    writes the same file. Error messages name the targets, never a temporary
    file.

    Parameters
    ----------
    targets : dict or sequence
        ``{path: kind}``, ``(path, kind)`` pairs or paths (None paths are
        skipped); ``kind`` is
        ``"table"`` (extension in `TABLE_FORMATS`), ``"regions"`` (in
        `REGION_EXTENSIONS`) or None (any).
    overwrite : bool
        Replace existing files.
    """

    def __init__(self, targets, overwrite=False):
        if isinstance(targets, dict):
            targets = list(targets.items())
        targets = [t if isinstance(t, tuple) else (t, None) for t in targets]
        self.overwrite = bool(overwrite)
        self._tmp = {}
        self._written = set()
        targets = [(Path(p), k) for p, k in targets if p is not None and p != ""]
        seen = {}
        for path, _ in targets:
            key = os.path.normcase(os.path.realpath(path))
            if key in seen:
                raise ValueError(f"{path} is given as two outputs ({seen[key]} and {path}): "
                                 f"they must differ")
            seen[key] = path
        for path, kind in targets:
            _check_extension(path, kind)
            _check_target(path, overwrite)
            self._tmp[path] = None
        try:
            for path in self._tmp:
                _clean_stale(path)
                try:
                    fd, tmp = tempfile.mkstemp(
                        prefix=_TMP.format(name=path.name, pid=os.getpid()), suffix=".tmp",
                        dir=path.absolute().parent)
                except OSError as exc:
                    raise PermissionError(f"{path}: cannot write in folder "
                                          f"{path.absolute().parent} ({exc.strerror})") from None
                os.close(fd)
                self._tmp[path] = tmp
        except BaseException:
            self.discard()
            raise

    @property
    def paths(self):
        """The targets, in the order given."""
        return list(self._tmp)

    def write(self, path, write):
        """Fill the temporary file of target ``path`` through ``write(tmp_path)``."""
        path = Path(path)
        tmp = self._tmp[path]
        try:
            write(tmp)
        except Exception as exc:
            text = str(exc).replace(tmp, str(path))
            if text != str(exc):
                try:
                    exc = type(exc)(text)
                except Exception:  # exception types with other signatures
                    exc = OSError(text)
                raise exc from None
            raise
        self._written.add(path)

    def commit(self):
        """Move every written file into place, all or none.

        Raises
        ------
        FileExistsError
            Without ``overwrite``, if a target appeared since the set was
            made; nothing is replaced then.
        """
        missing = [p for p in self._tmp if p not in self._written]
        if missing:
            raise RuntimeError(f"{missing[0]}: nothing was written for it")
        done = []  # (path, backup or None)
        with _BlockedSignals():
            try:
                for path, tmp in self._tmp.items():
                    mode = (path.stat().st_mode & 0o777) if path.exists() else _default_mode()
                    os.chmod(tmp, mode)
                    backup = None
                    if self.overwrite:
                        if path.exists():
                            backup = tmp + ".old"
                            os.link(path, backup)
                        os.replace(tmp, path)
                    else:
                        _link_new(tmp, path)
                    done.append((path, backup))
            except BaseException:
                for path, backup in reversed(done):
                    try:
                        if backup is not None:
                            os.replace(backup, path)
                        else:
                            os.unlink(path)
                    except OSError:
                        pass
                self.discard()
                raise
            for _, backup in done:
                if backup is not None:
                    os.unlink(backup)
        self._tmp = {p: None for p in self._tmp}

    def discard(self):
        """Remove the temporary files (the targets are untouched)."""
        for path, tmp in self._tmp.items():
            for name in (tmp, tmp and tmp + ".old"):
                if name:
                    try:
                        os.unlink(name)
                    except FileNotFoundError:
                        pass
            self._tmp[path] = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.discard()


def _link_new(tmp, path):
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (no replacing)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} appeared while this run was working (another run "
                              f"writing it?); it was not replaced and no output was "
                              f"written (use --overwrite to replace it)") from None
    except OSError:
        # A file system without hard links: a check-then-rename is the best left.
        if os.path.lexists(path):
            raise FileExistsError(f"{path} appeared while this run was working; it was "
                                  f"not replaced (use --overwrite to replace it)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _check_extension(path, kind):
    ext = path.suffix.lower()
    if kind == "table" and ext not in TABLE_FORMATS:
        raise ValueError(f"{path}: unknown output extension {ext or '(none)'!r} "
                         f"(use {', '.join(TABLE_FORMATS)})")
    if kind == "regions" and ext not in REGION_EXTENSIONS:
        raise ValueError(f"{path}: a DS9 region file must end in "
                         f"{' or '.join(REGION_EXTENSIONS)}, not {ext or '(none)'!r}")


def atomic_write(path, write, overwrite=False):
    """Write a file through ``write(tmp_path)`` and move it into place.

    A one-file `OutputSet`.

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
        If ``path`` exists (or appears while writing) and ``overwrite`` is False.
    FileNotFoundError
        If the folder of ``path`` does not exist.
    """
    path = Path(path)
    with OutputSet([path], overwrite=overwrite) as out:
        out.write(path, write)
        out.commit()
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
    _check_extension(path, "table")
    return atomic_write(path, table_writer(table, path), overwrite=overwrite)


def table_writer(table, path):
    """A ``write(tmp_path)`` function that writes ``table`` in the format of ``path``'s extension.

    For `OutputSet.write`; see `write_table`.
    """
    path = Path(path)
    _check_extension(path, "table")
    fmt = TABLE_FORMATS[path.suffix.lower()]
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

    return write


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
    return atomic_write(path, regions_writer(table, radius), overwrite=overwrite)


def regions_writer(table, radius=4.0):
    """A ``write(tmp_path)`` function that writes the DS9 regions of `write_regions`.

    For `OutputSet.write`; the table is checked and rendered here, at once.
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

    return write


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
