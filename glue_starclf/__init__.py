"""glue-starclf: star-cluster classification of HST mosaics for glue.

Importing this package is cheap: Qt and torch are imported only by the
modules that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "setup"]

_setup_done = False


def setup():
    """Entry point of the ``glue.plugins`` group.

    Registers lazily: glue's registries import `glue_starclf.glue_io` (data
    factories and exporters, no Qt) and `glue_starclf.qt` (viewers, tools,
    menu items) the first time their members are needed, so loading the
    plugin imports neither Qt nor torch. Calling it again does nothing.
    """
    global _setup_done
    if _setup_done:
        return
    from glue.config import data_exporter, data_factory, viewer_tool
    data_factory.lazy_add("glue_starclf.glue_io")
    data_exporter.lazy_add("glue_starclf.glue_io")
    try:
        from glue_qt.config import menubar_plugin, qt_client
    except ImportError:  # glue without its Qt application: data only
        pass
    else:
        for registry in (qt_client, menubar_plugin, viewer_tool):
            registry.lazy_add("glue_starclf.qt")
        from .glue_io import RELOCATORS
        RELOCATORS.append(_ask_for_moved_files)
    _setup_done = True


def _ask_for_moved_files(label, missing):
    """Ask the glue user where a restored session's band files went (Qt imported only now)."""
    from .qt.common import ask_for_moved_files
    return ask_for_moved_files(label, missing)
