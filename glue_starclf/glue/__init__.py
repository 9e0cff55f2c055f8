"""The Qt-free half of the glue plugin: datasets and exporters, results,
labels and fine-tuning jobs. Imports glue-core, never Qt.
"""

__all__ = []
