import numpy as np
import pytest

from glue_starclf.io.bands import BANDS, EXPOSURE_TIME_S, N_EXPOSURES, READ_NOISE_E
from glue_starclf.core.photometry import centred_ci
from glue_starclf.sim.render import StampRenderer, add_noise, deposit, psf_kernels


def test_psf_kernels_are_normalised_and_centred():
    k = psf_kernels()
    assert k.shape == (5, 41, 41)
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, rtol=1e-12)
    for plane in k:
        assert np.unravel_index(plane.argmax(), plane.shape) == (20, 20)


def test_deposit_conserves_flux_and_keeps_subpixel_centroid():
    canvas = np.zeros((5, 32, 32))
    flux = np.arange(1.0, 6.0)[None, :] * np.ones((1, 5))
    deposit(canvas, np.array([10.3]), np.array([20.75]), flux)
    np.testing.assert_allclose(canvas.sum(axis=(1, 2)), flux[0])
    yy, xx = np.indices((32, 32))
    assert (canvas[0] * xx).sum() / canvas[0].sum() == pytest.approx(10.3)
    assert (canvas[0] * yy).sum() / canvas[0].sum() == pytest.approx(20.75)


def test_stamp_renderer_conserves_flux_and_gives_stellar_ci():
    r = StampRenderer(63)
    flux = np.array([[100.0, 50, 20, 10, 5], [1, 2, 3, 4, 5]])
    stamps = r.render(2, np.array([0, 1]), np.array([31.0, 31.0]), np.array([31.0, 31.0]), flux)
    np.testing.assert_allclose(stamps.sum(axis=(2, 3)), flux, rtol=2e-3)
    # A star on the drizzled PSF has the stellar CI of LEGUS catalogs (~1.2-1.35).
    ci = centred_ci(stamps[0, BANDS.index("F555W")][None])[0]
    assert 1.2 < ci < 1.35


def test_noise_has_poisson_and_read_variance():
    rng = np.random.default_rng(3)
    level = np.array([0.01, 0.05, 0.1, 0.5, 1.0])
    expected = np.broadcast_to(level[:, None, None], (5, 200, 200))
    noisy = add_noise(expected, rng, sky=False)
    t = np.array([EXPOSURE_TIME_S[b] for b in BANDS])
    var = (level * t + READ_NOISE_E ** 2 * N_EXPOSURES) / t ** 2
    assert np.all(np.abs(noisy.mean(axis=(1, 2)) - level) < 4 * np.sqrt(var / 4e4))
    np.testing.assert_allclose(noisy.var(axis=(1, 2)), var, rtol=0.05)
    assert noisy.dtype == np.float32
