"""LEGUS catalog reader and distances (`glue_starclf.io.catalogs`)."""

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from glue_starclf.io.bands import BANDS
from glue_starclf.io.catalogs import (CLASS_COLUMN_OVERRIDES, DEFAULT_CLASS_COLUMN,
                                      LEGUS_FIELDS, legus_distance_mpc,
                                      legus_field_name, read_legus_tab)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
LEGUS_DIR = SHARED / "data" / "legus"

#: Table 6 of Pérez et al. (2021, StarcNet): galaxy -> (class 1, 2, 3, 4
#: counts), distance [Mpc].
TABLE6 = {
    "ic4247": ((1, 4, 3, 37), 5.11),
    "ic559": ((9, 12, 4, 18), 5.3),
    "ngc1313": ((127, 286, 332, 759), 4.39),
    "ngc1433": ((51, 61, 56, 138), 8.3),
    "ngc1566": ((477, 404, 692, 878), 17.9),
    "ngc1705": ((16, 13, 13, 54), 5.1),
    "ngc3344": ((119, 118, 159, 161), 7.0),
    "ngc3351": ((118, 80, 94, 326), 10.0),
    "ngc3738": ((49, 93, 86, 214), 4.9),
    "ngc4242": ((117, 60, 14, 42), 5.8),
    "ngc4395": ((39, 76, 61, 50), 4.3),
    "ngc4449": ((143, 282, 182, 874), 4.31),
    "ngc45": ((45, 52, 20, 43), 6.61),
    "ngc4656": ((93, 91, 78, 169), 5.5),
    "ngc5194": ((363, 502, 365, 1261), 7.66),  # "NGC 5194+5195"
    "ngc5238": ((4, 4, 1, 9), 4.51),
    "ngc5253": ((20, 37, 23, 154), 3.15),
    "ngc5474": ((48, 95, 34, 144), 6.8),
    "ngc5477": ((5, 9, 9, 49), 6.4),
    "ngc628": ((426, 437, 413, 664), 9.9),
    "ngc6503": ((71, 96, 131, 172), 5.27),
    "ngc7793": ((83, 160, 169, 140), 3.44),
    "ugc1249": ((13, 35, 40, 133), 6.9),
    "ugc4305": ((16, 29, 40, 147), 3.05),
    "ugc4459": ((2, 5, 3, 20), 3.66),
    "ugc5139": ((2, 7, 7, 23), 3.98),
    "ugc685": ((7, 4, 3, 6), 4.83),
    "ugc695": ((4, 7, 6, 94), 10.9),
    "ugc7408": ((19, 16, 11, 32), 6.7),
    "ugca281": ((2, 9, 4, 34), 5.9),
}

#: LEGUS fields with a public catalog that StarcNet's Table 6 does not list
#: (it covers 31 galaxies); their class counts cannot be checked against it.
NOT_IN_TABLE6 = {"eso486-g021", "ngc3274", "ngc4248", "ngc4485", "ugc5340", "ugc7242"}

#: Table 6 galaxies whose catalogs are not among the shared files.
NO_FILE = {"ngc1433", "ngc3344", "ngc5194", "ngc628"}


def _galaxy(field):
    return field.split("-")[0] if field not in NOT_IN_TABLE6 else field


@pytest.fixture(scope="module")
def legus_files():
    files = sorted(LEGUS_DIR.glob("*.tab")) if LEGUS_DIR.is_dir() else []
    if not files:
        pytest.skip("../shared/data/legus not found: the LEGUS catalogs live outside the project")
    return files


@pytest.fixture(scope="module")
def legus_tables(legus_files):
    return {legus_field_name(f): read_legus_tab(f) for f in legus_files}


def test_every_shared_field_is_known(legus_tables):
    galaxies = {_galaxy(f) for f in legus_tables}
    assert galaxies - NOT_IN_TABLE6 == set(TABLE6) - NO_FILE
    assert NOT_IN_TABLE6 <= galaxies


def test_class_counts_match_table6(legus_tables):
    counts = defaultdict(lambda: np.zeros(4, dtype=int))
    for field, table in legus_tables.items():
        counts[_galaxy(field)] += np.bincount(table["class"], minlength=5)[1:]
    for galaxy, (expected, _) in TABLE6.items():
        if galaxy in NO_FILE:
            continue
        assert tuple(counts[galaxy]) == expected, galaxy


def test_fields_outside_table6_use_default_column(legus_tables):
    # No reference counts: check they read as a mode-class column should.
    for field in NOT_IN_TABLE6:
        table = legus_tables[field]
        assert table.meta["class_column"] == DEFAULT_CLASS_COLUMN
        assert table.meta["class_out_of_range"] == {}
        assert set(np.unique(table["class"])) <= {0, 1, 2, 3, 4}
        assert np.all(np.bincount(table["class"], minlength=5)[1:] > 0), field


def test_class_column_choices(legus_tables):
    for field, table in legus_tables.items():
        assert table.meta["class_column"] == CLASS_COLUMN_OVERRIDES.get(
            field, DEFAULT_CLASS_COLUMN), field
    assert legus_tables["ngc4449"].meta["class_out_of_range"] == {5: 1371}
    assert legus_tables["ngc4242"].meta["class_out_of_range"] == {50: 1}


def test_class_column_override(legus_files):
    path = next(f for f in legus_files if legus_field_name(f) == "ngc3351")
    flags = read_legus_tab(path, class_column=34)  # a 0/1 flag column there
    assert flags.meta["class_column"] == 34
    assert set(np.unique(flags["class"])) == {0, 1}
    # Column 35 of ic4247 is the mean of the classifiers: not a class.
    path = next(f for f in legus_files if legus_field_name(f) == "ic4247")
    with pytest.raises(ValueError, match="column 35 holds non-integer"):
        read_legus_tab(path, class_column=35)


def test_pixels_are_zero_based(legus_files):
    for path in legus_files:
        raw = np.loadtxt(path, ndmin=2)
        table = read_legus_tab(path)
        np.testing.assert_array_equal(table["x"], raw[:, 1] - 1)
        np.testing.assert_array_equal(table["y"], raw[:, 2] - 1)
        np.testing.assert_array_equal(table["id"], raw[:, 0].astype(int))
        assert "1-based" in table.meta["pixel_convention"]
        assert table.meta["path"] == str(path)


def test_columns_and_sentinels(legus_tables):
    for field, table in legus_tables.items():
        assert np.all((table["ra"] >= 0) & (table["ra"] < 360)), field
        assert np.all(np.abs(table["dec"]) <= 90), field
        for band in BANDS:
            mag = np.asarray(table[f"mag_{band}"])
            finite = mag[np.isfinite(mag)]
            assert np.all((finite > 10) & (finite < 40)), (field, band)
            assert not np.any(table[f"outside_{band}"] & np.isfinite(mag))
            assert np.all(np.isnan(table[f"err_{band}"][np.isnan(mag)]))
        ci = np.asarray(table["ci"])
        assert np.all((ci[np.isfinite(ci)] > 0.5) & (ci[np.isfinite(ci)] < 20))
        fit = np.asarray(table["sed_fit"])
        assert np.all(np.isfinite(table["age_yr"][fit]))
        assert np.all(np.isnan(table["age_yr"][~fit]))
        assert np.nanmax(table["ebv"]) < 5


def test_sentinel_rows(legus_tables):
    # ngc1566 source 1 is not detected in F275W (99.999 in the file).
    row = legus_tables["ngc1566"][0]
    assert np.isnan(row["mag_F275W"]) and not row["outside_F275W"]
    assert row["mag_F336W"] == pytest.approx(21.635)
    assert row["n_bands"] == 4
    # ngc1313-e source 1 lies outside the F275W and F336W frames (66.666);
    # its file has an extra x/y pair, so RA sits in column 6.
    row = legus_tables["ngc1313-e"][0]
    assert row["outside_F275W"] and row["outside_F336W"]
    assert np.isnan(row["mag_F275W"]) and np.isnan(row["err_F336W"])
    assert row["ra"] == pytest.approx(49.570166)
    assert row["mag_F438W"] == pytest.approx(20.508)
    assert row["n_bands"] == 3


def test_distances(legus_files):
    for galaxy, (_, dist) in TABLE6.items():
        assert LEGUS_FIELDS[galaxy] == dist
        assert legus_distance_mpc(galaxy) == dist
    assert legus_distance_mpc("NGC 1566") == 17.9
    assert legus_distance_mpc("ngc7793-e") == 3.44
    assert legus_distance_mpc("NGC1313-W") == 4.39
    path = next(f for f in legus_files if legus_field_name(f) == "ngc4395-n")
    assert legus_distance_mpc(path) == 4.3
    assert legus_distance_mpc(str(path)) == 4.3
    with pytest.raises(ValueError, match="ngc3274"):
        legus_distance_mpc("ngc3274")


# --- errors and a synthetic file: no shared data needed ---------------------

_PHOT = (22.0, 0.1, 99.999, 99.999, 66.666, 66.666, 21.5, 0.05, 21.0, 0.05)


def _row(i, n_cols=36, cls=0, phot=_PHOT, ci=1.6, n_filters=5):
    values = [i, 100.0 + i, 200.0, 150.0, -30.0, *phot,
              ci, 1e7, 2e7, 5e6, 1e4, 2e4, 5e3, 0.1, 0.2, 0.0,
              0, 0, 0, 0, 0, 1.0, 0.5, n_filters, cls]
    values += [0] * (n_cols - len(values))
    return " ".join(str(v) for v in values)


def test_synthetic_file(tmp_path):
    # Each row its own bands and sentinels, each band its own values: a band or column
    # mix-up, or a count taken from another row, shows.
    rows = [  # (mag, err) F275W..F814W, CI, filters of the SED fit, class
        ((22.0, 0.1, 99.999, 99.999, 66.666, 66.666, 21.5, 0.05, 21.0, 0.04), 1.6, 5, 0),
        ((23.1, 0.11, 22.7, 0.12, 22.3, 0.13, 21.9, 0.14, 21.2, 0.15), 1.45, 4, 1),
        ((66.666, 66.666, 66.666, 66.666, 44.444, 44.444, 24.0, 0.2, 99.999, 99.999),
         25.0, 2, 4),
        ((20.1, 0.02, 20.2, 0.03, 20.3, 0.04, 20.4, 0.05, 20.5, 99.999), 1.3, 5, 7),
    ]
    path = tmp_path / "hlsp_legus_hst_wfc3_ngc9999-e_multiband_v1_padagb-mwext-avgapcor.tab"
    path.write_text("\n".join(_row(i, cls=c, phot=ph, ci=ci, n_filters=nf)
                              for i, (ph, ci, nf, c) in enumerate(rows, 1)) + "\n")
    table = read_legus_tab(path)
    assert table.meta["field"] == "ngc9999-e"
    assert table.meta["class_column"] == 34
    assert list(table["class"]) == [0, 1, 4, 0]
    assert table.meta["class_out_of_range"] == {7: 1}
    assert table["x"][0] == 100.0 and table["y"][0] == 199.0
    nan = np.nan
    mags = [[22.0, nan, nan, 21.5, 21.0], [23.1, 22.7, 22.3, 21.9, 21.2],
            [nan, nan, nan, 24.0, nan], [20.1, 20.2, 20.3, 20.4, 20.5]]
    errs = [[0.1, nan, nan, 0.05, 0.04], [0.11, 0.12, 0.13, 0.14, 0.15],
            [nan, nan, nan, 0.2, nan], [0.02, 0.03, 0.04, 0.05, nan]]
    outside = [[0, 0, 1, 0, 0], [0] * 5, [1, 1, 0, 0, 0], [0] * 5]
    for j, band in enumerate(BANDS):
        np.testing.assert_array_equal(table[f"mag_{band}"], [r[j] for r in mags], band)
        np.testing.assert_array_equal(table[f"err_{band}"], [r[j] for r in errs], band)
        assert list(table[f"outside_{band}"]) == [bool(r[j]) for r in outside], band
    assert list(table["n_bands"]) == [3, 5, 1, 5]
    np.testing.assert_array_equal(table["ci"], [1.6, 1.45, nan, 1.3])  # 25 > 20: not a CI
    assert list(table["sed_fit"]) == [True, True, False, True]
    np.testing.assert_array_equal(table["age_yr"], [1e7, 1e7, nan, 1e7])
    np.testing.assert_array_equal(table["mass_msun"], [1e4, 1e4, nan, 1e4])


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tab"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_legus_tab(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.tab"
    path.write_text("this is not\na catalog at all\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a whitespace-separated numeric")):
        read_legus_tab(path)


def test_ragged_file(tmp_path):
    path = tmp_path / "ragged.tab"
    path.write_text(_row(1) + "\n" + _row(2, n_cols=40) + "\n")
    # the reason, not only the path (the detail after it is numpy's wording)
    reason = re.escape(f"{path}: not a whitespace-separated numeric table (")
    with pytest.raises(ValueError, match=f"^{reason}"):
        read_legus_tab(path)


def test_too_few_columns(tmp_path):
    path = tmp_path / "short.tab"
    path.write_text("\n".join(" ".join(["1.0"] * 20) for _ in range(3)) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: has 20 columns")):
        read_legus_tab(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tab"
    path.write_text("")
    # the reason, not only the path: a file without rows also has too few columns
    with pytest.raises(ValueError, match=re.escape(f"{path}: no data rows")):
        read_legus_tab(path)


def test_bad_class_column_argument(tmp_path):
    path = tmp_path / "ok.tab"
    path.write_text(_row(1) + "\n")
    with pytest.raises(ValueError, match="class_column"):
        read_legus_tab(path, class_column=5)
    with pytest.raises(ValueError, match="has 36 columns"):
        read_legus_tab(path, class_column=37)
