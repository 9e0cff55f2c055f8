"""Readers of the training banks that ``python -m training make-bank`` writes.

A bank is a folder with ``stamps.npy`` (float32, N x 5 x S x S),
``truth.ecsv`` (one row per stamp) and ``meta.json``.
"""

import json
import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

__all__ = ["open_bank", "stamp_stellar_ci", "bank_stellar_ci", "label_sources"]


def open_bank(folder):
    """A bank's stamps (memory-mapped), truth table and meta.

    Parameters
    ----------
    folder : str or Path
        A bank written by ``python -m training make-bank``.

    Returns
    -------
    stamps : ndarray, shape (n, 5, S, S)
        ``stamps.npy``, memory-mapped read-only.
    truth : astropy.table.Table
        ``truth.ecsv``, one row per stamp.
    meta : dict
        ``meta.json``.

    Raises
    ------
    FileNotFoundError
        If one of the three files is missing.
    ValueError
        If stamps and truth rows differ in number.
    """
    folder = Path(folder)
    for name in ("stamps.npy", "truth.ecsv", "meta.json"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name}: not a bank (run make-bank first)")
    stamps = np.load(folder / "stamps.npy", mmap_mode="r")
    truth = Table.read(folder / "truth.ecsv")
    if len(truth) != len(stamps):
        raise ValueError(f"{folder}: {len(stamps)} stamps but {len(truth)} truth rows")
    return stamps, truth, json.loads((folder / "meta.json").read_text())


def stamp_stellar_ci(truth, folder="bank"):
    """The stellar CI of each stamp's field, from a bank's truth table.

    The field's CI as measured on its image (``stellar_ci``,
    `glue_starclf.core.stellar_ci.measure_stellar_ci`) where there is one;
    else the stamp's PSF's own value (``psf_stellar_ci``): engine banks of
    kind physical and classifier render stamps, not fields, and a field may
    hold too few isolated stars. The two agree to 0.05 mag on the banks
    built with the measurement. A note on stderr counts the stamps of a
    bank with measurements that fall back.

    Parameters
    ----------
    truth : astropy.table.Table
    folder : str or pathlib.Path
        Named in the note and errors.

    Returns
    -------
    ndarray of float32, shape (len(truth),)
    """
    n = len(truth)
    measured = "stellar_ci" in truth.colnames
    ci = (np.asarray(truth["stellar_ci"], np.float32) if measured
          else np.full(n, np.nan, np.float32))
    missing = ~np.isfinite(ci)
    if missing.any():
        psf = (np.asarray(truth["psf_stellar_ci"], np.float32)
               if "psf_stellar_ci" in truth.colnames else np.full(n, np.nan, np.float32))
        if not np.isfinite(psf[missing]).all():
            raise ValueError(f"{folder}: {int((missing & ~np.isfinite(psf)).sum())} stamps "
                             "have neither a measured stellar_ci nor a psf_stellar_ci "
                             "(a bank of an older version: rebuild it with make-bank)")
        ci[missing] = psf[missing]
        if measured:
            print(f"{folder}: {int(missing.sum())} of {n} stamps without a measured stellar "
                  "CI take their PSF's (psf_stellar_ci)", file=sys.stderr)
    return ci


def bank_stellar_ci(banks):
    """`stamp_stellar_ci` of every stamp of several banks, in order."""
    return np.concatenate([stamp_stellar_ci(open_bank(f)[1], f) for f in banks])


def label_sources(banks):
    """Per stamp, where its class comes from.

    Parameters
    ----------
    banks : sequence of str or Path
        Bank folders, in the order their stamps are read.

    Returns
    -------
    ndarray of int, shape (n,)
        1 for a catalog row LEGUS humans classified, 0 for a row nobody
        inspected (class 0 in the catalog; its class was drawn given its
        CI), -1 for a stamp that is no catalog row (a bank without
        ``legus_class``).
    """
    out = []
    for folder in banks:
        t = open_bank(folder)[1]
        if "legus_class" in t.colnames:
            out.append((np.asarray(t["legus_class"], int) > 0).astype(int))
        else:
            out.append(np.full(len(t), -1))
    return np.concatenate(out) if out else np.zeros(0, int)
