"""``starclf classify`` and ``starclf models`` end to end (in-process
`glue_starclf.cli.main.main`) with the tiny session-trained models of
tests/training/conftest.py: every catalog format, detection, the DS9 file,
and the one-line errors (exit status 2, nothing written)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from glue_starclf.cli.main import main
from glue_starclf.core.predict import RESULT_COLUMNS


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A 256 x 256 mock field with 20 sources, five FITS files and its truth."""
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    mock = random_field(seed=7, shape=(256, 256), n_sources=20)
    folder = tmp_path_factory.mktemp("mosaic")
    paths = write_mosaic(mock, folder, prefix="m")
    images = [f"{b}={p}" for b, p in paths.items() if b != "truth"]
    return mock, paths, images, folder


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def classify_argv(field, trained_models, out, *extra, regions=None):
    argv = ["classify"]
    for image in field[2]:
        argv += ["--image", image]
    argv += ["--distance-mpc", "10", "--out", out, "--models", trained_models["models"]]
    if regions is not None:
        argv += ["--regions", regions]
    return argv + list(extra)


def assert_one_line_error(status, err, *words):
    assert status == 2, err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("starclf: error:")]
    assert len(errors) == 1, err
    for w in words:
        assert str(w) in errors[0], errors[0]
    return errors[0]


def check_results(out, regions, n=None):
    """The table has every schema column; the DS9 file round-trips positions."""
    from regions import Regions
    t = Table.read(out)
    assert tuple(t.colnames) == RESULT_COLUMNS
    if n is not None:
        assert len(t) == n
    regs = Regions.read(str(regions), format="ds9")
    assert len(regs) == len(t)
    cx = np.array([r.center.x for r in regs])
    cy = np.array([r.center.y for r in regs])
    np.testing.assert_allclose(cx, t["x"], atol=0.01)
    np.testing.assert_allclose(cy, t["y"], atol=0.01)
    # the file itself is 1-based (DS9/FITS), the table 0-based
    text = Path(regions).read_text()
    raw = np.array([[float(v) for v in m] for m in
                    re.findall(r"circle\(([-0-9.eE+]+),\s*([-0-9.eE+]+),", text)]).reshape(-1, 2)
    assert len(raw) == len(t)
    np.testing.assert_allclose(raw[:, 0] - 1, t["x"], atol=0.01)
    np.testing.assert_allclose(raw[:, 1] - 1, t["y"], atol=0.01)
    if len(t):
        p = np.column_stack([np.asarray(t[f"p_class{k}"], float) for k in range(1, 5)])
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    return t


# -- catalog formats ---------------------------------------------------------------

def _truth_xy(field):
    mock = field[0]
    return np.asarray(mock.truth["x"], float), np.asarray(mock.truth["y"], float)


def test_legus_tab_catalog(capsys, field, trained_models, tmp_path, write_legus_tab):
    mock = field[0]
    x, y = _truth_xy(field)
    cat = tmp_path / "hlsp_legus_hst_wfc3_mock_multiband_v1.tab"
    write_legus_tab(cat, x, y, mock.truth["ra"], mock.truth["dec"], mock.truth["class"])
    out, reg = tmp_path / "res.ecsv", tmp_path / "res.reg"
    status, stdout, err = run(capsys, *classify_argv(field, trained_models, out, "--catalog",
                                                     cat, regions=reg))
    assert status == 0, err
    assert "1-based" in err  # the convention used is stated
    t = check_results(out, reg, n=20)
    np.testing.assert_allclose(t["x"], x, atol=1e-5)  # 1-based file -> 0-based table
    np.testing.assert_allclose(t["y"], y, atol=1e-5)
    np.testing.assert_array_equal(t["id"], np.arange(1, 21))
    assert "classified 20 sources" in stdout


def test_ecsv_with_xy(capsys, field, trained_models, tmp_path):
    x, y = _truth_xy(field)
    cat = tmp_path / "xy.ecsv"
    Table({"id": np.arange(101, 121), "x": x, "y": y}).write(cat)
    out, reg = tmp_path / "res.fits", tmp_path / "res.reg"
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, "--catalog", cat,
                                                regions=reg))
    assert status == 0, err
    t = check_results(out, reg, n=20)
    np.testing.assert_array_equal(t["id"], np.arange(101, 121))
    np.testing.assert_allclose(t["x"], x)
    np.testing.assert_allclose(t["y"], y)


def test_ecsv_with_radec_only(capsys, field, trained_models, tmp_path):
    from astropy.wcs import WCS
    x, y = _truth_xy(field)
    w = WCS(fits.getheader(field[1]["F555W"]))
    ra, dec = w.all_pix2world(x, y, 0)
    cat = tmp_path / "radec.ecsv"
    Table({"ra": ra, "dec": dec}).write(cat)
    out, reg = tmp_path / "res.csv", tmp_path / "res.reg"
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, "--catalog", cat,
                                                regions=reg))
    assert status == 0, err
    assert "ra/dec" in err
    t = check_results(out, reg, n=20)
    np.testing.assert_allclose(t["x"], x, atol=0.01)
    np.testing.assert_allclose(t["y"], y, atol=0.01)


def test_phangs_fits_catalog(capsys, field, trained_models, tmp_path):
    x, y = _truth_xy(field)
    cat = tmp_path / "phangs_clusters.fits"
    Table({"ID_PHANGS_CLUSTERS": np.arange(1, 21) * 10, "PHANGS_X": x, "PHANGS_Y": y,
           "PHANGS_CLUSTER_CLASS_HUMAN": np.ones(20, int)}).write(cat)
    out, reg = tmp_path / "res.ecsv", tmp_path / "res.reg"
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, "--catalog", cat,
                                                regions=reg))
    assert status == 0, err
    assert "PHANGS_X/PHANGS_Y are 0-based" in err
    t = check_results(out, reg, n=20)
    np.testing.assert_allclose(t["x"], x)  # 0-based, used as is
    np.testing.assert_array_equal(t["id"], np.arange(1, 21) * 10)


def test_region_without_catalog_detects(capsys, field, trained_models, tmp_path):
    out, reg = tmp_path / "res.ecsv", tmp_path / "res.reg"
    status, stdout, err = run(capsys, *classify_argv(field, trained_models, out,
                                                     "--region", "0,0,128,256", regions=reg))
    assert status == 0, err
    t = check_results(out, reg)
    assert len(t) > 0
    assert ((t["x"] >= 0) & (t["x"] < 128)).all()
    np.testing.assert_array_equal(t["id"], np.arange(1, len(t) + 1))


def test_detect_applies_the_legus_cuts(capsys, field, tmp_path):
    """`starclf detect`: with --distance-mpc the M_V cut applies; each cut can be relaxed."""
    images = [a for image in field[2] for a in ("--image", image)]
    loose, strict = tmp_path / "loose.ecsv", tmp_path / "strict.ecsv"
    status, _, err = run(capsys, "detect", *images, "--ci-min", "0", "--min-bands", "1",
                         "--abs-mag-limit", "99", "--distance-mpc", "10", "--out", loose)
    assert status == 0, err
    status, _, err = run(capsys, "detect", *images, "--distance-mpc", "10",
                         "--abs-mag-limit", "-9", "--out", strict)
    assert status == 0, err
    loose_t, strict_t = Table.read(loose), Table.read(strict)
    assert len(strict_t) < len(loose_t)
    assert strict_t.meta["n_after_mag"] <= strict_t.meta["n_after_ci"]
    status, _, err = run(capsys, "detect", *images, "--distance-mpc", "-1",
                         "--out", tmp_path / "bad.ecsv")
    assert_one_line_error(status, err, "--distance-mpc")
    assert not (tmp_path / "bad.ecsv").exists()


def test_detect_with_the_field_own_ci_cut(capsys, field, tmp_path):
    """The default CI cut is the field's own; --stellar-ci gives its stellar CI, --ci-min a
    fixed cut."""
    from glue_starclf.core.stellar_ci import field_ci_cut
    from glue_starclf.io.mosaic import open_mosaic
    images = [a for image in field[2] for a in ("--image", image)]
    out = tmp_path / "own.ecsv"
    status, stdout, err = run(capsys, "detect", *images, "--region", "0,0,256,128", "--out", out)
    assert status == 0, err
    with open_mosaic(list(field[2])) as mosaic:
        cut, source, measured = field_ci_cut(mosaic, (128, 64))
    t = Table.read(out)
    assert t.meta["ci_min"] == pytest.approx(cut) and (np.asarray(t["ci"]) >= cut).all()
    assert t.meta["stellar_ci_source"] == source
    assert f"(CI >= {cut:.3f} mag)" in stdout
    # This 256 px field is too small for a measurement: the default, with a warning.
    assert not measured and f"CI cut {cut:.3f} mag: the field's stellar CI is the default" in err
    for extra, want in ((["--stellar-ci", "1.38"], 1.43), (["--ci-min", "1.4"], 1.4),
                        (["--ci-min", "field", "--stellar-ci", "1.2"], 1.25)):
        status, stdout, err = run(capsys, "detect", *images, *extra, "--out", out, "--overwrite")
        assert status == 0, err
        t = Table.read(out)
        assert t.meta["ci_min"] == pytest.approx(want) and (np.asarray(t["ci"]) >= want).all()
    status, stdout, err = run(capsys, "detect", *images, "--stellar-ci", "1.3", "--ci-min", "1.4",
                              "--out", tmp_path / "both.ecsv")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "--stellar-ci 1.3 sets the field's own CI cut, and --ci-min 1.4 a fixed one" in err
    assert not (tmp_path / "both.ecsv").exists()
    capsys.readouterr()
    for command in ("detect", "classify"):  # refused before any file is read
        with pytest.raises(SystemExit) as exit_:
            run(capsys, command, *images, "--stellar-ci", "1.8", "--distance-mpc", "10",
                "--out", tmp_path / "bad.ecsv")
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert "--stellar-ci: stellar CI '1.8' mag outside 1.1-1.55" in err
        assert not (tmp_path / "bad.ecsv").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run(capsys, "detect", *images, "--ci-min", "sharp", "--out", tmp_path / "bad.ecsv")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--ci-min: 'sharp' is neither a number nor 'field'" in err
    assert not (tmp_path / "bad.ecsv").exists()


def test_whole_mosaic_without_catalog(capsys, field, trained_models, tmp_path):
    out, reg = tmp_path / "res.ecsv", tmp_path / "res.reg"
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, regions=reg))
    assert status == 0, err
    t = check_results(out, reg)
    assert len(t) > 0
    assert (t["x"] >= 128).any()  # not just the half of the region test
    # the detection's CI cut is in the results' metadata
    meta = t.meta
    assert meta["detection_ci_min"] == pytest.approx(meta["detection_stellar_ci"] + 0.05, abs=1e-3)
    assert meta["detection_stellar_ci_source"].startswith(("measured in", "default"))


def test_empty_catalog(capsys, field, trained_models, tmp_path):
    cat = tmp_path / "empty.ecsv"
    Table({"x": np.zeros(0), "y": np.zeros(0)}).write(cat)
    out, reg = tmp_path / "res.ecsv", tmp_path / "res.reg"
    status, stdout, err = run(capsys, *classify_argv(field, trained_models, out, "--catalog",
                                                     cat, regions=reg))
    assert status == 0, err
    assert "no sources to classify" in err
    assert "classified 0 sources" in stdout
    check_results(out, reg, n=0)


# -- bad input ------------------------------------------------------------------------

def _replace_image(field, band, value):
    return [f"{band}={value}" if img.startswith(f"{band}=") else img for img in field[2]]


def _argv_with_images(images, trained_models, out, *extra):
    argv = ["classify"]
    for image in images:
        argv += ["--image", image]
    return argv + ["--distance-mpc", "10", "--out", str(out), "--models",
                   str(trained_models["models"]), *extra]


def test_missing_image_file(capsys, field, trained_models, tmp_path):
    out = tmp_path / "res.ecsv"
    images = _replace_image(field, "F336W", tmp_path / "nosuch_f336w.fits")
    status, _, err = run(capsys, *_argv_with_images(images, trained_models, out))
    assert_one_line_error(status, err, "nosuch_f336w.fits")
    assert not out.exists()


def test_non_fits_image(capsys, field, trained_models, tmp_path):
    bad = tmp_path / "notes_f336w.fits"
    bad.write_text("this is not a FITS file\n" * 10)
    out = tmp_path / "res.ecsv"
    status, _, err = run(capsys, *_argv_with_images(_replace_image(field, "F336W", bad),
                                                    trained_models, out))
    assert_one_line_error(status, err, "notes_f336w.fits", "FITS")
    assert not out.exists()


def test_unknown_band(capsys, field, trained_models, tmp_path):
    out = tmp_path / "res.ecsv"
    images = field[2] + [f"F999W={field[1]['F555W']}"]
    status, _, err = run(capsys, *_argv_with_images(images, trained_models, out))
    assert_one_line_error(status, err, "F999W")
    assert not out.exists()


def test_duplicate_band(capsys, field, trained_models, tmp_path):
    out = tmp_path / "res.ecsv"
    images = field[2] + [f"F555W={field[1]['F555W']}"]
    status, _, err = run(capsys, *_argv_with_images(images, trained_models, out))
    assert_one_line_error(status, err, "F555W", "duplicate")
    assert not out.exists()


def test_band_row_contradicting_the_filter_keyword(capsys, field, trained_models, tmp_path):
    """F555W=<the F814W file>: refused naming both, unless --force-band."""
    out = tmp_path / "res.ecsv"
    paths = field[1]
    images = [f"{b}={paths[b]}" for b in ("F275W", "F336W", "F438W")] + [
        f"F555W={paths['F814W']}", f"F814W={paths['F555W']}"]
    cat = ["--catalog", paths["truth"]]
    status, _, err = run(capsys, *_argv_with_images(images, trained_models, out, *cat))
    assert_one_line_error(status, err, str(paths["F814W"]), "given as F555W",
                          "FILTER = 'F814W'", "--force-band")
    assert not out.exists()
    status, _, err = run(capsys, *_argv_with_images(images, trained_models, out, *cat,
                                                     "--force-band"))
    assert status == 0, err
    assert "although its header FILTER = 'F814W'" in err
    assert len(Table.read(out)) == 20


def test_bands_of_different_shapes(capsys, field, trained_models, tmp_path):
    small = tmp_path / "small_f814w.fits"
    with fits.open(field[1]["F814W"]) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
        fits.PrimaryHDU(hdu.data[:128, :128], header=hdu.header).writeto(small)
    out = tmp_path / "res.ecsv"
    status, _, err = run(capsys, *_argv_with_images(_replace_image(field, "F814W", small),
                                                    trained_models, out))
    assert_one_line_error(status, err, "small_f814w.fits", "shape")
    assert not out.exists()


def test_catalog_without_position_columns(capsys, field, trained_models, tmp_path):
    cat = tmp_path / "nopos.ecsv"
    Table({"a": [1.0, 2.0], "b": [3.0, 4.0]}).write(cat)
    out = tmp_path / "res.ecsv"
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, "--catalog", cat))
    assert_one_line_error(status, err, "nopos.ecsv", "position")
    assert not out.exists()


def test_existing_output_is_kept(capsys, field, trained_models, tmp_path):
    x, y = _truth_xy(field)
    cat = tmp_path / "xy.ecsv"
    Table({"x": x[:3], "y": y[:3]}).write(cat)
    out = tmp_path / "res.ecsv"
    out.write_text("precious\n")
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, "--catalog", cat))
    assert_one_line_error(status, err, str(out), "--overwrite")
    assert out.read_text() == "precious\n"
    # ... and --overwrite replaces it
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, "--catalog", cat,
                                                "--overwrite"))
    assert status == 0, err
    assert len(Table.read(out)) == 3


def test_no_models_folder(capsys, field, trained_models, tmp_path):
    x, y = _truth_xy(field)
    cat = tmp_path / "xy.ecsv"
    Table({"x": x[:3], "y": y[:3]}).write(cat)
    out = tmp_path / "res.ecsv"
    argv = classify_argv(field, trained_models, out, "--catalog", cat)
    argv[argv.index("--models") + 1] = str(tmp_path / "nosuchmodels")
    status, _, err = run(capsys, *argv)
    assert_one_line_error(status, err, "nosuchmodels")
    assert not out.exists()


# -- starclf models ---------------------------------------------------------------------

def test_models_lists_both_families(capsys, trained_models):
    status, out, err = run(capsys, "models", "--models", trained_models["models"])
    assert status == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:2] == ["classifier-s0", "classifier"]
    assert lines[1].split()[:2] == ["physical-s0", "physical"]
    assert "accuracy" in lines[0] and "cb_auc" in lines[1]


def test_models_add_up_the_runs_a_member_started_from(capsys, trained_models, tmp_path):
    src = Path(trained_models["models"])
    for f in src.glob("physical-s0.*"):
        shutil.copy(f, tmp_path / f.name)
    card = json.loads((tmp_path / "physical-s0.json").read_text())
    first = {"wall_time_s": 100.0}
    card["training"]["init"] = {"card": "physical-s0.json",
                                "training": {"wall_time_s": 50.0, "init": {"training": first}}}
    (tmp_path / "physical-s0.json").write_text(json.dumps(card))
    status, out, err = run(capsys, "models", "--models", tmp_path)
    assert status == 0, err
    total = card["training"]["wall_time_s"] + 150.0
    assert f"(3 runs, {total:.1f} s in all)" in out
    # a member trained in one run shows its own time only
    status, out, _ = run(capsys, "models", "--models", src)
    assert "runs," not in out


def test_models_json(capsys, trained_models):
    status, out, err = run(capsys, "models", "--models", trained_models["models"], "--json")
    assert status == 0, err
    cards = json.loads(out)
    assert sorted(c["family"] for c in cards) == ["classifier", "physical"]
    for c in cards:
        assert len(c["sha256"]) == 64 and c["weights"].endswith(".safetensors")


def _copy_images(field, folder, edit):
    """The field's five FITS files copied into ``folder`` with ``edit(band, hdu)`` applied."""
    images = []
    for image in field[2]:
        band, path = image.split("=", 1)
        with fits.open(path) as hdul:
            hdu = fits.PrimaryHDU(np.array(hdul[0].data), header=hdul[0].header.copy())
        edit(band, hdu)
        new = folder / Path(path).name
        hdu.writeto(new)
        images.append(f"{band}={new}")
    return images


def test_image_without_wcs_classifies_a_pixel_catalog(capsys, field, trained_models, tmp_path):
    from astropy.wcs import WCS

    def strip_wcs(band, hdu):
        for key in WCS(hdu.header).to_header():
            hdu.header.remove(key, ignore_missing=True, remove_all=True)
    images = _copy_images(field, tmp_path, strip_wcs)
    x, y = _truth_xy(field)
    cat = tmp_path / "pix.csv"
    Table({"x": x, "y": y}).write(cat)
    out, reg = tmp_path / "res.ecsv", tmp_path / "res.reg"
    status, _, err = run(capsys, *_argv_with_images(images, trained_models, out, "--catalog",
                                                    cat, "--regions", reg))
    assert status == 0, err
    assert "no WCS" in err
    t = check_results(out, reg, n=len(x))
    assert np.all(np.isnan(t["ra"])) and np.all(np.isnan(t["dec"]))
    assert np.all(np.isfinite(t["p_class1"]))


def test_all_nan_stamp_gives_nan_results(capsys, field, trained_models, tmp_path):
    x, y = _truth_xy(field)
    blank = (int(round(y[0])) - 40, int(round(y[0])) + 40,
             int(round(x[0])) - 40, int(round(x[0])) + 40)

    def blank_source(band, hdu):
        y0, y1, x0, x1 = blank
        hdu.data[max(y0, 0):y1, max(x0, 0):x1] = np.nan
    images = _copy_images(field, tmp_path, blank_source)
    cat = tmp_path / "pix.csv"
    Table({"x": x, "y": y}).write(cat)
    out = tmp_path / "res.ecsv"
    status, _, err = run(capsys, *_argv_with_images(images, trained_models, out, "--catalog",
                                                    cat))
    assert status == 0, err
    t = Table.read(out)
    assert np.isnan(t["p_class1"][0]) and np.isnan(t["log_age"][0]) and t["class"][0] == 0
    assert "nan_pixels" in t["flags"][0]
    far = (np.abs(x - x[0]) > 80) | (np.abs(y - y[0]) > 80)
    assert far.any() and np.all(np.isfinite(np.asarray(t["p_class1"])[far]))


@pytest.mark.parametrize("out_name, reg_name, words", [
    ("r.ecsv", "r.txt", ["r.txt", "must end in .reg"]),
    ("r.ecsv", "nofolder/r.reg", ["nofolder", "does not exist"]),
    ("r.ecsv", "r.ecsv", ["r.ecsv", "given as two outputs"]),
    ("r.dat", "r.reg", ["r.dat", "unknown output extension"]),
])
def test_outputs_checked_before_any_work(capsys, field, trained_models, tmp_path, monkeypatch,
                                         out_name, reg_name, words):
    """A bad --regions is refused before the models run, not after the table is written."""
    import glue_starclf.core.predict as predict_module

    def no_work(*a, **k):
        raise AssertionError("predict ran although an output is bad")

    monkeypatch.setattr(predict_module, "predict", no_work)
    out, reg = tmp_path / out_name, tmp_path / reg_name
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, regions=reg))
    assert_one_line_error(status, err, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_overwrite_replaces_table_and_regions_together(capsys, field, trained_models, tmp_path,
                                                       monkeypatch):
    """An interruption while the files are moved into place leaves both old ones."""
    import os as os_module

    from glue_starclf.io import writers
    out, reg = tmp_path / "r.ecsv", tmp_path / "r.reg"
    out.write_text("old table")
    reg.write_text("old regions")
    real = os_module.replace

    def interrupted(src, dst):
        if str(dst) == str(reg):
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(writers.os, "replace", interrupted)
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, "--overwrite",
                                                regions=reg))
    assert status == 130 and "Traceback" not in err
    assert out.read_text() == "old table" and reg.read_text() == "old regions"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.ecsv", "r.reg"]
    monkeypatch.undo()
    status, _, err = run(capsys, *classify_argv(field, trained_models, out, "--overwrite",
                                                regions=reg))
    assert status == 0, err
    check_results(out, reg)


def test_sigterm_leaves_no_temporary_and_no_output(field, trained_models, tmp_path):
    """A run stopped by SIGTERM while it works: no results, no temporary files."""
    import signal
    import subprocess
    import sys
    import time
    out, reg = tmp_path / "r.ecsv", tmp_path / "r.reg"
    argv = [str(a) for a in classify_argv(field, trained_models, out, regions=reg)]
    proc = subprocess.Popen([sys.executable, "-m", "glue_starclf.cli.main", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".r.") for p in
                                             tmp_path.iterdir()):
        time.sleep(0.01)
    assert any(p.name.startswith(".r.") for p in tmp_path.iterdir())  # working, temps made
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err
    names = sorted(p.name for p in tmp_path.iterdir())
    if proc.returncode == 130:
        assert names == [] and "starclf: interrupted" in err
    else:  # finished before the signal arrived: both outputs, nothing else
        assert names == ["r.ecsv", "r.reg"]


def test_class_balanced_drops_the_models_class_prior(capsys, field, trained_models, tmp_path):
    import shutil

    from glue_starclf.core.class_prior import CLASS_PRIOR_FILE, ClassPrior, save_class_prior
    from glue_starclf.core.predict import load_ensemble
    models = tmp_path / "models"
    shutil.copytree(trained_models["models"], models)
    hashes = load_ensemble("classifier", models).hashes
    save_class_prior(models / CLASS_PRIOR_FILE, ClassPrior(1.0, [0, 0, -30, 30], hashes))
    x, y = _truth_xy(field)
    cat = tmp_path / "xy.ecsv"
    Table({"x": x, "y": y}).write(cat)
    tables = {}
    for name, folder, extra in (("prior", models, ()),
                                ("balanced", models, ("--class-balanced",)),
                                ("no file", trained_models["models"], ())):
        argv = classify_argv(field, trained_models, tmp_path / f"{name}.ecsv", "--catalog", cat,
                             *extra)
        argv[argv.index("--models") + 1] = str(folder)
        status, out, err = run(capsys, *argv)
        assert status == 0, err
        tables[name] = Table.read(tmp_path / f"{name}.ecsv")
    assert set(tables["prior"]["class"]) == {4}
    assert np.all(tables["prior"]["p_class4"] > 0.999)
    assert tables["prior"].meta["class_prior"]["log_prior"] == [0, 0, -30, 30]
    assert tables["balanced"].meta["class_prior"] is None
    for k in (1, 2, 3, 4):
        np.testing.assert_array_equal(tables["balanced"][f"p_class{k}"],
                                      tables["no file"][f"p_class{k}"])
    assert not np.all(tables["balanced"]["p_class4"] > 0.999)


def test_unreadable_class_prior_is_one_line_and_class_balanced_skips_it(capsys, field,
                                                                        trained_models,
                                                                        tmp_path):
    import shutil

    from glue_starclf.core.class_prior import CLASS_PRIOR_FILE
    models = tmp_path / "models"
    shutil.copytree(trained_models["models"], models)
    (models / CLASS_PRIOR_FILE).write_text('{"temperature": "warm"')
    argv = classify_argv(field, trained_models, tmp_path / "r.ecsv")
    argv[argv.index("--models") + 1] = str(models)
    status, out, err = run(capsys, *argv)
    assert_one_line_error(status, err, CLASS_PRIOR_FILE, "not a readable class prior")
    assert not (tmp_path / "r.ecsv").exists()
    status, out, err = run(capsys, *argv, "--class-balanced")
    assert status == 0, err
    assert Table.read(tmp_path / "r.ecsv").meta["class_prior"] is None


def test_stellar_ci_outside_its_range(capsys, field, trained_models, tmp_path):
    out = tmp_path / "r.ecsv"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run(capsys, *classify_argv(field, trained_models, out, "--stellar-ci", 3))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "stellar CI '3' mag outside 1.1-1.55" in err
    assert not out.exists()


def test_a_field_of_out_of_distribution_sources_is_warned_about(capsys, field, tmp_path):
    """Images 20 mag too faint (a calibration mistake) with the bundled models: every
    source is 'ood' and one warning says so; the field as written is not warned about."""
    argv = ["classify", *sum((["--image", i] for i in field[2]), []), "--distance-mpc", "10"]
    status, _, err = run(capsys, *argv, "--out", tmp_path / "ok.ecsv")
    assert status == 0, err
    assert "out of the training distribution" not in err
    faint = sum((["--zeropoint", f"{b}=45"] for b in ("F275W", "F336W", "F438W", "F555W",
                                                         "F814W")), [])
    status, _, err = run(capsys, *argv, *faint, "--out", tmp_path / "faint.ecsv")
    assert status == 0, err
    t = Table.read(tmp_path / "faint.ecsv")
    assert all("ood" in str(f).split(",") for f in t["flags"])
    warned = [ln for ln in err.splitlines() if "out of the training distribution" in ln]
    assert len(warned) == 1 and f"{len(t)} of {len(t)} sources" in warned[0]
