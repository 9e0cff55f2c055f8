"""``shortcut-audit``: how well catalog-level features alone separate the classes.

A mock bank whose colours, magnitudes and concentration index separate the
LEGUS classes far better than a real catalog's do teaches the network a
shortcut that real images do not offer. This command measures both:

1. **Mock**: features measured on the rendered stamps of each bank (3-px
   aperture magnitudes in the five bands, the four adjacent colours, the
   F555W concentration index; sky from the 7-8 px annulus), a
   gradient-boosted classifier (scikit-learn's
   ``HistGradientBoostingClassifier``) trained and tested on the bank:
   leave-one-field-out for LEGUS-anchored banks, 5-fold otherwise.
2. **Real**: the same classifier on the LEGUS catalogs' own photometry and
   CI with the human classes, leave-one-galaxy-out over the catalogs in
   ``--legus`` (pointings of one galaxy are held out together).

The report gives the 4-class and binary (1+2 vs 3+4) accuracies; the mock
number minus the real one is the shortcut margin.

With ``--class4-versus BANK`` it also measures how well the same features
tell each bank's class-4 stamps from the class 1-3 stamps of ``BANK`` (a
LEGUS-anchored bank; equal numbers a side, 5-fold), all together and one
feature at a time, and with ``--legus`` the same for the real catalogs'
class 4 against classes 1-3: class-4 stamps (e.g. unmatched detections)
easier to tell from clusters than the real ones are teach a shortcut too.
"""

import json
import re
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run", "stamp_features", "catalog_features", "feature_accuracy",
           "real_accuracy", "audit_bank", "class4_versus", "FEATURES"]

FEATURES = ("m_F275W", "m_F336W", "m_F438W", "m_F555W", "m_F814W",
            "F275W-F336W", "F336W-F438W", "F438W-F555W", "F555W-F814W", "CI_V")

_ZP = (22.65, 23.46, 24.98, 25.81, 24.67)


def add_arguments(p):
    p.add_argument("--bank", action="append", required=True, help="bank folder (repeatable)")
    p.add_argument("--legus", help="folder of LEGUS .tab catalogs for the real reference "
                                   "(e.g. ../shared/data/legus)")
    p.add_argument("--out", required=True, help="output folder (shortcut_audit.md/.json)")
    p.add_argument("--max-stamps", type=int, default=20000,
                   help="stamps used per bank (random subset; default 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class4-versus", metavar="BANK",
                   help="also tell each bank's class-4 stamps from this LEGUS-anchored "
                        "bank's class 1-3 stamps (and, with --legus, real class 4 from 1-3)")


def run(args):
    from glue_starclf.learn.banks import open_bank
    out = Path(args.out)
    if args.legus is not None and not Path(args.legus).is_dir():
        raise FileNotFoundError(f"{args.legus}: no such folder of LEGUS catalogs")
    if args.max_stamps < 100:
        raise ValueError(f"--max-stamps {args.max_stamps} must be >= 100")
    banks = [(folder, *open_bank(folder)) for folder in args.bank]
    for folder, _, truth, meta in banks:
        if "class" not in truth.colnames:
            raise ValueError(f"{folder}: a {meta.get('kind')} bank has no classes; "
                             "shortcut-audit needs a classifier, legus or unmatched bank")
    results = {"banks": {}, "real": None}
    for folder, stamps, truth, meta in banks:
        classes = set(np.asarray(truth["class"], int).tolist()) & {1, 2, 3, 4}
        if len(classes) < 2:
            # One class (e.g. unmatched detections): only --class4-versus measures it.
            if args.class4_versus is None:
                raise ValueError(f"{folder}: holds only class {sorted(classes)}; compare it "
                                 "with --class4-versus BANK")
            continue
        results["banks"][str(folder)] = audit_bank(stamps, truth, meta, args.max_stamps,
                                                   args.seed)
    if args.legus is not None:
        results["real"] = real_accuracy(args.legus, args.seed)
    if args.class4_versus is not None:
        results["class4_versus"] = class4_versus(banks, args.class4_versus, args.max_stamps,
                                                 args.legus, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shortcut_audit.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "shortcut_audit.md").write_text(format_audit(results) + "\n")
    print(format_audit(results))
    return 0


def stamp_features(stamps):
    """Catalog-level features (`FEATURES`) measured on centred stamps (n, 5, s, s)."""
    from photutils.aperture import CircularAperture
    s = stamps.shape[-1]
    c = (s - 1) / 2.0
    masks = np.stack([CircularAperture((c, c), r=r).to_mask(method="exact").to_image((s, s))
                      for r in (1.0, 3.0)])
    yy, xx = np.indices((s, s))
    r = np.hypot(xx - c, yy - c)
    ann = (r >= 7.0) & (r <= 8.0)
    x = np.nan_to_num(np.asarray(stamps, np.float64), nan=0.0)
    sky = np.median(x[..., ann], axis=-1)                          # (n, 5)
    f = np.einsum("nbij,kij->nbk", x, masks) - sky[..., None] * masks.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(f[..., 1] > 0, -2.5 * np.log10(f[..., 1]) + np.array(_ZP), np.nan)
        ci = np.where((f[..., 0] > 0) & (f[..., 1] > 0),
                      -2.5 * np.log10(f[..., 0] / f[..., 1]), np.nan)
    return _assemble(mag, ci[:, 3])


def _assemble(mag, ci_v):
    colours = mag[:, :-1] - mag[:, 1:]
    return np.column_stack([mag, colours, ci_v])


def catalog_features(catalog):
    """`FEATURES` from a LEGUS catalog's photometry (total mags) and CI."""
    mag = np.column_stack([np.asarray(catalog[f"mag_{b}"], float)
                           for b in ("F275W", "F336W", "F438W", "F555W", "F814W")])
    ci = np.asarray(catalog["ci"], float)
    return _assemble(mag, ci)


def _classifier(seed):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, random_state=seed)


def _scores(y, pred):
    y, pred = np.asarray(y), np.asarray(pred)
    return {"n": int(y.size), "accuracy": float(np.mean(pred == y)),
            "binary_accuracy": float(np.mean((pred <= 2) == (y <= 2))),
            "recall": [float(np.mean(pred[y == c] == c)) if np.any(y == c) else None
                       for c in (1, 2, 3, 4)]}


def feature_accuracy(features, classes, groups=None, seed=0, folds=5):
    """Held-out accuracy of the feature classifier (group-wise when ``groups``).

    With ``groups``, each group is held out in turn and its scores are also
    given under ``"per_group"``.
    """
    y = np.asarray(classes, int)
    pred = np.zeros_like(y)
    if groups is not None and len(set(groups)) >= 2:
        keys = np.asarray(groups)
        splits = [keys == g for g in sorted(set(keys.tolist()))]
    else:
        fold = np.random.default_rng(seed).permutation(y.size) % folds
        splits = [fold == k for k in range(folds)]
    for test in splits:
        clf = _classifier(seed).fit(features[~test], y[~test])
        pred[test] = clf.predict(features[test])
    out = _scores(y, pred)
    if groups is not None:
        keys = np.asarray(groups)
        out["per_group"] = {str(g): _scores(y[keys == g], pred[keys == g])
                            for g in sorted(set(keys.tolist()))}
    return out


def audit_bank(stamps, truth, meta, max_stamps=20000, seed=0):
    """Mock feature-classifier accuracy on one bank (LEGUS classes 1-4)."""
    y = np.asarray(truth["class"], int)
    keep = np.flatnonzero((y >= 1) & (y <= 4))
    if keep.size > max_stamps:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_stamps, replace=False))
    feats = stamp_features(np.asarray(stamps[keep]))
    groups = np.asarray(truth["field"])[keep] if "field" in truth.colnames else None
    res = feature_accuracy(feats, y[keep], groups, seed)
    res.update(kind=meta.get("kind"), randomise=meta.get("randomise", False),
               generator=meta.get("generator"), split="leave-one-field-out"
               if groups is not None else "5-fold")
    return res


def class4_versus(banks, anchored, max_stamps=20000, legus=None, seed=0):
    """How well catalog features tell class-4 stamps from anchored class 1-3 stamps.

    Parameters
    ----------
    banks : list of (folder, stamps, truth, meta)
        Banks whose class-4 stamps are tested.
    anchored : str or Path
        Bank whose class 1-3 stamps are the other side.
    max_stamps : int
        Most stamps a side.
    legus : str or Path, optional
        Folder of LEGUS catalogs: also real class 4 against classes 1-3.
    seed : int

    Returns
    -------
    dict
        Per bank folder (and ``"real"``): ``n_a_side``, ``accuracy`` (5-fold,
        0.5 is no separation), ``single_feature`` (feature -> accuracy) and
        ``median_colours`` of the class-4 side.
    """
    from glue_starclf.learn.banks import open_bank
    rng = np.random.default_rng(seed)
    ref_stamps, ref_truth, meta = open_bank(anchored)
    if "class" not in ref_truth.colnames:
        raise ValueError(f"{anchored}: a {meta.get('kind')} bank has no classes; "
                         "--class4-versus needs a legus or classifier bank")
    pool = np.flatnonzero(np.isin(np.asarray(ref_truth["class"], int), (1, 2, 3)))
    out = {}
    for folder, stamps, truth, _ in banks:
        four = np.flatnonzero(np.asarray(truth["class"], int) == 4)
        n = min(len(four), len(pool), max_stamps)
        if n < 50:
            raise ValueError(f"{folder} and {anchored}: {len(four)} class-4 and {len(pool)} "
                             "class 1-3 stamps; --class4-versus needs 50 of each")
        a = stamp_features(np.asarray(stamps[np.sort(rng.choice(four, n, replace=False))]))
        b = stamp_features(np.asarray(ref_stamps[np.sort(rng.choice(pool, n, replace=False))]))
        out[str(folder)] = _two_way(a, b, seed)
    if legus is not None:
        from glue_starclf.io.catalogs import read_legus_tab
        feats, ys = [], []
        for path in sorted(Path(legus).glob("*.tab")):
            cat = read_legus_tab(path)
            feats.append(catalog_features(cat))
            ys.append(np.asarray(cat["class"], int))
        feats, y = np.concatenate(feats), np.concatenate(ys)
        four, rest = np.flatnonzero(y == 4), np.flatnonzero(np.isin(y, (1, 2, 3)))
        n = min(len(four), len(rest), max_stamps)
        out["real"] = _two_way(feats[rng.choice(four, n, replace=False)],
                               feats[rng.choice(rest, n, replace=False)], seed)
    return out


def _two_way(a, b, seed):
    """Class-4 features ``a`` against class 1-3 features ``b``."""
    f = np.concatenate([a, b])
    y = np.r_[np.full(len(a), 4), np.full(len(b), 1)]
    return {"n_a_side": int(len(a)), "accuracy": feature_accuracy(f, y, seed=seed)["accuracy"],
            "single_feature": {name: feature_accuracy(f[:, [k]], y, seed=seed)["accuracy"]
                               for k, name in enumerate(FEATURES)},
            "median_colours": dict(zip(FEATURES[5:9],
                                       np.round(np.nanmedian(a[:, 5:9], axis=0), 3).tolist()))}


def _galaxy(field):
    return re.sub(r"-(e|w|n|s)$", "", field)


def real_accuracy(folder, seed=0):
    """Leave-one-galaxy-out accuracy on the LEGUS human classes of ``folder``."""
    from glue_starclf.io.catalogs import read_legus_tab
    feats, ys, groups = [], [], []
    paths = sorted(Path(folder).glob("*.tab"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no LEGUS .tab catalogs")
    for path in paths:
        cat = read_legus_tab(path)
        c = np.asarray(cat["class"], int)
        ok = (c >= 1) & (c <= 4)
        feats.append(catalog_features(cat[ok]))
        ys.append(c[ok])
        groups += [_galaxy(cat.meta["field"])] * int(ok.sum())
    feats, y, groups = np.concatenate(feats), np.concatenate(ys), np.array(groups)
    pooled = feature_accuracy(feats, y, groups, seed)
    pooled["per_galaxy"] = pooled.pop("per_group")
    pooled["split"] = "leave-one-galaxy-out"
    return pooled


def format_audit(results):
    """Markdown section of the audit."""
    lines = ["## Shortcut audit: catalog-level features alone",
             "",
             "Gradient-boosted classifier on 3-px aperture magnitudes, colours and CI "
             "measured on the stamps (mock), or on the LEGUS catalogs' photometry and CI "
             "with the human classes (real)."]
    if results["banks"]:
        lines += ["", "| data | split | n | 4-class | binary | recall 1 / 2 / 3 / 4 |",
                  "| --- | --- | --- | --- | --- | --- |"]
    real = results.get("real")
    for name, r in results["banks"].items():
        lines.append(_row(f"mock `{Path(name).name}`" + (" (randomised)" if r.get("randomise")
                                                          else ""), r))
    if real and results["banks"]:
        lines.append(_row("real LEGUS, human classes", real))
        acc = [v["accuracy"] for v in real["per_galaxy"].values() if v["n"] >= 100]
        binacc = [v["binary_accuracy"] for v in real["per_galaxy"].values() if v["n"] >= 100]
        lines += ["", f"Real, per held-out galaxy with >= 100 sources: 4-class "
                      f"{min(acc):.2f}-{max(acc):.2f}, binary {min(binacc):.2f}-{max(binacc):.2f}.",
                  "", "Shortcut margin (mock minus real, 4-class / binary): " + "; ".join(
                      f"`{Path(n).name}` {r['accuracy'] - real['accuracy']:+.2f} / "
                      f"{r['binary_accuracy'] - real['binary_accuracy']:+.2f}"
                      for n, r in results["banks"].items())]
    versus = results.get("class4_versus")
    if versus:
        lines += ["", "### Class 4 against anchored classes 1-3", "",
                  "Held-out accuracy telling class-4 stamps (or real class-4 rows) from "
                  "class 1-3 ones, equal numbers a side (0.5: not at all).", "",
                  "| class 4 of | n a side | accuracy | best single feature | median "
                  + " / ".join(FEATURES[5:9]) + " |", "| --- | --- | --- | --- | --- |"]
        for name, r in versus.items():
            best = max(r["single_feature"], key=r["single_feature"].get)
            label = "real LEGUS catalogs" if name == "real" else f"`{Path(name).name}`"
            lines.append(f"| {label} | {r['n_a_side']} | {r['accuracy']:.3f} | {best} "
                         f"{r['single_feature'][best]:.3f} | "
                         + " / ".join(f"{v:+.2f}" for v in r["median_colours"].values()) + " |")
    return "\n".join(lines)


def _row(name, r):
    from glue_starclf.learn.classifier import format_recall
    rec = format_recall(r["recall"])
    return (f"| {name} | {r['split']} | {r['n']} | {r['accuracy']:.3f} | "
            f"{r['binary_accuracy']:.3f} | {rec} |")
