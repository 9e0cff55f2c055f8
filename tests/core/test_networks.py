"""Networks, binned targets, decoding, normalisation and augmentation."""

import warnings

import numpy as np
import pytest
import torch

from glue_starclf.core import networks as N


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_classifier_shape_and_size():
    net = N.StarClassifier().eval()
    assert N.count_parameters(net) <= 300_000
    with torch.inference_mode():
        out = net(torch.randn(3, 5, 32, 32), torch.ones(3, 5))
    assert out.shape == (3, 4)


def test_classifier_mask_changes_output():
    net = N.StarClassifier().eval()
    x = torch.randn(2, 5, 32, 32)
    with torch.inference_mode():
        a = net(x, torch.ones(2, 5))
        b = net(x, torch.tensor([[1.0, 0, 1, 1, 1]] * 2))
    assert not torch.allclose(a, b)


def test_classifier_conditioned_on_the_stellar_ci():
    from glue_starclf.core.ood import feature_dimension
    net = N.StarClassifier(stellar_ci=True).eval()
    x, m = torch.randn(3, 5, 32, 32), torch.ones(3, 5)
    assert net.head[0].in_features == N.StarClassifier().head[0].in_features + 1
    assert feature_dimension(net) == feature_dimension(N.StarClassifier()) == 192
    with torch.inference_mode():
        a, b = net(x, m, 1.25), net(x, m, 1.45)
        per_stamp = net(x, m, np.array([1.25, 1.25, 1.25]))
        fused = N.fuse_for_inference(net)(x, m, 1.25)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, per_stamp)
    torch.testing.assert_close(fused, a, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="needs the field's stellar CI"):
        net(x, m)
    with pytest.raises(ValueError, match="one finite value or 3"):
        net(x, m, [1.2, 1.3])
    with pytest.raises(ValueError, match="one finite value or 3"):
        net(x, m, float("nan"))
    # Members without the input ignore it.
    plain = N.StarClassifier().eval()
    with torch.inference_mode():
        torch.testing.assert_close(plain(x, m, 1.4), plain(x, m))


def test_starcnet_reference_size():
    # 001: about 15 M parameters, almost all in the first fully-connected layer.
    n = N.count_parameters(N.StarcNetReference())
    assert 14e6 < n < 16e6


def test_physical_shapes():
    net = N.PhysicalNet().eval()
    with torch.inference_mode():
        out = net(torch.randn(2, 5, 64, 64), torch.ones(2, 5), torch.ones(2, 1))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "grid": (2, 2800), "r_h": (2, 14), "cb": (2, 2), "visibility": (2, 20)}
    assert N.count_parameters(net) < 1_500_000


def test_physical_inputs_matter():
    net = N.PhysicalNet().eval()
    x = torch.randn(2, 5, 64, 64)
    with torch.inference_mode():
        a = net(x, torch.ones(2, 5), torch.ones(2, 1))["cb"]
        b = net(x, torch.tensor([[0.0, 1, 1, 1, 1]] * 2), torch.ones(2, 1))["cb"]
        c = net(x, torch.ones(2, 5), torch.full((2, 1), 0.5))["cb"]
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, c)


def test_grid_constants():
    assert N.GRID_SHAPE == (20, 10, 14)
    assert N.LOG_RH_BINS.size == 14 and N.VISIBILITY_BINS.size == 20
    assert N.LOG_AGE_BINS[[0, -1]].tolist() == pytest.approx([6.6, 10.1])
    assert 10 ** N.LOG_RH_BINS[[0, -1]] == pytest.approx([0.5, 10.0])


def test_targets_3d_sum_and_peak():
    age, av, mass = np.array([7.0, 9.5]), np.array([0.3, 2.4]), np.array([4.0, 3.2])
    t = N.gaussian_targets_3d(age, av, mass)
    assert t.shape == (2, 2800) and t.dtype == np.float32
    assert t.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
    for row, a, v, m in zip(t, age, av, mass):
        peak = np.unravel_index(row.argmax(), N.GRID_SHAPE)
        assert peak == (np.abs(N.LOG_AGE_BINS - a).argmin(), np.abs(N.AV_BINS - v).argmin(),
                        np.abs(N.LOG_MASS_BINS - m).argmin())


def test_targets_nan_rows_are_zero():
    t = N.gaussian_targets_3d([np.nan, 8.0], [0.5, np.nan], [4.0, 4.0])
    assert t.sum(axis=1).tolist() == [0.0, 0.0]
    assert N.gaussian_targets_1d([np.nan], N.LOG_RH_BINS).sum() == 0.0


def test_targets_1d_sum_peak_and_clip():
    v = np.array([0.3, -np.inf, 9.0])
    t = N.gaussian_targets_1d(v, N.VISIBILITY_BINS)
    assert t.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
    assert t.argmax(axis=1).tolist() == [np.abs(N.VISIBILITY_BINS - 0.3).argmin(), 0, 19]


def test_decode_grid_recovers_values():
    rng = np.random.default_rng(1)
    age = rng.uniform(6.6, 10.1, 50)
    av = rng.uniform(0, 3, 50)
    mass = rng.uniform(3, 5.5, 50)
    # Broader than the training targets so that neighbours carry weight.
    out = N.decode_grid(torch.from_numpy(N.gaussian_targets_3d(age, av, mass, sigma_bins=0.7)))
    for name, true, bins in (("log_age", age, N.LOG_AGE_BINS), ("av", av, N.AV_BINS),
                             ("log_mass", mass, N.LOG_MASS_BINS)):
        w = bins[1] - bins[0]
        assert np.abs(out[name] - true).max() < 0.5 * w
        assert np.all(out[f"{name}_p16"] <= out[name] + 1e-9)
        assert np.all(out[name] <= out[f"{name}_p84"] + 1e-9)
        assert np.all(out[f"{name}_p16"] < out[f"{name}_p84"])


def test_decode_1d_recovers_values_and_exp10():
    v = np.log10(np.array([0.7, 2.0, 8.0]))
    est, lo, hi = N.decode_1d(N.gaussian_targets_1d(v, N.LOG_RH_BINS), N.LOG_RH_BINS)
    w = N.LOG_RH_BINS[1] - N.LOG_RH_BINS[0]
    assert np.abs(est - v).max() < 0.5 * w
    assert np.all((lo <= est) & (est <= hi))
    pc, _, _ = N.decode_1d(N.gaussian_targets_1d(v, N.LOG_RH_BINS), N.LOG_RH_BINS, exp10=True)
    assert pc == pytest.approx(10 ** est)
    # lo/hi are the 16th/84th percentiles: for a Gaussian of sigma 2 bins, spread uniformly
    # over each bin (variance + 1/12 bin^2), they sit 0.9945 sigma_eff from the centre.
    from scipy.stats import norm
    centre = N.LOG_RH_BINS[6] + np.array([0.0, 0.5, 0.2]) * w
    _, lo, hi = N.decode_1d(N.gaussian_targets_1d(centre, N.LOG_RH_BINS, sigma_bins=2.0),
                            N.LOG_RH_BINS)
    half = norm.ppf(0.84) * np.sqrt(2.0 ** 2 + 1 / 12) * w
    np.testing.assert_allclose(centre - lo, half, atol=0.06 * w)
    np.testing.assert_allclose(hi - centre, half, atol=0.06 * w)
    with pytest.raises(ValueError, match="bins"):
        N.decode_1d(np.ones((2, 5)), N.LOG_RH_BINS)


def test_normalise_nan_zero_and_missing_bands():
    rng = np.random.default_rng(0)
    stamps = rng.normal(0, 0.01, (3, 5, 32, 32))
    stamps[0, :, 3:6] = np.nan
    stamps[1] = 0.0
    stamps[2, 0] = 0.0
    for fn in (N.normalise_classifier, N.normalise_physical):
        y = fn(stamps)
        assert y.dtype == np.float32 and y.shape == stamps.shape
        assert np.isfinite(y).all()
        assert np.all(y[1] == 0) and np.all(y[2, 0] == 0)
    mask = np.ones((3, 5), bool)
    mask[0, 4] = False
    assert np.all(N.normalise_classifier(stamps, mask)[0, 4] == 0)
    with pytest.raises(ValueError, match="shape"):
        N.normalise_physical(np.zeros((2, 3, 8, 8)))


def test_classifier_normalisation_ignores_brightness():
    yy, xx = np.mgrid[:32, :32] - 15.5
    src = np.exp(-(xx ** 2 + yy ** 2) / 4.0)[None] * np.array([1, 2, 3, 4, 5.0])[:, None, None]
    a = N.normalise_classifier(src * 10)
    b = N.normalise_classifier(src * 1000)
    assert a == pytest.approx(b, abs=1e-5)


def test_augment_shape_and_flux():
    yy, xx = np.mgrid[:32, :32] - 15.5
    src = np.exp(-(xx ** 2 + (yy / 1.5) ** 2) / 8.0)
    x = torch.from_numpy(np.broadcast_to(src, (64, 5, 32, 32)).astype(np.float32).copy())
    rng = np.random.default_rng(0)
    y = N.augment(x, rng, p_scale=0.0)
    assert y.shape == x.shape
    assert y.sum(dim=(1, 2, 3)) == pytest.approx(x.sum(dim=(1, 2, 3)).numpy(), rel=1e-5)
    z = N.augment(x, rng, p_scale=1.0)
    ratio = (z.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))).numpy()
    assert np.all((ratio > 1.0) & (ratio < 1.07 ** 2 + 0.03))


def test_zoom_views_crop_and_resample():
    x = torch.zeros(1, 5, 32, 32)
    x[..., 0, 0] = 1.0                      # outside the 1.6x and 3.2x crops
    views = N._zoom_views(x, side=16)
    assert [tuple(v.shape[-2:]) for v in views] == [(16, 16)] * 3
    assert views[0].sum() > 0 and views[1].abs().sum() == 0 and views[2].abs().sum() == 0
    flat = N._zoom_views(torch.full((1, 5, 32, 32), 2.0), side=16)
    assert all(torch.allclose(v, torch.tensor(2.0)) for v in flat)


@pytest.mark.parametrize("crop,side", [(32, 16), (20, 16), (10, 16), (64, 32), (16, 16)])
def test_zoom_views_resample_as_interpolate(crop, side):
    # The separable matrix products give F.interpolate's values (antialiased when shrinking).
    x = torch.randn(4, 5, crop, crop) * 3 + 1
    ref = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear",
                                          align_corners=False, antialias=crop > side)
    (view,) = N._zoom_views(x, zooms=(1.0,), side=side)
    assert view.shape == ref.shape
    assert torch.allclose(view, ref, atol=1e-5)


@pytest.mark.parametrize("name", ["StarClassifier", "PhysicalNet"])
def test_fuse_for_inference_keeps_outputs(name):
    net = N.build_network(name)
    net.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            x = torch.randn(16, 5, 32 if name == "StarClassifier" else 64,
                            32 if name == "StarClassifier" else 64) * 2 + 0.5
            args = (x, torch.ones(16, 5)) + (() if name == "StarClassifier"
                                             else (torch.ones(16, 1),))
            net(*args)
    net.eval()
    with torch.inference_mode():
        ref = net(*args)
        fused = N.fuse_for_inference(net)
        out = fused(*args)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    ref = ref if isinstance(ref, dict) else {"logits": ref}
    out = out if isinstance(out, dict) else {"logits": out}
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("svml", [True, False])
def test_asinh_inplace_matches_exact(monkeypatch, svml):
    monkeypatch.setattr(N, "_NUMPY_SVML", svml and N._NUMPY_SVML)
    monkeypatch.setattr(N, "_ASINH_CHUNK", 1000)      # several chunks and a partial one
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, s, 2500) for s in (1e-6, 1e-2, 1, 30, 1e4, 1e7)])
    x = x.astype(np.float32).reshape(3, 5, 1000)
    exact = np.arcsinh(x.astype(np.float64))
    out = N._asinh_inplace(x)
    assert out is x
    np.testing.assert_allclose(x, exact, rtol=3e-7, atol=0)
    assert np.all(np.sign(x) == np.sign(exact))


def test_fuse_for_inference_fuses_relu_and_falls_back():
    net = N.fuse_for_inference(N.build_network("PhysicalNet"))
    fused = [m for m in net.modules() if isinstance(m, N.ConvReLU)]
    assert len(fused) == 4
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.features)
    x = torch.randn(4, 5, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        a = fused[0](x)
    with torch.no_grad(), torch.enable_grad():   # grad mode: the unfused conv + ReLU
        b = fused[0](x)
    assert a.min() >= 0 and (a == 0).any()
    torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5)


def test_temper_sharpens_broadens_and_rejects_bad_values():
    p = N.gaussian_targets_1d(np.array([0.5]), N.LOG_RH_BINS, sigma_bins=2.0).astype(float)
    width = lambda q: np.subtract(*N._percentiles(q, N.LOG_RH_BINS)[::-1])[0]
    assert width(N.temper(p, 0.5)) < width(p) < width(N.temper(p, 2.0))
    np.testing.assert_allclose(N.temper(p, 1.0), p / p.sum())
    np.testing.assert_allclose(N.temper(p, 0.3).sum(axis=1), 1.0)
    for bad in (0, -1, np.nan, np.inf):
        with pytest.raises(ValueError, match="temperature"):
            N.temper(p, bad)


def test_estimators_differ_on_a_skewed_marginal():
    # Mass 0.6 in bin 2, 0.4 spread over bins 8-11: peak near bin 2, mean pulled up.
    p = np.zeros((1, N.LOG_RH_BINS.size))
    p[0, 2] = 0.6
    p[0, 8:12] = 0.1
    b = N.LOG_RH_BINS
    peak, _, _ = N.decode_1d(p, b, estimator="peak")
    med, _, _ = N.decode_1d(p, b, estimator="median")
    mean, lo, hi = N.decode_1d(p, b, estimator="mean")
    assert peak[0] == pytest.approx(b[2])
    assert mean[0] == pytest.approx(0.6 * b[2] + 0.1 * b[8:12].sum())
    assert b[2] - 0.5 * (b[1] - b[0]) < med[0] < b[3]     # half the mass sits in bin 2
    assert peak[0] < med[0] < mean[0]
    with pytest.raises(ValueError, match="estimator"):
        N.decode_1d(p, b, estimator="mode")


def test_decode_grid_temperature_narrows_only_the_named_interval():
    age, av, mass = np.array([8.0]), np.array([1.0]), np.array([4.2])
    g = N.gaussian_targets_3d(age, av, mass, sigma_bins=1.5)
    raw = N.decode_grid(g, estimator="mean")
    cal = N.decode_grid(g, estimator="mean", temperature={"log_age": 0.3})
    assert cal["log_age_p84"] - cal["log_age_p16"] < 0.8 * (raw["log_age_p84"] - raw["log_age_p16"])
    for name in ("av", "log_mass"):
        assert cal[f"{name}_p16"] == pytest.approx(raw[f"{name}_p16"])
    for name in ("log_age", "av", "log_mass"):       # point estimates: the untempered posterior
        assert cal[name] == pytest.approx(raw[name])
    assert raw["log_age"][0] == pytest.approx(8.0, abs=0.05)


def test_decode_grid_estimator_per_parameter():
    # A skewed grid, so that the mean and median of each marginal differ.
    rng = np.random.default_rng(4)
    g = rng.dirichlet(np.full(int(np.prod(N.GRID_SHAPE)), 0.2), 3)
    mean, median = N.decode_grid(g, estimator="mean"), N.decode_grid(g, estimator="median")
    shipped = N.decode_grid(g)
    for name in ("log_age", "av", "log_mass"):
        assert not np.allclose(mean[name], median[name])
        want = mean if N.estimator_for(name) == "mean" else median
        np.testing.assert_allclose(shipped[name], want[name])
    assert N.estimator_for("log_mass") == "median" and N.estimator_for("log_age") == "mean"
    mixed = N.decode_grid(g, estimator={"av": "median"})     # unnamed parameters: mean
    np.testing.assert_allclose(mixed["av"], median["av"])
    np.testing.assert_allclose(mixed["log_mass"], mean["log_mass"])
    with pytest.raises(ValueError, match="estimator 'mode'"):
        N.decode_grid(g, estimator={"log_age": "mode"})


@pytest.mark.parametrize("width,nan_fraction", [(1, 0.3), (2, 0.3), (7, 0.3), (240, 0.3),
                                                (240, 0.002), (241, 0.002)])
def test_nanmedian_last_equals_numpy(width, nan_fraction):
    rng = np.random.default_rng(width)
    a = rng.normal(0, 1, (40, width)).astype(np.float32)
    a[rng.random(a.shape) < nan_fraction] = np.nan   # 0.002: most rows take the partition
    a[0] = np.nan                                    # all NaN: NaN, as numpy
    a[1, :1] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmedian(a, axis=-1)
    got = N._nanmedian_last(a)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def test_nanmedian_last_keeps_leading_axes():
    a = np.random.default_rng(3).normal(0, 1, (3, 5, 8)).astype(np.float32)
    a[1, 2, :] = np.nan
    got = N._nanmedian_last(a)
    assert got.shape == (3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(got, np.nanmedian(a, axis=-1))


@pytest.mark.parametrize("shape", [(4, 16, 16, 16), (3, 32, 8, 8), (2, 5, 7, 9)])
def test_maxpool2x2_equals_maxpool2d(shape):
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    x[0, 0, 0, 0] = float("nan")
    out = N.MaxPool2x2()(x)
    ref = torch.nn.functional.max_pool2d(x, 2)
    torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(out[0, 0, 0, 0])
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_fuse_for_inference_replaces_only_plain_2x2_pools():
    net = N.fuse_for_inference(N.build_network("StarClassifier"))
    assert sum(isinstance(m, N.MaxPool2x2) for m in net.modules()) == 6
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    ref = N.fuse_for_inference(N.StarcNetReference(channels=16))
    assert sum(isinstance(m, N.MaxPool2x2) for m in ref.modules()) == 3
    seq = N.fuse_for_inference(torch.nn.Sequential(torch.nn.MaxPool2d(3, 2, 1),
                                                   torch.nn.MaxPool2d(2, ceil_mode=True)))
    assert all(isinstance(m, torch.nn.MaxPool2d) for m in seq)


@pytest.mark.parametrize("width", [1, 2, 10, 37, 256])
@pytest.mark.parametrize("q", [0, 25, 50, 97.3, 99, 100])
def test_percentile_last_equals_numpy(width, q):
    rng = np.random.default_rng(width)
    a = (rng.normal(0, 1, (3, 20, width)) * 10.0 ** rng.integers(-3, 4)).astype(np.float32)
    a[0, :, : width // 2] = 0.0                      # ties
    got = N._percentile_last(a, q)
    assert got.dtype == np.float32 and got.shape == (3, 20)
    np.testing.assert_array_equal(got, np.percentile(a, q, axis=-1))
