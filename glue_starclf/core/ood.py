"""Out-of-distribution score of the classifier: how far a stamp's features lie
from those of the training data.

For each ensemble member the pooled features of its pathways (the input of
`glue_starclf.core.networks.StarClassifier`'s head without the band mask, which
is given, not learned) of a bank of stamps like the training ones give a mean
and a covariance. (The head's hidden layer keeps only what separates the
classes; with some retrained members it stopped telling striped stamps
apart: models/README.md, "Out-of-distribution statistics".) A
source's score is its squared Mahalanobis distance from that mean, divided
by the number of features and averaged over the members (about 1 for
stamps like the training ones). Sources scoring above a threshold (the
``percentile`` of the scores of a validation bank) are flagged ``ood``.

The statistics live in one safetensors file beside the models
(``classifier.ood.safetensors``: tensors ``mean`` (members, D) and
``precision`` (members, D, D), and in its metadata the threshold, the
percentile, the banks and the sha256 of every member); it is written by
``python -m training ood-stats`` and read without unpickling anything.
"""

import json
from pathlib import Path

import numpy as np

__all__ = ["OOD_FILE", "OODStats", "FeatureTap", "feature_dimension", "member_features",
           "fit_statistics", "load_statistics", "save_statistics", "scores", "ood_warning",
           "OOD_WARN_FRACTION"]

#: Share of 'ood'-flagged sources above which a classified field is warned about
#: (about 1% on the held-out mock fields; most of a field points at its files).
OOD_WARN_FRACTION = 0.5

#: File name of the statistics in a models folder.
OOD_FILE = "classifier.ood.safetensors"

#: Covariance shrinkage towards its mean variance (keeps the inverse stable).
SHRINKAGE = 0.05


class FeatureTap:
    """Records the pooled features of a classifier member during its forward pass.

    Use as a context manager around the forward calls; `features` holds one
    (n, D) float array per call: the input of the member's head without its
    last `~glue_starclf.core.networks.N_BANDS` columns (the band mask).

    Parameters
    ----------
    model : glue_starclf.core.networks.StarClassifier
        A classifier member; its ``head[0]`` is hooked while in the context.
    """

    def __init__(self, model):
        self.model = model
        self.features = []
        self._handle = None

    def __enter__(self):
        d = feature_dimension(self.model)

        def hook(module, inputs):
            self.features.append(inputs[0][:, :d].detach().float().cpu().numpy().copy())

        self._handle = self.model.head[0].register_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


class OODStats:
    """Per-member feature statistics and the flagging threshold.

    Attributes
    ----------
    mean : ndarray, (members, D)
    precision : ndarray, (members, D, D)
    threshold : float
    sha256 : list of str
        The members (classifier weights) they belong to, in order.
    meta : dict
        Percentile, banks and counts they were made from.
    path : Path or None
    """

    def __init__(self, mean, precision, threshold, sha256, meta=None, path=None):
        self.mean = np.asarray(mean, np.float64)
        self.precision = np.asarray(precision, np.float64)
        self.threshold = float(threshold)
        self.sha256 = list(sha256)
        self.meta = dict(meta or {})
        self.path = path

    def matches(self, hashes):
        """True if these statistics were made for exactly these members."""
        return list(hashes) == self.sha256


def feature_dimension(model):
    """Number of features `FeatureTap` records for a classifier member."""
    from .networks import N_BANDS
    return model.head[0].in_features - N_BANDS - int(getattr(model, "stellar_ci", False))


def member_features(ensemble, stamps, mask, batch=1024, stellar_ci=None):
    """Pooled features of every classifier member for raw stamps.

    Parameters
    ----------
    ensemble : glue_starclf.core.predict.Ensemble
        Of the classifier family.
    stamps : ndarray, (n, 5, S, S)
        Raw stamps (reference e-/s), cropped to the members' stamp size.
    mask : ndarray, (n, 5)
        Band availability.
    batch : int
    stellar_ci : float or ndarray (n,), optional
        The fields' stellar CI, for members that take it.

    Returns
    -------
    list of ndarray
        One (n, D) array per member.
    """
    import torch

    from .networks import normalise_classifier
    ci = None if stellar_ci is None else np.broadcast_to(
        np.asarray(stellar_ci, np.float32), (len(stamps),))
    out = [[] for _ in ensemble.members]
    with torch.inference_mode():
        for i in range(0, len(stamps), batch):
            m = np.asarray(mask[i:i + batch], np.float32)
            x = torch.from_numpy(normalise_classifier(np.asarray(stamps[i:i + batch]), m))
            for k, (model, _) in enumerate(ensemble.members):
                with FeatureTap(model) as tap:
                    model(x, torch.from_numpy(m), None if ci is None else ci[i:i + batch])
                out[k].append(tap.features[0])
    return [np.concatenate(f) if f else np.zeros((0, 0)) for f in out]


def fit_statistics(features):
    """Mean and shrunk inverse covariance of one member's features (n, D)."""
    f = np.asarray(features, np.float64)
    mean = f.mean(axis=0)
    cov = np.cov(f, rowvar=False)
    d = cov.shape[0]
    target = np.trace(cov) / d
    cov = (1 - SHRINKAGE) * cov + SHRINKAGE * target * np.eye(d)
    return mean, np.linalg.inv(cov)


def scores(features, mean, precision):
    """Mean over members of the squared Mahalanobis distance per feature.

    Parameters
    ----------
    features : sequence of (n, D) arrays, one per member
    mean : (members, D)
    precision : (members, D, D)

    Returns
    -------
    ndarray, (n,)
    """
    import torch
    out = 0.0
    for f, mu, p in zip(features, mean, precision):
        z = torch.from_numpy(np.asarray(f, np.float64) - mu)
        # torch's matmul: einsum's loop is slow, and numpy's BLAS threads would
        # spin against torch's on the same cores
        out = out + ((z @ torch.from_numpy(np.asarray(p, np.float64))) * z).sum(dim=1).numpy() \
            / len(mu)
    return out / len(mean)


def save_statistics(path, stats):
    """Write `OODStats` as safetensors (tensors and string metadata)."""
    from safetensors.numpy import save_file
    meta = {"threshold": repr(stats.threshold), "sha256": json.dumps(stats.sha256),
            "meta": json.dumps(stats.meta)}
    save_file({"mean": np.ascontiguousarray(stats.mean),
               "precision": np.ascontiguousarray(stats.precision)}, str(path), metadata=meta)


def load_statistics(folder):
    """The `OODStats` of a models folder, or None when it has none.

    Raises
    ------
    ValueError
        If the file exists but cannot be read (named in the message).
    """
    from safetensors import SafetensorError, safe_open
    path = Path(folder) / OOD_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            mean, precision = f.get_tensor("mean"), f.get_tensor("precision")
        stats = OODStats(mean, precision, float(meta["threshold"]), json.loads(meta["sha256"]),
                         json.loads(meta.get("meta", "{}")), path)
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not readable out-of-distribution statistics ({exc})") \
            from None
    if stats.mean.ndim != 2 or stats.precision.shape != stats.mean.shape + stats.mean.shape[-1:]:
        raise ValueError(f"{path}: mean {stats.mean.shape} and precision "
                         f"{stats.precision.shape} do not fit")
    return stats


def ood_warning(flags, min_sources=5):
    """The warning for a field whose sources are mostly out of the training data.

    Parameters
    ----------
    flags : sequence of str
        The results table's ``flags`` (comma-separated).
    min_sources : int
        Fewer sources are never warned about.

    Returns
    -------
    str or None
        One line naming the count and what to check (calibration, bands), or
        None when at most `OOD_WARN_FRACTION` of the sources are ``ood``.
    """
    n = len(flags)
    n_ood = sum("ood" in str(f).split(",") for f in flags)
    if n < min_sources or n_ood <= OOD_WARN_FRACTION * n:
        return None
    return (f"{n_ood} of {n} sources are out of the training distribution ('ood' flag): "
            "check the images' calibration (BUNIT, PHOTFLAM, zeropoints) and bands")
