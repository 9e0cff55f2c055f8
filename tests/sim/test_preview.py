"""RGB previews of stamps and mosaics (`glue_starclf.sim.preview`)."""

import numpy as np
import pytest
from matplotlib.image import imread

from glue_starclf.sim import preview
from glue_starclf.sim.preview import rgb_image, rgb_norm, save_preview

S = 21


def _blob(sed, amp=50.0, size=S, sigma=2.0):
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    g = np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * sigma ** 2))
    return amp * np.asarray(sed, float)[:, None, None] * g


def _stamps(rng, n):
    seds = rng.uniform(0.1, 1.0, (n, 5))
    return np.array([_blob(s) for s in seds]) + rng.normal(0, 0.05, (n, 5, S, S))


def test_rgb_image_shape_range_and_colours():
    red = rgb_image(_blob([0, 0, 0, 0, 1]))
    blue = rgb_image(_blob([0, 1, 0, 0, 0]))
    assert red.shape == (S, S, 3) and red.dtype == float
    for img in (red, blue):
        assert np.all(np.isfinite(img)) and img.min() >= 0 and img.max() <= 1
    c = S // 2
    r, g, b = red[c, c]
    assert r > 0.5 and r > 2 * g and r > 2 * b
    r, g, b = blue[c, c]
    assert b > 0.5 and b > 2 * r and b > 2 * g
    # A grey source under the default saturation is not a pure primary.
    white = rgb_image(_blob(preview.WHITE))[c - 3, c - 3]
    assert np.ptp(white) < 0.05 * white.max()


def test_rgb_image_nan_zero_and_batch():
    z = rgb_image(np.zeros((5, S, S)))
    assert z.shape == (S, S, 3) and np.all(z == 0)
    st = _blob([1, 1, 1, 1, 1])
    st[:, :5] = np.nan
    st[2, -3:] = np.inf
    img = rgb_image(st)
    assert np.all(np.isfinite(img)) and np.all(img[:5] == 0)
    assert np.all(rgb_image(np.full((5, S, S), np.nan)) == 0)
    # A leading batch axis, and a shared norm, give per-stamp results.
    rng = np.random.default_rng(0)
    batch = _stamps(rng, 3)
    norm = rgb_norm(batch)
    out = rgb_image(batch, norm=norm)
    assert out.shape == (3, S, S, 3)
    np.testing.assert_allclose(out[1], rgb_image(batch[1], norm=norm))
    assert rgb_norm([batch[0], batch[1:]]) == pytest.approx(norm)
    assert rgb_norm(np.zeros((2, 5, S, S))) == (1.0, 0.1)
    with pytest.raises(ValueError):
        rgb_image(batch[0], scale=-1.0)
    with pytest.raises(ValueError):
        rgb_image(batch[0], bands=(5, 2, 1))


def test_block_average_crops_and_never_upsamples():
    a = np.arange(5 * 7 * 9, dtype=float).reshape(5, 7, 9)
    same, k = preview._block_average(a, max_px=10)
    assert k == 1 and same.shape == a.shape
    a[0, 0, 0] = np.nan
    binned, k = preview._block_average(a, max_px=4)
    assert k == 3 and binned.shape == (5, 2, 3)
    assert binned[0, 0, 0] == pytest.approx(np.nanmean(a[0, :3, :3]))
    assert binned[1, 1, 2] == pytest.approx(a[1, 3:6, 6:9].mean())


@pytest.mark.parametrize("with_mosaic", [False, True])
def test_save_preview_writes_png(tmp_path, with_mosaic):
    rng = np.random.default_rng(1)
    stamps = {"class 1": _stamps(rng, 3), "bank": _stamps(rng, 2)}
    stamps["bank"][0, :, 3:9] = np.nan
    stamps["bank"][1] = 0.0
    labels = {"class 1": ["log t 7.2\nlog M 4.5", "log t 9.0\nlog M 5.1", ""],
              "bank": ["nan", "zero"]}
    mosaic = None
    if with_mosaic:
        mosaic = rng.normal(0, 0.02, (5, 900, 1300))
        mosaic[:, 100:150] = np.nan
    path = tmp_path / "preview.png"
    assert save_preview(path, stamps, labels, mosaic=mosaic, title="test") == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview.png"]
    img = imread(path)
    h, w = img.shape[:2]
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    # 3 thumbnails of ~1.15 in at 110 dpi plus margins; the mosaic adds a panel.
    assert 350 <= w <= (1200 if with_mosaic else 600)
    assert 250 <= h <= (1000 if with_mosaic else 450)
    if with_mosaic:
        assert h > 500
    assert img[..., :3].std() > 0.05  # not blank


def test_save_preview_rejects_bad_input_without_leaving_files(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError):
        save_preview(path, {"a": _stamps(rng, 2)}, {"a": ["only one"]})
    with pytest.raises(ValueError):
        save_preview(path, {"a": _stamps(rng, 2)[0]}, {})
    assert list(tmp_path.iterdir()) == []
