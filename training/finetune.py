"""``finetune``: transfer a classifier member to a user's own labelled sources (003).

The story: a trained classifier member (``--from``) and a user's labels of
sources in their own mosaic (``--labels``, ``--image BAND=path``) ->
stamps cut as at inference -> `glue_starclf.learn.finetune.finetune`
(k-fold accuracy before and after, the learning curve, one model tuned on
all labels) -> ``--out`` (safetensors + model card) and a report
``<out>_finetune.md`` / ``<out>_finetune.png`` next to it. The
method is described in `glue_starclf.learn.finetune`.

Labels table
------------
ECSV or CSV (any format `glue_starclf.io.catalogs.read_catalog` reads), one
of two kinds of label columns:

- **hard labels or votes**: ``class`` (or ``class_user``, the glue
  component) with the LEGUS class 1-4; 0 or an empty cell means "not
  sure" and the row is skipped (counted). Several rows for one source (the
  same ``id``, or the same position) are the votes of several labellers
  (an optional ``labeller`` column is kept for the reader, not used): they
  become per-class vote fractions, i.e. soft labels (003 §3). The labels
  file of the glue cluster inspector (`glue_starclf.glue.labels.export_labels`:
  ``id``, ``x``, ``y``, ``ra``, ``dec``, ``class_user``, ``labeller``,
  ``labelled_at``, one row per vote) is such a table.
- **vote fractions**: ``p_class1``, ``p_class2``, ``p_class3``,
  ``p_class4`` (non-negative; each row is normalised to sum to 1), used as
  soft labels.

Sources are found by position or by id:

- without ``--catalog``: the table's ``x``, ``y`` (0-based pixels of the
  mosaic) or ``ra``, ``dec`` (degrees, converted with the mosaic's WCS);
- with ``--catalog`` (e.g. the results table of ``starclf classify``, or
  any source catalog): the table's ``id`` is looked up in the catalog's
  ``id``. Ids the catalog lacks are reported, skipped and counted; it is an
  error only when no label is left.

Sources whose stamp centre is off the mosaic are skipped and counted too.
Accuracy with soft labels is against the class with most votes; the report
also gives the RMS difference between predicted probabilities and the
vote fractions (003's metric).
"""

import sys
from pathlib import Path

from glue_starclf.learn.finetune import (check_bands, cut_labelled, finetune,
                                         labelled_field_stellar_ci, labelled_sources,
                                         output_paths, report_paths, write_finetuned)
from glue_starclf.learn.loop import check_model_out, positive_int, probability

__all__ = ["add_arguments", "run"]


def add_arguments(p):
    p.add_argument("--from", dest="model", required=True,
                   help="classifier member to start from (.safetensors or its .json card)")
    p.add_argument("--labels", required=True, help="labels table (ECSV/CSV; see above)")
    p.add_argument("--image", action="append", required=True, metavar="BAND=PATH",
                   help="a band of the mosaic the labels refer to (repeatable)")
    p.add_argument("--catalog", help="source table whose ids the labels use (else the labels "
                                     "need x,y or ra,dec)")
    p.add_argument("--out", required=True, help="new weights, ending in .safetensors")
    p.add_argument("--freeze", type=int, default=0, help="keep the first N layers fixed")
    p.add_argument("--folds", type=int, default=5, help="k of the k-fold cross-validation")
    p.add_argument("--curve-folds", type=int, default=3,
                   help="folds the learning curve is averaged over")
    p.add_argument("--epochs", type=positive_int, default=8)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate")
    p.add_argument("--lr-scratch", type=float, default=2e-3,
                   help="learning rate of the from-scratch comparison")
    p.add_argument("--band-dropout", type=probability, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args):
    from tqdm import tqdm

    from glue_starclf.core.checkpoints import load_card
    from glue_starclf.io.mosaic import open_mosaic
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: must end in .safetensors")
    card = load_card(args.model)
    parent = Path(card["_path"]).with_name(card["weights"])
    if out.resolve() == parent.resolve():
        raise ValueError(f"--out {out} is the model fine-tuned from; choose another name")
    check_model_out(out, args.overwrite, extra=output_paths(out))
    if card.get("family") != "classifier":
        raise ValueError(f"{args.model}: a {card.get('family')} model; finetune takes a "
                         f"classifier member")
    mosaic = open_mosaic(args.image)
    try:
        check_bands(mosaic, card)
    except ValueError as exc:
        raise ValueError(f"{args.model}: {exc}") from None
    x, y, targets, info = labelled_sources(args.labels, mosaic, args.catalog)
    if info["unknown_ids"]:
        print(f"{args.labels}: {info['unknown_ids']} labelled ids not in {args.catalog}, "
              f"skipped (e.g. {', '.join(info['unknown_id_examples'][:5])})", file=sys.stderr)
    try:
        stamps, mask, inside = cut_labelled(mosaic, x, y, card)
    except ValueError as exc:
        raise ValueError(f"{args.labels}: {exc}") from None
    if not inside.all():
        print(f"{args.labels}: {int((~inside).sum())} labelled sources off the mosaic, skipped",
              file=sys.stderr)
    bar = tqdm(desc="fine-tuning", unit="step", total=0)

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()
    try:
        ci = labelled_field_stellar_ci(card, mosaic, x, y)
        result = finetune(args.model, stamps, targets[inside], mask, stellar_ci=ci,
                          freeze=args.freeze, folds=args.folds, curve_folds=args.curve_folds,
                          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          lr_scratch=args.lr_scratch, band_dropout=args.band_dropout,
                          seed=args.seed, callback=progress)
    finally:
        bar.close()
    result.card["training"].update(
        command="python -m training " + " ".join(getattr(args, "argv", sys.argv[1:])),
        labels=str(args.labels), catalog=args.catalog and str(args.catalog),
        images={b: str(p) for b, p in mosaic.paths.items()},
        labels_info={**info, "off_mosaic": int((~inside).sum())})
    path = write_finetuned(result, out, overwrite=args.overwrite)
    cv = result.report["cv"]
    print(f"{cv['folds']}-fold accuracy {cv['before']['accuracy']['mean']:.3f} -> "
          f"{cv['after']['accuracy']['mean']:.3f} on {result.report['n_labels']} labels "
          f"({result.report['seconds']:.0f} s); card {path}; report {report_paths(out)[0]}")
    return 0
