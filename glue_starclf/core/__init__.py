"""The Qt-free inference library: cutouts, detection, photometry, networks,
checkpoints and ensemble prediction. Imports `glue_starclf.io` only.
"""

__all__ = []
