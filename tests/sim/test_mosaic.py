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
from glue_starclf.sim.effpsf import psf_for_locus
from glue_starclf.sim.fidelity import catalog_fidelity, match_rows
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
        # Blanked (NaN) rows near an edge source may cross its apertures.
        assert np.isfinite(measured[np.asarray(t["subtype"])[rows] != "edge"]).mean() > 0.97
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


def test_anchored_totals_match_the_catalog_per_class_and_subtype(ngc1566_path, ngc1566_field):
    """Noise-free band totals are the catalog's in every measured band (issue 14)."""
    res = catalog_fidelity(ngc1566_field.truth, read_legus_tab(ngc1566_path))
    checked = 0
    for key, block in list(res["class"].items()) + list(res["subtype"].items()):
        for band, st in block["bands"].items():
            if st["n"] == 0:
                continue
            assert st["median_abs"] <= 0.02, f"{key} {band}: median |delta| {st['median_abs']:.3f}"
            assert st["p95_abs"] <= 0.05, f"{key} {band}: p95 |delta| {st['p95_abs']:.3f}"
            checked += 1
        for colour in block["colours"].values():
            assert colour["n"] == 0 or colour["p95_abs"] <= 0.05
    assert checked > 40


def test_class4_subtype_shares_in_an_anchored_field(ngc1566_field):
    """Spec shares (35 / 25 / 20 / 20) within 5 points on a field with >= 100 class-4 rows."""
    t = ngc1566_field.truth
    four = np.asarray(t["subtype"])[np.asarray(t["class"]) == 4].astype(str)
    assert four.size >= 100
    artifact = np.isin(four, ("cosmic_ray", "hot_pixel", "edge", "saturated"))
    for share, want in ((np.mean(four == "star"), 0.35), (np.mean(four == "asterism"), 0.25),
                        (np.mean(four == "galaxy"), 0.20), (artifact.mean(), 0.20)):
        assert abs(share - want) <= 0.05


def test_isolated_anchored_sources_photometry_agrees_with_the_catalog(ngc1566_path,
                                                                       ngc1566_field):
    """Apertures on the noisy image give the catalog magnitudes within the noise."""
    cat = read_legus_tab(ngc1566_path)
    t = ngc1566_field.truth
    x, y = np.asarray(t["x"]), np.asarray(t["y"])
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
    np.fill_diagonal(d, np.inf)
    ny, nx = ngc1566_field.images.shape[1:]
    ok = ((d.min(axis=1) > 40) & (x > 40) & (y > 40) & (x < nx - 40) & (y < ny - 40)
          & np.isin(np.asarray(t["subtype"]), ("cluster", "star", "asterism", "galaxy",
                                                "elongated", "double", "colour_gradient")))
    rows = cat[match_rows(t, cat)]
    psf = psf_for_locus(ngc1566_field.meta["stellar_locus"])
    yy, xx = np.indices((81, 81)) - 40
    ring = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    z = []
    for band in ("F438W", "F555W", "F814W"):
        b = BANDS.index(band)
        # Aperture correction of a point source at 12 px (catalog mags are totals).
        ee = psf.kernels(81)[b][np.hypot(xx, yy) <= 12].sum()
        m_cat = np.asarray(rows[f"mag_{band}"], float)
        sel = ok & np.isfinite(m_cat) & (m_cat < 24.0)
        img = ngc1566_field.images[b]
        f = aperture_fluxes(img, x[sel], y[sel], [12.0], sky_annulus=(20.0, 30.0))[:, 0] / ee
        # The aperture's noise (photons, read noise, the lumpy galaxy light):
        # the scatter of the same aperture placed on 12 spots 35 px around.
        px = (x[sel][:, None] + 35 * np.cos(ring)).ravel()
        py = (y[sel][:, None] + 35 * np.sin(ring)).ravel()
        noise = np.nanstd(aperture_fluxes(img, px, py, [12.0], sky_annulus=(20.0, 30.0))[:, 0]
                          .reshape(-1, ring.size), axis=1)
        f_cat = 10 ** (-0.4 * (m_cat[sel] - VEGA_ZEROPOINT[band]))
        # 3% for extended light outside 12 px.
        z.append((f - f_cat) / np.hypot(noise, 0.03 * f_cat))
    z = np.concatenate(z)
    assert z.size > 150
    assert abs(np.median(z)) < 0.3
    assert np.mean(np.abs(z) < 3) > 0.9


def test_catalog_row_without_measured_band_is_refused(ngc1566_path):
    cat = read_legus_tab(ngc1566_path)[:50]
    for b in BANDS:
        cat[f"mag_{b}"][7] = np.nan
    with pytest.raises(ValueError, match=f"row id {int(cat['id'][7])} has no measured band"):
        legus_anchored_field(cat, seed=0, region=(0, 0, 8000, 8000))


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


def test_random_non_clusters_have_cluster_like_photometry():
    """Class-4 band totals are drawn like the clusters': colours and V tell no class."""
    from glue_starclf.sim.mosaic import draw_source
    rng = np.random.default_rng(11)
    zp = np.array([VEGA_ZEROPOINT[b] for b in BANDS])

    def mags(src):
        f = src.light.total() + (src.artifact.total() if src.artifact is not None else 0)
        return -2.5 * np.log10(f) + zp

    four = np.array([mags(draw_source(rng, 4, 10.0, subtype=s))
                     for s in ("star", "asterism", "galaxy", "cosmic_ray") * 40])
    clusters = np.array([mags(draw_source(rng, c, 10.0)) for c in (1, 2, 3) * 50])
    for a, b in ((3, 4), (1, 2), (2, 3)):
        assert ks_2samp(four[:, a] - four[:, b], clusters[:, a] - clusters[:, b]).statistic < 0.2
    assert ks_2samp(four[:, 3], clusters[:, 3]).statistic < 0.2


def test_uninspected_rows_take_the_classes_of_inspected_rows_of_their_ci():
    """Near the stellar locus humans called rows class 4; extended rows 1-3."""
    from glue_starclf.sim.mosaic import uninspected_classes
    rng = np.random.default_rng(1)
    ref_ci = np.concatenate([rng.normal(1.30, 0.02, 300), rng.normal(1.80, 0.05, 300)])
    ref_cls = np.concatenate([np.full(300, 4), rng.integers(1, 4, 300)])
    compact = uninspected_classes(rng, np.full(2000, 1.30), ref_ci, ref_cls)
    extended = uninspected_classes(rng, np.full(2000, 1.80), ref_ci, ref_cls)
    assert np.mean(compact == 4) > 0.97
    assert np.mean(extended == 4) < 0.03
    assert all(0.25 < np.mean(extended == k) < 0.42 for k in (1, 2, 3))
    # No finite CI, or no inspected row near it: the field's class frequencies.
    for ci in (np.full(4000, np.nan), np.full(4000, 3.0)):
        freq = np.bincount(uninspected_classes(rng, ci, ref_ci, ref_cls), minlength=5)[1:] / 4000
        np.testing.assert_allclose(freq, [101 / 604, 101 / 604, 101 / 604, 301 / 604], atol=0.03)


def test_uninspected_classes_take_one_draw_per_row():
    """The stream after the draw does not depend on the rows' CI or the references."""
    from glue_starclf.sim.mosaic import uninspected_classes
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    uninspected_classes(a, np.linspace(1, 2, 50), [1.2, 1.5], [4, 1])
    uninspected_classes(b, np.full(50, np.nan), [], [])
    assert a.uniform() == b.uniform()
    assert set(uninspected_classes(a, [1.0, 1.5, np.nan], [], [])) <= {1, 2, 3, 4}
