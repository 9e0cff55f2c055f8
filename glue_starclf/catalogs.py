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

import re
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

from .bands import BANDS

__all__ = ["LEGUS_FIELDS", "DEFAULT_CLASS_COLUMN", "CLASS_COLUMN_OVERRIDES",
           "COLUMN_SHIFTS", "PIXEL_CONVENTION", "read_legus_tab", "legus_field_name",
           "legus_distance_mpc"]

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
