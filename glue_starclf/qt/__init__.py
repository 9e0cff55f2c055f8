"""The Qt half of the glue plugin (glue-qt viewers, tools and menu items).

Importing this package imports no Qt: `register_lazily` names it in glue-qt's
registries, and the viewers, tools and menu items (`setup`) are imported
only when glue-qt asks the registries for their members, or when a saved
session names our viewers.
"""

__all__ = ["setup", "register_lazily"]

_done = False


def register_lazily():
    """Name this package in glue-qt's registries (``glue_starclf.setup`` calls it).

    Importing it waits until a registry's members are needed; without glue-qt
    (glue's data side only) nothing is registered.
    """
    from glue.config import viewer_tool
    try:
        from glue_qt.config import menubar_plugin, qt_client
    except ImportError:
        return
    for registry in (qt_client, menubar_plugin, viewer_tool):
        registry.lazy_add("glue_starclf.qt")
    from ..glue.data import RELOCATORS
    if _ask_for_moved_files not in RELOCATORS:
        RELOCATORS.append(_ask_for_moved_files)


def _ask_for_moved_files(label, missing):
    """Ask the glue user where a restored session's band files went (Qt imported only now)."""
    from .common import ask_for_moved_files
    return ask_for_moved_files(label, missing)


def setup():
    """Register the viewers, tools and menu items with glue-qt (once)."""
    global _done
    if _done:
        return
    # Set first: reading a registry below loads lazily registered plugins,
    # which calls this function again.
    _done = True
    from glue_qt.config import menubar_plugin, qt_client

    from .actions import MENU
    from .image_viewer import StarClusterImageViewer, register_tools
    from .inspector import ClusterInspectorViewer
    register_tools()
    for viewer in (StarClusterImageViewer, ClusterInspectorViewer):
        if viewer not in qt_client.members:
            qt_client.add(viewer)
    present = {label for label, _ in menubar_plugin.members}
    for label, function in MENU:
        if label not in present:
            menubar_plugin.add(label, function)
    # The application that loads us makes its menu next: tooltips then.
    from qtpy import QtCore
    QtCore.QTimer.singleShot(0, _tips_everywhere)


def _tips_everywhere():
    from glue_qt.app import GlueApplication
    from qtpy import QtWidgets

    from .common import add_menu_tips
    for widget in QtWidgets.QApplication.topLevelWidgets():
        if isinstance(widget, GlueApplication):
            add_menu_tips(widget)
