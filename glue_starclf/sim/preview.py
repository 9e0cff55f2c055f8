"""Colour previews of mock stamps and mosaics (asinh-stretched RGB PNGs).

`rgb_image` turns a 5-band stack in e-/s (band order of
`~glue_starclf.io.bands.BANDS`: F275W, F336W, F438W, F555W, F814W) into an RGB
image with the Lupton et al. (2004, PASP 116, 133) asinh stretch: every band
is divided by its own colour-balance scale, the intensity ``I`` (mean of the
three channels) is stretched as ``asinh(I / soft) / asinh(scale / soft)`` and
each channel is multiplied by that stretch over ``I``, so colours follow the
flux ratios while the brightness is compressed. `rgb_norm` computes the
``(scale, soft)`` pair from robust percentiles of one or many stacks, so a
batch of stamps can share one normalisation. `save_preview` draws rows of
stamp thumbnails, optionally with a thumbnail of the whole mosaic, into a PNG.

Matplotlib is used through `matplotlib.figure.Figure` and its Agg canvas
only; no global backend or pyplot state is touched.
"""

import os

import numpy as np

__all__ = ["rgb_image", "rgb_norm", "save_preview", "field_preview", "bank_preview", "WHITE"]

#: Default bands for (R, G, B): F814W, F438W, F336W.
DEFAULT_BANDS = (4, 2, 1)

#: Count rates [e-/s] of a source that is drawn white, relative to F438W: a
#: log(age/yr) = 8.3 simple stellar population of the engine's photometry, so
#: a 10 Myr cluster comes out blue-white and a 10 Gyr one orange.
WHITE = np.array([0.21, 0.40, 1.0, 2.64, 1.40])

#: Default colour saturation (1: pure flux ratios; 0: grey).
SATURATION = 0.55

#: Percentile of the intensity that is drawn at full brightness.
SCALE_PERCENTILE = 99.7

#: Softening in units of the robust noise of the intensity ...
SOFT_NOISE = 3.0
#: ... kept within these fractions of the scale.
SOFT_RANGE = (1.0 / 300.0, 1.0 / 4.0)

#: At most this many pixels enter the percentiles (regular subsampling).
_MAX_NORM_PIXELS = 1_000_000

#: Long side of the mosaic thumbnail, at most [px].
MOSAIC_MAX_PX = 800

_DPI = 110
_MOSAIC_LEFT_IN = 0.75
_THUMB_IN = 1.15


def _channels(stack, bands, saturation):
    """Colour-balanced (..., 3, ny, nx) channels and their intensity."""
    a = np.asarray(stack, dtype=float)
    if a.ndim < 3:
        raise ValueError(f"expected a (5, ny, nx) stack, got shape {a.shape}")
    bands = tuple(int(b) for b in bands)
    if len(bands) != 3:
        raise ValueError(f"bands must name 3 band indices (R, G, B), got {bands!r}")
    nb = a.shape[-3]
    if any(b < -nb or b >= nb for b in bands):
        raise ValueError(f"band index out of range for {nb} bands: {bands!r}")
    white = WHITE if nb == len(WHITE) else np.ones(nb)
    x = np.take(a, bands, axis=-3) / white[list(bands)][:, None, None]
    x = np.where(np.isfinite(x), x, 0.0)
    np.maximum(x, 0.0, out=x)
    inten = x.mean(axis=-3)
    s = float(np.clip(saturation, 0.0, 1.0))
    if s < 1.0:
        x = s * x + (1.0 - s) * inten[..., None, :, :]
    return x, inten


def _robust_norm(inten):
    """(scale, soft) from an intensity array (any shape)."""
    v = np.ravel(inten)
    if v.size > _MAX_NORM_PIXELS:
        v = v[:: int(np.ceil(v.size / _MAX_NORM_PIXELS))]
    if v.size == 0:
        return 1.0, 0.1
    scale = float(np.percentile(v, SCALE_PERCENTILE))
    if not scale > 0:
        scale = float(v.max())
    if not scale > 0:
        return 1.0, 0.1
    # The noise is measured on the fainter half of the pixels (mostly sky) so
    # bright sources do not inflate it.
    faint = v[v <= np.median(v)]
    med = np.median(faint)
    sigma = 1.4826 * np.median(np.abs(faint - med)) * 2.0  # half-sample MAD
    soft = float(np.clip(SOFT_NOISE * sigma, scale * SOFT_RANGE[0],
                         scale * SOFT_RANGE[1]))
    return scale, soft


def rgb_norm(stacks, bands=DEFAULT_BANDS, saturation=SATURATION):
    """One ``(scale, soft)`` normalisation for many stacks.

    Parameters
    ----------
    stacks : array_like or sequence of array_like
        Stacks of shape ``(..., 5, ny, nx)`` [e-/s], e.g. one ``(n, 5, s, s)``
        array of stamps or a list of stacks of different sizes.
    bands : tuple of int
        Band indices drawn as (R, G, B).
    saturation : float
        Colour saturation, as in `rgb_image`.

    Returns
    -------
    tuple of float
        ``(scale, soft)`` in colour-balanced e-/s: the intensity drawn at full
        brightness (a high percentile of all pixels) and the asinh softening
        (a few times the robust noise, kept between 1/300 and 1/4 of
        ``scale``). Pass it to `rgb_image` as ``norm``. Non-finite pixels are
        ignored; all-zero input gives ``(1.0, 0.1)``.
    """
    if isinstance(stacks, (list, tuple)):
        parts = [np.ravel(_channels(s, bands, saturation)[1]) for s in stacks]
        inten = np.concatenate(parts) if parts else np.zeros(0)
    else:
        inten = _channels(stacks, bands, saturation)[1]
    return _robust_norm(inten)


def rgb_image(stack, bands=DEFAULT_BANDS, scale=None, soft=None, norm=None,
              saturation=SATURATION):
    """Asinh-stretched RGB image of a 5-band stack.

    Parameters
    ----------
    stack : array_like, shape (5, ny, nx) or (..., 5, ny, nx)
        Count rates [e-/s] in band order F275W, F336W, F438W, F555W, F814W.
        NaN and infinite pixels are drawn as zero, negative values are
        clipped to zero.
    bands : tuple of int
        Band indices drawn as (R, G, B); default F814W, F438W, F336W.
    scale : float, optional
        Colour-balanced intensity [e-/s] drawn at full brightness; default
        from a high percentile of this image (see `rgb_norm`).
    soft : float, optional
        Asinh softening [e-/s]: the stretch is linear below it and
        logarithmic above; default from the robust noise of this image.
    norm : tuple of float, optional
        ``(scale, soft)`` from `rgb_norm`, shared by a batch of images;
        explicit ``scale`` / ``soft`` take precedence.
    saturation : float
        Colour saturation in [0, 1]: each channel is mixed with the intensity
        as ``saturation * c + (1 - saturation) * I`` before the stretch
        (1: pure flux ratios, 0: grey).

    Returns
    -------
    ndarray, shape (ny, nx, 3) or (..., ny, nx, 3)
        RGB values in [0, 1].

    Notes
    -----
    Each band is first divided by `WHITE`, the count-rate ratios of a source
    drawn white. With ``I`` the mean of the three channels, every channel is
    multiplied by ``asinh(I / soft) / (I * asinh(scale / soft))`` and
    clipped to [0, 1] (Lupton et al. 2004).
    """
    x, inten = _channels(stack, bands, saturation)
    if norm is not None:
        n_scale, n_soft = norm
        scale = n_scale if scale is None else scale
        soft = n_soft if soft is None else soft
    if scale is None or soft is None:
        a_scale, a_soft = _robust_norm(inten)
        scale = a_scale if scale is None else scale
        soft = a_soft if soft is None else soft
    scale, soft = float(scale), float(soft)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive, got {scale!r}")
    if not (np.isfinite(soft) and soft > 0):
        raise ValueError(f"soft must be positive, got {soft!r}")
    # asinh(I/soft)/I -> 1/soft as I -> 0, so zero pixels stay finite.
    safe = np.where(inten > 0, inten, 1.0)
    f = np.where(inten > 0, np.arcsinh(inten / soft) / safe, 1.0 / soft)
    f /= np.arcsinh(scale / soft)
    rgb = np.clip(x * f[..., None, :, :], 0.0, 1.0)
    return np.moveaxis(rgb, -3, -1)


def _block_average(image, max_px=MOSAIC_MAX_PX):
    """Block mean of a (nb, ny, nx) image to <= max_px on the long side.

    Returns the binned image and the binning factor; the image is cropped to
    a multiple of the factor, non-finite pixels are left out of the means and
    an all-non-finite block is 0. Never upsamples.
    """
    a = np.asarray(image, dtype=float)
    nb, ny, nx = a.shape
    k = max(1, int(np.ceil(max(ny, nx) / max_px)))
    if k == 1:
        return np.where(np.isfinite(a), a, 0.0), 1
    my, mx = (ny // k) * k, (nx // k) * k
    a = a[:, :my, :mx]
    good = np.isfinite(a)
    s = np.where(good, a, 0.0).reshape(nb, my // k, k, mx // k, k).sum(axis=(2, 4))
    c = good.reshape(nb, my // k, k, mx // k, k).sum(axis=(2, 4))
    return np.where(c > 0, s / np.maximum(c, 1), 0.0), k


def _row_label_text(ax, text):
    ax.text(-0.08, 0.5, text, transform=ax.transAxes, rotation=90,
            ha="right", va="center", fontsize=9, fontweight="bold")


def save_preview(path, stamps, labels, mosaic=None, title=""):
    """Write a PNG of stamp thumbnails, one row per group, and a mosaic.

    Parameters
    ----------
    path : str or path-like
        Output PNG. It is written to ``path + ".tmp"`` first and moved into
        place with `os.replace`, so no partial file remains.
    stamps : dict
        Row name (e.g. ``"class 1"``, ``"bank"``) -> array ``(n, 5, s, s)``
        [e-/s]. Rows are drawn in the dict's order; each row shares one
        normalisation (`rgb_norm`).
    labels : dict
        Row name -> list of ``n`` short strings (may contain newlines) drawn
        in white on the thumbnails. Missing rows get no labels.
    mosaic : array_like, shape (5, ny, nx), optional
        Whole image; drawn block-averaged to at most 800 px on its long side
        (below the stamps when wider than tall, else to the right), with axis
        ticks in pixels of the original mosaic.
    title : str
        Figure title.

    Returns
    -------
    str or path-like
        ``path``.
    """
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = {} if labels is None else labels
    rows = [(name, np.asarray(arr, dtype=float)) for name, arr in stamps.items()]
    for name, arr in rows:
        if arr.ndim != 4:
            raise ValueError(f"stamps[{name!r}] must be (n, 5, s, s), got {arr.shape}")
        lab = labels.get(name)
        if lab is not None and len(lab) != len(arr):
            raise ValueError(f"labels[{name!r}] has {len(lab)} entries for "
                             f"{len(arr)} stamps")
    n_rows = len(rows)
    n_cols = max([len(arr) for _, arr in rows] + [1])

    mos = mos_k = None
    if mosaic is not None:
        mosaic = np.asarray(mosaic)
        if mosaic.ndim != 3:
            raise ValueError(f"mosaic must be (5, ny, nx), got {mosaic.shape}")
        mos, mos_k = _block_average(mosaic)
    big_ny, big_nx = (mosaic.shape[1:] if mosaic is not None else (1, 1))
    mos_below = mosaic is not None and big_nx >= big_ny

    label_w = 0.35  # inches left of the thumbnails for the row names
    grid_w = n_cols * _THUMB_IN
    grid_h = max(n_rows, 1) * _THUMB_IN
    title_h = 0.45 if title else 0.1
    fig_w, fig_h = label_w + grid_w + 0.15, title_h + grid_h + 0.1
    if mosaic is not None:
        aspect = (mos.shape[1] * mos_k) / (mos.shape[2] * mos_k)
        if mos_below:
            mos_w = max(min(grid_w, 9.0), 5.0)
            mos_h = mos_w * aspect
            fig_w = max(fig_w, _MOSAIC_LEFT_IN + mos_w + 0.3)
            fig_h += mos_h + 0.75
        else:
            mos_h = max(grid_h, 4.0)
            mos_w = mos_h / aspect
            fig_w += mos_w + 1.0
            fig_h = max(fig_h, title_h + 0.3 + mos_h + 0.5)

    fig = Figure(figsize=(fig_w, fig_h), dpi=_DPI)
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, y=1.0 - 0.12 / fig_h, va="top", fontsize=11)
    stroke = [patheffects.withStroke(linewidth=1.8, foreground="black")]

    top = 1.0 - title_h / fig_h
    gap = 0.03
    for r, (name, arr) in enumerate(rows):
        norm = rgb_norm(arr) if len(arr) else None
        lab = labels.get(name)
        y0 = top - (r + 1) * _THUMB_IN / fig_h
        for c in range(max(len(arr), 1)):
            x0 = (label_w + c * _THUMB_IN) / fig_w
            ax = fig.add_axes([x0 + gap / fig_w, y0 + gap / fig_h,
                               (_THUMB_IN - 2 * gap) / fig_w,
                               (_THUMB_IN - 2 * gap) / fig_h])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                _row_label_text(ax, str(name))
            if not len(arr):
                ax.set_facecolor("0.85")
                ax.text(0.5, 0.5, "(none)", transform=ax.transAxes,
                        ha="center", va="center", fontsize=7, color="0.3")
                continue
            ax.imshow(rgb_image(arr[c], norm=norm), origin="lower",
                      interpolation="nearest")
            if lab is not None and str(lab[c]):
                ax.text(0.04, 0.96, str(lab[c]), transform=ax.transAxes,
                        ha="left", va="top", fontsize=6.5, color="white",
                        linespacing=1.05, path_effects=stroke)

    if mosaic is not None:
        my, mx = mos.shape[1] * mos_k, mos.shape[2] * mos_k
        if mos_below:
            grid_bottom = top - grid_h / fig_h
            # Centred under the thumbnails, 0.45 in below them.
            x0 = max(_MOSAIC_LEFT_IN, (label_w + grid_w - mos_w) / 2 + 0.2)
            x0 = min(x0, fig_w - mos_w - 0.2)
            rect = [x0 / fig_w, grid_bottom - (0.45 + mos_h) / fig_h,
                    mos_w / fig_w, mos_h / fig_h]
        else:
            x0 = label_w + grid_w + 0.75
            # 0.3 in below the title band, leaving room for the panel title.
            rect = [x0 / fig_w, top - (0.3 + mos_h) / fig_h, mos_w / fig_w,
                    mos_h / fig_h]
        ax = fig.add_axes(rect)
        ax.imshow(rgb_image(mos), origin="lower", interpolation="nearest",
                  extent=(-0.5, mx - 0.5, -0.5, my - 0.5))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("x [px]", fontsize=7, labelpad=1)
        ax.set_ylabel("y [px]", fontsize=7, labelpad=1)
        note = (f"mosaic {big_nx} x {big_ny} px"
                + (f", {mos_k}x{mos_k} binned" if mos_k > 1 else ""))
        ax.set_title(note, fontsize=8, pad=3)

    tmp = os.fspath(path) + ".tmp"
    try:
        fig.savefig(tmp, format="png", dpi=_DPI, facecolor="white")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _cutouts(images, xy, size):
    """(n, 5, size, size) stamps of an in-memory (5, ny, nx) stack, NaN off the image."""
    from ..core.cutouts import extract_stamps
    from ..io.mosaic import Mosaic
    xy = np.asarray(xy, float).reshape(-1, 2)
    return extract_stamps(Mosaic.from_arrays(images), xy[:, 0], xy[:, 1], size=size).stamps


def field_preview(mock, path, per_class=8, size=32):
    """Preview of a mock field: example stamps per class and the mosaic thumbnail.

    Parameters
    ----------
    mock : glue_starclf.sim.mosaic.MockField
    path : str
        PNG to write.
    per_class : int
        Stamps per class row (the brightest in V, to show the morphology).
    size : int
        Stamp side [px] (StarcNet's 32).
    """
    truth = mock.truth
    stamps, labels = {}, {}
    for cls in (1, 2, 3, 4):
        rows = np.flatnonzero(np.asarray(truth["class"]) == cls)
        if cls == 4:
            # One of each sub-type first, so the row shows them all.
            sub = np.asarray(truth["subtype"])[rows]
            first = [rows[np.flatnonzero(sub == s)[0]] for s in dict.fromkeys(sub)]
            rest = [r for r in rows if r not in first]
            rows = np.array(first + rest, int)
        else:
            order = np.argsort(np.asarray(truth["mag_F555W"])[rows])
            rows = rows[order]
        rows = rows[:per_class]
        xy = np.column_stack([np.asarray(truth["x"])[rows], np.asarray(truth["y"])[rows]])
        stamps[f"class {cls}"] = _cutouts(mock.images, xy, size)
        labels[f"class {cls}"] = [_label(truth[int(r)]) for r in rows]
    title = (f"mock field ({mock.meta.get('mode', '')}): {len(truth)} sources at "
             f"{mock.distance_mpc:g} Mpc, seed {mock.meta.get('seed', '')}")
    return save_preview(path, stamps, labels, mosaic=mock.images, title=title)


def _label(row):
    if row["class"] == 4:
        return str(row["subtype"]).replace("_", " ")
    return f"log t {row['log_age']:.2f}\nlog M {row['log_mass']:.1f} AV {row['av']:.1f}"


def bank_preview(stamps, truth, path, per_row=8):
    """Preview of a physical-parameter bank: young, intermediate, old and background rows.

    Parameters
    ----------
    stamps : ndarray, shape (n, 5, s, s)
        The bank's stamps [e-/s].
    truth : astropy.table.Table
        Its truth table (``log_age``, NaN for background stamps, ``log_mass``,
        ``av``, ``r_h`` [pc], ``distance_mpc``).
    path : str or path-like
        Output PNG (`save_preview`).
    per_row : int
        Stamps shown per row (the first of each group).

    Returns
    -------
    str or path-like
        ``path``.
    """
    age = np.asarray(truth["log_age"])
    groups = {"log t < 7.5": np.flatnonzero(age < 7.5),
              "7.5 - 9": np.flatnonzero((age >= 7.5) & (age < 9.0)),
              "log t >= 9": np.flatnonzero(age >= 9.0),
              "background": np.flatnonzero(np.isnan(age))}
    rows, labels = {}, {}
    for name, idx in groups.items():
        idx = idx[:per_row]
        rows[name] = stamps[idx]
        labels[name] = ["background" if np.isnan(age[i]) else
                        f"log t {age[i]:.2f} M {truth['log_mass'][i]:.1f}\n"
                        f"AV {truth['av'][i]:.1f} rh {truth['r_h'][i]:.1f}pc "
                        f"{truth['distance_mpc'][i]:.0f}Mpc" for i in idx]
    return save_preview(path, rows, labels, title=f"physical-parameter bank ({len(truth)} stamps)")
