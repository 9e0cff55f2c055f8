"""Aperture magnitudes of the results table (`glue_starclf.glue.results.aperture_magnitudes`)."""

import numpy as np
import pytest

from glue_starclf.glue.results import aperture_magnitudes
from glue_starclf.io.bands import BANDS, VEGA_ZEROPOINT
from glue_starclf.io.mosaic import Mosaic


def _mosaic():
    # A tilted sky (the annulus median and the aperture's mean sky are both the centre value)
    # and a 3 x 3 source well inside the 4 px aperture: F555W 100 e-/s, F814W 40, and in F336W
    # an over-subtracted hole of -5 (a flux that is not positive).
    yy, xx = np.indices((64, 64), dtype=float)
    sky = 0.5 + 0.01 * xx - 0.02 * yy
    images = {b: sky.copy() for b in ("F336W", "F555W", "F814W")}
    for band, flux in (("F555W", 100.0), ("F814W", 40.0), ("F336W", -5.0)):
        images[band][29:32, 19:22] += flux / 9
    return Mosaic.from_arrays([images.get(b) for b in BANDS])


@pytest.mark.parametrize("batch", [2048, 1])
def test_aperture_magnitudes_by_hand(batch):
    x, y = np.array([20.2, -30.0]), np.array([29.8, 10.0])   # the source; one off the image
    mags = aperture_magnitudes(_mosaic(), x, y, batch=batch)
    assert sorted(mags) == sorted(f"mag_{b}" for b in BANDS)
    assert mags["mag_F555W"][0] == pytest.approx(VEGA_ZEROPOINT["F555W"] - 5.0, abs=1e-4)
    assert mags["mag_F814W"][0] == pytest.approx(
        VEGA_ZEROPOINT["F814W"] - 2.5 * np.log10(40.0), abs=1e-4)
    assert np.isnan(mags["mag_F336W"][0])                      # flux not positive
    for b in ("F275W", "F438W"):                                # missing bands
        assert np.isnan(mags[f"mag_{b}"]).all()
    for b in BANDS:                                             # off the image
        assert np.isnan(mags[f"mag_{b}"][1])
