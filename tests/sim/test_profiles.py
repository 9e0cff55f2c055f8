import numpy as np
import pytest

from glue_starclf.sim.profiles import EFF_TRUNCATION, eff_core_radius, sample_eff, sample_sersic


@pytest.mark.parametrize("gamma", [2.05, 2.5, 4.0, 8.0])
def test_eff_half_number_radius(gamma):
    """Half the drawn stars lie within r_h, for shallow and steep profiles."""
    x, y = sample_eff(np.random.default_rng(0), 100_000, 3.0, gamma)
    r = np.hypot(x, y)
    assert np.median(r) == pytest.approx(3.0, rel=0.02)
    assert r.max() <= EFF_TRUNCATION * 3.0


def test_eff_core_radius_matches_untruncated_profile_for_steep_slopes():
    # gamma = 4: N(<R) = R^2 / (R^2 + a^2), so a = r_h (truncation negligible).
    assert eff_core_radius(2.0, 4.0) == pytest.approx(2.0, rel=1e-3)
    with pytest.raises(ValueError, match="gamma"):
        eff_core_radius(2.0, 1.5)


def test_eff_axis_ratio_and_angle():
    x, y = sample_eff(np.random.default_rng(1), 100_000, 2.0, 4.0, q=0.5, theta=np.pi / 2)
    # Major axis along y after a 90 degree rotation.
    assert np.std(y) / np.std(x) == pytest.approx(2.0, rel=0.05)


def test_sersic_half_light_radius():
    x, y = sample_sersic(np.random.default_rng(2), 100_000, 5.0, 1.0)
    # Drawn out to 99.5% of the light, so the median sits just inside r_e.
    assert np.median(np.hypot(x, y)) == pytest.approx(5.0, rel=0.03)
