"""Fine-tuning on the labels of a results dataset, and the user's model versions (no Qt).

The glue action "Fine-tune on my labels" gathers a `FinetuneJob` in the GUI
thread (the labelled sources of the dataset and their vote fractions, see
`glue_starclf.glue.labels`), runs `run_finetune` in a worker (it calls
``glue_starclf.learn.finetune.finetune`` with a progress callback that can cancel)
and, only when that completed, `register_finetuned` writes the new version.

User model versions
-------------------
Each fine-tuned version is a complete models folder
``<user models>/<name>/``: the fine-tuned classifier member
(``classifier-<name>.safetensors`` and its card, which records the parent
model and its sha256, the labels, the labellers and the k-fold accuracy
before and after), its report (``*_finetune.md`` / ``.png``), the labels it
was trained on (``labels.ecsv``, the format of
`glue_starclf.glue.labels.export_labels`), and copies of the physical
members of the parent's folder, so that ``load_ensemble(family, folder)``
and the classify tools take the folder as they take any other. The folder
is written under a temporary name and renamed into place, so a version is
either complete or absent; an existing version, and the bundled models,
are never written to.

``<user models>`` is ``$STARCLF_USER_MODELS`` when set, else
``starclf/models`` in glue's configuration folder (``~/.glue``).
"""

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["USER_MODELS_ENV", "FinetuneJob", "user_models_dir",
           "list_user_models", "default_version_name", "member_file_name", "check_version_name",
           "classifier_cards", "run_finetune", "register_finetuned"]

#: Environment variable naming the folder of the user's model versions.
USER_MODELS_ENV = "STARCLF_USER_MODELS"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def user_models_dir():
    """Folder of the user's fine-tuned model versions (not created here)."""
    env = os.environ.get(USER_MODELS_ENV)
    if env:
        return Path(env).expanduser()
    try:
        from glue.config import CFG_DIR
    except ImportError:
        CFG_DIR = Path("~/.glue").expanduser()
    return Path(CFG_DIR) / "starclf" / "models"


def list_user_models(root=None):
    """The user's model versions, newest first.

    Parameters
    ----------
    root : path-like, optional
        Default `user_models_dir`.

    Returns
    -------
    list of (str, pathlib.Path)
        Name and folder of every complete version (one holding a
        classifier card with its weights).
    """
    from ..core.checkpoints import list_models
    root = Path(root) if root is not None else user_models_dir()
    if not root.is_dir():
        return []
    out = []
    for folder in root.iterdir():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            cards = list_models(folder)
        except (OSError, ValueError):
            continue  # an unreadable card: not offered
        if any(c.get("family") == "classifier" for c in cards):
            out.append((folder.name, folder))
    return sorted(out, key=lambda item: item[1].stat().st_mtime, reverse=True)


def default_version_name(parent_card):
    """``<parent member>-ft-<date>-<time>``, a fresh name for a version (e.g. ``s0-ft-…``).

    The family prefix of the parent's file is left out: the member file is
    `member_file_name` of the version, ``classifier-<version>``.
    """
    stem = re.sub(r"^classifier-", "", Path(parent_card["_path"]).stem)
    return f"{stem}-ft-{time.strftime('%Y%m%d-%H%M%S')}"


def member_file_name(name):
    """File name of a version's classifier member: ``classifier-<name>.safetensors``.

    A version named with the family prefix already keeps it once.
    """
    return f"{name if name.startswith('classifier-') else 'classifier-' + name}.safetensors"


def check_version_name(name, root=None):
    """A valid, unused version name.

    Parameters
    ----------
    name : str
        The name asked for (stripped here).
    root : str or Path, optional
        The folder of the user's model versions; default `user_models_dir`.

    Returns
    -------
    str
        ``name``, stripped.

    Raises
    ------
    ValueError
        Bad characters, or a version of that name exists.
    """
    name = str(name or "").strip()
    if not _NAME.fullmatch(name):
        raise ValueError(f"version name {name!r}: use letters, digits, '.', '_' and '-' "
                         f"(at most 80, starting with a letter or digit)")
    root = Path(root) if root is not None else user_models_dir()
    if (root / name).exists():
        raise ValueError(f"a model version named {name!r} exists in {root}; choose another name")
    return name


def classifier_cards(folder):
    """Classifier member cards of a models folder (None: the bundled models)."""
    from ..core.checkpoints import list_models
    return [c for c in list_models(folder) if c.get("family") == "classifier"]


@dataclass
class FinetuneJob:
    """Everything the worker needs, gathered in the GUI thread.

    Attributes
    ----------
    mosaic : glue_starclf.io.mosaic.Mosaic
    x, y : ndarray
        0-based positions of the labelled sources.
    targets : ndarray, shape (n, 4)
        Their vote fractions.
    model : str
        Card of the classifier member fine-tuned.
    models_folder : str or None
        Folder of that member, whose physical members the version copies
        (None: the bundled models).
    name : str
        Name of the new version.
    settings : dict
        Keyword arguments of ``glue_starclf.learn.finetune.finetune`` (``freeze``,
        ``folds``, ``curve_folds``, ``epochs``, ...).
    labels : astropy.table.Table
        The votes (`glue_starclf.glue.labels.labels_table`), saved with the version.
    provenance : dict
        Where the labels came from (dataset, labellers), for the card.
    """

    mosaic: object
    x: np.ndarray
    y: np.ndarray
    targets: np.ndarray
    model: str
    models_folder: object
    name: str
    settings: dict = field(default_factory=dict)
    labels: object = None
    provenance: dict = field(default_factory=dict)


def run_finetune(job, callback=None):
    """Cut the labelled stamps and fine-tune (runs in the GUI's worker thread).

    Parameters
    ----------
    job : FinetuneJob
    callback : callable, optional
        ``callback(done, total)``; an exception it raises stops the work.

    Returns
    -------
    glue_starclf.learn.finetune.Finetuned
        Its card's ``training`` records the job's provenance and the
        sources off the mosaic (skipped).

    Raises
    ------
    ValueError
        Fewer labels than classes, a band the model lacks, no labelled
        source on the mosaic.
    """
    from ..core.checkpoints import load_card
    from ..learn.finetune import cut_labelled, finetune, labelled_field_stellar_ci
    card = load_card(job.model)
    stamps, mask, inside = cut_labelled(job.mosaic, job.x, job.y, card)
    ci = labelled_field_stellar_ci(card, job.mosaic, job.x, job.y)
    result = finetune(job.model, stamps, np.asarray(job.targets)[inside], mask,
                      callback=callback, stellar_ci=ci, **job.settings)
    result.card["training"].update(
        command="glue-starclf: Fine-tune on my labels", labels=f"{job.name}/labels.ecsv",
        images={b: str(p) for b, p in job.mosaic.paths.items()},
        labels_info={**job.provenance, "off_mosaic": int((~inside).sum())})
    return result


def register_finetuned(result, job, root=None):
    """Write a fine-tuned version as a complete models folder (module docstring).

    Parameters
    ----------
    result : glue_starclf.learn.finetune.Finetuned
    job : FinetuneJob
    root : path-like, optional
        Default `user_models_dir`.

    Returns
    -------
    pathlib.Path
        The version's folder.

    Raises
    ------
    ValueError
        The name is taken, or the folder is the bundled models'.
    """
    from ..core.checkpoints import bundled_models_dir, list_models
    from ..io.writers import write_table
    from ..learn.finetune import write_finetuned
    root = Path(root) if root is not None else user_models_dir()
    name = check_version_name(job.name, root)
    final = root / name
    if bundled_models_dir().resolve() in (final.resolve(), *final.resolve().parents):
        raise ValueError(f"{final} lies in the bundled models folder: choose another "
                         f"${USER_MODELS_ENV}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        write_finetuned(result, tmp / member_file_name(name))
        if job.labels is not None:
            write_table(job.labels, tmp / "labels.ecsv")
        for card in list_models(job.models_folder):
            if card.get("family") == "physical":
                src = Path(card["_path"])
                shutil.copy2(src.with_name(card["weights"]), tmp / card["weights"])
                shutil.copy2(src, tmp / src.name)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
