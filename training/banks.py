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
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from astropy.table import vstack

__all__ = ["add_arguments", "run", "make_bank"]

KINDS = ("classifier", "physical", "legus")
_CHUNK = 2000


def add_arguments(p):
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--n", type=int, default=20000, help="stamps (classifier, physical)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalogs", nargs="+", default=(), help="LEGUS .tab files (kind legus)")
    p.add_argument("--region-size", type=int, default=3000,
                   help="side of the catalog region rendered per field (kind legus)")
    p.add_argument("--out", required=True, help="bank folder")


def run(args):
    path = make_bank(args.kind, args.out, n=args.n, seed=args.seed, catalogs=args.catalogs,
                     region_size=args.region_size)
    print(f"bank ready: {path}")


def _meta(kind, n, seed, catalogs, region_size):
    m = {"kind": kind, "seed": seed}
    if kind == "legus":
        m.update(catalogs=[os.path.basename(c) for c in catalogs], region_size=region_size)
    else:
        m["n"] = n
    return m


def make_bank(kind, out, n=20000, seed=0, catalogs=(), region_size=3000):
    """Build (or reuse) a bank folder; returns its path."""
    from glue_starclf.version import __version__
    if kind not in KINDS:
        raise ValueError(f"unknown bank kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "legus" and not catalogs:
        raise ValueError("a legus bank needs --catalogs")
    if kind != "legus" and n < 1:
        raise ValueError(f"--n {n} must be >= 1")
    out = Path(out)
    meta = _meta(kind, n, seed, catalogs, region_size)
    if (out / "meta.json").exists():
        old = json.loads((out / "meta.json").read_text())
        if {k: old.get(k) for k in meta} == meta:
            return out
        raise FileExistsError(f"{out} holds a different bank ({old.get('kind')}, "
                              f"seed {old.get('seed')}); choose another --out")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    if kind == "legus":
        truth = _legus_bank(tmp, catalogs, seed, region_size)
    else:
        truth = _engine_bank(tmp, kind, n, seed)
    truth.write(tmp / "truth.ecsv", format="ascii.ecsv")
    meta.update(generator=f"glue-starclf {__version__}", n_stamps=len(truth),
                seconds=round(time.perf_counter() - t0, 1), command=" ".join(sys.argv))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _engine_bank(folder, kind, n, seed):
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
        s, t = make(m, seed=seed * 100003 + k)
        stamps[start:start + m] = s
        parts.append(t)
    stamps.flush()
    del stamps
    truth = vstack(parts, metadata_conflicts="silent")
    truth.meta = {"kind": kind}
    return truth


def _legus_bank(folder, catalogs, seed, region_size):
    """Stamps at the truth positions of LEGUS-anchored fields, one field per catalog."""
    from tqdm import tqdm

    from glue_starclf.io.catalogs import read_legus_tab
    from glue_starclf.core.cutouts import extract_stamps
    from glue_starclf.io.mosaic import Mosaic
    from glue_starclf.sim.mosaic import legus_anchored_field
    all_stamps, parts = [], []
    for k, path in enumerate(tqdm(catalogs, desc="legus fields", unit="field")):
        cat = read_legus_tab(path)
        x, y = np.asarray(cat["x"]), np.asarray(cat["y"])
        cx, cy = np.nanmedian(x), np.nanmedian(y)
        h = region_size // 2
        region = (int(max(cx - h, 0)), int(max(cy - h, 0)),
                  int(max(cx - h, 0)) + region_size, int(max(cy - h, 0)) + region_size)
        try:
            mock = legus_anchored_field(cat, seed=seed * 1009 + k, region=region)
        except ValueError as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        t = mock.truth
        # Cut as at inference: nearest pixel, the same code path as real mosaics.
        cut = extract_stamps(Mosaic.from_arrays(mock.images), np.asarray(t["x"]),
                             np.asarray(t["y"]), size=32)
        all_stamps.append(cut.stamps)
        keep = ["id", "x", "y", "class", "subtype", "log_age", "log_mass", "av", "r_h",
                "p_cb", "visibility", "mag_F555W", "legus_id", "legus_class", "catalog_ci"]
        t = t[keep]
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
