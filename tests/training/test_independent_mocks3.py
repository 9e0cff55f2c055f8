"""Tests of the clean-room LEGUS-anchored renderer `training.independent_mocks3`."""

from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from glue_starclf.io.bands import BANDS
from glue_starclf.io.catalogs import read_legus_tab
from glue_starclf.io.mosaic import open_mosaic
from training import independent_mocks3 as im3

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CATALOG = SHARED / "data" / "legus" / \
    "hlsp_legus_hst_wfc3_ngc7793-e_multiband_v1_padagb-mwext-avgapcor.tab"

pytestmark = pytest.mark.skipif(not CATALOG.is_file() or not im3.PSF_DIR.is_dir(),
                                reason="needs ../shared (LEGUS catalogs and PSFs)")


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    out = tmp_path_factory.mktemp("imp3")
    return im3.render_anchored_field(CATALOG, out, region_size=350, seed=3)


def test_files_and_headers(render):
    assert set(render["images"]) == set(BANDS)
    for band, path in render["images"].items():
        assert path.name == f"ngc7793-e_{band.lower()}_drc.fits"
        hdr = fits.getheader(path)
        assert hdr["FILTER"] == band
        assert hdr["BUNIT"] == "ELECTRONS/S"
        assert hdr["EXPTIME"] > 0
        assert hdr["PHOTFLAM"] == im3.PHOTFLAM[band]
        assert hdr["PHOTPLAM"] == im3.PHOTPLAM[band]
        assert fits.getdata(path).shape == (350, 350)
    assert Table.read(render["catalog"]).colnames == ["id", "x", "y"]
    assert render["field"] == "ngc7793-e"
    assert render["vega_zeropoint"] == im3.VEGA


def test_truth_table(render):
    truth = Table.read(render["truth"])
    assert len(truth) == len(render["truth_table"]) > 10
    for name in ("id", "x", "y", "class", "drawn", "catalog_class", "subtype",
                 "ci_catalog", "ci_model"):
        assert name in truth.colnames
    assert set(np.unique(truth["class"])) <= {1, 2, 3, 4}
    assert np.all(truth["drawn"] == (truth["catalog_class"] == 0))
    human = ~truth["drawn"]
    assert np.all(truth["class"][human] == truth["catalog_class"][human])
    families = {s.split(":")[0] for s in truth["subtype"]}
    assert families <= {"cluster", "association", "star", "asterism", "galaxy", "artifact"}
    assert np.all((truth["x"] >= 0) & (truth["x"] < 350) & (truth["y"] >= 0) & (truth["y"] < 350))
    for band in BANDS:
        assert 0 < truth.meta[f"apcor_{band}"] < 1
        measured = np.isfinite(truth[f"catalog_mag_{band}"])
        assert np.allclose(truth[f"mag_{band}"][measured],
                           truth[f"catalog_mag_{band}"][measured], atol=0.05)
    assert truth.meta["seed"] == 3
    assert truth.meta["stellar_ci"] == pytest.approx(render["stellar_ci"])


def test_region_holds_catalog_rows(render):
    x0, y0, size = render["region"]
    tab = read_legus_tab(CATALOG)
    inside = ((tab["x"] >= x0) & (tab["x"] < x0 + size)
              & (tab["y"] >= y0) & (tab["y"] < y0 + size))
    assert inside.sum() == len(render["truth_table"])
    assert np.allclose(render["truth_table"]["x"], tab["x"][inside] - x0)


@pytest.mark.parametrize("cls, ci, kind", [
    (1, 1.6, None), (2, 1.5, None), (3, 1.8, None), (4, 1.25, "star"),
    (4, 1.7, "asterism"), (4, 1.9, "galaxy"), (4, 1.6, "artifact")])
def test_noiseless_totals(cls, ci, kind):
    """A source added to a blank image holds exactly its flux in every band."""
    rng = np.random.default_rng(cls)
    field = im3._Field(0.5)
    fluxes = {b: 10.0 ** rng.uniform(0, 2) for b in BANDS}
    for _ in range(5):
        subtype, parts, artifact = im3._source_models(cls, ci, field, rng, 2.0, kind)
        assert subtype.split(":")[0] == (kind or {1: "cluster", 2: "cluster",
                                                  3: "association"}[cls])
        for band in BANDS:
            image = np.zeros((200, 200))
            total = im3._add_source(image, field, band, parts, artifact,
                                    (100.3, 99.8), fluxes[band])
            assert total == pytest.approx(fluxes[band], rel=1e-6)
            assert abs(2.5 * np.log10(image.sum() / fluxes[band])) < 0.05
            # the light is centred on the catalog position
            yy, xx = np.indices(image.shape)
            if kind != "asterism":
                assert np.hypot((image * xx).sum() / image.sum() - 100.3,
                                (image * yy).sum() / image.sum() - 99.8) < 6


def test_ci_follows_catalog(render):
    truth = render["truth_table"]
    image = fits.getdata(render["images"]["F555W"]).astype(float)
    ci = np.array([im3._ci(image, x, y) for x, y in zip(truth["x"], truth["y"])])
    ok = np.isfinite(truth["ci_catalog"]) & np.isfinite(ci)
    assert np.median(np.abs(truth["ci_model"][ok] - truth["ci_catalog"][ok])) < 0.05
    # on the noisy image, for sources bright enough that noise does not rule
    bright = ok & (truth["mag_F555W"] < 23)
    assert bright.sum() >= 10
    assert np.median(np.abs(ci[bright] - truth["ci_catalog"][bright])) < 0.1
    # a centred star sits at the field's stellar locus, below the cluster CIs
    clusters = truth["class"] == 1
    assert render["stellar_ci"] < np.nanmedian(truth["ci_catalog"][clusters])


def test_open_mosaic_and_wcs(render):
    truth = render["truth_table"]
    tab = read_legus_tab(CATALOG)
    rows = np.searchsorted(tab["id"], truth["id"])
    assert np.all(tab["id"][rows] == truth["id"])
    with open_mosaic({b: str(p) for b, p in render["images"].items()}) as mosaic:
        assert mosaic.bands == tuple(BANDS)
        ra, dec = mosaic.pixel_to_sky(truth["x"], truth["y"])
    sep = SkyCoord(ra, dec, unit="deg").separation(
        SkyCoord(tab["ra"][rows], tab["dec"][rows], unit="deg")).arcsec
    assert np.median(sep) / im3.PIXEL_SCALE < 1.0


def test_missing_catalog(tmp_path):
    missing = tmp_path / "nope.tab"
    with pytest.raises(FileNotFoundError, match="nope.tab"):
        im3.render_anchored_field(missing, tmp_path / "out", region_size=50)
