"""Labelling tools of the cluster inspector and fine-tuning on the labels (Qt).

The inspector's buttons (and the Plugins menu item "Fine-tune on my
labels…") call:

- `show_confusion`: the confusion matrix of the labels (consensus per
  source) against the model's classes, updated as labels are given;
- `export_labels_dialog` / `export_labels_to`: the votes to an ECSV (or
  CSV) labels file, one row per vote, that ``python -m training finetune
  --labels`` takes as it is;
- `import_labels_dialog` / `import_labels_from`: votes of a labels file
  added to the dataset (unknown ids reported, skipped and counted);
- `finetune_from_inspector` / `finetune_menu` -> `FinetuneDialog` ->
  `start_finetune`: ``glue_starclf.learn.finetune.finetune`` on the labelled
  sources in a worker (`FinetuneRunner`: progress, Cancel; a cancelled or
  failed run registers nothing), k-fold accuracy before and after in the
  closing message, the new version in the user's models folder
  (`glue_starclf.glue.finetuning`), and a button to recompute the results with
  it (`recompute_results`).

The Qt-free work is in `glue_starclf.glue.labels` and `glue_starclf.glue.finetuning`.
"""

import logging
from pathlib import Path

import numpy as np
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from ..glue.finetuning import (FinetuneJob, check_version_name, classifier_cards,
                               default_version_name, list_user_models, register_finetuned,
                               run_finetune)
from ..glue.data import RESULTS, RESULTS_META_KEY, kind_of, mosaic_from_data
from ..glue.results import (ClassifyJob, attach_results, catalog_sources, merge_results,
                            models_folder_of, mosaic_of)
from ..glue.labels import (N_CLASSES, export_labels, import_labels, label_summary, labels_table,
                           parse_votes, vote_fractions, votes_of)
from .common import JobRunner, main_window, notify, one_line

__all__ = ["ConfusionDialog", "show_confusion", "export_labels_dialog", "export_labels_to",
           "import_labels_dialog", "import_labels_from", "FinetuneDialog", "FinetuneRunner",
           "finetune_from_inspector", "finetune_menu", "finetune_dialog", "start_finetune",
           "recompute_results", "starting_models"]

log = logging.getLogger("glue_starclf")


# -- confusion matrix ------------------------------------------------------------------

class ConfusionDialog(QtWidgets.QDialog):
    """The labels' confusion matrix against the model's classes (non-modal).

    Rows are the labellers' consensus class (``class_user``), columns the
    model's ``class``; sources whose consensus is "not sure" are counted
    apart.

    Parameters
    ----------
    data : glue.core.data.Data
    parent : QWidget, optional
    """

    def __init__(self, data, parent=None):
        super().__init__(parent)
        self.data = data
        self.setWindowTitle(f"Labels vs model: {data.label}")
        self.table = QtWidgets.QTableWidget(N_CLASSES + 1, N_CLASSES + 1)
        names = [f"class {k}" for k in range(1, N_CLASSES + 1)] + ["total"]
        self.table.setHorizontalHeaderLabels([f"model {n}" for n in names])
        self.table.setVerticalHeaderLabels([f"label {n}" for n in names])
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.summary = QtWidgets.QLabel("")
        self.summary.setWordWrap(True)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(self.summary)
        self.resize(620, 260)
        self.update_matrix()

    def update_matrix(self):
        """Recount from the dataset."""
        s = label_summary(self.data)
        m = np.zeros((N_CLASSES + 1, N_CLASSES + 1), int)
        m[:N_CLASSES, :N_CLASSES] = s["confusion"]
        m[N_CLASSES, :] = m[:N_CLASSES, :].sum(axis=0)
        m[:, N_CLASSES] = m[:, :N_CLASSES].sum(axis=1)
        for i in range(N_CLASSES + 1):
            for j in range(N_CLASSES + 1):
                item = QtWidgets.QTableWidgetItem(str(m[i, j]))
                item.setTextAlignment(Qt.AlignCenter)
                if i == j < N_CLASSES:
                    item.setBackground(Qt.green if m[i, j] else Qt.white)
                self.table.setItem(i, j, item)
        text = (f"{s['labelled']} of {s['n']} sources labelled; {s['not_sure']} not sure; "
                f"{s['soft']} with votes for different classes.")
        if s["compared"]:
            text += (f" The model agrees with the labels on {s['agree']} of {s['compared']} "
                     f"({s['agreement']:.1%}).")
        self.summary.setText(text)
        self.matrix = m


def show_confusion(inspector):
    """Inspector button "Confusion matrix…".

    Returns
    -------
    ConfusionDialog or None
    """
    data = inspector.results_data
    if data is None:
        notify(inspector, "No results in the inspector: drag the “star clusters” dataset here.",
               "warning")
        return None
    dialog = ConfusionDialog(data, inspector)
    dialog.setAttribute(Qt.WA_DeleteOnClose)
    inspector.labels_changed.connect(dialog.update_matrix)
    dialog.show()
    return dialog


# -- labels files ----------------------------------------------------------------------

def export_labels_dialog(inspector):
    """Inspector button "Export labels…": a file dialog, then `export_labels_to`."""
    path, _ = QtWidgets.QFileDialog.getSaveFileName(
        inspector, "Export labels", "labels.ecsv", "ECSV (*.ecsv);;CSV (*.csv)")
    return export_labels_to(inspector, path) if path else None


def export_labels_to(inspector, path):
    """Write the votes of the inspector's dataset to a labels file (replacing it).

    Returns
    -------
    int or None
        Votes written; None after a message saying why not.
    """
    data = inspector.results_data
    if data is None:
        notify(inspector, "No results in the inspector to export labels of.", "warning")
        return None
    try:
        n = export_labels(data, path, overwrite=True)
    except (OSError, ValueError) as exc:
        notify(inspector, f"The labels were not exported: {one_line(exc)}", "warning")
        return None
    sources = sum(1 for t in votes_of(data) if t)
    notify(inspector, f"Exported {n} votes on {sources} sources to {path}. Fine-tune from the "
           f"command line with: python -m training finetune --labels {path} --from MODEL "
           f"--image BAND=FILE … --out NEW.safetensors")
    return n


def import_labels_dialog(inspector):
    """Inspector button "Import labels…": a file dialog, then `import_labels_from`."""
    path, _ = QtWidgets.QFileDialog.getOpenFileName(
        inspector, "Import labels", "", "Labels (*.ecsv *.csv);;All (*)")
    return import_labels_from(inspector, path) if path else None


def import_labels_from(inspector, path):
    """Add the votes of a labels file to the inspector's dataset, and say what happened.

    Returns
    -------
    dict or None
        The report of `glue_starclf.glue.labels.import_labels`; None when
        nothing could be read.
    """
    data = inspector.results_data
    if data is None:
        notify(inspector, "No results in the inspector to import labels into.", "warning")
        return None
    try:
        r = import_labels(data, path)
    except (OSError, ValueError) as exc:
        notify(inspector, f"No labels imported: {one_line(exc)}", "warning")
        return None
    text = (f"Imported {Path(path).name}: {r['added']} votes added, {r['replaced']} replaced "
            f"by newer ones, {r['unchanged']} already there, on {r['sources']} sources "
            f"({r['rows']} rows read).")
    if r["by_position"]:
        text += f" {r['by_position']} rows matched by position (their ids differ)."
    if r["not_labelled"]:
        text += f" {r['not_labelled']} rows without a class were skipped."
    if r["unknown"]:
        text += (f" {r['unknown']} rows match no source of “{data.label}” (unknown id and "
                 f"position) and were skipped, e.g. {', '.join(r['unknown_examples'])}.")
    notify(inspector, text, "warning" if r["unknown"] else "information")
    inspector.schedule_refresh()
    inspector.labels_changed.emit()
    return r


# -- fine-tuning -----------------------------------------------------------------------

def starting_models(data):
    """Classifier members a fine-tuning can start from.

    Those of the dataset's models folder first, then the bundled ones,
    then the user's versions.

    Returns
    -------
    list of (str, dict, str or None)
        Label, card and models folder (None: bundled).
    """
    out, seen = [], set()
    folders = [models_folder_of(data), None] + [str(f) for _, f in list_user_models()]
    for folder in folders:
        key = str(Path(folder).resolve()) if folder else "bundled"
        if key in seen:
            continue
        seen.add(key)
        try:
            cards = classifier_cards(folder)
        except (OSError, ValueError) as exc:
            log.info("models of %s not offered: %s", folder or "bundled", one_line(exc))
            continue
        for card in cards:
            out.append((f"{Path(card['_path']).stem} ({folder or 'bundled models'})", card,
                        folder))
    return out


class FinetuneDialog(QtWidgets.QDialog):
    """Choices of a fine-tuning: starting model, version name, frozen layers, folds, epochs.

    Parameters
    ----------
    intro : str
    members : list
        `starting_models`.
    parent : QWidget, optional

    Attributes
    ----------
    intro : QtWidgets.QLabel
        What will be fine-tuned on (the labels, per class).
    values : dict or None
        On OK: ``member`` (label, card, folder), ``name`` and ``settings``
        (keyword arguments of ``glue_starclf.learn.finetune.finetune``).
    """

    def __init__(self, intro, members, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Fine-tune on my labels")
        form = QtWidgets.QFormLayout()
        self.model = QtWidgets.QComboBox()
        for member in members:
            self.model.addItem(member[0], member)
        form.addRow("Start from", self.model)
        self.name = QtWidgets.QLineEdit(default_version_name(members[0][1]))
        form.addRow("New version", self.name)
        self.model.currentIndexChanged.connect(
            lambda i: self.name.setText(default_version_name(self.model.itemData(i)[1])))

        def spin(lo, hi, value, tip):
            w = QtWidgets.QSpinBox()
            w.setRange(lo, hi)
            w.setValue(value)
            w.setToolTip(tip)
            return w
        self.freeze = spin(0, 10, 0, "layers kept fixed (003 froze none)")
        self.folds = spin(2, 10, 5, "k of the k-fold cross-validation (accuracy before/after)")
        self.epochs = spin(1, 100, 8, "passes over the labels per training")
        self.curve_folds = spin(0, 10, 0, "folds the learning curve (fine-tuned vs from "
                                          "scratch, 003 Fig. 4) is drawn on; 0: none (faster)")
        form.addRow("Frozen layers", self.freeze)
        form.addRow("Folds", self.folds)
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning-curve folds", self.curve_folds)
        self.error = QtWidgets.QLabel("")
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok |
                                             QtWidgets.QDialogButtonBox.Cancel)
        buttons.button(QtWidgets.QDialogButtonBox.Ok).setText("Fine-tune")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        lay = QtWidgets.QVBoxLayout(self)
        self.intro = QtWidgets.QLabel(intro)
        self.intro.setWordWrap(True)
        lay.addWidget(self.intro)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.resize(600, self.sizeHint().height())
        self.values = None

    def accept(self):
        """Validate the name; keep the dialog open with the reason when it is wrong."""
        try:
            name = check_version_name(self.name.text())
        except ValueError as exc:
            self.error.setText(str(exc))
            return
        self.values = {"member": self.model.currentData(), "name": name,
                       "settings": {"freeze": self.freeze.value(), "folds": self.folds.value(),
                                    "epochs": self.epochs.value(),
                                    "curve_folds": self.curve_folds.value()}}
        super().accept()


class FinetuneRunner(JobRunner):
    """`JobRunner` of `glue_starclf.glue.finetuning.run_finetune`.

    After success, the closing message (`box`) has a button "Recompute
    results with it"; `recompute` is that button's runner once clicked.
    """

    work = staticmethod(run_finetune)
    CANCELLED = "Fine-tuning cancelled: no model was registered."
    FAILED = "Fine-tuning failed, no model was registered."
    NOT_ADDED = "The fine-tuned model could not be registered"

    def progress_text(self, done, total):
        """The progress dialog's text: optimisation step ``done`` of ``total``."""
        return (f"Fine-tuning on {len(self.job.targets):,} labelled sources: step {done:,} "
                f"of {total:,}")


def _check_labels(data, parent):
    """Rows and vote fractions of a dataset, or None after a message."""
    rows, fractions = vote_fractions(data)
    if len(rows) < N_CLASSES:
        notify(parent, f"Fine-tuning needs at least {N_CLASSES} labelled sources (the number "
               f"of classes); “{data.label}” has {len(rows)} with a class (votes 1–4; “not "
               f"sure” does not count). Label more in the cluster inspector (keys 1–4).",
               "warning")
        return None
    return rows, fractions


def finetune_dialog(session, data, parent=None):
    """The fine-tuning dialog for the labels of a dataset; OK starts `start_finetune`.

    Parameters
    ----------
    session : glue.core.session.Session
    data : glue.core.data.Data
        A dataset holding votes (results, or a catalog with results).
    parent : QWidget, optional
        Parent of the dialog and messages.

    Returns
    -------
    FinetuneDialog or None
        The dialog (its ``runner`` is set on OK); None after a message
        (too few labels, no mosaic, no model).
    """
    checked = _check_labels(data, parent)
    if checked is None:
        return None
    rows, fractions = checked
    if mosaic_of(session.data_collection, data) is None:
        notify(parent, f"The mosaic of “{data.label}” is not in the session: open it to cut "
               f"the labelled stamps.", "warning")
        return None
    members = starting_models(data)
    if not members:
        notify(parent, "No classifier model to start from: the bundled models are missing "
               "and the results name no models folder.", "warning")
        return None
    hard = np.bincount(fractions.argmax(axis=1), minlength=N_CLASSES)
    soft = int(((fractions > 0).sum(axis=1) > 1).sum())
    missing = [str(k + 1) for k in range(N_CLASSES) if hard[k] == 0]
    intro = (f"{len(rows)} labelled sources of “{data.label}” (by most votes: "
             f"{', '.join(f'{n} class {k + 1}' for k, n in enumerate(hard))}; {soft} with votes "
             f"for several classes, used as soft labels). The accuracy before and after is "
             f"cross-validated on them; the new version goes to your models folder.")
    if missing:
        intro += f"\nNo label of class {', '.join(missing)}: the model learns nothing of it here."
    dialog = FinetuneDialog(intro, members, parent)
    dialog.runner = None
    dialog.accepted.connect(lambda: setattr(
        dialog, "runner", start_finetune(session, data, dialog.values, parent)))
    dialog.open()
    return dialog


def finetune_from_inspector(inspector):
    """Inspector button "Fine-tune on my labels…" (the dialog is also its ``last_dialog``)."""
    data = inspector.results_data
    if data is None:
        notify(inspector, "No results in the inspector: drag the “star clusters” dataset here "
               "and label sources first.", "warning")
        return None
    inspector.last_dialog = finetune_dialog(inspector.session, data, inspector)
    return inspector.last_dialog


def finetune_menu(session, data_collection):
    """Plugins menu "Fine-tune on my labels…": the first dataset holding votes."""
    labelled = [d for d in data_collection if d.ndim == 1 and any(votes_of(d))]
    if not labelled:
        notify(main_window(session), "No labels yet: label sources in the cluster inspector "
               "(keys 1–4), or import a labels file there.", "warning")
        return None
    return finetune_dialog(session, labelled[0], main_window(session))


def start_finetune(session, data, values, parent=None):
    """Run a fine-tuning in a worker with progress and Cancel.

    Parameters
    ----------
    session : glue.core.session.Session
    data : glue.core.data.Data
        The labelled dataset.
    values : dict
        `FinetuneDialog.values`.
    parent : QWidget, optional

    Returns
    -------
    FinetuneRunner or None
    """
    checked = _check_labels(data, parent)
    if checked is None:
        return None
    rows, fractions = checked
    mosaic_data = mosaic_of(session.data_collection, data)
    x = np.asarray(data["x"], float)[rows]
    y = np.asarray(data["y"], float)[rows]
    labellers = sorted({name for t in votes_of(data) for name in parse_votes(t)})
    _, card, folder = values["member"]
    job = FinetuneJob(mosaic_from_data(mosaic_data), x, y, fractions, card["_path"], folder,
                      values["name"], dict(values["settings"]), labels_table(data),
                      {"dataset": data.label, "mosaic": mosaic_data.label,
                       "labellers": labellers, "sources": int(len(rows)),
                       "votes": int(sum(len(parse_votes(t)) for t in votes_of(data)))})

    def on_result(result):
        version = register_finetuned(result, job)
        runner.version = version
        cv = result.report["cv"]
        b, a = cv["before"]["accuracy"], cv["after"]["accuracy"]
        return (f"Fine-tuned “{version.name}” on {result.report['n_labels']} labelled sources "
                f"in {result.report['seconds']:.0f} s. {cv['folds']}-fold cross-validated "
                f"accuracy: {b['mean']:.3f} ± {b['std']:.3f} before, {a['mean']:.3f} ± "
                f"{a['std']:.3f} after.\nSaved in {version} (report "
                f"{next(version.glob('*_finetune.md')).name}); choose “Fine-tuned: "
                f"{version.name}” under Models in the classify tools, or recompute the "
                f"results with it now.")

    runner = FinetuneRunner(job, on_result, parent=parent, title="Fine-tune on my labels")
    runner.version = None
    runner.recompute = None

    def offer_recompute(state):
        if state != "done" or runner.box is None:
            return
        button = runner.box.addButton("Recompute results with it",
                                      QtWidgets.QMessageBox.ActionRole)
        button.clicked.connect(lambda: setattr(runner, "recompute", recompute_results(
            session, data, runner.version, parent)))

    runner.finished.connect(offer_recompute)
    runner.start()
    return runner


def recompute_results(session, data, folder, parent=None):
    """Classify every source of a dataset again with the models of ``folder``.

    The rows are updated in place (`merge_results`, or `attach_results`
    for a catalog), so labels, subsets and links stay. The distance, and the
    stellar CI where the user gave one, are those of the last classification.

    Parameters
    ----------
    session : glue.core.session.Session
    data : glue.core.data.Data
        A results dataset, or a catalog with results attached.
    folder : str or Path
        The models folder to classify with (e.g. a fine-tuned version's).
    parent : QWidget, optional
        Parent of the progress dialog and messages.

    Returns
    -------
    JobRunner or None
        The started job; None after a message (mosaic or distance unknown).
    """
    dc = session.data_collection
    mosaic_data = mosaic_of(dc, data)
    meta = data.meta.get(RESULTS_META_KEY) or {}
    distance = meta.get("distance_mpc")
    if mosaic_data is None or distance is None:
        notify(parent, f"“{data.label}” cannot be recomputed: its mosaic or distance is "
               f"unknown. Classify it again with the tools, choosing the new models.", "warning")
        return None
    # A stellar CI the user gave is given again: it may not be measurable on this field.
    given = meta.get("stellar_ci") if meta.get("stellar_ci_source") == "given" else None
    job = ClassifyJob(mosaic_from_data(mosaic_data), float(distance), str(folder),
                      sources=catalog_sources(data), stellar_ci=given)
    before = np.asarray(data["class"], float).copy() if kind_of(data) == RESULTS else None

    def on_result(table):
        if kind_of(data) == RESULTS:
            merge_results(dc, mosaic_data, table)
            changed = int((np.asarray(table["class"], float) != before).sum())
            what = f"{changed} changed class"
        else:
            attach_results(dc, data, mosaic_data, table)
            what = "result columns updated"
        return (f"Recomputed the {len(table)} sources of “{data.label}” with "
                f"“{Path(folder).name}”: {what}. The labels are kept.")

    runner = JobRunner(job, on_result, parent=parent, title="Recompute results")
    runner.start()
    return runner
