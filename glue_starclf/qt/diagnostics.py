"""The diagnostics layout: linked views of the results as in StarcNet (001) Figs. 9-11.

One action opens a tab with four linked glue viewers of a results dataset:

1. colour-colour diagram, U-B against V-I (U-B increasing downward);
2. log age against log mass;
3. luminosity function: histogram of the V aperture magnitude;
4. mass function: histogram of log mass;

each with the four LEGUS classes as coloured subsets
(`glue_starclf.qt.style.CLASS_LABELS`), so a
selection in any view (or the image) shows up in all of them.
"""

import numpy as np
from glue.utils.matplotlib import defer_draw
from glue_qt.viewers.histogram import HistogramViewer
from glue_qt.viewers.scatter import ScatterViewer

from ..glue.data import result_label
from ..glue.results import COLOUR_COLUMNS
from .common import keeping_edit_subset, tile_tab
from .style import CLASS_COLOURS, CLASS_LABELS

__all__ = ["COLOURS", "class_subsets", "colour_components",
           "diagnostics_layout"]


#: Colour components: ``{label: (band minuend, band subtrahend)}`` (result
#: columns of new classifications; derived for results made without them).
COLOURS = COLOUR_COLUMNS


def class_subsets(session, data):
    """One subset group per LEGUS class of a results dataset (made or updated).

    None of them is left glue's active subset (`keeping_edit_subset`).

    Parameters
    ----------
    session : glue.core.session.Session
    data : glue.core.data.Data

    Returns
    -------
    list of glue.core.subset_group.SubsetGroup
    """
    data_collection = session.data_collection
    label = result_label(data, "class")
    groups = []
    with keeping_edit_subset(session):
        for k, name in CLASS_LABELS.items():
            state = data.id[label] == k
            group = next((g for g in data_collection.subset_groups if g.label == name), None)
            if group is None:
                group = data_collection.new_subset_group(name, state)
            elif not _same_state(group.subset_state, state):
                group.subset_state = state  # every viewer recomputes: only when it changed
            for key, value in (("color", CLASS_COLOURS[k]), ("markersize", 5), ("alpha", 0.8)):
                if getattr(group.style, key) != value:
                    setattr(group.style, key, value)
            groups.append(group)
    return groups


def _same_state(a, b):
    """True if two ``component == number`` subset states select the same.

    (Component ids compare with ``is``: their ``==`` makes a subset state.)
    """
    ra, rb = getattr(a, "right", None), getattr(b, "right", None)
    return (type(a) is type(b) and getattr(a, "left", None) is getattr(b, "left", None)
            and getattr(a, "operator", None) is getattr(b, "operator", None)
            and isinstance(ra, (int, float, np.number)) and isinstance(rb, (int, float, np.number))
            and ra == rb)


def colour_components(data):
    """Add the derived colours of `COLOURS` to a results dataset (when absent).

    Returns
    -------
    dict
        ``{label: ComponentID}`` of the colours available.
    """
    out = {}
    labels = [c.label for c in data.components]
    for name, (a, b) in COLOURS.items():
        if name in labels:
            out[name] = data.id[name]
            continue
        la, lb = result_label(data, f"mag_{a}"), result_label(data, f"mag_{b}")
        if la is not None and lb is not None:
            data[name] = data.id[la] - data.id[lb]
            out[name] = data.id[name]
    return out


@defer_draw
def diagnostics_layout(app, data):
    """Open the four linked diagnostic views of a results dataset in a new tab.

    Parameters
    ----------
    app : glue_qt.app.application.GlueApplication
    data : glue.core.data.Data
        Results (the ``star clusters`` dataset, or a catalog with result columns).

    Returns
    -------
    list of viewers
        Colour-colour, age-mass, luminosity function, mass function.
    """
    class_subsets(app.session, data)
    colours = colour_components(data)
    app.new_tab()
    app.tab_widget.setTabText(app.tab_count - 1, "Diagnostics")
    views = []
    cc = app.new_data_viewer(ScatterViewer, data=data)
    if {"V-I", "U-B"} <= set(colours):
        cc.state.x_att = colours["V-I"]
        cc.state.y_att = colours["U-B"]
        cc.state.flip_y()
    cc.state.title = "Colour–colour"
    views.append(cc)
    am = app.new_data_viewer(ScatterViewer, data=data)
    am.state.x_att = data.id[result_label(data, "log_age")]
    am.state.y_att = data.id[result_label(data, "log_mass")]
    am.state.title = "Age–mass"
    views.append(am)
    for name, title in (("mag_F555W", "Luminosity function (V)"),
                        ("log_mass", "Mass function")):
        label = result_label(data, name)
        if label is None:
            continue
        h = app.new_data_viewer(HistogramViewer, data=data)
        h.state.x_att = data.id[label]
        h.state.hist_n_bin = 12
        h.state.title = title
        views.append(h)
    # The dataset's own layer keeps its style: a layer's colour and size are
    # the dataset's, shared by every viewer (and saved with the session).
    tile_tab(app, views, columns=2)
    return views
