"""``real-reference``: the classifier on our renders of real catalogs, beside StarcNet on the sky.

No real HST image reaches this project. What does is a published network's
own output on the real images (``../shared/data/starcnet``, from 001's
StarcNet): its class for every source of the LEGUS NGC 1566 catalog, and its
confusion counts against the human classes per galaxy. This command sets our
ensemble, on the engine's renders of the same catalog rows, beside them:

1. **Data**: the human-classified rows (``legus_class`` 1-4) of LEGUS-anchored
   ``--bank`` folders (``make-bank --kind legus``: one mock source per catalog
   row, with the row's band totals and CI).
2. **Model**: the classifier ensemble of ``--models`` (through its class prior,
   as `glue_starclf.core.predict.predict` gives it).
3. **Eval**, for each field of the banks that StarcNet's results cover: our
   classes on the mock against the human classes, next to StarcNet's on the
   real images against the same human classes: on the same catalog rows
   where StarcNet's per-source classes exist (NGC 1566, matched by catalog
   id; also how often the two networks agree), else on the galaxy's whole
   catalog (its confusion counts); then pooled over those fields.

Read it as a check of the mock against the sky, not as a score: where our
ensemble on the mock is far above StarcNet on the real images for a class
(class 4 above all, the shortcut of an earlier engine), the mock makes that
class easier than the sky does; where it is below, harder (or the network
weaker). StarcNet trained on some of these galaxies (``starcnet/`` README).

Example::

    python -m training real-reference --bank banks/legus-test --starcnet ../shared/data/starcnet \\
        --out reports/
"""

import time
from pathlib import Path

import numpy as np

from .report_files import write_report

__all__ = ["add_arguments", "run", "PREDICTIONS", "CONFUSION", "starcnet_confusions",
           "starcnet_predictions"]

#: StarcNet's class per source of the NGC 1566 catalog (columns Galaxy, Id, X, Y, Prediction).
PREDICTIONS = "ngc1566_starcnet_predictions.csv"
#: StarcNet's confusion counts per galaxy (column ``iVj``: human class i, StarcNet class j).
CONFUSION = "starcnet_confusion_by_galaxy.csv"


def add_arguments(p):
    p.add_argument("--models", default=None, help="models folder (default: the bundled models)")
    p.add_argument("--bank", action="append", required=True,
                   help="LEGUS-anchored bank folder (make-bank --kind legus; repeatable)")
    p.add_argument("--starcnet", required=True,
                   help=f"folder with StarcNet's results on the real images ({PREDICTIONS}, "
                        f"{CONFUSION})")
    p.add_argument("--out", required=True, help="folder for real_reference.md and .json")


def _read_csv(path):
    from astropy.table import Table
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        return Table.read(path, format="ascii.csv")
    except Exception as exc:                      # astropy raises several kinds
        raise ValueError(f"{path}: not a readable CSV table ({exc})") from None


def starcnet_predictions(folder):
    """galaxy -> {catalog id: StarcNet class 1-4} from `PREDICTIONS`."""
    path = Path(folder) / PREDICTIONS
    t = _read_csv(path)
    for col in ("Galaxy", "Id", "Prediction"):
        if col not in t.colnames:
            raise ValueError(f"{path}: no column {col!r}")
    out = {}
    for g, i, p in zip(t["Galaxy"], t["Id"], t["Prediction"]):
        out.setdefault(str(g).lower(), {})[int(i)] = int(p)
    return out


def starcnet_confusions(folder):
    """galaxy -> 4 x 4 confusion counts (human class i, StarcNet class j) from `CONFUSION`."""
    path = Path(folder) / CONFUSION
    t = _read_csv(path)
    cols = [f"{i}v{j}" for i in range(1, 5) for j in range(1, 5)]
    missing = [c for c in ["Galaxy"] + cols if c not in t.colnames]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}")
    return {str(row["Galaxy"]).lower(): np.array([int(row[c]) for c in cols]).reshape(4, 4)
            for row in t}


def _human_rows(banks):
    """Field, catalog id and human class of every stamp of the banks (class 0: none), and
    the banks' (memory-mapped) stamps."""
    from glue_starclf.learn.banks import open_bank
    fields, ids, human, stamps = [], [], [], []
    for folder in banks:
        s, t, _ = open_bank(folder)
        if not {"legus_class", "legus_id", "field"} <= set(t.colnames):
            raise ValueError(f"{folder}: not a LEGUS-anchored bank (no legus_class / legus_id "
                             "/ field columns; make-bank --kind legus)")
        if s.shape[-1] != 32:
            raise ValueError(f"{folder}: stamps are {s.shape[-1]} px, the classifier takes 32")
        fields.append(np.char.lower(np.asarray(t["field"], str)))
        ids.append(np.asarray(t["legus_id"], np.int64))
        human.append(np.asarray(t["legus_class"], np.int64))
        stamps.append(s)
    return np.concatenate(fields), np.concatenate(ids), np.concatenate(human), stamps


def _rows(stamps, sel):
    """The stamps of the selected rows (a boolean mask over all banks' rows), read from disk."""
    out, start = [], 0
    for s in stamps:
        out.append(np.asarray(s[np.flatnonzero(sel[start:start + len(s)])], np.float32))
        start += len(s)
    return np.concatenate(out)


def _confusion(true, pred):
    c = np.zeros((4, 4), np.int64)
    np.add.at(c, (np.asarray(true) - 1, np.asarray(pred) - 1), 1)
    return c


def _row(field, source, s):
    from glue_starclf.learn.classifier import format_recall
    rec = format_recall(s["recall"])
    return (f"| {field} | {source} | {s['n']} | {s['accuracy']:.3f} | "
            f"{s['binary_accuracy']:.3f} | {rec} |")


def run(args):
    from glue_starclf.core.predict import load_ensemble

    from glue_starclf.core.networks import band_mask
    from glue_starclf.learn.classifier import confusion_metrics

    from .evaluate import classifier_stellar_ci, ensemble_probs
    t0 = time.perf_counter()
    predictions = starcnet_predictions(args.starcnet)
    confusions = starcnet_confusions(args.starcnet)
    fields, ids, human, stamps = _human_rows(args.bank)
    covered = sorted(f for f in set(fields[human > 0]) if f in predictions or f in confusions)
    if not covered:
        raise ValueError("no field of the banks has human classes and StarcNet results "
                         f"(StarcNet covers {', '.join(sorted(set(predictions) | set(confusions)))})")
    ens = load_ensemble("classifier", args.models)
    ci = classifier_stellar_ci(ens, args.bank)
    sel = (human > 0) & np.isin(fields, covered)
    x = _rows(stamps, sel)
    ours = np.full(len(human), 0)
    ours[sel] = ensemble_probs(ens, x, band_mask(x).astype(np.float32),
                               None if ci is None else np.asarray(ci)[sel]).argmax(axis=1) + 1

    result = {"fields": {}, "banks": [str(b) for b in args.bank],
              "models": [Path(c["_path"]).stem for _, c in ens.members]}
    pooled_ours, pooled_theirs = np.zeros((4, 4), np.int64), np.zeros((4, 4), np.int64)
    lines = ["# The classifier on mock renders of real catalogs, beside StarcNet on the real "
             "images", "",
             f"Command: `python -m training {' '.join(args.argv)}`", "",
             "Truth: the LEGUS human classes of the rows. *Ours*: the ensemble on this "
             "project's render of the rows (mock). *StarcNet*: 001's network on the real HST "
             "images (its released output).", "",
             "| field | classes by | rows | 4-class | binary | recall 1 / 2 / 3 / 4 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for f in covered:
        rows = sel & (fields == f)
        entry = {"ours_on_mock": confusion_metrics(_confusion(human[rows], ours[rows]))}
        if f in predictions:
            theirs = np.array([predictions[f].get(int(i), 0) for i in ids[rows]])
            both = theirs > 0
            entry["starcnet_on_real"] = confusion_metrics(
                _confusion(human[rows][both], theirs[both]))
            entry["same_rows"] = True
            entry["rows_without_starcnet_class"] = int((~both).sum())
            entry["networks_agree"] = float((ours[rows][both] == theirs[both]).mean()) \
                if both.any() else None
        else:
            entry["starcnet_on_real"] = confusion_metrics(confusions[f])
            entry["same_rows"] = False
        pooled_ours += np.array(entry["ours_on_mock"]["confusion"])
        pooled_theirs += np.array(entry["starcnet_on_real"]["confusion"])
        result["fields"][f] = entry
        where = "same rows" if entry["same_rows"] else "its whole catalog"
        lines += [_row(f, "ours (mock render)", entry["ours_on_mock"]),
                  _row(f, f"StarcNet (real images; {where})", entry["starcnet_on_real"])]
    result["pooled"] = {"ours_on_mock": confusion_metrics(pooled_ours),
                        "starcnet_on_real": confusion_metrics(pooled_theirs)}
    lines += [_row("pooled", "ours (mock render)", result["pooled"]["ours_on_mock"]),
              _row("pooled", "StarcNet (real images)", result["pooled"]["starcnet_on_real"]), ""]
    for f, e in result["fields"].items():
        if e.get("networks_agree") is not None:
            lines.append(f"{f}: on the {e['starcnet_on_real']['n']} rows both classified, our "
                         f"class on the mock equals StarcNet's on the real image for "
                         f"{e['networks_agree']:.3f} of them.")
    result.update(command="python -m training " + " ".join(args.argv),
                  seconds=round(time.perf_counter() - t0, 1))
    write_report(args.out, "real_reference", lines, result)
    return 0
