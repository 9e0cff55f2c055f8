"""How faithfully an anchored mock field reproduces its LEGUS catalog rows.

An anchored source stands for a real catalog row, so its noise-free total
magnitudes (truth columns ``mag_<band>``) must equal the row's in every band
the catalog measured, and its colours with them. `catalog_fidelity` measures
the differences per class and per class-4 sub-type, and the sub-type shares;
the mock-data tests and ``python -m training shortcut-audit`` use it.
"""

import numpy as np

from ..io.bands import BANDS

__all__ = ["COLOURS", "match_rows", "catalog_fidelity", "robust_stats"]

#: Colours of the issue's table: (name, blue band, red band).
COLOURS = (("V-I", "F555W", "F814W"), ("U-B", "F336W", "F438W"))


def robust_stats(d):
    """Median, NMAD, median |d| and 95th percentile of |d| of the finite values."""
    d = np.asarray(d, float)
    d = d[np.isfinite(d)]
    if not d.size:
        return {"n": 0, "median": np.nan, "nmad": np.nan, "median_abs": np.nan,
                "p95_abs": np.nan}
    med = float(np.median(d))
    return {"n": int(d.size), "median": med,
            "nmad": float(1.4826 * np.median(np.abs(d - med))),
            "median_abs": float(np.median(np.abs(d))),
            "p95_abs": float(np.percentile(np.abs(d), 95))}


def match_rows(truth, catalog):
    """Catalog rows of each truth row (by ``legus_id``), as index array into ``catalog``."""
    ids = np.asarray(catalog["id"])
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], np.asarray(truth["legus_id"]))
    pos = np.clip(pos, 0, len(ids) - 1)
    idx = order[pos]
    if not np.all(ids[idx] == np.asarray(truth["legus_id"])):
        raise ValueError("truth rows whose legus_id is not in the catalog")
    return idx


def catalog_fidelity(truth, catalog):
    """Mock minus catalog, per class and class-4 sub-type.

    Parameters
    ----------
    truth : astropy.table.Table
        Truth of `glue_starclf.sim.mosaic.legus_anchored_field` (``legus_id``,
        ``class``, ``subtype``, ``mag_<band>``, ``ci_true``, ``catalog_ci``).
    catalog : astropy.table.Table
        The catalog it was anchored on (`glue_starclf.io.catalogs.read_legus_tab`).

    Returns
    -------
    dict
        ``"class"``: {cls: {"n", "colours": {name: stats}, "bands": {band:
        stats}, "ci": stats}}; ``"subtype"``: the same keyed by
        (cls, subtype) as ``"4:star"``; ``"class4_shares"``: {subtype: share}
        with artifacts (cosmic rays, hot pixels, saturated stars, edges)
        summed as ``"artifact"``. Stats are `robust_stats` of mock - catalog
        over rows whose catalog value is finite.
    """
    idx = match_rows(truth, catalog)
    cat = catalog[idx]
    mock = {b: np.asarray(truth[f"mag_{b}"], float) for b in BANDS}
    real = {b: np.asarray(cat[f"mag_{b}"], float) for b in BANDS}
    cls = np.asarray(truth["class"], int)
    sub = np.asarray(truth["subtype"]).astype(str)

    def block(sel):
        out = {"n": int(sel.sum()), "colours": {}, "bands": {}}
        for name, a, b in COLOURS:
            out["colours"][name] = robust_stats(((mock[a] - mock[b]) - (real[a] - real[b]))[sel])
        for b in BANDS:
            out["bands"][b] = robust_stats((mock[b] - real[b])[sel])
        out["ci"] = robust_stats((np.asarray(truth["ci_true"], float)
                                  - np.asarray(truth["catalog_ci"], float))[sel])
        return out

    result = {"class": {int(c): block(cls == c) for c in (1, 2, 3, 4)}, "subtype": {}}
    for c, s in sorted(set(zip(cls.tolist(), sub.tolist()))):
        result["subtype"][f"{c}:{s}"] = block((cls == c) & (sub == s))
    four = sub[cls == 4]
    kinds = np.array([s if s in ("star", "asterism", "galaxy") else "artifact" for s in four])
    result["class4_shares"] = {k: float(np.mean(kinds == k)) if kinds.size else np.nan
                               for k in ("star", "asterism", "galaxy", "artifact")}
    result["class4_counts"] = {s: int(np.sum(four == s)) for s in sorted(set(four.tolist()))}
    return result
