"""Galaxy backgrounds of `glue_starclf.sim.background`."""

import numpy as np
import pytest

from glue_starclf.sim.background import random_galaxy, render_background


@pytest.mark.parametrize("distance_mpc", [10.0, 700.0, 5000.0])
def test_background_renders_at_any_distance(distance_mpc):
    # Beyond ~630 Mpc no star is resolved: all the light is smooth, none is lost.
    rng = np.random.default_rng(1)
    model = random_galaxy(rng, (128, 128))
    smooth, stars, dust = render_background(rng, model, (128, 128), distance_mpc)
    assert smooth.shape == (5, 128, 128) and np.isfinite(smooth).all()
    assert (smooth.sum(axis=(1, 2)) > 0).all()
    if distance_mpc > 1000:
        assert len(stars.x) == 0


def _catalog(classes, mags, path="fake.tab"):
    from astropy.table import Table
    from glue_starclf.io.bands import BANDS
    mags = np.asarray(mags, float)
    t = Table({f"mag_{b}": mags[:, i] for i, b in enumerate(BANDS)})
    t["class"] = classes
    t.meta["path"] = path
    return t


def test_catalog_star_colours_keeps_rows_of_the_class_measured_in_every_band():
    from glue_starclf.sim.background import catalog_star_colours
    cat = _catalog([4, 4, 1, 4], [[21.0, 21.5, 22.0, 22.0, 21.0],
                                  [np.nan, 21.5, 22.0, 22.0, 21.0],   # F275W not measured
                                  [20.0, 20.0, 20.0, 20.0, 20.0],     # a cluster
                                  [23.0, 22.0, 22.5, 21.0, 20.5]])
    colours = catalog_star_colours([cat])
    assert np.allclose(colours, [[-1.0, -0.5, 0.0, 0.0, -1.0], [2.0, 1.0, 1.5, 0.0, -0.5]])
    assert np.allclose(catalog_star_colours([cat], classes=(1,)), 0.0)


def test_catalog_star_colours_without_a_usable_row_names_the_catalog():
    from glue_starclf.sim.background import catalog_star_colours
    cat = _catalog([1, 4], [[20.0] * 5, [np.nan, 21.0, 21.0, 21.0, 21.0]], path="ngc0.tab")
    with pytest.raises(ValueError, match=r"^ngc0.tab: no row of class 4 measured in every band"):
        catalog_star_colours([cat])


def test_bright_field_stars_take_the_catalog_colours_fainter_ones_keep_theirs():
    from glue_starclf.io.bands import BANDS, VEGA_ZEROPOINT
    from glue_starclf.sim.background import RECOLOUR_BRIGHTER
    from glue_starclf.sim.populations import distance_modulus
    colour = np.array([[-1.2, -0.7, 0.3, 0.0, 0.9]])
    model = random_galaxy(np.random.default_rng(5), (256, 256))
    _, plain, _ = render_background(np.random.default_rng(3), model, (256, 256), 3.5)
    smooth, stars, _ = render_background(np.random.default_rng(3), model, (256, 256), 3.5,
                                         star_colours=colour)
    zp = np.array([VEGA_ZEROPOINT[b] for b in BANDS])
    v = BANDS.index("F555W")
    mag = -2.5 * np.log10(stars.flux) + zp
    bright = mag[:, v] - distance_modulus(3.5) <= RECOLOUR_BRIGHTER
    assert 0 < bright.sum() < len(bright)
    # Same stars, same F555W light; only the bright ones' colours change.
    assert np.array_equal(stars.x, plain.x) and np.allclose(stars.flux[:, v], plain.flux[:, v])
    assert np.allclose(mag[bright] - mag[bright, v:v + 1], colour, atol=1e-9)
    assert np.array_equal(stars.flux[~bright], plain.flux[~bright])
    assert not np.allclose(plain.flux[bright], stars.flux[bright])


def test_a_fainter_recolour_limit_recolours_the_fainter_stars_too():
    from glue_starclf.io.bands import BANDS, VEGA_ZEROPOINT
    from glue_starclf.sim.background import RECOLOUR_BRIGHTER
    from glue_starclf.sim.populations import distance_modulus
    colour = np.array([[-1.2, -0.7, 0.3, 0.0, 0.9]])
    model = random_galaxy(np.random.default_rng(5), (256, 256))
    _, stars, _ = render_background(np.random.default_rng(3), model, (256, 256), 3.5,
                                    star_colours=colour, recolour_brighter=-3.0)
    zp = np.array([VEGA_ZEROPOINT[b] for b in BANDS])
    v = BANDS.index("F555W")
    mag = -2.5 * np.log10(stars.flux) + zp
    abs_v = mag[:, v] - distance_modulus(3.5)
    between = (abs_v > RECOLOUR_BRIGHTER) & (abs_v <= -3.0)
    assert between.sum() > 0 and (abs_v > -3.0).sum() > 0
    assert np.allclose(mag[abs_v <= -3.0] - mag[abs_v <= -3.0, v:v + 1], colour, atol=1e-9)
    assert not np.allclose(mag[abs_v > -3.0] - mag[abs_v > -3.0, v:v + 1], colour, atol=1e-3)


@pytest.mark.parametrize("colours", [np.zeros((0, 5)), np.zeros((3, 4)),
                                     np.array([[np.nan, 0, 0, 0, 0]])])
def test_bad_star_colours_are_refused(colours):
    model = random_galaxy(np.random.default_rng(5), (128, 128))
    with pytest.raises(ValueError, match="star colours"):
        render_background(np.random.default_rng(3), model, (128, 128), 3.5,
                          star_colours=colours)


def _young_light(tracer, seed=4):
    """Smooth F336W light of the young population alone (old disk subtracted)."""
    model = random_galaxy(np.random.default_rng(seed), (512, 512))
    model.dust_av = 0.0     # lanes trail the arms: they would dim the arms' light only
    old = render_background(np.random.default_rng(2), model, (512, 512), 5.0)[0]
    model.arm_contrast = 0.003
    young = render_background(np.random.default_rng(2), model, (512, 512), 5.0,
                              young_tracer=tracer)[0]
    return young[1] - old[1]


def test_young_light_follows_the_tracer_sources():
    # All the young light the arms would hold gathers around two groups of sources.
    tracer = np.array([[100.0, 100.0]] * 20 + [[400.0, 300.0]] * 10)
    light = _young_light(tracer)
    arms = _young_light(None)
    total = light.sum()
    near = np.hypot(*(np.indices((512, 512))[::-1] - np.array([100, 100])[:, None, None])) < 60
    assert light[near].sum() > 0.3 * total
    assert light[near].sum() > 5 * arms[near].sum() * total / arms.sum()
    assert light[100, 100] > 2 * light[300, 400] > 0
    # The same total young light as the arms (the inter-arm floor is shared).
    assert total == pytest.approx(arms.sum(), rel=0.2)


def test_young_light_of_tracers_beyond_the_image_spills_in():
    inside = _young_light(np.array([[-20.0, 256.0]] * 10))
    assert inside[256, :40].mean() > 3 * inside[256, -40:].mean()
    # Tracers all far outside leave only the inter-arm floor, not a NaN.
    far = _young_light(np.array([[-5000.0, 256.0]]))
    assert np.isfinite(far).all()
