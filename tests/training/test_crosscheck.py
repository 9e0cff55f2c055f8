"""``crosscheck`` and its clean-room renderer (`training.independent_mocks`)."""

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.io.bands import BANDS
from glue_starclf.io.catalogs import read_legus_tab
from training.__main__ import main
from training.crosscheck import score
from training.independent_mocks import draw_classes, measure_ci, render_anchored_field

CATALOG = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legus"
           / "hlsp_legus_hst_wfc3_ngc7793-e_multiband_v1_padagb-mwext-avgapcor.tab")
PSF = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "psf"
pytestmark = pytest.mark.skipif(not (CATALOG.is_file() and PSF.is_dir()),
                                reason="../shared/data (LEGUS catalogs, TinyTim PSFs) not found")


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    return render_anchored_field(CATALOG, tmp_path_factory.mktemp("field"), region_size=400,
                                 seed=3)


def test_rendered_totals_equal_the_catalog_magnitudes(render):
    truth = render["truth_table"]
    assert len(truth) >= 20
    n_checked = 0
    for band in BANDS:
        cat = np.asarray(truth[f"catalog_mag_{band}"], float)
        measured = np.isfinite(cat) & ~np.asarray(truth[f"outside_{band}"], bool)
        diff = np.abs(np.asarray(truth[f"mag_{band}"], float) - cat)[measured]
        assert np.all(diff < 0.05), (band, np.max(diff))
        n_checked += measured.sum()
    assert n_checked >= 4 * len(truth)
    # the truth rows are the catalog's rows of the region, with its classes
    cat = read_legus_tab(CATALOG)
    rows = {int(i): k for i, k in zip(cat["id"], cat["class"])}
    assert all(rows[int(i)] == k for i, k in zip(truth["id"], truth["catalog_class"]))
    human = ~np.asarray(truth["drawn"], bool)
    assert np.array_equal(truth["class"][human], truth["catalog_class"][human])
    assert np.all(np.isin(truth["class"], [1, 2, 3, 4]))


def test_ci_on_the_image_follows_the_catalog(render):
    from astropy.io import fits
    truth = render["truth_table"]
    ci = measure_ci(fits.getdata(render["images"]["F555W"]), truth["x"], truth["y"])
    cat = np.asarray(truth["ci_catalog"], float)
    bright = np.isfinite(cat) & (np.asarray(truth["catalog_mag_F555W"]) < 23.0)
    assert bright.sum() >= 10
    assert np.nanmedian(np.abs(ci[bright] - cat[bright])) < 0.05


def test_the_mosaic_opens_with_its_bands_and_wcs(render):
    from glue_starclf.io.mosaic import open_mosaic
    with open_mosaic({b: str(p) for b, p in render["images"].items()}) as m:
        assert m.shape == (400, 400)
        assert all(m[b] is not None for b in BANDS)
        truth = Table.read(render["truth"])
        ra, dec = m.pixel_to_sky(truth["x"], truth["y"])
    cat = read_legus_tab(CATALOG)
    by_id = {int(i): (r, d) for i, r, d in zip(cat["id"], cat["ra"], cat["dec"])}
    ref = np.array([by_id[int(i)] for i in truth["id"]])
    sep = np.hypot((ra - ref[:, 0]) * np.cos(np.radians(ref[:, 1])), dec - ref[:, 1]) * 3600
    assert np.median(sep) < 0.04  # one pixel
    listed = Table.read(render["catalog"])
    assert listed.colnames == ["id", "x", "y"] and len(listed) == len(truth)


def test_uninspected_rows_get_classes_of_similar_human_rows():
    cat = read_legus_tab(CATALOG)
    classes, drawn = draw_classes(cat, np.random.default_rng(0))
    assert np.array_equal(drawn, np.asarray(cat["class"]) == 0)
    assert np.array_equal(classes[~drawn], np.asarray(cat["class"])[~drawn])
    assert np.all(np.isin(classes, [1, 2, 3, 4]))


def test_score_on_a_hand_made_table():
    truth = Table({"id": [1, 2, 3, 4, 5, 6], "class": [1, 1, 2, 3, 4, 4],
                   "drawn": [False, False, False, True, True, False]})
    results = Table({"id": [6, 5, 4, 3, 2, 1], "class": [4.0, 3.0, 3.0, 1.0, 2.0, 1.0]})
    s = score(results, truth)
    # all: id1 1->1, id2 1->2, id3 2->1, id4 3->3, id5 4->3, id6 4->4
    assert s["all"]["n"] == 6
    assert s["all"]["accuracy_4class"] == pytest.approx(3 / 6)
    assert s["all"]["accuracy_binary"] == pytest.approx(6 / 6)
    assert s["all"]["recall"] == {"1": 0.5, "2": 0.0, "3": 1.0, "4": 0.5}
    assert s["all"]["confusion"] == [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    assert s["human"]["n"] == 4 and s["human"]["accuracy_4class"] == pytest.approx(2 / 4)
    assert s["human"]["recall"]["3"] is None
    assert s["drawn"]["n"] == 2 and s["drawn"]["accuracy_4class"] == pytest.approx(1 / 2)
    assert s["drawn"]["accuracy_binary"] == pytest.approx(1.0)
    # an unclassified row (NaN class) is wrong everywhere and counted
    results["class"][0] = np.nan
    s = score(results, truth)
    assert s["all"]["n_unclassified"] == 1
    assert s["all"]["accuracy_4class"] == pytest.approx(2 / 6)
    assert s["all"]["accuracy_binary"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="truth id"):
        score(results[1:], truth)


def test_a_missing_catalog_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nope.tab"
    status = main(["crosscheck", "--catalog", str(missing), "--out", str(tmp_path / "o"),
                   "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.count("\n") == 0 and str(missing) in err and "no such" in err
    assert not (tmp_path / "o").exists()


def test_physical_field_has_004s_bands_and_truth(tmp_path):
    from astropy.io import fits

    from training.independent_mocks import render_physical_field
    r = render_physical_field(tmp_path, n=4, seed=1, spacing=80)
    assert sorted(r["images"]) == ["F336W", "F438W", "F814W"]
    assert fits.getdata(r["images"]["F814W"]).shape == (160, 160)
    truth = Table.read(r["truth"])
    assert len(truth) == 4
    assert np.all((truth["log_mass"] >= 3.5) & (truth["log_mass"] <= 5.5))
    assert np.all((truth["av"] >= 0) & (truth["av"] <= 3))
    assert np.all((truth["log_age"] >= 6.6) & (truth["log_age"] <= 10.1))
    assert np.all(truth["r_h"] > 0) and truth["r_h"].unit == "pc"
    assert np.all(truth["mag_F814W"] <= 25.5)  # the detection cut
    with pytest.raises(ValueError, match="spacing"):
        render_physical_field(tmp_path, n=4, spacing=10)


def test_breakdown_by_subtype_and_ci():
    from training.crosscheck import breakdown
    truth = Table({"id": [1, 2, 3, 4], "class": [1, 1, 4, 4], "drawn": [False, False, False, True],
                   "subtype": ["cluster:round", "cluster:round", "galaxy:n1.2", "star"],
                   "ci_over_stellar": [0.1, 0.4, 0.2, 0.2]})
    results = Table({"id": [1, 2, 3, 4], "class": [4, 1, 4, 1]})
    b = breakdown(results, truth)
    assert b["by_subtype"] == {"cluster:round": {"n": 2, "class": 1, "predicted": [1, 0, 0, 1]},
                               "galaxy": {"n": 1, "class": 4, "predicted": [0, 0, 0, 1]}}
    assert [r["recall"] for r in b["recall_by_ci"]["1"]] == [0.0, None, 1.0, None]
    assert [r["n"] for r in b["recall_by_ci"]["4"]] == [0, 1, 0, 0]


def test_crosscheck_end_to_end_on_a_small_region(tmp_path, capsys):
    import json
    status = main(["crosscheck", "--catalog", str(CATALOG), "--region-size", "300",
                   "--out", str(tmp_path / "o"), "--report", str(tmp_path / "r"),
                   "--bank", str(tmp_path / "bank")])
    out, err = capsys.readouterr()
    assert status == 0, err
    from glue_starclf.learn.banks import label_sources, open_bank
    stamps, rows, meta = open_bank(tmp_path / "bank")
    truth = Table.read(tmp_path / "o" / "ngc7793-e" / "truth.ecsv")
    assert stamps.shape == (len(truth), 5, 32, 32) and meta["kind"] == "legus"
    assert list(rows["id"]) == list(truth["id"]) and list(rows["class"]) == list(truth["class"])
    assert np.array_equal(label_sources([tmp_path / "bank"]) == 0, np.asarray(truth["drawn"]))
    assert np.isfinite(rows["stellar_ci"]).all() and np.abs(stamps).sum() > 0
    report = json.loads((tmp_path / "r" / "crosscheck.json").read_text())
    field = report["fields"]["ngc7793-e"]
    truth = Table.read(tmp_path / "o" / "ngc7793-e" / "truth.ecsv")
    assert field["scores"]["all"]["n"] == len(truth) == report["pooled"]["scores"]["all"]["n"]
    assert np.sum(field["scores"]["all"]["confusion"]) == len(truth)
    assert field["scores"]["human"]["n"] + field["scores"]["drawn"]["n"] == len(truth)
    assert report["pooled"]["scores"] == field["scores"]
    assert "## Fidelity" in (tmp_path / "r" / "crosscheck.md").read_text()


def test_the_second_renderer_end_to_end_and_its_own_parameters(tmp_path, capsys):
    import json
    args = ["crosscheck", "--catalog", str(CATALOG), "--region-size", "300",
            "--renderer", "independent_mocks2", "--out", str(tmp_path / "o"),
            "--report", str(tmp_path / "r")]
    assert main(args + ["--stellar-ci-gap", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "independent_mocks2" in err
    assert main(args) == 0
    report = json.loads((tmp_path / "r" / "crosscheck.json").read_text())
    assert report["renderer"] == "independent_mocks2"
    truth = Table.read(tmp_path / "o" / "ngc7793-e" / "truth.ecsv")
    assert report["fields"]["ngc7793-e"]["scores"]["all"]["n"] == len(truth) > 0
    assert "independent_mocks2.py" in (tmp_path / "r" / "crosscheck.md").read_text()


def test_score_physical_on_a_hand_made_table():
    from training.crosscheck import score_physical
    truth = Table({"id": [1, 2, 3], "log_age": [7.0, 8.0, 9.0], "log_mass": [4.0, 4.0, 4.0],
                   "av": [0.0, 1.0, 2.0], "r_h": [1.0, 10.0, 1.0]})
    results = Table({"id": [3, 2, 1], "log_age": [9.5, 8.0, 7.0], "log_age_lo": [9.0, 7.5, 7.5],
                     "log_age_hi": [10.0, 8.5, 8.0], "log_mass": [4.0, np.nan, 4.2],
                     "log_mass_lo": [3.9, 3.9, 4.1], "log_mass_hi": [4.1, 4.1, 4.3],
                     "av": [2.0, 1.0, 0.0], "av_lo": [1.9, 0.9, -0.1], "av_hi": [2.1, 1.1, 0.1],
                     "r_h": [10.0, 10.0, 1.0], "r_h_lo": [5.0, 5.0, 0.5],
                     "r_h_hi": [20.0, 20.0, 2.0]})
    s = score_physical(results, truth)
    assert s["log_age"]["n"] == 3 and s["log_age"]["median_error"] == pytest.approx(0.0)
    assert s["log_age"]["coverage"] == pytest.approx(2 / 3)     # id 1: 7.0 below 7.5
    assert s["log_mass"]["n"] == 2                                # a NaN estimate is left out
    assert s["log_mass"]["coverage"] == pytest.approx(0.5)
    assert s["av"]["p95_abs_error"] == pytest.approx(0.0)
    assert s["log_r_h"]["p95_abs_error"] == pytest.approx(np.percentile([1.0, 0.0, 0.0], 95))
    assert s["log_r_h"]["bound_004"] == 0.2
    with pytest.raises(ValueError, match="truth id"):
        score_physical(results[1:], truth)


def test_crosscheck_physical_only(tmp_path, capsys):
    import json
    status = main(["crosscheck", "--physical", "12", "--out", str(tmp_path / "o"),
                   "--report", str(tmp_path / "r")])
    assert status == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r" / "crosscheck.json").read_text())
    assert "pooled" not in report and report["physical"]["n"] == 12
    assert report["physical"]["scores"]["log_mass"]["n"] == 12
    assert "004's setting" in (tmp_path / "r" / "crosscheck.md").read_text()
    assert main(["crosscheck", "--out", str(tmp_path / "o2"), "--report",
                 str(tmp_path / "r2")]) == 2
    assert "nothing to render" in capsys.readouterr().err
