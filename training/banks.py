"""``make-bank``: cached, memory-mapped training sets from the mock-data engine.

A bank is a folder with ``stamps.npy`` (float32, N x 5 x S x S, opened
memory-mapped for training), ``truth.ecsv`` and ``meta.json`` (what made
it). Stamps are written chunk by chunk into the memory-mapped file, so a
bank of any size needs little memory. A bank whose ``meta.json`` matches
the request is reused, not rebuilt.

Kinds:

- ``classifier``: 32x32 stamps of random mock sources of the four LEGUS
  classes at random distances (`glue_starclf.sim.classbank`).
- ``physical``: 64x64 cluster and background stamps of the physical-
  parameter bank (`glue_starclf.sim.bank`).
- ``legus``: 32x32 stamps cut from LEGUS-anchored mock fields, one field per
  catalog, with a ``field`` column for leave-one-field-out splits.
- ``unmatched``: 32x32 class-4 stamps of the candidates that LEGUS-default
  detection finds on random mock fields (3-20 Mpc), or with ``--catalogs``
  on LEGUS-anchored fields, and that match no mock source: field stars,
  blends and pieces of extended sources, which humans call class 4
  (`glue_starclf.learn.field_audit.unmatched_class4_stamps`). With
  ``--field-star-colours`` the fields' bright stars take the colours of the
  class-4 rows of real LEGUS catalogs: with isochrone colours the detections
  are redder in the UV than real class-4 sources, and colour alone tells
  them from clusters. With ``--match-magnitudes`` the random fields lie at
  the distances of real LEGUS galaxies and the detections kept follow the
  absolute V magnitudes of those catalogs' rows, galaxy by galaxy, as the
  legus banks render them (every row, the uninspected ones with a class
  drawn given their CI): LEGUS-default detections alone are brighter than
  the anchored sources, and brightness alone tells them from clusters.

Domain randomisation (`glue_starclf.sim.domain`): ``--randomise`` draws the
instrument conditions per chunk (classifier, physical) or per field (legus),
with the empirical STDPSFs among the PSF families when ``--stdpsf-dir`` is
given; ``--perturb NAME=VALUE`` instead fixes single conditions (robustness
banks). Both are recorded in ``meta.json`` and per stamp in the truth table.
``--young-light-share F`` lets the young light of a fraction F of the fields
(legus, unmatched; drawn per field from a stream of its own) follow the
field's sources instead of spiral arms: real young clusters sit in star-
forming complexes.
"""

import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.table import vstack

__all__ = ["add_arguments", "run", "make_bank", "catalog_magnitudes", "match_magnitudes"]

KINDS = ("classifier", "physical", "legus", "unmatched")
_CHUNK = 2000


def add_arguments(p):
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--n", type=int, default=20000,
                   help="stamps (classifier, physical, unmatched)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalogs", nargs="+", default=(),
                   help="LEGUS .tab files (kind legus; kind unmatched: detections on these "
                        "LEGUS-anchored fields instead of random fields)")
    p.add_argument("--region-size", type=int, default=3000,
                   help="side of the catalog region rendered per field (kinds legus, "
                        "unmatched with --catalogs)")
    p.add_argument("--out", required=True, help="bank folder")
    p.add_argument("--randomise", action="store_true",
                   help="domain randomisation: draw PSF, depth, sky, noise correlation, "
                        "registration, zeropoints, background and EFF truncation")
    p.add_argument("--stdpsf-dir", help="folder of the PSFSTD_WFC3UV_<band>.fits library "
                                        "(empirical PSFs; not shipped)")
    p.add_argument("--field-star-colours", nargs="+", default=(), metavar="CATALOG",
                   help="kind unmatched: LEGUS .tab files whose class-4 rows give the bright "
                        "field stars their colours (default: isochrone colours)")
    p.add_argument("--match-magnitudes", nargs="+", default=(), metavar="CATALOG",
                   help="kind unmatched: LEGUS .tab files; random fields at these galaxies' "
                        "distances keep the detections that follow their rows' absolute V "
                        "magnitudes (default: 3-20 Mpc, LEGUS cut M_V <= -6)")
    p.add_argument("--field-ci-cut", action="store_true",
                   help="kind unmatched: each field's own CI cut, its measured stellar CI + "
                        "0.05 mag as in the LEGUS catalogs (default: the fixed CI >= 1.4)")
    p.add_argument("--match-rows", action="store_true",
                   help="kind unmatched with --catalogs: keep the detections whose V magnitudes "
                        "fill those of the field's rendered catalog rows (each row once, within "
                        "0.1 mag), so that they are no brighter than the anchored stamps where "
                        "the field has detections that faint (default: every unmatched "
                        "detection)")
    p.add_argument("--max-per-field", type=int, default=None, metavar="N",
                   help="kind unmatched on random fields: keep at most N detections of each "
                        "field (drawn at random), so that more fields, distances and PSFs "
                        "make up the bank")
    p.add_argument("--young-light-share", type=float, default=0.0, metavar="F",
                   help="kinds legus, unmatched: fraction of the fields whose background's "
                        "young light follows the field's sources (LEGUS rows, or the mock "
                        "clusters of random fields) instead of spiral arms (default 0)")
    p.add_argument("--perturb", action="append", default=[], metavar="NAME=VALUE",
                   help="fix one condition (robustness banks), e.g. exposure_factor=0.5, "
                        "psf_family=stdpsf, detector_xy=300,3800; repeatable")


def run(args):
    path = make_bank(args.kind, args.out, n=args.n, seed=args.seed, catalogs=args.catalogs,
                     region_size=args.region_size, randomise=args.randomise,
                     stdpsf_dir=args.stdpsf_dir, perturb=args.perturb,
                     field_star_colours=args.field_star_colours,
                     match_magnitudes=args.match_magnitudes, field_cut=args.field_ci_cut,
                     max_per_field=args.max_per_field, match_rows=args.match_rows,
                     young_light_share=args.young_light_share)
    print(f"bank ready: {path}")


def parse_perturbations(items):
    """``["name=value", ...]`` -> dict of validated perturbations (one-line errors)."""
    from glue_starclf.sim.domain import CHOICES, check_perturbation
    out = {}
    for item in items:
        name, sep, text = str(item).partition("=")
        name = name.strip()
        if not sep or not text.strip():
            raise ValueError(f"--perturb {item!r}: expected NAME=VALUE")
        if name in CHOICES:
            value = text.strip()
        else:
            try:
                vals = [float(v) for v in text.split(",")]
            except ValueError:
                raise ValueError(f"--perturb {item!r}: {text!r} is not a number") from None
            value = vals if name == "detector_xy" else (vals[0] if len(vals) == 1 else vals)
        out[name] = check_perturbation(name, value)
    return out


def _meta(kind, n, seed, catalogs, region_size, randomise=False, perturb=None, stdpsf_dir=None,
          field_star_colours=(), match_magnitudes=(), field_cut=False, max_per_field=None,
          match_rows=False, young_light_share=0.0):
    m = {"kind": kind, "seed": seed, "randomise": bool(randomise),
         "perturb": dict(perturb or {}), "stdpsf": bool(stdpsf_dir),
         "field_star_colours": [os.path.basename(c) for c in field_star_colours],
         "match_magnitudes": [os.path.basename(c) for c in match_magnitudes],
         "field_ci_cut": bool(field_cut), "max_per_field": max_per_field}
    if match_rows:
        m["match_rows"] = True
    if young_light_share:
        m["young_light_share"] = float(young_light_share)
    if catalogs and kind in ("legus", "unmatched"):
        m.update(catalogs=[os.path.basename(c) for c in catalogs], region_size=region_size)
    else:
        m["n"] = n
    return m


def make_bank(kind, out, n=20000, seed=0, catalogs=(), region_size=3000, randomise=False,
              stdpsf_dir=None, perturb=(), field_star_colours=(), match_magnitudes=(),
              field_cut=False, max_per_field=None, match_rows=False, young_light_share=0.0):
    """Build (or reuse) a bank folder; returns its path.

    ``perturb``: ``NAME=VALUE`` strings or a dict (`glue_starclf.sim.domain.perturbed`).
    ``field_star_colours``: LEGUS catalog paths whose class-4 rows colour the
    bright field stars of unmatched banks. ``match_magnitudes``: LEGUS catalog
    paths whose distances and rows' absolute V magnitudes the random fields
    and kept detections of an unmatched bank follow. ``field_cut``: unmatched
    detections pass each field's own CI cut (`glue_starclf.core.stellar_ci.field_ci_cut`);
    ``max_per_field``: at most this many of each random field's detections.
    ``match_rows``: unmatched detections of anchored fields kept only where
    their V magnitudes fill those of the field's rendered rows
    (`match_magnitudes`, each row once). ``young_light_share``: fraction of
    the fields (kinds legus, unmatched) whose young light follows their
    sources (`glue_starclf.sim.domain.YOUNG_LIGHTS`).
    """
    from glue_starclf.sim.domain import perturbed
    from glue_starclf.version import __version__
    if kind not in KINDS:
        raise ValueError(f"unknown bank kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "legus" and not catalogs:
        raise ValueError("a legus bank needs --catalogs")
    if catalogs and kind not in ("legus", "unmatched"):
        raise ValueError(f"--catalogs is for legus and unmatched banks, not {kind}")
    if field_star_colours and kind != "unmatched":
        raise ValueError(f"--field-star-colours is for unmatched banks, not {kind}")
    if match_magnitudes and kind != "unmatched":
        raise ValueError(f"--match-magnitudes is for unmatched banks, not {kind}")
    if field_cut and kind != "unmatched":
        raise ValueError(f"--field-ci-cut is for unmatched banks, not {kind}")
    if max_per_field is not None and (kind != "unmatched" or catalogs or match_magnitudes):
        raise ValueError("--max-per-field is for unmatched banks of random fields")
    if max_per_field is not None and max_per_field < 1:
        raise ValueError(f"--max-per-field {max_per_field} must be >= 1")
    if match_rows and not (kind == "unmatched" and catalogs):
        raise ValueError("--match-rows is for unmatched banks of anchored fields (--catalogs)")
    if match_magnitudes and catalogs:
        raise ValueError("--match-magnitudes is for random fields: leave out --catalogs")
    if not 0.0 <= young_light_share <= 1.0:
        raise ValueError(f"--young-light-share {young_light_share:g} must lie in 0 to 1")
    if young_light_share and kind not in ("legus", "unmatched"):
        raise ValueError(f"--young-light-share is for legus and unmatched banks, not {kind}")
    if kind != "legus" and n < 1:
        raise ValueError(f"--n {n} must be >= 1")
    perturb = dict(perturb) if isinstance(perturb, dict) else parse_perturbations(perturb)
    if randomise and perturb:
        raise ValueError("--randomise and --perturb exclude each other")
    if young_light_share and "young_light" in perturb:
        raise ValueError("--young-light-share and --perturb young_light exclude each other")
    if perturb.get("psf_family") == "stdpsf" and not stdpsf_dir:
        raise ValueError("--perturb psf_family=stdpsf needs --stdpsf-dir")
    if stdpsf_dir:
        from glue_starclf.sim.effpsf import check_stdpsf_library
        check_stdpsf_library(stdpsf_dir)
    domain = perturbed(**perturb)
    if domain.psf_family == "stdpsf":
        domain = replace(domain, stdpsf_dir=str(stdpsf_dir))
    out = Path(out)
    meta = _meta(kind, n, seed, catalogs, region_size, randomise, perturb, stdpsf_dir,
                 field_star_colours, match_magnitudes, field_cut, max_per_field, match_rows,
                 young_light_share)
    young = _YoungLight(young_light_share, seed)
    colours = _star_colours(field_star_colours)
    targets = catalog_magnitudes(match_magnitudes) if match_magnitudes else None
    if (out / "meta.json").exists():
        old = json.loads((out / "meta.json").read_text())
        defaults = {"randomise": False, "perturb": {}, "stdpsf": False,
                    "field_star_colours": [], "match_magnitudes": [], "field_ci_cut": False,
                    "max_per_field": None}
        if {k: old.get(k, defaults.get(k)) for k in meta} == meta:
            return out
        raise FileExistsError(f"{out} holds a different bank ({old.get('kind')}, "
                              f"seed {old.get('seed')}); choose another --out")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        if kind == "legus":
            truth = _legus_bank(tmp, catalogs, seed, region_size, domain, randomise, stdpsf_dir,
                                young)
        elif kind == "unmatched" and catalogs:
            truth = _unmatched_anchored_bank(tmp, catalogs, seed, region_size, domain,
                                             randomise, stdpsf_dir, colours, field_cut,
                                             match_rows, young)
        elif kind == "unmatched" and targets is not None:
            truth = _matched_unmatched_bank(tmp, n, seed, domain, randomise, stdpsf_dir,
                                            colours, targets, field_cut, young)
        elif kind == "unmatched":
            truth = _unmatched_bank(tmp, n, seed, domain, randomise, stdpsf_dir, colours,
                                    field_cut, max_per_field, young)
        else:
            truth = _engine_bank(tmp, kind, n, seed, domain, randomise, stdpsf_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    truth.write(tmp / "truth.ecsv", format="ascii.ecsv")
    meta.update(domain=None if randomise else domain.describe(),
                generator=f"glue-starclf {__version__}", n_stamps=len(truth),
                seconds=round(time.perf_counter() - t0, 1), command=" ".join(sys.argv))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _engine_bank(folder, kind, n, seed, domain, randomise, stdpsf_dir):
    from tqdm import tqdm
    if kind == "classifier":
        from glue_starclf.sim.classbank import classifier_bank as make
        size = 32
    else:
        from glue_starclf.sim.bank import physical_bank as make
        size = 64
    stamps = np.lib.format.open_memmap(folder / "stamps.npy", mode="w+", dtype=np.float32,
                                       shape=(n, 5, size, size))
    parts = []
    for k, start in enumerate(tqdm(range(0, n, _CHUNK), desc=f"{kind} bank", unit="chunk")):
        m = min(_CHUNK, n - start)
        s, t = make(m, seed=seed * 100003 + k, domain=domain, randomise=randomise,
                    stdpsf_dir=stdpsf_dir)
        stamps[start:start + m] = s
        parts.append(t)
    stamps.flush()
    del stamps
    truth = vstack(parts, metadata_conflicts="silent")
    truth.meta = {"kind": kind}
    return truth


class _YoungLight:
    """Which fields' young light follows their sources: a share, drawn per field
    from a stream of its own (the other draws of a bank do not depend on it)."""

    def __init__(self, share, seed):
        self.share, self.seed = float(share), seed

    def __call__(self, domain, k):
        if self.share and np.random.default_rng([self.seed, 19, k]).random() < self.share:
            return replace(domain, young_light="sources")
        return domain


def _anchored_fields(catalogs, seed, region_size, domain, randomise, stdpsf_dir, desc,
                     colours=None, young=None):
    """(catalog, mock field, domain) of each LEGUS catalog that can be rendered."""
    from tqdm import tqdm

    from glue_starclf.io.catalogs import read_legus_tab
    from glue_starclf.sim.domain import draw_domain
    from glue_starclf.sim.mosaic import legus_anchored_field
    dom_rng = np.random.default_rng([seed, 7])
    for k, path in enumerate(tqdm(catalogs, desc=desc, unit="field")):
        cat = read_legus_tab(path)
        x, y = np.asarray(cat["x"]), np.asarray(cat["y"])
        cx, cy = np.nanmedian(x), np.nanmedian(y)
        h = region_size // 2
        region = (int(max(cx - h, 0)), int(max(cy - h, 0)),
                  int(max(cx - h, 0)) + region_size, int(max(cy - h, 0)) + region_size)
        dom = draw_domain(dom_rng, stdpsf_dir) if randomise else domain
        if young is not None:
            dom = young(dom, k)
        try:
            mock = legus_anchored_field(cat, seed=seed * 1009 + k, region=region, domain=dom,
                                        field_star_colours=colours)
        except ValueError as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        yield cat, mock, dom


def _legus_bank(folder, catalogs, seed, region_size, domain, randomise, stdpsf_dir,
                young=None):
    """Stamps at the truth positions of LEGUS-anchored fields, one field per catalog."""
    from glue_starclf.core.cutouts import extract_stamps
    from glue_starclf.io.mosaic import Mosaic
    from glue_starclf.sim.domain import DomainColumns
    all_stamps, parts = [], []
    for cat, mock, dom in _anchored_fields(catalogs, seed, region_size, domain, randomise,
                                           stdpsf_dir, "legus fields", young=young):
        t = mock.truth
        # Cut as at inference: nearest pixel, the same code path as real mosaics.
        cut = extract_stamps(Mosaic.from_arrays(mock.images), np.asarray(t["x"]),
                             np.asarray(t["y"]), size=32)
        all_stamps.append(cut.stamps)
        keep = ["id", "x", "y", "class", "subtype", "log_age", "log_mass", "av", "r_h",
                "p_cb", "visibility", "mag_F555W", "legus_id", "legus_class", "catalog_ci"]
        t = t[keep]
        cols = DomainColumns(len(t))
        cols.set(np.arange(len(t)), dom, mock.psf)
        cols.fill(t)
        t["stellar_ci"] = _measured_stellar_ci(mock, cat.meta["field"])
        t["field"] = cat.meta["field"]
        t["distance_mpc"] = mock.distance_mpc
        parts.append(t)
    if not parts:
        raise ValueError("no LEGUS field could be rendered")
    stamps = np.concatenate(all_stamps)
    np.save(folder / "stamps.npy", np.nan_to_num(stamps, nan=0.0))
    truth = vstack(parts, metadata_conflicts="silent")
    truth.meta = {"kind": "legus"}
    return truth


_UNMATCHED_FIELD = 2000     # px side of each random field
_UNMATCHED_SOURCES = 270    # mock sources per field (600 per 3000 x 3000 px)
_UNMATCHED_MAX_EMPTY = 20   # fields in a row without a detection before giving up


def _star_colours(catalogs):
    """The class-4 colours of LEGUS catalogs (`catalog_star_colours`), or None."""
    if not catalogs:
        return None
    from glue_starclf.sim.background import catalog_star_colours
    return catalog_star_colours(catalogs)


def _unmatched_bank(folder, n, seed, domain, randomise, stdpsf_dir, colours=None,
                    field_cut=False, max_per_field=None, young=None):
    """Class-4 stamps of detections matching no mock source, random field after field."""
    from tqdm import tqdm

    from glue_starclf.learn.field_audit import unmatched_class4_stamps
    from glue_starclf.sim.domain import draw_domain
    from glue_starclf.sim.mosaic import random_field
    rng = np.random.default_rng([seed, 11])
    all_stamps, parts, got, empty, k = [], [], 0, 0, 0
    with tqdm(total=n, desc="unmatched detections", unit="stamp") as bar:
        while got < n:
            dom = draw_domain(rng, stdpsf_dir) if randomise else domain
            if young is not None:
                dom = young(dom, k)
            distance = float(rng.uniform(3.0, 20.0))
            mock = random_field(seed=seed * 1009 + k, shape=(_UNMATCHED_FIELD,) * 2,
                                distance_mpc=distance, n_sources=_UNMATCHED_SOURCES, domain=dom,
                                field_star_colours=colours)
            s, t = unmatched_class4_stamps(mock, field_cut=field_cut)
            if max_per_field is not None and len(t) > max_per_field:
                # its own stream: the fields drawn do not depend on the cap
                pick = np.sort(np.random.default_rng([seed, 12, k]).choice(
                    len(t), max_per_field, replace=False))
                s, t = s[pick], t[pick]
            s, t = s[:n - got], t[:n - got]
            field = f"random-{seed}-{k}"
            k += 1
            empty = 0 if len(t) else empty + 1
            if empty >= _UNMATCHED_MAX_EMPTY:
                raise ValueError(f"{empty} random fields in a row gave no unmatched detection")
            if len(t):
                _add_unmatched(all_stamps, parts, s, t, dom, field, mock.psf, mock)
                got += len(t)
                bar.update(len(t))
    return _save_unmatched(folder, all_stamps, parts)


def catalog_magnitudes(catalogs):
    """Distance and rows' absolute V magnitudes of each LEGUS catalog.

    Every row with an F555W magnitude counts, whatever its class: the legus
    banks render them all (rows nobody inspected, class 0, with a class drawn
    given their CI), so their class 1-3 and class-4 stamps share these
    magnitudes, which are fainter than the inspected class-4 rows' alone.

    Parameters
    ----------
    catalogs : sequence of path
        LEGUS .tab files. Catalogs of galaxies without a distance in StarcNet
        Table 6 are skipped (a line on stderr names them).

    Returns
    -------
    list of (str, float, ndarray)
        Field name, distance [Mpc] and M_V of the rows with an F555W
        magnitude, for each catalog that has both.
    """
    from glue_starclf.io.catalogs import legus_distance_mpc, read_legus_tab
    from glue_starclf.sim.populations import distance_modulus
    out = []
    for path in catalogs:
        try:
            d = legus_distance_mpc(path)
        except ValueError as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        cat = read_legus_tab(path)
        v = np.asarray(cat["mag_F555W"], float)
        v = v[np.isfinite(v)]
        if len(v):
            out.append((cat.meta.get("field", Path(path).stem), d, v - distance_modulus(d)))
    if not out:
        raise ValueError(f"{', '.join(map(str, catalogs))}: no row with an F555W "
                         "magnitude in a catalog with a distance")
    return out


_MATCH_TOLERANCE = 0.1     # mag: a detection fills a target magnitude this close
_MATCH_FIELDS_PER_GALAXY = 4   # random fields rendered at most per galaxy (the rarest
                               # magnitudes would take many more; their targets stay open)
_MATCH_MIN_FILL = 0.02     # a field filling fewer of its galaxy's targets retires the galaxy
_MATCH_RECOLOUR_MARGIN = 0.75  # mag: field stars this much fainter than the faintest
                               # target still take catalog colours (their blends are targets)


def match_magnitudes(targets, filled, values, tolerance=_MATCH_TOLERANCE):
    """Give each value the nearest unfilled target within ``tolerance``.

    Parameters
    ----------
    targets : ndarray, sorted
    filled : ndarray of bool, same length; updated in place
    values : ndarray
        Taken in the order given.
    tolerance : float

    Returns
    -------
    ndarray of int
        Indices of the values that filled a target.
    """
    kept = []
    for i, v in enumerate(values):
        open_ = np.flatnonzero(~filled)
        if not len(open_):
            break
        j = np.searchsorted(targets[open_], v)
        near = [c for c in (j - 1, j) if 0 <= c < len(open_)]
        best = min(near, key=lambda c: abs(targets[open_[c]] - v))
        if abs(targets[open_[best]] - v) <= tolerance:
            filled[open_[best]] = True
            kept.append(i)
    return np.asarray(kept, int)


def _matched_unmatched_bank(folder, n, seed, domain, randomise, stdpsf_dir, colours, galaxies,
                            field_cut=False, young=None):
    """Unmatched detections on random fields at LEGUS galaxies' distances, kept so that
    their M_V follow each galaxy's rows (``n`` target magnitudes drawn from the pooled
    rows; a field at galaxy g's distance fills g's targets only)."""
    from tqdm import tqdm

    from glue_starclf.learn.field_audit import unmatched_class4_stamps
    from glue_starclf.sim.domain import draw_domain
    from glue_starclf.sim.mosaic import random_field
    from glue_starclf.sim.populations import distance_modulus
    rng = np.random.default_rng([seed, 13])
    pool = np.concatenate([np.full(len(m), g) for g, (_, _, m) in enumerate(galaxies)])
    rows = np.concatenate([m for _, _, m in galaxies])
    pick = rng.integers(0, len(rows), n)
    targets = [np.sort(rows[pick][pool[pick] == g]) for g in range(len(galaxies))]
    filled = [np.zeros(len(t), bool) for t in targets]
    fields = np.zeros(len(galaxies), int)
    # Stars as faint as the faintest target (and blends of two) take catalog colours too.
    brighter = float(rows.max()) + _MATCH_RECOLOUR_MARGIN
    all_stamps, parts, got, k = [], [], 0, 0
    with tqdm(total=n, desc="matched unmatched detections", unit="stamp") as bar:
        while True:
            left = np.array([(~f).sum() for f in filled], float)
            left[fields >= _MATCH_FIELDS_PER_GALAXY] = 0
            if not left.sum():
                break
            g = int(rng.choice(len(galaxies), p=left / left.sum()))
            name, distance, _ = galaxies[g]
            dom = draw_domain(rng, stdpsf_dir) if randomise else domain
            if young is not None:
                dom = young(dom, k)
            mock = random_field(seed=seed * 1009 + k, shape=(_UNMATCHED_FIELD,) * 2,
                                distance_mpc=distance, n_sources=_UNMATCHED_SOURCES, domain=dom,
                                field_star_colours=colours, recolour_brighter=brighter)
            k += 1
            s, t = unmatched_class4_stamps(mock, field_cut=field_cut, abs_mag_limit=None)
            order = rng.permutation(len(t))
            m_v = np.asarray(t["mag_v"], float)[order] - distance_modulus(distance)
            keep = np.sort(order[match_magnitudes(targets[g], filled[g], m_v)])
            # A field that fills (almost) none of its galaxy's targets retires the galaxy.
            enough = len(keep) >= max(1.0, _MATCH_MIN_FILL * len(targets[g]))
            fields[g] = fields[g] + 1 if enough else _MATCH_FIELDS_PER_GALAXY
            if len(keep):
                _add_unmatched(all_stamps, parts, s[keep], t[keep], dom,
                               f"random-{seed}-{k - 1}-{name}", mock.psf, mock)
                got += len(keep)
                bar.update(len(keep))
    if not parts:
        raise ValueError("no random field gave a detection within "
                         f"{_MATCH_TOLERANCE} mag of the catalogs' magnitudes")
    print(f"{got} of {n} target magnitudes filled on {k} fields", file=sys.stderr)
    return _save_unmatched(folder, all_stamps, parts)


def _unmatched_anchored_bank(folder, catalogs, seed, region_size, domain, randomise,
                             stdpsf_dir, colours=None, field_cut=False, match_rows=False,
                             young=None):
    """Class-4 stamps of the detections of LEGUS-anchored fields that match no mock source
    (with ``match_rows``, those whose V magnitudes fill the field's rendered rows')."""
    from glue_starclf.learn.field_audit import unmatched_class4_stamps
    all_stamps, parts = [], []
    for cat, mock, dom in _anchored_fields(catalogs, seed, region_size, domain, randomise,
                                           stdpsf_dir, "unmatched detections", colours,
                                           young):
        s, t = unmatched_class4_stamps(mock, field_cut=field_cut)
        if match_rows and len(t):
            rows = np.asarray(mock.truth["mag_F555W"], float)
            targets = np.sort(rows[np.isfinite(rows)])
            rng = np.random.default_rng([seed, 17, zlib.crc32(cat.meta["field"].encode())])
            order = rng.permutation(len(t))
            keep = np.sort(order[match_magnitudes(targets, np.zeros(len(targets), bool),
                                                  np.asarray(t["mag_v"], float)[order])])
            s, t = s[keep], t[keep]
        if len(t):
            _add_unmatched(all_stamps, parts, s, t, dom, cat.meta["field"], mock.psf, mock)
    if not parts:
        raise ValueError("no unmatched detection on any of the LEGUS fields")
    return _save_unmatched(folder, all_stamps, parts)


def _measured_stellar_ci(mock, field):
    """The stellar CI of a mock field measured on its image, as at inference (NaN if
    the field has too few isolated detections; a warning names it)."""
    from glue_starclf.core.stellar_ci import measure_stellar_ci
    from glue_starclf.io.mosaic import Mosaic
    try:
        return measure_stellar_ci(Mosaic.from_arrays(mock.images))[0]
    except ValueError as exc:
        print(f"{field}: no stellar CI ({exc})", file=sys.stderr)
        return np.nan


def _add_unmatched(all_stamps, parts, stamps, table, dom, field, psf=None, mock=None):
    from glue_starclf.sim.domain import DomainColumns
    cols = DomainColumns(len(table))
    cols.set(np.arange(len(table)), dom, psf)
    cols.fill(table)
    table["stellar_ci"] = _measured_stellar_ci(mock, field) if mock is not None else np.nan
    table["field"] = field
    all_stamps.append(stamps)
    parts.append(table)


def _save_unmatched(folder, all_stamps, parts):
    np.save(folder / "stamps.npy", np.concatenate(all_stamps))
    truth = vstack(parts, metadata_conflicts="silent")
    truth.meta = {"kind": "unmatched"}
    return truth
