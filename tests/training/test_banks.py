"""``make-bank`` with domain randomisation and fixed perturbations; its bad inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from training_runs import run_training

from glue_starclf.io.catalogs import legus_distance_mpc


def test_randomised_and_perturbed_banks_record_the_domain(tmp_path):
    status, out, err = run_training("make-bank", "--kind", "classifier", "--n", 40, "--seed", 1,
                                    "--randomise", "--out", tmp_path / "rand")
    assert status == 0, err
    meta = json.loads((tmp_path / "rand" / "meta.json").read_text())
    assert meta["randomise"] is True and meta["domain"] is None
    status, out, err = run_training("make-bank", "--kind", "physical", "--n", 20, "--seed", 1,
                                    "--perturb", "exposure_factor=0.5", "--perturb",
                                    "zeropoint_mag=0.03", "--out", tmp_path / "deep")
    assert status == 0, err
    meta = json.loads((tmp_path / "deep" / "meta.json").read_text())
    assert meta["perturb"] == {"exposure_factor": 0.5, "zeropoint_mag": 0.03}
    assert meta["domain"]["exposure_factor"] == [0.5] * 5


@pytest.mark.parametrize("item, word", [("exposure_factor=4", "exposure_factor"),
                                        ("registration_px=0.5", "registration_px"),
                                        ("zeropoint_mag=-0.1", "zeropoint_mag"),
                                        ("eff_truncation=1", "eff_truncation"),
                                        ("psf_family=airy", "psf_family"),
                                        ("sky_factor=lots", "sky_factor"),
                                        ("nothing", "NAME=VALUE")])
def test_bad_perturbation_is_one_line_and_writes_nothing(tmp_path, item, word):
    status, out, err = run_training("make-bank", "--kind", "classifier", "--n", 10,
                                    "--perturb", item, "--out", tmp_path / "b")
    assert status != 0
    assert word in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_bad_stdpsf_file_is_one_line_and_writes_nothing(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for band in ("F275W", "F336W", "F438W", "F555W", "F814W"):
        hdu = fits.PrimaryHDU(np.ones((4, 33, 33), np.float32))
        hdu.header["NXPSFS"], hdu.header["NYPSFS"] = 2, 2
        for i in (1, 2):
            hdu.header[f"IPSFX{i:02d}"] = hdu.header[f"JPSFY{i:02d}"] = 4096 * (i - 1)
        hdu.writeto(lib / f"PSFSTD_WFC3UV_{band}.fits")
    status, out, err = run_training("make-bank", "--kind", "classifier", "--n", 10,
                                    "--randomise", "--stdpsf-dir", lib, "--out", tmp_path / "b")
    assert status != 0
    assert "PSFSTD_WFC3UV_F275W.fits: STDPSF cube of shape" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_unmatched_bank_holds_class4_detections_of_random_fields(tmp_path):
    status, out, err = run_training("make-bank", "--kind", "unmatched", "--n", 30, "--seed", 2,
                                    "--randomise", "--out", tmp_path / "u")
    assert status == 0, err
    stamps = np.load(tmp_path / "u" / "stamps.npy")
    truth = Table.read(tmp_path / "u" / "truth.ecsv")
    meta = json.loads((tmp_path / "u" / "meta.json").read_text())
    assert stamps.shape == (30, 5, 32, 32) and np.isfinite(stamps).all()
    assert meta["kind"] == "unmatched" and meta["n_stamps"] == 30
    assert set(truth["class"]) == {4} and set(truth["subtype"]) == {"unmatched-detection"}
    assert (truth["distance_mpc"] >= 3).all() and (truth["distance_mpc"] <= 20).all()
    assert all(f.startswith("random-2-") for f in truth["field"])
    # LEGUS-default detection: above the stellar CI cut, brighter than M_V = -6.
    assert (truth["ci"] >= 1.4).all()
    assert (truth["mag_v"] - 5 * np.log10(truth["distance_mpc"] * 1e5) <= -6).all()


NGC1566 = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legus"
           / "hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab")


def test_unmatched_bank_on_legus_anchored_fields(tmp_path):
    status, out, err = run_training("make-bank", "--kind", "unmatched", "--catalogs", NGC1566,
                                    "--region-size", 800, "--seed", 2, "--out", tmp_path / "u")
    assert status == 0, err
    stamps = np.load(tmp_path / "u" / "stamps.npy")
    truth = Table.read(tmp_path / "u" / "truth.ecsv")
    meta = json.loads((tmp_path / "u" / "meta.json").read_text())
    assert meta["catalogs"] == [NGC1566.name] and meta["region_size"] == 800
    assert len(truth) > 0 and stamps.shape == (len(truth), 5, 32, 32)
    assert set(truth["class"]) == {4} and set(truth["field"]) == {"ngc1566"}
    # Detected at the field's distance (StarcNet Table 6), with LEGUS's cuts.
    assert np.allclose(truth["distance_mpc"], legus_distance_mpc("ngc1566"))
    assert (truth["ci"] >= 1.4).all()
    assert (truth["x"] >= 0).all() and (truth["x"] < 800).all()


def test_anchored_unmatched_bank_matched_to_the_rows(tmp_path):
    """--match-rows keeps the unmatched detections whose V magnitudes fill those of the
    field's rendered rows, each row once: a subset, as bright as the anchored stamps."""
    common = ("--catalogs", NGC1566, "--region-size", 1500, "--seed", 2)
    for name, extra in (("all", ()), ("rows", ("--match-rows",))):
        status, out, err = run_training("make-bank", "--kind", "unmatched", *common, *extra,
                                        "--field-ci-cut", "--out", tmp_path / name)
        assert status == 0, err
    status, out, err = run_training("make-bank", "--kind", "legus", *common,
                                    "--out", tmp_path / "legus")
    assert status == 0, err
    every, kept = (Table.read(tmp_path / n / "truth.ecsv") for n in ("all", "rows"))
    rows = np.sort(np.asarray(Table.read(tmp_path / "legus" / "truth.ecsv")["mag_F555W"]))
    assert json.loads((tmp_path / "rows" / "meta.json").read_text())["match_rows"] is True
    assert 0 < len(kept) < len(every) and len(kept) <= len(rows)
    assert set(zip(kept["x"], kept["y"])) <= set(zip(every["x"], every["y"]))
    gap = np.abs(np.asarray(kept["mag_v"])[:, None] - rows[None, :]).min(axis=1)
    assert (gap <= 0.1).all()
    # What is left out are detections of magnitudes no row has (here the faintest):
    # the kept ones lie nearer the rows in brightness.
    assert abs(np.median(kept["mag_v"]) - np.median(rows)) < abs(
        np.median(every["mag_v"]) - np.median(rows))
    status, out, err = run_training("make-bank", "--kind", "unmatched", "--n", 10,
                                    "--match-rows", "--out", tmp_path / "bad")
    assert status != 0 and len(err.strip().splitlines()) == 1
    assert "--match-rows is for unmatched banks of anchored fields" in err
    assert not (tmp_path / "bad").exists()


def test_anchored_bank_records_the_psf_it_rendered_with(tmp_path):
    # An anchored field takes its catalog's stellar locus (1.304 for NGC 1566), not the
    # domain's default 1.25; the extra broadening goes on top in quadrature.
    from glue_starclf.sim.effpsf import psf_for_locus, stellar_ci
    for name, perturb in (("nominal", []), ("broader", ["--perturb", "extra_broadening_px=0.5"])):
        status, out, err = run_training("make-bank", "--kind", "legus", "--catalogs", NGC1566,
                                        "--region-size", 400, "--seed", 2, *perturb,
                                        "--out", tmp_path / name)
        assert status == 0, err
    nominal = Table.read(tmp_path / "nominal" / "truth.ecsv")
    broader = Table.read(tmp_path / "broader" / "truth.ecsv")
    base = psf_for_locus(1.304)
    assert np.allclose(nominal["psf_broadening_px"], base.broadening_px)
    assert np.allclose(nominal["psf_stellar_ci"], 1.304, atol=0.002)
    assert np.allclose(broader["psf_broadening_px"], np.hypot(base.broadening_px, 0.5), atol=1e-4)
    assert np.allclose(broader["psf_stellar_ci"],
                       stellar_ci(type(base)("tinytim", float(broader["psf_broadening_px"][0]))))
    assert (broader["psf_stellar_ci"] > nominal["psf_stellar_ci"] + 0.1).all()


def test_catalogs_for_an_engine_bank_is_one_line(tmp_path):
    status, out, err = run_training("make-bank", "--kind", "physical", "--n", 10, "--catalogs",
                                    NGC1566, "--out", tmp_path / "p")
    assert status != 0
    assert "--catalogs is for legus and unmatched banks" in err
    assert len(err.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def _unmatched_bank(folder, n, *options):
    """Build a random-field unmatched bank (seed 2); its meta and truth."""
    status, out, err = run_training("make-bank", "--kind", "unmatched", "--n", n, "--seed", 2,
                                    *options, "--out", folder)
    assert status == 0, err
    return json.loads((folder / "meta.json").read_text()), Table.read(folder / "truth.ecsv")


def test_unmatched_bank_with_catalog_field_star_colours(tmp_path):
    meta, truth = _unmatched_bank(tmp_path / "u", 20, "--field-star-colours", NGC1566)
    assert meta["field_star_colours"] == [NGC1566.name] and len(truth) == 20
    # The same request reuses the bank; another colour source is another bank.
    status, out, err = run_training("make-bank", "--kind", "unmatched", "--n", 20, "--seed", 2,
                                    "--out", tmp_path / "u")
    assert status != 0 and "holds a different bank" in err


def test_field_star_colours_for_another_kind_is_one_line(tmp_path):
    status, out, err = run_training("make-bank", "--kind", "legus", "--catalogs", NGC1566,
                                    "--field-star-colours", NGC1566, "--out", tmp_path / "l")
    assert status != 0
    assert "--field-star-colours is for unmatched banks" in err
    assert len(err.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_unmatched_bank_with_the_field_ci_cut(tmp_path):
    meta, truth = _unmatched_bank(tmp_path / "u", 20, "--field-ci-cut")
    assert meta["field_ci_cut"] is True and len(truth) == 20
    # Each field's cut is its measured stellar CI + 0.05 mag.
    assert np.allclose(truth["ci_min"], np.asarray(truth["stellar_ci"]) + 0.05)
    assert (truth["ci"] >= truth["ci_min"]).all()
    capped, truth = _unmatched_bank(tmp_path / "c", 6, "--field-ci-cut", "--max-per-field", 3)
    assert capped["max_per_field"] == 3 and len(truth) == 6
    assert max(np.unique(truth["field"], return_counts=True)[1]) <= 3
    for args, word in ((["--kind", "physical", "--n", 10, "--field-ci-cut"],
                        "--field-ci-cut is for unmatched banks"),
                       (["--kind", "unmatched", "--n", 10, "--max-per-field", 0], ">= 1"),
                       (["--kind", "unmatched", "--catalogs", NGC1566, "--max-per-field", 3],
                        "--max-per-field is for unmatched banks of random fields")):
        status, out, err = run_training("make-bank", *args, "--out", tmp_path / "p")
        assert status != 0 and word in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "p").exists()
    status, out, err = run_training("make-bank", "--kind", "physical", "--n", 10,
                                    "--field-ci-cut", "--out", tmp_path / "p")
    assert status != 0 and "--field-ci-cut is for unmatched banks" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "p").exists()


def test_match_magnitudes_takes_the_nearest_open_target_within_the_tolerance():
    from training.banks import match_magnitudes
    targets = np.array([-8.0, -7.0, -6.0])
    filled = np.zeros(3, bool)
    kept = match_magnitudes(targets, filled, np.array([-7.05, -7.02, -5.5, -8.09]), 0.1)
    # -7.02 finds -7.0 taken and nothing else within 0.1; -5.5 is 0.5 from -6.
    assert kept.tolist() == [0, 3] and filled.tolist() == [True, True, False]
    assert match_magnitudes(targets, filled, np.array([-6.0, -6.0]), 0.1).tolist() == [0]
    assert filled.all()


NO_DISTANCE = NGC1566.with_name("hlsp_legus_hst_acs-wfc3_ngc3274_multiband_v2_"
                                "padagb-mwext-avgapcor.tab")


def test_catalog_magnitudes_are_absolute_at_the_galaxy_distance(capsys):
    from glue_starclf.io.catalogs import read_legus_tab
    from training.banks import catalog_magnitudes
    (name, d, m_v), = catalog_magnitudes([NGC1566, NO_DISTANCE])
    assert "ngc3274" in capsys.readouterr().err   # no distance: skipped, said so
    # Every row with a V magnitude, inspected or not (the legus banks render them all).
    v = np.asarray(read_legus_tab(NGC1566)["mag_F555W"], float)
    v = v[np.isfinite(v)]
    assert name == "ngc1566" and d == legus_distance_mpc("ngc1566")
    assert np.allclose(np.sort(m_v), np.sort(v - 5 * np.log10(d * 1e5)))
    with pytest.raises(ValueError, match="no row with an F555W magnitude"):
        catalog_magnitudes([NO_DISTANCE])


def test_unmatched_bank_matched_to_catalog_magnitudes(tmp_path):
    from training.banks import catalog_magnitudes
    meta, truth = _unmatched_bank(tmp_path / "u", 15, "--match-magnitudes", NGC1566)
    assert meta["match_magnitudes"] == [NGC1566.name] and 0 < len(truth) <= 15
    assert meta["n_stamps"] == len(truth) == len(np.load(tmp_path / "u" / "stamps.npy"))
    # Random fields at the galaxy's distance; each kept detection lies within 0.1 mag
    # of a real row's magnitude (no LEGUS M_V cut: fainter ones may fill).
    d = legus_distance_mpc("ngc1566")
    assert np.allclose(truth["distance_mpc"], d)
    assert all(f.startswith("random-2-") and f.endswith("-ngc1566") for f in truth["field"])
    (_, _, real), = catalog_magnitudes([NGC1566])
    m_v = np.asarray(truth["mag_v"]) - 5 * np.log10(d * 1e5)
    assert (np.abs(m_v[:, None] - real[None, :]).min(axis=1) <= 0.1).all()
    assert (truth["ci"] >= 1.4).all()


@pytest.mark.parametrize("args, word", [
    (["--kind", "legus", "--catalogs", NGC1566], "--match-magnitudes is for unmatched banks"),
    (["--kind", "unmatched", "--catalogs", NGC1566], "leave out --catalogs"),
    (["--kind", "unmatched"], "no row with an F555W magnitude")])
def test_bad_match_magnitudes_is_one_error_line_and_writes_nothing(tmp_path, args, word):
    target = NO_DISTANCE if word.startswith("no row") else NGC1566
    status, out, err = run_training("make-bank", *args, "--match-magnitudes", target,
                                    "--out", tmp_path / "u")
    assert status != 0
    lines = err.strip().splitlines()
    assert word in lines[-1] and not any("Traceback" in x for x in lines)
    assert not any(tmp_path.iterdir())


def test_young_light_on_the_sources_brightens_their_surroundings(tmp_path):
    # The same field, its young light on spiral arms or around the catalog's own rows.
    common = ["--kind", "legus", "--catalogs", NGC1566, "--region-size", 600, "--seed", 3]
    for name, extra in (("arms", []), ("sources", ["--young-light-share", 1]),
                        ("perturbed", ["--perturb", "young_light=sources"])):
        status, out, err = run_training("make-bank", *common, *extra, "--out", tmp_path / name)
        assert status == 0, err
    truth = {k: Table.read(tmp_path / k / "truth.ecsv") for k in ("arms", "sources", "perturbed")}
    assert set(truth["arms"]["young_light"]) == {"arms"}
    assert set(truth["sources"]["young_light"]) == set(truth["perturbed"]["young_light"]) \
        == {"sources"}
    meta = json.loads((tmp_path / "sources" / "meta.json").read_text())
    assert meta["young_light_share"] == 1.0
    assert "young_light_share" not in json.loads((tmp_path / "arms" / "meta.json").read_text())
    # F336W light in the stamps' outer ring (their surroundings), median over the rows.
    yy, xx = np.indices((32, 32))
    ring = np.hypot(xx - 16, yy - 16) > 10
    level = {k: np.median(np.load(tmp_path / k / "stamps.npy")[:, 1][:, ring].mean(axis=1))
             for k in ("arms", "sources")}
    assert level["sources"] > 1.5 * level["arms"]


@pytest.mark.parametrize("args, word", [
    (["--kind", "legus", "--catalogs", NGC1566, "--young-light-share", "1.5"], "must lie in 0 to 1"),
    (["--kind", "physical", "--young-light-share", "0.5"], "is for legus and unmatched banks"),
    (["--kind", "legus", "--catalogs", NGC1566, "--young-light-share", "0.5", "--perturb",
      "young_light=sources"], "exclude each other"),
    (["--kind", "legus", "--catalogs", NGC1566, "--perturb", "young_light=bars"], "young_light")])
def test_bad_young_light_is_one_error_line_and_writes_nothing(tmp_path, args, word):
    status, out, err = run_training("make-bank", *args, "--out", tmp_path / "b")
    assert status != 0
    assert word in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_field_perturbations_are_left_out_of_engine_robustness_banks(tmp_path):
    from training.robustness import make_robustness_banks
    assert make_robustness_banks("physical", tmp_path, n=10, only=["young_light_sources"]) == []
    assert not any(tmp_path.iterdir())
