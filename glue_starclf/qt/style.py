"""Constants of the plugin's look that several viewers share (no widgets).

The inspector's probability bars and the diagnostics layout's class
subsets draw each LEGUS class in the same colour.
"""

__all__ = ["CLASS_COLOURS"]

#: Colour of each LEGUS class (inspector bars, diagnostics subsets).
CLASS_COLOURS = {1: "#2ca02c", 2: "#1f77b4", 3: "#ff7f0e", 4: "#d62728"}
