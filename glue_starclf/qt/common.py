"""Qt pieces shared by the plugin's tools, viewers and menu actions.

- `notify`: a non-blocking message box (glue keeps running behind it); every
  message is also kept in `MESSAGES` and logged, so tests and the log see
  what the user saw.
- `ModelChooser`: bundled models (default), a models folder, or one of the
  user's fine-tuned versions (`glue_starclf.glue.finetuning.list_user_models`).
- `DistanceEdit`: the galaxy distance in Mpc.
- `JobRunner`: runs `glue_starclf.glue.results.run_job` (a subclass: any
  ``work(job, callback)``) in a `QThread` with a progress dialog and
  Cancel; the result is handed to a callback in the GUI thread only when
  the work completed, so a cancelled or failed job adds nothing.
"""

import logging
import re
import threading
import time
from contextlib import contextmanager

from qtpy import QtCore, QtWidgets
from qtpy.QtCore import Qt

from ..core.ood import ood_warning
from ..glue.results import NoSources, run_job

__all__ = ["MESSAGES", "MENU_TIPS", "add_menu_tips", "notify", "one_line", "gui_message",
           "application_of", "main_window",
           "ask_for_moved_files", "tile_tab", "keeping_edit_subset", "check_models_folder",
           "ModelChooser", "distance_range",
           "DistanceEdit", "JobRunner", "Cancelled", "RUNNING"]

log = logging.getLogger("glue_starclf")

#: Every message shown, as ``(level, text)``, oldest first.
MESSAGES = []

#: Runners whose thread has not finished yet (kept alive until then).
RUNNING = set()

_ICONS = {"information": QtWidgets.QMessageBox.Information,
          "warning": QtWidgets.QMessageBox.Warning,
          "error": QtWidgets.QMessageBox.Critical}

#: The models folder chosen last in this session (the default next time).
_last_folder = {"path": ""}


def application_of(session):
    """The glue application of a session (None without one)."""
    return getattr(session, "application", None)


def main_window(session):
    """The application's main window, a parent for dialogs (None when headless or absent)."""
    app = application_of(session)
    return app if app is not None and hasattr(app, "show") else None


#: Tooltips of the plugin's Plugins-menu items (glue makes them with their
#: label only), by label (`glue_starclf.qt.actions.MENU`).
MENU_TIPS = {
    "Open HST mosaic…": "Open the band files of an HST field (placed by their FILTER keyword) "
                        "and a catalog, in a star-cluster image viewer",
    "Classify catalog sources…": "Classify every row of a catalog with x/y on a mosaic; the "
                                 "results become columns of the catalog",
    "Cluster inspector": "Stamps, class probabilities and age–A_V posteriors of the results; "
                         "keys 1–4 label the focused source",
    "Diagnostics layout": "Colour–colour, age–mass, luminosity and mass function views of "
                          "the results, with the classes as linked subsets",
    "Fine-tune on my labels…": "Fine-tune a classifier on the labels given in the inspector; "
                               "the new version goes to your models folder",
    "Star clusters: help": "Open the plugin's documentation (README)",
}


def add_menu_tips(app):
    """Give the plugin's Plugins-menu items their tooltips, and show menu tooltips (once)."""
    actions = getattr(app, "_actions", {}).get("plugins", [])
    for action in actions:
        tip = MENU_TIPS.get(action.text())
        if tip and action.toolTip() != tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
    for menu in app.findChildren(QtWidgets.QMenu):
        if any(a in menu.actions() for a in actions):
            menu.setToolTipsVisible(True)


def one_line(exc):
    """A one-line description of an exception for a message box."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


#: Library messages written for the command line, and what a GUI user does
#: instead: ``(pattern, replacement)`` applied to the first line.
_GUI_TEXTS = (
    (re.compile(r"(: not a FITS file) \(No SIMPLE card.*"),
     r"\1: choose the band's FITS image (drc or sci) in Plugins → Open HST mosaic…"),
    (re.compile(r"(: no such image file)$"),
     r"\1 (moved or renamed?): choose it again in Plugins → Open HST mosaic…"),
    (re.compile(r"(no \w+ models in .*?) \(train them with .*--models DIR\)"),
     r"\1: choose a models folder (classifier-*.json and physical-*.json) in the Models "
     r"row of the Classify dialog, or reinstall glue-starclf for the bundled models"),
    (re.compile(r"(: given as (F\w+) but its header \w+ = '?(F\w+?)'? names another band); "
                r"refused \(use --force-band.*"),
     r"\1: put the file in its own band's row of Plugins → Open HST mosaic…, or choose the "
     r"\2 file"),
    (re.compile(r"(: cannot read it as a catalog table) \(.*"),
     r"\1: choose an ECSV, CSV or FITS table, or a LEGUS .tab, in the Catalog row"),
)


def gui_message(exc):
    """`one_line` of an exception, command-line advice replaced by what to do in glue.

    Parameters
    ----------
    exc : Exception

    Returns
    -------
    str
    """
    text = one_line(exc)
    for pattern, replacement in _GUI_TEXTS:
        text = pattern.sub(replacement, text)
    return text


def ask_for_moved_files(label, missing):
    """Ask for the folder the band files of a session's mosaic moved to (a folder dialog).

    Used while glue restores a session (`glue_starclf.glue_io.RELOCATORS`).

    Parameters
    ----------
    label : str
        The mosaic's label.
    missing : list of pathlib.Path
        Its band files that are not where the session says.

    Returns
    -------
    str or None
        A folder holding every missing file (by name); None when the user
        gave up (the mosaic is then restored without pixels, and a message
        says so), or without a running Qt application.
    """
    from pathlib import Path
    if QtWidgets.QApplication.instance() is None:
        return None
    names = ", ".join(p.name for p in missing)
    title = f"Band files of mosaic “{label}” not found ({names}): choose their new folder"
    while True:
        folder = QtWidgets.QFileDialog.getExistingDirectory(None, title)
        if not folder:
            notify(None, f"The band files of mosaic “{label}” were not found "
                   f"({', '.join(str(p) for p in missing)}): it is restored without pixels, "
                   f"with its catalogs, results, labels and links. To see and classify it, "
                   f"open its files again with Plugins → Open HST mosaic….", "warning")
            return None
        absent = [p.name for p in missing if not (Path(folder) / p.name).is_file()]
        if not absent:
            return folder
        title = (f"{', '.join(absent)} not in {folder}: choose the folder of the band files "
                 f"of mosaic “{label}” (Cancel: restore it without pixels)")


def tile_tab(app, viewers, columns=1):
    """Place viewers in a grid that fills the current tab of a glue application.

    Parameters
    ----------
    app : glue_qt.app.application.GlueApplication
    viewers : list of DataViewer
        In reading order.
    columns : int
    """
    QtWidgets.QApplication.processEvents()  # a new tab takes its size
    tab = app.current_tab
    area = tab.viewport().size() if hasattr(tab, "viewport") else tab.size()
    rows = -(-len(viewers) // columns)
    w, h = area.width() // columns, area.height() // max(rows, 1)
    for i, viewer in enumerate(viewers):
        viewer.position = ((i % columns) * w, (i // columns) * h)
        viewer.viewer_size = (w, h)


@contextmanager
def keeping_edit_subset(session):
    """Make subset groups without leaving one of them glue's active (edited) subset.

    glue selects a new subset group, and the user's next selection (a
    rectangle in any viewer) would then replace its definition. Inside this
    context the plugin's groups are made; afterwards the subsets the user
    was editing before are active again (none: the next selection makes a
    new subset).
    """
    mode = session.edit_subset_mode
    before = list(mode.edit_subset or [])
    try:
        yield
    finally:
        groups = session.data_collection.subset_groups
        keep = [g for g in before if g in groups]
        if list(mode.edit_subset or []) != keep:
            mode.edit_subset = keep


def notify(parent, text, level="information", title="Star clusters"):
    """Show a message without blocking the event loop, and record it.

    Parameters
    ----------
    parent : QWidget or None
    text : str
    level : {"information", "warning", "error"}
    title : str

    Returns
    -------
    QMessageBox
    """
    MESSAGES.append((level, text))
    getattr(log, "info" if level == "information" else "warning")("%s", text)
    box = QtWidgets.QMessageBox(_ICONS[level], title, text, QtWidgets.QMessageBox.Ok, parent)
    box.setAttribute(Qt.WA_DeleteOnClose)
    box.setModal(False)
    box.show()
    return box


def check_models_folder(path):
    """Refuse a models folder without classifier and physical models (before it is used).

    Raises
    ------
    ValueError
        Naming the folder, what it lacks, and what to do in the dialog.
    """
    from pathlib import Path

    from ..core.checkpoints import list_models
    todo = "choose another with Browse…, or the bundled models"
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"the models folder {path} does not exist: {todo}")
    try:
        cards = list_models(folder)
    except (OSError, ValueError) as exc:
        raise ValueError(f"the models folder {path} has an unreadable model card "
                         f"({one_line(exc)}): {todo}") from None
    families = {c.get("family") for c in cards}
    missing = [f for f in ("classifier", "physical") if f not in families]
    if missing:
        raise ValueError(f"the models folder {path} holds no {' and no '.join(missing)} "
                         f"models ({', '.join(f + '-*.json' for f in missing)} with their "
                         f".safetensors): {todo}")


class ModelChooser(QtWidgets.QWidget):
    """Bundled models (default), the models of a folder, or a fine-tuned version.

    Attributes
    ----------
    versions : list of (str, pathlib.Path)
        The user's fine-tuned versions offered (items 2 and on).
    changed : Signal
        Emitted when the choice (item or folder text) changes.
    """

    changed = QtCore.Signal()

    def __init__(self, parent=None):
        from ..glue.finetuning import list_user_models
        super().__init__(parent)
        self.combo = QtWidgets.QComboBox()
        self.combo.addItems(["Bundled models", "Models folder"])
        self.versions = list_user_models()
        for name, folder in self.versions:
            self.combo.addItem(f"Fine-tuned: {name}", str(folder))
        self.folder = QtWidgets.QLineEdit(_last_folder["path"])
        self.folder.setPlaceholderText("folder with classifier-*.json / physical-*.json")
        self.browse = QtWidgets.QPushButton("Browse…")
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.combo)
        lay.addWidget(self.folder, 1)
        lay.addWidget(self.browse)
        self.combo.currentIndexChanged.connect(self._sync)
        self.combo.currentIndexChanged.connect(self.changed)
        self.folder.textChanged.connect(self.changed)
        self.browse.clicked.connect(self._browse)
        if _last_folder["path"]:
            self.combo.setCurrentIndex(1)
        self._sync()

    def _sync(self, *args):
        custom = self.combo.currentIndex() == 1
        self.folder.setEnabled(custom)
        self.browse.setEnabled(custom)

    def _browse(self):
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Models folder",
                                                          self.folder.text())
        if path:
            self.folder.setText(path)

    def set_folder(self, path):
        """Choose a models folder (None or "" for the bundled models; a version's is its item)."""
        version = self.combo.findData(str(path)) if path else -1
        if version >= 2:
            self.combo.setCurrentIndex(version)
            return
        self.folder.setText(str(path or ""))
        self.combo.setCurrentIndex(1 if path else 0)

    def chosen(self):
        """The models folder chosen, unchecked: None for the bundled models, "" when not given."""
        if self.combo.currentIndex() == 0:
            return None
        if self.combo.currentIndex() >= 2:
            return self.combo.currentData()
        return self.folder.text().strip()

    def value(self):
        """The models folder, or None for the bundled models.

        Raises
        ------
        ValueError
            If a folder is chosen but not given.
        """
        path = self.chosen()
        if self.combo.currentIndex() != 1:
            return path
        if not path:
            raise ValueError("choose a models folder, or the bundled models")
        check_models_folder(path)
        _last_folder["path"] = path  # only a good folder is offered next time
        return path


def distance_range():
    """The galaxy distances [Mpc] the models were trained on (the mock banks' range)."""
    from ..sim.bank import BANK_RANGES
    return BANK_RANGES["distance_mpc"]


class DistanceEdit(QtWidgets.QWidget):
    """Galaxy distance [Mpc] with a note on where the default came from.

    Parameters
    ----------
    distance : float, optional
        The distance [Mpc] shown first; None leaves the field empty.
    source : str
        Where it came from, shown beside it (e.g. `default_distance`'s).
    parent : QWidget, optional
    """

    def __init__(self, distance=None, source="", parent=None):
        super().__init__(parent)
        self.edit = QtWidgets.QLineEdit("" if distance is None else f"{distance:g}")
        self.edit.setPlaceholderText("Mpc")
        self.note = QtWidgets.QLabel(source)
        self.note.setStyleSheet("color: gray")
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit)
        lay.addWidget(QtWidgets.QLabel("Mpc"))
        lay.addWidget(self.note, 1)

    def value(self):
        """The distance in Mpc.

        Raises
        ------
        ValueError
            If it is not a positive number.
        """
        text = self.edit.text().strip()
        try:
            d = float(text)
        except ValueError:
            raise ValueError(f"distance {text!r} is not a number of Mpc") from None
        if not (d > 0 and d < 1e4):
            lo, hi = distance_range()
            raise ValueError(f"distance {text} Mpc must be positive (the models know "
                             f"{lo:g}–{hi:g} Mpc)")
        return d


class Cancelled(Exception):
    """Raised inside the worker by the progress callback after Cancel."""


class _JobThread(QtCore.QThread):
    progress = QtCore.Signal(int, int)
    succeeded = QtCore.Signal(object)
    failed = QtCore.Signal(str, bool)  # message, True for "nothing to classify"

    def __init__(self, job, work):
        super().__init__()
        self.job = job
        self.work = work
        self.cancel_requested = threading.Event()

    def _callback(self, done, total):
        if self.cancel_requested.is_set():
            raise Cancelled()
        self.progress.emit(int(done), int(total))

    def run(self):
        try:
            table = self.work(self.job, callback=self._callback)
        except Cancelled:
            return
        except NoSources as exc:
            self.failed.emit(one_line(exc), True)
        except Exception as exc:  # shown to the user, never a traceback
            log.debug("the job failed", exc_info=True)
            self.failed.emit(f"{type(exc).__name__}: {gui_message(exc)}", False)
        else:
            if not self.cancel_requested.is_set():
                self.succeeded.emit(table)


class JobRunner(QtCore.QObject):
    """Run a classification job in a thread, with a progress dialog and Cancel.

    Subclasses run other work by overriding `work` and the texts
    (`CANCELLED`, `FAILED`, `NOT_ADDED`, `progress_text`).

    Parameters
    ----------
    job : glue_starclf.glue.results.ClassifyJob
    on_result : callable
        Called in the GUI thread with the work's result (the results table)
        when the job completed (not after Cancel or an error); its own
        errors are shown as a message.
    parent : QWidget, optional
        Parent of the progress dialog and the messages.
    title : str

    Attributes
    ----------
    state : str
        ``"running"``, then ``"done"``, ``"cancelled"``, ``"failed"`` or
        ``"empty"`` (nothing to classify).
    message : str
        The last message shown about this job.
    box : QtWidgets.QMessageBox or None
        That message's box.
    """

    finished = QtCore.Signal(str)

    #: ``work(job, callback)`` run in the thread.
    work = staticmethod(run_job)
    #: Message after Cancel.
    CANCELLED = "Classification cancelled: nothing was added."
    #: First line of the message after an error.
    FAILED = "Classification failed, nothing was added."
    #: Start of the message when ``on_result`` fails.
    NOT_ADDED = "The results could not be added"

    def __init__(self, job, on_result, parent=None, title="Classifying sources"):
        super().__init__()
        self.job = job
        self.on_result = on_result
        self.widget = parent
        self.state = "idle"
        self.message = ""
        self.started_at = None
        self.box = None
        self.thread = _JobThread(job, self.work)
        self.thread.progress.connect(self._on_progress)
        self.thread.succeeded.connect(self._on_succeeded)
        self.thread.failed.connect(self._on_failed)
        self.thread.finished.connect(self._on_thread_finished)
        self.dialog = QtWidgets.QProgressDialog(f"{title}…", "Cancel", 0, 0, parent)
        self.dialog.setWindowTitle(title)
        self.dialog.setWindowModality(Qt.WindowModal)
        self.dialog.setMinimumDuration(0)
        self.dialog.setAutoClose(False)
        self.dialog.setAutoReset(False)
        self.dialog.canceled.connect(self.cancel)

    def start(self):
        """Start the worker thread and show the progress dialog."""
        self.state = "running"
        self.started_at = time.perf_counter()
        RUNNING.add(self)
        self.dialog.show()
        self.thread.start()

    def cancel(self):
        """Stop: the dialog closes now, the worker stops after its current batch."""
        if self.state != "running":
            return
        self.thread.cancel_requested.set()
        self._finish("cancelled", self.CANCELLED, "information")

    def progress_text(self, done, total):
        """The progress dialog's text."""
        return f"Classifying {total:,} sources: {done:,} done"

    def _on_progress(self, done, total):
        if self.state != "running":
            return
        self.dialog.setMaximum(max(total, 1))
        self.dialog.setValue(done)
        self.dialog.setLabelText(self.progress_text(done, total))

    def _on_succeeded(self, table):
        if self.state != "running":
            return
        try:
            text = self.on_result(table)
        except Exception as exc:
            log.debug("adding the results failed", exc_info=True)
            self._finish("failed", f"{self.NOT_ADDED}: {one_line(exc)}", "error")
            return
        warning = (ood_warning(table["flags"])
                   if "flags" in getattr(table, "colnames", ()) else None)
        if warning:
            self._finish("done", f"{text}\n{warning}." if text else f"{warning}.", "warning")
            return
        self._finish("done", text, "information")

    def _on_failed(self, text, empty):
        if self.state != "running":
            return
        if empty:
            self._finish("empty", f"Nothing to classify: {text}. No dataset was made.",
                         "warning")
        else:
            self._finish("failed", f"{self.FAILED}\n{text}", "error")

    def _finish(self, state, text, level):
        self.state = state
        self.message = text or ""
        self.dialog.canceled.disconnect(self.cancel)
        self.dialog.close()
        if text:
            self.box = notify(self.widget, text, level)
        self.finished.emit(state)

    def _on_thread_finished(self):
        if self.state == "running":  # the thread ended without a verdict
            self._finish("failed", f"{self.FAILED}\nThe worker stopped unexpectedly.",
                         "error")
        RUNNING.discard(self)
