"""``evaluate``: Markdown + PNG + JSON reports of the ensembles on labelled banks.

The story: load the ensemble of each family a bank needs (classifier for
``classifier`` and ``legus`` banks, physical for ``physical`` banks) ->
the bank's stamps -> ensemble outputs (members averaged as in
`glue_starclf.core.predict`) -> the reports, each ``<family>_report.md``,
``<family>_report.png`` and ``<family>_metrics.json`` in ``--out``.

Classifier report: accuracy, binary (classes 1+2 vs 3+4, 001 §2.2)
accuracy and per-class recall against the human-agreement baselines
(000 §2.1, 001 §2.1) and the project's targets; confusion matrices, 4-class
and binary, counts and row-normalised; precision-recall curves per class
and binary with average precision; reliability diagram and expected
calibration error before and after calibration (temperatures, class prior); the band-ablation
table (each band zeroed and masked, 000 §4.2); accuracy per field of a
LEGUS-anchored bank, each field marked as used in training by a member or
held out; the entropy distribution of correct and wrong predictions
(000 Fig. 5).

The per-field table is not a leave-one-field-out retraining (001 §5.5.1,
one model per held-out galaxy): it is the accuracy of the one ensemble on
each field, and the *held-out* accuracy pools the fields that no member
trained on (the fields of the members' training banks, read from the
cards, less their ``--val-fields``). A field of a bank whose folder the
card names but that no longer exists is reported as unknown.

Physical report (004): true-vs-predicted density maps of log age, log
mass, A_V and log r_h of the cluster stamps with the band holding 95% of
them (004 Fig. 10), the 95th percentile of |error| of each against the
project's targets, with all five bands and with F336W/F438W/F814W only,
the mean error, how often the 16th-84th percentile interval holds the
true value, the errors by true visibility, and the cluster/background ROC
curve and AUC.

Robustness report (``--robustness``, on the banks of ``python -m training
robustness-banks``): one row per bank with the classifier's accuracy,
binary accuracy and recalls, or the physical 95th percentiles and AUC, and
their change from the bank named ``nominal``. ``--audit-legus`` adds the
shortcut audit (`training.audit`) of the classifier banks against the real
LEGUS catalogs.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from glue_starclf.io.bands import BANDS

from glue_starclf.learn.banks import label_sources
from glue_starclf.learn.classifier import format_recall

from .train_classifier import (classification_metrics, expected_calibration_error,
                               labelled_stamps)

__all__ = ["add_arguments", "run", "HUMAN_AGREEMENT", "CLASSIFIER_TARGETS",
           "PHYSICAL_TARGETS", "precision_recall", "roc_curve", "training_fields",
           "errors_by_visibility", "interval_coverage", "classifier_report", "physical_report",
           "robustness_report", "ensemble_probs"]

#: Per-class human agreement of Wei et al. 2020 (000 §2.1) and the 4-class /
#: binary human-to-mode agreement of LEGUS (001 §2.1).
HUMAN_AGREEMENT = {"per_class_000": [0.66, 0.37, 0.40, 0.61],
                   "four_class_001": 0.750, "binary_001": 0.872}

#: Targets of the training issue on held-out LEGUS-anchored mock fields.
CLASSIFIER_TARGETS = {"accuracy": 0.80, "binary_accuracy": 0.93, "recall": 0.70,
                      "ece_after": 0.03}

#: Largest 95th percentile of |error| (half of 004's 95% bounds) and the
#: smallest cluster/background AUC.
PHYSICAL_TARGETS = {"log_age": 0.45, "log_mass": 0.2, "av": 0.7, "log_r_h": 0.1,
                    "cb_auc": 0.98}

_PARAMS = (("log_age", "log age [yr]"), ("log_mass", "log mass [Msun]"), ("av", "A_V [mag]"),
           ("log_r_h", "log r_h [pc]"))


def add_arguments(p):
    p.add_argument("--models", required=True, help="folder of the model cards")
    p.add_argument("--bank", action="append", required=True,
                   help="labelled bank (repeatable; classifier/legus banks evaluate the "
                        "classifier, physical banks the physical network)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--robustness", action="store_true",
                   help="instead of the full reports, one row per bank (robustness banks): "
                        "accuracy, recalls, physical 95th percentiles, change from 'nominal'")
    p.add_argument("--audit-legus", metavar="DIR",
                   help="add the shortcut audit (feature classifier on the classifier banks "
                        "and on the real LEGUS catalogs of DIR)")


# -- shared helpers ------------------------------------------------------------------

def precision_recall(score, positive):
    """Precision and recall at every cut of ``score``, and the average precision.

    Parameters
    ----------
    score : ndarray, shape (n,)
    positive : ndarray of bool, shape (n,)

    Returns
    -------
    precision, recall : ndarray
        At the cuts after the 1st, 2nd, ... highest score.
    ap : float
        Mean of the precision at the rank of each positive (NaN without positives).
    """
    order = np.argsort(-np.asarray(score), kind="stable")
    pos = np.asarray(positive, bool)[order]
    tp = np.cumsum(pos)
    precision = tp / np.arange(1, len(pos) + 1)
    recall = tp / max(pos.sum(), 1)
    ap = float(precision[pos].mean()) if pos.any() else float("nan")
    return precision, recall, ap


def roc_curve(score, positive):
    """False- and true-positive rates at every cut of ``score`` (from (0, 0))."""
    order = np.argsort(-np.asarray(score), kind="stable")
    pos = np.asarray(positive, bool)[order]
    tpr = np.concatenate([[0.0], np.cumsum(pos) / max(pos.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~pos) / max((~pos).sum(), 1)])
    return fpr, tpr


def _command(argv):
    return "python -m training " + " ".join(sys.argv[1:] if argv is None else argv)


def _target_mark(ok):
    return "met" if ok else "**missed**"


# -- classifier ----------------------------------------------------------------------

def _probs(members, x, mask, temperature=True, batch=2048, stellar_ci=None):
    from glue_starclf.core.networks import normalise_classifier
    ci = None if stellar_ci is None else np.broadcast_to(
        np.asarray(stellar_ci, np.float32), (len(x),))
    out = []
    with torch.inference_mode():
        for model, card in members:
            t = float(card.get("temperature", 1.0)) if temperature else 1.0
            p = []
            for i in range(0, len(x), batch):
                xb = torch.from_numpy(normalise_classifier(np.asarray(x[i:i + batch]),
                                                           mask[i:i + batch]))
                logits = model(xb, torch.from_numpy(mask[i:i + batch]),
                               None if ci is None else ci[i:i + batch])
                p.append(torch.softmax(logits / t, 1))
            out.append(torch.cat(p).numpy())
    return np.stack(out)


def classifier_stellar_ci(ens, banks):
    """The banks' measured stellar CI per stamp where the ensemble takes it, else None."""
    from glue_starclf.learn.banks import bank_stellar_ci
    return bank_stellar_ci(banks) if getattr(ens, "needs_stellar_ci", False) else None


def ensemble_probs(ens, x, mask, stellar_ci=None):
    """Averaged tempered member probabilities, through the ensemble's class prior if any.

    The probabilities `glue_starclf.core.predict.predict` gives for these stamps
    (``stellar_ci``: their fields' stellar CI, for members that take it).
    """
    probs = _probs(ens.members, x, mask, stellar_ci=stellar_ci).mean(axis=0)
    prior = getattr(ens, "class_prior", None)
    return prior.apply(probs) if prior is not None else probs


def training_fields(cards):
    """Fields the members of an ensemble trained on.

    Parameters
    ----------
    cards : sequence of dict
        Model cards; their ``training`` names the banks and ``val_fields``.

    Returns
    -------
    used : set of str
        Field names as `training.train_classifier.labelled_stamps` gives
        them (a bank without a ``field`` column is one field,
        ``<kind>-<folder name>``), less each member's validation fields.
    missing : list of str
        Training banks named by a card that cannot be read.
    """
    from astropy.table import Table
    used, missing, fields_of = set(), [], {}
    for card in cards:
        training = card.get("training", {})
        val = {f for f in str(training.get("val_fields") or "").split(",") if f}
        for bank in training.get("banks", []):
            if bank not in fields_of:
                folder = Path(bank)
                try:
                    meta = json.loads((folder / "meta.json").read_text())
                    truth = Table.read(folder / "truth.ecsv", format="ascii.ecsv")
                except (OSError, ValueError):
                    missing.append(str(bank))
                    fields_of[bank] = set()
                    continue
                fields_of[bank] = (set(np.unique(np.asarray(truth["field"]).astype(str)))
                                   if "field" in truth.colnames
                                   else {f"{meta.get('kind')}-{folder.name}"})
            used |= fields_of[bank] - val
    return used, sorted(set(missing))


def _confusion_panel(ax, conf, labels, title):
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({conf[i, j]})", ha="center", va="center",
                    fontsize=7, color="white" if norm[i, j] > 0.6 else "black")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels,
           yticklabels=labels, xlabel="predicted", ylabel="true", title=title)


def _classifier_plots(path, probs, raw, y, m, ablation):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(13, 9))
    ax = fig.subplots(2, 3)
    _confusion_panel(ax[0, 0], np.array(m["confusion"]), [1, 2, 3, 4],
                     "4-class, row-normalised (counts)")
    _confusion_panel(ax[0, 1], np.array(m["binary_confusion"]), ["cluster", "non-cl."],
                     "binary 1+2 vs 3+4, row-normalised (counts)")
    for k in range(4):
        prec, rec, ap = precision_recall(probs[:, k], y == k)
        ax[0, 2].plot(rec, prec, label=f"class {k + 1} (AP {ap:.2f})")
    prec, rec, ap = precision_recall(probs[:, 0] + probs[:, 1], y <= 1)
    ax[0, 2].plot(rec, prec, "k--", label=f"binary (AP {ap:.2f})")
    ax[0, 2].set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    ax[0, 2].legend(fontsize=7)
    for p, name in ((raw, "untempered"), (probs, "as predicted")):
        centres, accs, _ = _reliability(p, y)
        ece = expected_calibration_error(p, y)
        ax[1, 0].plot(centres, accs, "o-", label=f"{name} (ECE {ece:.3f})")
    ax[1, 0].plot([0, 1], [0, 1], "k:")
    ax[1, 0].set(xlabel="confidence", ylabel="accuracy", title="reliability", xlim=(0, 1),
                 ylim=(0, 1))
    ax[1, 0].legend(fontsize=7)
    ent = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(axis=1)
    ok = probs.argmax(axis=1) == y
    ax[1, 1].hist([ent[ok], ent[~ok]], bins=30, range=(0, np.log(4)),
                  label=["correct", "wrong"], histtype="step")
    ax[1, 1].set(xlabel="entropy [nat]", ylabel="sources", title="entropy (000 Fig. 5)")
    ax[1, 1].legend(fontsize=7)
    ax[1, 2].bar(range(len(ablation) + 1), [m["accuracy"], *ablation.values()],
                 color=["k"] + ["C0"] * len(ablation))
    ax[1, 2].set(xticks=range(len(ablation) + 1), xticklabels=["none", *ablation],
                 ylabel="4-class accuracy", title="band ablation (band zeroed)", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _reliability(p, y, n_bins=10):
    """Mean confidence, accuracy and count per confidence bin (bins with >= 5)."""
    c, ok = p.max(axis=1), p.argmax(axis=1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    centres, accs, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (c > lo) & (c <= hi)
        if sel.sum() >= 5:
            centres.append(float(c[sel].mean()))
            accs.append(float(ok[sel].mean()))
            counts.append(int(sel.sum()))
    return centres, accs, counts


def classifier_report(ens, banks, out, argv=None):
    """Write the classifier report of ``ens`` on ``banks`` into ``out``; returns the metrics.

    ``argv`` is the command recorded in the report (default `sys.argv`).
    """
    t0 = time.perf_counter()
    x, y, mask, fields = labelled_stamps(banks)
    ci = classifier_stellar_ci(ens, banks)
    raw = _probs(ens.members, x, mask, temperature=False, stellar_ci=ci).mean(axis=0)
    probs = ensemble_probs(ens, x, mask, ci)
    m = classification_metrics(probs, y)
    cluster_true, cluster_pred = y <= 1, probs.argmax(axis=1) <= 1
    binary = np.zeros((2, 2), int)
    np.add.at(binary, ((~cluster_true).astype(int), (~cluster_pred).astype(int)), 1)
    m["binary_confusion"] = binary.tolist()
    m["ece_before"] = expected_calibration_error(raw, y)
    m["ece_after"] = expected_calibration_error(probs, y)
    m["average_precision"] = [precision_recall(probs[:, k], y == k)[2] for k in range(4)]
    m["average_precision_binary"] = precision_recall(probs[:, 0] + probs[:, 1], cluster_true)[2]
    m["reliability"] = {name: dict(zip(("confidence", "accuracy", "n"), _reliability(p, y)))
                        for name, p in (("before", raw), ("after", probs))}
    ent = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(axis=1)
    ok = probs.argmax(axis=1) == y
    m["entropy"] = {"median_correct": float(np.median(ent[ok])) if ok.any() else None,
                    "median_wrong": float(np.median(ent[~ok])) if (~ok).any() else None}
    ablation = {}
    for j, band in enumerate(BANDS):
        mk = mask.copy()
        mk[:, j] = 0
        xz = np.array(x)
        xz[:, j] = 0
        ablation[band] = classification_metrics(ensemble_probs(ens, xz, mk, ci), y)["accuracy"]
    used, missing = training_fields([card for _, card in ens.members])
    per_field = {}
    for f in np.unique(fields):
        sel = fields == f
        per_field[str(f)] = {**classification_metrics(probs[sel], y[sel]),
                             "in_training": str(f) in used}
    source = label_sources(banks)
    by_label = {name: classification_metrics(probs[source == k], y[source == k])
                for k, name in ((1, "human"), (0, "drawn")) if (source == k).any()}
    held = ~np.isin(fields.astype(str), list(used))
    held_out = classification_metrics(probs[held], y[held]) if held.any() else None
    targets = {"accuracy": m["accuracy"] >= CLASSIFIER_TARGETS["accuracy"],
               "binary_accuracy": m["binary_accuracy"] >= CLASSIFIER_TARGETS["binary_accuracy"],
               "recall": all(r >= CLASSIFIER_TARGETS["recall"] for r in m["recall"]
                             if r is not None),
               "ece_after": m["ece_after"] <= CLASSIFIER_TARGETS["ece_after"]}
    out = Path(out)
    _classifier_plots(out / "classifier_report.png", probs, raw, y, m, ablation)
    T = CLASSIFIER_TARGETS
    lines = ["# Classifier ensemble report", "",
             f"Models: {', '.join(ens.names)}  ",
             f"Banks: {', '.join(map(str, banks))} ({len(y)} sources)  ",
             f"Command: `{_command(argv)}`  ",
             f"Run time: {time.perf_counter() - t0:.0f} s", "",
             "Probabilities are the members' temperature-scaled softmax, averaged"
             + (f", then through the ensemble's class prior (`{ens.class_prior.path.name}`: "
                f"temperature {ens.class_prior.temperature:.3f}, log prior "
                + " / ".join(f"{b:+.2f}" for b in ens.class_prior.log_prior)
                + " for classes 1-4)" if getattr(ens, "class_prior", None) is not None
                else " (class-balanced: no class prior)")
             + ". Binary: classes 1+2 (clusters) vs 3+4 (001 §2.2).", "",
             "| metric | ensemble | human agreement | target | |", "| --- | --- | --- | --- | --- |",
             f"| 4-class accuracy | {m['accuracy']:.3f} | "
             f"{HUMAN_AGREEMENT['four_class_001']:.3f} (001, to mode) | ≥ {T['accuracy']} | "
             f"{_target_mark(targets['accuracy'])} |",
             f"| binary accuracy | {m['binary_accuracy']:.3f} | "
             f"{HUMAN_AGREEMENT['binary_001']:.3f} (001) | ≥ {T['binary_accuracy']} | "
             f"{_target_mark(targets['binary_accuracy'])} |"]
    for k in range(4):
        r = m["recall"][k]
        lines.append(f"| recall class {k + 1} | {format_recall([r], digits=3)} | "
                     f"{HUMAN_AGREEMENT['per_class_000'][k]:.2f} (000) | ≥ {T['recall']} | "
                     f"{'' if r is None else _target_mark(r >= T['recall'])} |")
    lines += [f"| ECE before / after calibration | {m['ece_before']:.3f} / "
              f"{m['ece_after']:.3f} | | ≤ {T['ece_after']} (after) | "
              f"{_target_mark(targets['ece_after'])} |",
              f"| average precision, classes 1-4 | "
              f"{', '.join(f'{a:.3f}' for a in m['average_precision'])} | | | |",
              f"| average precision, binary | {m['average_precision_binary']:.3f} | | | |",
              "| median entropy, correct / wrong [nat] | "
              + " / ".join("-" if v is None else f"{v:.3f}"
                           for v in m["entropy"].values()) + " | | | |",
              "", "The targets hold for held-out LEGUS-anchored fields; on other banks they "
              "are for reference.", "",
              "## Confusion matrices (rows true, columns predicted)", "",
              "4-class, counts and row-normalised:", "",
              "| true \\ predicted | 1 | 2 | 3 | 4 |", "| --- | --- | --- | --- | --- |"]
    conf = np.array(m["confusion"])
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    lines += [f"| {i + 1} | " + " | ".join(f"{conf[i, j]} ({norm[i, j]:.2f})" for j in range(4))
              + " |" for i in range(4)]
    bnorm = binary / np.maximum(binary.sum(axis=1, keepdims=True), 1)
    lines += ["", "Binary, counts and row-normalised:", "",
              "| true \\ predicted | cluster | non-cluster |", "| --- | --- | --- |"]
    lines += [f"| {name} | " + " | ".join(f"{binary[i, j]} ({bnorm[i, j]:.2f})"
                                          for j in range(2)) + " |"
              for i, name in enumerate(("cluster", "non-cluster"))]
    lines += ["", "## Band ablation (band zeroed and masked, 000 §4.2)", "",
              "| band zeroed | accuracy | change |", "| --- | --- | --- |"]
    lines += [f"| {b} | {a:.3f} | {a - m['accuracy']:+.3f} |" for b, a in ablation.items()]
    if by_label:
        lines += ["", "## Human and drawn classes", "",
                  "Anchored rows keep the class LEGUS humans gave them; rows nobody "
                  "inspected (class 0) take a class drawn given their CI "
                  "(`glue_starclf.sim.mosaic.uninspected_classes`).", "",
                  "| rows | n | accuracy | binary | recall classes 1-4 |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {name} class | {r['n']} | {r['accuracy']:.3f} | "
                  f"{r['binary_accuracy']:.3f} | "
                  f"{format_recall(r['recall'])} |"
                  for name, r in by_label.items()]
    lines += ["", "## Per field (leave-one-field-out)", "",
              "Accuracy of this ensemble on each field; *held out* = no member trained on "
              "the field (its training banks, less `--val-fields`, read from the cards). "
              "This is not a retraining per left-out field as in 001 §5.5.1.", ""]
    if missing:
        lines += [f"Training banks not found (their fields count as held out): "
                  f"{', '.join(missing)}", ""]
    lines += ["| field | n | accuracy | binary | held out |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {f} | {r['n']} | {r['accuracy']:.3f} | {r['binary_accuracy']:.3f} | "
              f"{'no' if r['in_training'] else 'yes'} |" for f, r in per_field.items()]
    lines += ["", "Held-out fields pooled: " + (
        f"{held_out['n']} sources, accuracy {held_out['accuracy']:.3f}, binary "
        f"{held_out['binary_accuracy']:.3f}" if held_out else "none (every field was "
        "used in training)"), "", "![report](classifier_report.png)", ""]
    (out / "classifier_report.md").write_text("\n".join(lines))
    metrics = {"metrics": m, "band_ablation": ablation, "per_field": per_field,
               "by_label_source": by_label,
               "held_out_fields": held_out, "training_banks_missing": missing,
               "targets": CLASSIFIER_TARGETS, "targets_met": targets,
               "models": ens.names, "banks": [str(b) for b in banks]}
    (out / "classifier_metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"classifier: accuracy {m['accuracy']:.3f}, binary {m['binary_accuracy']:.3f}; "
          f"report {out / 'classifier_report.md'}")
    return metrics


# -- physical ------------------------------------------------------------------------

def _estimates(probs, truth, temperature=None):
    """``name -> (true, predicted, p16, p84)`` of every parameter for the cluster stamps.

    ``temperature``: the cards' interval calibration, applied as `predict` does."""
    from glue_starclf.core.networks import LOG_RH_BINS, decode_1d, decode_grid, estimator_for
    temperature = temperature or {}
    cl = np.asarray(truth["p_cb"]) > 0.5
    est = decode_grid(probs["grid"][cl], temperature=temperature)
    t = truth[cl]
    out = {name: (np.asarray(t[name], float), est[name], est[f"{name}_p16"], est[f"{name}_p84"])
           for name in ("log_age", "log_mass", "av")}
    out["log_r_h"] = (np.log10(np.asarray(t["r_h"], float)),) + decode_1d(
        probs["r_h"][cl], LOG_RH_BINS, estimator=estimator_for("log_r_h"),
        temperature=temperature.get("log_r_h", 1.0))
    return out


def interval_coverage(true, p16, p84):
    """How often the 16th-84th percentile interval holds the true value, and its width.

    Parameters
    ----------
    true, p16, p84 : ndarray
        True values and the predicted percentiles of the same sources.

    Returns
    -------
    dict
        ``coverage``: fraction of sources with ``p16 <= true <= p84`` (0.68 for
        calibrated uncertainties; more means they are too wide); ``median_width``:
        median of ``p84 - p16``. None for no sources.
    """
    true, p16, p84 = (np.asarray(a, float) for a in (true, p16, p84))
    if not len(true):
        return {"coverage": None, "median_width": None}
    return {"coverage": float(np.mean((true >= p16) & (true <= p84))),
            "median_width": float(np.median(p84 - p16))}


#: Bins of true visibility (004 eq. 2) for the error breakdown of the report.
VISIBILITY_EDGES = (0.0, 10.0, 30.0, 100.0, np.inf)


def errors_by_visibility(values, visibility, edges=VISIBILITY_EDGES):
    """Median and 95th percentile of the absolute errors per bin of true visibility.

    Parameters
    ----------
    values : dict
        ``name -> (true, predicted, ...)`` over the cluster stamps (`_estimates`).
    visibility : ndarray
        True visibility of the same stamps.
    edges : sequence of float
        Bin edges; a bin holds ``lo <= visibility < hi``.

    Returns
    -------
    list of dict
        One per bin: ``lo``, ``hi``, ``n`` and ``median_<name>``, ``p95_<name>``
        (None for an empty bin).
    """
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        k = (visibility >= lo) & (visibility < hi)
        row = {"lo": float(lo), "hi": float(hi) if np.isfinite(hi) else None, "n": int(k.sum())}
        for name, (true, pred, *_) in values.items():
            err = np.abs(pred[k] - true[k])
            row[f"median_{name}"] = float(np.median(err)) if k.any() else None
            row[f"p95_{name}"] = float(np.percentile(err, 95)) if k.any() else None
        rows.append(row)
    return rows


#: Distance thirds of the trained range (3-20 Mpc) for the bias breakdown.
DISTANCE_THIRDS = (3.0, 3.0 + 17.0 / 3, 3.0 + 34.0 / 3, 20.0)

#: Largest median error of log mass and log r_h, overall and per distance third.
BIAS_LIMIT = 0.05


def median_bias(values, distance, edges=DISTANCE_THIRDS, n_true_bins=4):
    """Median signed error overall, per distance bin and per bin of the true value.

    Parameters
    ----------
    values : dict
        ``name -> (true, predicted, ...)`` over the cluster stamps (`_estimates`).
    distance : ndarray
        Galaxy distance [Mpc] of the same stamps.
    edges : sequence of float
        Distance bin edges; the last bin includes its upper edge.
    n_true_bins : int
        Bins of each true value, at its quantiles.

    Returns
    -------
    dict
        ``overall``: ``name -> median error``; ``by_distance``: one dict per
        distance bin (``lo``, ``hi``, ``n``, ``name -> median error``);
        ``by_true``: ``name -> list of (lo, hi, n, median error)``. None for an
        empty bin.
    """
    def med(err):
        return float(np.median(err)) if len(err) else None
    distance = np.asarray(distance, float)
    err = {name: np.asarray(v[1], float) - np.asarray(v[0], float) for name, v in values.items()}
    out = {"overall": {name: med(e) for name, e in err.items()}, "by_distance": [], "by_true": {}}
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        k = (distance >= lo) & ((distance <= hi) if last else (distance < hi))
        row = {"lo": float(lo), "hi": float(hi), "n": int(k.sum())}
        row.update({name: med(e[k]) for name, e in err.items()})
        out["by_distance"].append(row)
    for name, (true, *_) in values.items():
        true = np.asarray(true, float)
        q = np.quantile(true, np.linspace(0, 1, n_true_bins + 1)) if len(true) else []
        rows = []
        for j, (lo, hi) in enumerate(zip(q[:-1], q[1:])):
            k = (true >= lo) & ((true <= hi) if j == len(q) - 2 else (true < hi))
            rows.append((float(lo), float(hi), int(k.sum()), med(err[name][k])))
        out["by_true"][name] = rows
    return out


def _bias_lines(bias):
    """Markdown tables of `median_bias`."""
    def cell(v):
        return "–" if v is None else f"{v:+.3f}"
    lines = ["Median error (predicted − true), 5 bands, overall and per distance third; "
             f"the target for log mass and log r_h is within ±{BIAS_LIMIT} dex.", "",
             "| distance [Mpc] | clusters | " + " | ".join(label for _, label in _PARAMS) + " |",
             "| --- | --- |" + " --- |" * len(_PARAMS),
             f"| all | {sum(r['n'] for r in bias['by_distance'])} | "
             + " | ".join(cell(bias["overall"][n]) for n, _ in _PARAMS) + " |"]
    for r in bias["by_distance"]:
        lines.append(f"| {r['lo']:.1f} – {r['hi']:.1f} | {r['n']} | "
                     + " | ".join(cell(r[n]) for n, _ in _PARAMS) + " |")
    lines += ["", "Median error per quarter of the true value, 5 bands:", "",
              "| quantity | " + " | ".join(f"quarter {j + 1}" for j in range(4)) + " |",
              "| --- |" + " --- |" * 4]
    for name, label in _PARAMS:
        lines.append(f"| {label} | " + " | ".join(
            f"{lo:.2f} – {hi:.2f}: {cell(m)}" for lo, hi, _, m in bias["by_true"][name]) + " |")
    return lines + [""]


def _bias_plot(path, values, distance):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(16, 6))
    ax = fig.subplots(2, 4)
    distance = np.asarray(distance, float)
    for j, (name, label) in enumerate(_PARAMS):
        true, pred = (np.asarray(a, float) for a in values[name][:2])
        err = pred - true
        for a, x, xl in ((ax[0, j], distance, "distance [Mpc]"), (ax[1, j], true, f"true {label}")):
            if len(x):
                edges = np.quantile(x, np.linspace(0, 1, 11))
                mid, m, q1, q3 = [], [], [], []
                for lo, hi in zip(edges[:-1], edges[1:]):
                    k = (x >= lo) & (x <= hi)
                    if k.any():
                        mid.append(np.median(x[k]))
                        m.append(np.median(err[k]))
                        q1.append(np.percentile(err[k], 16))
                        q3.append(np.percentile(err[k], 84))
                a.fill_between(mid, q1, q3, alpha=0.3)
                a.plot(mid, m, "o-")
            a.axhline(0, color="k", lw=0.8)
            if name in ("log_mass", "log_r_h"):
                for s in (-1, 1):
                    a.axhline(s * BIAS_LIMIT, color="k", ls=":", lw=0.8)
            a.set(xlabel=xl, ylabel=f"error in {label}")
    fig.suptitle("median error (line) and 16th–84th percentiles (band) against distance "
                 "and true value")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _physical_plots(path, values, p95, probs, cl, auc):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(16, 3.8))
    ax = fig.subplots(1, 5)
    for a, (name, label) in zip(ax, _PARAMS):
        true, pred = values[name][:2]
        lo, hi = np.nanmin(np.r_[true, pred]), np.nanmax(np.r_[true, pred])
        if len(true):
            a.hexbin(true, pred, gridsize=30, bins="log", mincnt=1, cmap="viridis",
                     extent=(lo, hi, lo, hi))
        a.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        for s in (-1, 1):
            a.plot([lo, hi], [lo + s * p95[name], hi + s * p95[name]], "k--", lw=0.8)
        a.set(xlabel=f"true {label}", ylabel=f"predicted {label}", xlim=(lo, hi), ylim=(lo, hi),
              title=f"95% within ±{p95[name]:.2f} (target {PHYSICAL_TARGETS[name]})")
        a.title.set_fontsize(9)
    fpr, tpr = roc_curve(probs["cb"][:, 1], cl)
    ax[4].plot(fpr, tpr)
    ax[4].plot([0, 1], [0, 1], "k:")
    ax[4].set(xlabel="false-positive rate", ylabel="true-positive rate",
              title=f"cluster/background ROC, AUC {auc:.3f}")
    ax[4].title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def physical_report(ens, banks, out, argv=None):
    """Write the physical report of ``ens`` on ``banks`` into ``out``; returns the metrics.

    ``argv`` is the command recorded in the report (default `sys.argv`).
    """
    from astropy.table import vstack

    from glue_starclf.core.networks import estimator_for
    from glue_starclf.learn.banks import bank_stellar_ci, open_bank
    from glue_starclf.learn.intervals import bank_posteriors
    from .train_physical import THREE_BANDS, physical_metrics
    t0 = time.perf_counter()
    xs, ts = [], []
    for folder in banks:
        s, t, _ = open_bank(folder)
        if s.shape[-1] != ens.stamp_size:
            raise ValueError(f"{folder}: stamps are {s.shape[-1]} px, the physical models "
                             f"take {ens.stamp_size}")
        xs.append(np.asarray(s))
        ts.append(t)
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    truth = vstack(ts, metadata_conflicts="silent") if len(ts) > 1 else ts[0]
    dist = np.asarray(truth["distance_mpc"], np.float32)
    cl = np.asarray(truth["p_cb"]) > 0.5
    if not cl.any() or cl.all():
        raise ValueError(f"{', '.join(map(str, banks))}: need both cluster and background "
                         f"stamps for the report")
    ci = bank_stellar_ci(banks) if ens.needs_stellar_ci else None
    probs = bank_posteriors(ens.members, x, dist, tilt=ens.posterior_tilt, stellar_ci=ci)
    three = bank_posteriors(ens.members, x, dist, np.tile(THREE_BANDS, (len(x), 1)),
                            tilt=ens.posterior_tilt, stellar_ci=ci)
    metrics = {"five_bands": physical_metrics(probs, truth),
               "three_bands": physical_metrics(three, truth)}
    five = metrics["five_bands"]
    p95 = {name: five[f"p95_abs_err_{name}"] for name, _ in _PARAMS}
    values = _estimates(probs, truth, ens.members[0][1].get("interval_temperature"))
    for name, _ in _PARAMS:
        true, pred, p16, p84 = values[name]
        five[f"bias_{name}"] = float(np.mean(pred - true))
        five[f"interval_{name}"] = interval_coverage(true, p16, p84)
    five["by_visibility"] = errors_by_visibility(values, np.asarray(truth["visibility"], float)[cl])
    five["median_bias"] = median_bias(values, dist[cl])
    targets = {name: p95[name] <= PHYSICAL_TARGETS[name] for name, _ in _PARAMS}
    targets["cb_auc"] = five["cb_auc"] >= PHYSICAL_TARGETS["cb_auc"]
    out = Path(out)
    _physical_plots(out / "physical_report.png", values, p95, probs, cl, five["cb_auc"])
    _bias_plot(out / "physical_bias.png", values, dist[cl])
    lines = ["# Physical-parameter ensemble report", "",
             f"Models: {', '.join(ens.names)}  ",
             f"Banks: {', '.join(map(str, banks))} ({five['n_clusters']} clusters, "
             f"{five['n_background']} background stamps)  ",
             f"Command: `{_command(argv)}`  ",
             f"Run time: {time.perf_counter() - t0:.0f} s", "",
             "Members' softmax outputs averaged, "
             + ("reweighted by the cards' posterior tilt (distance-dependent recalibration), "
                if ens.posterior_tilt else "")
             + "then decoded (point estimate per parameter: "
             + ", ".join(f"{label.split(' [')[0]} {estimator_for(name)}"
                         for name, label in _PARAMS)
             + " of its marginal, chosen by measurement; 16th-84th percentile intervals with the "
               "cards' interval calibration). Errors are over the cluster stamps; the targets are "
               "half of 004's 95% bounds.", "",
             "| quantity | 5 bands | F336W/F438W/F814W | target | |",
             "| --- | --- | --- | --- | --- |"]
    for name, label in _PARAMS:
        key = f"p95_abs_err_{name}"
        lines.append(f"| 95th percentile of abs. error, {label} | {five[key]:.3f} | "
                     f"{metrics['three_bands'][key]:.3f} | ≤ {PHYSICAL_TARGETS[name]} | "
                     f"{_target_mark(targets[name])} |")
    lines += [f"| cluster/background AUC | {five['cb_auc']:.3f} | "
              f"{metrics['three_bands']['cb_auc']:.3f} | ≥ {PHYSICAL_TARGETS['cb_auc']} | "
              f"{_target_mark(targets['cb_auc'])} |", "",
              "Mean error (bias), 5 bands: " + ", ".join(
                  f"{label} {five[f'bias_{name}']:+.3f}" for name, label in _PARAMS), ""]
    lines += _bias_lines(five["median_bias"]) + ["![bias](physical_bias.png)", ""]
    lines += ["Uncertainties, 5 bands: the fraction of clusters whose true value lies within "
              "the predicted 16th–84th percentiles (0.68 if calibrated; more: the intervals "
              "are too wide), and the median width of that interval.", "",
              "| | " + " | ".join(label for _, label in _PARAMS) + " |",
              "| --- |" + " --- |" * len(_PARAMS),
              "| within 16th–84th percentile | " + " | ".join(
                  f"{five[f'interval_{n}']['coverage']:.2f}" for n, _ in _PARAMS) + " |",
              "| median width | " + " | ".join(
                  f"{five[f'interval_{n}']['median_width']:.2f}" for n, _ in _PARAMS) + " |", "",
              "By true visibility (004 eq. 2), 5 bands: median / 95th percentile of the "
              "absolute error.", "",
              "| visibility | clusters | " + " | ".join(label for _, label in _PARAMS) + " |",
              "| --- | --- |" + " --- |" * len(_PARAMS)]
    for row in five["by_visibility"]:
        span = (f"≥ {row['lo']:g}" if row["hi"] is None else f"{row['lo']:g} – {row['hi']:g}")
        cells = [("–" if row[f"median_{n}"] is None
                  else f"{row[f'median_{n}']:.2f} / {row[f'p95_{n}']:.2f}") for n, _ in _PARAMS]
        lines.append(f"| {span} | {row['n']} | " + " | ".join(cells) + " |")
    lines += ["",
              "True vs predicted as log-scaled density maps; dashed lines enclose 95% of "
              "the clusters (004 Fig. 10); last panel the cluster/background ROC.", "",
              "![report](physical_report.png)", ""]
    (out / "physical_report.md").write_text("\n".join(lines))
    result = {"metrics": metrics, "targets": PHYSICAL_TARGETS, "targets_met": targets,
              "models": ens.names, "banks": [str(b) for b in banks]}
    (out / "physical_metrics.json").write_text(json.dumps(result, indent=2))
    print("physical: p95 |err| " + ", ".join(f"{n} {p95[n]:.2f}" for n, _ in _PARAMS)
          + f"; AUC {five['cb_auc']:.3f}; report {out / 'physical_report.md'}")
    return result


def run(args):
    from glue_starclf.core.predict import load_ensemble

    from glue_starclf.learn.banks import open_bank
    kinds = {"classifier": [], "physical": []}
    for folder in args.bank:
        meta = open_bank(folder)[2]
        kinds["physical" if meta.get("kind") == "physical" else "classifier"].append(folder)
    ensembles = {family: load_ensemble(family, args.models)
                 for family, banks in kinds.items() if banks}
    if args.audit_legus is not None and not Path(args.audit_legus).is_dir():
        raise FileNotFoundError(f"{args.audit_legus}: no such folder of LEGUS catalogs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.robustness:
        robustness_report(ensembles, kinds, out, args.argv)
    else:
        if kinds["classifier"]:
            classifier_report(ensembles["classifier"], kinds["classifier"], out, args.argv)
        if kinds["physical"]:
            physical_report(ensembles["physical"], kinds["physical"], out, args.argv)
    if args.audit_legus is not None and kinds["classifier"]:
        from .audit import audit_bank, format_audit, real_accuracy
        res = {"banks": {}, "real": real_accuracy(args.audit_legus)}
        for folder in kinds["classifier"]:
            res["banks"][str(folder)] = audit_bank(*open_bank(folder))
        (out / "shortcut_audit.json").write_text(json.dumps(res, indent=2) + "\n")
        report = out / ("robustness_report.md" if args.robustness else "classifier_report.md")
        report.write_text(report.read_text() + "\n" + format_audit(res) + "\n")
    return 0


# -- robustness ----------------------------------------------------------------------

def _perturbation(folder):
    from glue_starclf.learn.banks import open_bank
    meta = open_bank(folder)[2]
    p = meta.get("perturb") or {}
    if meta.get("randomise"):
        return "randomised"
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "nominal"


def robustness_report(ensembles, kinds, out, argv=None):
    """One row per bank: the ensembles' scores and their change from the nominal bank.

    The nominal bank is the one named ``nominal`` (else the first of its kind).
    """
    from glue_starclf.learn.banks import open_bank, stamp_stellar_ci
    from glue_starclf.learn.intervals import bank_posteriors
    from .train_physical import physical_metrics
    result = {"classifier": {}, "physical": {}}
    lines = ["# Robustness of the ensembles to the rendering", "",
             f"Command: `{_command(argv)}`", "",
             "Each bank renders the same sources with one engine condition changed "
             "(`python -m training robustness-banks`); Δ is the change from the nominal "
             "bank.", ""]
    if kinds["classifier"]:
        ens = ensembles["classifier"]
        rows = {}
        for folder in kinds["classifier"]:
            x, y, mask, _ = labelled_stamps([folder])
            ci = classifier_stellar_ci(ens, [folder])
            m = classification_metrics(ensemble_probs(ens, x, mask, ci), y)
            rows[Path(folder).name] = {"perturbation": _perturbation(folder), "n": int(len(y)),
                                       "accuracy": m["accuracy"],
                                       "binary_accuracy": m["binary_accuracy"],
                                       "recall": m["recall"]}
        base = rows.get("nominal", next(iter(rows.values())))
        lines += [f"## Classifier ({', '.join(ens.names)})", "",
                  "| bank | perturbation | n | 4-class | Δ | binary | Δ | recall 1 / 2 / 3 / 4 |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in rows.items():
            lines.append(f"| {name} | {r['perturbation']} | {r['n']} | {r['accuracy']:.3f} | "
                         f"{r['accuracy'] - base['accuracy']:+.3f} | {r['binary_accuracy']:.3f} | "
                         f"{r['binary_accuracy'] - base['binary_accuracy']:+.3f} | "
                         + format_recall(r["recall"]) + " |")
        lines.append("")
        result["classifier"] = rows
    if kinds["physical"]:
        ens = ensembles["physical"]
        rows = {}
        for folder in kinds["physical"]:
            s, t, _ = open_bank(folder)
            probs = bank_posteriors(ens.members, s,
                                    np.asarray(t["distance_mpc"], np.float32),
                                    tilt=ens.posterior_tilt,
                                    stellar_ci=stamp_stellar_ci(t, folder)
                                    if ens.needs_stellar_ci else None)
            m = physical_metrics(probs, t)
            rows[Path(folder).name] = {"perturbation": _perturbation(folder),
                                       "n_clusters": m["n_clusters"], "cb_auc": m["cb_auc"],
                                       **{f"p95_{n}": m[f"p95_abs_err_{n}"] for n, _ in _PARAMS}}
        base = rows.get("nominal", next(iter(rows.values())))
        lines += [f"## Physical ({', '.join(ens.names)})", "",
                  "95th percentile of the absolute error (relative change from nominal).", "",
                  "| bank | perturbation | clusters | " + " | ".join(
                      label for _, label in _PARAMS) + " | AUC |",
                  "| --- | --- | --- |" + " --- |" * (len(_PARAMS) + 1)]
        for name, r in rows.items():
            cells = [f"{r[f'p95_{n}']:.3f} ({r[f'p95_{n}'] / base[f'p95_{n}'] - 1:+.0%})"
                     for n, _ in _PARAMS]
            lines.append(f"| {name} | {r['perturbation']} | {r['n_clusters']} | "
                         + " | ".join(cells) + f" | {r['cb_auc']:.3f} |")
        lines.append("")
        result["physical"] = rows
    (Path(out) / "robustness_report.md").write_text("\n".join(lines) + "\n")
    (Path(out) / "robustness_metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))
    return result
