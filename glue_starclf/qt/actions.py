"""What the plugin's menu items and tools do.

Every entry point returns the dialog or job it started (tests drive them),
reports bad input with a message (`glue_starclf.qt.common.notify`), and
leaves the data collection unchanged when it fails or is cancelled.

Menu items (``Plugins`` menu of glue, `MENU`): "Open HST mosaic…",
"Classify catalog sources…", "Cluster inspector", "Diagnostics layout",
"Fine-tune on my labels…" (`glue_starclf.qt.labelling`), "Star clusters: help".
"""

import numpy as np

from ..core.cutouts import has_flag
from ..glue.data import (MOSAIC, RESULTS, kind_of, load_catalog, load_mosaic, missing_files,
                         mosaic_from_data, unique_label)
from ..glue.results import (RESULTS_META_KEY, ClassifyJob, NoSources, attach_results,
                            catalog_sources, default_distance, detection_summary,
                            link_to_mosaic, linked_catalogs, merge_results, models_summary,
                            region_box, results_for, world_agrees)
from .common import JobRunner, application_of, gui_message, main_window, notify, tile_tab
from .dialogs import ClassifyDialog, OpenMosaicDialog
from .image_viewer import TOOL_ACTIONS, StarClusterImageViewer

__all__ = ["MENU", "open_mosaic_dialog", "open_mosaic_files", "classify_selection",
           "active_region", "classify_catalog_dialog", "open_inspector", "open_diagnostics",
           "finetune_on_labels", "inspect_from_viewer", "documentation_path", "open_help",
           "mosaic_notes", "class_counts"]


def mosaic_notes(mosaic):
    """Sentences about a mosaic's missing bands and WCS for a message ("" when complete)."""
    notes = []
    if mosaic.missing_bands:
        notes.append(f"Missing band(s) {', '.join(mosaic.missing_bands)}: the models run with "
                     f"the band mask (results flagged missing:BAND).")
    if mosaic.wcs is None:
        notes.append("No celestial WCS: pixel-only mode (ra/dec are NaN; datasets are "
                     "linked by pixel position only).")
    return " ".join(notes)


def class_counts(table):
    """``"12 class 1, 3 class 2, ..."`` of a results table."""
    cls = np.asarray(table["class"])
    return ", ".join(f"{int((cls == c).sum())} class {c}" for c in (1, 2, 3, 4))


def _pixelless(mosaic_data, gone):
    return (f"“{mosaic_data.label}” has no pixels: its band files were not found when the "
            f"session was restored ({', '.join(gone)}). Open them again with Plugins → Open "
            f"HST mosaic… and classify there.")


def _is_mosaic(data):
    from ..io.bands import BANDS
    return data.ndim == 2 and (kind_of(data) == MOSAIC or
                               any(c.label in BANDS for c in data.main_components))


# -- opening ------------------------------------------------------------------------

def open_mosaic_dialog(session, data_collection):
    """Menu "Open HST mosaic…": the band files (and a catalog) in a dialog."""
    dialog = OpenMosaicDialog(main_window(session))
    dialog.accepted.connect(lambda: open_mosaic_files(session, dialog.items(), dialog.catalog()))
    dialog.open()
    return dialog


def open_mosaic_files(session, items, catalog=None):
    """Open a mosaic (and a catalog linked to it) and show it in a star-cluster image viewer.

    Parameters
    ----------
    session : glue.core.session.Session
    items : sequence of str
        ``"BAND=path"`` items or plain paths.
    catalog : str, optional
        A catalog file whose 0-based x/y are pixels of this mosaic.

    Returns
    -------
    glue.core.data.Data or None
        The mosaic dataset; None when it could not be opened (a message says why).
    """
    dc = session.data_collection
    parent = main_window(session)
    try:
        data = load_mosaic(items)
    except (OSError, ValueError, KeyError) as exc:
        notify(parent, f"The mosaic could not be opened: {gui_message(exc)}", "error")
        return None
    data.label = unique_label(dc, data.label)  # the same field opened twice
    dc.append(data)
    mosaic = mosaic_from_data(data)
    ny, nx = mosaic.shape
    text = [f"Opened mosaic “{data.label}” ({nx}×{ny}, bands {', '.join(mosaic.bands)})."]
    cat = None
    if catalog:
        try:
            cat = load_catalog(catalog)
        except (OSError, ValueError, KeyError) as exc:
            text.append(f"The catalog could not be opened: {gui_message(exc)}")
        else:
            dc.append(cat)
            linked = link_to_mosaic(dc, cat, data, world=world_agrees(cat, data))
            text.append(f"Catalog “{cat.label}” ({cat.shape[0]} rows) linked by "
                        f"{' and '.join(linked) or 'existing links'} coordinates.")
    notes = mosaic_notes(mosaic)
    if notes:
        text.append(notes)
    app = application_of(session)
    if app is not None:
        if hasattr(app.current_tab, "subWindowList") and app.current_tab.subWindowList():
            app.new_tab()  # the mosaic gets a tab of its own, which it fills
        viewer = app.new_data_viewer(StarClusterImageViewer, data=data)
        if viewer is not None:
            tile_tab(app, [viewer])
            if cat is not None:
                viewer.add_data(cat)
    notify(parent, "\n".join(text), "warning" if notes or (catalog and cat is None)
           else "information")
    return data


# -- classification -------------------------------------------------------------------

def active_region(session, mosaic_data):
    """The active (edited) subset group that has a subset on the mosaic, or None."""
    for group in session.edit_subset_mode.edit_subset or []:
        if any(s.data is mosaic_data for s in group.subsets):
            return group
    return None


def _distance_default(data_collection, mosaic_data):
    done = results_for(data_collection, mosaic_data)
    if done is not None and "distance_mpc" in done.meta.get(RESULTS_META_KEY, {}):
        return float(done.meta[RESULTS_META_KEY]["distance_mpc"]), "as the last run"
    return default_distance(mosaic_data)


def classify_selection(viewer):
    """Tool "Classify sources in selection" of a star-cluster image viewer.

    Takes the active region subset on the viewer's mosaic, offers the rows of
    the linked catalogs inside it or detection, and on OK runs the job; the
    results go to the mosaic's results dataset (`merge_results`).

    Returns
    -------
    ClassifyDialog or None
        The dialog (its ``runner`` attribute is set on OK); None after a message.
    """
    from glue.core.exceptions import IncompatibleAttribute
    session = viewer.session
    dc = session.data_collection
    mosaic_data = viewer.state.reference_data
    if mosaic_data is None or not _is_mosaic(mosaic_data):
        notify(viewer, "This viewer shows no mosaic: open one with Plugins → Open HST mosaic…",
               "warning")
        return None
    gone = missing_files(mosaic_data)
    if gone:
        notify(viewer, _pixelless(mosaic_data, gone), "warning")
        return None
    group = active_region(session, mosaic_data)
    if group is None:
        notify(viewer, "No region selected: draw a region on the mosaic with a selection tool "
               "(rectangle, circle, polygon), keep it selected, then click “Classify sources "
               "in selection” again.", "warning")
        return None
    try:
        box, mask = region_box(group.subset_state, mosaic_data)
    except NoSources as exc:
        notify(viewer, f"Nothing to classify: {exc}. No dataset was made.", "warning")
        return None
    except IncompatibleAttribute:
        notify(viewer, f"The region “{group.label}” is not defined on the mosaic "
               f"“{mosaic_data.label}”.", "warning")
        return None
    choices = []
    for cat in linked_catalogs(dc, mosaic_data):
        try:
            inside = np.asarray(group.subset_state.to_mask(cat), bool)
        except IncompatibleAttribute:
            continue
        choices.append((f"{cat.label}: {int(inside.sum())} sources in the region",
                        (cat, inside)))
    choices.sort(key=lambda c: -int(c[1][1].sum()))
    choices.append(("Detect candidates in the region", None))
    x0, y0, x1, y1 = box
    dialog = ClassifyDialog(
        "Classify sources in selection", choices, _distance_default(dc, mosaic_data),
        intro=f"Region “{group.label}” on “{mosaic_data.label}”: {int(mask.sum()):,} pixels "
              f"in x {x0}–{x1 - 1}, y {y0}–{y1 - 1}.", parent=viewer)
    dialog.runner = None

    def start():
        source = dialog.values["source"]
        mosaic = mosaic_from_data(mosaic_data)
        if source is None:
            job = ClassifyJob(mosaic, dialog.values["distance_mpc"], dialog.values["models"],
                              box=box, mask=mask,
                              class_balanced=dialog.values["class_balanced"],
                              stellar_ci=dialog.values["stellar_ci"],
                              ci_min=dialog.values["ci_min"])
        else:
            cat, inside = source
            if not inside.any():
                notify(viewer, f"Nothing to classify: no source of “{cat.label}” lies in the "
                       f"region. No dataset was made.", "warning")
                return
            job = ClassifyJob(mosaic, dialog.values["distance_mpc"], dialog.values["models"],
                              sources=catalog_sources(cat, inside),
                              class_balanced=dialog.values["class_balanced"],
                              stellar_ci=dialog.values["stellar_ci"])
        notes = mosaic_notes(mosaic)

        def on_result(table):
            from .diagnostics import class_subsets
            data, n_new, n_updated = merge_results(dc, mosaic_data, table)
            if not any(la.layer is data for la in viewer.layers):
                viewer.add_data(data)
            class_subsets(session, data)  # colour by class, on the image too
            detected = detection_summary(table.meta)
            return (f"Classified {len(table)} sources ({class_counts(table)}) into "
                    f"“{data.label}”: {n_new} new, {n_updated} updated.\n"
                    + (f"{detected[0].upper()}{detected[1:]}.\n" if detected else "")
                    + f"Models: {models_summary(table.meta)}." + (f"\n{notes}" if notes else ""))

        dialog.runner = JobRunner(job, on_result, parent=viewer,
                                  title="Classify sources in selection")
        dialog.runner.start()

    dialog.accepted.connect(start)
    dialog.open()
    return dialog


def classify_catalog_dialog(session, data_collection):
    """Menu "Classify catalog sources…": results attached to the catalog dataset itself.

    Returns
    -------
    ClassifyDialog or None
        The dialog (its ``runner`` attribute is set on OK); None after a message.
    """
    parent = main_window(session)
    catalogs = [d for d in data_collection
                if d.ndim == 1 and kind_of(d) != RESULTS and
                {"x", "y"} <= {c.label for c in d.main_components}]
    mosaics = [d for d in data_collection if _is_mosaic(d)]
    if not catalogs or not mosaics:
        missing = " and ".join(w for w, ok in (("a catalog with x/y columns", catalogs),
                                               ("a mosaic", mosaics)) if not ok)
        notify(parent, f"Classify catalog sources needs {missing}: open them first "
               f"(Plugins → Open HST mosaic…, or File → Open data for a catalog).", "warning")
        return None
    dialog = ClassifyDialog(
        "Classify catalog sources", [(f"{c.label} ({c.shape[0]} rows)", c) for c in catalogs],
        _distance_default(data_collection, mosaics[0]),
        mosaics=[(m.label, m) for m in mosaics],
        intro="Every row of the catalog is classified; the result columns are added to the "
              "catalog dataset (updated on re-runs).", parent=parent)
    dialog.runner = None

    def start():
        cat, mosaic_data = dialog.values["source"], dialog.values["mosaic"]
        if cat.shape[0] == 0:
            notify(parent, f"Nothing to classify: “{cat.label}” has no rows.", "warning")
            return
        gone = missing_files(mosaic_data)
        if gone:
            notify(parent, _pixelless(mosaic_data, gone), "warning")
            return
        mosaic = mosaic_from_data(mosaic_data)
        job = ClassifyJob(mosaic, dialog.values["distance_mpc"], dialog.values["models"],
                          sources=catalog_sources(cat),
                          class_balanced=dialog.values["class_balanced"],
                          stellar_ci=dialog.values["stellar_ci"])
        notes = mosaic_notes(mosaic)

        def on_result(table):
            from .diagnostics import class_subsets
            added, updated, linked = attach_results(data_collection, cat, mosaic_data, table)
            class_subsets(session, cat)
            outside = int(has_flag(table["flags"], "outside").sum())
            text = (f"Classified the {len(table)} rows of “{cat.label}” ({class_counts(table)}): "
                    f"{len(added)} columns added, {len(updated)} updated.")
            if linked:
                text += f" Linked to “{mosaic_data.label}” by {' and '.join(linked)} coordinates."
            if outside:
                text += f" {outside} rows lie outside the mosaic (flag outside, NaN results)."
            text += f"\nModels: {models_summary(table.meta)}."
            return text + (f"\n{notes}" if notes else "")

        dialog.runner = JobRunner(job, on_result, parent=parent, title="Classify catalog sources")
        dialog.runner.start()

    dialog.accepted.connect(start)
    dialog.open()
    return dialog


# -- views -----------------------------------------------------------------------------

def _results_datasets(data_collection, mosaic_data=None):
    out = [d for d in data_collection if kind_of(d) == RESULTS]
    out += [d for d in data_collection if kind_of(d) != RESULTS and d.ndim == 1
            and d.meta.get("starclf_columns")]
    if mosaic_data is not None:
        own = results_for(data_collection, mosaic_data)
        out = ([own] if own is not None else []) + [d for d in out if d is not own]
    return out


def open_inspector(session, data_collection=None, mosaic_data=None):
    """Menu "Cluster inspector" (and the image viewer's tool): the inspector on the results.

    Returns
    -------
    ClusterInspectorViewer or None
    """
    dc = data_collection if data_collection is not None else session.data_collection
    found = _results_datasets(dc, mosaic_data)
    if not found:
        notify(main_window(session), "No results yet: classify sources first (the “Classify "
               "sources in selection” tool, or Plugins → Classify catalog sources…).", "warning")
        return None
    from .inspector import ClusterInspectorViewer
    app = application_of(session)
    return app.new_data_viewer(ClusterInspectorViewer, data=found[0])


def open_diagnostics(session, data_collection=None):
    """Menu "Diagnostics layout": linked colour, age-mass and luminosity/mass-function views.

    Returns
    -------
    list of viewers or None
    """
    dc = data_collection if data_collection is not None else session.data_collection
    found = _results_datasets(dc)
    if not found:
        notify(main_window(session), "No results yet: classify sources first, then open the "
               "diagnostics layout.", "warning")
        return None
    from .diagnostics import diagnostics_layout
    return diagnostics_layout(application_of(session), found[0])


def finetune_on_labels(session, data_collection):
    """Menu "Fine-tune on my labels…" (see `glue_starclf.qt.labelling.finetune_menu`)."""
    from .labelling import finetune_menu
    return finetune_menu(session, data_collection)


def documentation_path():
    """The plugin's documentation as a local file: the checkout's README, else the
    installed package's description (the README) written to the glue folder.

    Returns
    -------
    pathlib.Path
    """
    from importlib.metadata import PackageNotFoundError, metadata
    from pathlib import Path

    from ..glue.finetuning import user_models_dir
    readme = Path(__file__).resolve().parents[2] / "README.md"
    if readme.is_file():
        return readme
    try:
        text = metadata("glue-starclf").get_payload() or metadata("glue-starclf")["Description"]
    except (PackageNotFoundError, KeyError):
        text = None
    path = user_models_dir().parent / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text or "glue-starclf: see https://pypi.org/project/glue-starclf/\n")
    return path


def open_help(session, data_collection=None):
    """Menu "Star clusters: help": the plugin's documentation in the system's viewer.

    Returns
    -------
    QUrl
        The local file URL opened (a message gives the path when nothing opens it).
    """
    from qtpy.QtCore import QUrl
    from qtpy.QtGui import QDesktopServices
    path = documentation_path()
    url = QUrl.fromLocalFile(str(path))
    if not QDesktopServices.openUrl(url):
        notify(main_window(session), f"No application opens {path}: read it in a text "
               f"editor or a Markdown viewer.", "warning")
    return url


#: Menu items: ``(label, function(session, data_collection))``.
MENU = (("Open HST mosaic…", open_mosaic_dialog),
        ("Classify catalog sources…", classify_catalog_dialog),
        ("Cluster inspector", open_inspector),
        ("Diagnostics layout", open_diagnostics),
        ("Fine-tune on my labels…", finetune_on_labels),
        ("Star clusters: help", open_help))


def inspect_from_viewer(viewer):
    """Tool "Cluster inspector" of a star-cluster image viewer: `open_inspector` on its mosaic."""
    return open_inspector(viewer.session, mosaic_data=viewer.state.reference_data)


# The image viewer's tools call these; the viewer does not import this module
# (which opens viewers), this module hands them over.
TOOL_ACTIONS.update({"starclf:classify": classify_selection,
                     "starclf:inspect": inspect_from_viewer})
