"""`glue_starclf.io.writers`: atomic table writes, DS9 regions in the 1-based image frame."""

import json
import os

import numpy as np
import pytest
from astropy.table import Table
from regions import Regions

from glue_starclf.io import writers
from glue_starclf.io.writers import read_regions, write_regions, write_table


def _results(n=5, seed=0):
    rng = np.random.default_rng(seed)
    t = Table(meta={"models": ["a", "b"], "distance_mpc": 9.9})
    t["id"] = np.arange(1, n + 1)
    t["x"] = rng.uniform(0, 500, n)
    t["y"] = rng.uniform(0, 500, n)
    t["class"] = (np.arange(n) % 5).astype(int)  # 0 = unknown, then 1-4
    t["p_cluster"] = rng.uniform(0, 1, n)
    t["flags"] = np.array(["", "edge", "missing:F275W,edge", "", "outside"][:n] * (n // 5 + 1))[:n]
    return t


@pytest.mark.parametrize("ext", [".ecsv", ".fits", ".csv", ".ECSV"])
def test_table_round_trip(tmp_path, ext):
    t = _results()
    path = write_table(t, tmp_path / f"results{ext}")
    back = Table.read(path, format=writers.TABLE_FORMATS[ext.lower()])
    np.testing.assert_allclose(back["x"], t["x"])
    # astropy reads an empty string back as masked in ECSV/CSV
    flags = back["flags"].filled("") if hasattr(back["flags"], "filled") else back["flags"]
    assert [str(f).strip() for f in flags] == [str(f) for f in t["flags"]]
    if ext.lower() == ".ecsv":
        assert back.meta["models"] == ["a", "b"]
    if ext.lower() == ".fits":
        assert json.loads(back.meta["MODELS"]) == ["a", "b"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp left


def test_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"results.txt: unknown output extension '.txt'"):
        write_table(_results(), tmp_path / "results.txt")


def test_existing_output_needs_overwrite(tmp_path):
    path = tmp_path / "results.ecsv"
    path.write_text("old")
    with pytest.raises(FileExistsError, match="results.ecsv exists"):
        write_table(_results(), path)
    with pytest.raises(FileExistsError, match="results.ecsv exists"):
        write_regions(_results(), path)
    assert path.read_text() == "old"
    write_table(_results(), path, overwrite=True)
    assert len(Table.read(path)) == 5


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_table(_results(), tmp_path / "nofolder" / "results.ecsv")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    """A writer that dies half-way leaves no partial output and the old file intact."""
    def broken(self, path, **kwargs):
        with open(path, "w") as f:
            f.write("# %ECSV 1.0\npartial")
        raise OSError("disk full")

    monkeypatch.setattr(Table, "write", broken)
    new = tmp_path / "results.ecsv"
    with pytest.raises(OSError, match="disk full"):
        write_table(_results(), new)
    assert not new.exists()
    old = tmp_path / "old.ecsv"
    old.write_text("previous results")
    with pytest.raises(OSError, match="disk full"):
        write_table(_results(), old, overwrite=True)
    assert old.read_text() == "previous results"
    assert sorted(os.listdir(tmp_path)) == ["old.ecsv"]


def test_regions_one_based_frame(tmp_path):
    t = Table({"id": [5], "x": [10.0], "y": [20.0], "class": [2]})
    path = write_regions(t, tmp_path / "one.reg", radius=3.0)
    text = path.read_text()
    assert "image" in text
    assert "circle(11.00000000,21.00000000,3.00000000)" in text
    back = read_regions(path)
    assert (back["x"][0], back["y"][0]) == (10.0, 20.0)
    assert back["class"][0] == 2 and back["color"][0] == "cyan" and back["id"][0] == "5"


def test_regions_round_trip_colours_and_text(tmp_path):
    t = _results(200, seed=3)
    t["x"][7] = np.nan  # skipped, not written as NaN
    path = write_regions(t, tmp_path / "results.reg")
    regs = Regions.read(str(path), format="ds9")  # opens with astropy regions
    assert len(regs) == 199
    back = read_regions(path)
    keep = np.isfinite(t["x"])
    assert np.max(np.hypot(back["x"] - t["x"][keep], back["y"] - t["y"][keep])) < 0.01
    expected = {0: "white", 1: "green", 2: "cyan", 3: "yellow", 4: "red"}
    assert list(back["color"]) == [expected[c] for c in t["class"][keep]]
    assert list(back["class"]) == list(t["class"][keep])
    text = path.read_text()
    assert "text={?}" in text and "text={4}" in text


def test_regions_without_class_and_empty(tmp_path):
    t = Table({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    back = read_regions(write_regions(t, tmp_path / "plain.reg"))
    assert list(back["color"]) == ["white", "white"]
    empty = write_regions(t[:0], tmp_path / "empty.reg")
    assert len(read_regions(empty)) == 0
    assert len(Regions.read(str(empty), format="ds9")) == 0
    with pytest.raises(ValueError, match="no 'x' column"):
        write_regions(Table({"ra": [1.0]}), tmp_path / "bad.reg")
    with pytest.raises(ValueError, match="radius"):
        write_regions(t, tmp_path / "bad.reg", radius=0)
