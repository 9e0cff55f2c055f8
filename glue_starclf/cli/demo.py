"""The README's demo: a mock field, classified by the bundled models, against its truth.

`run_demo` renders a random mock field with the engine, writes it as FITS
files, classifies its sources from those files with the same code as
``starclf classify`` (positions only: the catalog given to the models holds
no truth), writes ``results.ecsv`` and ``results.reg``, and draws
`summary_figure`: a stamp gallery by predicted class, log age against log
mass coloured by class, and the confusion matrix against the mock truth.
"""

import os
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

__all__ = ["run_demo", "summary_figure", "accuracy_against_truth"]

CLASS_LABELS = ("1 symmetric", "2 asymmetric", "3 association", "4 non-cluster")
#: Matplotlib colours of the four classes (as the DS9 colours of `glue_starclf.io.writers`).
CLASS_COLOURS = ("tab:green", "tab:cyan", "goldenrod", "tab:red")


def accuracy_against_truth(results, truth):
    """4-class and binary accuracy and the confusion matrix of results against a truth table.

    Parameters
    ----------
    results, truth : astropy.table.Table
        Row-aligned; ``class`` columns (results: 0 for unclassified rows,
        which are left out).

    Returns
    -------
    dict
        ``accuracy``, ``binary_accuracy`` (classes 1-2 against 3-4, as
        001), ``confusion`` (4 x 4 counts, rows true) and ``n``.
    """
    pred = np.asarray(results["class"], int)
    true = np.asarray(truth["class"], int)
    ok = (pred >= 1) & (true >= 1)
    pred, true = pred[ok], true[ok]
    conf = np.zeros((4, 4), int)
    np.add.at(conf, (true - 1, pred - 1), 1)
    n = int(ok.sum())
    return {"accuracy": float((pred == true).mean()) if n else float("nan"),
            "binary_accuracy": float(((pred <= 2) == (true <= 2)).mean()) if n else float("nan"),
            "confusion": conf, "n": n}


def summary_figure(results, truth, images, path, per_class=6, size=32):
    """Write the demo's summary PNG.

    Parameters
    ----------
    results : astropy.table.Table
        From `glue_starclf.core.predict.predict`.
    truth : astropy.table.Table
        The mock truth, row-aligned with ``results``.
    images : ndarray, shape (5, ny, nx)
        The field [e-/s], for the stamps.
    path : path-like
        PNG to write.
    per_class : int
        Stamps per predicted class (the most confident ones).
    size : int
        Stamp side [px].
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.cutouts import extract_stamps
    from ..io.mosaic import Mosaic
    from ..sim.preview import rgb_image, rgb_norm

    cls = np.asarray(results["class"], int)
    pmax = np.max([np.asarray(results[f"p_class{k}"], float) for k in range(1, 5)], axis=0)
    picks = []
    for c in range(1, 5):
        rows = np.flatnonzero(cls == c)
        picks.append(rows[np.argsort(-np.nan_to_num(pmax[rows]))][:per_class])
    flat = np.concatenate(picks) if picks else np.zeros(0, int)
    stamps = extract_stamps(Mosaic.from_arrays(images), np.asarray(results["x"])[flat],
                            np.asarray(results["y"])[flat], size=size).stamps
    norm = rgb_norm(stamps) if len(flat) else None

    fig = plt.figure(figsize=(15, 8.2))
    grid = fig.add_gridspec(4, per_class + 8, wspace=0.08, hspace=0.25)
    k = 0
    for c, rows in enumerate(picks):
        for j in range(per_class):
            ax = fig.add_subplot(grid[c, j])
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(rows):
                ax.imshow(rgb_image(stamps[k], norm=norm), origin="lower")
                true_c = int(truth["class"][rows[j]])
                ax.set_title(f"p {pmax[rows[j]]:.2f} (true {true_c})", fontsize=7,
                             color="black" if true_c == c + 1 else "tab:red")
                k += 1
            else:
                ax.axis("off")
            if j == 0:
                ax.set_ylabel(f"class {CLASS_LABELS[c]}", fontsize=8, color=CLASS_COLOURS[c])

    ax = fig.add_subplot(grid[:, per_class + 1:per_class + 4])
    for c in range(1, 4):
        m = cls == c
        ax.scatter(np.asarray(results["log_age"])[m], np.asarray(results["log_mass"])[m], s=9,
                   color=CLASS_COLOURS[c - 1], label=f"class {c}", alpha=0.8)
    ax.set_xlabel("log age [yr] (predicted)")
    ax.set_ylabel("log mass [Msun] (predicted)")
    ax.set_title("clusters (classes 1-3)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")

    score = accuracy_against_truth(results, truth)
    ax = fig.add_subplot(grid[:, per_class + 5:])
    conf = score["confusion"]
    frac = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(4):
        for j in range(4):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=9,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(4), [str(c) for c in range(1, 5)])
    ax.set_yticks(range(4), [str(c) for c in range(1, 5)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (mock)")
    ax.set_title(f"accuracy {score['accuracy']:.2f}, cluster/non-cluster "
                 f"{score['binary_accuracy']:.2f} (n {score['n']})", fontsize=9)
    fig.suptitle("glue-starclf demo: most confident sources per predicted class, physical "
                 "estimates, confusion against the mock truth", fontsize=11)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def run_demo(out, seed=0, shape=(1536, 1536), n_sources=250, distance_mpc=10.0, models=None,
             stream=None):
    """Render, classify and summarise a mock field in folder ``out``.

    Parameters
    ----------
    out : path-like
        Output folder (created; files in it are replaced).
    seed, shape, n_sources, distance_mpc
        Of the mock field (`glue_starclf.sim.mosaic.random_field`).
    models : path-like, optional
        Folder of model cards (default: the bundled models).
    stream : file, optional
        Where the report lines go (default: standard output).

    Returns
    -------
    dict
        Paths written and the accuracy against the truth.
    """
    import sys

    from ..core.predict import load_ensemble, predict
    from ..sim.mosaic import random_field, write_mosaic
    from ..sim.preview import field_preview
    from ..io.writers import write_regions, write_table
    stream = stream or sys.stdout
    classifier = load_ensemble("classifier", models)
    physical = load_ensemble("physical", models)
    out = Path(out)
    t0 = time.perf_counter()
    mock = random_field(seed=seed, shape=shape, distance_mpc=distance_mpc, n_sources=n_sources)
    paths = write_mosaic(mock, out, prefix="demo", overwrite=True)
    field_preview(mock, out / "demo_preview.png")
    t_render = time.perf_counter() - t0
    truth = mock.truth
    catalog = Table({"id": truth["id"], "x": truth["x"], "y": truth["y"]})
    t0 = time.perf_counter()
    images = [f"{b}={p}" for b, p in paths.items() if b != "truth"]
    results = predict(images, catalog, distance_mpc, classifier=classifier, physical=physical)
    t_classify = time.perf_counter() - t0
    written = {"results": write_table(results, out / "results.ecsv", overwrite=True),
               "regions": write_regions(results, out / "results.reg", overwrite=True),
               "summary": summary_figure(results, truth, mock.images, out / "summary.png"),
               "preview": out / "demo_preview.png", "truth": Path(paths["truth"])}
    score = accuracy_against_truth(results, truth)
    counts = ", ".join(f"{int((results['class'] == c).sum())} class {c}" for c in (1, 2, 3, 4))
    print(f"Rendered a {shape[1]} x {shape[0]} px mock field at {distance_mpc:g} Mpc with "
          f"{len(truth)} sources in {t_render:.1f} s; classified them with "
          f"{len(classifier.members)} + {len(physical.members)} bundled models in "
          f"{t_classify:.1f} s ({counts}).", file=stream)
    print(f"Against the mock truth: 4-class accuracy {score['accuracy']:.3f}, "
          f"cluster/non-cluster {score['binary_accuracy']:.3f} ({score['n']} sources).",
          file=stream)
    for name, p in written.items():
        print(f"  {name:8s} {p}", file=stream)
    return {**{k: Path(v) for k, v in written.items()}, "accuracy": score["accuracy"],
            "binary_accuracy": score["binary_accuracy"]}
