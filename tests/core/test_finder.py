"""`glue_starclf.core.finder.find_peaks`: peaks, CI and flux in a box, before any cut."""

import numpy as np

from glue_starclf.core.detection import detect_sources
from glue_starclf.core.finder import Peaks, find_peaks
from glue_starclf.io.mosaic import Mosaic
from glue_starclf.sim.mosaic import random_field


def test_peaks_are_box_relative_and_uncut():
    mock = random_field(seed=0, shape=(384, 384), n_sources=40)
    m = Mosaic.from_arrays(mock.images, wcs=mock.wcs)
    box = (64, 32, 320, 352)
    peaks = find_peaks(m, box, "F555W")
    assert isinstance(peaks, Peaks) and peaks.status == "ok" and peaks.rms > 0
    assert peaks.image.shape == (320, 256)
    assert ((peaks.x >= 0) & (peaks.x < 256) & (peaks.y >= 0) & (peaks.y < 320)).all()
    assert len(peaks.x) == len(peaks.ci) == len(peaks.flux)
    # detection without cuts is the same peaks, in mosaic pixels
    det = detect_sources(m, region=box, ci_min=None, abs_mag_limit=None, min_bands=None,
                         aperture_correction=0.0)
    np.testing.assert_array_equal(det["x"], peaks.x + 64)
    np.testing.assert_array_equal(det["y"], peaks.y + 32)
    np.testing.assert_array_equal(det["ci"], peaks.ci)


def test_empty_boxes_say_why():
    rng = np.random.default_rng(1)
    noise = [rng.normal(10.0, 1.0, (128, 128)).astype(np.float32) for _ in range(5)]
    flat = find_peaks(Mosaic.from_arrays(noise), (0, 0, 128, 128), "F555W", threshold_sigma=50)
    assert flat.status == "no sources" and len(flat.x) == 0
    blank = [np.zeros((128, 128), np.float32) for _ in range(5)]
    blank[0][0, 0] = 1.0  # a mosaic needs one band with data; V has none
    none = find_peaks(Mosaic.from_arrays(blank), (0, 0, 128, 128), "F555W")
    assert none.status == "no pixels" and np.isnan(none.image).all()
