"""Readers for star-cluster catalogs (LEGUS ``.tab`` files) and field distances.

LEGUS catalogs (Calzetti et al. 2015; Adamo et al. 2017; MAST high-level
science products ``hlsp_legus_hst_*_<field>_multiband_*.tab``) are
whitespace-separated numeric tables without a header. Columns 1-33 have the
same meaning in every file (``LEGUS_columns_description.txt``) except
ngc1313-e/w, which insert a second x/y pair as columns 4-5 and so shift
every later column by two (`COLUMN_SHIFTS`). The visual class column varies
more: it is column 34 in most files, but the public files of a few fields
carry other columns first. `CLASS_COLUMN_OVERRIDES` lists them; each choice
reproduces the per-galaxy class counts of Table 6 of Pérez et al. (2021,
StarcNet) exactly (``tests/test_catalogs.py`` checks it).
"""

import logging
import re
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

from .bands import BANDS

__all__ = ["LEGUS_FIELDS", "DEFAULT_CLASS_COLUMN", "CLASS_COLUMN_OVERRIDES",
           "COLUMN_SHIFTS", "PIXEL_CONVENTION", "read_legus_tab", "legus_field_name",
           "legus_distance_mpc", "read_catalog", "read_labels_file"]

#: Galaxy distances [Mpc] from Table 6 of Pérez et al. (2021, StarcNet),
#: which takes them from Calzetti et al. (2015) except NGC 1566 (Sabbi et al.
#: 2018). Keys are galaxy names in lower case without spaces; fields observed
#: in two pointings (``ngc1313-e``/``-w``, ``ngc4395-n``/``-s``,
#: ``ngc7793-e``/``-w``) share their galaxy's entry. LEGUS fields missing from
#: that table (eso486-g021, ngc3274, ngc4248, ngc4485, ugc5340, ugc7242) are
#: not listed rather than given a distance from elsewhere.
LEGUS_FIELDS = {
    "ic4247": 5.11,
    "ic559": 5.3,
    "ngc1313": 4.39,
    "ngc1433": 8.3,
    "ngc1566": 17.9,
    "ngc1705": 5.1,
    "ngc3344": 7.0,
    "ngc3351": 10.0,
    "ngc3738": 4.9,
    "ngc4242": 5.8,
    "ngc4395": 4.3,
    "ngc4449": 4.31,
    "ngc45": 6.61,
    "ngc4656": 5.5,
    "ngc5194": 7.66,  # Table 6 row "NGC 5194+5195" (one mosaic, M51)
    "ngc5195": 7.66,
    "ngc5238": 4.51,
    "ngc5253": 3.15,
    "ngc5474": 6.8,
    "ngc5477": 6.4,
    "ngc628": 9.9,
    "ngc6503": 5.27,
    "ngc7793": 3.44,
    "ugc1249": 6.9,
    "ugc4305": 3.05,
    "ugc4459": 3.66,
    "ugc5139": 3.98,
    "ugc685": 4.83,
    "ugc695": 10.9,
    "ugc7408": 6.7,
    "ugca281": 5.9,
}

#: 1-based class column used when a field has no override: "final assigned
#: class ... applying the mode" in ``LEGUS_columns_description.txt``.
DEFAULT_CLASS_COLUMN = 34

#: Fields whose class column is not `DEFAULT_CLASS_COLUMN` (1-based), chosen
#: by matching Table 6 of StarcNet. In these files column 34 holds something
#: else: the fit probability Q in ngc1313-e/w (see `COLUMN_SHIFTS`), a 0/1
#: flag in ngc3351, ngc4242 and ngc45. (ngc1566 and ngc4449 do use column 34: ngc1566's extra
#: columns 35-39 are method flags and other classifications; ngc4449 marks
#: uninspected sources with class 5, read as 0.)
CLASS_COLUMN_OVERRIDES = {
    "ngc1313-e": 36,
    "ngc1313-w": 36,
    "ngc3351": 35,
    "ngc4242": 35,
    "ngc45": 35,
}

#: Fields whose columns after x/y (file columns 4 onward) sit this many
#: columns to the right of the standard layout. ngc1313-e/w give x/y twice:
#: columns 2-3 in the pointing's own mosaic (used here) and 4-5 in a frame
#: common to both pointings (dropped).
COLUMN_SHIFTS = {"ngc1313-e": 2, "ngc1313-w": 2}

PIXEL_CONVENTION = "LEGUS x/y are 1-based FITS pixels; converted to 0-based"

#: Sentinels of the LEGUS photometry columns.
_NOT_DETECTED = 99.999
_OUTSIDE_FRAME = 66.666
_CI_APCOR_UNDEFINED = 44.444  # only in the CI-based catalogs, read as missing too

# 0-based column indices of the fixed part (columns 1-33).
_N_FIXED = 33
_MAG_COLUMNS = dict(zip(BANDS, range(5, 15, 2)))  # mag; its error follows
_SED_COLUMNS = {"age_yr": 16, "mass_msun": 19, "ebv": 22}
_CI_COLUMN = 15
_NFLT_COLUMN = 32
#: CI above this comes from an undetected (99.999) 1-px magnitude.
_CI_MAX = 20.0

_FIELD_RE = re.compile(r"^hlsp_legus_hst_[^_]+_(?P<field>[^_]+)_multiband", re.I)


def legus_field_name(path):
    """Field name of a LEGUS catalog file name, e.g. ``"ngc7793-e"``.

    Parameters
    ----------
    path : path-like
        A ``hlsp_legus_hst_<instruments>_<field>_multiband_...`` file name;
        other names give their stem in lower case.

    Returns
    -------
    str
    """
    name = Path(path).name
    m = _FIELD_RE.match(name)
    return m.group("field").lower() if m else Path(name).stem.lower()


def _is(values, sentinel):
    return np.abs(values - sentinel) < 5e-4


def read_legus_tab(path, class_column=None):
    """Read a LEGUS cluster catalog (``.tab``) into a table.

    Parameters
    ----------
    path : path-like
        The catalog file.
    class_column : int, optional
        1-based file column holding the visual class. Default: the field's
        entry in `CLASS_COLUMN_OVERRIDES`, else `DEFAULT_CLASS_COLUMN`.

    Returns
    -------
    astropy.table.Table
        One row per source, with columns

        - ``id`` (int), ``x``, ``y`` (0-based pixels of the field mosaic:
          file value - 1), ``ra``, ``dec`` [deg];
        - ``mag_<band>``, ``err_<band>`` for the five model bands (Vega mag).
          F435W photometry (ACS fields) fills the F438W slot and F606W the
          F555W slot, as in the file. Sentinels become NaN: 99.999 (not
          detected), 66.666 (outside the frame, also flagged in the boolean
          ``outside_<band>``) and 44.444 (CI-based catalogs only). A NaN
          magnitude with ``outside_<band>`` False means "not detected";
        - ``n_bands`` (int): number of bands with a finite magnitude;
        - ``ci``: concentration index in V (NaN where the file's value is an
          artefact of an undetected 1-px magnitude, CI > 20);
        - ``sed_fit`` (bool): the catalog's SED fit was run (its number of
          filters is 4 or 5); ``age_yr``, ``mass_msun``, ``ebv`` are the
          best-fit values, NaN where ``sed_fit`` is False (the files hold 0
          or the placeholders 2e8 / 200 / 200 there);
        - ``class`` (int): 0 = not inspected, 1-4 = LEGUS classes. Integer
          values outside 0-4 (class 5 in ngc4449, a stray 50 in ngc4242) are
          read as 0 and counted in ``meta["class_out_of_range"]``.

        ``meta`` holds ``path``, ``field``, ``class_column`` (1-based),
        ``column_shift`` (`COLUMN_SHIFTS`), ``n_columns``,
        ``pixel_convention`` and ``class_out_of_range`` (``{value: count}``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a whitespace-separated numeric table with at least
        34 columns (and ``class_column`` columns), or its class column holds
        non-integer values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such LEGUS catalog file")
    field = legus_field_name(path)
    shift = COLUMN_SHIFTS.get(field, 0)
    n_fixed = _N_FIXED + shift
    col = CLASS_COLUMN_OVERRIDES.get(field, DEFAULT_CLASS_COLUMN) \
        if class_column is None else class_column
    if isinstance(col, bool) or not isinstance(col, (int, np.integer)) or col <= n_fixed:
        raise ValueError(f"{path}: class_column must be an integer > {n_fixed} "
                         f"(1-based), got {col!r}")
    col = int(col)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, UnicodeDecodeError) as exc:
        lines = str(exc).strip().splitlines()
        detail = lines[-1] if lines else type(exc).__name__
        raise ValueError(
            f"{path}: not a whitespace-separated numeric table ({detail})") from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no data rows")
    n_cols = data.shape[1]
    if n_cols < col:
        raise ValueError(f"{path}: has {n_cols} columns, a LEGUS catalog needs at "
                         f"least {col} (class column {col})")

    def column(j):  # standard 0-based index -> this file's column
        return data[:, j + shift] if j >= 3 else data[:, j]

    table = Table(meta={
        "path": str(path),
        "field": field,
        "class_column": col,
        "column_shift": shift,
        "n_columns": n_cols,
        "pixel_convention": PIXEL_CONVENTION,
    })
    table["id"] = column(0).astype(np.int64)
    table["x"] = column(1) - 1.0
    table["y"] = column(2) - 1.0
    table["ra"] = column(3)
    table["dec"] = column(4)
    n_bands = np.zeros(len(data), dtype=np.int64)
    for band, j in _MAG_COLUMNS.items():
        mag, err = column(j).copy(), column(j + 1).copy()
        outside = _is(mag, _OUTSIDE_FRAME)
        missing = (outside | _is(mag, _NOT_DETECTED) | _is(mag, _CI_APCOR_UNDEFINED)
                   | ~np.isfinite(mag))
        mag[missing] = np.nan
        err[missing | _is(err, _NOT_DETECTED) | _is(err, _OUTSIDE_FRAME)
            | _is(err, _CI_APCOR_UNDEFINED)] = np.nan
        table[f"mag_{band}"] = mag
        table[f"err_{band}"] = err
        table[f"outside_{band}"] = outside
        n_bands += ~missing
    table["n_bands"] = n_bands
    ci = column(_CI_COLUMN).copy()
    ci[~(ci <= _CI_MAX)] = np.nan
    table["ci"] = ci
    sed_fit = np.isin(column(_NFLT_COLUMN), (4.0, 5.0))
    table["sed_fit"] = sed_fit
    for name, j in _SED_COLUMNS.items():
        table[name] = np.where(sed_fit, column(j), np.nan)

    raw = data[:, col - 1]
    bad = ~np.isfinite(raw) | (raw != np.round(raw))
    if bad.any():
        raise ValueError(f"{path}: column {col} holds non-integer class values "
                         f"(e.g. {raw[bad][0]:g}); it is not a class column")
    cls = raw.astype(np.int64)
    out_of_range = (cls < 0) | (cls > 4)
    values, counts = np.unique(cls[out_of_range], return_counts=True)
    table.meta["class_out_of_range"] = {int(v): int(c) for v, c in zip(values, counts)}
    cls[out_of_range] = 0
    table["class"] = cls
    return table


def legus_distance_mpc(field_or_path):
    """Distance [Mpc] of a LEGUS galaxy (StarcNet Table 6).

    Parameters
    ----------
    field_or_path : str or path-like
        A field or galaxy name in any case and spacing (``"NGC 1566"``,
        ``"ngc7793-e"``) or the path of a LEGUS catalog file.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the galaxy is not in `LEGUS_FIELDS`.
    """
    text = str(field_or_path)
    if isinstance(field_or_path, Path) or text.endswith(".tab") or "/" in text:
        name = legus_field_name(field_or_path)
    else:
        name = text
    key = re.sub(r"[\s_]+", "", name.strip().lower())
    # A pointing ("ngc7793-e") or a mosaic ("ngc5194-ngc5195") of a galaxy.
    key = key if key in LEGUS_FIELDS else key.split("-")[0]
    if key not in LEGUS_FIELDS:
        raise ValueError(f"no distance for LEGUS field {name!r} "
                         f"(not in StarcNet Table 6)")
    return LEGUS_FIELDS[key]


# -- any catalog -----------------------------------------------------------------

#: File name endings read as tables by astropy (format name for `Table.read`).
_TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits",
                  ".fit": "fits", ".fts": "fits", ".fits.gz": "fits"}
_ID_COLUMNS = ("id", "index")


def _suffix(path):
    name = path.name.lower()
    return ".fits.gz" if name.endswith(".fits.gz") else path.suffix.lower()


def _sniff(path):
    """Format of a file from its first bytes: "fits", "ecsv", "legus" or None."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.lstrip().startswith(b"# %ECSV"):
        return "ecsv"
    try:
        first = next((ln for ln in head.decode("ascii").splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#")), "")
    except UnicodeDecodeError:
        return None
    fields = first.split()
    try:
        [float(v) for v in fields]
    except ValueError:
        return None
    return "legus" if len(fields) >= DEFAULT_CLASS_COLUMN else None


def _is_blank(path):
    """True for an empty file or one with only blank and comment lines."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if len(head) == 65536 or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()) \
        and not text.lstrip().startswith("# %ECSV")


def _column(table, *names):
    """Name of the first column matching one of ``names`` (any case), or None."""
    lower = {c.lower(): c for c in table.colnames}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def _degrees(col, path=None, name=None, hours=False):
    """Column values in degrees: numbers (a unit, when given, is honoured) or
    sexagesimal text (``10:00:01.2`` / ``10h00m01.2s``; ra in hours when
    ``hours``), read with astropy; anything else is an error naming the
    file, column and row."""
    if getattr(col, "dtype", np.dtype(float)).kind in "US":
        return _sexagesimal(col, path, name, hours)
    values = _fill(col, path, name)
    unit = getattr(col, "unit", None)
    if unit is not None:
        try:
            values = (values * unit).to_value("deg")
        except Exception:  # a non-angle unit: take the numbers as degrees
            pass
    return values


def _sexagesimal(col, path, name, hours):
    from astropy.coordinates import Angle
    text = np.asarray(np.ma.filled(np.ma.asarray(col), ""), dtype=str)
    out = np.full(len(text), np.nan)
    for i, value in enumerate(text.tolist()):
        v = value.strip()
        if not v:
            continue
        try:
            out[i] = float(v)
            continue
        except ValueError:
            pass
        sexa = ":" in v or any(ch in v.lower() for ch in "hdms") or " " in v
        try:
            if not sexa:
                raise ValueError(v)
            unit = "hourangle" if hours and ("h" in v.lower() or ":" in v or " " in v) \
                else "deg"
            out[i] = Angle(v, unit=unit).to_value("deg")
        except Exception:
            raise ValueError(f"{path}: column {name!r}, row {i + 1}: {value!r} is neither a "
                             f"number of degrees nor a sexagesimal angle") from None
    return out


def _fill(col, path=None, name=None):
    """A column as a float array, masked entries as NaN; text that is not a
    number is an error naming the file, column and row."""
    try:
        return np.asarray(np.ma.filled(np.ma.asarray(col, dtype=float), np.nan), float)
    except (TypeError, ValueError):
        pass
    text = np.asarray(np.ma.filled(np.ma.asarray(col), ""), dtype=str)
    out = np.full(len(text), np.nan)
    for i, value in enumerate(text.tolist()):
        if not value.strip():
            continue
        try:
            out[i] = float(value)
        except ValueError:
            raise ValueError(f"{path}: column {name!r}, row {i + 1}: {value!r} is not a "
                             f"number") from None
    return out


def _warn_duplicate_ids(ids, path, log):
    ids = np.asarray(ids)
    if ids.size < 2:
        return
    values, counts = np.unique(ids, return_counts=True)
    dup = counts > 1
    if dup.any():
        log.warning("%s: %d rows share their id with another row (%d ids used more than "
                    "once, e.g. %s); results keep them as separate sources", path,
                    int(counts[dup].sum()), int(dup.sum()), values[dup][0])


def _standard(table, x, y, ra, dec, ids, meta):
    """``id, x, y, ra, dec`` first, then the original columns."""
    out = Table(meta=dict(table.meta))
    out.meta.update(meta)
    out["id"] = ids
    out["x"] = np.asarray(x, float)
    out["y"] = np.asarray(y, float)
    out["ra"] = np.asarray(ra, float)
    out["dec"] = np.asarray(dec, float)
    for name in ("x", "y"):
        out[name].unit = "pix"
    for name in ("ra", "dec"):
        out[name].unit = "deg"
    for name in table.colnames:
        if name not in out.colnames:
            out[name] = table[name]
    return out


def read_catalog(path, wcs=None, shape=None):
    """Read a source catalog of any supported format into 0-based pixels.

    Formats, found by file name and, failing that, by content:

    - LEGUS ``.tab`` (or ``.txt``): `read_legus_tab`; x/y are 1-based FITS
      pixels, converted to 0-based;
    - PHANGS-HST cluster catalog (FITS with ``PHANGS_X``/``PHANGS_Y``,
      0-based); ``PHANGS_RA``/``PHANGS_DEC`` are its sky positions;
    - ECSV, CSV or FITS tables with ``x``, ``y`` (0-based) or ``ra``, ``dec``
      (degrees ICRS, converted with ``wcs``); column names in any case.
      With both, ``x``/``y`` win.

    The convention used is logged (logger ``glue_starclf``) and stored in
    ``meta["pixel_convention"]``.

    Parameters
    ----------
    path : path-like
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the mosaic. Needed for ra/dec-only catalogs; with
        it, ``ra``/``dec`` are recomputed from the pixel positions (the file's
        own are kept as ``ra_catalog``/``dec_catalog``).
    shape : (int, int), optional
        ``(ny, nx)`` of the mosaic, to log how many sources fall off it.

    Returns
    -------
    astropy.table.Table
        ``id``, ``x``, ``y`` (0-based float pixels), ``ra``, ``dec`` [deg]
        (the WCS's, else the file's, else NaN), then the file's other
        columns. ``id`` is the file's ``id`` column (or PHANGS
        ``ID_PHANGS_CLUSTERS``, or ``INDEX``), else 1..n. An empty file gives
        an empty table (the caller warns).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be read as a table, has no position columns (the
        message lists the columns found), or has only ra/dec and no ``wcs``
        is given.
    """
    log = logging.getLogger("glue_starclf")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such catalog file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    if wcs is not None and not getattr(wcs, "has_celestial", False):
        wcs = None
    suffix = _suffix(path)

    def sky(x, y):
        if wcs is None or len(x) == 0:
            return np.full(len(x), np.nan), np.full(len(x), np.nan)
        ra, dec = wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
        return ra, dec

    def done(out):
        _warn_duplicate_ids(out["id"], path, log)
        if shape is not None and len(out):
            ny, nx = shape
            off = ~((out["x"] >= -0.5) & (out["x"] < nx - 0.5)
                    & (out["y"] >= -0.5) & (out["y"] < ny - 0.5))
            if off.any():
                log.warning("%s: %d of %d sources lie outside the %dx%d mosaic",
                            path, int(off.sum()), len(out), nx, ny)
        return out

    if _is_blank(path):
        log.warning("%s: empty catalog", path)
        empty = np.zeros(0)
        return _standard(Table(), empty, empty, empty, empty, np.zeros(0, np.int64),
                         {"path": str(path), "catalog_format": "empty",
                          "pixel_convention": "none (no rows)"})

    # .tab is LEGUS; .txt and unknown endings are told by their content.
    kind = "legus" if suffix == ".tab" else _TABLE_FORMATS.get(suffix)
    if kind is None:
        kind = _sniff(path)
    if kind == "legus":
        t = read_legus_tab(path)
        log.info("%s: LEGUS catalog; %s", path, PIXEL_CONVENTION)
        ra, dec = sky(t["x"], t["y"])
        ra_file, dec_file = _fill(t["ra"], path, "ra"), _fill(t["dec"], path, "dec")
        rest = t.copy()
        del rest["id"], rest["x"], rest["y"], rest["ra"], rest["dec"]
        if wcs is None:
            ra, dec = ra_file, dec_file
        else:
            rest["ra_catalog"], rest["dec_catalog"] = ra_file, dec_file
        return done(_standard(rest, t["x"], t["y"], ra, dec, np.asarray(t["id"]),
                              {"catalog_format": "legus", "pixel_convention": PIXEL_CONVENTION}))

    fmt = {"fits": "fits", "ecsv": "ascii.ecsv"}.get(kind, kind)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unit and metadata chatter of real catalogs
            t = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many types for unreadable files
        lines = str(exc).strip().splitlines()
        detail = lines[0] if lines else type(exc).__name__
        raise ValueError(f"{path}: cannot read it as a catalog table ({detail})") from None
    meta = {"path": str(path), "catalog_format": fmt or "ascii"}

    px, py = _column(t, "PHANGS_X"), _column(t, "PHANGS_Y")
    if px and py:
        convention = "PHANGS_X/PHANGS_Y are 0-based pixels (used as is)"
        meta["catalog_format"] = "phangs"
        cra, cdec = _column(t, "PHANGS_RA"), _column(t, "PHANGS_DEC")
        id_col = _column(t, "id", "ID_PHANGS_CLUSTERS", "ID_PHANGS_CLUSTER") or next(
            (c for c in t.colnames if c.upper().startswith("ID_PHANGS")), None) or \
            _column(t, "INDEX")
    else:
        px, py = _column(t, "x"), _column(t, "y")
        cra, cdec = _column(t, "ra"), _column(t, "dec")
        id_col = _column(t, *_ID_COLUMNS)
        convention = "x/y are 0-based pixels (numpy/glue convention, used as is)"
    ids = np.asarray(t[id_col]) if id_col else np.arange(1, len(t) + 1, dtype=np.int64)
    rest = t.copy(copy_data=False)
    if id_col and id_col != "id":
        del rest[id_col]
    for c in ("id", "x", "y", "ra", "dec"):
        if c in rest.colnames:
            del rest[c]

    if px and py:
        x, y = _fill(t[px], path, px), _fill(t[py], path, py)
        if cra and cdec and not (px.upper().startswith("PHANGS")):
            log.info("%s: both x/y and ra/dec given; x/y used", path)
        file_ra = _degrees(t[cra], path, cra, hours=True) if cra and cdec else None
        file_dec = _degrees(t[cdec], path, cdec) if cra and cdec else None
        ra, dec = sky(x, y)
        if wcs is None and file_ra is not None:
            ra, dec = file_ra, file_dec
        elif file_ra is not None:
            rest["ra_catalog"], rest["dec_catalog"] = file_ra, file_dec
        if wcs is None and file_ra is None and len(t):
            log.warning("%s: no WCS, ra/dec are NaN", path)
        log.info("%s: %s", path, convention)
    elif cra and cdec:
        if wcs is None:
            raise ValueError(f"{path}: positions are ra/dec but the mosaic has no celestial "
                             f"WCS to convert them to pixels")
        ra, dec = _degrees(t[cra], path, cra, hours=True), _degrees(t[cdec], path, cdec)
        x, y = (np.asarray(v, float) for v in wcs.all_world2pix(ra, dec, 0)) if len(t) \
            else (np.zeros(0), np.zeros(0))
        convention = "ra/dec [deg, ICRS] converted to 0-based pixels with the mosaic WCS"
        log.info("%s: %s", path, convention)
    else:
        raise ValueError(f"{path}: no position columns (need x,y or ra,dec or "
                         f"PHANGS_X,PHANGS_Y); found {', '.join(t.colnames) or 'none'}")
    meta["pixel_convention"] = convention
    if len(t) == 0:
        log.warning("%s: empty catalog", path)
    return done(_standard(rest, x, y, ra, dec, ids, meta))


def read_labels_file(path):
    """A labels table (ECSV, CSV or any astropy format); one-line errors for bad files."""
    from pathlib import Path

    from astropy.table import Table
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such labels file")
    fmt = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv"}.get(path.suffix.lower())
    try:
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many types for unreadable files
        lines = str(exc).strip().splitlines()
        raise ValueError(f"{path}: cannot read it as a labels table "
                         f"({lines[0] if lines else type(exc).__name__})") from None
