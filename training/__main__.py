"""``python -m training <command>``: build the shipped data tables and models."""

import importlib
import sys

#: command -> (module, one-line help); each module has ``add_arguments`` and ``run``.
COMMANDS = {
    "build-photometry": ("training.build_photometry",
                         "build the shipped isochrone photometry table from PyPI packages"),
    "extract-psfs": ("training.extract_psfs",
                     "extract the TinyTim PSFs from the drizzlepac wheel"),
    "make-bank": ("training.banks", "build a cached, memory-mapped training set"),
    "train-classifier": ("training.train_classifier",
                         "train one member of the morphological classifier ensemble"),
    "train-physical": ("training.train_physical",
                       "train one member of the physical-parameter ensemble"),
    "ensemble": ("training.ensemble",
                 "train independently seeded members of one family into a models folder"),
    "evaluate": ("training.evaluate", "reports of the ensembles on labelled banks"),
    "shortcut-audit": ("training.audit",
                       "how well catalog-level features alone separate mock and real classes"),
    "class-separability": ("training.separability",
                           "how well the classifier's design tells two groups of classes apart"),
    "robustness-banks": ("training.robustness",
                         "one small test bank per domain perturbation (evaluate --robustness)"),
    "calibrate-intervals": ("training.calibrate",
                            "compare point estimators and calibrate the physical intervals"),
    "like-for-like": ("training.like_for_like",
                      "the physical ensemble in 004's setting, next to 004's bounds"),
    "real-reference": ("training.real_reference",
                       "the classifier on renders of real catalogs, beside StarcNet on the "
                       "real images"),
    "surroundings": ("training.surroundings",
                     "V errors of each class on renders of real catalogs and in the catalogs "
                     "(how much light and crowding the classes sit in)"),
    "audit-field": ("training.audit_field",
                    "detect and classify a mock field; completeness and unmatched class 4"),
    "calibrate-classes": ("training.calibrate_classes",
                          "fit the classifier ensemble's temperature and class prior"),
    "ood-stats": ("training.ood_stats",
                  "the classifier's out-of-distribution statistics for a models folder"),
    "finetune": ("training.finetune",
                 "fine-tune a classifier member on a user's labelled sources"),
    "bench-finetune": ("training.bench_finetune",
                       "time fine-tuning on 300 mock labels as the glue action runs it"),
    "crosscheck": ("training.crosscheck", "the classifier on clean-room renders of the spec"),
}


def main(argv=None):
    from glue_starclf.cli.main import OneLineArgumentParser
    parser = OneLineArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (modname, help_) in COMMANDS.items():
        mod = importlib.import_module(modname)
        modules[name] = mod
        mod.add_arguments(sub.add_parser(name, help=help_, description=mod.__doc__))
    args = parser.parse_args(argv)
    # The command as given (model cards record it), also when called as main([...]).
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return modules[args.command].run(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
