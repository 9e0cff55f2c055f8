"""Human labels of the sources of a results dataset (no Qt): votes, order, summary, ECSV.

An expert labels sources with the four LEGUS classes in the cluster
inspector; several experts' votes are kept per source, so that their vote
fractions serve as soft labels for fine-tuning (003 §3).

Representation
--------------
The votes live in four components of the dataset (the results dataset
"star clusters", or a catalog carrying result columns), so that glue
shows, filters, exports and saves them with the session like any column:

- ``votes`` (text): every vote of the source, one per labeller, as
  ``name=class@time`` joined by ``;``, e.g.
  ``"ana=1@2026-11-22T10:01:02+00:00;ben=2@2026-11-22T11:00:00+00:00"``.
  It is the record; the three others are derived from it.
- ``class_user`` (number): the class with most votes (1-4); a tie goes to
  the class voted last among the tied; 0 when every vote is "not sure";
  NaN without a vote.
- ``labeller``, ``labelled_at`` (text): who voted last and when (ISO 8601,
  UTC).

A labeller has one vote per source: voting again replaces it (the newer
one wins, also when votes are imported). Class 0 means "not sure": it is
kept (and counted) but is no label for fine-tuning.

Labels files
------------
`export_labels` writes one row per vote: ``id``, ``x``, ``y``, ``ra``,
``dec``, ``class_user``, ``labeller``, ``labelled_at``. It is a labels
table of ``python -m training finetune --labels`` as it is (several rows
of one source are its labellers' votes), and `import_labels` reads it back
(or any table with ``class_user`` or ``class`` and ``id`` or positions),
matching rows by ``id`` (checked against ``ra``/``dec`` when both have
them) or else by position.
"""

import math
import re
from datetime import datetime, timezone

import numpy as np

from ..io.catalogs import read_labels_file
from .results import MATCH_RADIUS_PX, column

__all__ = ["VOTES", "USER_COLUMNS", "NOT_SURE", "N_CLASSES", "ORDERS", "MATCH_ARCSEC",
           "check_labeller", "now", "parse_votes", "format_votes", "consensus", "votes_of",
           "set_votes", "merge_votes", "vote_fractions", "labelling_order", "label_summary",
           "labels_table", "export_labels", "import_labels"]

#: Component holding every vote of a source (the record).
VOTES = "votes"
#: Components written by `set_votes`, in order.
USER_COLUMNS = ("class_user", "labeller", "labelled_at", VOTES)
#: The "not sure" vote.
NOT_SURE = 0
N_CLASSES = 4
#: Orders of the inspector's labelling sorts (see `labelling_order`).
ORDERS = ("disagreement", "stratified")
#: Largest ra/dec offset ["] of an imported label from its source.
MATCH_ARCSEC = 0.1
#: Magnitude bins of the stratified sample (quantiles of ``mag_F555W``).
N_MAG_BINS = 4

_BAD_NAME = re.compile(r"[;=@\n\r\t]")


def check_labeller(name):
    """A labeller's name, stripped.

    Raises
    ------
    ValueError
        If it is empty or holds ``;``, ``=``, ``@`` or a line break.
    """
    name = str(name or "").strip()
    if not name:
        raise ValueError("give the labeller's name (who is voting)")
    if _BAD_NAME.search(name):
        raise ValueError(f"labeller name {name!r} may not contain ';', '=', '@' or tabs/newlines")
    return name


def now():
    """The current time, ISO 8601 in UTC to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def parse_votes(text):
    """The votes of one source from its ``votes`` text.

    Parameters
    ----------
    text : str
        ``name=class@time;...``; empty for none.

    Returns
    -------
    dict
        ``{labeller: (class, time)}`` in the text's order.

    Raises
    ------
    ValueError
        On a malformed vote.
    """
    out = {}
    for item in str(text or "").split(";"):
        item = item.strip()
        if not item:
            continue
        m = re.fullmatch(r"([^=@;]+)=(\d)@(.*)", item)
        if m is None or int(m.group(2)) > N_CLASSES:
            raise ValueError(f"malformed vote {item!r} (expected name=class@time, class 0-4)")
        out[m.group(1).strip()] = (int(m.group(2)), m.group(3).strip())
    return out


def format_votes(votes):
    """The ``votes`` text of ``{labeller: (class, time)}`` (inverse of `parse_votes`)."""
    return ";".join(f"{name}={int(c)}@{when}" for name, (c, when) in votes.items())


def consensus(votes):
    """``class_user``, ``labeller`` and ``labelled_at`` of one source's votes.

    Parameters
    ----------
    votes : dict
        ``{labeller: (class, time)}``.

    Returns
    -------
    (float, str, str)
        The class with most votes (ties: the tied class voted last), 0 when
        all are "not sure", NaN without votes; the last labeller and time.
    """
    if not votes:
        return math.nan, "", ""
    # order of the votes by time, the later in the record winning equal times
    stamp = {name: (when, i) for i, (name, (_, when)) in enumerate(votes.items())}
    last = max(votes, key=stamp.get)
    counts = np.zeros(N_CLASSES + 1)
    latest = {}
    for name, (c, _) in votes.items():
        counts[c] += 1
        latest[c] = max(latest.get(c, stamp[name]), stamp[name])
    if counts[1:].sum() == 0:
        return float(NOT_SURE), last, votes[last][1]
    best = counts[1:].max()
    tied = [k for k in range(1, N_CLASSES + 1) if counts[k] == best]
    return float(max(tied, key=latest.get)), last, votes[last][1]


def votes_of(data):
    """Per-row ``votes`` texts of a dataset (empty strings when it has none)."""
    labels = {c.label: c for c in data.components}
    if VOTES not in labels:
        return np.full(data.shape[0], "", dtype=object)
    return np.asarray(data[labels[VOTES]]).astype(object)


def _write_columns(data, values):
    """Add or replace components ``{label: array}`` and tell glue once."""
    from glue.core.component import CategoricalComponent
    from glue.core.decorators import clear_cache
    from glue.core.message import NumericalDataChangedMessage
    labels = {c.label: c for c in data.components}
    changed = []
    for label, arr in values.items():
        if label not in labels:
            data.add_component(arr, label)
            continue
        comp = data.get_component(labels[label])
        if isinstance(comp, CategoricalComponent):
            comp._data = CategoricalComponent(np.asarray(arr, str))._data
        else:
            comp._data = np.asarray(arr, float)
        changed.append(labels[label])
    if data.hub is not None and changed:
        data.hub.broadcast(NumericalDataChangedMessage(data, components_changed=changed))
    for subset in data.subsets:
        clear_cache(subset.subset_state.to_mask)


def _store(data, votes_text):
    """Write the ``votes`` texts and the three columns derived from them."""
    n = data.shape[0]
    cls = np.full(n, np.nan)
    who = np.full(n, "", dtype=object)
    when = np.full(n, "", dtype=object)
    for i, text in enumerate(votes_text):
        if text:
            cls[i], who[i], when[i] = consensus(parse_votes(text))
    _write_columns(data, dict(zip(USER_COLUMNS, (
        cls, who.astype(str), when.astype(str),
        np.asarray(votes_text, dtype=object).astype(str)))))


def set_votes(data, rows, labeller, classes, when=None):
    """Record one labeller's votes on rows of a dataset.

    Parameters
    ----------
    data : glue.core.data.Data
        The results dataset (or a catalog with result columns).
    rows : sequence of int
    labeller : str
    classes : int or sequence of int
        LEGUS class 1-4, or 0 for "not sure", per row.
    when : str, optional
        ISO time of the votes (default: now).

    Raises
    ------
    ValueError
        Bad labeller name, class outside 0-4, row out of range.
    """
    labeller = check_labeller(labeller)
    rows = np.atleast_1d(np.asarray(rows, int))
    classes = np.broadcast_to(np.asarray(classes), rows.shape)
    bad = ~np.isin(classes, np.arange(N_CLASSES + 1))
    if bad.any():
        raise ValueError(f"unknown class {classes[bad][0]!r} (1-4, or 0 for not sure)")
    if len(rows) and (rows.min() < 0 or rows.max() >= data.shape[0]):
        raise ValueError(f"row out of range 0-{data.shape[0] - 1}")
    when = when or now()
    texts = votes_of(data)
    for r, c in zip(rows, classes):
        v = parse_votes(texts[r])
        v.pop(labeller, None)  # the new vote goes last
        v[labeller] = (int(c), when)
        texts[r] = format_votes(v)
    _store(data, texts)


def merge_votes(old, new):
    """Votes of one source after adding ``new`` ones: per labeller the newer vote wins.

    Parameters
    ----------
    old, new : dict
        ``{labeller: (class, time)}`` as `parse_votes` gives them; times are
        ISO 8601 texts, compared as strings.

    Returns
    -------
    (dict, int, int)
        The merged votes, and how many of ``new`` were added and replaced
        an older vote.
    """
    merged = dict(old)
    added = replaced = 0
    for name, (c, when) in new.items():
        if name not in merged:
            merged[name] = (c, when)
            added += 1
        elif (c, when) != merged[name] and when > merged[name][1]:
            merged.pop(name)
            merged[name] = (c, when)
            replaced += 1
    return merged, added, replaced


def vote_fractions(data):
    """The labelled rows of a dataset and their vote fractions (soft labels).

    Returns
    -------
    rows : ndarray of int
        Rows with at least one vote 1-4 ("not sure" votes do not count).
    fractions : ndarray, shape (len(rows), 4)
        Per-class vote fractions, rows summing to 1.
    """
    rows, fracs = [], []
    for i, text in enumerate(votes_of(data)):
        counts = np.zeros(N_CLASSES)
        for c, _ in parse_votes(text).values():
            if c != NOT_SURE:
                counts[c - 1] += 1
        if counts.sum():
            rows.append(i)
            fracs.append(counts / counts.sum())
    return np.asarray(rows, int), np.asarray(fracs, float).reshape(-1, N_CLASSES)


def labelling_order(data, rows, order, seed=0):
    """Rows of a dataset in the order they are best labelled.

    Parameters
    ----------
    data : glue.core.data.Data
    rows : ndarray of int
        The candidate rows.
    order : {"disagreement", "stratified"}
        ``disagreement``: ensemble disagreement ``1 - class_agreement``
        first (ties by entropy); ``stratified``: a stratified sample by
        the model's class and V magnitude (`N_MAG_BINS` quantile bins; no
        magnitude is a bin of its own): the strata take turns, in random
        order within each, so that the first N rows hold about N/16 of
        each (equal allocation: the rare classes are not starved).
    seed : int
        Of the random order within strata.

    Returns
    -------
    ndarray of int
        A permutation of ``rows``; rows without the sort value go last.
    """
    rows = np.asarray(rows, int)
    entropy = column(data, "class_entropy")
    ent = np.full(data.shape[0], np.nan) if entropy is None else np.asarray(entropy, float)
    if order == "disagreement":
        agree = column(data, "class_agreement")
        dis = 1.0 - (np.full(data.shape[0], np.nan) if agree is None
                     else np.asarray(agree, float))
        d, e = dis[rows], ent[rows]
        return rows[np.lexsort((np.where(np.isfinite(e), -e, np.inf),
                                np.where(np.isfinite(d), -d, np.inf)))]
    if order != "stratified":
        raise ValueError(f"unknown labelling order {order!r} (one of {', '.join(ORDERS)})")
    cls = column(data, "class")
    cls = np.zeros(len(rows)) if cls is None else np.nan_to_num(np.asarray(cls, float)[rows])
    mag = column(data, "mag_F555W")
    if mag is None and "mag_F555W" in [c.label for c in data.components]:
        mag = np.asarray(data["mag_F555W"])
    mag = np.full(len(rows), np.nan) if mag is None else np.asarray(mag, float)[rows]
    finite = np.isfinite(mag)
    bins = np.full(len(rows), N_MAG_BINS)
    if finite.any():
        edges = np.quantile(mag[finite], np.linspace(0, 1, N_MAG_BINS + 1)[1:-1])
        bins[finite] = np.searchsorted(edges, mag[finite], side="right")
    stratum = cls * (N_MAG_BINS + 1) + bins
    rng = np.random.default_rng(seed)
    rank = np.empty(len(rows))
    for s in np.unique(stratum):
        idx = np.flatnonzero(stratum == s)
        rank[idx] = rng.permutation(len(idx))
    # turn by turn; within a turn, the strata in a random (fixed) order
    strata = np.unique(stratum)
    turn_order = dict(zip(strata, rng.permutation(len(strata))))
    tie = np.array([turn_order[s] for s in stratum])
    return rows[np.lexsort((tie, rank))]


def label_summary(data, labeller=None):
    """Counts of the labels of a dataset and their agreement with the model.

    Parameters
    ----------
    data : glue.core.data.Data
    labeller : str, optional
        Also count this labeller's votes.

    Returns
    -------
    dict
        ``n`` rows, ``labelled`` (rows with any vote), ``mine`` (rows with
        a vote of ``labeller``), ``not_sure`` (rows whose consensus is 0),
        ``soft`` (rows with votes for more than one class), ``confusion``
        (4 x 4 counts, rows: consensus class 1-4, columns: the model's
        class 1-4), ``agree`` (diagonal sum), ``compared`` (matrix sum) and
        ``agreement`` (their ratio, NaN when nothing is compared).
    """
    texts = votes_of(data)
    parsed = [parse_votes(t) for t in texts]
    cls = column(data, "class")
    model = np.full(len(texts), np.nan) if cls is None else np.asarray(cls, float)
    conf = np.zeros((N_CLASSES, N_CLASSES), int)
    not_sure = soft = 0
    for v, m in zip(parsed, model):
        if not v:
            continue
        user, _, _ = consensus(v)
        if len({c for c, _ in v.values() if c != NOT_SURE}) > 1:
            soft += 1
        if user == NOT_SURE:
            not_sure += 1
        elif np.isfinite(m) and 1 <= m <= N_CLASSES:
            conf[int(user) - 1, int(m) - 1] += 1
    compared = int(conf.sum())
    agree = int(np.trace(conf))
    return {"n": len(texts), "labelled": sum(1 for v in parsed if v),
            "mine": sum(1 for v in parsed if labeller in v) if labeller else 0,
            "not_sure": not_sure, "soft": soft, "confusion": conf, "agree": agree,
            "compared": compared, "agreement": agree / compared if compared else math.nan}


# -- labels files --------------------------------------------------------------------

def labels_table(data):
    """The votes of a dataset as a table, one row per vote (see the module docstring).

    Returns
    -------
    astropy.table.Table
        ``id``, ``x``, ``y``, ``ra``, ``dec``, ``class_user``, ``labeller``,
        ``labelled_at``; ``meta`` names the format and the dataset.
    """
    from astropy.table import Table
    n = data.shape[0]
    cols = {}
    for name in ("id", "x", "y", "ra", "dec"):
        v = column(data, name)
        cols[name] = np.full(n, np.nan) if v is None else np.asarray(v)
    if column(data, "id") is None:
        cols["id"] = np.arange(1, n + 1)
    out = {k: [] for k in ("row", "class_user", "labeller", "labelled_at")}
    for i, text in enumerate(votes_of(data)):
        for name, (c, when) in parse_votes(text).items():
            out["row"].append(i)
            out["class_user"].append(c)
            out["labeller"].append(name)
            out["labelled_at"].append(when)
    rows = np.asarray(out["row"], int)
    t = Table(meta={"starclf_labels": 1, "dataset": data.label,
                    "comments": ["Labels of glue-starclf: one row per vote; class_user 1-4 are "
                                 "the LEGUS classes, 0 = not sure. x, y are 0-based pixels."]})
    for name in ("id", "x", "y", "ra", "dec"):
        t[name] = cols[name][rows]
    for unit, name in (("deg", "ra"), ("deg", "dec")):
        t[name].unit = unit
    t["class_user"] = np.asarray(out["class_user"], int)
    t["labeller"] = np.asarray(out["labeller"], str) if len(rows) else np.zeros(0, "U1")
    t["labelled_at"] = np.asarray(out["labelled_at"], str) if len(rows) else np.zeros(0, "U1")
    return t


def export_labels(data, path, overwrite=False):
    """Write a dataset's votes as a labels file (ECSV or CSV), atomically.

    Parameters
    ----------
    data : glue.core.data.Data
        A dataset with a ``votes`` component.
    path : str or Path
        The file; its extension chooses the format (`write_table`).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    int
        Votes written.

    Raises
    ------
    ValueError
        If the dataset holds no vote.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    from ..io.writers import write_table
    t = labels_table(data)
    if len(t) == 0:
        raise ValueError(f"“{data.label}” has no labels to export yet")
    write_table(t, path, overwrite=overwrite)
    return len(t)


def _floats(table, name):
    lower = {c.lower(): c for c in table.colnames}
    if name not in lower:
        return None
    return np.asarray(np.ma.filled(np.ma.asarray(table[lower[name]], dtype=float), np.nan),
                      float)


def import_labels(data, path, default_labeller=None):
    """Add the votes of a labels file to a dataset.

    Each row is matched to a source by ``id`` (when both have ids, and the
    row's ``ra``/``dec``, if any, lie within `MATCH_ARCSEC` of the
    source's), else by ``ra``/``dec`` within `MATCH_ARCSEC`, else by
    ``x``/``y`` within `glue_starclf.glue.results.MATCH_RADIUS_PX`. Per
    labeller and source the newer vote wins, so importing a file twice
    changes nothing.

    Parameters
    ----------
    data : glue.core.data.Data
    path : path-like
        ECSV/CSV with ``class_user`` (or ``class``), optionally ``labeller``
        and ``labelled_at``, and ``id`` and/or ``ra``, ``dec`` / ``x``,
        ``y``.
    default_labeller : str, optional
        Labeller of rows without one (default: the file's name).

    Returns
    -------
    dict
        ``rows`` read, ``added`` and ``replaced`` votes, ``unchanged``,
        ``unknown`` (rows matching no source: skipped) with
        ``unknown_examples`` (up to 5 ids or positions), ``by_position``
        (rows matched by position, not id), ``sources`` touched.

    Raises
    ------
    ValueError
        Unreadable file, no class column, a class outside 0-4, no id or
        position columns, a bad labeller name.
    """
    from pathlib import Path

    from scipy.spatial import cKDTree
    t = read_labels_file(path)
    lower = {c.lower(): c for c in t.colnames}
    cls_name = next((lower[n] for n in ("class_user", "class") if n in lower), None)
    if cls_name is None:
        raise ValueError(f"{path}: no class_user or class column; found "
                         f"{', '.join(t.colnames) or 'none'}")
    cls = _floats(t, cls_name.lower())
    empty = ~np.isfinite(cls)
    bad = ~empty & ~np.isin(cls, np.arange(N_CLASSES + 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: unknown class {t[cls_name][row]} in row {row + 1} "
                         f"(classes are 1-4, 0 = not sure)")
    file_ids = np.asarray(t[lower["id"]]).astype(str) if "id" in lower else None
    fra, fdec = _floats(t, "ra"), _floats(t, "dec")
    fx, fy = _floats(t, "x"), _floats(t, "y")
    if file_ids is None and (fra is None or fdec is None) and (fx is None or fy is None):
        raise ValueError(f"{path}: no id, ra/dec or x/y columns to find the sources by")
    who = (np.asarray(t[lower["labeller"]]).astype(str) if "labeller" in lower
           else np.full(len(t), ""))
    when = (np.asarray(t[lower["labelled_at"]]).astype(str) if "labelled_at" in lower
            else np.full(len(t), ""))
    fallback = check_labeller(default_labeller or Path(path).stem)
    n = data.shape[0]
    ids = column(data, "id")
    ids = np.arange(1, n + 1).astype(str) if ids is None else np.asarray(ids).astype(str)
    index = {}
    for i, v in enumerate(ids):
        index.setdefault(v, i)
    ra, dec = (np.asarray(column(data, k), float) if column(data, k) is not None
               else np.full(n, np.nan) for k in ("ra", "dec"))
    x, y = (np.asarray(column(data, k), float) for k in ("x", "y"))
    sky_ok = np.isfinite(ra) & np.isfinite(dec)
    tol = MATCH_ARCSEC / 3600.0
    cos0 = math.cos(math.radians(float(np.median(dec[sky_ok])))) if sky_ok.any() else 1.0
    sky_tree = cKDTree(np.column_stack([np.where(sky_ok, ra * cos0, 1e9),
                                        np.where(sky_ok, dec, 1e9)]))
    pix_tree = cKDTree(np.column_stack([np.nan_to_num(x, nan=-1e9), np.nan_to_num(y, nan=-1e9)]))
    file_sky = (np.isfinite(fra) & np.isfinite(fdec) if fra is not None and fdec is not None
                else np.zeros(len(t), bool))
    file_pix = (np.isfinite(fx) & np.isfinite(fy) if fx is not None and fy is not None
                else np.zeros(len(t), bool))

    def by_position(j):
        """Row of the source at the file row's position, or None."""
        if file_sky[j] and sky_ok.any():
            dist, k = sky_tree.query([fra[j] * cos0, fdec[j]], distance_upper_bound=tol)
        elif file_pix[j]:
            dist, k = pix_tree.query([fx[j], fy[j]], distance_upper_bound=MATCH_RADIUS_PX)
        else:
            return None
        return int(k) if np.isfinite(dist) else None

    def same_place(j, row):
        """False when both have ra/dec and they differ by more than MATCH_ARCSEC."""
        if not (file_sky[j] and sky_ok[row]):
            return True
        return math.hypot((fra[j] - ra[row]) * cos0, fdec[j] - dec[row]) <= tol

    texts = votes_of(data)
    touched, report = set(), {"rows": len(t), "added": 0, "replaced": 0, "unchanged": 0,
                              "unknown": 0, "unknown_examples": [], "by_position": 0,
                              "not_labelled": int(empty.sum())}
    for j in np.flatnonzero(~empty):
        row = index.get(file_ids[j]) if file_ids is not None else None
        if row is not None and not same_place(j, row):
            row = None  # the same id elsewhere: another catalog's numbering
        if row is None:
            row = by_position(j)
            if row is not None and file_ids is not None:
                report["by_position"] += 1
        if row is None:
            report["unknown"] += 1
            if len(report["unknown_examples"]) < 5:
                report["unknown_examples"].append(
                    file_ids[j] if file_ids is not None else
                    f"ra, dec {fra[j]:.6f}, {fdec[j]:.6f}" if file_sky[j] else
                    f"x, y {fx[j]:.1f}, {fy[j]:.1f}" if file_pix[j] else f"row {j + 1}")
            continue
        name = check_labeller(who[j]) if who[j].strip() else fallback
        merged, added, replaced = merge_votes(parse_votes(texts[row]),
                                              {name: (int(cls[j]), when[j].strip())})
        report["added"] += added
        report["replaced"] += replaced
        report["unchanged"] += 1 - added - replaced
        if added or replaced:
            texts[row] = format_votes(merged)
            touched.add(row)
    report["sources"] = len(touched)
    if touched:
        _store(data, texts)
    return report
