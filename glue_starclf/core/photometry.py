"""Aperture photometry and the LEGUS concentration index.

LEGUS measures the concentration index in the V band as
CI = mag(r = 1 px) - mag(r = 3 px) (Adamo et al. 2017) and total
magnitudes in a 4 px aperture with the sky from a 1 px wide annulus at 7 px.
"""

import functools

import numpy as np

# photutils is imported inside the functions that use it: it takes about a second
# to import, and classifying the sources of a catalog never needs it.

__all__ = ["CI_RADII", "SKY_ANNULUS", "aperture_fluxes", "concentration_index",
           "centred_ci"]

#: Radii [px] of the concentration index.
CI_RADII = (1.0, 3.0)

#: Inner and outer radius [px] of the local-sky annulus.
SKY_ANNULUS = (7.0, 8.0)


def aperture_fluxes(image, x, y, radii, sky_annulus=SKY_ANNULUS):
    """Sky-subtracted fluxes in circular apertures at many positions.

    Parameters
    ----------
    image : 2-D ndarray
    x, y : array_like
        0-based pixel positions.
    radii : sequence of float
        Aperture radii [px].
    sky_annulus : (float, float) or None
        Annulus radii for a sigma-clipped median sky per pixel; None for no
        sky subtraction.

    Returns
    -------
    ndarray, shape (len(x), len(radii))
    """
    from photutils.aperture import (ApertureStats, CircularAnnulus, CircularAperture,
                                    aperture_photometry)
    pos = np.column_stack([np.atleast_1d(x), np.atleast_1d(y)]).astype(float)
    apertures = [CircularAperture(pos, r=r) for r in radii]
    table = aperture_photometry(image, apertures, method="exact")
    flux = np.column_stack([np.asarray(table[f"aperture_sum_{i}"]) for i in range(len(radii))])
    if sky_annulus is not None:
        ann = CircularAnnulus(pos, *sky_annulus)
        sky = np.atleast_1d(ApertureStats(image, ann).median)
        flux = flux - sky[:, None] * np.array([np.pi * r ** 2 for r in radii])[None, :]
    return flux


def concentration_index(image, x, y, sky_annulus=SKY_ANNULUS, scale=1.0):
    """LEGUS concentration index mag(1 px) - mag(3 px) at many positions.

    Parameters
    ----------
    image : 2-D ndarray
    x, y : array_like
        0-based pixel positions.
    sky_annulus : (float, float) or None
        Radii [px] of the local-sky annulus (`aperture_fluxes`); None for no
        sky subtraction.
    scale : float
        Multiplies the aperture and annulus radii (``0.04 / pixel_scale``
        measures it in pixels of 0.04" on an image of another pixel scale).

    Returns
    -------
    ndarray, shape (len(x),)
        CI [mag]; NaN where either aperture's flux is not positive.
    """
    f = aperture_fluxes(image, x, y, tuple(r * scale for r in CI_RADII),
                        None if sky_annulus is None else tuple(r * scale for r in sky_annulus))
    with np.errstate(divide="ignore", invalid="ignore"):
        ci = -2.5 * np.log10(f[:, 0] / f[:, 1])
    return np.where((f[:, 0] > 0) & (f[:, 1] > 0), ci, np.nan)


@functools.lru_cache(maxsize=8)
def _centred_masks(size):
    from photutils.aperture import CircularAperture
    c = (size - 1) / 2.0
    masks = [CircularAperture((c, c), r=r).to_mask(method="exact").to_image((size, size))
             for r in CI_RADII]
    yy, xx = np.indices((size, size))
    r = np.hypot(xx - c, yy - c)
    annulus = (r >= SKY_ANNULUS[0]) & (r <= SKY_ANNULUS[1])
    return np.stack(masks), annulus


def centred_ci(stamps, sky=True):
    """CI of sources centred on odd-sized stamps, shape (..., size, size).

    With ``sky``, the median of the `SKY_ANNULUS` pixels is subtracted first,
    as `concentration_index` does on images (stamps need size >= 17).
    """
    masks, annulus = _centred_masks(stamps.shape[-1])
    if sky:
        if not annulus.any():
            raise ValueError(f"stamps of size {stamps.shape[-1]} do not hold the sky annulus")
        level = np.median(stamps[..., annulus], axis=-1)
    else:
        level = np.zeros(stamps.shape[:-2])
    f1 = np.einsum("...ij,ij->...", stamps, masks[0]) - level * masks[0].sum()
    f3 = np.einsum("...ij,ij->...", stamps, masks[1]) - level * masks[1].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        ci = -2.5 * np.log10(f1 / f3)
    return np.where((f1 > 0) & (f3 > 0), ci, np.nan)
