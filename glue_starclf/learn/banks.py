"""Readers of the training banks that ``python -m training make-bank`` writes.

A bank is a folder with ``stamps.npy`` (float32, N x 5 x S x S),
``truth.ecsv`` (one row per stamp) and ``meta.json``.
"""

import json
from pathlib import Path

import numpy as np
from astropy.table import Table

__all__ = ["open_bank"]


def open_bank(folder):
    """A bank's stamps (memory-mapped), truth table and meta."""
    folder = Path(folder)
    for name in ("stamps.npy", "truth.ecsv", "meta.json"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name}: not a bank (run make-bank first)")
    stamps = np.load(folder / "stamps.npy", mmap_mode="r")
    truth = Table.read(folder / "truth.ecsv")
    if len(truth) != len(stamps):
        raise ValueError(f"{folder}: {len(stamps)} stamps but {len(truth)} truth rows")
    return stamps, truth, json.loads((folder / "meta.json").read_text())
