"""`glue_starclf.core.cutouts.extract_stamps`: vectorized stamps, centring and per-source flags."""

import time

import numpy as np
import pytest
from astropy.io import fits

from glue_starclf.io.bands import BANDS
from glue_starclf.core.cutouts import extract_stamps, has_flag, stamp_centre
from glue_starclf.io.mosaic import open_mosaic

NY, NX = 60, 80


def _values(j):
    """Band j image: every pixel holds a unique, exactly representable value."""
    yy, xx = np.indices((NY, NX))
    return (1000 * (j + 1) + yy * NX + xx).astype(np.float32)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """Four bands (F275W missing) with a NaN patch and a zero-weight patch."""
    d = tmp_path_factory.mktemp("cut")
    paths = {}
    for j, band in enumerate(BANDS[1:], start=1):
        data = _values(j)
        data[40:50, 60:70] = np.nan  # a hole in every band: all-NaN stamps there
        data[10, 10] = 0.0           # zero-weight pixel
        paths[band] = d / f"{band}.fits"
        fits.PrimaryHDU(data, header=fits.Header({"FILTER": band})).writeto(paths[band])
    with pytest.warns(UserWarning, match="no celestial WCS"):
        m = open_mosaic(paths)
    yield m
    m.close()


def _naive(m, x, y, size):
    """Reference: one stamp at a time with Python slicing."""
    out = np.zeros((len(x), 5, size, size), np.float32)
    h = size // 2
    for i, (cx, cy) in enumerate(zip(*stamp_centre(x, y))):
        if not (0 <= cx < NX and 0 <= cy < NY):
            out[i] = np.nan  # outside: the whole stamp
            continue
        for j, im in enumerate(m.images):
            if im is None:
                continue
            for a in range(size):
                for b in range(size):
                    yy, xx = cy - h + a, cx - h + b
                    out[i, j, a, b] = im[yy, xx] if 0 <= yy < NY and 0 <= xx < NX else np.nan
    return out


def test_matches_naive_extraction(mosaic):
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, NX + 3, 40)
    y = rng.uniform(-3, NY + 3, 40)
    for size in (8, 9):
        stamps, flags = extract_stamps(mosaic, x, y, size=size)
        assert stamps.shape == (40, 5, size, size) and stamps.dtype == np.float32
        np.testing.assert_array_equal(stamps, _naive(mosaic, x, y, size))
        assert flags.shape == (40,)


def test_centring_on_nearest_pixel(mosaic):
    x = np.array([20.0, 20.49, 20.5, 20.51])
    y = np.array([30.0, 30.0, 29.5, 30.2])
    stamps, _ = extract_stamps(mosaic, x, y, size=33)
    centre = stamps[:, 3, 16, 16]  # F555W, stamp index size // 2
    expected_x = np.array([20, 20, 21, 21])
    expected_y = np.array([30, 30, 30, 30])
    np.testing.assert_array_equal(centre, _values(3)[expected_y, expected_x])
    even, _ = extract_stamps(mosaic, [20.0], [30.0], size=32)
    assert even[0, 3, 16, 16] == _values(3)[30, 20]
    assert even[0, 3, 0, 0] == _values(3)[14, 4]


def test_flags(mosaic):
    x = [30.0, 1.0, 65.0, 10.2, -5.0, np.nan, 30.0]
    y = [30.0, 30.0, 45.0, 9.8, 30.0, 10.0, NY + 0.6]
    stamps, flags = extract_stamps(mosaic, x, y, size=16)
    assert flags[0] == "missing:F275W"
    assert flags[1] == "edge,missing:F275W"
    assert flags[2] == "nan_pixels,missing:F275W"  # centre in the NaN hole
    assert flags[3] == "zero_weight,missing:F275W"
    assert flags[4] == flags[5] == flags[6] == "outside,missing:F275W"
    # Missing band zero-filled, out-of-image pixels NaN, outside stamps all NaN.
    assert not stamps[:4, 0].any()
    assert np.isnan(stamps[1, 1:, :, :7]).all() and np.isfinite(stamps[1, 1:, :, 8:]).all()
    assert np.isnan(stamps[4:]).all()
    assert list(has_flag(flags, "outside")) == [False] * 4 + [True] * 3
    assert list(has_flag(flags, "edge")) == [False, True] + [False] * 5


def test_all_nan_stamp(mosaic):
    """A stamp entirely inside a NaN hole: NaN kept, flagged, no crash."""
    stamps, flags = extract_stamps(mosaic, [64.0], [44.0], size=6)
    assert np.isnan(stamps[0, 1:]).all()
    assert "nan_pixels" in flags[0] and "edge" not in flags[0]


def test_mosaic_flags_and_empty_input(mosaic, tmp_path):
    stamps, flags = extract_stamps(mosaic, [], [], size=8)
    assert stamps.shape == (0, 5, 8, 8) and flags.shape == (0,)
    path = tmp_path / "uv.fits"
    fits.PrimaryHDU(_values(0), header=fits.Header({"FILTER": "F225W"})).writeto(path)
    with pytest.warns(UserWarning):
        m = open_mosaic([path])
    _, flags = extract_stamps(m, [5.0], [5.0], size=4)
    assert flags[0] == "missing:F336W,missing:F438W,missing:F555W,missing:F814W,F225W-as-F275W"
    _, flags = extract_stamps(m, [5.0], [5.0], size=4, mosaic_flags=False)
    assert "F225W" not in flags[0]
    m.close()


def test_bad_arguments(mosaic):
    with pytest.raises(ValueError, match="stamp size 0"):
        extract_stamps(mosaic, [1.0], [1.0], size=0)
    with pytest.raises(ValueError, match="x and y"):
        extract_stamps(mosaic, [1.0, 2.0], [1.0], size=4)


def test_many_sources_fast(tmp_path):
    """10,000 sources x 5 bands x 32^2 from a memory-mapped 1k mosaic in seconds."""
    rng = np.random.default_rng(1)
    paths = {}
    for band in BANDS:
        paths[band] = tmp_path / f"{band}.fits"
        fits.PrimaryHDU(rng.normal(size=(1024, 1024)).astype(np.float32),
                        header=fits.Header({"FILTER": band})).writeto(paths[band])
    with pytest.warns(UserWarning):
        m = open_mosaic(paths)
    x = rng.uniform(0, 1024, 10_000)
    y = rng.uniform(0, 1024, 10_000)
    t0 = time.perf_counter()
    stamps, flags = extract_stamps(m, x, y, size=32)
    elapsed = time.perf_counter() - t0
    assert stamps.shape == (10_000, 5, 32, 32)
    assert elapsed < 10.0, f"{elapsed:.1f} s"
    i = 1234
    cx, cy = stamp_centre(x[i], y[i])
    if 16 <= cx < 1024 - 16 and 16 <= cy < 1024 - 16:
        np.testing.assert_array_equal(stamps[i, 2], m.images[2][cy - 16:cy + 16, cx - 16:cx + 16])
    m.close()
