"""From mock sources to pixels: stamps, size tuning, saturation and visibility."""

import functools
import warnings

import numpy as np

from ..io.bands import BANDS
from ..core.photometry import centred_ci
from .render import StampRenderer
from .sources import V, saturation_rate

__all__ = ["BIG_PSF_SIZE", "renderer", "render_stamps", "tune_knobs_to_ci", "noise_free_ci",
           "saturate", "apply_masked_rows", "visibility"]

#: Full TinyTim support used for saturated stars, so their spikes and halo show.
BIG_PSF_SIZE = 149

#: Half-width [px] of the blanked rows of an edge source.
MASK_HALF_WIDTH = 17

#: Points per source when scanning sizes (the final CI uses all points).
TUNE_POINTS = 240


@functools.lru_cache(maxsize=16)
def renderer(size, psf_size=None, bands=None, psf=None):
    """Cached `StampRenderer`.

    Parameters
    ----------
    size : int
        Stamp side [px].
    psf_size : int, optional
        Odd PSF support; default the renderer's.
    bands : tuple of int, optional
        Band indices to render; default all five.
    psf : glue_starclf.sim.effpsf.EffectivePSF, optional
        Default: `glue_starclf.sim.render.default_psf`.
    """
    kw = {} if psf_size is None else {"psf_size": psf_size}
    return StampRenderer(size, bands=bands, psf=psf, **kw)


def render_stamps(sources, size, offsets=None, knobs=None, bands=None, chunk=256,
                  max_points=None, psf=None):
    """Noise-free, PSF-convolved stamps of sources at the stamp centre.

    Parameters
    ----------
    sources : sequence of MockSource
    size : int
        Stamp side; the source sits at pixel ((size - 1) / 2 + offset).
    offsets : ndarray, shape (n, 2), optional
        Sub-pixel (dx, dy) of each source from the stamp centre.
    knobs : ndarray, shape (n,), optional
        Size parameters to render with instead of each source's own.
    bands : tuple of int, optional
        Bands to render (default all).
    chunk : int
        Stamps per FFT batch, bounding memory.
    max_points : int, optional
        Thin each source to this many points (`Light.thinned`), for quick
        estimates such as size tuning.
    psf : glue_starclf.sim.effpsf.EffectivePSF, optional
        The field's effective PSF (default `glue_starclf.sim.render.default_psf`).

    Returns
    -------
    ndarray, shape (n, n_bands, size, size)
        Light [e-/s] including artifacts (not convolved) and saturation;
        masked rows are not applied (they come after the noise).
    """
    n = len(sources)
    band_idx = tuple(range(len(BANDS))) if bands is None else tuple(bands)
    offsets = np.zeros((n, 2)) if offsets is None else np.asarray(offsets, float)
    centre = (size - 1) / 2.0
    out = np.zeros((n, len(band_idx), size, size))
    thin = np.random.default_rng(0)
    normal = [i for i, s in enumerate(sources) if not s.saturated]
    big = [i for i, s in enumerate(sources) if s.saturated]
    for idx, rend in ((normal, renderer(size, None, band_idx, psf)),
                      (big, renderer(size, BIG_PSF_SIZE, band_idx, psf) if big else None)):
        for start in range(0, len(idx), chunk):
            sel = idx[start:start + chunk]
            xs, ys, fs, st = [], [], [], []
            for j, i in enumerate(sel):
                light = sources[i].pixels(None if knobs is None else knobs[i])
                if max_points is not None:
                    light = light.thinned(thin, max_points)
                xs.append(light.x + centre + offsets[i, 0])
                ys.append(light.y + centre + offsets[i, 1])
                fs.append(light.flux)
                st.append(np.full(light.x.size, j))
            out[sel] = rend.render(len(sel), np.concatenate(st), np.concatenate(xs),
                                   np.concatenate(ys), np.concatenate(fs))
    for i, s in enumerate(sources):
        if s.artifact is not None:
            _add_artifact(out[i], s.artifact, centre + offsets[i, 0], centre + offsets[i, 1],
                          band_idx)
        if s.saturated:
            saturate(out[i], band_idx)
    return out


def _add_artifact(stamp, light, cx, cy, band_idx):
    """Artifacts land on whole pixels, unconvolved (cosmic rays, hot pixels)."""
    ix = np.round(light.x + cx).astype(int)
    iy = np.round(light.y + cy).astype(int)
    ny, nx = stamp.shape[-2:]
    ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    for k, b in enumerate(band_idx):
        np.add.at(stamp[k], (iy[ok], ix[ok]), light.flux[ok, b])


def saturate(stack, band_idx=None):
    """Clip pixels at the full well and bleed the excess charge along columns.

    Parameters
    ----------
    stack : ndarray, shape (n_bands, ny, nx)
        Expected count rates [e-/s], modified in place.
    band_idx : sequence of int
        Band of each plane.
    """
    band_idx = range(len(BANDS)) if band_idx is None else band_idx
    for plane, b in zip(stack, band_idx):
        sat = saturation_rate(b)
        cols = np.flatnonzero((plane > sat).any(axis=0))
        for c in cols:
            col = plane[:, c]
            over = col > sat
            excess = (col[over] - sat).sum()
            rows = np.flatnonzero(over)
            col[over] = sat
            # Charge spills up and down the column from the saturated core.
            n_bleed = int(np.ceil(excess / sat / 2.0))
            lo, hi = rows.min(), rows.max()
            col[max(lo - n_bleed, 0):lo] = sat
            col[hi + 1:hi + 1 + n_bleed] = sat


def apply_masked_rows(image, cx, cy, masked_rows):
    """Blank rows near a source (chip edges, gaps) in a (5, ny, nx) image in place.

    Parameters
    ----------
    image : ndarray, shape (5, ny, nx)
        Modified in place.
    cx, cy : float
        The source's 0-based pixel position.
    masked_rows : tuple
        `MockSource.masked_rows`: ``(dy0, dy1, value, bands)``; rows
        ``cy + dy0`` to ``cy + dy1`` within `MASK_HALF_WIDTH` px of ``cx``
        are set to ``value`` in ``bands``.
    """
    dy0, dy1, value, bands = masked_rows
    ny, nx = image.shape[-2:]
    y0, y1 = int(round(cy)) + dy0, int(round(cy)) + dy1
    # Across a whole 32-px stamp, but not into the apertures of every neighbour.
    x0, x1 = int(round(cx)) - MASK_HALF_WIDTH, int(round(cx)) + MASK_HALF_WIDTH + 1
    y0, y1 = max(y0, 0), min(y1 + 1, ny)
    x0, x1 = max(x0, 0), min(x1, nx)
    if y0 < y1 and x0 < x1:
        for b in bands:
            image[b, y0:y1, x0:x1] = value


def noise_free_ci(sources, knobs=None, size=19, max_points=None, psf=None):
    """F555W concentration index of each source rendered noise-free.

    Measured as on a real image, with the local sky from the annulus (which
    an extended source or an asterism's companions raise).

    Parameters
    ----------
    sources : sequence of MockSource
    knobs : ndarray, shape (n,), optional
        Size parameters to render with instead of the sources' own.
    size : int
        Stamp side [px] (at least 17, for the sky annulus).
    max_points : int, optional
        Thin each source to this many points (quick estimates).
    psf : glue_starclf.sim.effpsf.EffectivePSF, optional
        Default: `glue_starclf.sim.render.default_psf`.

    Returns
    -------
    ndarray, shape (n,)
        CI [mag]; NaN where an aperture flux is not positive.
    """
    stamps = render_stamps(sources, size, knobs=knobs, bands=(V,), max_points=max_points,
                           psf=psf)
    return centred_ci(stamps[:, 0])


def tune_knobs_to_ci(sources, target_ci, n_grid=7, psf=None):
    """Set each tunable source's size so its noise-free CI matches a target.

    The source's own stars are kept; only their positions are scaled.

    Parameters
    ----------
    sources : sequence of MockSource
        Modified in place (``knob`` and the knob's truth column).
    target_ci : array_like
        Target CI per source (NaN: leave as is).
    n_grid : int
        Knob values tried per source, log-spaced over its range.
    psf : glue_starclf.sim.effpsf.EffectivePSF, optional
        The field's effective PSF.

    Returns
    -------
    ndarray
        Achieved noise-free CI per source.
    """
    target_ci = np.asarray(target_ci, float)
    tunable = [i for i, s in enumerate(sources)
               if s.knob_range[1] > s.knob_range[0] and np.isfinite(target_ci[i])]
    if tunable:
        grid = np.array([np.geomspace(*sources[i].knob_range, n_grid) for i in tunable])
        reps = [sources[i] for i in tunable for _ in range(n_grid)]
        ci = noise_free_ci(reps, knobs=grid.ravel(), max_points=TUNE_POINTS, psf=psf)
        ci = ci.reshape(len(tunable), n_grid)
        for row, i in enumerate(tunable):
            knob = _crossing(ci[row], np.log(grid[row]), target_ci[i])
            if knob is not None:
                sources[i].set_knob(np.exp(knob))
    return noise_free_ci(sources, psf=psf)


def _crossing(c, k, target):
    """Knob (log) where CI(knob) first crosses the target, else the closest grid value.

    CI need not be monotonic in size (an asterism's companions leave the
    3 px aperture and enter the sky annulus), so the first crossing from the
    compact end is taken.
    """
    ok = np.isfinite(c)
    if not ok.any():
        return None
    c, k = c[ok], k[ok]
    d = c - target
    hit = np.flatnonzero(d[:-1] * d[1:] <= 0)
    if hit.size:
        j = hit[0]
        if d[j] == d[j + 1]:
            return k[j]
        return k[j] + (k[j + 1] - k[j]) * d[j] / (d[j] - d[j + 1])
    return k[np.argmin(np.abs(d))]


def visibility(source_v, background_v, cx, cy):
    """Visibility (004 eq. 2): f_c / (n sigma_b) in F555W.

    Parameters
    ----------
    source_v : ndarray, shape (ny, nx) or (k, ny, nx)
        Noise-free light of the source alone [e-/s], its centre at (cx, cy).
    background_v : ndarray, same shape
        The noisy image without the source, same grid (NaN where unknown).
    cx, cy : float or ndarray, shape (k,)
        Source centre (pixels).

    Returns
    -------
    float or ndarray, shape (k,)
        f_c is the source flux within r_h,obs (the half-light radius of the
        PSF-convolved light), n the number of pixels in that circle and
        sigma_b the standard deviation of the background within 25 px.
        0 for a source without light, NaN where sigma_b is not positive.
    """
    single = np.ndim(source_v) == 2
    src = np.asarray(source_v, float).reshape((-1,) + np.shape(source_v)[-2:])
    bg = np.asarray(background_v, float).reshape(src.shape)
    cx = np.atleast_1d(np.asarray(cx, float))[:, None, None]
    cy = np.atleast_1d(np.asarray(cy, float))[:, None, None]
    yy, xx = np.indices(src.shape[-2:])
    r = np.hypot(xx - cx, yy - cy)
    flat_r = r.reshape(len(src), -1)
    order = np.argsort(flat_r, axis=1)
    cum = np.cumsum(np.clip(np.take_along_axis(src.reshape(len(src), -1), order, axis=1),
                            0, None), axis=1)
    total = cum[:, -1]
    half = (cum < 0.5 * total[:, None]).sum(axis=1)
    r_obs = np.maximum(np.take_along_axis(flat_r, order, axis=1)[np.arange(len(src)), half], 1.0)
    inside = r <= r_obs[:, None, None]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN background
        sigma_b = np.nanstd(np.where(r <= 25.0, bg, np.nan).reshape(len(src), -1), axis=1)
        vis = (src * inside).sum(axis=(1, 2)) / (inside.sum(axis=(1, 2)) * sigma_b)
    vis[~(np.isfinite(sigma_b) & (sigma_b > 0))] = np.nan
    vis[total <= 0] = 0.0
    return float(vis[0]) if single else vis
