"""The cluster inspector: a gallery of the sources of a subset of the results.

For each source of the chosen subset (all sources when none), sorted by
class entropy (most uncertain first), ensemble disagreement
(``1 - class_agreement``, most first), a stratified sample by class and V
magnitude (`glue_starclf.glue.labels.labelling_order`), p_cluster or V
magnitude: an RGB stamp (F814W, F555W, F438W/F336W) and the five bands,
the four class probabilities as bars, the age-A_V posterior map of the
physical network marginalised over mass (as Bialopetravičius & Narbutis
2020, Fig. 21), r_h, visibility and the human labels. Clicking a stamp
selects that source in every viewer (the subset group `PICK_LABEL`;
Ctrl-click adds to it) and focuses it.

Labelling: keys 1-4 give the focused source that LEGUS class, 0 "not
sure", as a vote of the labeller named in the viewer (components
``class_user``, ``labeller``, ``labelled_at``, ``votes``; see
`glue_starclf.glue.labels`); the focus then moves to the next source. The
arrow keys move the focus (→/↓ next, ←/↑ previous); past either end of
the page the next or previous page is shown. "Unlabelled only" hides the
sources the labeller has voted on. A counter gives the labelled sources
and their agreement with the model; the buttons open the confusion
matrix, export and import labels files, and fine-tune on the labels
(`glue_starclf.qt.labelling`).

The viewer keeps its choices in its glue state (`InspectorState`), so a
saved session restores them.
"""

import getpass
import logging

import numpy as np
from echo import CallbackProperty, delay_callback
from glue.core import BaseData
from glue.viewers.common.layer_artist import LayerArtist
from glue.viewers.common.state import ViewerState
from glue_qt.viewers.common.data_viewer import DataViewer
from qtpy import QtCore, QtGui, QtWidgets
from qtpy.QtCore import Qt

from ..glue.data import RESULTS_META_KEY, mosaic_from_data, result_label
from ..glue.labels import (NOT_SURE, ORDERS, check_labeller, label_summary, labelling_order,
                           parse_votes, set_votes, votes_of)
from ..glue.results import (column, models_folder_of, models_summary, mosaic_of,
                            posterior_maps)
from ..io.bands import BANDS
from .common import gui_message, keeping_edit_subset, notify, one_line
from .style import CLASS_COLOURS, CLASS_LABELS

__all__ = ["ClusterInspectorViewer", "InspectorState", "InspectorLayerArtist", "SORT_KEYS",
           "SORTS", "LABEL_KEYS", "NEXT_KEYS", "PREVIOUS_KEYS", "PICK_LABEL", "STAMP_SIZE",
           "TILE_WIDTH", "stretch", "rgb_stamp", "votes_text"]

log = logging.getLogger("glue_starclf")

#: Sort choices: ``{name: (result column, descending)}``.
SORT_KEYS = {"entropy": ("class_entropy", True), "p_cluster": ("p_cluster", True),
             "magnitude": ("mag_F555W", False)}

#: Every sort choice: the labelling orders between the column sorts.
SORTS = ("entropy", *ORDERS, "p_cluster", "magnitude")

#: Keys that vote: ``{key: class}`` (0 = not sure).
LABEL_KEYS = {Qt.Key_0: NOT_SURE, Qt.Key_1: 1, Qt.Key_2: 2, Qt.Key_3: 3, Qt.Key_4: 4}
#: Keys that move the focus on, and back.
NEXT_KEYS = (Qt.Key_Right, Qt.Key_Down)
PREVIOUS_KEYS = (Qt.Key_Left, Qt.Key_Up)

#: Label of the subset group made by clicking a stamp.
PICK_LABEL = "picked cluster"

#: Side of the stamps shown [px].
STAMP_SIZE = 32

#: Width of a gallery tile [px].
TILE_WIDTH = 300

_RGB_BANDS = (("F814W",), ("F555W",), ("F438W", "F336W"))
_ensembles = {}


def stretch(image, q=8.0):
    """An arcsinh stretch of a stamp to [0, 1] between its 5th and 99.7th percentiles.

    Parameters
    ----------
    image : ndarray
    q : float
        Softening: larger shows fainter structure.

    Returns
    -------
    ndarray
        Same shape, NaN as 0.
    """
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape)
    lo, hi = np.percentile(image[finite], [5.0, 99.7])
    x = (np.where(finite, image, lo) - lo) / (hi - lo if hi > lo else 1.0)
    return np.clip(np.arcsinh(q * x) / np.arcsinh(q), 0.0, 1.0)


def rgb_stamp(stamp, band_mask):
    """RGB uint8 image (size, size, 3) of a 5-band stamp (grey with fewer than three bands).

    Parameters
    ----------
    stamp : ndarray, shape (5, size, size)
        The bands in `~glue_starclf.io.bands.BANDS` order.
    band_mask : sequence of bool, length 5
        Bands present. Each channel takes the first present band of its
        list (`_RGB_BANDS`); if a channel has none, the stamp is shown grey
        in one band (F555W first).

    Returns
    -------
    ndarray of uint8, shape (size, size, 3)
        Each channel `stretch`-ed; rows flipped so that y runs up.
    """
    chans = []
    for names in _RGB_BANDS:
        j = next((BANDS.index(b) for b in names if band_mask[BANDS.index(b)]), None)
        chans.append(j)
    if None in chans:
        j = next((i for i in (3, 4, 2, 1, 0) if band_mask[i]), 0)
        grey = stretch(stamp[j])
        rgb = np.stack([grey] * 3, axis=-1)
    else:
        rgb = np.stack([stretch(stamp[j]) for j in chans], axis=-1)
    return np.ascontiguousarray((rgb[::-1] * 255).astype(np.uint8))  # y up


def _pixmap(rgb, scale):
    h, w = rgb.shape[:2]
    if rgb.ndim == 2:
        rgb = np.ascontiguousarray(np.stack([rgb] * 3, axis=-1))
    image = QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format_RGB888).copy()
    return QtGui.QPixmap.fromImage(image).scaled(w * scale, h * scale, Qt.IgnoreAspectRatio,
                                                 Qt.FastTransformation)


def _posterior_rgb(grid):
    """Viridis image (A_V up, log age right) of a (20, 10) posterior."""
    import matplotlib
    p = np.asarray(grid, float).T[::-1]  # rows: A_V from high to low
    p = p / p.max() if np.isfinite(p).all() and p.max() > 0 else np.zeros_like(p)
    rgba = matplotlib.colormaps["viridis"](p)
    return np.ascontiguousarray((rgba[..., :3] * 255).astype(np.uint8))


class _Posterior(QtWidgets.QWidget):
    """An age–A_V posterior map with axis ticks and a colour bar (readable without hovering)."""

    SCALE, LEFT, TOP, BOTTOM, BAR = 6, 24, 6, 14, 36

    def __init__(self, grid, parent=None):
        from ..core.networks import AV_BINS, LOG_AGE_BINS
        super().__init__(parent)
        self.grid = np.asarray(grid, float)
        self.ages, self.avs = LOG_AGE_BINS, AV_BINS
        self.image = _pixmap(_posterior_rgb(self.grid), self.SCALE)
        self.vmax = float(np.nanmax(self.grid)) if np.isfinite(self.grid).any() else 0.0
        self.w, self.h = self.image.width(), self.image.height()
        self.setFixedSize(self.LEFT + self.w + self.BAR, self.TOP + self.h + self.BOTTOM)
        best = np.unravel_index(np.nanargmax(self.grid), self.grid.shape)
        self.setToolTip(f"age–A_V posterior (marginalised over mass); most probable: log age "
                        f"{self.ages[best[0]]:.2f}, A_V {self.avs[best[1]]:.2f} mag "
                        f"(p {self.vmax:.3f})")

    def _x(self, age):
        step = (self.ages[-1] - self.ages[0]) / (len(self.ages) - 1)
        return self.LEFT + ((age - self.ages[0]) / step + 0.5) * self.SCALE

    def _y(self, av):
        step = (self.avs[-1] - self.avs[0]) / (len(self.avs) - 1)
        return self.TOP + (len(self.avs) - 0.5 - (av - self.avs[0]) / step) * self.SCALE

    def paintEvent(self, event):
        import matplotlib
        p = QtGui.QPainter(self)
        font = p.font()
        font.setPointSizeF(6.5)
        p.setFont(font)
        p.setPen(QtGui.QColor("#444444"))
        p.drawPixmap(self.LEFT, self.TOP, self.image)
        p.drawRect(self.LEFT, self.TOP, self.w - 1, self.h - 1)
        for age in (7, 8, 9, 10):  # log age ticks under the map
            x = self._x(age)
            bottom = self.TOP + self.h
            p.drawLine(QtCore.QPointF(x, bottom), QtCore.QPointF(x, bottom + 2))
            p.drawText(QtCore.QRectF(x - 10, self.TOP + self.h + 2, 20, 10), Qt.AlignCenter,
                       f"{age}")
        for av in (0, 1, 2, 3):  # A_V ticks on the left
            y = self._y(av)
            p.drawLine(QtCore.QPointF(self.LEFT - 2, y), QtCore.QPointF(self.LEFT, y))
            p.drawText(QtCore.QRectF(0, y - 5, self.LEFT - 3, 10),
                       Qt.AlignRight | Qt.AlignVCenter, f"{av}")
        x0 = self.LEFT + self.w + 4  # colour bar: 0 to the map's largest probability
        cmap = matplotlib.colormaps["viridis"]
        for i in range(self.h):
            r, g, b, _ = cmap(1.0 - i / max(self.h - 1, 1))
            p.setPen(QtGui.QColor.fromRgbF(r, g, b))
            p.drawLine(x0, self.TOP + i, x0 + 5, self.TOP + i)
        p.setPen(QtGui.QColor("#444444"))
        p.drawText(QtCore.QRectF(x0 + 7, self.TOP - 4, self.BAR - 11, 10),
                   Qt.AlignLeft | Qt.AlignVCenter, f"{self.vmax:.2f}")
        p.drawText(QtCore.QRectF(x0 + 7, self.TOP + self.h - 6, self.BAR - 11, 10),
                   Qt.AlignLeft | Qt.AlignVCenter, "0")
        p.end()


class _Bars(QtWidgets.QWidget):
    """Four class-probability bars."""

    def __init__(self, probs, parent=None):
        super().__init__(parent)
        self.probs = [0.0 if not np.isfinite(p) else float(p) for p in probs]
        self.setFixedHeight(56)
        self.setMinimumWidth(120)
        self.setToolTip("class probabilities: " + ", ".join(
            f"{k + 1}: {p:.2f}" for k, p in enumerate(self.probs)))

    def paintEvent(self, event):
        painter = QtGui.QPainter(self)
        font = painter.font()
        font.setPointSizeF(7.5)
        painter.setFont(font)
        w, h = self.width(), self.height()
        bw = w / 4.0
        top, bottom = 12, 12
        for k, p in enumerate(self.probs):
            x = k * bw + 4
            bar_h = (h - top - bottom) * p
            painter.fillRect(QtCore.QRectF(x, h - bottom - bar_h, bw - 8, max(bar_h, 1)),
                             QtGui.QColor(CLASS_COLOURS[k + 1]))
            painter.setPen(QtGui.QColor("#333333"))
            painter.drawText(QtCore.QRectF(x - 2, h - bottom - bar_h - top, bw - 4, top),
                             Qt.AlignCenter, f"{p:.2f}")
            painter.drawText(QtCore.QRectF(x - 2, h - bottom + 1, bw - 4, bottom - 1),
                             Qt.AlignCenter, f"class {k + 1}")
        painter.end()


def votes_text(text, labeller=""):
    """What a tile says of a source's votes (``labeller``'s own marked "you")."""
    votes = parse_votes(text)
    if not votes:
        return "not labelled"

    def name(c):
        return "not sure" if c == NOT_SURE else f"class {c}"
    return "labels: " + ", ".join(f"{'you' if who == labeller else who} {name(c)}"
                                  for who, (c, _) in votes.items())


class _Tile(QtWidgets.QFrame):
    """One source of the gallery; a click picks it.

    Attributes
    ----------
    row : int
        Row of the results dataset.
    user : QtWidgets.QLabel
        The human labels of the source.
    """

    clicked = QtCore.Signal(int, bool)

    def __init__(self, row, info, stamp, band_mask, grid, picked, user_text="", parent=None):
        super().__init__(parent)
        self.row = row
        self.picked = picked
        self.focused = False
        self.setFrameShape(QtWidgets.QFrame.StyledPanel)
        self.setLineWidth(2)
        self.setObjectName("tile")
        self._style()
        self.setCursor(Qt.PointingHandCursor)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(5, 5, 5, 5)
        lay.setSpacing(3)
        head = QtWidgets.QLabel(info["title"])
        head.setStyleSheet("font-weight: bold")
        lay.addWidget(head)
        self.user = QtWidgets.QLabel(user_text)
        self.user.setWordWrap(True)
        self.user.setStyleSheet("color: #6a1b9a; font-size: 10px")
        lay.addWidget(self.user)
        top = QtWidgets.QHBoxLayout()
        rgb = QtWidgets.QLabel()
        rgb.setPixmap(_pixmap(rgb_stamp(stamp, band_mask), 3))
        rgb.setToolTip("RGB: F814W, F555W, F438W (F336W)")
        top.addWidget(rgb)
        post = QtWidgets.QVBoxLayout()
        post.setSpacing(0)
        if grid is not None and np.isfinite(grid).all():
            self.posterior = _Posterior(grid)
            cap = QtWidgets.QLabel("x: log age [yr]   y: A_V [mag]")
        else:
            self.posterior = QtWidgets.QLabel("no posterior")
            self.posterior.setFixedSize(120, 60)
            self.posterior.setAlignment(Qt.AlignCenter)
            self.posterior.setStyleSheet("background: #eeeeee; color: #777777")
            cap = QtWidgets.QLabel("")
        post.addWidget(self.posterior)
        cap.setStyleSheet("color: #666666; font-size: 9px")
        post.addWidget(cap)
        post.addStretch(1)
        top.addLayout(post)
        lay.addLayout(top)
        bands = QtWidgets.QHBoxLayout()
        bands.setSpacing(3)
        self.band_names = []
        for j, band in enumerate(BANDS):
            cell = QtWidgets.QVBoxLayout()
            cell.setSpacing(0)
            lab = QtWidgets.QLabel()
            if band_mask[j]:
                grey = (stretch(stamp[j])[::-1] * 255).astype(np.uint8)
                lab.setPixmap(_pixmap(np.ascontiguousarray(grey), 1))
            else:
                lab.setText("—")
                lab.setFixedSize(STAMP_SIZE, STAMP_SIZE)
                lab.setAlignment(Qt.AlignCenter)
            lab.setToolTip(band + ("" if band_mask[j] else " (missing)"))
            name = QtWidgets.QLabel(band)
            name.setAlignment(Qt.AlignCenter)
            name.setStyleSheet("font-size: 8px; color: %s" % ("#444444" if band_mask[j]
                                                              else "#aaaaaa"))
            self.band_names.append(name)
            cell.addWidget(lab)
            cell.addWidget(name)
            bands.addLayout(cell)
        bands.addStretch(1)
        lay.addLayout(bands)
        lay.addWidget(_Bars(info["probs"]))
        self.text = QtWidgets.QLabel(info["text"])
        self.text.setStyleSheet("font-size: 10px")
        self.text.setWordWrap(True)  # the whole flags line, wrapped
        lay.addWidget(self.text)
        self.setFixedWidth(TILE_WIDTH)

    def _style(self):
        colour = "#ff8c00" if self.focused else "#ff00ff" if self.picked else "#cccccc"
        width = 4 if self.focused else 3
        self.setStyleSheet("QFrame#tile { border: %dpx solid %s; border-radius: 4px; }"
                           % (width, colour))

    def set_focused(self, focused):
        """Mark (or unmark) the tile as the one the label keys act on."""
        self.focused = bool(focused)
        self._style()

    def mousePressEvent(self, event):
        self.clicked.emit(self.row, bool(event.modifiers() & Qt.ControlModifier))
        super().mousePressEvent(event)


def _default_labeller():
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment
        return "me"


class InspectorState(ViewerState):
    """Choices of the cluster inspector (saved with the session)."""

    subset_label = CallbackProperty("", docstring="Label of the subset shown; '' for all")
    sort_by = CallbackProperty("entropy", docstring="One of SORTS")
    max_stamps = CallbackProperty(24, docstring="Most stamps shown (the page size)")
    offset = CallbackProperty(0, docstring="Position of the page's first source in the order")
    labeller = CallbackProperty(_default_labeller(), docstring="Name the votes are made under")
    unlabelled_only = CallbackProperty(False, docstring="Hide the sources the labeller "
                                                        "has voted on")


class InspectorLayerArtist(LayerArtist):
    """A layer of the inspector: any change redraws the gallery."""

    def __init__(self, inspector, viewer_state, layer_state=None, layer=None):
        self._inspector = inspector
        super().__init__(viewer_state, layer_state=layer_state, layer=layer)

    def update(self):
        """Redraw the gallery (`ClusterInspectorViewer.schedule_refresh`)."""
        self._inspector.schedule_refresh()

    def redraw(self):
        """Redraw the gallery (`ClusterInspectorViewer.schedule_refresh`)."""
        self._inspector.schedule_refresh()

    def clear(self):
        """Redraw the gallery (`ClusterInspectorViewer.schedule_refresh`)."""
        self._inspector.schedule_refresh()


class ClusterInspectorViewer(DataViewer):
    """Gallery of stamps, class probabilities and posteriors of a subset of the results.

    Attributes
    ----------
    tiles : list
        The tiles shown, one per source, in order (their ``row`` is the row
        of the results dataset).
    focus : int
        Index in `tiles` of the source the label keys act on (-1: none).
    last_dialog : QDialog or None
        The last dialog a button opened (the fine-tuning dialog).
    note : str
        What the gallery shows, or why part of it is missing.
    """

    #: Emitted after the keys (or an import) changed the labels.
    labels_changed = QtCore.Signal()

    LABEL = "Cluster inspector"
    _state_cls = InspectorState
    _data_artist_cls = InspectorLayerArtist
    _subset_artist_cls = InspectorLayerArtist
    inherit_tools = False
    tools = ["window"]
    subtools = {"window": ["window:movetab", "window:title"]}

    def __init__(self, session, state=None, parent=None):
        super().__init__(session, state=state, parent=parent)
        self.tiles = []
        self.focus = -1
        self.last_dialog = None
        self.note = ""
        self._maps = {}
        self._order = np.zeros(0, int)
        self._quiet = False
        self._focus_last = False
        box = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(box)
        bar = QtWidgets.QHBoxLayout()
        self.subset_combo = QtWidgets.QComboBox()
        self.subset_combo.setMinimumWidth(160)
        self.sort_combo = QtWidgets.QComboBox()
        self.sort_combo.addItems(list(SORTS))
        self.max_spin = QtWidgets.QSpinBox()
        self.max_spin.setRange(1, 500)
        for text, w in (("Subset", self.subset_combo), ("Sort by", self.sort_combo),
                        ("Show at most", self.max_spin)):
            bar.addWidget(QtWidgets.QLabel(text))
            bar.addWidget(w)
        bar.addStretch(1)
        lay.addLayout(bar)
        lay.addLayout(self._labelling_bar())
        self.info = QtWidgets.QLabel("Drag a results dataset (“star clusters”) here.")
        self.info.setWordWrap(True)
        lay.addWidget(self.info)
        self.scroll = QtWidgets.QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.gallery = QtWidgets.QWidget()
        self.grid = QtWidgets.QGridLayout(self.gallery)
        self.grid.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.scroll.setWidget(self.gallery)
        self.scroll.installEventFilter(self)
        self.setFocusPolicy(Qt.StrongFocus)
        lay.addWidget(self.scroll, 1)
        self.setCentralWidget(box)
        self.resize(860, 640)
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.refresh)
        self.subset_combo.currentIndexChanged.connect(self._from_widgets)
        self.sort_combo.currentIndexChanged.connect(self._from_widgets)
        self.max_spin.valueChanged.connect(self._from_widgets)
        self.labeller_edit.editingFinished.connect(self._from_widgets)
        self.unlabelled_check.toggled.connect(self._from_widgets)
        for name in ("subset_label", "sort_by", "unlabelled_only"):
            self.state.add_callback(name, self._first_page)
        for name in ("max_stamps", "offset", "labeller"):
            self.state.add_callback(name, self.schedule_refresh)
        self.state.add_callback("layers", self.schedule_refresh)
        self.schedule_refresh()

    def _labelling_bar(self):
        from . import labelling
        box = QtWidgets.QVBoxLayout()
        bar = QtWidgets.QHBoxLayout()
        self.labeller_edit = QtWidgets.QLineEdit(self.state.labeller)
        self.labeller_edit.setMinimumWidth(180)
        self.labeller_edit.setMaximumWidth(260)
        self.labeller_edit.setToolTip("Your name: your votes are kept apart from other "
                                      "labellers'")
        self.unlabelled_check = QtWidgets.QCheckBox("Unlabelled only")
        self.unlabelled_check.setToolTip("Hide the sources you have labelled")
        bar.addWidget(QtWidgets.QLabel("Labeller"))
        bar.addWidget(self.labeller_edit)
        bar.addWidget(self.unlabelled_check)
        self.counter = QtWidgets.QLabel("")
        self.counter.setToolTip("Keys 1-4: LEGUS class of the focused source, 0: not sure; "
                                "arrows: move on")
        bar.addWidget(self.counter, 1)
        box.addLayout(bar)
        bar = QtWidgets.QHBoxLayout()  # the buttons get a row of their own: they fit
        box.addLayout(bar)
        self.buttons = {}
        for text, slot in (("Confusion matrix…", labelling.show_confusion),
                           ("Export labels…", labelling.export_labels_dialog),
                           ("Import labels…", labelling.import_labels_dialog),
                           ("Fine-tune on my labels…", labelling.finetune_from_inspector)):
            button = QtWidgets.QPushButton(text)
            button.setFocusPolicy(Qt.NoFocus)  # the keys stay with the gallery
            button.clicked.connect(lambda _=False, f=slot: f(self))
            bar.addWidget(button)
            self.buttons[text] = button
        bar.addStretch(1)
        return box

    def _first_page(self, *args):
        self.state.offset = 0
        self.schedule_refresh()

    def get_layer_artist(self, cls, layer=None, layer_state=None):
        """A layer artist of class ``cls`` that redraws this gallery."""
        return cls(self, self.state, layer=layer, layer_state=layer_state)

    @property
    def results_data(self):
        """The results dataset shown (the first dataset layer), or None."""
        for st in self.state.layers:
            if isinstance(st.layer, BaseData):
                return st.layer
        return None

    def add_data(self, data):
        """Show a results dataset (it replaces the one shown)."""
        if data.ndim != 1 or result_label(data, "p_class1") is None:
            notify(self, f"The cluster inspector shows classification results; "
                         f"“{data.label}” has none (classify sources first).", "warning")
            return False
        old = self.results_data
        if old is not None and old is not data:
            self.remove_data(old)
        added = super().add_data(data)
        if added and not self.state.subset_label:
            edit = self.session.edit_subset_mode.edit_subset or []
            labels = [s.label for s in data.subsets]
            chosen = next((g.label for g in edit if g.label in labels), None)
            ours = {PICK_LABEL, *CLASS_LABELS.values()}
            if chosen is None and labels:
                chosen = next((lab for lab in reversed(labels) if lab not in ours), "")
            self.state.subset_label = chosen or ""
        self.schedule_refresh()
        return added

    def schedule_refresh(self, *args):
        """Redraw the gallery once the event loop is free (changes are batched).

        Not while the keys write a vote: the tile is updated in place.
        """
        if not self._quiet:
            self._timer.start()

    def _from_widgets(self, *args):
        label = self.subset_combo.currentData()
        self.state.subset_label = label if label is not None else ""
        self.state.sort_by = self.sort_combo.currentText() or "entropy"
        self.state.max_stamps = int(self.max_spin.value())
        self.state.labeller = self.labeller_edit.text().strip()
        self.state.unlabelled_only = self.unlabelled_check.isChecked()

    def _sync_widgets(self, data):
        labels = [s.label for s in data.subsets] if data is not None else []
        widgets = (self.subset_combo, self.sort_combo, self.max_spin, self.labeller_edit,
                   self.unlabelled_check)
        for w in widgets:
            w.blockSignals(True)
        self.subset_combo.clear()
        self.subset_combo.addItem("All sources", "")
        for lab in labels:
            self.subset_combo.addItem(lab, lab)
        idx = self.subset_combo.findData(self.state.subset_label)
        self.subset_combo.setCurrentIndex(max(idx, 0))
        self.sort_combo.setCurrentText(self.state.sort_by)
        self.max_spin.setValue(int(self.state.max_stamps))
        if self.labeller_edit.text() != self.state.labeller:
            self.labeller_edit.setText(self.state.labeller)
        self.unlabelled_check.setChecked(bool(self.state.unlabelled_only))
        for w in widgets:
            w.blockSignals(False)

    def rows(self):
        """Rows of the results shown, in gallery order (all pages).

        The order is of the whole subset; "unlabelled only" then drops the
        labeller's sources, so the order of the others does not change as
        labels are given.
        """
        data = self.results_data
        if data is None:
            return np.zeros(0, int)
        subset = next((s for s in data.subsets if s.label == self.state.subset_label), None)
        mask = np.ones(data.shape[0], bool) if subset is None else \
            np.asarray(subset.to_mask(), bool)
        rows = self._sorted(data, np.flatnonzero(mask))
        if self.state.unlabelled_only:
            me = self.state.labeller.strip()
            texts = votes_of(data)
            rows = rows[[me not in parse_votes(texts[r]) for r in rows]] if len(rows) else rows
        return rows

    def _sorted(self, data, rows):
        if self.state.sort_by in ORDERS:
            return labelling_order(data, rows, self.state.sort_by)
        name, descending = SORT_KEYS.get(self.state.sort_by, SORT_KEYS["entropy"])
        key = column(data, name)
        if key is None and name.startswith("mag_") and name in [c.label for c in data.components]:
            key = np.asarray(data[name], float)
        if key is None:
            return rows
        k = np.asarray(key, float)[rows]
        k = np.where(np.isfinite(k), -k if descending else k, np.inf)
        return rows[np.argsort(k, kind="stable")]

    def _posteriors(self, data, mosaic, rows, x, y):
        prov = data.meta.get(RESULTS_META_KEY) or {}
        folder = models_folder_of(data)
        distance = float(prov.get("distance_mpc", np.nan))
        if not np.isfinite(distance):
            return None, "posterior maps need the distance of the classification"
        keys = [(id(data), float(a), float(b), distance, folder) for a, b in zip(x, y)]
        todo = [i for i, k in enumerate(keys) if k not in self._maps]
        if todo:
            try:
                from ..core.predict import load_ensemble
                if folder not in _ensembles:
                    _ensembles[folder] = load_ensemble("physical", folder)
                maps = posterior_maps(mosaic, x[todo], y[todo], distance, _ensembles[folder],
                                      prov.get("stellar_ci"))
            except Exception as exc:  # models gone or broken: the gallery still shows
                return None, f"posterior maps unavailable ({gui_message(exc)})"
            for i, m in zip(todo, maps):
                self._maps[keys[i]] = m
        return [self._maps[k] for k in keys], ""

    def refresh(self):
        """Rebuild the gallery from the state and the data (a failure is shown, not raised)."""
        try:
            self._refresh()
        except Exception as exc:
            log.debug("inspector refresh failed", exc_info=True)
            self.note = f"The gallery cannot be shown: {one_line(exc)}"
            self.info.setText(self.note)

    def _refresh(self):
        from ..core.cutouts import extract_stamps
        keep = self.focused_row
        for tile in self.tiles:
            self.grid.removeWidget(tile)
            tile.deleteLater()
        self.tiles = []
        self.focus = -1
        data = self.results_data
        self._sync_widgets(data)
        self.update_counter()
        if data is None:
            self.note = "Drag a results dataset (“star clusters”) here."
            self.info.setText(self.note)
            return
        order = self._order = self.rows()
        page = max(int(self.state.max_stamps), 1)
        start = min(max(int(self.state.offset), 0), max(len(order) - 1, 0))
        shown = order[start:start + page]
        what = f"“{self.state.subset_label}”" if self.state.subset_label else "all sources"
        if self.state.unlabelled_only:
            what += f" not labelled by {self.state.labeller}"
        notes = [f"{len(order)} sources in {what} of “{data.label}”; showing "
                 + (f"{start + 1}–{start + len(shown)}" if len(shown) else "none")
                 + f", sorted by {self.state.sort_by}."]
        made_by = models_summary(data.meta.get(RESULTS_META_KEY) or {})
        if made_by:
            notes.append(f"Models: {made_by}.")
        mosaic_data = mosaic_of(self.session.data_collection, data)
        if mosaic_data is None:
            notes.append("The mosaic of these results is not in the session: no stamps.")
            self.note = " ".join(notes)
            self.info.setText(self.note)
            return
        mosaic = mosaic_from_data(mosaic_data)
        x = np.asarray(column(data, "x"), float)[shown]
        y = np.asarray(column(data, "y"), float)[shown]
        stamps = extract_stamps(mosaic, x, y, size=STAMP_SIZE).stamps if len(shown) else []
        maps, why = self._posteriors(data, mosaic, shown, x, y) if len(shown) else ([], "")
        if why:
            notes.append(why + ".")
        picked = set()
        group = next((g for g in self.session.data_collection.subset_groups
                      if g.label == PICK_LABEL), None)
        if group is not None:
            sub = next((s for s in group.subsets if s.data is data), None)
            if sub is not None:
                try:
                    picked = set(np.flatnonzero(sub.to_mask()).tolist())
                except Exception:  # a pick made on another dataset
                    picked = set()
        values = {name: column(data, name) for name in
                  ("id", "class", "p_class1", "p_class2", "p_class3", "p_class4", "log_age",
                   "log_age_lo", "log_age_hi", "av", "log_mass", "r_h", "visibility",
                   "flags", "mag_F555W", "class_entropy")}
        texts = votes_of(data)
        for i, row in enumerate(shown):
            info = self._info(values, row)
            tile = _Tile(int(row), info, stamps[i], mosaic.band_mask,
                         None if maps is None else maps[i], int(row) in picked,
                         votes_text(texts[row], self.state.labeller))
            tile.clicked.connect(self._clicked)
            self.tiles.append(tile)
        self._reflow()
        if self.tiles:  # the source focused before, if still shown
            rows = [t.row for t in self.tiles]
            self.set_focus(len(rows) - 1 if self._focus_last else
                           rows.index(keep) if keep in rows else 0)
        self._focus_last = False
        self.note = " ".join(notes)
        self.info.setText(self.note)

    def _reflow(self):
        """Place the tiles in as many columns as the gallery's width holds."""
        cols = max(1, (self.scroll.viewport().width() - 10) // (TILE_WIDTH + 12))
        for tile in self.tiles:
            self.grid.removeWidget(tile)
        for i, tile in enumerate(self.tiles):
            self.grid.addWidget(tile, i // cols, i % cols)

    def resizeEvent(self, event):
        """Resize, then lay the tiles out again for the new width."""
        super().resizeEvent(event)
        self._reflow()

    @staticmethod
    def _info(values, row):
        def v(name, fmt="{:.2f}"):
            arr = values.get(name)
            if arr is None:
                return "–"
            val = arr[row]
            try:
                return fmt.format(float(val)) if np.isfinite(float(val)) else "–"
            except (TypeError, ValueError):
                return str(val)
        probs = [float(values[f"p_class{k}"][row]) if values.get(f"p_class{k}") is not None
                 else np.nan for k in (1, 2, 3, 4)]
        ident = values["id"][row] if values.get("id") is not None else row
        cls = v("class", "{:.0f}")
        pmax = max((p for p in probs if np.isfinite(p)), default=np.nan)
        title = f"#{ident}  class {cls}" + (f"  (p {pmax:.2f})" if np.isfinite(pmax) else "")
        flags = str(values["flags"][row]) if values.get("flags") is not None else ""
        text = (f"log age {v('log_age')} [{v('log_age_lo')}, {v('log_age_hi')}]\n"
                f"A_V {v('av')} mag   log M {v('log_mass')}\n"
                f"r_h {v('r_h', '{:.1f}')} pc   visibility {v('visibility', '{:.1f}')}\n"
                f"V {v('mag_F555W')}   entropy {v('class_entropy')}")
        if flags:
            text += f"\nflags: {flags.replace(',', ', ')}"
        return {"title": title, "probs": probs, "text": text}

    # -- labelling ---------------------------------------------------------------------

    def update_counter(self):
        """Show how many sources are labelled and how well the model agrees."""
        data = self.results_data
        if data is None:
            self.counter.setText("")
            return
        s = label_summary(data, self.state.labeller.strip())
        text = (f"Labelled {s['labelled']} of {s['n']} (you: {s['mine']}, not sure: "
                f"{s['not_sure']})")
        if s["compared"]:
            text += f"; model agrees on {s['agree']} of {s['compared']} ({s['agreement']:.0%})"
        self.counter.setText(text)

    def set_focus(self, index):
        """Focus the tile at ``index`` (clipped to the page) for the label keys."""
        if not self.tiles:
            self.focus = -1
            return
        index = int(np.clip(index, 0, len(self.tiles) - 1))
        if 0 <= self.focus < len(self.tiles):
            self.tiles[self.focus].set_focused(False)
        self.focus = index
        tile = self.tiles[index]
        tile.set_focused(True)
        self.scroll.ensureWidgetVisible(tile)

    @property
    def focused_row(self):
        """Results row of the focused tile, or None."""
        return self.tiles[self.focus].row if 0 <= self.focus < len(self.tiles) else None

    def _clicked(self, row, add):
        self.set_focus(next(i for i, t in enumerate(self.tiles) if t.row == row))
        self.scroll.setFocus()
        self.pick(row, add)
        self.pan_to(row)

    def pan_to(self, row):
        """Centre the image viewers of the results' mosaic on a source (zoom kept).

        Returns
        -------
        list
            The viewers moved.
        """
        from .image_viewer import StarClusterImageViewer
        data = self.results_data
        mosaic = mosaic_of(self.session.data_collection, data) if data is not None else None
        if mosaic is None:
            return []
        x, y = float(column(data, "x")[row]), float(column(data, "y")[row])
        app = getattr(self.session, "application", None)
        moved = []
        for viewer in [v for tab in getattr(app, "viewers", []) for v in tab]:
            st = viewer.state
            if not isinstance(viewer, StarClusterImageViewer) or st.reference_data is not mosaic \
                    or not np.isfinite(x + y):
                continue
            wx, wy = (st.x_max - st.x_min) / 2.0, (st.y_max - st.y_min) / 2.0
            with delay_callback(st, "x_min", "x_max", "y_min", "y_max"):
                st.x_min, st.x_max = x - wx, x + wx
                st.y_min, st.y_max = y - wy, y + wy
            moved.append(viewer)
        return moved

    def move_focus(self, step):
        """Move the focus by ``step`` tiles; past the page's ends, show the next/previous page."""
        if not self.tiles:
            return
        target = self.focus + step
        if 0 <= target < len(self.tiles):
            self.set_focus(target)
        elif target >= len(self.tiles):
            self._turn_page(+1)
        else:
            self._turn_page(-1)

    def _turn_page(self, direction):
        """Show the page after (+1) or before (-1) the tiles shown, in the current order.

        The order is recomputed first: with "unlabelled only", the sources
        just labelled have left it, so the page after starts at the first
        source after this page that is still to be shown.
        """
        old = self._order
        shown = [t.row for t in self.tiles]
        order = self.rows()
        position = {int(r): i for i, r in enumerate(order)}
        page = max(int(self.state.max_stamps), 1)
        if direction > 0:
            start = int(np.flatnonzero(np.isin(old, shown)).max()) + 1 if shown else 0
            after = [position[int(r)] for r in old[start:] if int(r) in position]
            if not after:
                return  # the last page
            offset = after[0]
        else:
            first = int(np.flatnonzero(np.isin(old, shown)).min()) if shown else 0
            before = [position[int(r)] for r in old[:first] if int(r) in position]
            if not before:
                return  # the first page
            offset = max(before[-1] - page + 1, 0)
            self._focus_last = True
        if offset == int(self.state.offset):
            self.schedule_refresh()
        self.state.offset = offset

    def label_focused(self, cls):
        """Vote class ``cls`` (1-4, 0 = not sure) for the focused source and move on.

        Returns
        -------
        bool
            True if a vote was written.
        """
        data = self.results_data
        row = self.focused_row
        if data is None or row is None:
            return False
        try:
            name = check_labeller(self.state.labeller)
        except ValueError as exc:
            notify(self, f"No vote written: {exc}.", "warning")
            return False
        self._quiet = True  # the tile is updated here, not the whole gallery
        try:
            set_votes(data, [row], name, cls)
        finally:
            self._quiet = False
        tile = self.tiles[self.focus]
        tile.user.setText(votes_text(votes_of(data)[row], name))
        self.update_counter()
        self.labels_changed.emit()
        self.move_focus(+1)
        return True

    def handle_key(self, key):
        """Act on a labelling key; False when ``key`` is not one."""
        if key in LABEL_KEYS:
            self.label_focused(LABEL_KEYS[key])
        elif key in NEXT_KEYS:
            self.move_focus(+1)
        elif key in PREVIOUS_KEYS:
            self.move_focus(-1)
        else:
            return False
        return True

    def keyPressEvent(self, event):
        """Label and focus keys (`handle_key`); other keys as Qt handles them."""
        if not self.handle_key(event.key()):
            super().keyPressEvent(event)

    def eventFilter(self, obj, event):
        """The gallery's scroll area would scroll on the arrows: they move the focus."""
        if obj is self.scroll and event.type() == QtCore.QEvent.KeyPress and \
                self.handle_key(event.key()):
            return True
        return super().eventFilter(obj, event)

    def pick(self, row, add=False):
        """Select the source of a results row in every viewer (subset group `PICK_LABEL`).

        Parameters
        ----------
        row : int
        add : bool
            Add to the current pick instead of replacing it.

        Returns
        -------
        glue.core.subset_group.SubsetGroup
        """
        from glue.core.subset import ElementSubsetState
        data = self.results_data
        dc = self.session.data_collection
        group = next((g for g in dc.subset_groups if g.label == PICK_LABEL), None)
        rows = {int(row)}
        if add and group is not None:
            sub = next((s for s in group.subsets if s.data is data), None)
            if sub is not None:
                rows |= set(np.flatnonzero(sub.to_mask()).tolist())
        state = ElementSubsetState(indices=sorted(rows), data=data)
        with keeping_edit_subset(self.session):
            if group is None:
                group = dc.new_subset_group(PICK_LABEL, state)
                group.style.color = "#ff00ff"
                group.style.markersize = 12
            else:
                group.subset_state = state
        return group
