"""Fine-tuning a classifier member on a user's own labelled sources (003).

The command line is ``python -m training finetune`` (``training/finetune.py``).

The story: a trained classifier member (``--from``) and a user's labels of
sources in their own mosaic (``--labels``, ``--image BAND=path``) ->
stamps cut as at inference -> k-fold cross-validated accuracy of the
original model (before) and of models fine-tuned on the other folds
(after) -> the learning curve against the number of labels, fine-tuned vs
trained from scratch on the same labels (003 Fig. 4) -> one model
fine-tuned on all labels, its temperature fitted on the out-of-fold
predictions -> ``--out`` (safetensors + model card) and a report
``<out>_finetune.md`` / ``<out>_finetune.png`` next to it.

Fine-tuning follows Pérez-Carrasco et al. (2019, 003 §2.2, §5.2): every
weight is copied from the original model and training goes on from it on
the new labels, with the first ``--freeze N`` layers kept fixed. A
*layer* is a convolution or fully-connected module, counted in the
network's order, together with the normalisation that follows it; the
parallel pathways of `glue_starclf.core.networks.StarClassifier` (the stamp at
1x, 1.6x, 3.2x) count as one layer per depth, so ``--freeze 5`` keeps all
five convolution levels of every pathway and trains only the two
fully-connected layers. 003 found no significant difference between the
numbers of frozen layers and froze none; the default is 0.

Labels
------
Hard classes 1-4 (several rows of one source are several labellers' votes,
which become vote fractions) or vote fractions ``p_class1`` ...
``p_class4``, both used as soft labels (003 §3); sources are found by
position or by id (`read_labels`, `labelled_sources`). The table's columns
are described in ``python -m training finetune --help``.

In Python, `finetune` does the work on stamps already cut (e.g. from a glue
worker thread, with a ``callback`` that can cancel) and `write_finetuned`
writes the result.
"""

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..io.bands import BANDS
from ..io.catalogs import read_labels_file
from .classifier import (band_dropout, classification_metrics, classifier_inputs,
                         expected_calibration_error, fit_temperature, predict_logits)
from .loop import fit, seed_everything

__all__ = ["finetune", "write_finetuned", "read_labels", "labelled_field_stellar_ci",
           "labelled_sources", "check_bands", "cut_labelled", "layer_groups", "Finetuned",
           "report_paths", "output_paths"]

log = logging.getLogger("glue_starclf")

N_CLASSES = 4
#: Columns of vote fractions, classes 1-4.
FRACTION_COLUMNS = tuple(f"p_class{k}" for k in range(1, N_CLASSES + 1))
#: Fractions of a fold's training labels at which the learning curve is drawn.
CURVE_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
#: An epoch shows the network at least this many stamps (small label sets
#: are repeated), so that a few dozen labels still get a few batches.
MIN_EPOCH_SAMPLES = 128


# -- labels --------------------------------------------------------------------------

def _column(table, *names):
    lower = {c.lower(): c for c in table.colnames}
    return next((lower[n.lower()] for n in names if n.lower() in lower), None)


def _fill(col):
    return np.asarray(np.ma.filled(np.ma.asarray(col, dtype=float), np.nan), float)


def _label_rows(table, path):
    """Per-row targets (n, 4) (vote counts or fractions), and rows with a label."""
    frac = [_column(table, c) for c in FRACTION_COLUMNS]
    if all(frac):
        p = np.stack([_fill(table[c]) for c in frac], axis=1)
        bad = np.isfinite(p) & (p < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"{path}: negative vote fraction in row {row + 1}")
        p = np.nan_to_num(p)
        return p, p.sum(axis=1) > 0, "fractions"
    if any(frac):
        missing = [c for c, f in zip(FRACTION_COLUMNS, frac) if not f]
        raise ValueError(f"{path}: vote fractions need all of {', '.join(FRACTION_COLUMNS)}; "
                         f"missing {', '.join(missing)}")
    cls_col = _column(table, "class", "class_user")
    if cls_col is None:
        raise ValueError(f"{path}: no label column (need class or p_class1..p_class4); "
                         f"found {', '.join(table.colnames) or 'none'}")
    try:
        c = _fill(table[cls_col])
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column {cls_col} does not hold classes 1-4") from None
    known = np.isnan(c) | np.isin(c, np.arange(N_CLASSES + 1))
    if not known.all():
        row = int(np.flatnonzero(~known)[0])
        raise ValueError(f"{path}: unknown class {table[cls_col][row]!r} in row {row + 1} "
                         f"(classes are 1-4, 0 = not sure)")
    ok = np.isfinite(c) & (c >= 1)
    votes = np.zeros((len(c), N_CLASSES))
    votes[np.flatnonzero(ok), c[ok].astype(int) - 1] = 1.0
    return votes, ok, "votes"


def read_labels(path, wcs=None, positions=True):
    """Read a labels table into one row per labelled source.

    Parameters
    ----------
    path : path-like
        ECSV or CSV table (format in the module docstring).
    wcs : astropy.wcs.WCS, optional
        The mosaic's WCS, for tables positioned by ``ra``, ``dec``.
    positions : bool
        Locate sources by ``x``, ``y`` / ``ra``, ``dec``; with False, by
        ``id`` only (the table must have one).

    Returns
    -------
    table : astropy.table.Table
        One row per source (votes merged): ``id``, and ``x``, ``y`` when
        ``positions``; row order is the first appearance in the file.
    targets : ndarray, shape (n, 4)
        Soft labels (rows sum to 1).
    info : dict
        ``kind`` ("votes" or "fractions"), ``rows`` read, ``unlabelled``
        rows skipped (class 0 / empty / all fractions zero), ``max_votes``
        per source.

    Raises
    ------
    ValueError
        Unreadable table, no label column, an unknown class, a negative
        fraction, no position (or id) columns.
    """
    from astropy.table import Table

    from ..io.catalogs import read_catalog
    if positions:
        t = read_catalog(path, wcs=wcs)
        keys = np.round(np.stack([_fill(t["x"]), _fill(t["y"])], axis=1), 3)
        has_id = _column(read_labels_file(path), "id", "index") is not None
        key_of = [str(i) for i in t["id"]] if has_id else [f"{a},{b}" for a, b in keys]
    else:
        t = read_labels_file(path)
        if "id" not in t.colnames:
            raise ValueError(f"{path}: no id column to look up in the catalog; "
                             f"found {', '.join(t.colnames) or 'none'}")
        key_of = [str(i) for i in t["id"]]
    rows, ok, kind = _label_rows(t, path)
    first, sums = {}, {}
    for i in np.flatnonzero(ok):
        k = key_of[i]
        if k not in first:
            first[k], sums[k] = i, np.zeros(N_CLASSES)
        sums[k] += rows[i]
    order = [first[k] for k in first]
    counts = np.array([sums[k] for k in first]).reshape(-1, N_CLASSES)
    out = Table()
    out["id"] = t["id"][order] if len(order) else t["id"][:0]
    if positions:
        out["x"], out["y"] = _fill(t["x"])[order], _fill(t["y"])[order]
    targets = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)
    info = {"kind": kind, "rows": int(len(t)), "unlabelled": int((~ok).sum()),
            "max_votes": int(counts.sum(axis=1).max()) if kind == "votes" and len(counts)
            else 1}
    return out, targets, info


def labelled_sources(labels, mosaic, catalog=None):
    """Positions and soft labels of the labelled sources of a mosaic.

    Parameters
    ----------
    labels : path-like
        Labels table (module docstring).
    mosaic : glue_starclf.io.mosaic.Mosaic
    catalog : path-like, optional
        Source table the labels' ``id`` refers to.

    Returns
    -------
    x, y : ndarray
        0-based positions.
    targets : ndarray, shape (n, 4)
        Soft labels.
    info : dict
        That of `read_labels` plus ``unknown_ids`` (count) and
        ``unknown_id_examples`` (up to 10).
    """
    from ..io.catalogs import read_catalog
    if catalog is None:
        try:
            t, targets, info = read_labels(labels, wcs=mosaic.wcs)
        except ValueError as exc:
            if "no position columns" in str(exc):
                raise ValueError(f"{labels}: no x,y or ra,dec columns; give --catalog to look "
                                 f"its ids up") from None
            raise
        info.update(unknown_ids=0, unknown_id_examples=[])
        return np.asarray(t["x"], float), np.asarray(t["y"], float), targets, info
    t, targets, info = read_labels(labels, positions=False)
    cat = read_catalog(catalog, wcs=mosaic.wcs, shape=mosaic.shape)
    index = {str(i): j for j, i in enumerate(cat["id"])}
    rows = np.array([index.get(str(i), -1) for i in t["id"]], int)
    unknown = rows < 0
    info.update(unknown_ids=int(unknown.sum()),
                unknown_id_examples=[str(i) for i in t["id"][unknown][:10]])
    if unknown.all():
        raise ValueError(f"{labels}: none of its {len(t)} labelled ids is in {catalog}"
                         + (f" (e.g. {', '.join(info['unknown_id_examples'][:3])})"
                            if len(t) else ""))
    keep = rows[~unknown]
    return (np.asarray(cat["x"], float)[keep], np.asarray(cat["y"], float)[keep],
            targets[~unknown], info)


def check_bands(mosaic, card):
    """Raise ValueError if the mosaic has a band the model (its card) lacks."""
    lacking = [b for b in mosaic.bands if b not in card["bands"]]
    if lacking:
        raise ValueError(f"the model has no band {', '.join(lacking)} "
                         f"(its bands: {', '.join(card['bands'])})")


def cut_labelled(mosaic, x, y, card):
    """Stamps of labelled sources as a classifier member takes them.

    Parameters
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    x, y : array_like
        0-based positions of the labelled sources.
    card : dict
        The member's model card.

    Returns
    -------
    stamps : ndarray, shape (m, 5, S, S)
        Of the sources on the mosaic.
    mask : ndarray, shape (m, 5)
        The mosaic's bands.
    inside : ndarray of bool, shape (n,)
        Which sources are on the mosaic (the others are skipped).

    Raises
    ------
    ValueError
        If the mosaic has a band the model lacks, or no source is on it.
    """
    from ..core.cutouts import extract_stamps
    check_bands(mosaic, card)
    cut = extract_stamps(mosaic, np.asarray(x, float), np.asarray(y, float),
                         size=int(card["stamp_size"]))
    inside = ~np.all(np.isnan(cut.stamps), axis=(1, 2, 3))
    if not inside.any():
        raise ValueError("no labelled source lies on the mosaic")
    mask = np.tile(mosaic.band_mask.astype(np.float32), (int(inside.sum()), 1))
    return cut.stamps[inside], mask, inside


# -- frozen layers ---------------------------------------------------------------------

def labelled_field_stellar_ci(card, mosaic, x, y):
    """The stellar CI of the labels' field for a member that takes it, else None.

    Measured on the mosaic around the labelled sources, or the default where
    it cannot be (`glue_starclf.core.stellar_ci.stellar_ci_or_default`, with a
    warning logged).

    Parameters
    ----------
    card : dict
        The member's model card; its ``kwargs["stellar_ci"]`` says whether it
        takes the stellar CI.
    mosaic : glue_starclf.io.mosaic.Mosaic
    x, y : array_like
        0-based pixel positions of the labelled sources (their median is
        the centre of the measurement box).

    Returns
    -------
    float or None
        The stellar CI [mag]; None for a member without it.
    """
    if not card.get("kwargs", {}).get("stellar_ci"):
        return None
    from ..core.stellar_ci import sources_centre, stellar_ci_or_default
    value, where, measured = stellar_ci_or_default(mosaic, sources_centre(x, y))
    if not measured:
        log.warning("fine-tuning with the stellar CI %.2f mag, the %s", value, where)
    return value


def layer_groups(model):
    """The network's layers in order, as lists of modules.

    A layer is a module whose weight has two or more dimensions
    (convolution, fully-connected) plus the parameterised modules that
    follow it before the next such module (its normalisation). Modules at
    the same position of sibling entries of an `torch.nn.ModuleList`
    (parallel pathways) are one layer.

    Returns
    -------
    list of (str, list of torch.nn.Module)
        Layer name (``pathways.*.0``-style) and its modules.
    """
    groups, index = [], {}
    current = None
    lists = {name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)}
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if not params:
            continue
        parts = name.split(".")
        key = ".".join("*" if ".".join(parts[:i]) in lists else p for i, p in enumerate(parts))
        weight = getattr(module, "weight", None)
        if weight is not None and weight.dim() >= 2:
            if key not in index:
                index[key] = len(groups)
                groups.append((key, []))
            current = index[key]
        elif current is None:
            continue
        groups[current][1].append(module)
    return groups


def _freeze(model, n):
    """Freeze the first ``n`` layers; returns their names and modules."""
    groups = layer_groups(model)
    if n < 0:
        raise ValueError(f"--freeze {n} must be >= 0")
    if n >= len(groups):
        raise ValueError(f"--freeze {n} leaves nothing to train: the model has "
                         f"{len(groups)} layers")
    frozen = [m for _, mods in groups[:n] for m in mods]
    for m in frozen:
        for p in m.parameters(recurse=False):
            p.requires_grad_(False)
    return [name for name, _ in groups[:n]], frozen


# -- training --------------------------------------------------------------------------

class _Labelled(torch.utils.data.Dataset):
    """Stamps, soft labels and band masks at ``rows`` (repeats allowed)."""

    def __init__(self, x, targets, mask, rows):
        self.x, self.targets, self.mask, self.rows = x, targets, mask, rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r = self.rows[i]
        return self.x[r], self.targets[r], self.mask[r]


def _plan_rows(n):
    """Row indices of one epoch: every label, repeated up to `MIN_EPOCH_SAMPLES`."""
    reps = max(1, math.ceil(MIN_EPOCH_SAMPLES / n))
    return np.tile(np.arange(n), reps)


def _steps(n, epochs, batch_size):
    """Optimizer steps `fit` takes for ``n`` labels (it drops a ragged last batch)."""
    m = len(_plan_rows(n))
    per_epoch = m // batch_size if m > batch_size else 1
    return epochs * per_epoch


class _Trainer:
    """Trains networks on label subsets, ticking the progress callback."""

    def __init__(self, x, targets, mask, *, epochs, batch_size, band_dropout, seed, folder,
                 callback, total, stellar_ci=None):
        self.x, self.targets, self.mask, self.stellar_ci = x, targets, mask, stellar_ci
        self.epochs, self.batch_size, self.band_dropout = epochs, batch_size, band_dropout
        self.seed, self.folder, self.callback = seed, Path(folder), callback
        self.done, self.total, self.runs = 0, total, 0

    def tick(self):
        self.done += 1
        if self.callback is not None:
            self.callback(min(self.done, self.total), self.total)

    def train(self, model, rows, lr, frozen=()):
        from ..core.networks import augment
        self.runs += 1
        seed = self.seed * 1000 + self.runs
        x, t, m = self.x[rows], self.targets[rows], self.mask[rows]
        hard = t.argmax(axis=1)
        counts = np.bincount(hard, minlength=N_CLASSES)
        epoch_rows = _plan_rows(len(rows))
        weights = (1.0 / counts[hard])[epoch_rows]
        gen = torch.Generator().manual_seed(seed)
        aug_rng = np.random.default_rng(seed)

        def step(net, batch):
            self.tick()
            for module in frozen:  # fit puts the net in train mode every epoch
                module.eval()
            xb, tb, mb = batch
            mb = band_dropout(mb, self.band_dropout, gen)
            logits = net(augment(classifier_inputs(xb.numpy(), mb.numpy()), aug_rng), mb,
                         self.stellar_ci)
            return -(tb.float() * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()

        fit(model, _Labelled(x, t.astype(np.float32), m, epoch_rows), step, epochs=self.epochs,
            batch_size=self.batch_size, lr=lr, seed=seed,
            state_path=self.folder / f"run{self.runs}.state.pt", weights=weights,
            progress=False)
        model.eval()
        return model


def _folds(hard, k, rng):
    """Stratified fold number of every label."""
    fold = np.empty(len(hard), int)
    start = 0
    for c in range(N_CLASSES):
        idx = rng.permutation(np.flatnonzero(hard == c))
        fold[idx] = (start + np.arange(len(idx))) % k
        start += len(idx)
    return fold


def _stratified_order(hard, rows, rng):
    """``rows`` ordered so that every prefix is close to stratified by class."""
    key = np.empty(len(rows))
    for c in range(N_CLASSES):
        sel = np.flatnonzero(hard[rows] == c)
        perm = rng.permutation(len(sel))
        key[sel] = (perm + rng.random(len(sel))) / max(len(sel), 1)
    return rows[np.argsort(key, kind="stable")]


def _scores(logits, temperature, targets):
    probs = torch.softmax(torch.as_tensor(logits) / temperature, dim=1).numpy()
    return {"accuracy": float((probs.argmax(axis=1) == targets.argmax(axis=1)).mean()),
            "rmse": float(np.sqrt(((probs - targets) ** 2).mean()))}


def _summary(values):
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "folds": [float(a) for a in v]}


class Finetuned(NamedTuple):
    """Result of `finetune`.

    Attributes
    ----------
    model : torch.nn.Module
        Fine-tuned on all labels, in eval mode.
    card : dict
        Its model card (without the weights' hash, filled in when written).
    report : dict
        ``cv`` (accuracy and RMSE per fold before and after, pooled
        metrics), ``curve`` (learning curve rows), ``n_labels``, timings.
    """

    model: torch.nn.Module
    card: dict
    report: dict


def finetune(model_path, stamps, labels, mask=None, *, freeze=0, folds=5, curve_folds=3,
             curve_fractions=CURVE_FRACTIONS, epochs=8, batch_size=32, lr=5e-4,
             lr_scratch=2e-3, band_dropout=0.2, seed=0, callback=None, stellar_ci=None):
    """Fine-tune a classifier member on labelled stamps, with cross-validation.

    Parameters
    ----------
    model_path : path-like
        Classifier checkpoint (``.safetensors`` or its ``.json`` card).
    stamps : array_like, shape (n, 5, S, S)
        Sky-subtracted stamps [e-/s] in `glue_starclf.io.bands.BANDS` order, S
        the model's stamp size; NaN pixels are zeroed.
    labels : array_like, shape (n,) or (n, 4)
        Classes 1-4, or per-class vote fractions (soft labels; rows are
        normalised).
    mask : array_like, shape (n, 5), optional
        Band availability (default: a band with any finite non-zero pixel).
    freeze : int
        Layers kept fixed (`layer_groups`).
    folds : int
        k of the stratified k-fold cross-validation (at most n).
    curve_folds : int
        Folds (of the k) the learning curve is drawn on.
    curve_fractions : sequence of float
        Fractions of a fold's training labels on the learning curve.
    epochs, batch_size, lr, lr_scratch, band_dropout, seed
        Training settings (``lr_scratch`` for the from-scratch comparison).
    callback : callable, optional
        ``callback(done, total)`` before every optimizer step (``total``
        known from the start); an exception it raises (e.g. to cancel)
        stops the work and propagates, and nothing is returned.
    stellar_ci : float, optional
        The field's stellar CI (`glue_starclf.core.stellar_ci`), needed by
        members that take it; ignored by the others.

    Returns
    -------
    Finetuned

    Raises
    ------
    ValueError
        Not a classifier, corrupt checkpoint, stamps of the wrong shape,
        labels not 1-4 or not matching the stamps, fewer labels than
        classes, bad ``freeze``.
    """
    from ..core.checkpoints import load_checkpoint
    from ..core.networks import band_mask, build_network
    t0 = time.perf_counter()
    parent, card = load_checkpoint(model_path)
    if card.get("family") != "classifier":
        raise ValueError(f"{model_path}: a {card.get('family')} model; finetune takes a "
                         f"classifier member")
    if getattr(parent, "stellar_ci", False) and stellar_ci is None:
        raise ValueError(f"{model_path}: the member takes the field's stellar CI; give it")
    if not getattr(parent, "stellar_ci", False):
        stellar_ci = None
    size = int(card["stamp_size"])
    x = np.asarray(stamps, np.float32)
    if x.ndim != 4 or x.shape[1:] != (len(BANDS), size, size):
        raise ValueError(f"stamps shape {x.shape} is not (n, {len(BANDS)}, {size}, {size}) "
                         f"as {Path(model_path).name} takes")
    targets = _as_targets(labels, len(x))
    if len(x) < N_CLASSES:
        raise ValueError(f"only {len(x)} labelled sources: fine-tuning needs at least "
                         f"{N_CLASSES}, the number of classes")
    if mask is None:
        mask = band_mask(x)
    mask = np.asarray(mask, np.float32).reshape(len(x), -1)
    x = np.nan_to_num(x)
    k = int(min(folds, len(x)))
    if k < 2:
        raise ValueError(f"--folds {folds} must be at least 2")
    curve_folds = int(min(max(curve_folds, 0), k))
    rng = seed_everything(seed)
    hard = targets.argmax(axis=1)
    fold = _folds(hard, k, rng)
    names, _ = _freeze(build_network(card["architecture"], **card["kwargs"]), freeze)
    temperature = float(card.get("temperature", 1.0))
    # the work, planned up front so that progress has a total
    plan = []  # (fold, fraction): fine-tuned and from-scratch runs of the curve
    for f in range(k):
        n_tr = int((fold != f).sum())
        plan.append(("finetune", f, 1.0, n_tr))
        if f < curve_folds:
            for frac in curve_fractions:
                m = max(N_CLASSES, int(round(frac * n_tr)))
                if frac < 1.0:
                    plan.append(("finetune", f, frac, m))
                plan.append(("scratch", f, frac, min(m, n_tr)))
    plan.append(("final", -1, 1.0, len(x)))
    total = sum(_steps(n, epochs, batch_size) for *_, n in plan)
    if callback is not None:
        callback(0, total)

    def tuned():
        model = build_network(card["architecture"], **card["kwargs"])
        model.load_state_dict(parent.state_dict())
        return model, _freeze(model, freeze)[1]

    oof = np.zeros((len(x), N_CLASSES), np.float32)
    before = predict_logits(parent, x, mask, stellar_ci)
    curve = {}
    with tempfile.TemporaryDirectory(prefix="starclf-finetune-") as tmp:
        trainer = _Trainer(x, targets, mask, epochs=epochs, batch_size=batch_size,
                           band_dropout=band_dropout, seed=seed, folder=tmp, callback=callback,
                           total=total, stellar_ci=stellar_ci)
        order = {f: _stratified_order(hard, np.flatnonzero(fold != f), rng) for f in range(k)}
        for kind, f, frac, m in plan[:-1]:
            test = fold == f
            rows = order[f][:m]
            if kind == "finetune":
                model, frozen = tuned()
                logits = predict_logits(trainer.train(model, rows, lr, frozen), x[test],
                                        mask[test], stellar_ci)
                if frac == 1.0:
                    oof[test] = logits
            else:
                torch.manual_seed(seed * 1000 + trainer.runs + 1)
                model = build_network(card["architecture"], **card["kwargs"])
                logits = predict_logits(trainer.train(model, rows, lr_scratch), x[test],
                                        mask[test], stellar_ci)
            if f < curve_folds:
                curve.setdefault((frac, kind), []).append(
                    (m, _scores(logits, 1.0, targets[test])["accuracy"]))
        # the new model: all labels; temperature from the out-of-fold logits
        model, frozen = tuned()
        trainer.train(model, np.arange(len(x)), lr, frozen)
    new_t = fit_temperature(oof, hard)
    per_fold = {"before": [], "after": []}
    for f in range(k):
        test = fold == f
        per_fold["before"].append(_scores(before[test], temperature, targets[test]))
        per_fold["after"].append(_scores(oof[test], new_t, targets[test]))
    cv = {"folds": k}
    for name, logits, t in (("before", before, temperature), ("after", oof, new_t)):
        probs = torch.softmax(torch.as_tensor(logits) / t, dim=1).numpy()
        pooled = classification_metrics(probs, hard)
        pooled["ece"] = expected_calibration_error(probs, hard)
        cv[name] = {"accuracy": _summary([s["accuracy"] for s in per_fold[name]]),
                    "rmse": _summary([s["rmse"] for s in per_fold[name]]), "pooled": pooled}
    rows = []
    for frac in curve_fractions:
        row = {"fraction": float(frac)}
        for kind in ("finetune", "scratch"):
            pts = curve.get((frac, kind), [])
            if pts:
                row[f"n_{kind}"] = float(np.mean([p[0] for p in pts]))
                row[kind] = _summary([p[1] for p in pts])
        rows.append(row)
    seconds = time.perf_counter() - t0
    report = {"n_labels": int(len(x)), "class_counts": np.bincount(hard, minlength=4).tolist(),
              "soft": bool(((targets > 0).sum(axis=1) > 1).any()), "cv": cv, "curve": rows,
              "curve_folds": curve_folds, "temperature": new_t, "seconds": round(seconds, 1),
              "trainings": trainer.runs}
    parent_path = Path(card["_path"]).with_name(card["weights"])
    new_card = {key: card[key] for key in ("family", "architecture", "kwargs", "bands",
                                           "stamp_size", "normalisation", "class_names")
                if key in card}
    new_card.update(
        temperature=new_t, seed=seed,
        parent={"name": parent_path.stem, "path": str(parent_path.resolve()),
                "sha256": card["sha256"], "training": card.get("training", {})},
        finetune={"freeze": int(freeze), "frozen_layers": names, "epochs": epochs,
                  "batch_size": batch_size, "lr": lr, "lr_scratch": lr_scratch,
                  "band_dropout": band_dropout, "folds": k, "n_labels": int(len(x)),
                  "soft_labels": report["soft"], "stellar_ci": stellar_ci},
        training={"date": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_time_s": round(seconds, 1)},
        metrics={"cv_before": cv["before"], "cv_after": cv["after"], "learning_curve": rows})
    return Finetuned(model.eval(), new_card, report)


def _as_targets(labels, n):
    """Soft targets (n, 4) from classes 1-4 or vote fractions."""
    a = np.asarray(labels, float)
    if a.ndim == 1:
        if len(a) != n:
            raise ValueError(f"{len(a)} labels for {n} stamps")
        bad = ~np.isin(a, np.arange(1, N_CLASSES + 1))
        if bad.any():
            raise ValueError(f"unknown class {a[bad][0]:g} (classes are 1-4)")
        return np.eye(N_CLASSES)[a.astype(int) - 1]
    if a.ndim != 2 or a.shape != (n, N_CLASSES):
        raise ValueError(f"labels shape {a.shape} is neither ({n},) nor ({n}, {N_CLASSES})")
    if not np.isfinite(a).all() or (a < 0).any() or (a.sum(axis=1) <= 0).any():
        raise ValueError("vote fractions must be finite, non-negative and not all zero")
    return a / a.sum(axis=1, keepdims=True)


# -- output ----------------------------------------------------------------------------

def report_paths(out):
    """The Markdown and PNG report written next to ``out``."""
    out = Path(out)
    stem = out.with_suffix("")
    return stem.with_name(stem.name + "_finetune.md"), stem.with_name(stem.name + "_finetune.png")


def output_paths(out):
    """Every file `write_finetuned` writes for ``out``."""
    out = Path(out)
    return [out, out.with_suffix(".json"), *report_paths(out)]


def write_finetuned(result, out, overwrite=False):
    """Write a `Finetuned` model, its card and the report next to it.

    Parameters
    ----------
    result : Finetuned
    out : path-like
        Weights path, ending in ``.safetensors``.
    overwrite : bool
        Replace existing files; without it an existing file is an error
        and nothing is written.

    Returns
    -------
    Path
        The card's path.
    """
    from ..core.checkpoints import save_checkpoint
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: must end in .safetensors")
    existing = [p for p in output_paths(out) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (use --overwrite to replace it)")
    md, png = report_paths(out)
    _plot(result.report, png)
    md.write_text(_markdown(result, out, png))
    return save_checkpoint(result.model, out, result.card)


def _plot(report, path):
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for kind, style in (("finetune", "o-"), ("scratch", "s--")):
        pts = [r for r in report["curve"] if kind in r]
        if pts:
            ax.errorbar([r[f"n_{kind}"] for r in pts], [r[kind]["mean"] for r in pts],
                        yerr=[r[kind]["std"] for r in pts], fmt=style, capsize=3,
                        label={"finetune": "fine-tuned", "scratch": "from scratch"}[kind])
    b = report["cv"]["before"]["accuracy"]
    ax.axhline(b["mean"], color="k", ls=":", label="original model")
    ax.set(xscale="log", xlabel="number of training labels", ylabel="accuracy (held-out fold)",
           title="learning curve (003 Fig. 4)", ylim=(0, 1))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _markdown(result, out, png):
    r, card = result.report, result.card
    cv = r["cv"]

    def ms(s):
        return f"{s['mean']:.3f} ± {s['std']:.3f}"
    ft = card["finetune"]
    lines = [f"# Fine-tuning report: {out.name}", "",
             f"Parent: {card['parent']['name']} (sha256 {card['parent']['sha256'][:12]}...)  ",
             f"Labels: {card['training'].get('labels', 'given in Python')} "
             f"({r['n_labels']} sources; per class {', '.join(map(str, r['class_counts']))}; "
             f"{'soft' if r['soft'] else 'hard'} labels)  ",
             f"Frozen layers: {ft['freeze']} ({', '.join(ft['frozen_layers']) or 'none'})  ",
             f"Command: `{card['training'].get('command', 'glue_starclf.learn.finetune.finetune')}`  ",
             f"Run time: {r['seconds']:.0f} s, {r['trainings']} trainings", "",
             f"## {cv['folds']}-fold cross-validation", "",
             "Accuracy is against the class with most votes; RMSE is between predicted "
             "probabilities and the label fractions (003).", "",
             "| | accuracy (mean ± std over folds) | RMSE | binary accuracy | ECE |",
             "| --- | --- | --- | --- | --- |"]
    for name, label in (("before", "original model"), ("after", "fine-tuned")):
        c = cv[name]
        lines.append(f"| {label} | {ms(c['accuracy'])} | {ms(c['rmse'])} | "
                     f"{c['pooled']['binary_accuracy']:.3f} | {c['pooled']['ece']:.3f} |")
    lines += ["", f"## Learning curve (003 Fig. 4; {r['curve_folds']} folds)", "",
              "| training labels | fine-tuned | from scratch |", "| --- | --- | --- |"]
    for row in r["curve"]:
        n = row.get("n_scratch", row.get("n_finetune", 0))
        lines.append(f"| {n:.0f} | {ms(row['finetune']) if 'finetune' in row else '-'} | "
                     f"{ms(row['scratch']) if 'scratch' in row else '-'} |")
    lines += ["", f"![learning curve]({png.name})", ""]
    return "\n".join(lines)
