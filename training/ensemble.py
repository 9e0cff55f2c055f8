"""``ensemble``: train independently seeded members of one model family.

The story: for each seed, ``train-classifier`` or ``train-physical`` with
the same training options -> ``<folder>/<family>-s<seed>.safetensors`` and
its card -> a table of the members' validation metrics. Members whose
weights and card exist are kept, and a member interrupted mid-training
resumes from its per-epoch state, so an interrupted ensemble run is simply
run again. Each member's card records the exact ``train-...`` command that
made it.

Example::

    python -m training ensemble --family classifier --members 5 --out models \\
        -- --bank banks/legus-train --bank banks/classifier --minutes 10
"""

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run", "member_path"]

FAMILIES = ("classifier", "physical")
#: Options the ensemble sets itself for every member.
_RESERVED = ("--out", "--seed", "--resume", "--overwrite")


def add_arguments(p):
    p.add_argument("--family", choices=FAMILIES, required=True)
    p.add_argument("--members", type=int, default=5, help="number of members (default 5)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first member")
    p.add_argument("--out", required=True, help="models folder")
    p.add_argument("--overwrite", action="store_true",
                   help="let members be written into the bundled models folder")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="after --: options of train-classifier / train-physical")


def member_path(folder, family, seed):
    """Weights path of the member of ``family`` trained with ``seed``."""
    return Path(folder) / f"{family}-s{seed}.safetensors"


def run(args):
    from glue_starclf.core.checkpoints import load_card

    from .__main__ import main
    if args.members < 1:
        raise ValueError(f"--members {args.members} must be >= 1")
    extra = list(args.train_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    clash = [a for a in extra if a.split("=")[0] in _RESERVED]
    if clash:
        raise ValueError(f"{', '.join(clash)}: set by the ensemble for each member; remove it")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cards = []
    for seed in range(args.first_seed, args.first_seed + args.members):
        path = member_path(out, args.family, seed)
        if not (path.exists() and path.with_suffix(".json").exists()):
            argv = [f"train-{args.family}", *extra, "--out", str(path), "--seed", str(seed)]
            if path.with_suffix(".state.pt").exists():
                argv.append("--resume")
            if args.overwrite:
                argv.append("--overwrite")
            print(f"member seed {seed}: python -m training {' '.join(argv)}", flush=True)
            status = main(argv)
            if status:
                raise RuntimeError(f"member seed {seed} failed (exit {status}); run again to "
                                   "resume it")
            path.with_suffix(".state.pt").unlink(missing_ok=True)
        else:
            print(f"member seed {seed}: {path} exists, kept", flush=True)
        cards.append(load_card(path.with_suffix(".json")))
    print(summary(cards))
    return 0


def summary(cards):
    """Markdown table of the members' validation metrics and training times."""
    if cards[0]["family"] == "classifier":
        from glue_starclf.learn.classifier import format_recall
        head = "| member | accuracy | binary | recall 1-4 | ECE after T | minutes |"
        rows = []
        for c in cards:
            m = c["metrics"]["validation"]
            rows.append(f"| {Path(c['_path']).stem} | {m['accuracy']:.3f} | "
                        f"{m['binary_accuracy']:.3f} | "
                        f"{format_recall(m['recall'], sep=', ')} | "
                        f"{m['ece_after']:.3f} | {c['training']['wall_time_s'] / 60:.1f} |")
    else:
        head = ("| member | p95 log age | p95 log mass | p95 A_V | p95 log r_h | AUC | "
                "minutes |")
        rows = []
        for c in cards:
            m = c["metrics"]["validation"]["five_bands"]
            rows.append(f"| {Path(c['_path']).stem} | {m['p95_abs_err_log_age']:.2f} | "
                        f"{m['p95_abs_err_log_mass']:.2f} | {m['p95_abs_err_av']:.2f} | "
                        f"{m['p95_abs_err_log_r_h']:.2f} | {m['cb_auc']:.3f} | "
                        f"{c['training']['wall_time_s'] / 60:.1f} |")
    sep = "|" + "---|" * (head.count("|") - 1)
    return "\n".join([head, sep, *rows])
