"""``calibrate-intervals``: choose the point estimator and calibrate the intervals.

The story: the physical ensemble's averaged posteriors on a validation bank
and a test bank (two seeds of ``make-bank --kind physical``) -> per
parameter, the 95th percentile of |error| and the median error of 004's peak
estimator, the marginal median and the marginal mean on each bank -> one
temperature per parameter's marginal fitted on the validation bank so its
16th-84th percentile intervals cover 0.68 -> the coverage before and after
on the test bank. ``--write`` stores the temperatures (``interval_temperature``)
and the measurements (``interval_calibration``) in every physical card;
the weights are not touched.

Example::

    python -m training calibrate-intervals --models models \\
        --val-bank banks/physical-val --test-bank banks/physical-test --write
"""

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]

_LABELS = {"log_age": "log age", "log_mass": "log mass", "av": "A_V", "log_r_h": "log r_h"}


def add_arguments(p):
    p.add_argument("--models", default=None, help="models folder (default: the bundled models)")
    p.add_argument("--val-bank", required=True, help="physical bank the temperatures are fitted on")
    p.add_argument("--test-bank", required=True, help="physical bank they are checked on")
    p.add_argument("--target", type=float, default=0.68, help="coverage wanted (default 0.68)")
    p.add_argument("--write", action="store_true",
                   help="store the temperatures and measurements in the physical cards")
    p.add_argument("--json", help="also write the measurements to this JSON file")


def _marginals(ens, folder):
    from glue_starclf.learn.banks import open_bank
    from glue_starclf.learn.intervals import bank_posteriors, cluster_marginals
    stamps, truth, meta = open_bank(folder)
    if meta.get("kind") != "physical":
        raise ValueError(f"{folder}: a {meta.get('kind')} bank, need a physical one")
    return cluster_marginals(bank_posteriors(ens.members, stamps, truth["distance_mpc"]), truth)


def _update_card(path, fields):
    from glue_starclf.io.writers import atomic_write
    card = json.loads(Path(path).read_text())
    card.update(fields)
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite=True)


def run(args):
    from glue_starclf.core.networks import DEFAULT_ESTIMATOR, ESTIMATORS
    from glue_starclf.core.predict import load_ensemble
    from glue_starclf.learn.intervals import (PARAMETERS, estimator_errors,
                                              fit_interval_temperatures, interval_coverage)
    if not 0 < args.target < 1:
        raise ValueError(f"--target {args.target}: must lie in (0, 1)")
    t0 = time.perf_counter()
    # data -> posteriors
    ens = load_ensemble("physical", args.models)
    val, test = _marginals(ens, args.val_bank), _marginals(ens, args.test_bank)
    # estimators
    errors = {"validation": estimator_errors(val), "test": estimator_errors(test)}
    # calibration on validation, checked on test
    temps = fit_interval_temperatures(val, args.target)
    coverage = {bank: {name: {"before": interval_coverage(m, PARAMETERS[name], true),
                              "after": interval_coverage(m, PARAMETERS[name], true, temps[name])}
                       for name, (m, true, _) in marg.items()}
                for bank, marg in (("validation", val), ("test", test))}
    n = {"validation": len(val["log_age"][1]), "test": len(test["log_age"][1])}
    print(f"clusters: validation {n['validation']}, test {n['test']}")
    print("| bank | estimator | " + " | ".join(
        f"{_LABELS[p]} p95 / median err" for p in PARAMETERS) + " |")
    print("| --- | --- |" + " --- |" * len(PARAMETERS))
    for bank in ("validation", "test"):
        for est in ESTIMATORS:
            cells = [f"{errors[bank][est][p]['p95_abs']:.3f} / {errors[bank][est][p]['median']:+.3f}"
                     for p in PARAMETERS]
            print(f"| {bank} | {est} | " + " | ".join(cells) + " |")
    print("temperatures: " + ", ".join(f"{_LABELS[p]} {temps[p]:.3f}" for p in PARAMETERS))
    for bank in ("validation", "test"):
        print(f"coverage of the 16th-84th percentiles, {bank} (before -> after): " + ", ".join(
            f"{_LABELS[p]} {coverage[bank][p]['before']:.3f} -> {coverage[bank][p]['after']:.3f}"
            for p in PARAMETERS))
    result = {"command": "python -m training " + " ".join(args.argv),
              "val_bank": str(args.val_bank), "test_bank": str(args.test_bank),
              "n_clusters": n, "target": args.target, "point_estimator": DEFAULT_ESTIMATOR,
              "estimator_errors": errors, "coverage": coverage,
              "interval_temperature": temps, "seconds": round(time.perf_counter() - t0, 1),
              "date": time.strftime("%Y-%m-%d")}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.write:
        info = {k: v for k, v in result.items() if k != "interval_temperature"}
        for _, card in ens.members:
            _update_card(card["_path"], {"interval_temperature": temps,
                                         "interval_calibration": info})
        print(f"wrote interval_temperature into {len(ens.members)} physical cards")
    return 0
