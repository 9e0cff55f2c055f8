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
