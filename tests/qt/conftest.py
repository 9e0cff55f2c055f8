"""Fixtures of the glue plugin tests: a mock mosaic on disk, a glue application, models.

Everything runs headless (``QT_QPA_PLATFORM=offscreen``, ``GLUE_TESTING=True``).
"""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GLUE_TESTING", "True")

#: Shape and seed of the mock field every test opens.
SHAPE = (320, 320)
SEED = 11


@pytest.fixture(scope="session")
def mock_field():
    """A mock field rendered by the engine (seconds)."""
    from glue_starclf.sim.mosaic import random_field
    return random_field(SEED, shape=SHAPE, distance_mpc=8.0, n_sources=40)


@pytest.fixture(scope="session")
def mock_files(mock_field, tmp_path_factory):
    """The mock field written as one FITS per band plus its truth ECSV."""
    from glue_starclf.sim.mosaic import write_mosaic
    return write_mosaic(mock_field, tmp_path_factory.mktemp("mosaic"), "mock")


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    """Folder for screenshots: STARCLF_SCREENSHOTS if set, else a pytest temporary folder.

    ``make screenshots`` sets it to docs/screenshots, which the README shows;
    pytest prunes its own temporary folders, so test runs leave nothing behind.
    """
    folder = os.environ.get("STARCLF_SCREENSHOTS")
    if not folder:
        return tmp_path_factory.mktemp("screenshots")
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


@pytest.fixture(scope="session")
def models(trained_models):
    """Folder of one tiny classifier and one tiny physical model."""
    return str(trained_models["models"])


@pytest.fixture(scope="session")
def bundled_models():
    """The bundled 5 + 5 members, for the views whose screenshots the README shows."""
    from glue_starclf.core.checkpoints import bundled_models_dir
    return str(bundled_models_dir())


@pytest.fixture
def app(qapp):
    """A glue application with the plugin loaded through its entry point."""
    from importlib.metadata import entry_points

    from glue_qt.app import GlueApplication

    from glue_starclf.qt.common import MESSAGES
    ep = next(e for e in entry_points(group="glue.plugins") if e.name == "glue_starclf")
    ep.load()()
    MESSAGES.clear()
    application = GlueApplication()
    application.resize(1400, 900)
    yield application
    from glue_starclf.qt.common import RUNNING
    for runner in list(RUNNING):
        runner.cancel()
        runner.thread.wait(30000)
    application.close()


def band_items(files, bands=None):
    """``BAND=path`` items of the mock files (all five bands by default)."""
    from glue_starclf.io.bands import BANDS
    return [f"{b}={files[b]}" for b in (bands or BANDS)]


def menu_action(app, label):
    """The QAction of a Plugins menu item of the glue application."""
    return next(a for a in app._actions["plugins"] if a.text() == label)


def open_through_menu(app, files, catalog=None):
    """Plugins → Open HST mosaic…: the band files (placed by FILTER), a catalog, OK.

    Returns the dialog (closed when the mosaic opened).
    """
    from glue_starclf.qt.dialogs import OpenMosaicDialog
    before = set(app.findChildren(OpenMosaicDialog))
    menu_action(app, "Open HST mosaic…").trigger()
    dialog = next(d for d in app.findChildren(OpenMosaicDialog) if d not in before)
    assert dialog.isVisible()
    assert dialog.set_files([files[b] for b in sorted(files) if b != "truth"]) == []
    if catalog is not None:
        dialog.catalog_edit.setText(str(catalog))
    dialog.buttons.button(dialog.buttons.Ok).click()
    return dialog


def wait_for(qtbot, runner, timeout=240_000):
    """Wait until a `JobRunner` has a verdict; return its state."""
    qtbot.waitUntil(lambda: runner.state not in ("idle", "running"), timeout=timeout)
    return runner.state


def save_screenshot(widget, path):
    """Save a widget as a PNG at ``path`` and check it is not blank."""
    from qtpy import QtWidgets
    QtWidgets.QApplication.processEvents()
    pixmap = widget.grab()
    assert pixmap.save(str(path)), path
    image = pixmap.toImage()
    w, h = image.width(), image.height()
    assert w > 200 and h > 150
    step = max(1, min(w, h) // 80)
    colours = {image.pixel(x, y) for x in range(0, w, step) for y in range(0, h, step)}
    assert len(colours) > 50, f"{path} looks blank ({len(colours)} colours)"
    return path


def classify_region(viewer, qtbot, models, x0, x1, y0, y1):
    """Draw a region, press the classify tool's toolbar button, choose the models, Classify.

    Returns the dialog once its job is done (asserted).
    """
    region_on(viewer, x0, x1, y0, y1)
    viewer.toolbar.actions["starclf:classify"].trigger()
    dialog = viewer.last_dialog
    dialog.models.set_folder(models)
    dialog.buttons.button(dialog.buttons.Ok).click()
    assert wait_for(qtbot, dialog.runner) == "done", dialog.runner.message
    return dialog


def region_on(viewer, x0, x1, y0, y1):
    """Draw a rectangular region on an image viewer as the user would (new subset group)."""
    from glue.core.roi import RectangularROI
    viewer.apply_roi(RectangularROI(xmin=x0, xmax=x1, ymin=y0, ymax=y1))
    return viewer.session.edit_subset_mode.edit_subset[0]


def drag_rectangle(viewer, x0, x1, y0, y1):
    """Draw a rectangular region with the viewer's rectangle tool by Qt mouse events.

    Press at the data position ``(x0, y0)``, move with the left button held,
    release at ``(x1, y1)``; returns the active subset group made.
    """
    from qtpy import QtCore, QtGui, QtWidgets
    viewer.toolbar.actions["select:rectangle"].trigger()
    canvas = viewer.figure.canvas
    canvas.draw()
    ratio = canvas.devicePixelRatioF() if hasattr(canvas, "devicePixelRatioF") else 1.0
    height = canvas.figure.bbox.height

    def point(x, y):
        px, py = viewer.axes.transData.transform((x, y))
        return QtCore.QPointF(px / ratio, (height - py) / ratio)

    def send(kind, pos, button, buttons):
        event = QtGui.QMouseEvent(kind, pos, button, buttons, QtCore.Qt.NoModifier)
        QtWidgets.QApplication.sendEvent(canvas, event)

    left, none = QtCore.Qt.LeftButton, QtCore.Qt.NoButton
    send(QtCore.QEvent.MouseButtonPress, point(x0, y0), left, left)
    for f in (0.25, 0.5, 0.75, 1.0):
        send(QtCore.QEvent.MouseMove, point(x0 + f * (x1 - x0), y0 + f * (y1 - y0)), none, left)
    send(QtCore.QEvent.MouseButtonRelease, point(x1, y1), left, none)
    QtWidgets.QApplication.processEvents()
    viewer.toolbar.actions["select:rectangle"].trigger()  # off again
    return viewer.session.edit_subset_mode.edit_subset[0]


def truth_catalog(files, tmp_path, name="catalog.ecsv"):
    """The mock truth as an ECSV catalog with id, x, y, ra, dec."""
    from astropy.table import Table
    truth = Table.read(files["truth"])
    cat = truth["id", "x", "y", "ra", "dec"]
    path = tmp_path / name
    cat.write(path, format="ascii.ecsv", overwrite=True)
    return path, cat


def xy_in(cat, x0, x1, y0, y1):
    """Rows of a table inside a box (the glue ROI convention: strict inequalities)."""
    x, y = np.asarray(cat["x"]), np.asarray(cat["y"])
    return (x > x0) & (x < x1) & (y > y0) & (y < y1)
