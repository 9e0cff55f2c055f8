"""Dialogs of the plugin: open a mosaic, and the choices of a classification.

Both are shown with ``open()`` (window-modal, never a nested event loop)
and validate their fields on OK, showing what is wrong inside the dialog.
"""

import numpy as np
from qtpy import QtWidgets
from qtpy.QtCore import Qt

from ..core.predict import takes_stellar_ci
from ..core.stellar_ci import STELLAR_CI_RANGE
from ..glue.data import detect_band
from ..io.bands import BANDS
from .common import DistanceEdit, ModelChooser, distance_range

__all__ = ["OpenMosaicDialog", "ClassifyDialog", "STELLAR_CI_TIP", "STELLAR_CI_OFF_TIP",
           "STELLAR_CI_DETECT_TIP", "CI_CUT_TIP"]


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
        """Close with OK, unless no band file is given (then say so and stay open)."""
        if not self.items():
            self.error.setText("Give at least one band file.")
            return
        super().accept()


#: Tooltips of the "Stellar CI" row, when the chosen models take it and when not.
STELLAR_CI_TIP = (
    "The field's stellar CI: the V-band (F555W) concentration index, magnitude in a 1 px "
    "minus a 3 px aperture, of a star in this mosaic ({lo:g}–{hi:g} mag). The chosen "
    "models take it (the width of the PSF), and candidates detected in a region are cut 0.05 mag above it; "
    "left empty, it is measured on the image around the sources. "
    "Give it when the mosaic lacks F555W or the region is too small or empty to measure "
    "it.").format(lo=STELLAR_CI_RANGE[0], hi=STELLAR_CI_RANGE[1])
CI_CUT_TIP = ("Candidates are kept above this V-band concentration index (1 px vs 3 px). "
              "Left empty, each field is cut where LEGUS cut it, just above its own stars: "
              "the stellar CI + 0.05 mag. A number is a fixed cut (1.4: the highest of the "
              "LEGUS fields' cuts).")
STELLAR_CI_DETECT_TIP = (
    "The field's stellar CI: the V-band (F555W) concentration index, magnitude in a 1 px "
    "minus a 3 px aperture, of a star in this mosaic ({lo:g}–{hi:g} mag). Candidates "
    "detected in the region are cut 0.05 mag above it (the chosen models do not take "
    "it); left empty, it is measured on the image around the region."
    ).format(lo=STELLAR_CI_RANGE[0], hi=STELLAR_CI_RANGE[1])
STELLAR_CI_OFF_TIP = ("The chosen models do not take the stellar CI (neither their classifier "
                      "nor their physical members were trained with --stellar-ci)")


class ClassifyDialog(QtWidgets.QDialog):
    """Sources, mosaic (optional), distance, models, class prior and stellar CI of a classification.

    The "Stellar CI" row is enabled while the chosen models' classifier or
    physical members take it (`glue_starclf.core.predict.takes_stellar_ci`) or detection is
    chosen (its CI cut lies 0.05 mag above the stellar CI); the "CI cut" row
    is there when detection is one of the sources, enabled while it is
    chosen.

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

    Attributes
    ----------
    values : dict or None
        After OK: ``source``, ``distance_mpc``, ``models``, ``class_balanced``,
        ``stellar_ci`` (None: measured, or not taken), ``ci_min`` (the CI cut
        of detection; None: the field's own) and ``mosaic``.
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
        self.stellar_ci = QtWidgets.QLineEdit()
        self.stellar_ci.setPlaceholderText("measured on the image")
        self.stellar_ci.setMinimumWidth(self.stellar_ci.fontMetrics().horizontalAdvance(
            self.stellar_ci.placeholderText()) + 16)
        self.stellar_ci_row = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(self.stellar_ci_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.stellar_ci)
        row.addWidget(QtWidgets.QLabel("mag"))
        row.addStretch(1)
        form.addRow("Stellar CI", self.stellar_ci_row)
        self.stellar_ci_label = form.labelForField(self.stellar_ci_row)
        self._takes = False  # set by _models_changed below
        self.ci_cut = None
        if any(obj is None for _, obj in sources):  # "detect" is a choice
            self.ci_cut = QtWidgets.QLineEdit()
            self.ci_cut.setPlaceholderText("the field's own: stellar CI + 0.05")
            self.ci_cut.setMinimumWidth(self.ci_cut.fontMetrics().horizontalAdvance(
                self.ci_cut.placeholderText()) + 16)
            cut_row = QtWidgets.QWidget()
            row = QtWidgets.QHBoxLayout(cut_row)
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(self.ci_cut)
            row.addWidget(QtWidgets.QLabel("mag"))
            row.addStretch(1)
            for widget in (self.ci_cut, cut_row):
                widget.setToolTip(CI_CUT_TIP)
            form.addRow("CI cut", cut_row)
            self.ci_cut_label = form.labelForField(cut_row)
            self.sources.currentIndexChanged.connect(self._source_changed)
            self._source_changed()
        self.models.changed.connect(self._models_changed)
        self._models_changed()
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

    def _models_changed(self):
        folder = self.models.chosen()
        try:
            self._takes = folder != "" and takes_stellar_ci(folder)
        except (OSError, ValueError):  # no models there (yet): OK says why
            self._takes = False
        self._update_stellar_ci_row()

    def _update_stellar_ci_row(self):
        # Detection cuts at the stellar CI + 0.05, whether or not the networks take it.
        detect = self.ci_cut is not None and self.sources.currentData() is None
        enabled = self._takes or detect
        self.stellar_ci_row.setEnabled(enabled)
        self.stellar_ci_label.setEnabled(enabled)
        tip = (STELLAR_CI_TIP if self._takes else
               STELLAR_CI_DETECT_TIP if detect else STELLAR_CI_OFF_TIP)
        for widget in (self.stellar_ci_row, self.stellar_ci_label, self.stellar_ci):
            widget.setToolTip(tip)

    def _source_changed(self, *args):
        detect = self.sources.currentData() is None
        self.ci_cut.setEnabled(detect)
        self.ci_cut_label.setEnabled(detect)
        self._update_stellar_ci_row()

    def _ci_cut_value(self):
        """The fixed CI cut typed for detection (None: the field's own, or no detection).

        Raises
        ------
        ValueError
            If it is not a finite number.
        """
        if self.ci_cut is None or not self.ci_cut.isEnabled():
            return None
        text = self.ci_cut.text().strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value):
            raise ValueError(f"CI cut {text!r} is not a number of mag (LEGUS cut its fields "
                             "at 1.2–1.4; leave it empty for the field's own cut)")
        return value

    def _stellar_ci_value(self):
        """The stellar CI given (None: empty, or the models do not take it).

        Raises
        ------
        ValueError
            If it is not a number in `STELLAR_CI_RANGE`.
        """
        text = self.stellar_ci.text().strip()
        if not text or not self.stellar_ci_row.isEnabled():
            return None
        lo, hi = STELLAR_CI_RANGE
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"stellar CI {text!r} is not a number of mag (a star's V-band "
                             f"CI, {lo:g}–{hi:g}; leave it empty to measure it)") from None
        if not lo <= value <= hi:
            raise ValueError(f"stellar CI {text} mag lies outside {lo:g}–{hi:g} mag (a "
                             f"star's V-band CI, 1 px vs 3 px)")
        return value

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
            stellar_ci = self._stellar_ci_value()
            ci_cut = self._ci_cut_value()
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
                       "stellar_ci": stellar_ci, "ci_min": ci_cut,
                       "mosaic": self.mosaics.currentData() if self.mosaics is not None
                       else None}
        super().accept()
