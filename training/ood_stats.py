"""``ood-stats``: the classifier's out-of-distribution statistics for a models folder.

The story: the classifier members of ``--models`` -> their pooled
features on the ``--fit-bank`` stamps (like the training data) -> per-member
mean and shrunk covariance -> scores of the ``--val-bank`` stamps -> the
threshold at ``--percentile`` of those -> ``classifier.ood.safetensors`` in
the models folder (`glue_starclf.core.ood`), which `predict` uses to flag ``ood``.
"""

import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]


def add_arguments(p):
    p.add_argument("--models", help="models folder (default: the bundled models)")
    p.add_argument("--fit-bank", action="append", required=True,
                   help="bank of stamps like the training data (repeatable)")
    p.add_argument("--val-bank", action="append", required=True,
                   help="validation bank the threshold is set on (repeatable)")
    p.add_argument("--percentile", type=float, default=99.0,
                   help="threshold: this percentile of the validation scores (default 99)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing statistics (needed in the bundled models folder)")


def _stamps(banks, size):
    from glue_starclf.core.networks import band_mask
    from glue_starclf.learn.banks import open_bank
    xs = []
    for folder in banks:
        s, _, meta = open_bank(folder)
        if s.shape[-1] < size:
            raise ValueError(f"{folder}: {s.shape[-1]} px stamps, the classifier takes {size}")
        o = (s.shape[-1] - size) // 2
        xs.append(np.asarray(s[:, :, o:o + size, o:o + size], np.float32))
    x = np.concatenate(xs)
    mask = band_mask(x).astype(np.float32)
    return np.nan_to_num(x), mask


def run(args):
    from glue_starclf.core.checkpoints import bundled_models_dir
    from glue_starclf.core.ood import (OOD_FILE, OODStats, fit_statistics, member_features,
                                  save_statistics, scores)
    from glue_starclf.core.predict import load_ensemble
    from glue_starclf.io.writers import atomic_write

    from .evaluate import classifier_stellar_ci
    if not 0 < args.percentile < 100:
        raise ValueError(f"--percentile {args.percentile:g} must lie between 0 and 100")
    folder = Path(args.models) if args.models else bundled_models_dir()
    out = folder / OOD_FILE
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists (use --overwrite to replace it)")
    if folder.resolve() == bundled_models_dir().resolve() and not args.overwrite:
        raise ValueError(f"{folder} is the bundled models folder: pass --overwrite to write "
                         f"{OOD_FILE} there")
    t0 = time.perf_counter()
    ensemble = load_ensemble("classifier", folder)
    x, mask = _stamps(args.fit_bank, ensemble.stamp_size)
    ci = classifier_stellar_ci(ensemble, args.fit_bank)
    fits_ = [fit_statistics(f) for f in member_features(ensemble, x, mask, stellar_ci=ci)]
    mean = np.stack([m for m, _ in fits_])
    precision = np.stack([p for _, p in fits_])
    fit_scores = scores(member_features(ensemble, x, mask, stellar_ci=ci), mean, precision)
    xv, mv = _stamps(args.val_bank, ensemble.stamp_size)
    val = scores(member_features(ensemble, xv, mv,
                                 stellar_ci=classifier_stellar_ci(ensemble, args.val_bank)),
                 mean, precision)
    threshold = float(np.percentile(val, args.percentile))
    meta = {"percentile": args.percentile, "fit_banks": [str(b) for b in args.fit_bank],
            "val_banks": [str(b) for b in args.val_bank], "n_fit": int(len(x)),
            "n_val": int(len(xv)), "members": ensemble.names,
            "fit_median_score": float(np.median(fit_scores)),
            "val_median_score": float(np.median(val)),
            "command": "python -m training " + " ".join(getattr(args, "argv", [])),
            "date": time.strftime("%Y-%m-%d")}
    stats = OODStats(mean, precision, threshold, ensemble.hashes, meta)
    atomic_write(out, lambda tmp: save_statistics(tmp, stats), overwrite=args.overwrite)
    print(f"{len(x)} fit and {len(xv)} validation stamps; median score {np.median(fit_scores):.2f} "
          f"(fit), {np.median(val):.2f} (validation); threshold {threshold:.2f} at the "
          f"{args.percentile:g}th percentile; wrote {out} in {time.perf_counter() - t0:.0f} s")
    return 0
