"""The ``starclf`` command line.

Commands import their heavy modules when they run, so ``starclf --help`` is
instant. User mistakes end with one line ``starclf: error: ...`` and exit
status 2; nothing is written in that case.
"""

import argparse
import json
import os
import sys
import time

__all__ = ["main", "OneLineArgumentParser"]

DESCRIPTION = """\
Star-cluster classification for HST mosaics (LEGUS, PHANGS-HST).

Commands:
  classify  classify catalog (or detected) sources of a mosaic: LEGUS classes,
            age, mass, A_V, r_h with uncertainties, into a table and DS9 regions
  classify-batch
            classify many fields (a YAML manifest) on a dask.distributed cluster
  detect    find cluster candidates (V band, concentration-index cuts)
  models    list the models and their cards
  simulate  render mock HST data: a random galaxy field, a field anchored on a
            real LEGUS catalog, or a bank of cluster stamps for training
  demo      classify a mock field with the bundled models (the README's demo)
  bench     time the mock-data engine on this machine
"""


class UserError(Exception):
    """A mistake in the user's input: reported on one line, exit status 2."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors take one line, like every other user mistake.

    Used by ``starclf`` and ``python -m training``; subcommand parsers inherit it.
    """

    def error(self, message):
        """Exit with status 2 after ``message`` on one line of stderr."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _floats(text, n, what):
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{what} {text!r}: expected {n} comma-separated numbers") from None
    if len(vals) != n:
        raise UserError(f"{what} {text!r}: expected {n} comma-separated numbers")
    return vals


def _shape(text):
    try:
        parts = [int(v) for v in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise UserError(f"shape {text!r}: expected NY,NX or one side N") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise UserError(f"shape {text!r}: expected NY,NX or one side N")
    return tuple(parts)


def _check_new(path, overwrite, parent_must_exist=False):
    """Refuse to replace an existing output, and to write into a missing folder."""
    if path and os.path.exists(path) and not overwrite:
        raise UserError(f"{path} exists (use --overwrite to replace it)")
    if path and parent_must_exist:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UserError(f"{path}: folder {parent} does not exist")


#: Distances [Mpc] the mock-data engine renders (resolved stars need a
#: distance modulus below ~40); the models are trained for 3-20 Mpc.
SIMULATE_DISTANCE_MPC = (0.1, 500.0)


def check_distance_arg(distance_mpc, valid=None):
    """Refuse a distance that is not a positive number (or outside ``valid``)."""
    import math
    d = float(distance_mpc)
    if not math.isfinite(d) or d <= 0:
        raise UserError(f"--distance-mpc {distance_mpc:g} must be a positive number of Mpc")
    if valid is not None and not valid[0] <= d <= valid[1]:
        raise UserError(f"--distance-mpc {d:g} is outside the range the engine renders, "
                        f"{valid[0]:g}-{valid[1]:g} Mpc")
    return d


def _zeropoints(values):
    """``--zeropoint BAND=MAG`` arguments as ``{band: float}``."""
    from ..io.bands import canonical_band
    out = {}
    for text in values or ():
        band, sep, value = text.partition("=")
        try:
            zp = float(value)
        except ValueError:
            zp = float("nan")
        if not sep or not zp == zp or abs(zp) == float("inf"):
            raise UserError(f"--zeropoint {text!r}: expected BAND=MAG, e.g. F435W=25.77")
        out[canonical_band(band)] = zp
    return out


def _bands(text):
    from ..io.bands import BANDS, canonical_band
    if not text:
        return BANDS
    bands = [canonical_band(b) for b in text.split(",")]
    if len(set(bands)) != len(bands):
        raise UserError(f"--bands {text!r} names a band twice")
    return tuple(bands)


# -- simulate ------------------------------------------------------------------

def _add_common(p, preview=True):
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    if preview:
        p.add_argument("--preview", metavar="PNG",
                       help="also write an RGB preview: example stamps per class and "
                            "a thumbnail of the mosaic")


def _add_domain(p):
    p.add_argument("--randomise", action="store_true",
                   help="draw the instrument conditions (PSF family and detector position, "
                        "broadening, depth, sky, correlated noise, registration, zeropoints, "
                        "background, EFF truncation) as the training banks do; recorded in "
                        "the truth table's metadata")
    p.add_argument("--stdpsf-dir", help="folder of the empirical PSFSTD_WFC3UV_<band>.fits "
                                        "library, among the drawn PSF families (with --randomise)")
    p.add_argument("--field-star-colours", nargs="+", metavar="CATALOG",
                   help="LEGUS .tab catalogs whose class-4 rows give the colours of the "
                        "background's bright field stars (M_V <= -5; default: isochrone "
                        "colours)")
    p.add_argument("--young-light", choices=("arms", "sources"), default="arms",
                   help="what the background's young stars and diffuse light follow: spiral "
                        "arms (default) or the field's own sources (the catalog's rows, a "
                        "random field's clusters), as in star-forming complexes")


def _field_star_colours(args):
    """Colours of the class-4 rows of ``--field-star-colours``, else None."""
    if not args.field_star_colours:
        return None
    from ..sim.background import catalog_star_colours
    return catalog_star_colours(args.field_star_colours)


def _domain(args):
    """The drawn conditions of ``--randomise`` (else None: the nominal ones), with
    ``--young-light``."""
    from dataclasses import replace

    from ..sim.domain import NOMINAL
    if args.stdpsf_dir and not args.randomise:
        raise UserError("--stdpsf-dir needs --randomise")
    domain = None
    if args.randomise:
        import numpy as np
        from ..sim.domain import draw_domain
        from ..sim.effpsf import check_stdpsf_library
        if args.stdpsf_dir:
            check_stdpsf_library(args.stdpsf_dir)
        domain = draw_domain(np.random.default_rng([args.seed, 3]), args.stdpsf_dir)
    if args.young_light != "arms":
        domain = replace(domain or NOMINAL, young_light=args.young_light)
    return domain


def _add_simulate(sub):
    p = sub.add_parser("simulate", help="render mock HST data",
                       description="Render mock multi-band HST data from the physical "
                                   "engine (mock-hst-data spec).")
    modes = p.add_subparsers(dest="mode", required=True, metavar="MODE")

    f = modes.add_parser("field", help="a random galaxy field (no outside data needed)",
                         description="Random mock field: a spiral galaxy with clusters, "
                                     "associations and non-clusters, written as one FITS "
                                     "per band plus a truth table.")
    _add_common(f)
    f.add_argument("--shape", default="2048", help="NY,NX or N pixels (default 2048)")
    f.add_argument("--distance-mpc", type=float, default=10.0,
                   help="galaxy distance in Mpc (default 10)")
    f.add_argument("--n-sources", type=int, default=300, help="mock sources (default 300)")
    f.add_argument("--bands", help="comma-separated bands to write (default all five)")
    f.add_argument("--prefix", default="mock", help="file-name prefix (default 'mock')")
    _add_domain(f)

    g = modes.add_parser("legus", help="one mock source per row of a LEGUS catalog",
                         description="Mock field anchored on a real LEGUS .tab catalog: "
                                     "positions, magnitudes, colours and CI per class.")
    _add_common(g)
    g.add_argument("--catalog", required=True, help="LEGUS .tab catalog")
    g.add_argument("--distance-mpc", type=float,
                   help="distance in Mpc (default: the field's, StarcNet Table 6)")
    g.add_argument("--region", help="x0,y0,x1,y1 in 0-based catalog pixels (default: all)")
    g.add_argument("--max-sources", type=int, help="render only the first N rows in the region")
    g.add_argument("--bands", help="comma-separated bands to write (default all five)")
    g.add_argument("--prefix", help="file-name prefix (default: the field name)")
    _add_domain(g)

    b = modes.add_parser("bank", help="cluster stamps for the physical-parameter network",
                         description="Bank of cluster stamps on galaxy backgrounds with "
                                     "age, mass, A_V, r_h and distance drawn from the spec's "
                                     "ranges; writes stamps.npy (N, 5, S, S) and truth.ecsv.")
    _add_common(b)
    b.add_argument("--n", type=int, default=1000, help="number of stamps (default 1000)")
    b.add_argument("--size", type=int, default=64, help="stamp side in pixels (default 64)")
    b.add_argument("--background-fraction", type=float, default=0.1,
                   help="share of background-only stamps (default 0.1)")
    for name, unit in (("log-age", "log yr"), ("log-mass", "log Msun"), ("av", "mag"),
                       ("r-h", "pc"), ("distance-mpc", "Mpc")):
        b.add_argument(f"--{name}", help=f"fixed value or LO,HI range [{unit}]")
    p.set_defaults(func=_simulate)


def _simulate(args):
    if args.mode == "bank":
        return _simulate_bank(args)
    bands = _bands(args.bands)
    if args.distance_mpc is not None:
        check_distance_arg(args.distance_mpc, SIMULATE_DISTANCE_MPC)
    _check_new(args.preview, args.overwrite, parent_must_exist=True)
    domain = _domain(args)
    colours = _field_star_colours(args)
    t0 = time.perf_counter()
    if args.mode == "field":
        from ..sim.mosaic import random_field
        shape = _shape(args.shape)
        if args.n_sources < 0:
            raise UserError(f"--n-sources {args.n_sources} must be >= 0")
        prefix = args.prefix
        _check_outputs(args.out, prefix, bands, args.overwrite)
        mock = random_field(seed=args.seed, shape=shape, distance_mpc=args.distance_mpc,
                            n_sources=args.n_sources, domain=domain,
                            field_star_colours=colours)
    else:
        from ..io.catalogs import read_legus_tab
        from ..sim.mosaic import legus_anchored_field
        catalog = read_legus_tab(args.catalog)
        region = _floats(args.region, 4, "--region") if args.region else None
        if args.max_sources is not None and args.max_sources < 1:
            raise UserError(f"--max-sources {args.max_sources} must be >= 1")
        if region is not None:
            _check_region_rows(catalog, region, args.region, args.catalog)
        prefix = args.prefix or catalog.meta["field"]
        _check_outputs(args.out, prefix, bands, args.overwrite)
        mock = legus_anchored_field(catalog, seed=args.seed, distance_mpc=args.distance_mpc,
                                    region=region, max_sources=args.max_sources, domain=domain,
                                    field_star_colours=colours)
    from ..sim.mosaic import write_mosaic
    paths = write_mosaic(mock, args.out, prefix=prefix, bands=bands, overwrite=args.overwrite)
    dt = time.perf_counter() - t0
    ny, nx = mock.images.shape[1:]
    print(f"rendered {nx} x {ny} px, {len(mock.truth)} sources at {mock.distance_mpc:g} Mpc "
          f"in {dt:.1f} s")
    if args.randomise:
        from statistics import geometric_mean
        print(f"  conditions drawn: {domain.psf_family} PSF, exposure x"
              f"{geometric_mean(domain.exposure_factor):.2f}, "
              f"sky x{domain.sky_factor:.2f}, {domain.background} background")
    if domain is not None and domain.young_light != "arms":
        print(f"  young light on the {domain.young_light}")
    for key, path in paths.items():
        print(f"  {key:6s} {path}")
    if args.preview:
        from ..sim.preview import field_preview
        field_preview(mock, args.preview)
        print(f"  preview {args.preview}")
    return 0


def _check_region_rows(catalog, region, text, path):
    """Refuse a region that holds none of the catalog's sources.

    (A region under 64 px is left to the engine, whose message says so.)
    """
    x0, y0, x1, y1 = (int(v) for v in region)
    if x1 - x0 < 64 or y1 - y0 < 64:
        return
    x = catalog["x"]
    y = catalog["y"]
    n = int(((x >= x0) & (x < x1) & (y >= y0) & (y < y1)).sum())
    if n == 0:
        raise UserError(f"--region {text!r} holds none of the {len(catalog)} sources "
                        f"of {path}")


def _check_outputs(out, prefix, bands, overwrite):
    for b in bands:
        _check_new(os.path.join(out, f"{prefix}_{b.lower()}_drc.fits"), overwrite)
    _check_new(os.path.join(out, f"{prefix}_truth.ecsv"), overwrite)


def _range_arg(text, what):
    if text is None:
        return None, None
    vals = _floats(text, 2, what) if "," in text else _floats(text, 1, what)
    if len(vals) == 2 and not vals[0] <= vals[1]:
        raise UserError(f"{what} {text!r}: range LO,HI needs LO <= HI")
    return (None, tuple(vals)) if len(vals) == 2 else (vals[0], None)


def _simulate_bank(args):
    import numpy as np
    from ..sim.bank import physical_bank
    fixed, ranges = {}, {}
    for opt, key in (("log_age", "log_age"), ("log_mass", "log_mass"), ("av", "av"),
                     ("r_h", "r_h"), ("distance_mpc", "distance_mpc")):
        value, rng = _range_arg(getattr(args, opt), "--" + opt.replace("_", "-"))
        if value is not None:
            fixed[key] = value
        if rng is not None:
            ranges[key] = rng
    if args.n < 1:
        raise UserError(f"--n {args.n} must be >= 1")
    if args.size < 17:
        raise UserError(f"--size {args.size} must be at least 17 pixels")
    stamps_path = os.path.join(args.out, "stamps.npy")
    truth_path = os.path.join(args.out, "truth.ecsv")
    for path in (stamps_path, truth_path):
        _check_new(path, args.overwrite)
    _check_new(args.preview, args.overwrite, parent_must_exist=True)
    t0 = time.perf_counter()
    stamps, truth = physical_bank(args.n, seed=args.seed, size=args.size,
                                  background_fraction=args.background_fraction,
                                  ranges=ranges, **fixed)
    dt = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    tmp_s, tmp_t = stamps_path + ".tmp.npy", truth_path + ".tmp"
    np.save(tmp_s, stamps)
    truth.write(tmp_t, format="ascii.ecsv", overwrite=True)
    os.replace(tmp_s, stamps_path)
    os.replace(tmp_t, truth_path)
    print(f"rendered {len(truth)} stamps of {args.size} px in {dt:.1f} s "
          f"({len(truth) / dt:.0f} stamps/s)")
    print(f"  stamps {stamps_path}\n  truth  {truth_path}")
    if args.preview:
        from ..sim.preview import bank_preview
        bank_preview(stamps, truth, args.preview)
        print(f"  preview {args.preview}")
    return 0


# -- demo ----------------------------------------------------------------------

def _add_demo(sub):
    p = sub.add_parser("demo", help="classify a mock field with the bundled models",
                       description="Render a random mock field with the engine, classify its "
                                   "sources with the bundled models, and write results.ecsv, "
                                   "results.reg and summary.png (stamps by predicted class, "
                                   "log age vs log mass, confusion against the mock truth).")
    p.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", default="1536")
    p.add_argument("--n-sources", type=int, default=250)
    p.add_argument("--distance-mpc", type=float, default=10.0)
    p.add_argument("--models", help="folder of model cards (default: the bundled models)")
    p.set_defaults(func=_demo)


def _demo(args):
    from .demo import run_demo
    check_distance_arg(args.distance_mpc, SIMULATE_DISTANCE_MPC)
    run_demo(args.out, seed=args.seed, shape=_shape(args.shape), n_sources=args.n_sources,
             distance_mpc=args.distance_mpc, models=args.models)
    return 0


# -- bench ---------------------------------------------------------------------

def _add_bench(sub):
    p = sub.add_parser("bench", help="time the engine and the models on this machine",
                       description="Benchmarks of this machine, side by side in one run: "
                                   "physical-bank stamps (64x64, 5 bands, log M = 4) per second "
                                   "per core; time and peak memory to render a 4k x 4k 5-band "
                                   "LEGUS-anchored mosaic with ~2,000 sources; the classifier "
                                   "and physical ensembles against the StarcNet and B&N "
                                   "ResNet-50 reference networks (objects/s and ratios); and "
                                   "classify of 10,000 sources of an 8k x 8k x 5 FITS mosaic "
                                   "end to end (seconds, peak memory).")
    p.add_argument("--catalog", help="LEGUS .tab for the mosaic benchmark (default: NGC 1566 "
                                     "from ../shared/data/legus when present, else a random "
                                     "field with 2,000 sources)")
    p.add_argument("--n-stamps", type=int, default=2000)
    p.add_argument("--models", help="folder of model cards for the inference benchmarks "
                                    "(default: the bundled models)")
    p.add_argument("--skip-engine", action="store_true",
                   help="only the inference benchmarks")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line last")
    p.set_defaults(func=_bench)


def _bench(args):
    from .bench import run_benchmarks, run_inference_benchmarks
    from ..core.checkpoints import bundled_models_dir, list_models
    result = {}
    if not args.skip_engine:
        result.update(run_benchmarks(catalog=args.catalog, n_stamps=args.n_stamps))
    folder = args.models or bundled_models_dir()
    families = {c.get("family") for c in list_models(folder)}
    if {"classifier", "physical"} <= families:
        result.update(run_inference_benchmarks(models=args.models))
    else:
        print(f"inference benchmarks skipped: no classifier and physical models in {folder}")
    if args.json:
        print(json.dumps(result))
    return 0



# -- classify / detect / models ------------------------------------------------

def _add_image_args(p):
    p.add_argument("--image", action="append", required=True, metavar="BAND=PATH",
                   help="one FITS per band, e.g. --image F555W=ngc628_f555w_drc.fits "
                        "(the band may be left out: it is then read from FILTER keywords)")
    p.add_argument("--region", help="x0,y0,x1,y1 in 0-based pixels (default: whole mosaic)")
    p.add_argument("--force-band", action="store_true",
                   help="use the band of BAND=PATH even where the file's FILTER keyword "
                        "names another one (default: refused)")


def _add_classify(sub):
    p = sub.add_parser(
        "classify", help="classify catalog sources (or detected ones) of a mosaic",
        description="Classify star-cluster candidates of an HST mosaic into the LEGUS classes "
                    "and estimate age, mass, A_V and r_h with the bundled ensembles. Sources "
                    "come from --catalog (LEGUS .tab, PHANGS FITS, or ECSV/CSV/FITS with x,y "
                    "or ra,dec); without it they are detected in --region or the whole mosaic.")
    _add_image_args(p)
    p.add_argument("--catalog", help="source catalog")
    p.add_argument("--distance-mpc", type=float, required=True, help="galaxy distance in Mpc")
    p.add_argument("--out", required=True, help="results table (.ecsv, .fits or .csv)")
    p.add_argument("--regions", help="also write a DS9 region file")
    p.add_argument("--models", help="folder of model cards (default: the bundled models)")
    p.add_argument("--zeropoint", action="append", metavar="BAND=MAG",
                   help="Vega magnitude of one image unit (per second of the file's unit) in "
                        "a band; wins over the header's calibration keywords (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast on CPUs with native bf16 (AVX512-BF16/AMX): faster, "
                        "same metrics on the held-out test (see the model cards)")
    p.add_argument("--class-balanced", action="store_true",
                   help="class probabilities as if the four classes were equally common "
                        "(without the models' LEGUS class prior, classifier.classes.json): "
                        "higher class-1 recall, lower accuracy on a LEGUS-like mix")
    p.add_argument("--stellar-ci", type=_stellar_ci, metavar="MAG",
                   help="the field's stellar CI (V band, 1 px vs 3 px, of a star) for "
                        "classifier and physical models that take it and, without a "
                        "catalog, the detection's CI cut (+ 0.05); default measured on the "
                        "image")
    p.set_defaults(func=_classify)


def _add_classify_batch(sub):
    p = sub.add_parser(
        "classify-batch", help="classify many fields of a manifest on a dask cluster",
        description="Classify the fields listed in a YAML manifest (band files, catalog or "
                    "'detect', distance, output; see the README) on a dask.distributed "
                    "cluster: a local cluster of worker processes, or the scheduler at "
                    "--scheduler (e.g. one started by dask-jobqueue on SLURM). Results equal "
                    "starclf classify's with as many torch threads; one table per field plus a "
                    "merged table with a 'field' column. A failed field does not stop the "
                    "others (exit status 1); a re-run skips the fields whose outputs are "
                    "complete.")
    p.add_argument("manifest", nargs="?", help="YAML manifest of the fields")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="dask scheduler address, e.g. tcp://10.0.0.5:8786")
    where.add_argument("--local-workers", type=int, metavar="N",
                       help="start a local cluster of N worker processes (default: one per "
                            "CPU core; with --bench: 2)")
    p.add_argument("--models", help="folder of model cards (default: the manifest's 'models', "
                                    "else the bundled models)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads per task (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute every field and replace existing outputs")
    p.add_argument("--bench", action="store_true",
                   help="time mock fields on local clusters of 1 and N workers instead")
    p.set_defaults(func=_classify_batch)


def _classify_batch(args):
    from .batch import command
    return command(args)


def _add_detect(sub):
    p = sub.add_parser("detect", help="find cluster candidates in a mosaic",
                       description="Detect candidates on the V band (photutils) with LEGUS-like "
                                   "cuts on the concentration index (CI = mag(1px) - mag(3px)).")
    _add_image_args(p)
    # Defaults (None) are detect_sources' LEGUS cuts; core.detection is not
    # imported here, so `starclf --help` stays fast.
    p.add_argument("--ci-min", type=_ci_min,
                   help="minimum CI [mag], or 'field' (default): the field's own cut, its "
                        "stellar CI + 0.05 mag, as LEGUS set it per field (1.2-1.4)")
    p.add_argument("--stellar-ci", type=_stellar_ci, metavar="MAG",
                   help="the field's stellar CI (V band, 1 px vs 3 px, of a star) for the "
                        "field's own CI cut; default measured on the image")
    p.add_argument("--distance-mpc", type=float,
                   help="galaxy distance: candidates must reach M_V <= --abs-mag-limit")
    p.add_argument("--abs-mag-limit", type=float,
                   help="faintest absolute V magnitude kept (default: LEGUS's -6)")
    p.add_argument("--min-bands", type=int,
                   help="detected with sigma <= 0.3 mag in at least this many bands "
                        "(default: LEGUS's 4)")
    p.add_argument("--threshold-sigma", type=float, default=5.0)
    p.add_argument("--out", required=True, help="candidate table (.ecsv, .fits or .csv)")
    p.add_argument("--regions", help="also write a DS9 region file")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_detect)


def _add_models(sub):
    p = sub.add_parser("models", help="list the bundled models and their cards",
                       description="List model cards: family, seed, training and metrics.")
    p.add_argument("--models", help="folder of model cards (default: the bundled models)")
    p.add_argument("--json", action="store_true", help="print the full cards as JSON")
    p.set_defaults(func=_models)


def _outputs(args):
    """The ``--out``/``--regions`` transaction, checked before any work."""
    from ..io.writers import OutputSet
    return OutputSet([(args.out, "table"), (args.regions, "regions")], overwrite=args.overwrite)


def _write_outputs(outputs, table, args):
    from ..io.writers import regions_writer, table_writer
    outputs.write(args.out, table_writer(table, args.out))
    if args.regions:
        outputs.write(args.regions, regions_writer(table))
    outputs.commit()


def _classify(args):
    import logging

    from ..core.detection import detected_stellar_ci, detection_provenance, sources_to_classify
    from ..core.predict import load_ensemble, predict
    from ..io.mosaic import open_mosaic
    check_distance_arg(args.distance_mpc)
    with _outputs(args) as outputs:
        classifier = load_ensemble("classifier", args.models,
                                   class_prior=not args.class_balanced)
        physical = load_ensemble("physical", args.models)
        mosaic = open_mosaic(args.image, force_band=args.force_band,
                             zeropoints=_zeropoints(args.zeropoint))
        sources = sources_to_classify(mosaic, args.catalog, args.region,
                                      distance_mpc=args.distance_mpc, stellar_ci=args.stellar_ci)
        if len(sources) == 0:
            logging.getLogger("glue_starclf").warning(
                "no sources to classify: writing an empty table")
        # Detected candidates are classified with the stellar CI their cut was set by.
        stellar_ci, source = detected_stellar_ci(sources, given=args.stellar_ci)
        t0 = time.perf_counter()
        result = predict(mosaic, sources, args.distance_mpc, classifier=classifier,
                         physical=physical, progress=sys.stderr.isatty(), bf16=args.bf16,
                         stellar_ci=stellar_ci, stellar_ci_source=source)
        result.meta.update(detection_provenance(sources))
        _warn_if_mostly_ood(result)
        _write_outputs(outputs, result, args)
    counts = ", ".join(f"{int((result['class'] == c).sum())} class {c}" for c in (1, 2, 3, 4))
    print(f"classified {len(result)} sources in {time.perf_counter() - t0:.1f} s ({counts}); "
          f"wrote {args.out}" + (f" and {args.regions}" if args.regions else ""))
    return 0


def _warn_if_mostly_ood(result):
    """One warning when most sources lie outside the classifier's training data."""
    import logging

    from ..core.ood import ood_warning
    text = ood_warning(result["flags"])
    if text:
        logging.getLogger("glue_starclf").warning(text)


def _stellar_ci(text):
    """``--stellar-ci``: a number in the accepted range, checked before any file is read."""
    from ..core.stellar_ci import checked_stellar_ci
    try:
        return checked_stellar_ci(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ci_min(text):
    """``--ci-min``: a number or ``field``."""
    if text.strip().lower() == "field":
        return "field"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'field'") from None


def _detect(args):
    from ..core.detection import detect_sources
    from ..io.mosaic import open_mosaic
    if args.stellar_ci is not None and args.ci_min not in (None, "field"):
        raise ValueError(f"--stellar-ci {args.stellar_ci:g} sets the field's own CI cut, and "
                         f"--ci-min {args.ci_min:g} a fixed one: give one of them")
    with _outputs(args) as outputs:
        mosaic = open_mosaic(args.image, force_band=args.force_band)
        if args.distance_mpc is not None:
            check_distance_arg(args.distance_mpc)
        cuts = {k: v for k, v in (("ci_min", args.ci_min), ("abs_mag_limit", args.abs_mag_limit),
                                   ("min_bands", args.min_bands)) if v is not None}
        table = detect_sources(mosaic, region=args.region, threshold_sigma=args.threshold_sigma,
                               distance_mpc=args.distance_mpc, stellar_ci=args.stellar_ci, **cuts)
        _write_outputs(outputs, table, args)
    print(f"detected {len(table)} candidates (CI >= {table.meta['ci_min']:.3f} mag); "
          f"wrote {args.out}")
    return 0


def _models(args):
    from ..core.checkpoints import bundled_models_dir, list_models
    folder = args.models or bundled_models_dir()
    cards = list_models(folder)
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print(f"no models in {folder}")
        return 0
    for c in cards:
        val = c.get("metrics", {}).get("validation", {})
        figure = (f"accuracy {val['accuracy']:.3f}" if "accuracy" in val else
                  ", ".join(f"{k} {v:.3f}" for k, v in val.get("five_bands", {}).items()
                            if k.startswith("p95") or k == "cb_auc"))
        train = c.get("training", {})
        seconds, runs = _training_seconds(train)
        chain = f" ({runs} runs, {seconds:.1f} s in all)" if runs > 1 else ""
        print(f"{os.path.basename(c['_path'])[:-5]:24s} {c.get('family', '?'):10s} "
              f"seed {c.get('seed', '?')}  {train.get('wall_time_s', '?')} s{chain}  {figure}")
    return 0


def _training_seconds(training):
    """Wall time of a card's training and of the runs it started from (``init``), and
    how many runs that is."""
    seconds, runs = 0.0, 0
    while training:
        seconds += float(training.get("wall_time_s") or 0.0)
        runs += 1
        training = training.get("init", {}).get("training")
    return seconds, runs


# -- entry point ---------------------------------------------------------------

def build_parser():
    """The argparse parser of ``starclf``."""
    from ..version import __version__
    parser = OneLineArgumentParser(prog="starclf", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"glue-starclf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_classify(sub)
    _add_classify_batch(sub)
    _add_detect(sub)
    _add_models(sub)
    _add_simulate(sub)
    _add_demo(sub)
    _add_bench(sub)
    return parser


def _stderr_handler():
    """A logging handler that writes to ``sys.stderr`` as it is at each record.

    A plain ``StreamHandler(sys.stderr)`` keeps the stream of the first call:
    ``main`` called again in one process after stderr was redirected (tests,
    notebooks) would log into a stale, possibly closed stream.
    """
    import logging

    class _StderrHandler(logging.StreamHandler):
        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, value):
            pass

    return _StderrHandler()


def _log_to_stderr():
    import logging
    log = logging.getLogger("glue_starclf")
    if not log.handlers:
        handler = _stderr_handler()
        handler.setFormatter(logging.Formatter("starclf: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _terminate_like_ctrl_c():
    """SIGTERM ends a run as Ctrl-C does: temporary files removed, no half-written output."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv=None):
    """Run ``starclf``; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``starclf``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The subcommand's status; 2 after a user error (printed on one line
        of stderr), 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_to_stderr()
    _terminate_like_ctrl_c()
    try:
        return args.func(args)
    except (UserError, ValueError, FileNotFoundError, FileExistsError, OSError) as exc:
        print(f"starclf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("starclf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
