"""Files in and out: HST mosaics, source catalogs, labels files, result tables, bands.

No torch, no glue, and nothing else of glue_starclf is imported here.
"""

__all__ = []
