"""The class definitions of mock-hst-data.md hold for the rendered sources."""

import numpy as np
import pytest

from glue_starclf.io.bands import BANDS, VEGA_ZEROPOINT
from glue_starclf.sim import sources as S
from glue_starclf.sim.compose import (MASK_HALF_WIDTH, apply_masked_rows, noise_free_ci,
                                      render_stamps, tune_knobs_to_ci)
from glue_starclf.sim.isochrones import load_isochrones
from glue_starclf.sim.populations import pc_per_pixel

V = S.V


def test_class1_symmetric_and_no_dominant_star():
    rng = np.random.default_rng(0)
    for log_age in (6.6, 7.0, 8.0, 9.5):
        src = S.render_class1(rng, log_age, 3.8, 0.5, 2.0, 10.0)
        assert src.truth["q"] >= 0.85 and src.truth["class"] == 1
        v = src.light.flux[:, V]
        assert v.max() <= 0.25 * v.sum() + 1e-12
        # Mean V light of 30 clusters of 10^5 Msun (IMF noise ~5%) is the SSP's M_V from the
        # isochrone table at m - M = 30.0 (10 Mpc, by hand), in e-/s via the V zeropoint.
        m_v = load_isochrones().ssp_abs_mag(log_age, av=0.5)[V] - 2.5 * 5.0 + 30.0
        expect = 10 ** (-0.4 * (m_v - VEGA_ZEROPOINT["F555W"]))
        total = [S.render_class1(rng, log_age, 5.0, 0.5, 2.0, 10.0).light.flux[:, V].sum()
                 for _ in range(30)]
        assert np.mean(total) / expect == pytest.approx(1.0, abs=0.15)


def test_class1_ci_exceeds_stellar():
    rng = np.random.default_rng(1)
    star = S.render_class4(rng, "star", 22.0)
    clusters = [S.render_class1(rng, 8.0, 4.5, 0.3, 0.5, 10.0) for _ in range(5)]
    assert noise_free_ci(clusters).min() > noise_free_ci([star])[0]


def test_class2_variants():
    rng = np.random.default_rng(2)
    el = S.render_class2(rng, 8.0, 4.5, 0.3, 3.0, 10.0, variant="elongated")
    assert 0.4 <= el.truth["q"] <= 0.8
    db = S.render_class2(rng, 8.0, 4.5, 0.3, 3.0, 10.0, variant="double")
    # The second component holds 15-35% of the light.
    stamps = render_stamps([db], 63)[0, V]
    assert stamps.sum() > 0
    with pytest.raises(ValueError, match="variant"):
        S.render_class2(rng, 8.0, 4.5, 0.3, 3.0, 10.0, variant="spiral")


def test_class3_peaks_separated_and_diffuse_share():
    rng = np.random.default_rng(3)
    for _ in range(10):
        src = S.render_class3(rng, 7.0, 4.5, 0.5, 10.0, 8.0)
        lo, hi = src.knob_range
        assert lo * 0.999 <= src.knob <= hi * 1.001
        assert 2 <= src.truth["n_peaks"] <= 6
        assert 0.3 <= src.truth["diffuse_fraction"] <= 0.7
        assert src.truth["p_cb"] == 1.0
    with pytest.raises(ValueError, match="7.90"):
        S.render_class3(rng, 7.9, 4.5, 0.5, 10.0, 8.0)


def _check_edge(src):
    """A star beside blank rows: NaN or 0 on one side of its core, across the stamp."""
    dy0, dy1, value, bands = src.masked_rows
    assert dy0 <= dy1 and dy0 * dy1 > 0 and min(abs(dy0), abs(dy1)) >= 4  # clear of the core
    assert value == 0 or np.isnan(value)
    assert bands and set(bands) <= set(range(len(BANDS)))
    c = 31
    stamp = render_stamps([src], 2 * c + 1)[0] + 1.0  # a sky, so no pixel is blank by chance
    masked = stamp.copy()
    apply_masked_rows(masked, c, c, src.masked_rows)
    blank = np.zeros(stamp.shape, bool)
    blank[list(bands), c + dy0:c + dy1 + 1, c - MASK_HALF_WIDTH:c + MASK_HALF_WIDTH + 1] = True
    assert (np.isnan(masked[blank]) if np.isnan(value) else masked[blank] == 0).all()
    np.testing.assert_array_equal(masked[~blank], stamp[~blank])


@pytest.mark.parametrize("subtype", list(S.CLASS4_SUBTYPES))
def test_class4_subtypes(subtype):
    rng = np.random.default_rng(4)
    src = S.render_class4(rng, subtype, 22.0)
    assert src.truth["class"] == 4 and src.truth["p_cb"] == 0.0
    assert src.truth["subtype"] == subtype
    if subtype in ("cosmic_ray", "hot_pixel"):
        # A (blended) star whose light in one band is partly an unconvolved
        # residual; the band totals are the star's.
        assert src.light.x.size >= 2
        band = (src.artifact.flux.sum(axis=0) > 0)
        assert band.sum() == 1
        total = src.light.total() + src.artifact.total()
        share = src.artifact.total()[band][0] / total[band][0]
        assert share == pytest.approx(src.truth["artifact_share"])
    if subtype == "star":
        # A star with faint companions whose spread is the knob (CI tuning).
        assert src.light.x.size >= 2 and src.knob_range == S.STAR_KNOB_RANGE
    if subtype == "edge":
        # more draws: NaN and 0, one band and all, above and below the star
        for edge in [src] + [S.render_class4(rng, "edge", 22.0) for _ in range(7)]:
            _check_edge(edge)
    if subtype == "galaxy":
        # Background galaxies are red: F814W brighter than F336W in e-/s terms.
        f = src.light.total()
        assert f[4] > f[1]


def test_unknown_subtype():
    with pytest.raises(ValueError, match="comet"):
        S.render_class4(np.random.default_rng(0), "comet", 22.0)


def test_blended_stars_reach_catalog_cis_from_the_locus_up():
    """A class-4 star is a point source at the smallest knob and reaches CIs above it."""
    rng = np.random.default_rng(6)
    srcs = [S.render_class4(rng, "star", 22.0) for _ in range(40)]
    ci0 = noise_free_ci(srcs, knobs=np.full(40, S.STAR_KNOB_RANGE[0]))
    assert np.allclose(ci0, ci0[0], atol=0.02)
    target = ci0[0] + np.linspace(0.0, 0.25, 40)
    ci = tune_knobs_to_ci(srcs, target)
    assert np.median(np.abs(ci - target)) < 0.03


def test_anchor_fluxes_sets_measured_band_totals_only():
    rng = np.random.default_rng(7)
    src = S.render_class4(rng, "cosmic_ray", 22.0)
    before = src.light.total() + src.artifact.total()
    mags = np.array([np.nan, 23.0, 22.5, 22.0, 21.0])
    S.anchor_fluxes(src, mags)
    after = src.light.total() + src.artifact.total()
    zp = np.array([VEGA_ZEROPOINT[b] for b in BANDS])
    np.testing.assert_allclose(-2.5 * np.log10(after[1:]) + zp[1:], mags[1:])
    assert after[0] == pytest.approx(before[0])


def test_ci_tuning_reaches_targets():
    rng = np.random.default_rng(5)
    srcs = [S.render_class1(rng, 8.0, 4.5, 0.3, 2.0, 12.0) for _ in range(20)]
    target = np.linspace(1.4, 2.0, 20)
    ci = tune_knobs_to_ci(srcs, target)
    assert np.median(np.abs(ci - target)) < 0.03
    # The truth r_h follows the tuned size.
    for s in srcs:
        assert s.truth["r_h"] == pytest.approx(s.knob * pc_per_pixel(12.0))


def _peaks_off_centre(src, size=151, seed=0):
    """DAOStarFinder peaks (5 sigma) farther than 8 px from the centre of a noisy stamp."""
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder

    from glue_starclf.core.finder import centroids
    from glue_starclf.sim.render import add_noise
    stamp = add_noise(render_stamps([src], size)[0], np.random.default_rng(seed))[V]
    _, median, std = sigma_clipped_stats(stamp)
    found = DAOStarFinder(5.0 * std, 2.2)(stamp - median)
    if found is None:
        return 0
    x, y = centroids(found)
    c = size // 2
    return int((np.hypot(x - c, y - c) > 8).sum())


def test_bright_smooth_light_shows_no_stars():
    """A bright galaxy or cluster is smooth light, not a spray of point sources: its
    points are no brighter than SMOOTH_POINT_MAG, and the draws after it are the
    same as after a faint one (the extra points come from a stream of their own)."""
    limit = 10.0 ** (-0.4 * (S.SMOOTH_POINT_MAG - VEGA_ZEROPOINT["F555W"]))
    bright = S.render_class4(np.random.default_rng(7), "galaxy", 16.5, size_px=15.0)
    assert bright.light.x.size > S.N_GALAXY
    assert bright.light.flux[:, V].max() <= limit * 1.0001
    assert _peaks_off_centre(bright) == 0
    cluster = S.render_class1(np.random.default_rng(8), 7.0, 5.5, 0.2, 3.0, 3.0)
    smooth = cluster.light.flux[-S.N_SMOOTH:, V]
    assert smooth.max() <= limit * 1.0001
    after = []
    for v in (16.5, 24.0):
        rng = np.random.default_rng(9)
        S.render_class4(rng, "galaxy", v, size_px=15.0)
        after.append(rng.random())
    assert after[0] == after[1]


def test_smooth_point_count_bounds():
    assert S.smooth_point_count(0.0, S.N_SMOOTH) == S.N_SMOOTH
    assert S.smooth_point_count(1e12, S.N_SMOOTH) == S.N_SMOOTH_MAX
