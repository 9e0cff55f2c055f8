"""Networks, binned targets, decoding, normalisation and augmentation."""

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
