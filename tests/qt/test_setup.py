"""The plugin loads by its glue.plugins entry point and registers everything lazily."""

import json
import subprocess
import sys


def test_entry_point_registers_viewers_tools_menus_factories(qapp):
    from importlib.metadata import entry_points

    from glue.config import data_exporter, data_factory, viewer_tool
    from glue_qt.config import menubar_plugin, qt_client
    ep = next(e for e in entry_points(group="glue.plugins") if e.name == "glue_starclf")
    ep.load()()
    ep.load()()  # glue may load plugins twice: nothing is registered twice
    names = {c.__name__ for c in qt_client.members}
    assert {"StarClusterImageViewer", "ClusterInspectorViewer"} <= names
    assert {"starclf:classify", "starclf:rgb", "starclf:inspect"} <= set(viewer_tool.members)
    labels = [label for label, _ in menubar_plugin.members]
    for label in ("Open HST mosaic…", "Classify catalog sources…", "Cluster inspector",
                  "Diagnostics layout"):
        assert labels.count(label) == 1
    factories = [f.label for f in data_factory.members]
    assert factories.count("HST mosaic (all bands of a field)") == 1
    assert "Star-cluster catalog (LEGUS .tab, PHANGS-HST FITS)" in factories
    exporters = [e.label for e in data_exporter.members]
    for label in ("Star-cluster results (ECSV)", "Star-cluster results (FITS)",
                  "Star-cluster DS9 regions"):
        assert exporters.count(label) == 1


def in_fresh_glue(code):
    """Run ``code`` (which prints one JSON line last) in a fresh headless interpreter."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ,
                                            "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_glue_load_plugins_finds_it_in_a_fresh_interpreter():
    """glue's own plugin loader (as at application start) registers our viewers and menus."""
    code = (
        "import json\n"
        "from glue.main import load_plugins\n"
        "load_plugins()\n"
        "from glue_qt.config import qt_client, menubar_plugin\n"
        "from glue.config import data_factory\n"
        "print(json.dumps([[c.__name__ for c in qt_client.members],\n"
        "                  [l for l, _ in menubar_plugin.members],\n"
        "                  [f.label for f in data_factory.members]]))\n")
    viewers, menus, factories = in_fresh_glue(code)
    assert "StarClusterImageViewer" in viewers and "ClusterInspectorViewer" in viewers
    assert "Open HST mosaic…" in menus
    assert "Star-cluster catalog (LEGUS .tab, PHANGS-HST FITS)" in factories


def test_menu_items_are_in_the_application(app):
    texts = [a.text() for a in app._actions["plugins"]]
    for label in ("Open HST mosaic…", "Classify catalog sources…", "Cluster inspector",
                  "Diagnostics layout"):
        assert label in texts



def test_menu_items_have_tooltips_in_a_fresh_glue():
    """As glue starts: its plugin loader, then the application and its Plugins menu."""
    code = (
        "import json\n"
        "from glue.main import load_plugins\n"
        "load_plugins()\n"
        "from glue_qt.app import GlueApplication\n"
        "from qtpy import QtWidgets\n"
        "app = GlueApplication()\n"
        "QtWidgets.QApplication.processEvents()\n"
        "acts = app._actions['plugins']\n"
        "menu = next(m for m in app.findChildren(QtWidgets.QMenu) if acts[0] in m.actions())\n"
        "print(json.dumps([menu.toolTipsVisible(), {a.text(): a.toolTip() for a in acts}]))\n")
    visible, tips = in_fresh_glue(code)
    from glue_starclf.qt.common import MENU_TIPS
    assert visible
    for label, tip in MENU_TIPS.items():
        assert tips[label] == tip != label


def test_help_opens_the_documentation(app, monkeypatch):
    from pathlib import Path

    from qtpy import QtGui
    opened = []
    monkeypatch.setattr(QtGui.QDesktopServices, "openUrl",
                        lambda url: opened.append(url) or True)
    actions = {a.text(): a for a in app._actions["plugins"]}
    actions["Star clusters: help"].trigger()
    assert len(opened) == 1 and opened[0].isLocalFile()
    path = Path(opened[0].toLocalFile())
    assert path.is_file() and "Plugins → Open HST mosaic…" in path.read_text()
