"""Constants of the plugin's look that several viewers share (no widgets).

The image viewer's class subsets, the inspector's probability bars and the
diagnostics layout draw each LEGUS class in the same colour.
"""

__all__ = ["CLASS_COLOURS", "CLASS_LABELS"]

#: Colour of each LEGUS class (probability bars, class subsets on the image and
#: in the diagnostics): hues glue's default subset colours (red, green, blue,
#: brown, orange, purple, pink) do not use, bright on a dark sky; non-clusters grey.
CLASS_COLOURS = {1: "#00e5e5", 2: "#c6e000", 3: "#8c7dff", 4: "#b0b0b0"}

#: Subset-group labels of the LEGUS classes (made on every classification).
CLASS_LABELS = {1: "class 1 (symmetric)", 2: "class 2 (asymmetric)",
                3: "class 3 (association)", 4: "class 4 (non-cluster)"}
