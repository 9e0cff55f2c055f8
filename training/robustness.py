"""``robustness-banks``: one small test bank per perturbation of the domain.

Each bank renders the same sources (same seed and catalogs) under the
nominal engine settings or with one condition changed (`PERTURBATIONS`,
`glue_starclf.sim.domain.perturbed`), so that ``evaluate --robustness``
turns the gap between renderings into numbers: accuracy and recalls of the
classifier, 95th percentiles of the physical errors, per bank and against
the nominal one. ``psf_stdpsf`` is the "trained without it" case for models
trained on TinyTim renders only.
"""

from pathlib import Path

__all__ = ["PERTURBATIONS", "FIELD_ONLY", "add_arguments", "run", "make_robustness_banks"]

#: Bank name -> perturbations (NAME=VALUE as for ``make-bank --perturb``).
PERTURBATIONS = {
    "nominal": [],
    "psf_stdpsf": ["psf_family=stdpsf", "detector_xy=600,3500"],
    "psf_broader": ["extra_broadening_px=0.5"],
    "shallow": ["exposure_factor=0.5"],
    "deep": ["exposure_factor=2"],
    "sky_x2": ["sky_factor=2"],
    "registration": ["registration_px=0.1"],
    "zeropoint": ["zeropoint_mag=0.03"],
    "correlated_noise": ["correlated_noise=0.5"],
    "background_varied": ["background=varied"],
    "eff_truncation_5": ["eff_truncation=5"],
    "young_light_sources": ["young_light=sources"],
}

#: Perturbations of whole fields, which the engine banks (physical,
#: classifier: stamps on background tiles) do not render.
FIELD_ONLY = ("young_light_sources",)


def add_arguments(p):
    p.add_argument("--kind", choices=("legus", "physical", "classifier"), required=True)
    p.add_argument("--out", required=True, help="parent folder: one bank per perturbation")
    p.add_argument("--n", type=int, default=4000,
                   help="stamps per bank (physical, classifier); a p95 over the 900 clusters of "
                        "1,000 stamps moved by up to 25 points between two seeds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalogs", nargs="+", default=(), help="LEGUS .tab files (kind legus)")
    p.add_argument("--region-size", type=int, default=1500)
    p.add_argument("--stdpsf-dir", help="STDPSF library (needed for psf_stdpsf; skipped without)")
    p.add_argument("--only", nargs="+", choices=list(PERTURBATIONS),
                   help="build only these banks")


def run(args):
    for path in make_robustness_banks(args.kind, args.out, n=args.n, seed=args.seed,
                                      catalogs=args.catalogs, region_size=args.region_size,
                                      stdpsf_dir=args.stdpsf_dir, only=args.only):
        print(f"bank ready: {path}")
    return 0


def make_robustness_banks(kind, out, n=1000, seed=0, catalogs=(), region_size=1500,
                          stdpsf_dir=None, only=None):
    """Build (or reuse) the banks of `PERTURBATIONS`; returns their paths."""
    from .banks import make_bank, parse_perturbations
    names = list(only or PERTURBATIONS)
    if kind != "legus":
        names = [k for k in names if k not in FIELD_ONLY]
    if not stdpsf_dir and "psf_stdpsf" in names:
        names.remove("psf_stdpsf")
    # Validate everything before the first bank is written.
    for name in names:
        parse_perturbations(PERTURBATIONS[name])
    paths = []
    for name in names:
        paths.append(make_bank(kind, Path(out) / name, n=n, seed=seed, catalogs=catalogs,
                               region_size=region_size, perturb=PERTURBATIONS[name],
                               stdpsf_dir=stdpsf_dir if name == "psf_stdpsf" else None))
    return paths
