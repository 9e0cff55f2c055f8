"""The star-cluster image viewer: glue-qt's image viewer with an RGB preset and our tools.

A mosaic added to it is shown as an RGB composite of three bands (red
F814W, green F555W, blue F438W or F336W), each layer with an arcsinh
stretch; catalogs and results are drawn as open circles at their sources.
Its toolbar adds three tools to the image viewer's:

- ``starclf:classify``, "Classify sources in selection" (the active region
  subset; see `glue_starclf.qt.actions.classify_selection`);
- ``starclf:rgb``, the RGB preset again (after changing the layers);
- ``starclf:inspect``, the cluster inspector of the results of this mosaic.
"""

from glue.config import viewer_tool
from glue.viewers.common.tool import Tool
from glue_qt.viewers.image import ImageViewer

from ..glue.data import CATALOG, MOSAIC, RESULTS, kind_of
from .common import notify

__all__ = ["StarClusterImageViewer", "ClassifySelectionTool", "RGBPresetTool", "TOOL_ACTIONS",
           "OpenInspectorTool", "RGB_PRESET", "MARKER_COLOURS", "register_tools"]

#: Bands (first present of each tuple) and colours of the RGB composite.
RGB_PRESET = ((("F814W",), "#ff2020"), (("F555W",), "#20ff20"),
              (("F438W", "F336W"), "#3080ff"))

#: Marker colour of each kind of tabular dataset on the image.
MARKER_COLOURS = {RESULTS: "#ffd700", CATALOG: "#00e5ff", None: "#ff66ff"}


def _bands_of(data):
    return {c.label: c for c in data.main_components}


class StarClusterImageViewer(ImageViewer):
    """Image viewer of HST mosaics with the star-cluster tools.

    Attributes
    ----------
    last_dialog : QDialog or None
        The dialog opened last by the classify tool (its ``runner`` attribute
        is the job started from it).
    """

    LABEL = "Star-cluster image viewer"
    tools = ["starclf:classify", "starclf:rgb", "starclf:inspect"]

    def __init__(self, session, parent=None, state=None):
        super().__init__(session, parent=parent, state=state)
        self.last_dialog = None
        self._presetting = False

    def add_data(self, data):
        fresh = kind_of(data) == MOSAIC and not any(la.layer is data for la in self.layers)
        added = super().add_data(data)
        if added and fresh and not self._presetting:
            self.apply_rgb_preset(data)
        elif added and data.ndim == 1:
            self.style_markers(data)
        return added

    def apply_rgb_preset(self, data=None):
        """Show a mosaic as an RGB composite of three bands (grey with fewer bands).

        Parameters
        ----------
        data : glue.core.data.Data, optional
            Default: the viewer's reference data.

        Returns
        -------
        list of str
            The bands shown, red to blue.
        """
        from glue.viewers.image.layer_artist import ImageLayerArtist
        data = data or self.state.reference_data
        if data is None:
            return []
        bands = _bands_of(data)
        chosen = [(next((b for b in names if b in bands), None), colour)
                  for names, colour in RGB_PRESET]
        chosen = [(b, c) for b, c in chosen if b is not None]
        if len(chosen) < 3:  # grey: V if present, else the first band
            chosen = [("F555W" if "F555W" in bands else next(iter(bands)), "#ffffff")]
        layers = [la for la in self.layers if isinstance(la, ImageLayerArtist) and la.layer is data]
        self._presetting = True
        try:
            while len(layers) < len(chosen):
                super().add_data(data)
                layers = [la for la in self.layers
                          if isinstance(la, ImageLayerArtist) and la.layer is data]
        finally:
            self._presetting = False
        self.state.color_mode = "One color per layer" if len(chosen) > 1 else "Colormaps"
        for la, (band, colour) in zip(layers, chosen):
            st = la.state
            st.attribute = bands[band]
            st.global_sync = False
            st.color = colour
            st.stretch = "arcsinh"
            st.percentile = 99.5
            st.alpha = 1.0
            st.visible = True
        for la in layers[len(chosen):]:
            la.state.visible = False
        return [b for b, _ in chosen]

    def style_markers(self, data):
        """Draw a tabular dataset as open circles (yellow results, cyan catalogs)."""
        colour = MARKER_COLOURS.get(kind_of(data), MARKER_COLOURS[None])
        for la in self.layers:
            if la.layer is data:
                st = la.state
                st.color = colour
                st.size = 9
                st.fill = False
                st.alpha = 0.9


#: What the tools that open dialogs or viewers do, ``{tool_id: function(viewer)}``.
#: `glue_starclf.qt.actions` fills it: it opens this viewer, so this module
#: does not import it.
TOOL_ACTIONS = {}


def _run_action(tool):
    action = TOOL_ACTIONS.get(tool.tool_id)
    if action is None:
        notify(tool.viewer, f"“{tool.action_text}” needs the plugin's actions "
               "(glue_starclf.qt.setup() was not called).", "error")
        return None
    return action(tool.viewer)


class ClassifySelectionTool(Tool):
    """Classify the sources in the active region subset of the mosaic."""

    tool_id = "starclf:classify"
    icon = "glue_star"
    action_text = "Classify sources in selection"
    tool_tip = ("Classify sources in selection: the rows of a linked catalog inside the "
                "active region, or candidates detected there")

    def activate(self):
        self.viewer.last_dialog = _run_action(self)


class RGBPresetTool(Tool):
    """Show the mosaic as an RGB composite again."""

    tool_id = "starclf:rgb"
    icon = "glue_rainbow"
    action_text = "RGB composite"
    tool_tip = "RGB composite: F814W red, F555W green, F438W (or F336W) blue"

    def activate(self):
        self.viewer.apply_rgb_preset()
        self.viewer.state.reset_limits()


class OpenInspectorTool(Tool):
    """Open the cluster inspector on the results of this mosaic."""

    tool_id = "starclf:inspect"
    icon = "glue_spawn"
    action_text = "Cluster inspector"
    tool_tip = "Open the cluster inspector on the results of this mosaic"

    def activate(self):
        _run_action(self)


_TOOLS = (ClassifySelectionTool, RGBPresetTool, OpenInspectorTool)


def register_tools():
    """Register the tools with ``glue.config.viewer_tool`` (once; idempotent)."""
    for cls in _TOOLS:
        # Reading members may load the plugin lazily, which registers them.
        if cls.tool_id not in viewer_tool.members:
            viewer_tool.add(cls)


register_tools()
