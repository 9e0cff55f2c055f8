"""Model checkpoints: safetensors weights plus a JSON model card.

A checkpoint is two files side by side, ``<name>.safetensors`` and
``<name>.json``. The card says how to build the network (architecture name
and keyword arguments), how to prepare its input (bands, stamp size,
normalisation), what its outputs mean (class names, grids), how it was made
(command, seed, data, wall time) and how well it does (metrics), and it
carries the sha256 of the weights. Loading never unpickles anything.
"""

import hashlib
import json
from pathlib import Path

from ..io.writers import atomic_write

__all__ = ["CARD_VERSION", "FAMILIES", "save_checkpoint", "load_card", "validate_card",
           "load_checkpoint", "sha256_file", "bundled_models_dir", "list_models"]

CARD_VERSION = 1


def sha256_file(path):
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(model, path, card):
    """Write ``model``'s weights and its card.

    Parameters
    ----------
    model : torch.nn.Module
    path : str or Path
        Path of the weights, ending in ``.safetensors``; the card goes next
        to it with ``.json``.
    card : dict
        Model card; must hold ``architecture`` and ``kwargs``. ``sha256``,
        ``weights`` and ``card_version`` are filled in here.

    Returns
    -------
    Path
        The card's path.
    """
    from safetensors.torch import save_file
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: checkpoint weights must end in .safetensors")
    for key in ("architecture", "kwargs"):
        if key not in card:
            raise ValueError(f"model card lacks {key!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp), overwrite=True)
    card = {**card, "card_version": CARD_VERSION, "weights": path.name,
            "sha256": sha256_file(path), "size_bytes": path.stat().st_size}
    card_path = path.with_suffix(".json")
    atomic_write(card_path, lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2) + "\n"),
                 overwrite=True)
    return card_path


def load_card(path):
    """Read a model card (``.json``, or the ``.safetensors`` next to it).

    Parameters
    ----------
    path : str or Path
        The card's ``.json``, or its weights' ``.safetensors`` (the card
        next to it is read).

    Returns
    -------
    dict
        The card, checked by `validate_card`, with ``"_path"`` (str) set to
        the path of the ``.json`` it was read from.

    Raises
    ------
    FileNotFoundError
        If there is no card at ``path``.
    ValueError
        If it is not a readable, valid model card.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model card") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable model card ({exc})") from None
    if not isinstance(card, dict):
        raise ValueError(f"{path}: not a model card (a JSON object is expected)")
    validate_card(card, path)
    card["_path"] = str(path)
    return card


#: Model families and the keys every card of one must hold.
FAMILIES = ("classifier", "physical")
_REQUIRED = ("architecture", "kwargs", "weights", "sha256", "family", "stamp_size")


def validate_card(card, path):
    """Check a model card before anything is built from it.

    Parameters
    ----------
    card : dict
        The card as read from its JSON.
    path : str or Path
        Where it came from, named in the messages.

    Raises
    ------
    ValueError
        Naming the card and the key: a key missing, an unknown family or
        architecture, a keyword argument the architecture does not take, a
        stamp size that is not a positive integer, a temperature that is not
        a positive number.
    """
    import inspect
    import math

    from .networks import ARCHITECTURES
    for key in _REQUIRED:
        if key not in card:
            raise ValueError(f"{path}: model card lacks {key!r}")
    if card["family"] not in FAMILIES:
        raise ValueError(f"{path}: key 'family': {card['family']!r} is not one of "
                         f"{', '.join(FAMILIES)}")
    arch = card["architecture"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: key 'architecture': unknown network {arch!r} (known: "
                         f"{', '.join(ARCHITECTURES)})")
    kwargs = card["kwargs"]
    if not isinstance(kwargs, dict):
        raise ValueError(f"{path}: key 'kwargs': expected a mapping of argument names")
    params = inspect.signature(ARCHITECTURES[arch]).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"{path}: key 'kwargs': {arch} takes no argument "
                         f"{', '.join(repr(k) for k in unknown)}")
    size = card["stamp_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{path}: key 'stamp_size': {size!r} is not a positive whole number "
                         f"of pixels")
    if "temperature" in card:
        t = card["temperature"]
        ok = isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) \
            and t > 0
        if not ok:
            raise ValueError(f"{path}: key 'temperature': {t!r} must be a positive number")


def load_checkpoint(path, check_hash=True):
    """Build a network from its card and load its weights (no pickle).

    Parameters
    ----------
    path : str or Path
        The card (``.json``) or the weights (``.safetensors``).
    check_hash : bool
        Compare the weights' sha256 with the card's.

    Returns
    -------
    model : torch.nn.Module
        In eval mode.
    card : dict
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .networks import build_network
    card = load_card(path)
    weights = Path(card["_path"]).with_name(card["weights"])
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: weights named by {card['_path']} are missing")
    if check_hash and sha256_file(weights) != card["sha256"]:
        raise ValueError(f"{weights}: sha256 differs from its model card (corrupt or replaced)")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from None
    model = build_network(card["architecture"], **card["kwargs"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{weights}: weights do not fit {card['architecture']} ({first})") from None
    return model.eval(), card


def bundled_models_dir():
    """Folder of the bundled checkpoints (``models/`` of a checkout, or the package's copy)."""
    here = Path(__file__).resolve().parents[1]  # glue_starclf/
    for cand in (here / "models", here.parent / "models"):
        if cand.is_dir():
            return cand
    return here / "models"


def list_models(folder=None):
    """Model cards in a folder, sorted by name.

    Parameters
    ----------
    folder : str or Path, optional
        Default: the bundled models (`bundled_models_dir`).

    Returns
    -------
    list of dict
        `load_card`'s card of every ``*.json`` with a ``.safetensors`` of the
        same name beside it.
    """
    folder = Path(folder) if folder is not None else bundled_models_dir()
    return [load_card(p) for p in sorted(folder.glob("*.json")) if p.with_suffix(
        ".safetensors").exists()]
