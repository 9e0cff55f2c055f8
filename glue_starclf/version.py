"""The package version, in one place: the package root and the metadata of
written tables read it. Imports nothing.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
