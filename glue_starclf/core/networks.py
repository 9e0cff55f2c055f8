"""Neural networks of the classifier and the physical-parameter estimator.

Two networks, their input normalisation, their training augmentation and
the binned targets / decoding of the physical outputs:

* `StarClassifier`: LEGUS 4-class morphology of a 32 x 32 x 5 stamp, a
  cheap three-pathway design after StarcNet (001 §3.2): the stamp seen at
  1x, 1.6x and 3.2x, convolutions with BatchNorm and ReLU.
* `PhysicalNet`: age, extinction, mass, size, cluster/background and
  visibility of a 64 x 64 x 5 stamp as softmax grids, after Bialopetravičius
  & Narbutis 2020 (004 §3), with the galaxy distance as an input.

`StarcNetReference` and `BNReference` re-create the papers' networks for
speed comparisons only; they are never trained here.

Binned quantities (module constants, all bin *centres*, evenly spaced so
that the extreme values of the bank fall on the first and last centres):

==================  =====  ===================================================
constant            bins   range (centres)
==================  =====  ===================================================
`LOG_AGE_BINS`      20     log10(age / yr) 6.6 ... 10.1
`AV_BINS`           10     A_V [mag] 0 ... 3
`LOG_MASS_BINS`     14     log10(M / Msun) 3.0 ... 5.5
`LOG_RH_BINS`       14     log10(r_h / pc) log10(0.5) ... log10(10)
`VISIBILITY_BINS`   20     log10(visibility) -1 ... 3.5
==================  =====  ===================================================

The visibility range covers the mock bank (`glue_starclf.sim.bank`): its
log10 visibility runs from about -1.2 to 3.7 with 1st / 99th percentiles
-0.8 / 3.1; values outside are clipped to the end bins, and background
stamps (visibility 0) land in the lowest bin.
"""

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "N_BANDS", "N_CLASSES",
    "LOG_AGE_BINS", "AV_BINS", "LOG_MASS_BINS", "LOG_RH_BINS", "VISIBILITY_BINS",
    "GRID_SHAPE", "BAND_SCALE_E_PER_S", "CLASSIFIER_SOFTENING", "CLASSIFIER_SCALE_FLOOR",
    "StarClassifier", "StarcNetReference", "PhysicalNet", "BNReference", "band_mask",
    "gaussian_targets_3d", "gaussian_targets_1d", "decode_grid", "decode_1d",
    "ESTIMATORS", "DEFAULT_ESTIMATOR", "estimator_for", "temper",
    "normalise_classifier", "normalise_physical", "augment", "count_parameters",
    "fuse_for_inference", "ConvReLU", "MaxPool2x2",
    "ARCHITECTURES", "build_network",
]

N_BANDS = 5
N_CLASSES = 4

#: Bin centres of the joint age x extinction x mass grid (004 §3.1).
LOG_AGE_BINS = np.linspace(6.6, 10.1, 20)
AV_BINS = np.linspace(0.0, 3.0, 10)
LOG_MASS_BINS = np.linspace(3.0, 5.5, 14)
GRID_SHAPE = (LOG_AGE_BINS.size, AV_BINS.size, LOG_MASS_BINS.size)

#: Bin centres of log10 r_h [pc] and of log10 visibility (004 eq. 2).
LOG_RH_BINS = np.linspace(np.log10(0.5), np.log10(10.0), 14)
VISIBILITY_BINS = np.linspace(-1.0, 3.5, 20)

#: Fixed per-band scale [e-/s] of F275W, F336W, F438W, F555W, F814W: about
#: the median background noise sigma per drizzled pixel of the mock LEGUS
#: data, so that one unit is roughly one noise sigma in every band.
BAND_SCALE_E_PER_S = np.array([0.003, 0.006, 0.008, 0.013, 0.014], dtype=np.float32)

#: The classifier divides by (softening x the stamp's own scale) before asinh,
#: so the brightest central pixels reach about asinh(10) = 3.
CLASSIFIER_SOFTENING = 0.1

#: Floor of the classifier's per-stamp scale, in units of `BAND_SCALE_E_PER_S`
#: (noise sigmas): pure-noise stamps are not blown up.
CLASSIFIER_SCALE_FLOOR = 3.0

#: Number of StarcNet pathways.
_PATHWAYS = 3
#: Zoom factors of the pathways (001 §3.2).
_ZOOMS = (1.0, 1.6, 3.2)


def count_parameters(model):
    """Number of trainable parameters of a module."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _zoom_views(x, zooms=_ZOOMS, mode="bilinear", side=None):
    """The stamp at each zoom: central crop of side/zoom resized to ``side``.

    ``side`` defaults to the stamp's own side. Crops larger than ``side`` are
    resampled with antialiasing (bilinear mode), i.e. binned, not decimated.
    Bilinear resampling is separable, so it runs as two small matrix products
    (`_resampling_matrix`: the same weights as ``F.interpolate``, about a
    quarter of its time on CPU).
    """
    n = x.shape[-1]
    side = n if side is None else int(side)
    views = []
    for z in zooms:
        crop = int(round(n / z))
        o = (n - crop) // 2
        c = x[..., o:o + crop, o:o + crop]
        if crop == side:
            views.append(c)
        elif mode == "bilinear":
            r = _resampling_matrix(crop, side).to(dtype=x.dtype, device=x.device)
            views.append(torch.matmul(torch.matmul(r, c), r.T))
        else:
            views.append(F.interpolate(c, size=(side, side), mode=mode))
    return views


@functools.lru_cache(maxsize=None)
def _resampling_matrix(crop, side):
    """(side, crop) weights of ``F.interpolate(..., mode="bilinear", align_corners=False,
    antialias=crop > side)`` along one axis, taken from ``F.interpolate`` itself: row i
    of input image k is 1 where k = i, so output column 0 holds the weights of input
    row k."""
    rows = torch.eye(crop)[:, None, :, None].expand(crop, 1, crop, 2).contiguous()
    out = F.interpolate(rows, size=(side, 2), mode="bilinear", align_corners=False,
                        antialias=crop > side)
    return out[:, 0, :, 0].T.contiguous()


def _conv_bn(c_in, c_out, kernel=3, stride=1):
    """Convolution, BatchNorm, ReLU; 3x3 kernels are padded to keep the size.

    ReLU rather than StarcNet's LeakyReLU: on CPU the in-place ReLU pass is
    about four times faster, and the activations are a large part of the
    cost of networks this small.
    """
    pad = 1 if kernel == 3 else 0
    return [nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


# -- classifier ----------------------------------------------------------------

class StarClassifier(nn.Module):
    """Cheap three-pathway LEGUS classifier (after StarcNet, 001 §3.2).

    The 32 x 32 stamp is seen at 1x, 1.6x and 3.2x as in StarcNet, but each
    view is resampled to 16 x 16 pixels instead of 32 x 32: the 1x view is
    the whole stamp binned 2 x 2 (context), the 3.2x view the central
    10 x 10 pixels at better than native sampling (the source's core).
    Each pathway is 3x3 conv 16, max pool /2, conv 32, conv 32, max pool
    /2, conv 64, conv 64, each conv followed by BatchNorm and ReLU,
    then a global average pool; the 3 x 64 features and the band mask go
    through FC 64 and FC 4. About 0.22 M parameters and 6 M
    multiply-adds per stamp (`StarcNetReference`: 15 M and 1.7 G).
    BatchNorm rather than StarcNet's GroupNorm: at inference it is folded
    into the convolutions (`fuse_for_inference`); GroupNorm costs about as
    much as the convolutions themselves on CPU for layers this small.
    Parameters and activations are channels-last (faster oneDNN kernels).

    Parameters
    ----------
    width : sequence of int
        Channels per pathway of the five convolutions.
    hidden : int
        Units of the hidden fully-connected layer.
    dropout : float
        Dropout before the last layer (training only).
    view_side : int
        Side [px] every zoomed view is resampled to.
    stellar_ci : bool
        Also take the field's stellar CI (`stellar_ci_feature`) as an input
        of the head.

    Notes
    -----
    ``forward(x, mask)``: ``x`` (B, 5, 32, 32) normalised by
    `normalise_classifier` (missing bands zero), ``mask`` (B, 5) band
    availability (1 present, 0 missing). Returns logits (B, 4) of classes
    1-4 in that order.
    """

    def __init__(self, width=(16, 32, 32, 64, 64), hidden=64, dropout=0.2, view_side=16,
                 stellar_ci=False):
        super().__init__()
        if len(width) != 5:
            raise ValueError(f"width {width!r} must list 5 channel counts")
        self.view_side = int(view_side)
        self.stellar_ci = bool(stellar_ci)

        def pathway():
            layers = []
            c_in = N_BANDS
            for k, c in enumerate(width):
                layers += _conv_bn(c_in, c)
                if k in (0, 2):
                    layers.append(nn.MaxPool2d(2))
                c_in = c
            return nn.Sequential(*layers)

        self.pathways = nn.ModuleList(pathway() for _ in _ZOOMS)
        self.head = nn.Sequential(
            nn.Linear(len(_ZOOMS) * width[-1] + N_BANDS + int(self.stellar_ci), hidden),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, N_CLASSES))
        self.to(memory_format=torch.channels_last)

    def prepare(self, x):
        """The zoomed views of ``x``; members with the same ``view_side`` can share them."""
        return [v.contiguous(memory_format=torch.channels_last)
                for v in _zoom_views(x, side=self.view_side)]

    def forward_prepared(self, views, mask, stellar_ci=None):
        """Logits from `prepare`'s views.

        Parameters
        ----------
        views : list of torch.Tensor
            `prepare`'s three zoomed views, each (B, 5, view_side, view_side).
        mask : torch.Tensor, (B, 5)
            Band availability (1 present, 0 missing).
        stellar_ci : float or array_like (B,), optional
            The field's stellar CI [mag]; required if the network was built
            with ``stellar_ci=True``, ignored otherwise.

        Returns
        -------
        torch.Tensor, (B, 4)
            Logits of classes 1-4.
        """
        f = [p(v).mean(dim=(2, 3)) for p, v in zip(self.pathways, views)]
        f.append(mask.to(views[0].dtype))
        if self.stellar_ci:
            if stellar_ci is None:
                raise ValueError("this classifier needs the field's stellar CI")
            f.append(stellar_ci_feature(stellar_ci, len(mask)).to(views[0].dtype))
        return self.head(torch.cat(f, dim=1))

    def forward(self, x, mask, stellar_ci=None):
        """Logits (B, 4) of normalised stamps ``x`` (B, 5, 32, 32); see the class Notes."""
        return self.forward_prepared(self.prepare(x), mask, stellar_ci)


#: The stellar CI the classifier's extra input is centred on, and its scale [mag].
STELLAR_CI_CENTRE, STELLAR_CI_SCALE = 1.25, 0.1


def stellar_ci_feature(stellar_ci, n):
    """(n, 1) input of a network conditioned on the field's stellar CI (F555W, 1 vs 3 px)."""
    ci = torch.tensor(np.asarray(stellar_ci, np.float32).reshape(-1))
    if ci.numel() == 1:
        ci = ci.expand(n)
    if ci.numel() != n or not torch.isfinite(ci).all():
        raise ValueError(f"stellar CI: need one finite value or {n}, got {ci.numel()}")
    return ((ci - STELLAR_CI_CENTRE) / STELLAR_CI_SCALE)[:, None]


class StarcNetReference(nn.Module):
    """StarcNet as in 001 §3.2, for timing only (about 15 M parameters).

    Three pathways of 7 modules (3x3 conv 128, GroupNorm of 16-channel
    groups, LeakyReLU), a 2x2 max pool after the fourth module, the
    flattened features of the three pathways concatenated, FC 128, FC 4;
    nearest-neighbour zoomed inputs as in the paper.

    Parameters
    ----------
    channels : int
        Channels of every convolution (GroupNorm groups of 16 channels).
    modules : int
        Modules per pathway; the max pool follows the fourth.
    """

    def __init__(self, channels=128, modules=7):
        super().__init__()

        def pathway():
            layers = []
            c_in = N_BANDS
            for k in range(modules):
                layers += [nn.Conv2d(c_in, channels, 3, padding=1),
                           nn.GroupNorm(channels // 16, channels), nn.LeakyReLU(0.01)]
                if k == 3:
                    layers.append(nn.MaxPool2d(2))
                c_in = channels
            return nn.Sequential(*layers)

        self.pathways = nn.ModuleList(pathway() for _ in range(_PATHWAYS))
        self.fc = nn.Sequential(nn.Linear(_PATHWAYS * channels * 16 * 16, 128),
                                nn.LeakyReLU(0.01), nn.Linear(128, N_CLASSES))

    def forward(self, x, mask=None):
        """Logits (B, 4) of stamps ``x`` (B, 5, 32, 32); ``mask`` is ignored."""
        views = _zoom_views(x, mode="nearest")
        f = [p(v).flatten(1) for p, v in zip(self.pathways, views)]
        return self.fc(torch.cat(f, dim=1))


# -- physical parameters -------------------------------------------------------

def _physical_heads(n_in, hidden):
    trunk = nn.Sequential(nn.Linear(n_in, hidden), nn.LeakyReLU(0.1, inplace=True))
    heads = nn.ModuleDict({
        "grid": nn.Linear(hidden, int(np.prod(GRID_SHAPE))),
        "r_h": nn.Linear(hidden, LOG_RH_BINS.size),
        "cb": nn.Linear(hidden, 2),
        "visibility": nn.Linear(hidden, VISIBILITY_BINS.size),
    })
    return trunk, heads


#: Sides [px] of the central boxes whose per-band mean inputs feed PhysicalNet's head.
_APERTURES = (4, 8, 16, 32)


class PhysicalNet(nn.Module):
    """Compact CNN for age, A_V, mass, r_h, cluster/background and visibility.

    A plain convolutional stack: a 4x4 stride-4 convolution (32 channels,
    16 x 16: every input pixel seen once at full resolution), 3x3 conv /2
    (48, 8 x 8), 3x3 conv /2 (64, 4 x 4) and 3x3 conv (96), each with
    BatchNorm and ReLU, then a global average. The pooled features, the
    per-band mean input in central boxes of 4, 8, 16 and 32 px (the
    cluster's light at several apertures, where mass and colours live), the
    band mask and log10 distance feed one hidden layer and the four softmax
    heads of 004 §3.1. About 0.5 M parameters and 3 M multiply-adds per
    stamp (`BNReference` as in 004 Fig. 6: 10 M and 0.5 G).

    Parameters
    ----------
    width : sequence of 4 int
        Channels of the four convolutions.
    hidden : int
        Units of the shared hidden layer.
    stellar_ci : bool
        Also take the field's stellar CI (`stellar_ci_feature`): the width of
        the PSF, without which an unresolved cluster under a broad PSF looks
        larger than it is.

    Notes
    -----
    ``forward(x, mask, log_distance, stellar_ci=None)``: ``x`` (B, 5, 64, 64)
    normalised by `normalise_physical`, ``mask`` (B, 5), ``log_distance``
    (B, 1) log10 of the galaxy distance in Mpc, ``stellar_ci`` one value or
    (B,) for a network built with it. Returns a dict of logits: ``"grid"``
    (B, 2800) over `GRID_SHAPE` (age, A_V, mass; C order), ``"r_h"``
    (B, 14), ``"cb"`` (B, 2; index 1 = cluster), ``"visibility"`` (B, 20).
    """

    def __init__(self, width=(32, 48, 64, 96), hidden=128, stellar_ci=False):
        super().__init__()
        if len(width) != 4:
            raise ValueError(f"width {width!r} must list 4 channel counts")
        self.stellar_ci = bool(stellar_ci)
        kernels, strides = (4, 3, 3, 3), (4, 2, 2, 1)
        layers, c_in = [], N_BANDS
        for c, k, st in zip(width, kernels, strides):
            layers += _conv_bn(c_in, c, k, st)
            c_in = c
        self.features = nn.Sequential(*layers)
        n_in = width[-1] + N_BANDS * len(_APERTURES) + N_BANDS + 1 + int(self.stellar_ci)
        self.trunk, self.heads = _physical_heads(n_in, hidden)
        self.to(memory_format=torch.channels_last)

    def prepare(self, x):
        """Channels-last input and aperture means; every member can share them."""
        n = x.shape[-1]
        apertures = []
        for a in _APERTURES:
            o = (n - a) // 2
            apertures.append(x[..., o:o + a, o:o + a].mean(dim=(2, 3)))
        return x.contiguous(memory_format=torch.channels_last), torch.cat(apertures, 1)

    def forward_prepared(self, prepared, mask, log_distance, stellar_ci=None):
        """Logits of every head from `prepare`'s output.

        Parameters
        ----------
        prepared : (torch.Tensor, torch.Tensor)
            `prepare`'s channels-last input (B, 5, 64, 64) and aperture means
            (B, 20).
        mask : torch.Tensor, (B, 5)
            Band availability.
        log_distance : torch.Tensor, (B,) or (B, 1)
            log10 of the galaxy distance in Mpc.
        stellar_ci : float or array_like (B,), optional
            The field's stellar CI [mag]; required if the network was built
            with ``stellar_ci=True``, ignored otherwise.

        Returns
        -------
        dict of torch.Tensor
            Logits by head, as in the class Notes.
        """
        x, apertures = prepared
        f = self.features(x).mean(dim=(2, 3))
        z = [apertures, f, mask.to(f.dtype), log_distance.reshape(-1, 1).to(f.dtype)]
        if self.stellar_ci:
            if stellar_ci is None:
                raise ValueError("this physical network needs the field's stellar CI")
            z.append(stellar_ci_feature(stellar_ci, len(mask)).to(f.dtype))
        z = self.trunk(torch.cat(z, 1))
        return {k: head(z) for k, head in self.heads.items()}

    def forward(self, x, mask, log_distance, stellar_ci=None):
        """Logits of every head for normalised stamps ``x``; see the class Notes."""
        return self.forward_prepared(self.prepare(x), mask, log_distance, stellar_ci)


class _Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1, 3x3, 1x1, BatchNorm, ReLU)."""

    def __init__(self, c_in, mid, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = None
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x):
        return torch.relu(self.body(x) + (x if self.skip is None else self.skip(x)))


class BNReference(nn.Module):
    """ResNet-50 of 004 Fig. 6 at 64 x 64 with its four heads, for timing only.

    Parameters
    ----------
    layout : {"standard", "fig6"}
        ``"standard"``: the usual bottleneck ResNet-50 (conv 7x7 /2, max pool,
        [3, 4, 6, 3] blocks of widths 64-512 and outputs 256-2048).
        ``"fig6"``: the variant printed in 004 Fig. 6 (conv 7x7 /1, max pool,
        widths 64, 64, 128, 256, outputs 128-1024).
    """

    def __init__(self, layout="standard"):
        super().__init__()
        if layout == "standard":
            stem_stride, mids, outs = 2, (64, 128, 256, 512), (256, 512, 1024, 2048)
        elif layout == "fig6":
            stem_stride, mids, outs = 1, (64, 64, 128, 256), (128, 256, 512, 1024)
        else:
            raise ValueError(f"layout {layout!r} must be 'standard' or 'fig6'")
        layers = [nn.Conv2d(N_BANDS, 64, 7, stem_stride, 3, bias=False), nn.BatchNorm2d(64),
                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        c_in = 64
        for k, (n, mid, out) in enumerate(zip((3, 4, 6, 3), mids, outs)):
            for j in range(n):
                layers.append(_Bottleneck(c_in, mid, out, 2 if (j == 0 and k > 0) else 1))
                c_in = out
        self.features = nn.Sequential(*layers)
        self.trunk, self.heads = _physical_heads(c_in + N_BANDS + 1, 1024)

    def forward(self, x, mask, log_distance):
        """Logits of the four heads, as `PhysicalNet`'s, of stamps ``x`` (B, 5, 64, 64)."""
        f = self.features(x).mean(dim=(2, 3))
        z = self.trunk(torch.cat([f, mask.to(f.dtype),
                                  log_distance.reshape(-1, 1).to(f.dtype)], 1))
        return {k: head(z) for k, head in self.heads.items()}


# -- binned targets and their decoding -------------------------------------------

def _as_numpy(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _gaussian_1d(values, bins, sigma_bins):
    """Normalised Gaussians on ``bins`` (rows; NaN values give zero rows)."""
    v = np.asarray(_as_numpy(values), float).reshape(-1)
    bins = np.asarray(bins, float)
    width = bins[1] - bins[0]
    ok = ~np.isnan(v)
    vc = np.clip(np.where(ok, v, bins[0]), bins[0], bins[-1])
    g = np.exp(-0.5 * ((bins[None, :] - vc[:, None]) / (sigma_bins * width)) ** 2)
    g /= g.sum(axis=1, keepdims=True)
    g[~ok] = 0.0
    return g


def gaussian_targets_1d(values, bins, sigma_bins=0.5):
    """Soft 1-D targets (004 §3.2): a Gaussian of sigma 0.5 bin on each value.

    Parameters
    ----------
    values : array_like, shape (B,)
        In the units of ``bins`` (log10 pc for `LOG_RH_BINS`, log10
        visibility for `VISIBILITY_BINS`); clipped to the bin range (so
        -inf, e.g. log10 of a background's zero visibility, lands in the
        lowest bin). NaN gives an all-zero row, i.e. no loss.
    bins : ndarray
        Evenly spaced bin centres.
    sigma_bins : float
        Standard deviation in bin widths.

    Returns
    -------
    ndarray, float32, shape (B, len(bins))
        Rows sum to 1 (0 for NaN values).
    """
    return _gaussian_1d(values, bins, sigma_bins).astype(np.float32)


def gaussian_targets_3d(log_age, av, log_mass, sigma_bins=0.25):
    """Soft targets on the age x A_V x mass grid (004 §3.2), sigma 0.25 bin.

    Parameters
    ----------
    log_age, av, log_mass : array_like, shape (B,)
        True values; clipped to the grid. A NaN in any of them (background
        stamps) gives an all-zero row, so the parameter loss is zero.
    sigma_bins : float
        Standard deviation in bin widths, the same along each axis.

    Returns
    -------
    ndarray, float32, shape (B, 2800)
        Flattened in C order over `GRID_SHAPE` (age, A_V, mass); rows sum to 1.
    """
    ga = _gaussian_1d(log_age, LOG_AGE_BINS, sigma_bins)
    gv = _gaussian_1d(av, AV_BINS, sigma_bins)
    gm = _gaussian_1d(log_mass, LOG_MASS_BINS, sigma_bins)
    if not len(ga) == len(gv) == len(gm):
        raise ValueError(f"log_age, av, log_mass lengths {len(ga)}, {len(gv)}, {len(gm)} differ")
    g = ga[:, :, None, None] * gv[:, None, :, None] * gm[:, None, None, :]
    return g.reshape(len(ga), -1).astype(np.float32)


def _percentiles(marginal, bins, qs=(0.16, 0.84)):
    """Quantiles of binned marginals (B, n), each bin uniform over its width."""
    width = bins[1] - bins[0]
    p = marginal / np.clip(marginal.sum(axis=1, keepdims=True), 1e-30, None)
    cdf = np.concatenate([np.zeros((len(p), 1)), np.cumsum(p, axis=1)], axis=1)
    edges = np.concatenate([bins - width / 2, [bins[-1] + width / 2]])
    out = []
    for q in qs:
        # Linear interpolation of the piecewise-linear CDF, row by row.
        j = np.clip((cdf < q).sum(axis=1), 1, len(bins))
        c0 = cdf[np.arange(len(p)), j - 1]
        c1 = cdf[np.arange(len(p)), j]
        f = np.where(c1 > c0, (q - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.5)
        out.append(np.clip(edges[j - 1] + f * width, bins[0], bins[-1]))
    return out


def _peak_mean(probs, axes_bins, radius=3.0):
    """Weighted mean of the bin centres within ``radius`` bins of the peak."""
    b = probs.shape[0]
    shape = probs.shape[1:]
    peak = np.unravel_index(probs.reshape(b, -1).argmax(axis=1), shape)
    idx = np.indices(shape)
    d2 = sum((idx[k][None] - peak[k].reshape((b,) + (1,) * len(shape))) ** 2
             for k in range(len(shape)))
    w = np.where(d2 <= radius ** 2, probs, 0.0)
    tot = w.reshape(b, -1).sum(axis=1)
    est = []
    for k, bins in enumerate(axes_bins):
        centre = np.asarray(bins)[idx[k]]
        est.append((w * centre[None]).reshape(b, -1).sum(axis=1) / tot)
    return est


#: Point estimators of `decode_grid` and `decode_1d`: ``"peak"`` (004 §3.2: the
#: weighted mean of the bin centres within 3 bins of the joint grid's peak),
#: ``"median"`` and ``"mean"`` of each parameter's marginal.
ESTIMATORS = ("peak", "median", "mean")

#: The estimator the package ships for each parameter, chosen by measurement on the
#: tilted posteriors (`glue_starclf.core.posterior_tilt`) of the nominal and randomised
#: physical test banks: the marginal mean had the smallest 95th percentile of |error|
#: for log age, A_V and log r_h, the marginal median for log mass
#: (models/README.md, "Point estimates and intervals").
DEFAULT_ESTIMATOR = {"log_age": "mean", "av": "mean", "log_mass": "median", "log_r_h": "mean"}


def estimator_for(name, estimator=None):
    """The point estimator of parameter ``name``.

    ``estimator``: one of `ESTIMATORS` for every parameter, a dict of them by
    parameter, or None for `DEFAULT_ESTIMATOR` ("mean" for a parameter
    neither names).
    """
    if estimator is None:
        estimator = DEFAULT_ESTIMATOR
    est = estimator.get(name, "mean") if isinstance(estimator, dict) else estimator
    _check_estimator(est)
    return est


def temper(marginal, temperature):
    """Marginals raised to 1 / ``temperature`` and renormalised.

    ``temperature`` < 1 sharpens (narrower intervals), > 1 broadens; 1 is
    the identity. Rows are probabilities over bins, shape (B, n).
    """
    t = float(temperature)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"temperature {temperature!r} must be a positive number")
    p = np.asarray(marginal, float)
    if t != 1.0:
        # In logs, so that sharp marginals do not underflow before renormalising.
        logp = np.log(np.clip(p, 1e-300, None)) / t
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return p / np.clip(p.sum(axis=1, keepdims=True), 1e-300, None)


def _marginal_estimate(marginal, bins, estimator):
    if estimator == "median":
        return _percentiles(marginal, bins, qs=(0.5,))[0]
    p = marginal / np.clip(marginal.sum(axis=1, keepdims=True), 1e-300, None)
    return p @ np.asarray(bins, float)


def _check_estimator(estimator):
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator {estimator!r} must be one of {', '.join(ESTIMATORS)}")


def decode_grid(probs, estimator=None, temperature=None):
    """Point estimates and 16/84th percentiles from the joint grid (004 §3.2).

    Parameters
    ----------
    probs : array_like or Tensor, shape (B, 2800) or (B, 20, 10, 14)
        Softmax probabilities on `GRID_SHAPE` (not logits).
    estimator : {"peak", "median", "mean"} or dict, optional
        Point estimate (`ESTIMATORS`), or one per parameter name; default
        `DEFAULT_ESTIMATOR` (`estimator_for`).
    temperature : dict, optional
        ``log_age``, ``av``, ``log_mass`` -> temperature of that marginal
        (`temper`) before its percentiles are taken: the interval
        calibration of a model card. Missing names: 1. The point estimate
        uses the untempered posterior (tempering made it less accurate).

    Returns
    -------
    dict of ndarray, shape (B,)
        ``log_age``, ``av``, ``log_mass``: the point estimates;
        ``<name>_p16`` and ``<name>_p84``: percentiles of each (tempered)
        marginal, each bin spread uniformly over its width, clipped to the
        bin-centre range. For a multi-modal grid a peak estimate can fall
        outside the percentiles.
    """
    names = ("log_age", "av", "log_mass")
    chosen = [estimator_for(name, estimator) for name in names]
    temperature = temperature or {}
    p = np.asarray(_as_numpy(probs), float)
    if p.shape[1:] not in ((int(np.prod(GRID_SHAPE)),), GRID_SHAPE):
        raise ValueError(f"probs shape {p.shape} is neither (B, 2800) nor (B, 20, 10, 14)")
    p = p.reshape((-1,) + GRID_SHAPE)
    axes = (LOG_AGE_BINS, AV_BINS, LOG_MASS_BINS)
    peak = _peak_mean(p, axes) if "peak" in chosen else None
    out = {}
    for k, (name, bins) in enumerate(zip(names, axes)):
        marginal = p.sum(axis=tuple(a for a in (1, 2, 3) if a != k + 1))
        est = (peak[k] if chosen[k] == "peak"
               else _marginal_estimate(marginal, bins, chosen[k]))
        lo, hi = _percentiles(temper(marginal, temperature.get(name, 1.0)), bins)
        out[name], out[f"{name}_p16"], out[f"{name}_p84"] = est, lo, hi
    return out


def decode_1d(probs, bins, exp10=False, estimator=None, temperature=1.0):
    """Point estimate and 16/84th percentiles of a 1-D softmax grid.

    Parameters
    ----------
    probs : array_like or Tensor, shape (B, len(bins))
        Softmax probabilities.
    bins : ndarray
        Bin centres (`LOG_RH_BINS`, `VISIBILITY_BINS`).
    exp10 : bool
        Return 10**values (r_h in pc, visibility) instead of the log.
    estimator : {"peak", "median", "mean"}, optional
        Point estimate (default ``"mean"``; `DEFAULT_ESTIMATOR` names the
        one shipped for log r_h); ``"peak"`` is the weighted mean within 3
        bins of the peak.
    temperature : float
        Of the distribution (`temper`) before its percentiles are taken (the
        point estimate uses the untempered one).

    Returns
    -------
    est, p16, p84 : ndarray, shape (B,)
    """
    estimator = "mean" if estimator is None else estimator
    _check_estimator(estimator)
    p = np.asarray(_as_numpy(probs), float)
    bins = np.asarray(bins, float)
    if p.ndim != 2 or p.shape[1] != bins.size:
        raise ValueError(f"probs shape {p.shape} does not match {bins.size} bins")
    est = (_peak_mean(p, (bins,))[0] if estimator == "peak"
           else _marginal_estimate(p, bins, estimator))
    lo, hi = _percentiles(temper(p, temperature), bins)
    if exp10:
        return 10.0 ** est, 10.0 ** lo, 10.0 ** hi
    return est, lo, hi


# -- input normalisation ---------------------------------------------------------

def band_mask(stamps):
    """Band availability of stamps (..., 5, ny, nx): a band is present if any of its
    pixels is finite and non-zero."""
    x = np.asarray(stamps)
    return (np.isfinite(x) & (x != 0)).any(axis=(-2, -1))


def _prepare(stamps, mask):
    x = np.array(stamps, dtype=np.float32, copy=True)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != N_BANDS:
        raise ValueError(f"stamps shape {np.shape(stamps)} is not (n, 5, ny, nx)")
    if mask is None:
        mask = band_mask(x)
    mask = np.asarray(mask, dtype=bool).reshape(x.shape[0], N_BANDS)
    return x, mask


def _numpy_has_svml():
    """True where numpy's arcsinh is the vectorised SVML kernel (AVX512-SKX builds)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return False
    return bool(__cpu_features__.get("AVX512_SKX"))


_NUMPY_SVML = _numpy_has_svml()
_ONE = torch.ones(())
#: Elements per chunk of `_asinh_inplace`'s formula: its passes stay in cache.
_ASINH_CHUNK = 1 << 16


def _asinh_inplace(x):
    """asinh of a float32 array in place, vectorised on any CPU.

    torch's ``asinh_`` is a scalar loop on CPU (about 40 ns an element, nearly
    half of the physical ensemble's time), so: numpy's SVML kernel where numpy
    has it, else asinh|x| = log1p(|x| + x^2 / (1 + hypot(x, 1))) with the sign
    of x, chunk by chunk (both within 2 float32 ulp of the exact value).
    """
    if _NUMPY_SVML:
        return np.arcsinh(x, out=x)
    flat = torch.from_numpy(x).view(-1)
    for start in range(0, flat.numel(), _ASINH_CHUNK):
        c = flat[start:start + _ASINH_CHUNK]
        a = c.abs()
        r = torch.hypot(a, _ONE).add_(1)
        torch.div(a, r, out=r).mul_(a).add_(a).log1p_()
        c.copy_(r.copysign_(c))
    return x


def _nanmedian_last(a):
    """``np.nanmedian(a, axis=-1)`` of a float32 array (NaN where a row is all NaN).

    The same values as numpy's (the mean of the two middle values of an
    even count). Rows without NaN take one ``np.partition`` (linear time);
    the others one torch sort, which puts NaN last. About a third of
    numpy's time for the classifier's sky borders.
    """
    a = np.ascontiguousarray(a, dtype=np.float32)
    width = a.shape[-1]
    if width == 0:
        return np.full(a.shape[:-1], np.nan, np.float32)
    flat = a.reshape(-1, width)
    nan_rows = np.flatnonzero(np.isnan(flat).any(axis=-1))
    lo, hi = (width - 1) // 2, width // 2
    part = np.partition(flat, (lo, hi), axis=-1)
    med = (part[:, lo] + part[:, hi]) / np.float32(2)
    if nan_rows.size:
        med[nan_rows] = _nanmedian_sorted(flat[nan_rows])
    return med.reshape(a.shape[:-1])


def _nanmedian_sorted(a):
    """`_nanmedian_last` of 2-D rows that may hold NaN, from one torch sort."""
    t = torch.from_numpy(a)
    s = torch.sort(t, dim=-1).values
    k = (~torch.isnan(t)).sum(dim=-1, keepdim=True)
    lo = torch.div(k - 1, 2, rounding_mode="floor").clamp_(min=0)
    hi = torch.div(k, 2, rounding_mode="floor").clamp_(max=max(t.shape[-1] - 1, 0))
    med = (s.gather(-1, lo) + s.gather(-1, hi)) / 2
    med[k == 0] = float("nan")
    return med[..., 0].numpy()


def _percentile_last(a, q):
    """``np.percentile(a, q, axis=-1)`` (linear method) of a float32 array without NaN.

    For a high ``q`` only the top few values matter: one ``torch.topk``
    finds them (about a tenth of numpy's time for the classifier's 256
    central pixels), and numpy's interpolation of the two around the rank
    gives the same value.
    """
    a = np.ascontiguousarray(a, dtype=np.float32)
    width = a.shape[-1]
    rank = q / 100 * (width - 1)
    lo = int(np.floor(rank))
    hi = min(lo + 1, width - 1)
    top = torch.topk(torch.from_numpy(a), width - lo, dim=-1, sorted=True).values.numpy()
    below, above = top[..., width - 1 - lo], top[..., width - 1 - hi]
    t = rank - lo
    # numpy's _lerp: from the nearer end, for the same rounding
    return below + (above - below) * t if t < 0.5 else above - (above - below) * (1 - t)


def normalise_classifier(stamps, mask=None):
    """Classifier input: shape and colour kept, brightness divided out.

    Per stamp and band: subtract the median of the 2-pixel border (local
    sky), divide by `BAND_SCALE_E_PER_S` (so one unit is about one noise
    sigma in every band), divide by the stamp's scale s = max over present
    bands of the 99th percentile of the central 16 x 16 pixels, floored at
    `CLASSIFIER_SCALE_FLOOR`, then y = asinh(x / (`CLASSIFIER_SOFTENING` s)).
    NaN pixels become 0 (after the medians, which ignore them) and missing
    bands are all zero.

    Parameters
    ----------
    stamps : array_like, shape (n, 5, ny, nx) or (5, ny, nx)
        Sky-subtracted count rates [e-/s] in `glue_starclf.io.bands.BANDS` order.
    mask : array_like of bool, shape (n, 5), optional
        Band availability; default: a band with any finite non-zero pixel.

    Returns
    -------
    ndarray, float32, shape (n, 5, ny, nx)
    """
    x, mask = _prepare(stamps, mask)
    n, nb, ny, nx = x.shape
    border = np.ones((ny, nx), bool)
    border[2:-2, 2:-2] = False
    # take() with flat indices: several times faster than a boolean index here.
    edge = np.take(x.reshape(n, nb, ny * nx), np.flatnonzero(border), axis=-1)
    # All-NaN borders (masked bands) get sky 0.
    sky = np.nan_to_num(_nanmedian_last(edge), nan=0.0, posinf=0.0, neginf=0.0)
    x -= sky[..., None, None]
    x /= BAND_SCALE_E_PER_S[None, :, None, None]
    torch.from_numpy(x).nan_to_num_(0.0, 0.0, 0.0)
    x[~mask] = 0.0
    cy, cx = ny // 2, nx // 2
    centre = x[..., max(cy - 8, 0):cy + 8, max(cx - 8, 0):cx + 8].reshape(n, nb, -1)
    scale = _percentile_last(centre, 99)
    scale = np.where(mask, scale, -np.inf).max(axis=1)
    scale = np.maximum(scale, CLASSIFIER_SCALE_FLOOR)
    x /= CLASSIFIER_SOFTENING * scale[:, None, None, None].astype(np.float32)
    _asinh_inplace(x)
    x[~mask] = 0.0
    return x


def normalise_physical(stamps, mask=None):
    """PhysicalNet input: absolute fluxes kept (mass is in them), compressed.

    Per band b: y = asinh(x / `BAND_SCALE_E_PER_S` [b]), x the
    sky-subtracted count rate [e-/s] (no per-stamp sky or scale: the local
    background is part of the signal and of the noise the net learns).
    NaN pixels become 0 and missing bands are all zero.

    Parameters
    ----------
    stamps : array_like, shape (n, 5, ny, nx) or (5, ny, nx)
    mask : array_like of bool, shape (n, 5), optional
        Band availability; default: a band with any finite non-zero pixel.

    Returns
    -------
    ndarray, float32, shape (n, 5, ny, nx)
    """
    x, mask = _prepare(stamps, mask)
    torch.from_numpy(x).nan_to_num_(0.0, 0.0, 0.0)
    x /= BAND_SCALE_E_PER_S[None, :, None, None]
    _asinh_inplace(x)
    x[~mask] = 0.0
    return x


# -- augmentation ----------------------------------------------------------------

def augment(x, rng, p_scale=0.5, scale=1.07):
    """Random flips, 90/270 degree rotations and 1.07x zoom (001 Table 2c).

    Each stamp independently: horizontal flip (p 1/2), vertical flip
    (p 1/2), rotation by 0, 90 or 270 degrees (180 is already a double
    flip), and with probability ``p_scale`` a bilinear zoom by ``scale``
    about the centre (pixel values kept, so the summed signal of a source
    grows by up to scale**2).

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W) with H == W
    rng : numpy.random.Generator
    p_scale : float
    scale : float

    Returns
    -------
    Tensor, same shape and dtype
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x shape {tuple(x.shape)} is not (B, C, n, n)")
    b = x.shape[0]
    out = x.clone()
    for dims, draw in (((3,), rng.random(b) < 0.5), ((2,), rng.random(b) < 0.5)):
        sel = torch.from_numpy(np.flatnonzero(draw))
        if sel.numel():
            out[sel] = torch.flip(out[sel], dims)
    rot = rng.integers(0, 3, b)
    for k, turns in ((1, 1), (2, 3)):
        sel = torch.from_numpy(np.flatnonzero(rot == k))
        if sel.numel():
            out[sel] = torch.rot90(out[sel], turns, dims=(2, 3))
    sel = torch.from_numpy(np.flatnonzero(rng.random(b) < p_scale))
    if sel.numel():
        theta = torch.zeros(sel.numel(), 2, 3, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
        grid = F.affine_grid(theta, list(out[sel].shape), align_corners=False)
        out[sel] = F.grid_sample(out[sel], grid, mode="bilinear", padding_mode="border",
                                 align_corners=False)
    return out


#: Networks a model card may name.
ARCHITECTURES = {"StarClassifier": StarClassifier, "PhysicalNet": PhysicalNet}


#: oneDNN's convolution with a fused element-wise op (the kernel torch.compile uses on
#: CPU); None where this torch build lacks it.
_CONV_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)


class ConvReLU(nn.Module):
    """A convolution and the ReLU after it as one oneDNN call (inference only).

    The same arithmetic as ``relu(conv2d(x))``, without the extra pass of
    the ReLU over the activations in memory. Falls back to the two calls
    under autocast (bfloat16) and where the fused kernel is missing.

    Parameters
    ----------
    conv : torch.nn.Conv2d
        Its weights, bias, stride, padding, dilation and groups are kept.
    """

    def __init__(self, conv):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().contiguous(
            memory_format=torch.channels_last), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups

    def forward(self, x):
        """``relu(conv2d(x))`` with the kept convolution."""
        if (_CONV_POINTWISE is not None and x.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and not torch.is_grad_enabled()):
            return _CONV_POINTWISE(x, self.weight, self.bias, self.padding, self.stride,
                                   self.dilation, self.groups, "relu", [], "")
        return F.relu(F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), self.stride,
                               self.padding, self.dilation, self.groups))


class MaxPool2x2(nn.Module):
    """2 x 2 max pooling with stride 2 as two elementwise maxima of strided views.

    The same values as ``nn.MaxPool2d(2)`` (an odd last row or column is
    dropped, NaN propagates) without its index bookkeeping: about half its
    time on the classifier's small channels-last maps. `fuse_for_inference`
    puts it in place of ``nn.MaxPool2d(2)``.
    """

    def forward(self, x):
        """``x`` (..., H, W) max-pooled to (..., H // 2, W // 2)."""
        x = x[..., :x.shape[-2] // 2 * 2, :x.shape[-1] // 2 * 2]
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _is_plain_2x2_pool(m):
    return (isinstance(m, nn.MaxPool2d) and m.kernel_size in (2, (2, 2))
            and m.stride in (2, (2, 2)) and m.padding in (0, (0, 0))
            and m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices)


def fuse_for_inference(model):
    """Fold each BatchNorm into the convolution before it, and that ReLU into it, for inference.

    In eval mode a BatchNorm is a fixed per-channel affine map, so folding it
    into the convolution's weights and bias gives the same outputs (to float
    rounding) without the extra pass over the activations; a ReLU right after
    goes into the same oneDNN call (`ConvReLU`), and 2 x 2 max pools become
    `MaxPool2x2` (the same values). The model is put in eval mode and
    modified in place; do not train it afterwards.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``model``.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    model.eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
        for i in range(len(seq)):
            if not isinstance(seq[i], nn.Conv2d):
                continue
            nxt = [j for j in range(i + 1, len(seq)) if not isinstance(seq[j], nn.Identity)]
            if nxt and isinstance(seq[nxt[0]], nn.ReLU):
                seq[i] = ConvReLU(seq[i])
                seq[nxt[0]] = nn.Identity()
        for i in range(len(seq)):
            if _is_plain_2x2_pool(seq[i]):
                seq[i] = MaxPool2x2()
    return model.to(memory_format=torch.channels_last)


def build_network(architecture, **kwargs):
    """The network a model card names, built with the card's keyword arguments.

    Parameters
    ----------
    architecture : str
        A key of `ARCHITECTURES` (the card's ``architecture``).
    **kwargs
        The card's ``kwargs``; lists (as JSON gives them) become tuples.

    Returns
    -------
    torch.nn.Module
        Untrained, with fresh weights.
    """
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}: expected one of "
                         f"{', '.join(ARCHITECTURES)}") from None
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return cls(**kwargs)
