"""Mock mosaics: physics checks against real LEGUS catalogs, photometry, writing."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy.stats import ks_2samp

from glue_starclf.io.bands import BANDS, VEGA_ZEROPOINT
from glue_starclf.io.catalogs import read_legus_tab
from glue_starclf.core.photometry import aperture_fluxes, concentration_index
from glue_starclf.sim.compose import render_stamps
from glue_starclf.sim.mosaic import legus_anchored_field, random_field, write_mosaic
from glue_starclf.sim.render import add_noise
from glue_starclf.sim.sources import render_class1

SCHEMA = ("class", "log_age", "log_mass", "av", "r_h", "p_cb", "visibility")


@pytest.fixture(scope="module")
def ngc1566_field(ngc1566_path):
    """A 4k x 4k LEGUS-anchored render of NGC 1566 (~2,500 sources, ~45 s)."""
    return legus_anchored_field(read_legus_tab(ngc1566_path), seed=0,
                                region=(1000, 1000, 5000, 5000))


def test_anchored_ci_distributions_match_the_catalog(ngc1566_field):
    """Per class, the CI measured on the rendered F555W image matches the catalog's."""
    t = ngc1566_field.truth
    ci = concentration_index(ngc1566_field.images[BANDS.index("F555W")], t["x"], t["y"])
    for cls in (1, 2, 3, 4):
        rows = np.asarray(t["legus_class"]) == cls
        assert rows.sum() > 300
        measured = ci[rows]
        assert np.isfinite(measured).mean() > 0.97
        stat = ks_2samp(measured[np.isfinite(measured)], np.asarray(t["catalog_ci"])[rows]).statistic
        assert stat <= 0.15, f"class {cls}: KS {stat:.3f}"


def test_anchored_field_follows_the_catalog(ngc1566_path, ngc1566_field):
    cat = read_legus_tab(ngc1566_path)
    t = ngc1566_field.truth
    inside = (cat["x"] >= 1000) & (cat["x"] < 5000) & (cat["y"] >= 1000) & (cat["y"] < 5000)
    assert len(t) == inside.sum()
    np.testing.assert_array_equal(t["legus_id"], cat["id"][inside])
    classified = np.asarray(t["legus_class"]) > 0
    np.testing.assert_array_equal(t["class"][classified], t["legus_class"][classified])
    # Positions within half a pixel of the catalog's, and the fitted WCS
    # reproduces the catalog's sky positions to well under a pixel (0.04").
    assert np.max(np.abs(t["x"] + 1000 - cat["x"][inside])) <= 0.5
    sep = np.hypot((t["ra"] - cat["ra"][inside]) * np.cos(np.deg2rad(t["dec"])),
                   t["dec"] - cat["dec"][inside]) * 3600
    assert np.median(sep) < 0.02
    for name in SCHEMA:
        assert name in t.colnames
    clusters = np.isin(t["class"], (1, 2, 3))
    assert np.all(t["p_cb"][clusters] == 1) and np.all(t["p_cb"][~clusters] == 0)
    # Class 1-3 V magnitudes are the catalog's (mass set from them).
    v_cat = np.asarray(cat["mag_F555W"][inside])[clusters]
    ok = np.isfinite(v_cat)
    assert np.median(np.abs(t["mag_F555W"][clusters][ok] - v_cat[ok])) < 0.15


def test_aperture_photometry_recovers_input_magnitudes():
    """Isolated clusters on a noisy sky: 40 px apertures give back the input magnitudes."""
    rng = np.random.default_rng(7)
    sources = [render_class1(rng, rng.choice([6.8, 7.5, 8.3, 9.0]), rng.uniform(4.5, 5.5),
                             rng.uniform(0, 1), rng.uniform(0.5, 4.0), 10.0,
                             gamma=rng.uniform(3.5, 8.0)) for _ in range(40)]
    size = 161
    light = render_stamps(sources, size)
    noisy = add_noise(light, rng)
    c = (size - 1) / 2
    delta = []
    for src, stamp in zip(sources, noisy):
        flux_in = src.light.total()
        for b, band in enumerate(BANDS):
            m_in = -2.5 * np.log10(flux_in[b]) + VEGA_ZEROPOINT[band]
            if m_in > 23.5:
                continue
            f = aperture_fluxes(stamp[b], [c], [c], [40.0], sky_annulus=(50.0, 70.0))[0, 0]
            delta.append(-2.5 * np.log10(f) + VEGA_ZEROPOINT[band] - m_in)
    assert len(delta) > 100
    assert np.median(np.abs(delta)) <= 0.05


def test_colours_redden_with_age_and_extinction_in_rendered_clusters():
    rng = np.random.default_rng(8)

    def colour(log_age, av):
        src = render_class1(rng, log_age, 5.5, av, 2.0, 10.0, gamma=4.0)
        f = src.light.total()
        m = -2.5 * np.log10(f) + np.array([VEGA_ZEROPOINT[b] for b in BANDS])
        return m[1] - m[2], m[3] - m[4]      # U-B, V-I

    # Ages avoid the red-supergiant phase (log t ~ 6.8-7), which is red in V-I.
    ub_y, vi_y = colour(6.6, 0.0)
    ub_m, vi_m = colour(8.0, 0.0)
    ub_o, vi_o = colour(9.5, 0.0)
    ub_d, vi_d = colour(6.6, 2.0)
    assert ub_y + 0.3 < ub_m < ub_o - 0.3
    assert vi_o > vi_y + 0.5
    assert vi_d > vi_y + 0.5 and ub_d > ub_y + 0.5


def test_random_field_is_reproducible_and_written(tmp_path):
    a = random_field(seed=3, shape=(256, 320), n_sources=25, distance_mpc=6.0)
    b = random_field(seed=3, shape=(256, 320), n_sources=25, distance_mpc=6.0)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (5, 256, 320) and a.images.dtype == np.float32
    assert len(a.truth) == 25
    paths = write_mosaic(a, tmp_path / "field", prefix="t")
    for band in BANDS:
        with fits.open(paths[band]) as hdul:
            assert hdul[0].header["FILTER"] == band
            np.testing.assert_array_equal(hdul[0].data, a.images[BANDS.index(band)])
    truth = Table.read(paths["truth"])
    for name in SCHEMA + ("id", "x", "y", "ra", "dec"):
        assert name in truth.colnames
    with pytest.raises(FileExistsError):
        write_mosaic(a, tmp_path / "field", prefix="t")


@pytest.mark.parametrize("bad", [0.0, -3.0, float("nan")])
def test_bad_distance(bad):
    with pytest.raises(ValueError, match="distance"):
        random_field(distance_mpc=bad, shape=(128, 128), n_sources=2)
