"""``surroundings``: the V errors of each class on a render of NGC 1566 and in its catalog."""

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.io.catalogs import read_legus_tab
from training.surroundings import V_BINS, aperture_errors, error_excess, pooled_excess
from training_runs import run_training

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legus"
NGC1566 = SHARED / "hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab"
NGC4449 = SHARED / "hlsp_legus_hst_acs-wfc3_ngc4449_multiband_v2_padagb-mwext-avgapcor.tab"
needs_shared = pytest.mark.skipif(not NGC1566.exists(), reason="../shared/data/legus absent")


def test_aperture_error_of_a_source_on_a_flat_noisy_sky():
    # 10^4 counts in the aperture on a sky of sigma 2 counts/px: photons plus 50 px of sky.
    rng = np.random.default_rng(0)
    t, sigma = 100.0, 0.02
    stamps = rng.normal(5.0, sigma, (400, 32, 32))
    stamps[:, 16, 16] += 100.0
    ap = 50      # pixels of the 4 px aperture (r <= 4)
    expected = 1.0857 * np.sqrt(1e4 + ap * (sigma * t) ** 2 * (1 + ap / 52)) / 1e4
    err = aperture_errors(stamps, t)
    assert np.median(err) == pytest.approx(expected, rel=0.05)
    stamps[0, 16, 16] = -1e3
    assert np.isnan(aperture_errors(stamps[:1], t)[0])


def test_error_excess_per_class_and_bin():
    mag = np.repeat([21.5, 23.5], 24)
    cls = np.tile(np.repeat([1, 2, 3, 4], 6), 2)
    err = np.where(cls == 1, 0.04, 0.05)
    rows = error_excess(mag, err, cls)
    assert [r["bin"] for r in rows] == [list(b) for b in V_BINS]
    assert rows[0]["n"] == [6, 6, 6, 6] and rows[1]["n"] == [0, 0, 0, 0]
    assert rows[0]["excess"][0] is None
    assert rows[0]["excess"][2] == pytest.approx(0.05 ** 2 - 0.04 ** 2)
    assert rows[1]["median_err"] == [None] * 4 and rows[1]["excess"] == [None] * 4
    # Two fields, the second with twice the rows of class 2: its excess weighs double.
    other = error_excess(np.repeat(21.5, 30), np.r_[[0.04] * 6, [0.06] * 12, [0.05] * 12],
                         np.r_[[1] * 6, [2] * 12, [3] * 6, [4] * 6])
    pooled = pooled_excess([rows, other])
    assert pooled[0]["excess"][1] == pytest.approx(
        (6 * (0.05 ** 2 - 0.04 ** 2) + 12 * (0.06 ** 2 - 0.04 ** 2)) / 18)
    assert pooled[0]["n"][1] == 18 and pooled[1]["excess"][1] is None


@needs_shared
def test_surroundings_sets_the_render_beside_the_catalog_rows(ngc1566_bank, tmp_path):
    status, out, err = run_training("surroundings", "--bank", ngc1566_bank, "--catalogs",
                                    NGC1566, NGC4449, "--out", tmp_path)
    assert status == 0, err
    result = json.loads((tmp_path / "surroundings.json").read_text())
    assert "| ngc1566 | render |" in (tmp_path / "surroundings.md").read_text()
    # The catalog side: the catalog's own errors of exactly the rendered rows.
    truth = Table.read(ngc1566_bank / "truth.ecsv")
    cat = read_legus_tab(NGC1566)
    rows = np.isin(np.asarray(cat["id"]), np.asarray(truth["legus_id"]))
    want = error_excess(np.asarray(cat["mag_F555W"], float)[rows],
                        np.asarray(cat["err_F555W"], float)[rows],
                        np.asarray(cat["class"], int)[rows])
    assert result["fields"]["ngc1566"]["catalog"] == want
    got = result["fields"]["ngc1566"]["render"]
    assert sum(sum(r["n"]) for r in got) > 20
    errs = [e for r in got for e in r["median_err"] if e is not None]
    assert errs and all(0 < e < 0.2 for e in errs)


@needs_shared
@pytest.mark.parametrize("case, word", [("catalog", "has no catalog among --catalogs"),
                                        ("bank", "not a LEGUS-anchored bank")])
def test_surroundings_errors_are_one_line(ngc1566_bank, tmp_path, case, word):
    bank, cats = ngc1566_bank, [NGC4449]
    if case == "bank":
        bank = tmp_path / "phys"
        status, _, err = run_training("make-bank", "--kind", "physical", "--n", 10,
                                      "--out", bank)
        assert status == 0, err
        cats = [NGC1566]
    status, out, err = run_training("surroundings", "--bank", bank, "--catalogs", *cats,
                                    "--out", tmp_path / "o")
    assert status != 0
    assert word in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
