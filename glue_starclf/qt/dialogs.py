"""Dialogs of the plugin: open a mosaic, and the choices of a classification.

Both are shown with ``open()`` (window-modal, never a nested event loop)
and validate their fields on OK, showing what is wrong inside the dialog.
"""

from qtpy import QtWidgets
from qtpy.QtCore import Qt

from ..glue.data import detect_band
from ..io.bands import BANDS
from .common import DistanceEdit, ModelChooser, distance_range

__all__ = ["OpenMosaicDialog", "ClassifyDialog"]


def _error_label():
    label = QtWidgets.QLabel("")
    label.setStyleSheet("color: #b00020")
    label.setWordWrap(True)
    return label


class OpenMosaicDialog(QtWidgets.QDialog):
    """Band files of a mosaic (one per band, any may be left empty) and an optional catalog."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Open HST mosaic")
        form = QtWidgets.QFormLayout()
        self.band_edits = {}
        for band in BANDS:
            edit = QtWidgets.QLineEdit()
            edit.setPlaceholderText("FITS image (drc/sci), or leave empty if missing")
            self.band_edits[band] = edit
            form.addRow(band, self._with_browse(edit, f"{band} image",
                                                "FITS images (*.fits *.fits.gz *.fit);;All (*)"))
        self.catalog_edit = QtWidgets.QLineEdit()
        self.catalog_edit.setPlaceholderText("optional: LEGUS .tab, PHANGS FITS, ECSV/CSV")
        form.addRow("Catalog", self._with_browse(
            self.catalog_edit, "Source catalog",
            "Catalogs (*.tab *.fits *.ecsv *.csv *.txt);;All (*)"))
        choose = QtWidgets.QPushButton("Choose band files…")
        choose.setToolTip("Select the band files at once; each is placed by its FILTER keyword")
        choose.clicked.connect(self._choose_files)
        self.error = _error_label()
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok |
                                             QtWidgets.QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(choose)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.resize(640, self.sizeHint().height())

    def _with_browse(self, edit, caption, filters):
        box = QtWidgets.QWidget()
        lay = QtWidgets.QHBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(edit, 1)
        button = QtWidgets.QPushButton("Browse…")

        def browse():
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, caption, edit.text(), filters)
            if path:
                edit.setText(path)
        button.clicked.connect(browse)
        lay.addWidget(button)
        return box

    def _choose_files(self):
        paths, _ = QtWidgets.QFileDialog.getOpenFileNames(
            self, "Band files of the mosaic", "", "FITS images (*.fits *.fits.gz *.fit);;All (*)")
        self.set_files(paths)

    def set_files(self, paths):
        """Place files in the band rows by their band (FILTER keyword or file name).

        Returns
        -------
        list of str
            Files whose band could not be told (left out, and said so).
        """
        unknown = []
        for path in paths:
            band = detect_band(path)
            if band is None:
                unknown.append(str(path))
            else:
                self.band_edits[band].setText(str(path))
        self.error.setText("" if not unknown else
                           "band unknown (no FILTER keyword, no fNNNw in the name), "
                           "put it in its row: " + ", ".join(unknown))
        return unknown

    def items(self):
        """``"BAND=path"`` of the filled rows."""
        return [f"{b}={e.text().strip()}" for b, e in self.band_edits.items() if e.text().strip()]

    def catalog(self):
        """The catalog path, or None."""
        return self.catalog_edit.text().strip() or None

    def accept(self):
        if not self.items():
            self.error.setText("Give at least one band file.")
            return
        super().accept()


class ClassifyDialog(QtWidgets.QDialog):
    """Sources, mosaic (optional), distance, models and class prior of a classification.

    Parameters
    ----------
    title : str
    sources : list of (str, object)
        Choices of the source list (a catalog dataset, or None for
        "detect"), with their labels; the first is selected.
    mosaics : list of (str, glue.core.data.Data), optional
        Choices of the mosaic (shown only when given).
    distance : (float or None, str)
        Default distance and where it came from.
    intro : str
        A line above the fields.
    parent : QWidget, optional
    """

    def __init__(self, title, sources, distance, mosaics=None, intro="", parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        form = QtWidgets.QFormLayout()
        self.sources = QtWidgets.QComboBox()
        for label, obj in sources:
            self.sources.addItem(label, obj)
        form.addRow("Sources", self.sources)
        self.mosaics = None
        if mosaics is not None:
            self.mosaics = QtWidgets.QComboBox()
            for label, obj in mosaics:
                self.mosaics.addItem(label, obj)
            form.addRow("Mosaic", self.mosaics)
        self.distance = DistanceEdit(*distance)
        form.addRow("Distance", self.distance)
        self.models = ModelChooser()
        form.addRow("Models", self.models)
        self.class_balanced = QtWidgets.QCheckBox(
            "class-balanced (without the models' LEGUS class prior)")
        self.class_balanced.setToolTip(
            "The class probabilities as if the four classes were equally common: higher "
            "class-1 recall, lower accuracy on a LEGUS-like mix of sources")
        form.addRow("Class probabilities", self.class_balanced)
        self.error = _error_label()
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok |
                                             QtWidgets.QDialogButtonBox.Cancel)
        buttons.button(QtWidgets.QDialogButtonBox.Ok).setText("Classify")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        lay = QtWidgets.QVBoxLayout(self)
        if intro:
            text = QtWidgets.QLabel(intro)
            text.setWordWrap(True)
            text.setTextFormat(Qt.PlainText)
            lay.addWidget(text)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self.resize(560, self.sizeHint().height())
        self.values = None
        self._confirmed_distance = None
        self.distance.edit.textChanged.connect(self._distance_edited)

    def _distance_edited(self, *args):
        self._confirmed_distance = None
        self.buttons.button(QtWidgets.QDialogButtonBox.Ok).setText("Classify")

    def accept(self):
        """Validate; keep the dialog open with the reason when a field is wrong.

        A distance outside the models' range is warned about here, before
        the run; pressing "Classify anyway" then runs with it.
        """
        try:
            distance = self.distance.value()
            models = self.models.value()
        except ValueError as exc:
            self.error.setText(str(exc))
            return
        lo, hi = distance_range()
        if not lo <= distance <= hi and self._confirmed_distance != distance:
            self._confirmed_distance = distance
            self.error.setText(
                f"{distance:g} Mpc lies outside the distances the models were trained on "
                f"({lo:g}–{hi:g} Mpc): ages, masses and classes are extrapolated. Change the "
                f"distance, or press “Classify anyway”.")
            self.buttons.button(QtWidgets.QDialogButtonBox.Ok).setText("Classify anyway")
            return
        self.values = {"source": self.sources.currentData(), "distance_mpc": distance,
                       "models": models, "class_balanced": self.class_balanced.isChecked(),
                       "mosaic": self.mosaics.currentData() if self.mosaics is not None
                       else None}
        super().accept()
