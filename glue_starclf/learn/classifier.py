"""The classifier's training pieces, shared by ``train-classifier`` and fine-tuning.

Network inputs of raw stamps, band dropout, the validation metrics
(accuracy, binary accuracy, recall, confusion, ECE) and temperature
scaling (Guo et al. 2017).
"""

import numpy as np
import torch

from ..core.networks import normalise_classifier

__all__ = ["band_dropout", "classifier_inputs", "classification_metrics", "confusion_metrics",
           "expected_calibration_error", "fit_temperature", "format_recall", "predict_logits"]


def band_dropout(mask, p, gen):
    """Zero bands at random (never all of a stamp's present bands)."""
    drop = torch.rand(mask.shape, generator=gen) < p
    keep = mask * (~drop)
    empty = keep.sum(dim=1) == 0
    keep[empty] = mask[empty]
    return keep


def classifier_inputs(x, mask):
    """Normalised network inputs (a tensor) of raw stamps and their band mask."""
    return torch.from_numpy(normalise_classifier(np.asarray(x), np.asarray(mask)))


def confusion_metrics(conf):
    """Accuracy, binary accuracy and per-class recall of a 4 x 4 confusion matrix.

    Parameters
    ----------
    conf : array_like
        Counts; rows the true class 1-4, columns the predicted one.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``binary_accuracy`` (classes 1+2 against 3+4,
        001 §2.2), ``recall`` (one per class; None for a class without rows;
        accuracies None without any row) and ``confusion`` (a list of lists).
    """
    c = np.asarray(conf, dtype=np.int64)
    if c.shape != (4, 4):
        raise ValueError(f"confusion matrix of shape {c.shape}, not (4, 4)")
    n = int(c.sum())
    rows = c.sum(axis=1)
    binary = c[:2, :2].sum() + c[2:, 2:].sum()
    return {"n": n, "accuracy": float(np.trace(c) / n) if n else None,
            "binary_accuracy": float(binary / n) if n else None,
            "recall": [float(c[k, k] / rows[k]) if rows[k] else None for k in range(4)],
            "confusion": c.tolist()}


def classification_metrics(probs, y):
    """`confusion_metrics` of the argmax classes of ``probs`` (N, 4) against ``y`` (0-3)."""
    conf = np.zeros((4, 4), np.int64)
    np.add.at(conf, (np.asarray(y), np.asarray(probs).argmax(axis=1)), 1)
    return confusion_metrics(conf)


def format_recall(recall, sep=" / ", digits=2):
    """Per-class recalls as text, "–" for a class without rows."""
    return sep.join("–" if r is None else f"{r:.{digits}f}" for r in recall)


def expected_calibration_error(probs, y, n_bins=15):
    """ECE of the top-class probability in equal-width bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def fit_temperature(logits, y):
    """Temperature minimising the validation NLL (Guo et al. 2017)."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    target = torch.as_tensor(y)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss
    opt.step(closure)
    return float(log_t.detach().exp())


@torch.inference_mode()
def predict_logits(model, x, mask, stellar_ci=None, batch=1024):
    """Logits of a trained classifier for raw stamps (``stellar_ci``: one per stamp, or
    one for all, for a classifier conditioned on it)."""
    model.eval()
    ci = None if stellar_ci is None else np.broadcast_to(
        np.asarray(stellar_ci, np.float32), (len(x),))
    out = []
    for i in range(0, len(x), batch):
        out.append(model(classifier_inputs(x[i:i + batch], mask[i:i + batch]),
                         torch.from_numpy(np.asarray(mask[i:i + batch])),
                         None if ci is None else ci[i:i + batch]))
    return torch.cat(out).float().numpy()
