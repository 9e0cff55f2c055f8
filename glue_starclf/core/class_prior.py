"""Ensemble-level calibration of the classifier's class probabilities.

The classifier members are trained class-balanced, so their averaged
probabilities p answer "which class, if the four were equally common?".
In LEGUS catalogs they are not: about half of the human-classified sources
are class 4 and a tenth class 1. A temperature T and a class log-prior b,
fitted by the negative log-likelihood on a validation bank rendered from the
training catalogs, turn p into

    q_k = exp(log p_k / T + b_k) / sum_j exp(log p_j / T + b_j),

probabilities calibrated for a LEGUS-like mix of classes; the predicted
class is the most probable one under q. ``q / exp(b)`` renormalised undoes
the prior (the class-balanced answer at temperature T).

The values live in a JSON file beside the models
(``classifier.classes.json``: ``temperature``, ``log_prior``, ``sha256`` of
every member in order, and ``meta``); ``python -m training
calibrate-classes`` writes it. It is used only with the members it was
fitted for.
"""

import json
from pathlib import Path

import numpy as np

__all__ = ["CLASS_PRIOR_FILE", "ClassPrior", "fit_class_prior", "load_class_prior",
           "save_class_prior"]

#: File name of the calibration in a models folder.
CLASS_PRIOR_FILE = "classifier.classes.json"


class ClassPrior:
    """A fitted temperature and class log-prior for one classifier ensemble.

    Parameters
    ----------
    temperature : float
        Divides the log of the averaged probabilities (> 0).
    log_prior : sequence of float
        One additive log-weight per class, classes 1-4 in order (mean 0).
    sha256 : list of str
        The members (classifier weights) they belong to, in order.
    meta : dict, optional
        Banks, counts and scores they were fitted with.
    path : Path, optional
        The file they were read from.
    """

    def __init__(self, temperature, log_prior, sha256, meta=None, path=None):
        self.temperature = float(temperature)
        self.log_prior = np.asarray(log_prior, dtype=np.float64)
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature {temperature!r} must be a positive number")
        if self.log_prior.ndim != 1 or not np.all(np.isfinite(self.log_prior)):
            raise ValueError(f"log_prior {log_prior!r} must be a list of finite numbers")
        self.sha256 = list(sha256)
        self.meta = dict(meta or {})
        self.path = path

    def matches(self, hashes):
        """True if fitted for exactly these members, in this order."""
        return list(hashes) == self.sha256

    def apply(self, probs):
        """Calibrated probabilities of averaged member probabilities ``probs`` (..., classes).

        Returns float32 of the same shape; rows sum to 1.
        """
        p = np.asarray(probs, dtype=np.float64)
        if p.shape[-1] != len(self.log_prior):
            raise ValueError(f"probabilities of {p.shape[-1]} classes, the class prior has "
                             f"{len(self.log_prior)}")
        z = np.log(np.clip(p, 1e-30, None)) / self.temperature + self.log_prior
        z -= z.max(axis=-1, keepdims=True)
        q = np.exp(z)
        return (q / q.sum(axis=-1, keepdims=True)).astype(np.float32)


def fit_class_prior(probs, y):
    """Temperature and class log-prior minimising the NLL of labels ``y``.

    Parameters
    ----------
    probs : array_like, (n, classes)
        Averaged member probabilities of labelled stamps.
    y : array_like of int, (n,)
        Their classes, 0-based.

    Returns
    -------
    temperature : float
    log_prior : ndarray, (classes,)
        With mean 0 (only differences matter).
    """
    import torch
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} do not fit")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in 0..{p.shape[1] - 1}")
    logp = torch.from_numpy(np.log(np.clip(p, 1e-30, None)))
    target = torch.from_numpy(y)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(p.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, bias], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logp / log_t.exp() + bias, target)
        loss.backward()
        return loss

    opt.step(closure)
    b = bias.detach().numpy()
    return float(log_t.detach().exp()), b - b.mean()


def save_class_prior(path, prior):
    """Write ``prior`` (`ClassPrior`) as JSON to ``path``."""
    doc = {"temperature": prior.temperature, "log_prior": prior.log_prior.tolist(),
           "sha256": prior.sha256, "meta": prior.meta}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def load_class_prior(folder):
    """The `ClassPrior` of a models folder, or None when it has none.

    Raises
    ------
    ValueError
        If the file exists but cannot be read (named in the message).
    """
    path = Path(folder) / CLASS_PRIOR_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        return ClassPrior(doc["temperature"], doc["log_prior"], doc["sha256"],
                          doc.get("meta"), path)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable class prior ({exc})") from None
