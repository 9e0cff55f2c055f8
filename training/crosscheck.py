"""``crosscheck``: the bundled classifier on a clean-room second implementation of the spec.

Each ``--catalog`` (LEGUS ``.tab``) is rendered by `training.independent_mocks`
(an implementation of the mock-data spec written without our engine), its
sources are classified through the user's path (``starclf classify`` with
``--image BAND=path ... --catalog ... --distance-mpc ...``), and the classes
are scored against the render's truth: per field and pooled, for all rows,
the human-classified rows (``drawn`` False) and the rows whose class was
drawn, 4-class and binary (classes 1-2 vs 3-4) accuracy, recall of each
class and the confusion matrix. The renders' fidelity to the catalogs is
reported beside: per class, the KS statistic of the V-band CI measured on the
image against the catalog's, and per band the median and 95th percentile of
|rendered noiseless total - catalog magnitude| (and of the magnitude measured
on the image as LEGUS did). The pooled human rows are also broken down by
rendered sub-type and by catalog CI above the field's stellar CI, the
quantity the render's stellar locus (``--stellar-ci-gap``) decides.

``--bank DIR`` also writes the fields' stamps, cut as at inference, as a
classifier bank (``make-bank``'s layout) for ``evaluate`` or training.

``--physical N`` also renders N isolated clusters in 004's setting
(`training.independent_mocks.render_physical_field`: 4.5 Mpc, F336W, F438W
and F814W) and scores the physical estimates: the 95th percentile of the
absolute error (next to 004's bounds), the median error and the coverage of
the 16th-84th percentile intervals of log age, log mass, A_V and log r_h.

Example::

    python -m training crosscheck --catalog ngc1566.tab --catalog ngc4449.tab \\
        --region-size 3000 --out /tmp/crosscheck --report models/reports/crosscheck
"""

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run", "score", "score_physical", "fidelity", "breakdown",
           "field_stamps", "SUBSETS", "CI_BINS", "RENDERERS", "BOUNDS_004"]

#: Row subsets scored: name -> selector of the truth table's ``drawn`` column.
SUBSETS = {"all": lambda drawn: np.ones(len(drawn), bool),
           "human": lambda drawn: ~drawn,
           "drawn": lambda drawn: drawn}

_CLASSES = (1, 2, 3, 4)

#: Clean-room implementations of the spec, each written without our engine and
#: without the others: name -> module with ``render_anchored_field``.
RENDERERS = {name: f"training.{name}" for name in
             ("independent_mocks", "independent_mocks2", "independent_mocks3",
              "independent_mocks4")}


def add_arguments(p):
    p.add_argument("--catalog", action="append", default=[],
                   help="LEGUS .tab catalog to render and score (repeatable)")
    p.add_argument("--region-size", type=int, default=3000,
                   help="side of each rendered region [px] (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="render seed (default 0)")
    p.add_argument("--out", required=True, help="folder for the renders and results")
    p.add_argument("--report", required=True, help="folder for crosscheck.json / .md")
    p.add_argument("--bank", default=None,
                   help="also write the fields' 32-px stamps, cut as at inference, as a "
                        "classifier bank (make-bank's layout, kind legus) into this folder")
    p.add_argument("--stellar-ci-gap", type=float, default=None,
                   help="independent_mocks only: each field's stellar CI is its catalog's "
                        "1st-percentile CI minus this [mag] (default 0.05)")
    p.add_argument("--physical", type=int, default=0, metavar="N",
                   help="also render N isolated clusters in 004's setting "
                        "(independent_mocks.render_physical_field) and score the physical "
                        "estimates (default 0: none)")
    p.add_argument("--models", default=None, help="models folder (default: the bundled models)")
    p.add_argument("--renderer", choices=sorted(RENDERERS), default="independent_mocks",
                   help="the clean-room implementation that renders the fields (default "
                        "independent_mocks)")


def _subset_scores(t, p):
    """Scores of true classes ``t`` (1-4) against predictions ``p`` (0: unclassified)."""
    n = len(t)
    conf = np.zeros((4, 4), int)
    ok = p > 0
    np.add.at(conf, (t[ok] - 1, p[ok] - 1), 1)
    return {"n": int(n), "n_unclassified": int((~ok).sum()),
            "accuracy_4class": float((t == p).mean()) if n else None,
            "accuracy_binary": float((ok & ((t <= 2) == (p <= 2))).mean()) if n else None,
            "recall": {str(c): float((p[t == c] == c).mean()) if (t == c).any() else None
                       for c in _CLASSES},
            "confusion": conf.tolist()}


def score(results, truth):
    """Scores of predicted classes against a render's truth.

    Parameters
    ----------
    results : astropy.table.Table
        ``starclf classify`` output (``id``, ``class``).
    truth : astropy.table.Table
        ``truth.ecsv`` of a render (``id``, ``class``, ``drawn``).

    Returns
    -------
    dict
        For each of `SUBSETS`: ``n``, ``accuracy_4class``, ``accuracy_binary``
        (cluster = classes 1-2), ``recall`` (class -> fraction, None without
        rows) and ``confusion`` (4x4 counts, rows true class 1-4, columns
        predicted). Rows without a finite predicted class count as wrong in
        every measure (predicted "class 0", outside the matrix) and are
        counted in ``n_unclassified``.

    Raises
    ------
    ValueError
        If a table lacks a needed column, a truth id is missing from the
        results, or a truth class is not 1-4.
    """
    for name, table, cols in (("results", results, ("id", "class")),
                              ("truth", truth, ("id", "class", "drawn"))):
        missing = [c for c in cols if c not in table.colnames]
        if missing:
            raise ValueError(f"{name} table: missing column(s) {', '.join(missing)}")
    tclass = np.asarray(truth["class"], int)
    if not np.isin(tclass, _CLASSES).all():
        bad = sorted(set(tclass.tolist()) - set(_CLASSES))
        raise ValueError(f"truth table: class values {bad} are not 1-4")
    pred_by_id = {}
    for i, c in zip(np.asarray(results["id"]), np.asarray(results["class"], float)):
        pred_by_id[int(i)] = int(c) if np.isfinite(c) else 0
    ids = [int(i) for i in truth["id"]]
    lost = [i for i in ids if i not in pred_by_id]
    if lost:
        raise ValueError(f"results table: {len(lost)} truth id(s) missing, e.g. id {lost[0]}")
    pclass = np.array([pred_by_id[i] for i in ids], int)
    drawn = np.asarray(truth["drawn"], bool)
    return {name: _subset_scores(tclass[select(drawn)], pclass[select(drawn)])
            for name, select in SUBSETS.items()}


def fidelity(truth, images, zeropoint):
    """How closely a render follows its catalog.

    Parameters
    ----------
    truth : astropy.table.Table
        ``truth.ecsv`` of a render.
    images : dict
        Band -> its image (ndarray, e-/s).
    zeropoint : dict
        Band -> Vega magnitude of 1 e-/s in the render.

    Returns
    -------
    dict
        ``ci_ks`` (class -> {n, ks, ks_model}: two-sample KS statistic of the
        CI measured on the image (and of the noiseless isolated model CI)
        against the catalog's CI, rows with a finite catalog CI),
        ``mag_offset`` (band -> {n, median, p95} of |rendered total - catalog mag| over the
        rows the catalog measured in the band, inside its frame),
        ``image_mag_offset`` (band -> {n, median, p95}: the signed median and
        the 95th percentile of |.| of the image's 4 px aperture magnitude with
        the PSF's aperture correction minus the catalog magnitude, as LEGUS
        measured; it includes noise, crowding and the light of extended
        sources beyond 4 px) and the per-row ``ci_image`` and
        ``image_mag_<band>`` (for pooling).
    """
    from training.independent_mocks import aperture_mags, measure_ci
    per_row = {"ci_image": measure_ci(images["F555W"], truth["x"], truth["y"])}
    for band, image in images.items():
        per_row[f"image_mag_{band}"] = aperture_mags(
            image, truth["x"], truth["y"], zeropoint[band]) - truth.meta[f"apcor_{band}"]
    return dict(_fidelity(truth, per_row), **per_row)


def _ks(a, b):
    from scipy.stats import ks_2samp
    return float(ks_2samp(a, b, method="asymp").statistic)


def _fidelity(truth, per_row):
    from glue_starclf.io.bands import BANDS
    ci_img = np.asarray(per_row["ci_image"], float)
    ci_cat = np.asarray(truth["ci_catalog"], float)
    ci_mod = np.asarray(truth["ci_model"], float)
    out = {"ci_ks": {}, "mag_offset": {}, "image_mag_offset": {}}
    for c in _CLASSES:
        m = (np.asarray(truth["class"]) == c) & np.isfinite(ci_cat)
        mi = m & np.isfinite(ci_img)
        out["ci_ks"][str(c)] = {
            "n": int(m.sum()),
            "ks": _ks(ci_img[mi], ci_cat[m]) if mi.sum() > 1 else None,
            "ks_model": _ks(ci_mod[m], ci_cat[m]) if m.sum() > 1 else None}
    for b in BANDS:
        d = np.abs(np.asarray(truth[f"mag_{b}"], float)
                   - np.asarray(truth[f"catalog_mag_{b}"], float))
        d = d[~np.asarray(truth[f"outside_{b}"], bool) & np.isfinite(d)]
        out["mag_offset"][b] = {"n": int(d.size),
                                "median": float(np.median(d)) if d.size else None,
                                "p95": float(np.percentile(d, 95)) if d.size else None}
        d = (np.asarray(per_row[f"image_mag_{b}"], float)
             - np.asarray(truth[f"catalog_mag_{b}"], float))
        d = d[~np.asarray(truth[f"outside_{b}"], bool) & np.isfinite(d)]
        out["image_mag_offset"][b] = {
            "n": int(d.size), "median": float(np.median(d)) if d.size else None,
            "p95": float(np.percentile(np.abs(d), 95)) if d.size else None}
    return out


#: Bins of (catalog CI - the field's stellar CI) [mag] of `breakdown`.
CI_BINS = (0.0, 0.15, 0.3, 0.5, np.inf)


def _family(subtype):
    parts = str(subtype).split(":")
    return parts[0] if parts[0] in ("association", "asterism", "galaxy") else ":".join(parts[:2])


def breakdown(results, truth):
    """Where the human rows' classes go: by rendered sub-type and by CI.

    Parameters
    ----------
    results : astropy.table.Table
        ``id``, ``class`` (in the truth's row order).
    truth : astropy.table.Table
        ``id``, ``class``, ``drawn``, ``subtype``, ``ci_over_stellar``
        (catalog CI minus the field's stellar CI).

    Returns
    -------
    dict
        ``by_subtype``: sub-type family -> {n, predicted: counts of classes
        1-4}; ``recall_by_ci``: class -> list of {ci_lo, ci_hi, n, recall}
        over `CI_BINS`.
    """
    pred = dict(zip(np.asarray(results["id"]).tolist(),
                    np.nan_to_num(np.asarray(results["class"], float)).astype(int).tolist()))
    human = ~np.asarray(truth["drawn"], bool)
    tcls = np.asarray(truth["class"], int)[human]
    pcls = np.array([pred[i] for i in np.asarray(truth["id"])[human].tolist()], int)
    fam = np.array([_family(s) for s in np.asarray(truth["subtype"])[human]])
    ci = np.asarray(truth["ci_over_stellar"], float)[human]
    out = {"by_subtype": {}, "recall_by_ci": {}}
    for f in sorted(set(fam)):
        m = fam == f
        out["by_subtype"][f] = {"n": int(m.sum()), "class": int(np.bincount(tcls[m]).argmax()),
                                "predicted": [int((pcls[m] == c).sum()) for c in _CLASSES]}
    for c in _CLASSES:
        rows = []
        for lo, hi in zip(CI_BINS[:-1], CI_BINS[1:]):
            m = (tcls == c) & (ci >= lo) & (ci < hi)
            rows.append({"ci_lo": lo, "ci_hi": None if np.isinf(hi) else hi, "n": int(m.sum()),
                         "recall": float((pcls[m] == c).mean()) if m.any() else None})
        out["recall_by_ci"][str(c)] = rows
    return out


#: 004's 95th percentiles of the absolute error in its setting (its mocks).
BOUNDS_004 = {"log_age": 0.9, "log_mass": 0.4, "av": 1.4, "log_r_h": 0.2}


def score_physical(results, truth):
    """How well the physical estimates recover a render's clusters.

    Parameters
    ----------
    results : astropy.table.Table
        ``starclf classify`` output: ``id`` and, for ``log_age``,
        ``log_mass``, ``av`` and ``r_h`` [pc], the estimate and its ``_lo`` /
        ``_hi`` percentiles.
    truth : astropy.table.Table
        ``id``, ``log_age``, ``log_mass``, ``av``, ``r_h`` [pc].

    Returns
    -------
    dict
        Per parameter (``log_age``, ``log_mass``, ``av``, ``log_r_h``): ``n``
        (rows with a finite estimate), ``p95_abs_error``, ``median_error``
        (estimate - truth), ``coverage`` (truth within the 16th-84th
        percentiles) and 004's ``bound_004``.
    """
    row = {int(i): k for k, i in enumerate(np.asarray(results["id"]))}
    missing = [int(i) for i in truth["id"] if int(i) not in row]
    if missing:
        raise ValueError(f"results table: {len(missing)} truth id(s) missing, e.g. id "
                         f"{missing[0]}")
    res = results[[row[int(i)] for i in truth["id"]]]
    out = {}
    for name, col in (("log_age", "log_age"), ("log_mass", "log_mass"), ("av", "av"),
                      ("log_r_h", "r_h")):
        t, est, lo, hi = (np.asarray(c, float) for c in
                          (truth[col], res[col], res[f"{col}_lo"], res[f"{col}_hi"]))
        if col == "r_h":
            with np.errstate(divide="ignore", invalid="ignore"):
                t, est, lo, hi = (np.log10(v) for v in (t, est, lo, hi))
        ok = np.isfinite(t) & np.isfinite(est)
        err = est[ok] - t[ok]
        out[name] = {"n": int(ok.sum()),
                     "p95_abs_error": float(np.percentile(np.abs(err), 95)) if ok.any() else None,
                     "median_error": float(np.median(err)) if ok.any() else None,
                     "coverage": float(np.mean((t[ok] >= lo[ok]) & (t[ok] <= hi[ok])))
                     if ok.any() else None,
                     "bound_004": BOUNDS_004[name]}
    return out


def _physical(args, out_root):
    from astropy.table import Table

    from training.independent_mocks import render_physical_field
    t0 = time.time()
    render = render_physical_field(out_root / "physical", n=args.physical, seed=args.seed)
    t1 = time.time()
    results_path = Path(render["truth"]).parent / "results.ecsv"
    _classify(render, results_path, args.models)
    scores = score_physical(Table.read(results_path), Table.read(render["truth"]))
    print("physical, 004's setting: p95 " + " / ".join(
        f"{k} {_fmt(v['p95_abs_error'])}" for k, v in scores.items()))
    return {"n": args.physical, "distance_mpc": render["distance_mpc"],
            "render_s": t1 - t0, "classify_s": time.time() - t1, "scores": scores}


def _classify(render, out, models):
    from glue_starclf.cli.main import main as starclf
    argv = ["classify"]
    for band, path in render["images"].items():
        argv += ["--image", f"{band}={path}"]
    argv += ["--catalog", str(render["catalog"]), "--distance-mpc", str(render["distance_mpc"]),
             "--out", str(out), "--overwrite"]
    if models:
        argv += ["--models", str(models)]
    status = starclf(argv)
    if status != 0:
        raise RuntimeError(f"starclf classify failed (status {status}) on {render['catalog']}")


def _fmt(v):
    return "-" if v is None else f"{v:.3f}"


def _markdown(report):
    lines = ["# Cross-check: the ensembles on a clean-room implementation of the spec", "",
             f"Command: `python -m training {' '.join(report['argv'])}`", "",
             f"Renders by `training/{report['renderer']}.py` (written from the spec alone); "
             f"estimates from `starclf classify` with the {report['models']} models.", ""]
    if "pooled" in report:
        lines += _classifier_markdown(report)
    if "physical" in report:
        ph = report["physical"]
        lines += ["## Physical estimates in 004's setting", "",
                  f"{ph['n']} isolated clusters at {ph['distance_mpc']} Mpc (log M 3.5-5.5, "
                  "r_h 0.04-0.4\", A_V 0-3, all ages; F336W, F438W, F814W), "
                  "`independent_mocks.render_physical_field`; render "
                  f"{ph['render_s']:.0f} s, classify {ph['classify_s']:.0f} s.", "",
                  "| parameter | n | p95 abs. error | 004's bound | median error | "
                  "16-84% coverage |", "| --- | --- | --- | --- | --- | --- |"]
        for name, v in ph["scores"].items():
            lines.append(f"| {name} | {v['n']} | {_fmt(v['p95_abs_error'])} | "
                         f"{v['bound_004']} | {_fmt(v['median_error'])} | "
                         f"{_fmt(v['coverage'])} |")
    return "\n".join(lines) + "\n"


def _classifier_markdown(report):
    lines = ["## Scores", "",
             "| field | rows | n | 4-class | binary | recall 1 | recall 2 | recall 3 | recall 4 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in list(report["fields"].items()) + [("pooled", report["pooled"])]:
        for subset, s in entry["scores"].items():
            r = s["recall"]
            lines.append(f"| {name} | {subset} | {s['n']} | {_fmt(s['accuracy_4class'])} | "
                         f"{_fmt(s['accuracy_binary'])} | {_fmt(r['1'])} | {_fmt(r['2'])} | "
                         f"{_fmt(r['3'])} | {_fmt(r['4'])} |")
    lines += ["", "Pooled confusion matrices (rows: true class 1-4; columns: predicted 1-4):",
              ""]
    for subset, s in report["pooled"]["scores"].items():
        lines.append(f"- {subset}: `{s['confusion']}`")
    bd = report["pooled"]["breakdown"]
    lines += ["", "Pooled human rows by rendered sub-type (predicted classes 1 / 2 / 3 / 4):", "",
              "| sub-type | true class | n | predicted 1 | 2 | 3 | 4 |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for fam, e in bd["by_subtype"].items():
        lines.append(f"| {fam} | {e['class']} | {e['n']} | "
                     + " | ".join(str(v) for v in e["predicted"]) + " |")
    lines += ["", "Pooled human rows: recall by catalog CI minus the field's stellar CI [mag]:",
              "", "| class | " + " | ".join(
                  f"{r['ci_lo']}-{r['ci_hi'] if r['ci_hi'] is not None else ''}"
                  for r in bd["recall_by_ci"]["1"]) + " |",
              "| --- |" + " --- |" * len(bd["recall_by_ci"]["1"])]
    for c, rows in bd["recall_by_ci"].items():
        cells = [f"{_fmt(r['recall'])} (n={r['n']})" for r in rows]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "## Fidelity of the renders to the catalogs", "",
              "KS statistic of the V CI measured on the image (model: noiseless isolated "
              "source) vs the catalog CI, per class:", "",
              "| field | class 1 | class 2 | class 3 | class 4 |",
              "| --- | --- | --- | --- | --- |"]
    for name, entry in list(report["fields"].items()) + [("pooled", report["pooled"])]:
        ks = entry["fidelity"]["ci_ks"]
        lines.append(f"| {name} | " + " | ".join(
            f"{_fmt(ks[c]['ks'])} ({_fmt(ks[c]['ks_model'])}, n={ks[c]['n']})"
            for c in ("1", "2", "3", "4")) + " |")
    for key, caption in (
            ("mag_offset", "|rendered noiseless total - catalog mag| per band, median / p95:"),
            ("image_mag_offset", "Measured on the image as LEGUS did (4 px aperture, sky 7-8 "
             "px, the PSF's aperture correction) minus the catalog magnitude: signed median / "
             "p95 of |.| (noise, crowding and extended light beyond 4 px included):")):
        lines += ["", caption, "", "| field | " + " | ".join(report["bands"]) + " |",
                  "| --- |" + " --- |" * len(report["bands"])]
        for name, entry in list(report["fields"].items()) + [("pooled", report["pooled"])]:
            mo = entry["fidelity"][key]
            lines.append(f"| {name} | " + " | ".join(
                f"{_fmt(mo[b]['median'])} / {_fmt(mo[b]['p95'])}" for b in report["bands"])
                + " |")
    lines += ["", "## Fields", ""]
    for name, entry in report["fields"].items():
        lines.append(f"- {name}: region {entry['region']}, distance {entry['distance_mpc']} Mpc, "
                     f"stellar CI {entry['stellar_ci']:.3f}, render {entry['render_s']:.0f} s, "
                     f"classify {entry['classify_s']:.0f} s")
    return lines + [""]


def field_stamps(render):
    """A rendered field's sources as classifier bank rows, cut as at inference.

    Parameters
    ----------
    render : dict
        `render_anchored_field`'s return value (``images``, ``truth_table``,
        ``stellar_ci``, ``field``, ``distance_mpc``).

    Returns
    -------
    stamps : ndarray, shape (n, 5, 32, 32)
        Through `glue_starclf.io.mosaic.open_mosaic` (the files' calibration)
        and `glue_starclf.core.cutouts.extract_stamps`, NaN set to 0.
    truth : astropy.table.Table
        ``id``, ``x``, ``y``, ``class``, ``subtype``, ``legus_class`` (the
        catalog's class, 0 where the render drew it), ``catalog_ci``,
        ``stellar_ci`` (measured on the image, as `predict` does),
        ``psf_stellar_ci`` (the render's), ``field``, ``distance_mpc``.
    """
    from astropy.table import Table

    from glue_starclf.core.cutouts import extract_stamps
    from glue_starclf.core.stellar_ci import measure_stellar_ci
    from glue_starclf.io.mosaic import open_mosaic
    t = render["truth_table"]
    with open_mosaic({b: str(p) for b, p in render["images"].items()}) as mosaic:
        cut = extract_stamps(mosaic, np.asarray(t["x"], float), np.asarray(t["y"], float),
                             size=32)
        stellar_ci = measure_stellar_ci(mosaic)[0]
    out = Table({"id": t["id"], "x": t["x"], "y": t["y"], "class": t["class"],
                 "subtype": np.asarray(t["subtype"]).astype(str),
                 "legus_class": t["catalog_class"], "catalog_ci": t["ci_catalog"]})
    out["stellar_ci"] = stellar_ci
    out["psf_stellar_ci"] = render["stellar_ci"]
    out["field"] = render["field"]
    out["distance_mpc"] = render["distance_mpc"]
    return np.nan_to_num(cut.stamps, nan=0.0).astype(np.float32), out


def _write_bank(folder, stamps, tables, args):
    from astropy.table import vstack
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "stamps.npy", np.concatenate(stamps))
    truth = vstack(tables, metadata_conflicts="silent")
    truth.meta = {"kind": "legus"}
    truth.write(folder / "truth.ecsv", overwrite=True)
    meta = {"kind": "legus", "renderer": args.renderer, "seed": args.seed,
            "region_size": args.region_size, "catalogs": [Path(c).name for c in args.catalog],
            "n_stamps": len(truth), "command": "python -m training " + " ".join(
                getattr(args, "argv", []))}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _pooled(truths, preds):
    from astropy.table import vstack
    # ids are unique only within a field, so rows get running numbers
    start = 0
    for t, p in zip(truths, preds):
        new_id = dict(zip(np.asarray(t["id"]).tolist(), range(start, start + len(t))))
        t["id"] = [new_id[i] for i in np.asarray(t["id"]).tolist()]
        p["id"] = [new_id.get(i, -1) for i in np.asarray(p["id"]).tolist()]
        start += len(t)
    pooled_truth = vstack(truths, metadata_conflicts="silent")
    pooled_preds = vstack(preds, metadata_conflicts="silent")
    return {"scores": score(pooled_preds, pooled_truth),
            "fidelity": _fidelity(pooled_truth, pooled_truth),
            "breakdown": breakdown(pooled_preds, pooled_truth)}


def run(args):
    import importlib

    from astropy.io import fits
    from astropy.table import Table

    from glue_starclf.io.bands import BANDS
    from glue_starclf.io.catalogs import legus_field_name
    render_anchored_field = importlib.import_module(
        RENDERERS[args.renderer]).render_anchored_field
    catalogs = [Path(c) for c in args.catalog]
    if not catalogs and args.physical <= 0:
        raise ValueError("nothing to render: give --catalog and/or --physical N (N > 0)")
    if args.physical < 0:
        raise ValueError(f"--physical {args.physical}: must be >= 0")
    for c in catalogs:
        if not c.is_file():
            raise FileNotFoundError(f"{c}: no such LEGUS catalog file")
    if args.stellar_ci_gap is not None and args.renderer != "independent_mocks":
        raise ValueError(f"--stellar-ci-gap is a parameter of independent_mocks, not of "
                         f"{args.renderer}")
    if args.region_size < 128:
        raise ValueError(f"--region-size {args.region_size}: must be at least 128 px")
    out_root, report_dir = Path(args.out), Path(args.report)
    if args.bank and not catalogs:
        raise ValueError("--bank needs --catalog")
    fields, truths, preds, bank = {}, [], [], ([], [])
    for path in catalogs:
        t0 = time.time()
        gap = ({} if args.stellar_ci_gap is None
               else {"stellar_ci_gap": args.stellar_ci_gap})
        render = render_anchored_field(path, out_root / legus_field_name(path),
                                       region_size=args.region_size, seed=args.seed, **gap)
        t1 = time.time()
        results_path = Path(render["truth"]).parent / "results.ecsv"
        _classify(render, results_path, args.models)
        t2 = time.time()
        truth = Table.read(render["truth"])
        results = Table.read(results_path)
        fid = fidelity(truth, {b: fits.getdata(p) for b, p in render["images"].items()},
                       render["vega_zeropoint"])
        for name in ["ci_image"] + [f"image_mag_{b}" for b in BANDS]:
            truth[name] = fid.pop(name)
        fields[render["field"]] = {
            "catalog": str(path), "region": list(render["region"]),
            "distance_mpc": render["distance_mpc"], "stellar_ci": render["stellar_ci"],
            "psf_sigma_px": render.get("psf_sigma_px"), "render_s": t1 - t0, "classify_s": t2 - t1,
            "scores": score(results, truth), "fidelity": fid,
            "subtypes": {str(k): int(v) for k, v in zip(*np.unique(
                np.asarray(truth["subtype"]), return_counts=True))}}
        truth["ci_over_stellar"] = truth["ci_catalog"] - render["stellar_ci"]
        if args.bank:
            for part, rows in zip(bank, field_stamps(render)):
                part.append(rows)
        truths.append(truth)
        preds.append(results["id", "class"])
        print(f"{render['field']}: {len(truth)} rows, 4-class "
              f"{_fmt(fields[render['field']]['scores']['all']['accuracy_4class'])}, "
              f"render {t1 - t0:.0f} s, classify {t2 - t1:.0f} s")
    report = {"argv": getattr(args, "argv", []), "bands": list(BANDS), "seed": args.seed,
              "region_size": args.region_size, "stellar_ci_gap": args.stellar_ci_gap,
              "renderer": args.renderer, "models": args.models or "bundled",
              "fields": fields}
    if truths:
        report["pooled"] = _pooled(truths, preds)
    if args.bank:
        _write_bank(args.bank, *bank, args)
    if args.physical:
        report["physical"] = _physical(args, out_root)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "crosscheck.json").write_text(json.dumps(report, indent=1))
    (report_dir / "crosscheck.md").write_text(_markdown(report))
    if truths:
        s = report["pooled"]["scores"]
        print(f"pooled: all {_fmt(s['all']['accuracy_4class'])} / "
              f"{_fmt(s['all']['accuracy_binary'])}, human "
              f"{_fmt(s['human']['accuracy_4class'])} / {_fmt(s['human']['accuracy_binary'])}")
    print(f"wrote {report_dir / 'crosscheck.md'}")
    return 0
