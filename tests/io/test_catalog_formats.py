"""`glue_starclf.io.catalogs.read_catalog`: LEGUS, PHANGS, ECSV/CSV/FITS, pixel conventions."""

import logging

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.io.catalogs import read_catalog
from glue_starclf.sim.mosaic import random_field, write_mosaic

STANDARD = ["id", "x", "y", "ra", "dec"]


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    mock = random_field(seed=1, shape=(128, 128), n_sources=8)
    paths = write_mosaic(mock, tmp_path_factory.mktemp("cat"))
    return mock, paths


def _legus_rows(x1, y1, ra, dec):
    """LEGUS .tab text: 34 numeric columns, 1-based x/y, class in column 34."""
    lines = []
    for i, (x, y, r, d) in enumerate(zip(x1, y1, ra, dec), start=1):
        sed = [1e7, 5e6, 2e7, 1e4, 9e3, 2e4, 0.1, 0.0, 0.2]  # age, mass, E(B-V) + ranges
        cols = [i, x, y, r, d] + [22.0, 0.05] * 5 + [1.5] + sed + [1.0] * 7 + [5, 1]
        assert len(cols) == 34
        lines.append(" ".join(f"{v:.8f}" if isinstance(v, float) else str(v) for v in cols))
    return "\n".join(lines) + "\n"


def test_ecsv_with_xy_and_radec(field, caplog):
    mock, paths = field
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        t = read_catalog(paths["truth"], wcs=mock.wcs, shape=(128, 128))
    assert t.colnames[:5] == STANDARD
    assert "both x/y and ra/dec given; x/y used" in caplog.text
    assert "0-based" in caplog.text and "0-based" in t.meta["pixel_convention"]
    np.testing.assert_array_equal(t["x"], mock.truth["x"])
    np.testing.assert_array_equal(t["id"], mock.truth["id"])
    # ra/dec from the WCS; the file's kept alongside.
    np.testing.assert_allclose(t["ra"], t["ra_catalog"], atol=1e-9)
    assert "class" in t.colnames and "mag_F555W" in t.colnames


def test_csv_with_radec_only(field, tmp_path, caplog):
    mock, _ = field
    src = Table({"RA": mock.truth["ra"], "Dec": mock.truth["dec"], "name": ["s"] * 8})
    path = tmp_path / "sky.csv"
    src.write(path)
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        t = read_catalog(path, wcs=mock.wcs)
    assert "ra/dec" in caplog.text
    np.testing.assert_allclose(t["x"], mock.truth["x"], atol=1e-6)
    np.testing.assert_allclose(t["y"], mock.truth["y"], atol=1e-6)
    np.testing.assert_array_equal(t["id"], np.arange(1, 9))  # running number
    assert "name" in t.colnames
    with pytest.raises(ValueError, match=r"sky.csv: positions are ra/dec but the mosaic has no "
                                         r"celestial WCS"):
        read_catalog(path)


def test_fits_with_xy_no_wcs(tmp_path):
    path = tmp_path / "pix.fits"
    Table({"ID": [7, 9], "X": [1.5, 2.5], "Y": [3.0, 4.0]}).write(path)
    t = read_catalog(path)
    assert list(t["id"]) == [7, 9]
    assert list(t["x"]) == [1.5, 2.5] and list(t["y"]) == [3.0, 4.0]
    assert np.isnan(t["ra"]).all() and np.isnan(t["dec"]).all()


def test_legus_tab(field, tmp_path, caplog):
    mock, _ = field
    t0 = mock.truth
    path = tmp_path / "hlsp_legus_hst_wfc3_mock_multiband_v1.tab"
    path.write_text(_legus_rows(t0["x"] + 1, t0["y"] + 1, t0["ra"], t0["dec"]))
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        t = read_catalog(path, wcs=mock.wcs)
    assert "1-based" in caplog.text
    assert t.meta["catalog_format"] == "legus"
    np.testing.assert_allclose(t["x"], t0["x"], atol=1e-6)
    np.testing.assert_allclose(t["y"], t0["y"], atol=1e-6)
    np.testing.assert_allclose(t["ra"], t0["ra"], atol=1e-7)
    assert list(t["class"]) == [1] * len(t0) and "mag_F555W" in t.colnames
    # Told by content when the name says nothing; the file's ra/dec without a WCS.
    other = tmp_path / "catalog.dat"
    other.write_text(path.read_text())
    t2 = read_catalog(other)
    np.testing.assert_allclose(t2["x"], t0["x"], atol=1e-6)
    np.testing.assert_allclose(t2["ra"], t0["ra"], atol=1e-7)


def test_phangs_fits(tmp_path, caplog):
    path = tmp_path / "ngc1566_phangshst_base_catalog.fits"
    Table({"INDEX": [1, 2], "ID_PHANGS_CLUSTERS": [101, 102], "PHANGS_X": [10.0, 20.0],
           "PHANGS_Y": [30.0, 40.0], "PHANGS_RA": [65.0, 65.001],
           "PHANGS_DEC": [-54.9, -54.91]}).write(path)
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        t = read_catalog(path)
    assert "PHANGS_X/PHANGS_Y are 0-based" in caplog.text
    assert t.meta["catalog_format"] == "phangs"
    assert list(t["id"]) == [101, 102]
    assert list(t["x"]) == [10.0, 20.0] and list(t["y"]) == [30.0, 40.0]
    assert list(t["ra"]) == [65.0, 65.001]
    assert "PHANGS_X" in t.colnames and "INDEX" in t.colnames


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ecsv: no such catalog file"):
        read_catalog(tmp_path / "nope.ecsv")
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ValueError, match="bad.fits: cannot read it as a catalog table"):
        read_catalog(bad)
    tab = tmp_path / "words.tab"
    tab.write_text("a b c\n")
    with pytest.raises(ValueError, match="words.tab: not a whitespace-separated numeric table"):
        read_catalog(tab)


def test_no_position_columns(tmp_path):
    path = tmp_path / "flux.csv"
    Table({"name": ["a"], "flux": [1.0]}).write(path)
    with pytest.raises(ValueError, match=r"flux.csv: no position columns .*found name, flux"):
        read_catalog(path)


def test_empty_catalogs(tmp_path, caplog):
    blank = tmp_path / "empty.tab"
    blank.write_text("\n# nothing here\n")
    header_only = tmp_path / "empty.csv"
    header_only.write_text("x,y,id\n")
    ecsv = tmp_path / "empty.ecsv"
    Table({"x": np.zeros(0), "y": np.zeros(0)}).write(ecsv)
    for path in (blank, header_only, ecsv):
        with caplog.at_level(logging.WARNING, logger="glue_starclf"):
            t = read_catalog(path)
        assert len(t) == 0 and t.colnames[:5] == STANDARD
        assert "empty catalog" in caplog.text
        caplog.clear()


def test_sources_outside_are_logged(tmp_path, caplog):
    path = tmp_path / "pix.ecsv"
    Table({"x": [5.0, 500.0], "y": [5.0, -3.0]}).write(path)
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        t = read_catalog(path, shape=(100, 100))
    assert len(t) == 2  # kept: the cutouts flag them
    assert "1 of 2 sources lie outside the 100x100 mosaic" in caplog.text


def test_sexagesimal_ra_dec_are_read(field, tmp_path):
    from astropy.coordinates import SkyCoord
    mock, _ = field
    c = SkyCoord(mock.truth["ra"], mock.truth["dec"], unit="deg")
    src = Table({"ra": c.ra.to_string(unit="hourangle", sep=":", precision=4),
                 "dec": c.dec.to_string(unit="deg", sep=":", precision=3, alwayssign=True)})
    path = tmp_path / "sexa.csv"
    src.write(path)
    t = read_catalog(path, wcs=mock.wcs)
    np.testing.assert_allclose(t["x"], mock.truth["x"], atol=0.05)
    np.testing.assert_allclose(t["y"], mock.truth["y"], atol=0.05)
    hms = Table({"RA": c.ra.to_string(unit="hourangle", precision=4),  # 10h00m01.2s
                 "DEC": c.dec.to_string(unit="deg", precision=3)})
    hms.write(tmp_path / "hms.ecsv")
    t = read_catalog(tmp_path / "hms.ecsv", wcs=mock.wcs)
    np.testing.assert_allclose(t["x"], mock.truth["x"], atol=0.05)


@pytest.mark.parametrize("column, text", [("ra", "n/a"), ("dec", "n/a"), ("x", "n/a"),
                                          ("y", "--x--")])
def test_unreadable_values_name_file_column_and_row(field, tmp_path, column, text):
    mock, _ = field
    if column in ("ra", "dec"):
        src = Table({"ra": [f"{v:.6f}" for v in mock.truth["ra"]],
                     "dec": [f"{v:.6f}" for v in mock.truth["dec"]]})
    else:
        src = Table({"x": [f"{v:.3f}" for v in mock.truth["x"]],
                     "y": [f"{v:.3f}" for v in mock.truth["y"]]})
    src[column][2] = text
    path = tmp_path / "bad.csv"
    src.write(path)
    with pytest.raises(ValueError) as exc:
        read_catalog(path, wcs=mock.wcs)
    assert str(exc.value).startswith(f"{path}: column '{column}', row 3: '{text}'")


def test_duplicate_ids_are_warned_with_a_count(tmp_path, caplog):
    path = tmp_path / "dup.ecsv"
    Table({"id": [1, 2, 2, 3, 3, 3, 4], "x": np.arange(7.0), "y": np.arange(7.0)}).write(path)
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        t = read_catalog(path)
    assert len(t) == 7
    assert "5 rows share their id with another row (2 ids used more than once" in caplog.text
    caplog.clear()
    Table({"id": [1, 2, 3], "x": [1.0, 2, 3], "y": [1.0, 2, 3]}).write(tmp_path / "ok.ecsv")
    with caplog.at_level(logging.WARNING, logger="glue_starclf"):
        read_catalog(tmp_path / "ok.ecsv")
    assert "share their id" not in caplog.text
