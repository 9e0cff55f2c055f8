"""``audit-field``: detection, then classification, on a mock field, against its truth.

The story: a mock field written by ``starclf simulate field`` (one FITS per
band and ``<prefix>_truth.ecsv``) -> candidates found with the LEGUS
defaults of `glue_starclf.core.detection.detect_sources` at the field's
distance (the field's own CI cut, its stellar CI + 0.05 mag, as LEGUS set
it; `glue_starclf.core.stellar_ci.field_ci_cut`), with the fixed CI >= 1.4
that was the default before, and with the loose cuts of before that
(CI >= 1.3, no magnitude or band cut) -> each classified by the ensembles -> per
setting: candidates after each cut, class 1-3 completeness (all, and
brighter than M_V = -6) and the fraction of detections matching no mock
source that the classifier calls class 4, of all of them and apart for those
farther than 10 px from every mock source (`glue_starclf.learn.field_audit`).

Example::

    starclf simulate field --out fields/random3k --seed 1 --shape 3000 --n-sources 600
    python -m training audit-field --field fields/random3k --distance-mpc 10
"""

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]

#: Detection settings compared: name -> keyword arguments of detect_sources.
SETTINGS = {
    "loose (CI >= 1.3, no magnitude or band cut)": {"ci_min": 1.3, "abs_mag_limit": None,
                                                    "min_bands": None},
    "LEGUS defaults (the field's own CI cut)": {},
    "LEGUS cuts, the fixed CI >= 1.4": {"ci_min": 1.4},
}


def add_arguments(p):
    p.add_argument("--field", required=True, help="folder of a mock field (starclf simulate field)")
    p.add_argument("--distance-mpc", type=float, required=True, help="the field's distance")
    p.add_argument("--prefix", default="mock", help="file-name prefix of the field (default mock)")
    p.add_argument("--region", default=None, help="x0,y0,x1,y1 box (default: the whole field)")
    p.add_argument("--models", default=None, help="models folder (default: the bundled models)")
    p.add_argument("--json", help="also write the measurements to this JSON file")


def _fraction(value):
    return "-" if value is None else f"{value:.3f}"


def run(args):
    from astropy.table import Table

    from glue_starclf.core.detection import detect_sources, detected_stellar_ci, parse_region
    from glue_starclf.core.predict import load_ensemble, predict
    from glue_starclf.io.mosaic import open_mosaic
    from glue_starclf.learn.field_audit import ISOLATION_RADIUS_PX, audit_detections
    folder = Path(args.field)
    images = sorted(folder.glob(f"{args.prefix}_*_drc.fits"))
    truth_path = folder / f"{args.prefix}_truth.ecsv"
    if not images or not truth_path.exists():
        raise FileNotFoundError(f"{folder}: no {args.prefix}_*_drc.fits and "
                                f"{args.prefix}_truth.ecsv (write one with starclf simulate field)")
    if not args.distance_mpc > 0:
        raise ValueError(f"--distance-mpc {args.distance_mpc}: must be positive")
    truth = Table.read(truth_path)
    classifier = load_ensemble("classifier", args.models)
    physical = load_ensemble("physical", args.models)
    bright = -6.0 + 5 * np.log10(args.distance_mpc * 1e6) - 5
    result = {"command": "python -m training " + " ".join(args.argv), "field": str(folder),
              "distance_mpc": args.distance_mpc, "settings": {}}
    with open_mosaic([str(p) for p in images]) as mosaic:
        box = parse_region(args.region, mosaic.shape)
        for name, kwargs in SETTINGS.items():
            t0 = time.perf_counter()
            det = detect_sources(mosaic, region=box, distance_mpc=args.distance_mpc, **kwargs)
            # As starclf classify: the stellar CI the cut was set by (None for a fixed cut).
            stellar_ci, source = detected_stellar_ci(det)
            res = predict(mosaic, det, args.distance_mpc, classifier=classifier,
                          physical=physical, stellar_ci=stellar_ci, stellar_ci_source=source)
            a = audit_detections(det, truth, np.asarray(res["class"]), region=box,
                                 mag_limit=bright)
            a["cuts"] = {k: det.meta.get(k) for k in ("ci_min", "n_found", "n_after_ci",
                                                      "n_after_mag", "n_after_bands")}
            a["seconds"] = round(time.perf_counter() - t0, 1)
            result["settings"][name] = a
            c, cb = a["completeness"], a["completeness_bright"]
            frac, iso, near = (_fraction(a[k]) for k in (
                "unmatched_called_class4", "unmatched_isolated_called_class4",
                "unmatched_near_called_class4"))
            print(f"{name}: {a['n_detections']} candidates (CI >= {a['cuts']['ci_min']:.2f}; "
                  f"found {a['cuts']['n_found']}, "
                  f"after CI {a['cuts']['n_after_ci']}, magnitude {a['cuts']['n_after_mag']}, "
                  f"bands {a['cuts']['n_after_bands']}); {a['n_unmatched']} match no mock source,"
                  f" {frac} of them called class 4 ({a['n_unmatched_isolated']} farther than "
                  f"{ISOLATION_RADIUS_PX:g} px from every mock source: {iso}; "
                  f"{a['n_unmatched_near']} nearer: {near}); "
                  f"completeness class 1/2/3 {c[1]:.2f}/{c[2]:.2f}/{c[3]:.2f} "
                  f"(M_V <= -6: {cb['1-3']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0
