"""glue-starclf: star-cluster classification of HST mosaics for glue.

Importing this package is cheap: Qt and torch are imported only by the
modules that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "setup"]


def setup():
    """Entry point of the ``glue.plugins`` group.

    The viewers, tools and data factories arrive with the glue plugin issue;
    until then the plugin loads and registers nothing.
    """
