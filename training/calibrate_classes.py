"""``calibrate-classes``: the classifier ensemble's temperature and class prior.

The story: the classifier members of ``--models`` -> their averaged
probabilities on the labelled ``--val-bank`` stamps (renders of training
catalogs; with ``--human-classes`` only the rows LEGUS humans classified,
whose class mix the prior is for) -> the temperature and class log-prior of
least negative log-likelihood (`glue_starclf.core.class_prior`) -> scores
before and after on the validation and any ``--test-bank`` -> with
``--write``, ``classifier.classes.json`` in the models folder, which
`predict` applies.
"""

import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]


def add_arguments(p):
    p.add_argument("--models", help="models folder (default: the bundled models)")
    p.add_argument("--val-bank", action="append", required=True,
                   help="labelled bank the prior is fitted on (repeatable)")
    p.add_argument("--test-bank", action="append", default=[],
                   help="labelled bank scored before and after (repeatable)")
    p.add_argument("--human-classes", action="store_true",
                   help="fit on the validation rows with a LEGUS human class only (not the "
                        "rows nobody inspected, whose classes are drawn)")
    p.add_argument("--write", action="store_true",
                   help="write classifier.classes.json into the models folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing file (needed in the bundled models folder)")


def _scores(probs, y):
    from glue_starclf.learn.classifier import classification_metrics, expected_calibration_error
    m = classification_metrics(probs, y)
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))
    return {"accuracy": m["accuracy"], "binary_accuracy": m["binary_accuracy"],
            "recall": m["recall"], "ece": expected_calibration_error(probs, y), "nll": nll,
            "n": int(len(y))}


def _line(name, s):
    from glue_starclf.learn.classifier import format_recall
    rec = format_recall(s["recall"])
    return (f"  {name}: 4-class {s['accuracy']:.3f}, binary {s['binary_accuracy']:.3f}, "
            f"recall {rec}, ECE {s['ece']:.4f}, NLL {s['nll']:.3f}")


def run(args):
    from glue_starclf.core.checkpoints import bundled_models_dir
    from glue_starclf.core.class_prior import (CLASS_PRIOR_FILE, ClassPrior, fit_class_prior,
                                               save_class_prior)
    from glue_starclf.core.predict import load_ensemble
    from glue_starclf.io.writers import atomic_write

    from glue_starclf.learn.banks import label_sources

    from .evaluate import classifier_stellar_ci, ensemble_probs
    from .train_classifier import labelled_stamps
    folder = Path(args.models) if args.models else bundled_models_dir()
    out = folder / CLASS_PRIOR_FILE
    if args.write and out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists (use --overwrite to replace it)")
    t0 = time.perf_counter()
    # fitted on the class-balanced probabilities
    ensemble = load_ensemble("classifier", folder, class_prior=False)
    x, y, mask, _ = labelled_stamps(args.val_bank)
    ci = classifier_stellar_ci(ensemble, args.val_bank)
    if args.human_classes:
        keep = label_sources(args.val_bank) == 1
        if not keep.any():
            raise ValueError(f"{', '.join(map(str, args.val_bank))}: no rows with a LEGUS "
                             "human class (--human-classes needs legus banks)")
        x, y, mask = x[keep], y[keep], mask[keep]
        ci = None if ci is None else ci[keep]
    probs = ensemble_probs(ensemble, x, mask, ci)
    temperature, log_prior = fit_class_prior(probs, y)
    prior = ClassPrior(temperature, log_prior, ensemble.hashes)
    report = {"validation": {"before": _scores(probs, y),
                             "after": _scores(prior.apply(probs), y)}}
    for bank in args.test_bank:
        xt, yt, mt, _ = labelled_stamps([bank])
        pt = ensemble_probs(ensemble, xt, mt, classifier_stellar_ci(ensemble, [bank]))
        report[str(bank)] = {"before": _scores(pt, yt), "after": _scores(prior.apply(pt), yt)}
    print(f"temperature {temperature:.3f}, log prior "
          + " / ".join(f"{b:+.3f}" for b in log_prior)
          + f" (classes 1-4), from {len(y)} stamps of {', '.join(map(str, args.val_bank))}")
    for name, r in report.items():
        print(name)
        print(_line("class-balanced", r["before"]))
        print(_line("with the prior", r["after"]))
    if args.write:
        prior.meta = {"val_banks": [str(b) for b in args.val_bank],
                      "human_classes_only": bool(args.human_classes),
                      "class_counts": np.bincount(y, minlength=len(log_prior)).tolist(),
                      "members": ensemble.names, "scores": report,
                      "command": "python -m training " + " ".join(getattr(args, "argv", [])),
                      "date": time.strftime("%Y-%m-%d"),
                      "seconds": round(time.perf_counter() - t0, 1)}
        atomic_write(out, lambda tmp: save_class_prior(tmp, prior), overwrite=args.overwrite)
        print(f"wrote {out}")
    return 0
