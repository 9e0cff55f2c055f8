"""glue-starclf: star-cluster classification of HST mosaics for glue.

Importing this package is cheap: Qt and torch are imported only by the
modules that need them.
"""

from .version import __version__

__all__ = ["__version__", "setup", "MOVED_PATHS"]

#: Where the functions and classes that a glue session saved by an earlier
#: layout names live now (old path -> new path), handed to glue's
#: ``glue.core.state.PATH_PATCHES`` by `setup`. Sessions name our data
#: factories (the datasets' load logs), viewers, layer artists and states;
#: the viewers, layer artists and states of `glue_starclf.qt` did not move.
MOVED_PATHS = {
    "glue_starclf.glue_io.mosaic_factory": "glue_starclf.glue.data.mosaic_factory",
    "glue_starclf.glue_io.catalog_factory": "glue_starclf.glue.data.catalog_factory",
}

_setup_done = False


def setup():
    """Entry point of the ``glue.plugins`` group.

    Registers lazily: glue's registries import `glue_starclf.glue.data` (data
    factories and exporters, no Qt) and `glue_starclf.qt` (viewers, tools,
    menu items) the first time their members are needed, so loading the
    plugin imports neither Qt nor torch. Calling it again does nothing.
    It also gives glue `MOVED_PATHS`, so that sessions saved before the
    layout change restore.
    """
    global _setup_done
    if _setup_done:
        return
    from glue.config import data_exporter, data_factory
    from glue.core.state import PATH_PATCHES
    PATH_PATCHES.update(MOVED_PATHS)
    data_factory.lazy_add("glue_starclf.glue.data")
    data_exporter.lazy_add("glue_starclf.glue.data")
    from .qt import register_lazily
    register_lazily()
    _setup_done = True
