"""``surroundings``: how much light and crowding each class sits in, on the renders and in the sky.

A LEGUS catalog's V error at a given magnitude grows with the light around
the source: the sky annulus holds the galaxy's diffuse light and its
neighbours. The catalogs' errors also hold a term common to every row (the
aperture correction's), which the excess of a class over class 1 at the same
magnitude, ``e_k^2 - e_1^2``, cancels. This command measures the same
LEGUS-like error on the stamps of an anchored bank and sets the excesses side
by side:

1. **Data**: a LEGUS-anchored ``--bank`` (``make-bank --kind legus``) and the
   ``--catalogs`` it was rendered from (matched by field name).
2. **Measure**: on each stamp's F555W plane, the flux in a 4 px aperture
   above the median of the 7-8 px annulus, and its error from the source's
   photons and the annulus scatter (robust), at the LEGUS exposure time times
   the stamp's ``exposure_factor``; magnitudes are the rows' catalog V.
3. **Report**: per field and pooled over fields, by human class (1-4) and catalog V bin,
   the median error of the render and the catalog's own error of the same
   rows, and each class's excess over class 1.

A class whose render shows less excess than the catalog sits in emptier
surroundings on the mock than in the sky.

Example::

    python -m training surroundings --bank banks/legus-test --catalogs LEGUS/*.tab --out reports/
"""

import numpy as np

from .report_files import write_report

__all__ = ["add_arguments", "run", "aperture_errors", "error_excess", "pooled_excess", "V_BINS"]

#: Catalog V bins [mag] of the tables.
V_BINS = ((21.0, 22.0), (22.0, 23.0), (23.0, 24.0))
#: Rows a median needs.
_MIN_ROWS = 6
_APERTURE_PX = 4.0


def add_arguments(p):
    p.add_argument("--bank", action="append", required=True,
                   help="LEGUS-anchored bank folder (make-bank --kind legus; repeatable)")
    p.add_argument("--catalogs", nargs="+", required=True,
                   help="the LEGUS .tab files the banks were rendered from")
    p.add_argument("--out", required=True, help="folder for surroundings.md and .json")


def aperture_errors(stamps_v, exposure_s):
    """LEGUS-like V magnitude errors of sources centred on 32-px stamps.

    Parameters
    ----------
    stamps_v : ndarray, shape (n, 32, 32)
        F555W planes [e-/s], the source at pixel (16, 16).
    exposure_s : float or ndarray, shape (n,)
        Exposure time of each stamp [s].

    Returns
    -------
    ndarray, shape (n,)
        1.0857 sigma / flux in the 4 px aperture above the median of the
        `glue_starclf.core.photometry.SKY_ANNULUS` pixels; sigma from the
        source's photons and the annulus scatter (1.4826 MAD) over the
        aperture, with the error of the sky level. NaN where the flux is not
        positive.
    """
    from glue_starclf.core.photometry import SKY_ANNULUS
    v = np.asarray(stamps_v, np.float64)
    yy, xx = np.indices(v.shape[-2:])
    r = np.hypot(xx - 16, yy - 16)
    ap, ann = r <= _APERTURE_PX, (r >= SKY_ANNULUS[0]) & (r <= SKY_ANNULUS[1])
    sky = v[:, ann]
    level = np.median(sky, axis=1)
    scatter = 1.4826 * np.median(np.abs(sky - level[:, None]), axis=1)
    t = np.broadcast_to(np.asarray(exposure_s, float), level.shape)
    counts = (v[:, ap].sum(axis=1) - ap.sum() * level) * t
    var = np.clip(counts, 0, None) + ap.sum() * (scatter * t) ** 2 * (1 + ap.sum() / ann.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, 1.0857 * np.sqrt(var) / counts, np.nan)


def error_excess(mag, err, classes):
    """Median error per class 1-4 and V bin, and each class's excess over class 1.

    Returns a list over `V_BINS` of ``{"bin", "n", "median_err", "excess"}``
    (per class; None where a class has fewer than 6 rows in the bin; the
    excess is ``e_k^2 - e_1^2``, None for class 1 or where either is None).
    """
    mag, err, classes = (np.asarray(a) for a in (mag, err, classes))
    out = []
    for lo, hi in V_BINS:
        med, n = [], []
        for c in (1, 2, 3, 4):
            s = (classes == c) & (mag >= lo) & (mag < hi) & np.isfinite(err)
            n.append(int(s.sum()))
            med.append(float(np.median(err[s])) if s.sum() >= _MIN_ROWS else None)
        exc = [None if k == 0 or med[k] is None or med[0] is None else med[k] ** 2 - med[0] ** 2
               for k in range(4)]
        out.append({"bin": [lo, hi], "n": n, "median_err": med, "excess": exc})
    return out


def pooled_excess(tables):
    """Per V bin and class, the mean of the fields' `error_excess` excesses weighted by the
    class's rows in each (median errors left out: their common term differs by field)."""
    out = []
    for b, (lo, hi) in enumerate(V_BINS):
        n, exc = [0] * 4, [None] * 4
        for k in range(1, 4):
            got = [(t[b]["excess"][k], t[b]["n"][k]) for t in tables
                   if t[b]["excess"][k] is not None]
            n[k] = sum(w for _, w in got)
            if got:
                exc[k] = float(sum(e * w for e, w in got) / n[k])
        n[0] = sum(t[b]["n"][0] for t in tables if t[b]["median_err"][0] is not None)
        out.append({"bin": [lo, hi], "n": n, "median_err": [None] * 4, "excess": exc})
    return out


def _fmt(x, scale=1.0, sign=False):
    return "–" if x is None else (f"{scale * x:+.2f}" if sign else f"{scale * x:.3f}")


def _lines(name, source, rows):
    return [f"| {name} | {source} | {r['bin'][0]:.0f}–{r['bin'][1]:.0f} | "
            + " / ".join(str(k) for k in r["n"]) + " | "
            + " / ".join(_fmt(e) for e in r["median_err"]) + " | "
            + " / ".join(_fmt(e, 1e3, True) for e in r["excess"][1:]) + " |" for r in rows]


def run(args):
    from glue_starclf.io.bands import EXPOSURE_TIME_S
    from glue_starclf.io.catalogs import read_legus_tab
    from glue_starclf.learn.banks import open_bank
    from glue_starclf.sim.fidelity import match_rows
    catalogs = {}
    for path in args.catalogs:
        cat = read_legus_tab(path)
        catalogs[str(cat.meta.get("field", "")).lower()] = cat
    parts = {"render": {}, "catalog": {}}
    for folder in args.bank:
        stamps, truth, _ = open_bank(folder)
        need = {"field", "legus_class", "legus_id", "mag_F555W", "exposure_factor"}
        if not need <= set(truth.colnames):
            raise ValueError(f"{folder}: not a LEGUS-anchored bank (no "
                             f"{', '.join(sorted(need - set(truth.colnames)))} column)")
        if stamps.shape[-1] != 32:
            raise ValueError(f"{folder}: stamps are {stamps.shape[-1]} px, expected 32")
        fields = np.char.lower(np.asarray(truth["field"], str))
        for f in sorted(set(fields)):
            if f not in catalogs:
                raise ValueError(f"{folder}: field {f!r} has no catalog among --catalogs")
            rows = np.flatnonzero(fields == f)
            t = EXPOSURE_TIME_S["F555W"] * np.asarray(truth["exposure_factor"], float)[rows]
            err = aperture_errors(np.asarray(stamps[rows, 3], np.float32), t)
            render = (np.asarray(truth["mag_F555W"], float)[rows], err,
                      np.asarray(truth["legus_class"], int)[rows])
            # The catalog's own values of the same rows.
            cat = catalogs[f][match_rows(truth[rows], catalogs[f])]
            real = (np.asarray(cat["mag_F555W"], float), np.asarray(cat["err_F555W"], float),
                    np.asarray(cat["class"], int))
            for key, part in (("render", render), ("catalog", real)):
                parts[key].setdefault(f, []).append(part)
    result = {"fields": {}, "banks": [str(b) for b in args.bank]}
    lines = ["# Surroundings: V errors of each class on the renders and in the catalogs", "",
             f"Command: `python -m training {' '.join(args.argv)}`", "",
             "Median V error (LEGUS-like: 4 px aperture, 7–8 px annulus) per human class, "
             "and each class's excess over class 1 at the same catalog V, e_k² − e_1² (× 10⁻³; "
             "it cancels the catalogs' aperture-correction term). Less excess on the render "
             "than in the catalog: emptier surroundings on the mock than in the sky.", "",
             "| field | errors of | V | rows 1 / 2 / 3 / 4 | median error 1 / 2 / 3 / 4 | "
             "excess 2 / 3 / 4 (× 10⁻³) |", "| --- | --- | --- | --- | --- | --- |"]
    for f in parts["render"]:
        entry = {}
        for key in ("render", "catalog"):
            # A catalog counts once, however many banks render its field.
            got = parts[key][f] if key == "render" else parts[key][f][:1]
            mag, err, cls = (np.concatenate(a) for a in zip(*got))
            entry[key] = error_excess(mag, err, cls)
            lines += _lines(f, key, entry[key])
        result["fields"][f] = entry
    # Fields differ in depth and in the common term: pool each field's excess, not its rows.
    result["pooled"] = {key: pooled_excess([e[key] for e in result["fields"].values()])
                        for key in ("render", "catalog")}
    for key in ("render", "catalog"):
        lines += _lines("fields pooled", key, result["pooled"][key])
    result["command"] = "python -m training " + " ".join(args.argv)
    write_report(args.out, "surroundings", lines, result)
    return 0
