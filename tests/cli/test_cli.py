"""The ``starclf`` command line: ``simulate field|legus|bank``, errors and help.

Most cases call `glue_starclf.cli.main.main` in-process (fast); a few run the real
``starclf`` console script in a subprocess. Every error case checks the
project rule: exit status 2, one stderr line ``starclf: error: ...`` naming
the offending file/option/value, no traceback, and nothing written.
"""

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from glue_starclf.io.bands import BANDS
from glue_starclf.cli.main import main

SHARED_LEGUS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legus"
NO_LEGUS = "../shared/data/legus not found: the LEGUS catalogs live outside the project"

SMALL = ["--shape", "256", "--n-sources", "20"]
RESULTS_COLUMNS = ("class", "log_age", "log_mass", "av", "r_h", "p_cb", "visibility")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- helpers -------------------------------------------------------------------

def run(capsys, *argv):
    """Run ``starclf argv`` in-process; return (status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_quiet(*argv):
    """Run ``starclf argv`` in-process outside a test's capsys (for fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    assert status == 0, err.getvalue()
    return out.getvalue()


def starclf_command():
    """The installed ``starclf`` script of this interpreter's environment."""
    here = shutil.which("starclf", path=str(Path(sys.executable).parent))
    found = here or shutil.which("starclf")
    return [found] if found else [sys.executable, "-m", "glue_starclf.cli.main"]


def run_script(*argv, timeout=120):
    return subprocess.run(starclf_command() + [str(a) for a in argv], capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(status, err, *needles):
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("starclf: error:"), lines[0]
    for needle in needles:
        assert str(needle) in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_nothing_written(folder, out):
    """``out`` is absent or empty, and no temporary folder was left in ``folder``."""
    out = Path(out)
    assert not out.exists() or not any(out.iterdir()), sorted(os.listdir(out))
    leftovers = [p.name for p in Path(folder).iterdir() if p.name.startswith(".starclf-")]
    assert not leftovers, leftovers


def fits_names(prefix, bands=BANDS):
    return {f"{prefix}_{b.lower()}_drc.fits" for b in bands}


def read_band(path):
    with fits.open(path) as hdul:
        return hdul[0].data.copy(), hdul[0].header.copy()


def same_table(a, b):
    assert a.colnames == b.colnames
    assert len(a) == len(b)
    for name in a.colnames:
        ca, cb = np.asarray(a[name]), np.asarray(b[name])
        if ca.dtype.kind == "f":
            np.testing.assert_array_equal(ca, cb)  # NaN == NaN here
        else:
            assert list(ca) == list(cb), name


def snapshot(folder):
    """{name: (bytes, mtime_ns)} of every file in a folder."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(Path(folder).iterdir()) if p.is_file()}


# -- simulate field ------------------------------------------------------------

@pytest.fixture(scope="module")
def field_run(tmp_path_factory):
    """One small random field with a preview, seed 1."""
    base = tmp_path_factory.mktemp("field")
    out = base / "out"
    preview = base / "preview.png"
    stdout = run_quiet("simulate", "field", "--out", out, "--seed", 1, *SMALL,
                       "--preview", preview)
    return out, preview, stdout


def test_field_writes_five_fits_and_truth(field_run):
    out, _, stdout = field_run
    assert set(os.listdir(out)) == fits_names("mock") | {"mock_truth.ecsv"}
    assert "rendered 256 x 256 px, 20 sources" in stdout
    for band in BANDS:
        data, header = read_band(out / f"mock_{band.lower()}_drc.fits")
        assert data.ndim == 2 and data.shape == (256, 256)
        assert np.isfinite(data).mean() > 0.9
        assert np.nanstd(data) > 0  # an image, not a constant
        wcs = WCS(header)
        assert wcs.has_celestial
        assert list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
        assert header["FILTER"] == band
        assert header["BUNIT"].strip()
        assert header["DISTMPC"] == 10.0
    # The bands differ from each other (not one image written five times).
    blue, _ = read_band(out / "mock_f275w_drc.fits")
    red, _ = read_band(out / "mock_f814w_drc.fits")
    assert not np.array_equal(blue, red)


def test_field_truth_schema_and_sky_positions(field_run):
    out, _, _ = field_run
    truth = Table.read(out / "mock_truth.ecsv", format="ascii.ecsv")
    for name in ("id", "x", "y", "ra", "dec") + RESULTS_COLUMNS:
        assert name in truth.colnames, name
    assert len(truth) == 20
    assert set(np.asarray(truth["class"])) <= {1, 2, 3, 4}
    assert np.all((truth["x"] >= 0) & (truth["x"] <= 255))
    assert np.all((truth["y"] >= 0) & (truth["y"] <= 255))
    cluster = np.isin(truth["class"], (1, 2, 3))
    assert np.all(np.asarray(truth["p_cb"])[cluster] == 1.0)
    assert np.all(np.isfinite(np.asarray(truth["log_age"])[cluster]))
    _, header = read_band(out / "mock_f555w_drc.fits")
    sky = WCS(header).pixel_to_world(np.asarray(truth["x"]), np.asarray(truth["y"]))
    np.testing.assert_allclose(truth["ra"], sky.ra.deg, rtol=0, atol=1e-9)
    np.testing.assert_allclose(truth["dec"], sky.dec.deg, rtol=0, atol=1e-9)


def test_field_preview_is_a_png(field_run):
    _, preview, stdout = field_run
    assert preview.is_file()
    assert preview.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image
    img = matplotlib.image.imread(preview)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert str(preview) in stdout


def test_field_same_seed_same_output_other_seed_differs(tmp_path, field_run):
    first, _, _ = field_run
    again, other = tmp_path / "again", tmp_path / "other"
    run_quiet("simulate", "field", "--out", again, "--seed", 1, *SMALL)
    run_quiet("simulate", "field", "--out", other, "--seed", 2, *SMALL)
    for band in BANDS:
        name = f"mock_{band.lower()}_drc.fits"
        a, ha = read_band(first / name)
        b, hb = read_band(again / name)
        c, _ = read_band(other / name)
        assert a.tobytes() == b.tobytes(), band  # bitwise
        assert dict(ha) == dict(hb), band
        assert a.shape == c.shape and not np.array_equal(a, c), band
    truth_a = Table.read(first / "mock_truth.ecsv", format="ascii.ecsv")
    truth_b = Table.read(again / "mock_truth.ecsv", format="ascii.ecsv")
    truth_c = Table.read(other / "mock_truth.ecsv", format="ascii.ecsv")
    same_table(truth_a, truth_b)
    assert not np.array_equal(np.asarray(truth_a["x"]), np.asarray(truth_c["x"][:len(truth_a)]))


def test_field_band_subset(tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, err = run(capsys, "simulate", "field", "--out", out, "--shape", 128,
                              "--n-sources", 5, "--bands", "F336W,f814w")
    assert status == 0, err
    assert set(os.listdir(out)) == fits_names("mock", ("F336W", "F814W")) | {"mock_truth.ecsv"}
    for band in ("F336W", "F814W"):
        _, header = read_band(out / f"mock_{band.lower()}_drc.fits")
        assert header["FILTER"] == band
    assert "F275W" not in stdout


def test_field_band_alias_writes_its_slot(tmp_path, capsys):
    out = tmp_path / "out"
    status, _, err = run(capsys, "simulate", "field", "--out", out, "--shape", 128,
                         "--n-sources", 5, "--bands", "F435W")
    assert status == 0, err
    assert set(os.listdir(out)) == {"mock_f438w_drc.fits", "mock_truth.ecsv"}


def test_field_randomise_draws_and_records_the_conditions(tmp_path, capsys):
    status, stdout, err = run(capsys, "simulate", "field", "--out", tmp_path / "r", *SMALL,
                              "--seed", 3, "--randomise")
    assert status == 0, err
    assert "conditions drawn:" in stdout
    domain = Table.read(tmp_path / "r" / "mock_truth.ecsv", format="ascii.ecsv").meta["domain"]
    assert domain["psf_family"] == "tinytim" and len(domain["exposure_factor"]) == 5
    run_quiet("simulate", "field", "--out", tmp_path / "n", *SMALL, "--seed", 3)
    nominal = Table.read(tmp_path / "n" / "mock_truth.ecsv", format="ascii.ecsv").meta["domain"]
    assert nominal["exposure_factor"] == [1.0] * 5 and domain != nominal
    randomised, _ = read_band(tmp_path / "r" / "mock_f555w_drc.fits")
    nominal, _ = read_band(tmp_path / "n" / "mock_f555w_drc.fits")
    assert not np.allclose(randomised, nominal)


def test_field_young_light_on_the_sources(tmp_path, capsys):
    status, stdout, err = run(capsys, "simulate", "field", "--out", tmp_path / "s", *SMALL,
                              "--seed", 3, "--young-light", "sources")
    assert status == 0, err
    assert "young light on the sources" in stdout and "conditions drawn" not in stdout
    meta = Table.read(tmp_path / "s" / "mock_truth.ecsv", format="ascii.ecsv").meta
    assert meta["domain"]["young_light"] == "sources"
    run_quiet("simulate", "field", "--out", tmp_path / "n", *SMALL, "--seed", 3)
    nominal = Table.read(tmp_path / "n" / "mock_truth.ecsv", format="ascii.ecsv").meta
    assert nominal["domain"]["young_light"] == "arms" and nominal["psf"] == meta["psf"]
    young, _ = read_band(tmp_path / "s" / "mock_f336w_drc.fits")
    arms, _ = read_band(tmp_path / "n" / "mock_f336w_drc.fits")
    assert not np.allclose(young, arms)
    bad = run_script("simulate", "field", "--out", tmp_path / "b", *SMALL, "--young-light", "bars")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--young-light" in bad.stderr and "'bars'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv, needle", [(["--stdpsf-dir", "."], "--stdpsf-dir needs --randomise"),
                                          (["--randomise", "--stdpsf-dir", "nowhere"],
                                           "PSFSTD_WFC3UV_F275W.fits")])
def test_field_bad_domain_options(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    status, stdout, err = run(capsys, "simulate", "field", "--out", out, *SMALL, *argv)
    assert_one_line_error(status, err, needle)
    assert_nothing_written(tmp_path, out)


@pytest.mark.parametrize("bands, needle", [("F999W", "F999W"),
                                           ("F336W,F999W", "F999W"),
                                           ("F336W,f336w", "twice")])
def test_field_bad_bands(tmp_path, capsys, bands, needle):
    out = tmp_path / "out"
    status, stdout, err = run(capsys, "simulate", "field", "--out", out, *SMALL,
                              "--bands", bands)
    assert_one_line_error(status, err, needle)
    assert stdout == ""
    assert_nothing_written(tmp_path, out)


@pytest.mark.parametrize("distance, shown", [("0", "0"), ("-3", "-3"), ("nan", "nan"),
                                             ("1000", "0.1-500 Mpc"), ("5000", "5000")])
def test_field_bad_distance(tmp_path, capsys, distance, shown):
    out = tmp_path / "out"
    preview = tmp_path / "p.png"
    status, _, err = run(capsys, "simulate", "field", "--out", out, *SMALL,
                         "--distance-mpc", distance, "--preview", preview)
    assert_one_line_error(status, err, "distance", shown)
    assert_nothing_written(tmp_path, out)
    assert not preview.exists()


@pytest.mark.parametrize("argv, needles", [
    (["--shape", "abc"], ["shape", "abc"]),
    (["--shape", "32"], ["32", "too small"]),
    (["--n-sources", "-1"], ["--n-sources", "-1"]),
])
def test_field_bad_shape_or_count(tmp_path, capsys, argv, needles):
    out = tmp_path / "out"
    status, _, err = run(capsys, "simulate", "field", "--out", out, *argv)
    assert_one_line_error(status, err, *needles)
    assert_nothing_written(tmp_path, out)


def test_field_preview_into_missing_folder(tmp_path, capsys):
    out = tmp_path / "out"
    preview = tmp_path / "nodir" / "p.png"
    status, _, err = run(capsys, "simulate", "field", "--out", out, *SMALL,
                         "--preview", preview)
    assert_one_line_error(status, err, str(preview))
    assert_nothing_written(tmp_path, out)


# -- overwrite -----------------------------------------------------------------

def test_field_refuses_to_overwrite_then_overwrites(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["simulate", "field", "--out", out, "--shape", 128, "--n-sources", 5]
    status, _, err = run(capsys, *args, "--seed", 3)
    assert status == 0, err
    before = snapshot(out)
    assert len(before) == 6

    status, stdout, err = run(capsys, *args, "--seed", 4)
    assert_one_line_error(status, err, "exists", "--overwrite", str(out))
    assert stdout == ""
    assert snapshot(out) == before  # same bytes, same mtimes
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".starclf-")]

    status, _, err = run(capsys, *args, "--seed", 4, "--overwrite")
    assert status == 0, err
    after = snapshot(out)
    assert set(after) == set(before)
    assert after["mock_f555w_drc.fits"][0] != before["mock_f555w_drc.fits"][0]
    assert after["mock_truth.ecsv"][0] != before["mock_truth.ecsv"][0]


def test_field_one_existing_output_blocks_all(tmp_path, capsys):
    """A single existing output (here the truth table) stops the run before any write."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "mock_truth.ecsv").write_text("keep me\n")
    status, _, err = run(capsys, "simulate", "field", "--out", out, *SMALL)
    assert_one_line_error(status, err, "mock_truth.ecsv", "--overwrite")
    assert os.listdir(out) == ["mock_truth.ecsv"]
    assert (out / "mock_truth.ecsv").read_text() == "keep me\n"


def test_field_existing_preview_blocks_the_run(tmp_path, capsys):
    out = tmp_path / "out"
    preview = tmp_path / "p.png"
    preview.write_bytes(b"old")
    status, _, err = run(capsys, "simulate", "field", "--out", out, *SMALL,
                         "--preview", preview)
    assert_one_line_error(status, err, str(preview), "--overwrite")
    assert preview.read_bytes() == b"old"
    assert not out.exists()


def test_bank_refuses_to_overwrite_then_overwrites(tmp_path, capsys):
    out = tmp_path / "bank"
    args = ["simulate", "bank", "--out", out, "--n", 4, "--size", 32]
    status, _, err = run(capsys, *args, "--seed", 1)
    assert status == 0, err
    before = snapshot(out)
    assert set(before) == {"stamps.npy", "truth.ecsv"}
    status, _, err = run(capsys, *args, "--seed", 2)
    assert_one_line_error(status, err, "stamps.npy", "--overwrite")
    assert snapshot(out) == before
    status, _, err = run(capsys, *args, "--seed", 2, "--overwrite")
    assert status == 0, err
    assert snapshot(out)["stamps.npy"][0] != before["stamps.npy"][0]
    assert set(os.listdir(out)) == {"stamps.npy", "truth.ecsv"}


# -- simulate legus: bad catalogs ----------------------------------------------

def test_legus_missing_catalog(tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "no_such_catalog.tab"
    status, _, err = run(capsys, "simulate", "legus", "--catalog", missing, "--out", out)
    assert_one_line_error(status, err, str(missing))
    assert_nothing_written(tmp_path, out)


@pytest.mark.parametrize("content, reason", [
    ("this is not a catalog\nat all\n", "not a whitespace-separated numeric table"),
    ("", "no data rows"),
    ("1 2 3\n4 5 6\n", "has 3 columns, a LEGUS catalog needs at least 34"),
])
def test_legus_garbage_catalog(tmp_path, capsys, content, reason):
    out = tmp_path / "out"
    bad = tmp_path / "garbage.tab"
    bad.write_text(content)
    status, _, err = run(capsys, "simulate", "legus", "--catalog", bad, "--out", out)
    # the file and what is wrong with it: any error naming the file is not enough
    assert_one_line_error(status, err, f"{bad}: {reason}")
    assert_nothing_written(tmp_path, out)
    assert sorted(os.listdir(tmp_path)) == ["garbage.tab"]


# -- simulate bank -------------------------------------------------------------

@pytest.mark.parametrize("argv, needles", [
    (["--log-age", "5"], ["log_age", "5"]),
    (["--log-mass", "3.5,9"], ["log_mass", "9"]),
    (["--av", "-1"], ["av", "-1"]),
    (["--distance-mpc", "0"], ["distance_mpc", "0"]),
    (["--log-age", "abc"], ["--log-age", "abc"]),
    (["--log-age", "7,6.8"], ["--log-age", "7,6.8"]),
    (["--n", "0"], ["--n", "0"]),
    (["--size", "8"], ["--size", "8"]),
    (["--background-fraction", "2"], ["background_fraction", "2"]),
])
def test_bank_bad_values(tmp_path, capsys, argv, needles):
    out = tmp_path / "bank"
    status, stdout, err = run(capsys, "simulate", "bank", "--n", 20, "--out", out, *argv)
    assert_one_line_error(status, err, *needles)
    assert stdout == ""
    assert_nothing_written(tmp_path, out)


def test_bank_writes_stamps_and_truth(tmp_path, capsys):
    out = tmp_path / "bank"
    preview = tmp_path / "bank.png"
    status, stdout, err = run(capsys, "simulate", "bank", "--n", 20, "--out", out,
                              "--seed", 5, "--preview", preview)
    assert status == 0, err
    assert set(os.listdir(out)) == {"stamps.npy", "truth.ecsv"}
    assert "rendered 20 stamps of 64 px" in stdout
    stamps = np.load(out / "stamps.npy")
    assert stamps.shape == (20, 5, 64, 64)
    assert stamps.dtype == np.float32
    assert np.isfinite(stamps).all()
    truth = Table.read(out / "truth.ecsv", format="ascii.ecsv")
    assert len(truth) == 20
    for name in ("log_age", "log_mass", "av", "r_h", "p_cb", "visibility", "distance_mpc"):
        assert name in truth.colnames, name
    p_cb = np.asarray(truth["p_cb"])
    background = p_cb == 0
    assert background.sum() == 2  # default --background-fraction 0.1 of 20
    assert set(p_cb[~background]) == {1.0}
    assert np.all(np.isnan(np.asarray(truth["log_age"])[background]))
    age = np.asarray(truth["log_age"])[~background]
    assert np.all((age >= 6.6 - 1e-9) & (age <= 10.1 + 1e-9))
    mass = np.asarray(truth["log_mass"])[~background]
    assert np.all((mass >= 3.0) & (mass <= 5.5))
    assert preview.read_bytes()[:8] == PNG_MAGIC


def test_bank_fixed_and_range_options(tmp_path, capsys):
    out = tmp_path / "bank"
    status, _, err = run(capsys, "simulate", "bank", "--n", 6, "--size", 32, "--out", out,
                         "--log-age", "7.0", "--log-mass", "4.5,5", "--distance-mpc", "5",
                         "--background-fraction", "0")
    assert status == 0, err
    truth = Table.read(out / "truth.ecsv", format="ascii.ecsv")
    np.testing.assert_allclose(truth["log_age"], 7.0)
    np.testing.assert_allclose(truth["distance_mpc"], 5.0)
    assert np.all((truth["log_mass"] >= 4.5) & (truth["log_mass"] <= 5.0))
    assert np.all(truth["p_cb"] == 1.0)
    assert np.load(out / "stamps.npy").shape == (6, 5, 32, 32)


# -- help ----------------------------------------------------------------------

def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("usage: starclf", "simulate", "demo", "bench", "--version"):
        assert word in out, word


def test_simulate_field_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "field", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--out", "--seed", "--overwrite", "--preview", "--shape", "--distance-mpc",
                   "--n-sources", "--bands", "--prefix"):
        assert option in out, option


def test_simulate_legus_and_bank_help(capsys):
    for mode, options in (("legus", ("--catalog", "--region", "--max-sources")),
                          ("bank", ("--n", "--size", "--log-age", "--log-mass", "--av",
                                    "--r-h", "--background-fraction"))):
        with pytest.raises(SystemExit) as exc:
            main(["simulate", mode, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        for option in options:
            assert option in out, (mode, option)


# -- the real console script -----------------------------------------------------

def test_console_script_help():
    for argv, words in ((["--help"], ["simulate", "demo", "bench"]),
                        (["simulate", "field", "--help"], ["--out", "--seed", "--bands",
                                                           "--distance-mpc", "--preview"])):
        proc = run_script(*argv)
        assert proc.returncode == 0, proc.stderr
        for word in words:
            assert word in proc.stdout, word


def test_console_script_simulate_field(tmp_path):
    out = tmp_path / "out"
    proc = run_script("simulate", "field", "--out", out, "--shape", 128, "--n-sources", 5,
                      "--seed", 7, "--prefix", "t")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert set(os.listdir(out)) == fits_names("t") | {"t_truth.ecsv"}
    truth = Table.read(out / "t_truth.ecsv", format="ascii.ecsv")
    assert len(truth) == 5
    assert truth.meta["seed"] == 7


def test_console_script_error_is_one_line(tmp_path):
    out = tmp_path / "out"
    proc = run_script("simulate", "field", "--out", out, *SMALL, "--distance-mpc", "-3")
    assert_one_line_error(proc.returncode, proc.stderr, "distance", "-3")
    assert proc.stdout == ""
    assert_nothing_written(tmp_path, out)

    missing = tmp_path / "missing.tab"
    proc = run_script("simulate", "legus", "--catalog", missing, "--out", out)
    assert_one_line_error(proc.returncode, proc.stderr, str(missing))
    assert_nothing_written(tmp_path, out)


# -- a field anchored on a real LEGUS catalog ----------------------------------------

def _legus_catalog(field):
    if not SHARED_LEGUS.is_dir():
        pytest.skip(NO_LEGUS)
    found = sorted(SHARED_LEGUS.glob(f"hlsp_legus_hst_*_{field}_multiband_*.tab"))
    if not found:
        pytest.skip(f"no {field} catalog in {SHARED_LEGUS}")
    return found[0]


def test_legus_anchored_region(tmp_path, capsys):
    from glue_starclf.io.catalogs import read_legus_tab
    path = _legus_catalog("ngc1566")
    out = tmp_path / "out"
    x0, y0, x1, y1 = 2000, 2000, 2400, 2400
    status, stdout, err = run(capsys, "simulate", "legus", "--catalog", path, "--out", out,
                              "--region", f"{x0},{y0},{x1},{y1}", "--seed", 0)
    assert status == 0, err
    assert set(os.listdir(out)) == fits_names("ngc1566") | {"ngc1566_truth.ecsv"}
    assert "17.9 Mpc" in stdout  # StarcNet Table 6 distance of NGC 1566

    catalog = read_legus_tab(path)
    x, y = np.asarray(catalog["x"]), np.asarray(catalog["y"])
    rows = catalog[(x >= x0) & (x < x1) & (y >= y0) & (y < y1)]
    assert len(rows) > 10

    truth = Table.read(out / "ngc1566_truth.ecsv", format="ascii.ecsv")
    linked = ("id", "x", "y", "ra", "dec", "legus_id", "legus_class", "catalog_ci")
    for name in linked + RESULTS_COLUMNS:
        assert name in truth.colnames, name
    assert len(truth) == len(rows)
    assert list(truth["legus_id"]) == list(rows["id"])
    assert list(truth["legus_class"]) == list(rows["class"])
    np.testing.assert_array_equal(np.asarray(truth["catalog_ci"]), np.asarray(rows["ci"]))
    inspected = np.isin(rows["class"], (1, 2, 3, 4))
    assert inspected.sum() > 0
    assert list(truth["class"][inspected]) == list(rows["class"][inspected])
    assert set(np.asarray(truth["class"])) <= {1, 2, 3, 4}
    # Positions in the region frame, on the nearest pixel centre.
    np.testing.assert_allclose(truth["x"], np.round(np.asarray(rows["x"]) - x0))
    np.testing.assert_allclose(truth["y"], np.round(np.asarray(rows["y"]) - y0))

    data, header = read_band(out / "ngc1566_f555w_drc.fits")
    assert data.shape == (y1 - y0, x1 - x0)
    assert header["FILTER"] == "F555W"
    assert header["DISTMPC"] == pytest.approx(17.9)
    wcs = WCS(header)
    assert wcs.has_celestial and list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    sky = wcs.pixel_to_world(np.asarray(truth["x"]), np.asarray(truth["y"]))
    np.testing.assert_allclose(truth["ra"], sky.ra.deg, rtol=0, atol=1e-9)
    np.testing.assert_allclose(truth["dec"], sky.dec.deg, rtol=0, atol=1e-9)
    # The WCS is the catalog's: catalog positions land within 0.1" of its RA/Dec.
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    at_catalog = wcs.pixel_to_world(np.asarray(rows["x"]) - x0, np.asarray(rows["y"]) - y0)
    sep = at_catalog.separation(SkyCoord(np.asarray(rows["ra"]) * u.deg,
                                         np.asarray(rows["dec"]) * u.deg))
    assert np.median(sep.arcsec) < 0.1


def test_legus_region_without_sources(tmp_path, capsys):
    path = _legus_catalog("ngc1566")
    out = tmp_path / "out"
    status, _, err = run(capsys, "simulate", "legus", "--catalog", path, "--out", out,
                         "--region", "0,0,100,100")
    assert_one_line_error(status, err, "--region", "0,0,100,100", str(path))
    assert_nothing_written(tmp_path, out)
    status, _, err = run(capsys, "simulate", "legus", "--catalog", path, "--out", out,
                         "--region", "2000,2000,2400,2400", "--max-sources", "0")
    assert_one_line_error(status, err, "--max-sources", "0")
    assert_nothing_written(tmp_path, out)


def test_field_star_colours_from_legus_class4_rows(tmp_path, capsys, write_legus_tab):
    # A field whose bright field stars take a catalog's class-4 colours says so in its truth
    # table; a catalog without such a row, or a missing one, is one line and writes nothing.
    path = _legus_catalog("ngc1566")
    out = tmp_path / "out"
    status, stdout, err = run(capsys, "simulate", "field", "--out", out, *SMALL, "--seed", 3,
                              "--field-star-colours", path)
    assert status == 0, err
    truth = Table.read(out / "mock_truth.ecsv", format="ascii.ecsv")
    assert truth.meta["field_star_colours"].startswith("catalog rows (")
    status, stdout, err = run(capsys, "simulate", "field", "--out", tmp_path / "iso", *SMALL)
    assert status == 0, err
    truth = Table.read(tmp_path / "iso" / "mock_truth.ecsv", format="ascii.ecsv")
    assert truth.meta["field_star_colours"] == "isochrone"

    clusters = tmp_path / "clusters.tab"
    write_legus_tab(clusters, [10.0, 20.0], [10.0, 20.0], [150.0, 150.0], [2.0, 2.0], [1, 2])
    for cat, needle in ((clusters, "no row of class 4"), (tmp_path / "missing.tab", "missing")):
        status, stdout, err = run(capsys, "simulate", "field", "--out", tmp_path / "bad", *SMALL,
                                  "--field-star-colours", cat)
        assert_one_line_error(status, err, cat.name, needle)
        assert_nothing_written(tmp_path, tmp_path / "bad")
