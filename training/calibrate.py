"""``calibrate-intervals``: recalibrate the posteriors, choose the point estimator, calibrate the intervals.

The story: the physical ensemble's averaged posteriors on validation banks
and test banks (other seeds of ``make-bank --kind physical``) -> the
posterior tilt (`glue_starclf.core.posterior_tilt`) fitted by maximum
likelihood on the validation banks, and the likelihood and median errors by
distance third before and after on the test banks -> per parameter, the 95th
percentile of |error| and the median error of 004's peak estimator, the
marginal median and the marginal mean of the tilted posteriors on each bank
-> one temperature per parameter's marginal fitted on the validation banks
so its 16th-84th percentile intervals cover 0.68 -> the coverage before and
after on the test banks. ``--write`` stores the tilt (``posterior_tilt``),
the temperatures (``interval_temperature``) and the measurements
(``interval_calibration``) in every physical card; the weights are not
touched.

Example::

    python -m training calibrate-intervals --models models \\
        --val-bank banks/physical-val --val-bank banks/physical-val-rand \\
        --test-bank banks/physical-test --test-bank banks/physical-test-rand --write
"""

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]

_LABELS = {"log_age": "log age", "log_mass": "log mass", "av": "A_V", "log_r_h": "log r_h"}


def add_arguments(p):
    p.add_argument("--models", default=None, help="models folder (default: the bundled models)")
    p.add_argument("--val-bank", required=True, action="append",
                   help="physical bank the tilt and temperatures are fitted on (repeatable: "
                        "fitted on all together)")
    p.add_argument("--test-bank", required=True, action="append",
                   help="physical bank they are checked on (repeatable)")
    p.add_argument("--target", type=float, default=0.68, help="coverage wanted (default 0.68)")
    p.add_argument("--write", action="store_true",
                   help="store the temperatures and measurements in the physical cards")
    p.add_argument("--json", help="also write the measurements to this JSON file")


def _posteriors(ens, folder):
    """The ensemble's untilted averaged posteriors on a physical bank, and its truth."""
    from glue_starclf.learn.banks import open_bank, stamp_stellar_ci
    from glue_starclf.learn.intervals import bank_posteriors
    stamps, truth, meta = open_bank(folder)
    if meta.get("kind") != "physical":
        raise ValueError(f"{folder}: a {meta.get('kind')} bank, need a physical one")
    ci = stamp_stellar_ci(truth, folder) if ens.needs_stellar_ci else None
    return bank_posteriors(ens.members, stamps, truth["distance_mpc"], stellar_ci=ci), truth


def _median_errors_by_third(marginals, truth):
    """Median error of log mass and log r_h (the shipped estimators), overall and per
    distance third (`training.evaluate.median_bias`)."""
    from glue_starclf.core.networks import _marginal_estimate, estimator_for
    from glue_starclf.learn.intervals import PARAMETERS
    from .evaluate import median_bias
    cl = np.asarray(truth["p_cb"]) > 0.5
    names = ("log_mass", "log_r_h")
    values = {name: (marginals[name][1], _marginal_estimate(
        marginals[name][0], PARAMETERS[name], estimator_for(name))) for name in names}
    bias = median_bias(values, np.asarray(truth["distance_mpc"], float)[cl])
    return {name: [bias["overall"][name]] + [b[name] for b in bias["by_distance"]]
            for name in names}


def _pool(marginals):
    """`cluster_marginals` outputs of several banks as one."""
    return {name: tuple(np.concatenate([m[name][k] for m in marginals]) for k in range(3))
            for name in marginals[0]}


def _update_card(path, fields):
    from glue_starclf.io.writers import atomic_write
    card = json.loads(Path(path).read_text())
    card.update(fields)
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite=True)


def run(args):
    from glue_starclf.core.networks import DEFAULT_ESTIMATOR, ESTIMATORS
    from glue_starclf.core.predict import load_ensemble
    from glue_starclf.core.posterior_tilt import check_tilt, tilt_posteriors
    from glue_starclf.learn.intervals import (PARAMETERS, cluster_marginals, estimator_errors,
                                              fit_interval_temperatures, fit_posterior_tilt,
                                              interval_coverage, tilt_nll)
    if not 0 < args.target < 1:
        raise ValueError(f"--target {args.target}: must lie in (0, 1)")
    t0 = time.perf_counter()
    # data -> untilted posteriors
    ens = load_ensemble("physical", args.models)
    banks = {"validation": [_posteriors(ens, b) for b in args.val_bank],
             "test": [_posteriors(ens, b) for b in args.test_bank]}
    names = {"validation": [str(b) for b in args.val_bank], "test": [str(b) for b in args.test_bank]}
    # the posterior tilt, fitted on validation
    tilt = fit_posterior_tilt(banks["validation"])
    checked = check_tilt(tilt)
    nll = {role: [{"before": tilt_nll(post, truth), "after": tilt_nll(post, truth, checked)}
                  for post, truth in banks[role]] for role in banks}
    marg = {role: [cluster_marginals(tilt_posteriors(post, truth["distance_mpc"], checked), truth)
                   for post, truth in banks[role]] for role in banks}
    raw = {role: [cluster_marginals(post, truth) for post, truth in banks[role]] for role in banks}
    bias = {role: [{"before": _median_errors_by_third(r, truth),
                    "after": _median_errors_by_third(m, truth)}
                   for r, m, (_, truth) in zip(raw[role], marg[role], banks[role])]
            for role in banks}
    pooled = {role: _pool(marg[role]) for role in banks}
    # estimators of the tilted posteriors
    errors = {role: [estimator_errors(m) for m in marg[role]] for role in banks}
    # interval temperatures on validation, checked on each test bank
    temps = fit_interval_temperatures(pooled["validation"], args.target)
    coverage = {role: [{name: {"before": interval_coverage(m, PARAMETERS[name], true),
                               "after": interval_coverage(m, PARAMETERS[name], true, temps[name])}
                        for name, (m, true, _) in mg.items()} for mg in marg[role]]
                for role in banks}
    n = {role: int(len(pooled[role]["log_age"][1])) for role in banks}
    print(f"clusters: validation {n['validation']}, test {n['test']}")
    print("posterior tilt (c0, c1, c2 of the strength in u = (d - 11.5 Mpc) / 8.5 Mpc): "
          + "; ".join(f"{_LABELS[k]} " + ", ".join(f"{v:+.3f}" for v in c)
                      for k, c in tilt.items()))
    for role in banks:
        for bank, v, b in zip(names[role], nll[role], bias[role]):
            print(f"{role} {bank}: NLL of the true cell {v['before']['grid']:.4f} -> "
                  f"{v['after']['grid']:.4f}, of the true r_h bin {v['before']['log_r_h']:.4f} -> "
                  f"{v['after']['log_r_h']:.4f}")
            for name in ("log_mass", "log_r_h"):
                print(f"  median error of {_LABELS[name]}, all / 3-8.7 / 8.7-14.3 / 14.3-20 Mpc: "
                      + " / ".join(f"{x:+.3f}" for x in b["before"][name]) + " -> "
                      + " / ".join(f"{x:+.3f}" for x in b["after"][name]))
    print("| bank | estimator | " + " | ".join(
        f"{_LABELS[p]} p95 / median err" for p in PARAMETERS) + " |")
    print("| --- | --- |" + " --- |" * len(PARAMETERS))
    for role in banks:
        for bank, err in zip(names[role], errors[role]):
            for est in ESTIMATORS:
                cells = [f"{err[est][p]['p95_abs']:.3f} / {err[est][p]['median']:+.3f}"
                         for p in PARAMETERS]
                print(f"| {role} {bank} | {est} | " + " | ".join(cells) + " |")
    print("temperatures: " + ", ".join(f"{_LABELS[p]} {temps[p]:.3f}" for p in PARAMETERS))
    for role in banks:
        for bank, cov in zip(names[role], coverage[role]):
            print(f"coverage of the 16th-84th percentiles, {role} {bank} (before -> after): "
                  + ", ".join(f"{_LABELS[p]} {cov[p]['before']:.3f} -> {cov[p]['after']:.3f}"
                              for p in PARAMETERS))
    result = {"command": "python -m training " + " ".join(args.argv),
              "val_banks": names["validation"], "test_banks": names["test"],
              "n_clusters": n, "target": args.target, "point_estimator": dict(DEFAULT_ESTIMATOR),
              "posterior_tilt": tilt, "nll": nll, "median_error_by_third": bias,
              "estimator_errors": errors, "coverage": coverage,
              "interval_temperature": temps, "seconds": round(time.perf_counter() - t0, 1),
              "date": time.strftime("%Y-%m-%d")}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.write:
        info = {k: v for k, v in result.items()
                if k not in ("interval_temperature", "posterior_tilt")}
        for _, card in ens.members:
            _update_card(card["_path"], {"posterior_tilt": tilt, "interval_temperature": temps,
                                         "interval_calibration": info})
        print(f"wrote posterior_tilt and interval_temperature into {len(ens.members)} "
              "physical cards")
    return 0
