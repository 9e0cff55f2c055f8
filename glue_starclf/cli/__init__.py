"""The ``starclf`` command line (`glue_starclf.cli.main.main`): classify,
detect, simulate, demo, bench and Dask batches. Nothing imports it.
"""

__all__ = []
