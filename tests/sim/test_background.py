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
