"""The star-cluster image viewer: glue-qt's image viewer with an RGB preset and our tools.

A mosaic added to it is shown as an RGB composite of three bands (red
F814W, green F438W, blue F336W, as ``starclf simulate --preview``), each
layer with an arcsinh stretch whose levels come from the data
(`rgb_levels`); catalogs and results are drawn as open circles at their sources.
Its toolbar adds three tools to the image viewer's:

- ``starclf:classify``, "Classify sources in selection" (the active region
  subset; see `glue_starclf.qt.actions.classify_selection`);
- ``starclf:rgb``, the RGB preset again (after changing the layers);
- ``starclf:inspect``, the cluster inspector of the results of this mosaic.
"""

import numpy as np
from glue.config import viewer_tool
from glue.viewers.common.tool import Tool
from glue_qt.viewers.image import ImageViewer

from ..glue.data import CATALOG, MOSAIC, RESULTS, kind_of
from .common import notify

__all__ = ["StarClusterImageViewer", "ClassifySelectionTool", "RGBPresetTool", "TOOL_ACTIONS",
           "OpenInspectorTool", "RGB_PRESET", "rgb_levels", "MARKER_COLOURS",
           "MARKER_DIAMETER_PX", "MARKER_POINTS", "register_tools"]

#: Bands (first present of each tuple) and colours of the RGB composite: those
#: of ``starclf simulate --preview`` (`glue_starclf.sim.preview`) first.
RGB_PRESET = ((("F814W", "F555W"), "#ff0000"), (("F438W", "F555W"), "#00ff00"),
              (("F336W", "F275W", "F438W"), "#0000ff"))

#: Most pixels per band read to choose the levels (a regular subsample).
LEVEL_PIXELS = 1_000_000


def rgb_levels(arrays):
    """Per-band levels of an RGB composite that looks like ``starclf simulate --preview``.

    Each band's lower level is its sky (median); its upper level is the sky
    plus a common intensity scale times the band's count rate in a source
    drawn white (`glue_starclf.sim.preview.WHITE`), so the colour balance
    is the preview's and comes from the data, not fixed percentiles per band
    (which gave a green cast). The arcsinh softening is the preview's.

    Parameters
    ----------
    arrays : dict
        ``{band: 2-D array}`` of the three bands, red to blue.

    Returns
    -------
    dict
        ``{band: (v_min, v_max)}``, and ``"a"``: the arcsinh parameter
        (softening over scale) of glue's stretch.
    """
    from ..io.bands import BANDS
    from ..sim.preview import WHITE, rgb_norm
    first = next(iter(arrays.values()))
    step = max(1, int(np.ceil(np.sqrt(first.size / LEVEL_PIXELS))))
    stack = np.zeros((len(BANDS),) + first[::step, ::step].shape)
    sky = {}
    for band, array in arrays.items():
        sample = np.asarray(array[::step, ::step], float)
        finite = sample[np.isfinite(sample)]
        sky[band] = float(np.median(finite)) if finite.size else 0.0
        stack[BANDS.index(band)] = np.where(np.isfinite(sample), sample - sky[band], 0.0)
    scale, soft = rgb_norm(stack, bands=[BANDS.index(b) for b in arrays], saturation=1.0)
    out = {b: (sky[b], sky[b] + scale * WHITE[BANDS.index(b)]) for b in arrays}
    out["a"] = soft / scale
    return out

#: Marker colour of each kind of tabular dataset on the image (the classes
#: have theirs, `glue_starclf.qt.inspector.CLASS_COLOURS`).
MARKER_COLOURS = {RESULTS: "#ffd700", CATALOG: "#ffffff", None: "#ff66ff"}

#: Diameter of the source rings [mosaic pixels]: they grow and shrink with the
#: zoom, between `MARKER_POINTS` (smallest, largest) [points].
MARKER_DIAMETER_PX = 12.0
MARKER_POINTS = (3.0, 48.0)


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
        self._scaling = False
        # Rings of sources scale with the zoom (3,000 fixed-size rings hide the image).
        for name in ("x_min", "x_max", "layers"):
            self.state.add_callback(name, self.scale_markers)
        app = getattr(session, "application", None)
        if app is not None and hasattr(app, "_actions"):  # e.g. a restored session's
            from .common import add_menu_tips
            add_menu_tips(app)

    def marker_points(self):
        """Ring diameter [points] of `MARKER_DIAMETER_PX` at the current zoom."""
        width = self.state.x_max - self.state.x_min
        if not width or not np.isfinite(width):
            return MARKER_POINTS[0]
        screen_px = self.axes.bbox.width / abs(width) * MARKER_DIAMETER_PX
        return float(np.clip(screen_px * 72.0 / self.figure.dpi, *MARKER_POINTS))

    def scale_markers(self, *args):
        """Open rings of `marker_points` for every tabular layer (datasets and subsets).

        Only this viewer's ``size_scaling`` changes: a layer's colour and
        size are its dataset's or subset's, shared with the other viewers.
        """
        if self._scaling:  # changing a layer calls back through "layers"
            return
        self._scaling = True
        try:
            points = None
            for la in self.layers:
                st = la.state
                if not hasattr(st, "size_scaling") or getattr(la.layer, "ndim", 2) != 1:
                    continue
                points = self.marker_points() if points is None else points
                scaling = points / max(float(st.size), 1.0)
                if st.fill:
                    st.fill = False
                if abs(st.size_scaling - scaling) > 1e-3 * scaling:
                    st.size_scaling = scaling
        finally:
            self._scaling = False

    def resizeEvent(self, event):
        """Resize, then rescale the rings to the new zoom (`scale_markers`)."""
        super().resizeEvent(event)
        self.scale_markers()

    def add_data(self, data):
        """Add a dataset as glue does; a new mosaic gets the RGB preset, a table open rings."""
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
        chosen = []
        for names, colour in RGB_PRESET:
            band = next((b for b in names if b in bands and b not in dict(chosen)), None)
            if band is not None:
                chosen.append((band, colour))
        if len(chosen) < 3:  # grey: V if present, else the first band
            chosen = [("F555W" if "F555W" in bands else next(iter(bands)), "#ffffff")]
        levels = rgb_levels({b: data[bands[b]] for b, _ in chosen}) if len(chosen) == 3 \
            else None
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
            if levels is None:
                st.percentile = 99.5
            else:
                st.percentile = "Custom"
                st.v_min, st.v_max = levels[band]
                st.stretch_parameters["a"] = levels["a"]
            st.alpha = 1.0
            st.visible = True
        for la in layers[len(chosen):]:
            la.state.visible = False
        return [b for b, _ in chosen]

    def style_markers(self, data):
        """Draw a tabular dataset as open rings (yellow results, white catalogs)."""
        colour = MARKER_COLOURS.get(kind_of(data), MARKER_COLOURS[None])
        for la in self.layers:
            if la.layer is data:
                st = la.state
                st.color = colour
                st.size = 9
                st.fill = False
                st.alpha = 0.9
        self.scale_markers()


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
        """Run `glue_starclf.qt.actions.classify_selection`; its dialog is the viewer's."""
        self.viewer.last_dialog = _run_action(self)


class RGBPresetTool(Tool):
    """Show the mosaic as an RGB composite again."""

    tool_id = "starclf:rgb"
    icon = "glue_rainbow"
    action_text = "RGB composite"
    tool_tip = ("RGB composite: F814W red, F438W green, F336W blue, levels from the data "
                "(as starclf simulate --preview)")

    def activate(self):
        """Apply the RGB preset and reset the view limits."""
        self.viewer.apply_rgb_preset()
        self.viewer.state.reset_limits()


class OpenInspectorTool(Tool):
    """Open the cluster inspector on the results of this mosaic."""

    tool_id = "starclf:inspect"
    icon = "glue_spawn"
    action_text = "Cluster inspector"
    tool_tip = "Open the cluster inspector on the results of this mosaic"

    def activate(self):
        """Run `glue_starclf.qt.actions.inspect_from_viewer`."""
        _run_action(self)


_TOOLS = (ClassifySelectionTool, RGBPresetTool, OpenInspectorTool)


def register_tools():
    """Register the tools with ``glue.config.viewer_tool`` (once; idempotent)."""
    for cls in _TOOLS:
        # Reading members may load the plugin lazily, which registers them.
        if cls.tool_id not in viewer_tool.members:
            viewer_tool.add(cls)


register_tools()
