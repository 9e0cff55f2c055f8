"""``evaluate``: Markdown + PNG report of a classifier ensemble on a labelled bank.

The story: load the ensemble's cards -> the bank's stamps (a LEGUS-anchored
bank gives per-field results) -> calibrated ensemble probabilities -> the
report: confusion matrices (counts and row-normalised, 4-class and binary),
accuracy and per-class recall against the human-agreement baselines,
precision-recall curves, reliability diagram and expected calibration error
before and after temperature scaling, the band-ablation table (each band
zeroed, 000 §4.2), accuracy per field, and the entropy distribution
(000 Fig. 5).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from glue_starclf.bands import BANDS

from .train_classifier import (classification_metrics, expected_calibration_error,
                               labelled_stamps)

__all__ = ["add_arguments", "run", "HUMAN_AGREEMENT"]

#: Per-class human agreement of Wei et al. 2020 (000 §2.1) and the 4-class /
#: binary human-to-mode agreement of LEGUS (001 §2.1).
HUMAN_AGREEMENT = {"per_class_000": [0.66, 0.37, 0.40, 0.61],
                   "four_class_001": 0.750, "binary_001": 0.872}


def add_arguments(p):
    p.add_argument("--models", required=True, help="folder of the classifier cards")
    p.add_argument("--bank", action="append", required=True, help="labelled bank (repeatable)")
    p.add_argument("--out", required=True, help="report folder (report.md + PNGs)")


def _probs(members, x, mask, temperature=True, batch=2048):
    from glue_starclf.networks import normalise_classifier
    out = []
    with torch.inference_mode():
        for model, card in members:
            t = float(card.get("temperature", 1.0)) if temperature else 1.0
            p = []
            for i in range(0, len(x), batch):
                xb = torch.from_numpy(normalise_classifier(np.asarray(x[i:i + batch]),
                                                           mask[i:i + batch]))
                p.append(torch.softmax(model(xb, torch.from_numpy(mask[i:i + batch])) / t, 1))
            out.append(torch.cat(p).numpy())
    return np.stack(out)


def _plots(folder, probs, y, conf, raw):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(14, 4))
    ax = fig.subplots(1, 4)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    ax[0].imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(4):
        for j in range(4):
            ax[0].text(j, i, f"{conf[i, j]}\n{norm[i, j]:.2f}", ha="center", va="center",
                       fontsize=7)
    ax[0].set(xticks=range(4), yticks=range(4), xticklabels=[1, 2, 3, 4],
              yticklabels=[1, 2, 3, 4], xlabel="predicted", ylabel="true", title="confusion")
    for k in range(4):
        score, pos = probs[:, k], y == k
        order = np.argsort(-score)
        tp = np.cumsum(pos[order])
        prec = tp / np.arange(1, len(order) + 1)
        rec = tp / max(pos.sum(), 1)
        ax[1].plot(rec, prec, label=f"class {k + 1}")
    ax[1].set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    ax[1].legend(fontsize=7)
    edges = np.linspace(0, 1, 11)
    for p, name in ((raw, "before"), (probs, "after")):
        c, ok = p.max(axis=1), p.argmax(axis=1) == y
        mids, accs = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (c > lo) & (c <= hi)
            if m.sum() >= 5:
                mids.append(c[m].mean())
                accs.append(ok[m].mean())
        ax[2].plot(mids, accs, "o-", label=f"{name} scaling")
    ax[2].plot([0, 1], [0, 1], "k:")
    ax[2].set(xlabel="confidence", ylabel="accuracy", title="reliability")
    ax[2].legend(fontsize=7)
    ent = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(axis=1)
    ok = probs.argmax(axis=1) == y
    ax[3].hist([ent[ok], ent[~ok]], bins=30, range=(0, np.log(4)), label=["correct", "wrong"],
               histtype="step")
    ax[3].set(xlabel="entropy [nat]", title="entropy (000 Fig. 5)")
    ax[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(folder) / "classifier_report.png", dpi=110)


def run(args):
    from glue_starclf.predict import load_ensemble
    t0 = time.perf_counter()
    ens = load_ensemble("classifier", args.models)
    x, y, mask, fields = labelled_stamps(args.bank)
    raw = _probs(ens.members, x, mask, temperature=False).mean(axis=0)
    probs = _probs(ens.members, x, mask).mean(axis=0)
    m = classification_metrics(probs, y)
    m["ece_before"] = expected_calibration_error(raw, y)
    m["ece_after"] = expected_calibration_error(probs, y)
    ablation = {}
    for j, band in enumerate(BANDS):
        mk = mask.copy()
        mk[:, j] = 0
        xz = np.array(x)
        xz[:, j] = 0
        ablation[band] = classification_metrics(_probs(ens.members, xz, mk).mean(axis=0), y)["accuracy"]
    per_field = {}
    for f in np.unique(fields):
        sel = fields == f
        per_field[str(f)] = classification_metrics(probs[sel], y[sel])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _plots(out, probs, y, np.array(m["confusion"]), raw)
    lines = ["# Classifier ensemble report", "",
             f"Models: {', '.join(ens.names)}  ",
             f"Banks: {', '.join(args.bank)} ({len(y)} sources)  ",
             f"Command: `python -m training {' '.join(sys.argv[1:])}`  ",
             f"Run time: {time.perf_counter() - t0:.0f} s", "",
             "| metric | ensemble | human agreement |", "| --- | --- | --- |",
             f"| 4-class accuracy | {m['accuracy']:.3f} | {HUMAN_AGREEMENT['four_class_001']:.3f} (001, to mode) |",
             f"| binary accuracy | {m['binary_accuracy']:.3f} | {HUMAN_AGREEMENT['binary_001']:.3f} (001) |"]
    for k in range(4):
        lines.append(f"| recall class {k + 1} | {m['recall'][k]:.3f} | "
                     f"{HUMAN_AGREEMENT['per_class_000'][k]:.2f} (000) |")
    lines += [f"| ECE before / after temperature | {m['ece_before']:.3f} / {m['ece_after']:.3f} | |",
              "", "## Band ablation (band zeroed, 000 §4.2)", "", "| band zeroed | accuracy |",
              "| --- | --- |"] + [f"| {b} | {a:.3f} |" for b, a in ablation.items()]
    lines += ["", "## Per field", "", "| field | n | accuracy | binary |", "| --- | --- | --- | --- |"]
    lines += [f"| {f} | {r['n']} | {r['accuracy']:.3f} | {r['binary_accuracy']:.3f} |"
              for f, r in per_field.items()]
    lines += ["", "## Confusion matrix (rows true, columns predicted)", ""]
    lines += ["| | 1 | 2 | 3 | 4 |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {i + 1} | " + " | ".join(str(v) for v in row) + " |"
              for i, row in enumerate(m["confusion"])]
    lines += ["", "![report](classifier_report.png)", ""]
    (out / "classifier_report.md").write_text("\n".join(lines))
    (out / "classifier_metrics.json").write_text(json.dumps(
        {"metrics": m, "band_ablation": ablation, "per_field": per_field}, indent=2))
    print(f"accuracy {m['accuracy']:.3f}, binary {m['binary_accuracy']:.3f}; report in {out}")
    return 0
