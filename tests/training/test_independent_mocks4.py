"""Tests of the fourth clean-room anchored-mosaic renderer (`training.independent_mocks4`)."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from glue_starclf.io.bands import BANDS
from glue_starclf.io.catalogs import read_legus_tab
from glue_starclf.io.mosaic import open_mosaic
from training.independent_mocks4 import VEGA_ZEROPOINT, measure_ci, render_anchored_field

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CATALOG = (SHARED / "data" / "legus"
           / "hlsp_legus_hst_wfc3_ngc7793-e_multiband_v1_padagb-mwext-avgapcor.tab")

pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason="../shared LEGUS data absent")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("imp4")
    return render_anchored_field(CATALOG, out, region_size=400, seed=3, prefix="mock")


def test_files_and_headers(rendered):
    assert set(rendered["images"]) == set(BANDS)
    for band, path in rendered["images"].items():
        assert path.name == f"mock_{band.lower()}_drc.fits"
        data, hdr = fits.getdata(path, header=True)
        assert data.shape == (400, 400)
        assert hdr["FILTER"] == band and hdr["BUNIT"] == "ELECTRONS/S"
        assert hdr["EXPTIME"] > 0 and hdr["PHOTFLAM"] > 0 and hdr["PHOTPLAM"] > 0
    cat = Table.read(rendered["catalog"])
    assert cat.colnames == ["id", "x", "y"]
    assert rendered["field"] == "ngc7793-e"
    assert rendered["vega_zeropoint"] == VEGA_ZEROPOINT


def test_every_row_in_region_rendered_once(rendered):
    full = read_legus_tab(CATALOG)
    x0, y0, size = rendered["region"]
    inside = ((full["x"] >= x0) & (full["x"] < x0 + size)
              & (full["y"] >= y0) & (full["y"] < y0 + size))
    truth = rendered["truth_table"]
    assert sorted(truth["id"]) == sorted(full["id"][inside])
    assert (truth["class"][~truth["drawn"]] == truth["catalog_class"][~truth["drawn"]]).all()
    assert (truth["catalog_class"][truth["drawn"]] == 0).all()
    assert set(truth["class"]) <= {1, 2, 3, 4}
    # The region is the densest in classified rows, so it holds several.
    assert np.count_nonzero(~truth["drawn"]) >= 10


def test_totals_equal_catalog_magnitudes(rendered):
    truth = rendered["truth_table"]
    for band in BANDS:
        measured = np.isfinite(truth[f"catalog_mag_{band}"])
        diff = truth[f"mag_{band}"][measured] - truth[f"catalog_mag_{band}"][measured]
        assert np.abs(diff).max() < 0.05, band


def test_noiseless_totals_on_image_in_bright_isolated_case(rendered):
    """Summed image flux around the brightest source matches its truth total."""
    truth = rendered["truth_table"]
    img = fits.getdata(rendered["images"]["F814W"]).astype(float)
    i = int(np.nanargmin(truth["mag_F814W"]))
    x, y = int(round(truth["x"][i])), int(round(truth["y"][i]))
    box = img[max(y - 20, 0):y + 21, max(x - 20, 0):x + 21]
    mag = -2.5 * np.log10(box.sum()) + VEGA_ZEROPOINT["F814W"]
    # Neighbours and background only add light, never a large deficit.
    assert mag < truth["mag_F814W"][i] + 0.05


def test_ci_follows_catalog(rendered):
    truth = rendered["truth_table"]
    img = fits.getdata(rendered["images"]["F555W"]).astype(float)
    ci = measure_ci(img, truth["x"], truth["y"])
    ok = np.isfinite(ci) & np.isfinite(truth["ci_catalog"])
    assert np.median(np.abs(ci[ok] - truth["ci_catalog"][ok])) < 0.12
    above = ok & (truth["ci_catalog"] > rendered["stellar_ci"])
    assert np.median(np.abs(truth["ci_model"][above] - truth["ci_catalog"][above])) < 0.01


def test_stellar_ci_and_psf(rendered):
    truth = rendered["truth_table"]
    assert 1.0 < rendered["stellar_ci"] < 1.6
    assert rendered["psf_sigma_px"] >= 0
    stars = truth["subtype"] == "star"
    assert (truth["ci_model"][stars] >= rendered["stellar_ci"] - 1e-6).all()
    for band in BANDS:
        assert 0 < truth.meta[f"apcor_{band}"] < 1


def test_subtypes_belong_to_class(rendered):
    truth = rendered["truth_table"]
    family = {1: {"cluster"}, 2: {"cluster"}, 3: {"association"},
              4: {"star", "asterism", "galaxy", "artifact"}}
    for cls, sub in zip(truth["class"], truth["subtype"]):
        assert sub.split(":")[0] in family[int(cls)]


def test_mosaic_opens_and_wcs_matches_catalog(rendered):
    mosaic = open_mosaic({b: str(p) for b, p in rendered["images"].items()})
    assert set(mosaic.bands) == set(BANDS)
    full = read_legus_tab(CATALOG)
    truth = rendered["truth_table"]
    ra, dec = mosaic.pixel_to_sky(truth["x"], truth["y"])
    rows = {int(i): k for k, i in enumerate(full["id"])}
    k = np.array([rows[int(i)] for i in truth["id"]])
    cosd = np.cos(np.radians(dec))
    sep_px = np.hypot((ra - full["ra"][k]) * cosd, dec - full["dec"][k]) * 3600 / 0.04
    assert np.median(sep_px) < 1.0


def test_seed_reproducible(rendered, tmp_path):
    again = render_anchored_field(CATALOG, tmp_path, region_size=400, seed=3, prefix="mock")
    a = fits.getdata(rendered["images"]["F555W"])
    b = fits.getdata(again["images"]["F555W"])
    np.testing.assert_array_equal(a, b)


def test_missing_catalog_names_file(tmp_path):
    missing = tmp_path / "nope.tab"
    with pytest.raises(FileNotFoundError, match="nope.tab"):
        render_anchored_field(missing, tmp_path)
