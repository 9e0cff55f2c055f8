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


# -- OutputSet: the table and its regions file as one transaction --------------------

def _old_pair(tmp_path):
    out, reg = tmp_path / "results.ecsv", tmp_path / "results.reg"
    out.write_text("old table")
    reg.write_text("old regions")
    return out, reg


def _listing(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("targets, message", [
    ({"results.ecsv": "table", "results.txt": "regions"}, "must end in .reg"),
    ({"results.txt": "table", "results.reg": "regions"}, "unknown output extension '.txt'"),
    ({"same.reg": "table"}, "unknown output extension '.reg'"),
])
def test_output_set_checks_extensions_first(tmp_path, targets, message):
    with pytest.raises(ValueError, match=message):
        writers.OutputSet({tmp_path / k: v for k, v in targets.items()})
    assert _listing(tmp_path) == []


def test_output_set_refuses_one_file_twice_and_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="given as two outputs"):
        writers.OutputSet({f"{tmp_path}/a.ecsv": "table", f"{tmp_path}/./a.ecsv": None})
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        writers.OutputSet({tmp_path / "file" / "a.ecsv": "table"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        writers.OutputSet({tmp_path / "a.ecsv": "table", tmp_path / "no" / "a.reg": "regions"})
    assert _listing(tmp_path) == ["file"]


def test_output_set_commit_interrupted_leaves_both_old(tmp_path, monkeypatch):
    """Ctrl-C (or any failure) between the two moves undoes the first one."""
    out, reg = _old_pair(tmp_path)
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if str(dst) == str(reg):
            raise KeyboardInterrupt
        return real(src, dst)

    outputs = writers.OutputSet({out: "table", reg: "regions"}, overwrite=True)
    outputs.write(out, writers.table_writer(_results(), out))
    outputs.write(reg, writers.regions_writer(_results()))
    monkeypatch.setattr(writers.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        outputs.commit()
    monkeypatch.undo()
    assert out.read_text() == "old table" and reg.read_text() == "old regions"
    assert _listing(tmp_path) == ["results.ecsv", "results.reg"]  # no temporary left
    # Uninterrupted: both new.
    with writers.OutputSet({out: "table", reg: "regions"}, overwrite=True) as outputs:
        outputs.write(out, writers.table_writer(_results(), out))
        outputs.write(reg, writers.regions_writer(_results()))
        outputs.commit()
    assert len(Table.read(out)) == 5 and len(read_regions(reg)) == 5
    assert _listing(tmp_path) == ["results.ecsv", "results.reg"]


def test_output_set_never_replaces_a_file_that_appeared(tmp_path):
    """Two runs writing one --out: the later finisher refuses, nothing of it is written."""
    out, reg = tmp_path / "results.ecsv", tmp_path / "results.reg"
    outputs = writers.OutputSet({out: "table", reg: "regions"})
    out.write_text("the other run's table")  # appears while this run works
    outputs.write(out, writers.table_writer(_results(), out))
    outputs.write(reg, writers.regions_writer(_results()))
    with pytest.raises(FileExistsError, match="appeared while this run was working") as exc:
        outputs.commit()
    assert ".tmp" not in str(exc.value) and "starclf-" not in str(exc.value)
    assert out.read_text() == "the other run's table"
    assert _listing(tmp_path) == ["results.ecsv"]  # no regions beside it, no temporary


def test_output_set_failed_writer_names_the_target_not_the_temporary(tmp_path):
    out = tmp_path / "results.ecsv"

    def broken(tmp):
        raise OSError(f"cannot write {tmp}: disk full")

    with writers.OutputSet({out: "table"}) as outputs:
        with pytest.raises(OSError) as exc:
            outputs.write(out, broken)
    assert str(out) in str(exc.value) and ".tmp" not in str(exc.value)
    assert _listing(tmp_path) == []


def test_output_set_removes_temporaries_of_killed_runs(tmp_path):
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".results.ecsv.starclf-{dead}-abc123.tmp"
    stale.write_text("half a table")
    live = tmp_path / f".results.ecsv.starclf-{os.getppid()}-abc123.tmp"  # a live process
    live.write_text("being written")
    write_table(_results(), tmp_path / "results.ecsv")
    assert _listing(tmp_path) == [live.name, "results.ecsv"]
