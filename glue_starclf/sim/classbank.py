"""Classifier bank: labelled 5-band stamps of mock sources of LEGUS classes 1-4.

Each stamp holds one source from `glue_starclf.sim.mosaic.draw_source` at a
random distance, centred within ``jitter_px`` of the stamp centre, on a
cutout of the physical bank's galaxy background tiles (nearest reference
distance), with photon and read noise, and with the blanked rows of
``edge`` sources applied after the noise as in a mosaic.
"""

import numpy as np
from astropy.table import Table

from ..io.bands import BANDS, VEGA_ZEROPOINT
from .bank import _TILE, _TILE_DISTANCES, _background_tiles
from .compose import apply_masked_rows, render_stamps
from .domain import NOMINAL, DomainColumns, chunk_domain, noisy_stamps
from .mosaic import draw_source
from .sources import V

__all__ = ["classifier_bank"]

_CHUNK = 256


def _class_counts(n, weights):
    """Exact per-class counts (largest remainder) so shares hold for any n."""
    w = np.asarray(weights, float)
    if w.shape != (4,) or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"class_weights {weights!r} must be 4 non-negative numbers, not all 0")
    share = w / w.sum() * n
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share)[:n - counts.sum()]] += 1
    return counts


def classifier_bank(n, seed=0, size=32, distance_range=(3, 20), class_weights=(0.25,) * 4,
                    jitter_px=1.0, domain=None, randomise=False, stdpsf_dir=None,
                    noise_free=False):
    """Render ``n`` labelled stamps of mock sources of every LEGUS class.

    Parameters
    ----------
    n : int
        Number of stamps.
    seed : int
        Seeds the sources, positions and noise, and selects the background
        tiles (`glue_starclf.sim.bank._background_tiles`), so banks of
        different seeds share no background.
    size : int
        Stamp side [px] (StarcNet uses 32).
    distance_range : (float, float)
        Galaxy distances [Mpc], drawn uniformly.
    class_weights : sequence of 4 float
        Relative shares of classes 1-4; the counts are exact (largest
        remainder) and the order is shuffled.
    jitter_px : float
        Sources are centred uniformly within this many pixels of the stamp
        centre ((size - 1) / 2) in x and y.
    domain : glue_starclf.sim.domain.Domain, optional
        Fixed instrument conditions (default `NOMINAL`).
    randomise : bool
        Draw a new `Domain` per chunk of stamps (`draw_domain`) instead.
    stdpsf_dir : str, optional
        STDPSF folder for randomised PSF families.
    noise_free : bool
        Only the sources' PSF-convolved light: no galaxy background and no
        noise (what a class carries when nothing hides it). The sources and
        positions are those of the same seed's noisy bank.

    Returns
    -------
    stamps : ndarray, float32, shape (n, 5, size, size)
        Sky-subtracted count rates [e-/s]; blanked rows of ``edge`` sources
        are NaN or 0.
    truth : astropy.table.Table
        ``class``, ``subtype``, ``distance_mpc``, ``log_age``, ``log_mass``,
        ``av``, ``r_h`` [pc] (NaN where they do not apply), ``p_cb``,
        ``mag_F555W`` (noise-free Vega magnitude of the source's light, NaN
        when it has none), ``dx``, ``dy`` (offset [px] from the centre), and
        the domain of each stamp (`domain_columns`).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n {n} must be non-negative")
    size = int(size)
    if not 8 <= size <= _TILE:
        raise ValueError(f"size {size} must be within 8-{_TILE} px")
    lo, hi = (float(v) for v in distance_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"distance_range {distance_range!r} must be 0 < lo <= hi Mpc")
    if not 0 <= jitter_px < size / 2:
        raise ValueError(f"jitter_px {jitter_px} must be within 0-{size / 2:g}")

    rng = np.random.default_rng(seed)
    counts = _class_counts(n, class_weights)
    cls = rng.permutation(np.repeat(np.arange(1, 5), counts))
    dist = rng.uniform(lo, hi, n)
    offsets = rng.uniform(-jitter_px, jitter_px, (n, 2))
    which = np.abs(np.log(dist[:, None] / np.array(_TILE_DISTANCES)[None, :])).argmin(axis=1)
    corner = rng.integers(0, _TILE - size, (n, 2))

    stamps = np.empty((n, len(BANDS), size, size), np.float32)
    cols = {k: np.full(n, np.nan) for k in ("log_age", "log_mass", "av", "r_h", "p_cb",
                                               "mag_F555W")}
    subtype = np.empty(n, dtype=object)
    c = (size - 1) / 2.0
    doms = DomainColumns(n)
    dom_rng = np.random.default_rng([seed, 7])
    # The noise has its own stream: how many draws it takes depends on the conditions,
    # and the sources of later chunks must not (robustness banks pair them).
    noise_rng = np.random.default_rng([seed, 9])
    # Chunks bound the working arrays (PSF FFT batches, noise).
    for start in range(0, n, _CHUNK):
        idx = np.arange(start, min(start + _CHUNK, n))
        dom = chunk_domain(dom_rng, domain, randomise, stdpsf_dir)
        doms.set(idx, dom)
        sources = [draw_source(rng, int(cls[i]), dist[i], truncation=dom.eff_truncation)
                   for i in idx]
        light = render_stamps(sources, size, offsets=offsets[idx], psf=dom.psf())
        if noise_free:
            stamps[idx] = light
        else:
            tiles = _background_tiles(seed, dom.background)
            light += np.stack([tiles[which[i], :, corner[i, 1]:corner[i, 1] + size,
                                     corner[i, 0]:corner[i, 0] + size] for i in idx])
            stamps[idx] = noisy_stamps(light, noise_rng, dom)
        for i, s in zip(idx, sources):
            if s.masked_rows is not None:
                apply_masked_rows(stamps[i], c + offsets[i, 0], c + offsets[i, 1], s.masked_rows)
            for k in ("log_age", "log_mass", "av", "r_h", "p_cb"):
                cols[k][i] = s.truth.get(k, np.nan)
            subtype[i] = s.truth.get("subtype", "")
            if s.light.x.size:
                f_v = s.light.total()[V]
                if f_v > 0:
                    cols["mag_F555W"][i] = -2.5 * np.log10(f_v) + VEGA_ZEROPOINT["F555W"]

    truth = Table()
    truth["class"] = cls.astype(int)
    truth["subtype"] = subtype.astype(str)
    truth["distance_mpc"] = dist
    for k in ("log_age", "log_mass", "av", "r_h", "p_cb", "mag_F555W"):
        truth[k] = cols[k]
    truth["dx"], truth["dy"] = offsets[:, 0], offsets[:, 1]
    doms.fill(truth)
    truth["r_h"].unit = "pc"
    truth["distance_mpc"].unit = "Mpc"
    truth.meta.update({"seed": seed, "size": size, "distance_range": (lo, hi),
                       "class_weights": tuple(float(w) for w in class_weights),
                       "jitter_px": float(jitter_px), "randomise": bool(randomise),
                       "domain": None if randomise else (domain or NOMINAL).describe()})
    return stamps, truth
