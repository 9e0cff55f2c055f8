"""The Qt half of the glue plugin (glue-qt viewers, tools and menu items).

Imported only when glue-qt asks its registries for their members (see
`glue_starclf.setup`), or when a saved session names our viewers.
"""

__all__ = ["setup"]

_done = False


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

    from .actions import add_menu_tips
    for widget in QtWidgets.QApplication.topLevelWidgets():
        if isinstance(widget, GlueApplication):
            add_menu_tips(widget)
