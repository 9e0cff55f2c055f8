"""``bench-finetune``: time `glue_starclf.learn.finetune.finetune` on 300 labels, as glue runs it.

A mock field (1024 x 1024, ``--n`` sources at ``--distance-mpc``, its own
galaxy background) is rendered, every source is labelled with its true
class (the "expert"), the stamps are cut as the glue action cuts them, and
the fine-tuning runs with the glue dialog's defaults (5 folds, 8 epochs,
no learning curve) on this machine's CPU threads. It prints the wall time
of the fine-tuning alone (rendering and cutting excluded) and the k-fold
accuracy before and after.

Without ``--from`` it trains a starting member first (a 400-stamp bank and
one epoch, as the tests' tiny model; not timed). The time depends on the
architecture and the number of labels, not on the weights.
"""

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from glue_starclf.learn.loop import positive_int


def add_arguments(p):
    p.add_argument("--from", dest="model",
                   help="classifier member to start from (default: a tiny one trained first)")
    p.add_argument("--n", type=positive_int, default=300, help="labelled sources")
    p.add_argument("--distance-mpc", type=float, default=18.0)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=positive_int, default=8)
    p.add_argument("--curve-folds", type=int, default=0)
    p.add_argument("--seed", type=int, default=21, help="seed of the mock field")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")


def _tiny_member(folder):
    """A one-epoch classifier member on a 400-stamp bank (the tests' tiny model)."""
    import contextlib
    import io

    from .__main__ import main
    folder = Path(folder)
    out = folder / "classifier-tiny.safetensors"
    for argv in (["make-bank", "--kind", "classifier", "--n", "400", "--seed", "0",
                  "--out", str(folder / "bank")],
                 ["train-classifier", "--bank", str(folder / "bank"), "--out", str(out),
                  "--seed", "0", "--epochs", "1"]):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if main(argv) != 0:
                raise RuntimeError(f"python -m training {' '.join(argv)} failed")
    return out


def run(args):
    import torch

    from glue_starclf.core.checkpoints import load_card
    from glue_starclf.io.mosaic import open_mosaic
    from glue_starclf.sim.mosaic import random_field, write_mosaic

    from glue_starclf.learn.finetune import cut_labelled, finetune
    with tempfile.TemporaryDirectory(prefix="starclf-bench-finetune-") as tmp:
        model = args.model
        if model is None:
            print("training a tiny starting member (not timed)...", flush=True)
            model = _tiny_member(tmp)
        mock = random_field(seed=args.seed, shape=(1024, 1024), distance_mpc=args.distance_mpc,
                            n_sources=args.n)
        paths = write_mosaic(mock, Path(tmp) / "field", "bench")
        mosaic = open_mosaic([f"{b}={p}" for b, p in paths.items() if b != "truth"])
        stamps, mask, inside = cut_labelled(mosaic, mock.truth["x"], mock.truth["y"],
                                            load_card(model))
        labels = np.asarray(mock.truth["class"], int)[inside]
        t0 = time.perf_counter()
        result = finetune(model, stamps, labels, mask, folds=args.folds, epochs=args.epochs,
                          curve_folds=args.curve_folds)
        seconds = time.perf_counter() - t0
    cv = result.report["cv"]
    out = {"n_labels": int(len(labels)), "distance_mpc": args.distance_mpc,
           "folds": cv["folds"], "epochs": args.epochs, "curve_folds": args.curve_folds,
           "trainings": result.report["trainings"], "seconds": round(seconds, 1),
           "accuracy_before": round(cv["before"]["accuracy"]["mean"], 3),
           "accuracy_after": round(cv["after"]["accuracy"]["mean"], 3),
           "torch_threads": torch.get_num_threads()}
    print(f"fine-tuning on {out['n_labels']} labels ({out['folds']} folds, {out['epochs']} "
          f"epochs, {out['trainings']} trainings, {out['torch_threads']} threads): "
          f"{out['seconds']:.1f} s; {out['folds']}-fold accuracy {out['accuracy_before']:.3f} "
          f"-> {out['accuracy_after']:.3f}")
    if args.json:
        print(json.dumps(out))
    return 0
