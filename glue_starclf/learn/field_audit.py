"""Detection, then classification, on mock fields: matched against the truth.

A mock field's truth table lists every source the generator placed; the
field stars of the galaxy background and blends are not in it. Detections
within ``radius`` pixels of a truth source match it (one to one, nearest
first); the rest match no mock source, and a LEGUS classifier would call
them class 4 (spurious: single stars, blends, artefacts). `audit_detections`
measures class 1-3 completeness and the fraction of unmatched detections
the classifier calls class 4; `unmatched_class4_stamps` collects the
unmatched detections of fresh mock fields as class-4 training stamps.
"""

import numpy as np
from astropy.table import Table

__all__ = ["MATCH_RADIUS_PX", "ISOLATION_RADIUS_PX", "match_detections", "audit_detections",
           "unmatched_class4_stamps"]

#: Detections this close [px] to a truth source match it.
MATCH_RADIUS_PX = 2.0

#: Unmatched detections farther than this [px] from every truth source are
#: "isolated" (field stars, noise); nearer ones are mostly off-centre peaks of
#: extended mock sources (associations, background galaxies).
ISOLATION_RADIUS_PX = 10.0


def match_detections(det_xy, truth_xy, radius=MATCH_RADIUS_PX):
    """One-to-one matching of detections to truth sources, nearest pairs first.

    Parameters
    ----------
    det_xy, truth_xy : array_like, shape (n, 2) and (m, 2)
        0-based pixel positions in the same frame.
    radius : float
        Largest matching distance [px].

    Returns
    -------
    ndarray of int, shape (n,)
        Index of the matched truth source per detection, -1 for none.
    """
    from scipy.spatial import cKDTree
    if not radius > 0:
        raise ValueError(f"radius {radius!r} must be positive")
    det = np.asarray(det_xy, float).reshape(-1, 2)
    tru = np.asarray(truth_xy, float).reshape(-1, 2)
    match = np.full(len(det), -1, int)
    if not len(det) or not len(tru):
        return match
    pairs = cKDTree(det).sparse_distance_matrix(cKDTree(tru), radius, output_type="ndarray")
    used = np.zeros(len(tru), bool)
    for i, j, _ in sorted(pairs.tolist(), key=lambda p: p[2]):
        i, j = int(i), int(j)
        if match[i] < 0 and not used[j]:
            match[i], used[j] = j, True
    return match


def audit_detections(detections, truth, predicted_class=None, region=None,
                     radius=MATCH_RADIUS_PX, mag_limit=None):
    """Completeness of classes 1-3 and what the classifier calls the unmatched detections.

    Parameters
    ----------
    detections : astropy.table.Table
        ``x``, ``y`` (e.g. `glue_starclf.core.detection.detect_sources`).
    truth : astropy.table.Table
        The mock field's truth: ``x``, ``y``, ``class``.
    predicted_class : array_like of int, optional
        Class 1-4 of each detection (e.g. `glue_starclf.core.predict.predict`'s
        ``class`` column).
    region : (x0, y0, x1, y1), optional
        Box the detections were searched in; truth outside it is ignored.
    radius : float
        Matching distance [px].
    mag_limit : float, optional
        Also report ``completeness_bright``: the completeness among truth
        sources with ``mag_F555W <= mag_limit`` (e.g. the detection's
        M_V <= -6 limit as an apparent magnitude).

    Returns
    -------
    dict
        ``n_detections``, ``n_matched``, ``n_unmatched``; ``completeness``:
        class -> fraction of truth sources of class 1, 2, 3 (and ``"1-3"``)
        matched by a detection; ``matched_class``: truth class -> number of
        detections matching it; with ``predicted_class``:
        ``unmatched_called_class4`` (fraction of unmatched detections called
        class 4, None if there are none), ``unmatched_called``
        (class -> count), and the same fraction for the unmatched detections
        farther than `ISOLATION_RADIUS_PX` from every truth source
        (``unmatched_isolated_called_class4``, ``n_unmatched_isolated``) and
        for the nearer ones (``unmatched_near_called_class4``,
        ``n_unmatched_near``).
    """
    x, y = np.asarray(truth["x"], float), np.asarray(truth["y"], float)
    inside = np.ones(len(truth), bool)
    if region is not None:
        x0, y0, x1, y1 = region
        inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    tcls = np.asarray(truth["class"], int)[inside]
    dxy = np.column_stack([np.asarray(detections["x"], float), np.asarray(detections["y"], float)])
    match = match_detections(dxy, np.column_stack([x[inside], y[inside]]), radius)
    found = np.zeros(inside.sum(), bool)
    found[match[match >= 0]] = True
    out = {"n_detections": int(len(dxy)), "n_matched": int((match >= 0).sum()),
           "n_unmatched": int((match < 0).sum()), "completeness": {},
           "matched_class": {int(c): int((tcls[match[match >= 0]] == c).sum())
                             for c in (1, 2, 3, 4)}}
    for c in (1, 2, 3):
        k = tcls == c
        out["completeness"][c] = float(found[k].mean()) if k.any() else None
    k = np.isin(tcls, (1, 2, 3))
    out["completeness"]["1-3"] = float(found[k].mean()) if k.any() else None
    if mag_limit is not None:
        bright = np.asarray(truth["mag_F555W"], float)[inside] <= mag_limit
        out["completeness_bright"] = {
            c: (float(found[(tcls == c) & bright].mean()) if ((tcls == c) & bright).any()
                else None) for c in (1, 2, 3)}
        k &= bright
        out["completeness_bright"]["1-3"] = float(found[k].mean()) if k.any() else None
    if predicted_class is not None:
        pred = np.asarray(predicted_class, int)
        if pred.shape != (len(dxy),):
            raise ValueError(f"predicted_class has {pred.size} entries for {len(dxy)} detections")
        un = pred[match < 0]
        out["unmatched_called"] = {int(c): int((un == c).sum()) for c in (1, 2, 3, 4)}
        out["unmatched_called_class4"] = float((un == 4).mean()) if un.size else None
        # nearest of all truth sources, also those just outside the region
        if len(x) and un.size:
            from scipy.spatial import cKDTree
            gap = cKDTree(np.column_stack([x, y])).query(dxy[match < 0])[0]
        else:
            gap = np.full(un.size, np.inf)
        for name, sel in (("isolated", gap > ISOLATION_RADIUS_PX),
                          ("near", gap <= ISOLATION_RADIUS_PX)):
            out[f"n_unmatched_{name}"] = int(sel.sum())
            out[f"unmatched_{name}_called_class4"] = (float((un[sel] == 4).mean())
                                                      if sel.any() else None)
    return out


def unmatched_class4_stamps(mock, size=32, radius=3.0, field_cut=False, **detect_kwargs):
    """Class-4 training stamps: detections of a mock field that match no mock source.

    The field (e.g. a fresh `glue_starclf.sim.mosaic.random_field`) is
    searched with `glue_starclf.core.detection.detect_sources` (LEGUS
    cuts at the field's distance, the CI cut as ``field_cut`` says, unless
    ``detect_kwargs`` say otherwise), and the detections farther than ``radius`` px from every
    mock source are cut out as they would be at inference
    (`glue_starclf.core.cutouts.extract_stamps`).

    Parameters
    ----------
    mock : glue_starclf.sim.mosaic.MockField
        Or anything with ``images`` (5, ny, nx), ``wcs``, ``truth`` (``x``,
        ``y``) and ``distance_mpc``.
    size : int
        Stamp side [px].
    radius : float
        Detections within this distance of a mock source are left out.
    field_cut : bool
        CI cut at the field's own stellar CI plus 0.05 mag
        (`glue_starclf.core.stellar_ci.field_ci_cut`, detection's default)
        instead of the fixed CI >= 1.4 that the banks' recipes used before.
    **detect_kwargs
        Passed to `glue_starclf.core.detection.detect_sources`, overriding
        ``distance_mpc`` and ``ci_min``.

    Returns
    -------
    stamps : ndarray, float32, shape (n, 5, size, size)
        NaN (no data) set to 0, as in the banks.
    table : astropy.table.Table
        ``x``, ``y``, ``ci``, ``mag_v``, ``class`` (4), ``subtype``
        (``"unmatched-detection"``), ``distance_mpc``, ``ci_min`` (the cut).
    """
    from ..core.cutouts import extract_stamps
    from ..core.detection import LEGUS_CI_MIN, detect_sources
    from ..io.mosaic import Mosaic
    mosaic = Mosaic.from_arrays(mock.images, wcs=mock.wcs)
    kwargs = {"distance_mpc": mock.distance_mpc, "ci_min": "field" if field_cut else LEGUS_CI_MIN,
              **detect_kwargs}
    det = detect_sources(mosaic, **kwargs)
    xy = np.column_stack([np.asarray(det["x"], float), np.asarray(det["y"], float)])
    t = mock.truth
    match = match_detections(xy, np.column_stack([np.asarray(t["x"], float),
                                                  np.asarray(t["y"], float)]), radius)
    keep = det[match < 0]
    cut = extract_stamps(mosaic, np.asarray(keep["x"]), np.asarray(keep["y"]), size=size,
                         mosaic_flags=False)
    n = len(keep)
    table = Table({"x": np.asarray(keep["x"], float), "y": np.asarray(keep["y"], float),
                   "ci": np.asarray(keep["ci"], float), "mag_v": np.asarray(keep["mag_v"], float),
                   "class": np.full(n, 4), "subtype": ["unmatched-detection"] * n,
                   "distance_mpc": np.full(n, float(mock.distance_mpc)),
                   "ci_min": np.full(n, np.nan if det.meta.get("ci_min") is None
                                     else float(det.meta["ci_min"]))})
    return np.nan_to_num(cut.stamps, nan=0.0).astype(np.float32), table
