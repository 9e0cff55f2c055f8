"""``train-classifier``: one member of the morphological classifier ensemble.

The story: read banks of labelled stamps (mock banks from ``make-bank``, or a
user's own mosaic and LEGUS catalog) -> split off validation sources (whole
fields when the bank has them) -> StarClassifier of `glue_starclf.core.networks`
(or, with ``--init``, a trained member's network, for more epochs on new banks)
-> class-balanced training with band dropout and the StarcNet augmentations
-> validation metrics and a fitted temperature -> safetensors + model card.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

from glue_starclf.core.networks import band_mask
from glue_starclf.io.bands import BANDS
from glue_starclf.learn.banks import bank_stellar_ci, label_sources
from glue_starclf.learn.classifier import (band_dropout, classification_metrics,
                                           classifier_inputs, expected_calibration_error,
                                           fit_temperature, format_recall, predict_logits)
from glue_starclf.learn.loop import (add_stellar_ci_arguments, channel_counts, check_model_out,
                                     fit, fraction, init_record, is_main, positive_float,
                                     positive_int, probability, require_validation,
                                     seed_everything, start_network)
from glue_starclf.learn.speed import machine

__all__ = ["add_arguments", "run", "labelled_stamps", "split", "stellar_ci_balance",
           "class_balance"]

CLASS_NAMES = ["class 1", "class 2", "class 3", "class 4"]


def add_arguments(p):
    p.add_argument("--bank", action="append", default=[], help="bank folder (repeatable)")
    p.add_argument("--image", action="append", default=[], metavar="BAND=PATH",
                   help="a band of a real mosaic (with --catalog)")
    p.add_argument("--catalog", help="LEGUS .tab catalog with visual classes (with --image)")
    p.add_argument("--val-fields", default="", help="comma-separated fields held out for validation")
    p.add_argument("--val-fraction", type=fraction, default=0.1)
    p.add_argument("--out", required=True, help="weights path, ending in .safetensors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--minutes", type=float, help="stop after this much training time")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--band-dropout", type=probability, default=0.2)
    p.add_argument("--width", type=channel_counts(5), default=None, metavar="C1,C2,C3,C4,C5",
                   help="channels of the five convolutions of each pathway "
                        "(default that of StarClassifier)")
    p.add_argument("--hidden", type=positive_int, default=None,
                   help="units of the hidden fully-connected layer (default StarClassifier's)")
    add_stellar_ci_arguments(p)
    p.add_argument("--stellar-ci-balance", action="store_true",
                   help="weight the stamps so that every class has the same stellar-CI "
                        "distribution (the value then says nothing about the class by itself)")
    p.add_argument("--drawn-weight", type=positive_float, default=1.0,
                   help="weight of a stamp whose class the anchored bank drew given its CI (a "
                        "catalog row nobody inspected) against every other stamp; each class "
                        "keeps the same total weight (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model at --out (also needed to write into the "
                        "bundled models folder)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--init", metavar="CARD",
                   help="start from this classifier member's weights (a model card or its "
                        ".safetensors) instead of random ones: more epochs on new banks; the "
                        "network sizes are the card's")


#: Bins [mag] of `stellar_ci_balance`.
STELLAR_CI_BINS = np.arange(1.0, 1.8001, 0.02)


def class_balance(labels, drawn=None, drawn_weight=1.0):
    """Per-stamp sampling weights that give the four classes the same total weight.

    Parameters
    ----------
    labels : (n,) int array
        Classes 0-3; every class must be present.
    drawn : (n,) bool array, optional
        Stamps whose class the bank drew given their CI (catalog rows nobody
        inspected; `glue_starclf.learn.banks.label_sources` 0).
    drawn_weight : float
        Within each class, a ``drawn`` stamp weighs this many times another.

    Returns
    -------
    (n,) float array
        Summing to 1 over each class.
    """
    labels = np.asarray(labels)
    w = np.ones(len(labels)) if drawn is None else np.where(drawn, float(drawn_weight), 1.0)
    return w / np.bincount(labels, weights=w, minlength=4)[labels]


def stellar_ci_balance(ci, labels, clip=(0.2, 5.0)):
    """Per-stamp factors that give every class the stellar-CI distribution of all stamps.

    Banks differ in how their fields' PSFs are spread: unmatched detections
    (all class 4) come mostly from fields with broad PSFs, where more stars
    pass a fixed CI cut. Without this, a high stellar CI alone would say
    "class 4". The factor of a stamp of class k in bin b is
    n_all(b) / n_all / (n_k(b) / n_k), clipped to ``clip``, then scaled so
    that each class keeps its total weight.

    Parameters
    ----------
    ci : (n,) array
        The stamps' stellar CI [mag].
    labels : (n,) int array
        Classes 0-3.
    clip : (float, float)

    Returns
    -------
    (n,) float array
    """
    ci, labels = np.asarray(ci, float), np.asarray(labels)
    b = np.clip(np.digitize(ci, STELLAR_CI_BINS), 0, len(STELLAR_CI_BINS))
    n_bins = len(STELLAR_CI_BINS) + 1
    share_all = np.bincount(b, minlength=n_bins) / len(b)
    w = np.ones(len(b))
    for k in np.unique(labels):
        sel = labels == k
        share_k = np.bincount(b[sel], minlength=n_bins) / sel.sum()
        f = np.clip(share_all[b[sel]] / share_k[b[sel]], *clip)
        w[sel] = f * sel.sum() / f.sum()
    return w


def labelled_stamps(banks=(), images=(), catalog=None):
    """Stamps (n, 5, 32, 32), labels 0-3, band masks (n, 5) and a field per source."""
    stamps, labels, fields = [], [], []
    from glue_starclf.learn.banks import open_bank
    for folder in banks:
        s, t, meta = open_bank(folder)
        if s.shape[-1] != 32:
            raise ValueError(f"{folder}: stamps are {s.shape[-1]} px, the classifier takes 32")
        cls = np.asarray(t["class"], int)
        stamps.append(s)
        labels.append(cls - 1)
        fields.append(np.asarray(t["field"]) if "field" in t.colnames
                      else np.full(len(t), f"{meta['kind']}-{Path(folder).name}"))
    if images:
        s, cls, field = _real_stamps(images, catalog)
        stamps.append(s)
        labels.append(cls - 1)
        fields.append(np.full(len(cls), field))
    if not stamps:
        raise ValueError("no training data: give --bank or --image with --catalog")
    x = np.concatenate([np.asarray(s) for s in stamps]).astype(np.float32)
    y = np.concatenate(labels)
    bad = (y < 0) | (y > 3)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} sources have a class outside 1-4")
    return x, y, band_mask(x).astype(np.float32), np.concatenate(fields)


def _real_stamps(images, catalog):
    """Stamps of a user's mosaic at the classified rows of a LEGUS catalog."""
    from glue_starclf.io.catalogs import read_legus_tab
    from glue_starclf.core.cutouts import extract_stamps
    from glue_starclf.io.mosaic import open_mosaic
    if catalog is None:
        raise ValueError("--image needs --catalog with visual classes")
    mosaic = open_mosaic(images)
    cat = read_legus_tab(catalog)
    cat = cat[(cat["class"] >= 1) & (cat["class"] <= 4)]
    if len(cat) == 0:
        raise ValueError(f"{catalog}: no source has a visual class 1-4")
    stamps, _ = extract_stamps(mosaic, np.asarray(cat["x"]), np.asarray(cat["y"]), size=32)
    return np.nan_to_num(stamps), np.asarray(cat["class"], int), cat.meta["field"]


def split(fields, val_fields, val_fraction, rng):
    """Boolean validation mask: the named fields, else a random fraction."""
    if val_fields:
        names = set(val_fields)
        unknown = names - set(np.unique(fields))
        if unknown:
            raise ValueError(f"--val-fields {', '.join(sorted(unknown))} not in the training data")
        return np.isin(fields, list(names))
    return rng.random(len(fields)) < val_fraction


class _Stamps(torch.utils.data.Dataset):
    def __init__(self, x, y, mask, ci):
        self.x, self.y, self.mask, self.ci = x, y, mask, ci

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.mask[i], self.ci[i]


def run(args):
    from glue_starclf.core.checkpoints import save_checkpoint
    from glue_starclf.core.networks import StarClassifier, augment
    check_model_out(args.out, args.overwrite, resume=args.resume)
    # data
    rng = seed_everything(args.seed)
    x, y, mask, fields = labelled_stamps(args.bank, args.image, args.catalog)
    val = split(fields, [f for f in args.val_fields.split(",") if f], args.val_fraction, rng)
    require_validation(val, args.val_fraction, "sources")
    counts = np.bincount(y[~val], minlength=4)
    if (counts == 0).any():
        raise ValueError(f"the training data lack classes "
                         f"{', '.join(str(c + 1) for c in np.flatnonzero(counts == 0))}")
    drawn = None
    if args.drawn_weight != 1:
        if args.image:
            raise ValueError("--drawn-weight takes banks only")
        drawn = label_sources(args.bank)[~val] == 0
        if not drawn.any():
            raise ValueError("--drawn-weight: no bank has rows whose class was drawn "
                             "(make-bank --kind legus of a catalog with class-0 rows)")
    weights = class_balance(y[~val], drawn, args.drawn_weight)
    if args.stellar_ci and args.image:
        raise ValueError("--stellar-ci takes banks only")
    if not args.stellar_ci_jitter >= 0:
        raise ValueError(f"--stellar-ci-jitter {args.stellar_ci_jitter}: must be >= 0")
    ci = bank_stellar_ci(args.bank) if args.stellar_ci else np.full(len(y), np.nan, np.float32)
    if args.stellar_ci_balance:
        if not args.stellar_ci:
            raise ValueError("--stellar-ci-balance needs --stellar-ci")
        weights = weights * stellar_ci_balance(ci[~val], y[~val])
        if drawn is not None:       # the factors keep class totals only for equal weights
            weights = weights / np.bincount(y[~val], weights=weights, minlength=4)[y[~val]]
    train = _Stamps(x[~val], y[~val], mask[~val], ci[~val])
    # model
    kwargs = {"stellar_ci": True} if args.stellar_ci else {}
    if args.width is not None:
        kwargs["width"] = args.width
    if args.hidden is not None:
        kwargs["hidden"] = args.hidden
    model, kwargs, init = start_network(args.init, "classifier", "StarClassifier", StarClassifier,
                                        kwargs)
    gen = torch.Generator().manual_seed(args.seed)
    aug_rng = np.random.default_rng(args.seed)

    def step(net, batch):
        xb, yb, mb, cb = batch
        mb = band_dropout(mb, args.band_dropout, gen)
        inp = augment(classifier_inputs(xb.numpy(), mb.numpy()), aug_rng)
        if args.stellar_ci:
            cb = cb + torch.from_numpy(aug_rng.normal(0.0, args.stellar_ci_jitter, len(cb))
                                       .astype(np.float32))
        return torch.nn.functional.cross_entropy(
            net(inp, mb, cb if args.stellar_ci else None), yb.long())
    # loop
    out = Path(args.out)
    result = fit(model, train, step, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                 seed=args.seed, state_path=out.with_suffix(".state.pt"), resume=args.resume,
                 weights=weights, minutes=args.minutes,
                 on_epoch=lambda e, l: print(f"epoch {e}: loss {l:.4f}", flush=True),
                 rngs={"band_dropout": gen, "augment": aug_rng},
                 signature={"architecture": "StarClassifier", "kwargs": kwargs, "seed": args.seed,
                            "batch_size": args.batch_size, "band_dropout": args.band_dropout,
                            "lr": args.lr, "banks": [str(b) for b in args.bank],
                            "stellar_ci_jitter": args.stellar_ci_jitter if args.stellar_ci
                            else None,
                            "stellar_ci_balance": bool(args.stellar_ci_balance),
                            **({"drawn_weight": args.drawn_weight}
                               if args.drawn_weight != 1 else {}),
                            **({"init": init["sha256"]} if init else {})})
    if not is_main():
        return 0
    # eval
    logits = predict_logits(model, x[val], mask[val], ci[val] if args.stellar_ci else None)
    temp = fit_temperature(logits, y[val])
    probs = torch.softmax(torch.as_tensor(logits) / temp, dim=1).numpy()
    raw = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
    metrics = classification_metrics(probs, y[val])
    metrics.update(ece_before=expected_calibration_error(raw, y[val]),
                   ece_after=expected_calibration_error(probs, y[val]))
    card = {"family": "classifier", "architecture": "StarClassifier", "kwargs": kwargs,
            "bands": list(BANDS), "stamp_size": 32, "normalisation": "classifier-asinh-v1",
            "class_names": CLASS_NAMES, "temperature": temp, "seed": args.seed,
            "training": {"command": "python -m training " + " ".join(
                             getattr(args, "argv", sys.argv[1:])),
                         "banks": [str(b) for b in args.bank], "n_train": int((~val).sum()),
                         "n_val": int(val.sum()), "val_fields": args.val_fields,
                         "drawn_weight": args.drawn_weight,
                         "epochs": result["epochs"],
                         **({"init": init_record(init)} if init else {}),
                         "wall_time_s": round(result["seconds"], 1),
                         "date": time.strftime("%Y-%m-%d"), "machine": machine()},
            "metrics": {"validation": metrics}}
    path = save_checkpoint(model, out, card)
    print(f"accuracy {metrics['accuracy']:.3f}, binary {metrics['binary_accuracy']:.3f}, "
          f"recall {format_recall(metrics['recall'], sep=', ')}, "
          f"ECE {metrics['ece_before']:.3f} -> {metrics['ece_after']:.3f}; card {path}")
    return 0
