"""``like-for-like``: the physical ensemble in 004's own setting, next to 004's bounds.

The story: a test bank in 004's setting (4.5 Mpc; log M 3.5-5.5; r_h
0.04-0.4"; A_V 0-3; all ages; F336W, F438W, F814W given, the others
missing; `glue_starclf.learn.setting004`) -> the ensemble's averaged
posteriors -> 95th percentile of |error| and median error per estimator and
the interval coverage -> a table next to 004's 0.9 / 0.4 / 1.4 / 0.2 ->
where the errors sit: the shipped estimators' errors per quarter of each
true value and of the visibility, and how often a log-mass error past 004's
bound comes with a log-age error of the same sign.

The bank is rendered in the engine's nominal conditions (every cluster's
EFF profile truncated at 50 r_h, the widest of the spec); ``--randomise``
renders it under the spec's domain randomisation instead (PSF, depth, sky,
noise, registration, zeropoints, background, EFF truncation 5-50 r_h), as
the randomised test banks are.

Example::

    python -m training like-for-like --n 2000 --seed 3 --json reports/like_for_like.json
    python -m training like-for-like --n 2000 --seed 3 --randomise --stdpsf-dir DIR \
        --json reports/like_for_like_randomised.json
"""

import json
import time
from pathlib import Path

__all__ = ["add_arguments", "run"]

_LABELS = {"log_age": "log age", "log_mass": "log mass", "av": "A_V", "log_r_h": "log r_h"}
_QUANTITIES = dict(_LABELS, visibility="visibility")


def add_arguments(p):
    p.add_argument("--models", default=None, help="models folder (default: the bundled models)")
    p.add_argument("--n", type=int, default=2000, help="stamps (default 2000)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--json", help="also write the measurements to this JSON file")
    p.add_argument("--randomise", action="store_true",
                   help="render the bank under the spec's domain randomisation (as make-bank "
                        "--randomise)")
    p.add_argument("--stdpsf-dir", help="with --randomise: folder of the PSFSTD_WFC3UV_<band>"
                                        ".fits library (empirical PSFs among the PSF families)")


def run(args):
    from glue_starclf.core.networks import DEFAULT_ESTIMATOR, ESTIMATORS
    from glue_starclf.core.predict import load_ensemble
    from glue_starclf.learn.setting004 import (P95_004, setting004_errors, setting004_mask,
                                               setting004_ranges)
    from glue_starclf.sim.bank import physical_bank
    if args.n < 10:
        raise ValueError(f"--n {args.n}: need at least 10 stamps")
    if args.stdpsf_dir and not args.randomise:
        raise ValueError("--stdpsf-dir is used only with --randomise")
    if args.stdpsf_dir:
        from glue_starclf.sim.effpsf import check_stdpsf_library
        check_stdpsf_library(args.stdpsf_dir)
    t0 = time.perf_counter()
    ens = load_ensemble("physical", args.models)
    stamps, truth = physical_bank(args.n, seed=args.seed, randomise=args.randomise,
                                  stdpsf_dir=args.stdpsf_dir, **setting004_ranges())
    mask = setting004_mask(len(stamps))
    res = setting004_errors(ens.members, stamps, truth, mask, tilt=ens.posterior_tilt)
    rendering = "domain-randomised" if args.randomise else "nominal conditions"
    print(f"004's setting: {res['n_clusters']} clusters (seed {args.seed}, {rendering}); 95th "
          "percentile of |error| / median error")
    print("| estimator | " + " | ".join(_LABELS.values()) + " |")
    print("| --- |" + " --- |" * len(_LABELS))
    for est in ESTIMATORS:
        shipped = [_LABELS[p] for p in _LABELS if DEFAULT_ESTIMATOR.get(p, "mean") == est]
        mark = f" (shipped for {', '.join(shipped)})" if shipped else ""
        print(f"| {est}{mark} | " + " | ".join(
            f"{res['estimators'][est][p]['p95_abs']:.3f} / {res['estimators'][est][p]['median']:+.3f}"
            for p in _LABELS) + " |")
    print("| 004 (its own mocks) | " + " | ".join(f"{P95_004[p]}" for p in _LABELS) + " |")
    print("coverage of the 16th-84th percentiles (uncalibrated -> with the cards' temperatures): "
          + ", ".join(f"{_LABELS[p]} {res['coverage'][p]['raw']:.3f} -> "
                      f"{res['coverage'][p]['calibrated']:.3f}" for p in _LABELS))
    print("where the errors sit, shipped estimators: 95th percentile of |error| / median error "
          "per quarter of the true value")
    print("| true value, quarter | n | " + " | ".join(_LABELS.values()) + " |")
    print("| --- | --- |" + " --- |" * len(_LABELS))
    for q, rows in res["by_true"].items():
        for row in rows:
            print(f"| {_QUANTITIES[q]} {row['lo']:.2f} – {row['hi']:.2f} | {row['n']} | " + " | ".join(
                f"{row[p]['p95_abs']:.3f} / {row[p]['median']:+.3f}" if row[p] else "–"
                for p in _LABELS) + " |")
    deg = res["mass_age_same_sign"]
    if deg["n"]:
        print(f"log-mass errors beyond {deg['threshold']}: {deg['n']} clusters, "
              f"{deg['fraction']:.2f} of them with a log-age error of the same sign")
    res.update(command="python -m training " + " ".join(args.argv), seed=args.seed, n=args.n,
               randomise=bool(args.randomise), stdpsf=bool(args.stdpsf_dir),
               p95_004=P95_004, seconds=round(time.perf_counter() - t0, 1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0
