"""Pixel-level rendering: depositing light, PSF convolution and detector noise.

Every mock source is a cloud of weighted points (stars drawn one by one, and
smooth light sampled as many faint points). Points are deposited on the pixel
grid with cloud-in-cell weights, so sub-pixel positions are kept, and the
canvas is convolved with each band's PSF in one batched FFT.
"""

import functools

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import gaussian_filter
from scipy.signal import oaconvolve

from ..io.bands import BANDS, EXPOSURE_TIME_S, N_EXPOSURES, READ_NOISE_E, SKY_E_PER_S
from .psf import load_psf

__all__ = ["PSF_SIZE", "MOSAIC_PSF_SIZE", "DRIZZLE_BLUR_PX", "psf_kernels", "deposit", "StampRenderer",
           "convolve_image", "add_noise"]

#: PSF support used in rendering (pixels); holds ~97% of TinyTim's light,
#: renormalised to 1.
PSF_SIZE = 41

#: Gaussian sigma [px] added to TinyTim to stand for drizzling, charge
#: diffusion and jitter: it brings the stellar CI (1 px vs 3 px, F555W) from
#: TinyTim's 0.77 mag to ~1.25 mag, the stellar locus of LEGUS catalogs,
#: which start at CI ~1.3-1.4.
DRIZZLE_BLUR_PX = 0.8


@functools.lru_cache(maxsize=4)
def psf_kernels(size=PSF_SIZE, blur=DRIZZLE_BLUR_PX):
    """(5, size, size) effective PSFs of the drizzled mosaic, in `BANDS` order."""
    out = np.empty((len(BANDS), size, size))
    for i, band in enumerate(BANDS):
        k = load_psf(band, size=size)
        k = gaussian_filter(k, blur, mode="constant") if blur > 0 else np.array(k)
        out[i] = k / k.sum()
    out.setflags(write=False)
    return out


def deposit(canvas, x, y, flux):
    """Add point sources to a band stack with cloud-in-cell weights.

    Parameters
    ----------
    canvas : ndarray, shape (nb, ny, nx)
        Image stack, modified in place.
    x, y : ndarray, shape (k,)
        Pixel positions (0-based, pixel centres at integers).
    flux : ndarray, shape (k, nb)
        Flux of each point per band.

    Notes
    -----
    The part of a point's 2x2 footprint outside the canvas is dropped.
    """
    nb, ny, nx = canvas.shape
    idx, w, keep = _cic(np.asarray(x, float), np.asarray(y, float), nx, ny)
    flat = canvas.reshape(nb, ny * nx)
    for b in range(nb):
        flat[b] += np.bincount(idx, weights=w * np.tile(flux[:, b], 4)[keep], minlength=ny * nx)


def _cic(x, y, nx, ny):
    """Flat indices and weights of the four cloud-in-cell corners of each point.

    Also returns the mask of corners inside the grid, to select per-point
    values tiled four times the same way.
    """
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    xs = np.concatenate([x0, x0 + 1, x0, x0 + 1])
    ys = np.concatenate([y0, y0, y0 + 1, y0 + 1])
    w = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    keep = (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
    return (ys * nx + xs)[keep], w[keep], keep


class StampRenderer:
    """Batched rendering of PSF-convolved stamps.

    Stamps are drawn on a canvas padded by half the PSF so that light from
    just outside the stamp falls in, convolved in one FFT per batch, and
    cropped.

    Parameters
    ----------
    size : int
        Stamp side in pixels.
    psf_size : int
        PSF support (odd).
    bands : sequence of int, optional
        Band indices to render (default all five); fluxes given to `deposit`
        still have five columns.
    """

    def __init__(self, size, psf_size=PSF_SIZE, bands=None):
        self.size = size
        self.bands = list(range(len(BANDS))) if bands is None else list(bands)
        self.pad = psf_size // 2
        self.side = sfft.next_fast_len(size + 2 * self.pad, real=True)
        kern = psf_kernels(psf_size)[self.bands]
        padded = np.zeros((len(self.bands), self.side, self.side))
        padded[:, :psf_size, :psf_size] = kern
        padded = np.roll(padded, (-self.pad, -self.pad), axis=(1, 2))
        # Single precision halves the FFT time; light is summed in float32 too.
        self._psf_fft = sfft.rfft2(padded.astype(np.float32))

    def canvas(self, n):
        """Empty canvas for ``n`` stamps, shape (n, n_bands, side, side)."""
        return np.zeros((n, len(self.bands), self.side, self.side), np.float32)

    @property
    def origin(self):
        """Canvas coordinate of stamp pixel (0, 0)."""
        return self.pad

    def deposit(self, canvas, stamp, x, y, flux):
        """Deposit points into a batch canvas.

        Parameters
        ----------
        canvas : ndarray, shape (n, n_bands, side, side)
        stamp : ndarray of int, shape (k,)
            Stamp index of each point.
        x, y : ndarray, shape (k,)
            Positions in *stamp* pixel coordinates.
        flux : ndarray, shape (k, 5)
        """
        n, nb, side, _ = canvas.shape
        idx, w, keep = _cic(np.asarray(x, float) + self.pad, np.asarray(y, float) + self.pad,
                            side, side)
        idx = idx + np.tile(np.asarray(stamp, np.int64), 4)[keep] * (side * side)
        flux = np.asarray(flux, float)
        flat = canvas.reshape(n, nb, side * side)
        for i, b in enumerate(self.bands):
            acc = np.bincount(idx, weights=w * np.tile(flux[:, b], 4)[keep],
                              minlength=n * side * side)
            flat[:, i] += acc.reshape(n, side * side)

    def convolve(self, canvas):
        """PSF-convolve a batch canvas and crop it to (n, n_bands, size, size)."""
        conv = sfft.irfft2(sfft.rfft2(canvas, workers=1) * self._psf_fft,
                           s=canvas.shape[-2:], workers=1)
        p, s = self.pad, self.size
        return conv[..., p:p + s, p:p + s]


#: PSF support for whole mosaics, wide enough that the truncation of the
#: wings does not show around the brightest clusters.
MOSAIC_PSF_SIZE = 81


def convolve_image(image, band_index, psf_size=MOSAIC_PSF_SIZE):
    """Convolve one full-size band image with its PSF (overlap-add FFT)."""
    return oaconvolve(image, psf_kernels(psf_size)[band_index], mode="same")


def add_noise(expected, rng, bands=None, sky=True):
    """Turn expected count rates into a sky-subtracted noisy image in e-/s.

    Poisson noise on source + background + sky electrons for each band's
    LEGUS exposure time, plus the read noise of `N_EXPOSURES` reads; the sky
    level is then subtracted as the drizzle pipeline does.

    Parameters
    ----------
    expected : ndarray, shape (..., nb, ny, nx)
        Noise-free count rates [e-/s], sky not included.
    rng : numpy.random.Generator
    bands : sequence of int, optional
        Band index of each of the ``nb`` planes (default: all five in order).
    sky : bool
        Add (and then subtract) the zodiacal sky of `SKY_E_PER_S`.

    Returns
    -------
    ndarray, float32, same shape
    """
    expected = np.asarray(expected)
    names = [BANDS[i] for i in (range(len(BANDS)) if bands is None else bands)]
    shape = (len(names), 1, 1)
    t = np.array([EXPOSURE_TIME_S[b] for b in names]).reshape(shape)
    s = np.array([SKY_E_PER_S[b] for b in names]).reshape(shape) if sky else 0.0
    electrons = np.clip(expected + s, 0.0, None) * t
    counts = rng.poisson(electrons).astype(np.float32)
    sigma_read = READ_NOISE_E * np.sqrt(N_EXPOSURES)
    counts += sigma_read * rng.standard_normal(expected.shape, dtype=np.float32)
    return (counts / t - s).astype(np.float32)
