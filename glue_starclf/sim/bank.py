"""Physical-parameter bank: cluster stamps for the age/mass/extinction/size network.

Following 004 §2: each cluster is drawn with independent age, mass,
extinction and size, placed on a background cutout, and photon noise is
added to the sum (here the background is a mock galaxy rendered by
`glue_starclf.sim.background`, at the cluster's distance). Background-only
stamps form the negative class of the cluster/background output.
"""

import functools

import numpy as np
from astropy.table import Table

from ..io.bands import BANDS, VEGA_ZEROPOINT
from .background import random_galaxy, render_background
from .compose import render_stamps, visibility
from .populations import distance_modulus, population
from .domain import NOMINAL, DomainColumns, chunk_domain, noisy_stamps
from .render import convolve_image, deposit
from .sources import V, render_class1

__all__ = ["BANK_RANGES", "DETECTION_LIMITS", "physical_bank", "check_range"]

#: Parameter ranges of the bank (mock-hst-data.md).
BANK_RANGES = {"log_age": (6.6, 10.1), "log_mass": (3.0, 5.5), "av": (0.0, 3.0),
               "r_h": (0.5, 10.0), "distance_mpc": (3.0, 20.0)}

#: A cluster is kept if it is brighter than one of these apparent Vega
#: magnitudes (the detection limits of 004 §2.2, m_F336W 24, m_F438W 23.5,
#: m_F814W 23).
DETECTION_LIMITS = {"F336W": 24.0, "F438W": 23.5, "F814W": 23.0}

_TILE = 384
_CHUNK = 128
_TILE_DISTANCES = (3.0, 4.5, 7.0, 10.0, 14.0, 20.0)


def check_range(name, value):
    """Raise ValueError if a bank parameter (scalar or (lo, hi)) is outside its range."""
    lo, hi = BANK_RANGES[name]
    vals = np.atleast_1d(np.asarray(value, float))
    bad = vals[~((vals >= lo - 1e-9) & (vals <= hi + 1e-9))]
    if bad.size:
        raise ValueError(f"{name} {bad[0]:g} is outside the bank's range {lo:g}-{hi:g}")
    return value


@functools.lru_cache(maxsize=4)
def _background_tiles(seed, variant="standard"):
    """Noise-free galaxy background tiles, one per reference distance, (k, 5, T, T)."""
    rng = np.random.default_rng(seed if variant == "standard" else [seed, 1])
    tiles = []
    for d in _TILE_DISTANCES:
        galaxy = random_galaxy(rng, (_TILE, _TILE), variant)
        smooth, stars, _ = render_background(rng, galaxy, (_TILE, _TILE), d, step=8)
        deposit(smooth, stars.x, stars.y, stars.flux)
        tiles.append(np.stack([convolve_image(smooth[b], b) for b in range(len(BANDS))]))
    return np.array(tiles, np.float32)


def _draw(rng, n, ranges, fixed):
    out = {}
    grid_age = np.round(np.arange(6.6, 10.1001, 0.05), 2)
    grid_av = np.round(np.arange(0.0, 3.0001, 0.1), 1)
    for name in ("log_age", "log_mass", "av", "r_h", "distance_mpc"):
        if fixed.get(name) is not None:
            out[name] = np.full(n, float(fixed[name]))
            continue
        lo, hi = ranges[name]
        if name in ("log_age", "av"):
            grid = grid_age if name == "log_age" else grid_av
            g = grid[(grid >= lo - 1e-9) & (grid <= hi + 1e-9)]
            if not g.size:
                raise ValueError(f"{name} range {lo:g}-{hi:g} holds no grid value "
                                 f"(step {grid[1] - grid[0]:.2f})")
            out[name] = rng.choice(g, n)
        elif name == "r_h":
            out[name] = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        else:
            out[name] = rng.uniform(lo, hi, n)
    return out


def _detected(p):
    """Whether each drawn cluster passes `DETECTION_LIMITS`."""
    pairs, which = np.unique(np.stack([p["log_age"], p["av"]], axis=1), axis=0,
                             return_inverse=True)
    per_msun = np.array([population(a, v).flux_per_msun for a, v in pairs])
    flux = per_msun[which.ravel()] * 10.0 ** p["log_mass"][:, None]
    mags = -2.5 * np.log10(flux) + distance_modulus(p["distance_mpc"])[:, None]
    cols = [BANDS.index(b) for b in DETECTION_LIMITS]
    return (mags[:, cols] <= np.array(list(DETECTION_LIMITS.values()))).any(axis=1)


def physical_bank(n, seed=0, size=64, background_fraction=0.1, ranges=None,
                  log_age=None, log_mass=None, av=None, r_h=None, distance_mpc=None,
                  jitter_px=1.0, max_tries=50, domain=None, randomise=False, stdpsf_dir=None):
    """Render ``n`` stamps of the physical-parameter bank.

    Parameters
    ----------
    n : int
        Number of stamps.
    seed : int
    size : int
        Stamp side [px] (004 uses 64).
    background_fraction : float
        Share of background-only stamps (``p_cb`` = 0, parameters NaN).
    ranges : dict, optional
        Narrower ``(lo, hi)`` per parameter than `BANK_RANGES`.
    log_age, log_mass, av, r_h, distance_mpc : float, optional
        Hold a parameter fixed (e.g. ``log_mass=4`` for the benchmark).
    jitter_px : float
        Clusters are centred within this many pixels of the stamp centre.
    max_tries : int
        Rounds of drawing cluster parameters until ``n`` clusters pass the
        `DETECTION_LIMITS`; ValueError when they do not.
    domain : glue_starclf.sim.domain.Domain, optional
        Fixed instrument conditions (default `NOMINAL`).
    randomise : bool
        Draw a new `Domain` per chunk (`draw_domain`) instead.
    stdpsf_dir : str, optional
        STDPSF folder for randomised PSF families.

    Returns
    -------
    stamps : ndarray, float32, shape (n, 5, size, size)
        Sky-subtracted count rates [e-/s].
    truth : astropy.table.Table
        ``log_age``, ``log_mass``, ``av``, ``r_h`` [pc], ``gamma``,
        ``distance_mpc``, ``p_cb``, ``visibility``, ``dx``, ``dy``, the
        noise-free apparent magnitudes and the domain columns.
    """
    ranges = {**BANK_RANGES, **(ranges or {})}
    for name, value in ranges.items():
        check_range(name, value)
    fixed = {"log_age": log_age, "log_mass": log_mass, "av": av, "r_h": r_h,
             "distance_mpc": distance_mpc}
    for name, value in fixed.items():
        if value is not None:
            check_range(name, value)
    if not 0.0 <= background_fraction <= 1.0:
        raise ValueError(f"background_fraction {background_fraction} must be within 0-1")
    rng = np.random.default_rng(seed)
    n = int(n)
    n_bg = int(round(n * background_fraction))
    n_cl = n - n_bg

    params = {k: np.empty(0) for k in ("log_age", "log_mass", "av", "r_h", "distance_mpc")}
    for _ in range(max_tries):
        need = n_cl - len(params["log_age"])
        if need <= 0:
            break
        p = _draw(rng, 2 * need, ranges, fixed)
        ok = _detected(p)
        params = {k: np.concatenate([params[k], p[k][ok]])[:n_cl] for k in params}
    if len(params["log_age"]) < n_cl:
        raise ValueError("no detectable clusters in the requested parameter ranges "
                         f"(detection limits {DETECTION_LIMITS})")

    dist = np.concatenate([params["distance_mpc"], rng.uniform(*ranges["distance_mpc"], n_bg)
                           if distance_mpc is None else np.full(n_bg, distance_mpc)])
    which = np.abs(np.log(dist[:, None] / np.array(_TILE_DISTANCES)[None, :])).argmin(axis=1)
    corner = rng.integers(0, _TILE - size, (n, 2))
    offsets = np.zeros((n, 2))
    offsets[:n_cl] = rng.uniform(-jitter_px, jitter_px, (n_cl, 2))
    stamps = np.empty((n, len(BANDS), size, size), np.float32)
    vis = np.zeros(n)
    gamma = np.full(n, np.nan)
    flux = np.full((n, len(BANDS)), np.nan)
    c = (size - 1) / 2.0
    doms = DomainColumns(n)
    dom_rng = np.random.default_rng([seed, 7])
    # The noise has its own stream: how many draws it takes depends on the conditions,
    # and the sources of later chunks must not (robustness banks pair them).
    noise_rng = np.random.default_rng([seed, 9])
    # Chunks keep the working arrays small (memory and cache).
    for start in range(0, n, _CHUNK):
        idx = np.arange(start, min(start + _CHUNK, n))
        cl = idx[idx < n_cl]
        dom = chunk_domain(dom_rng, domain, randomise, stdpsf_dir)
        doms.set(idx, dom)
        sources = [render_class1(rng, params["log_age"][i], params["log_mass"][i],
                                 params["av"][i], params["r_h"][i], params["distance_mpc"][i],
                                 q=1.0, truncation=dom.eff_truncation) for i in cl]
        tiles = _background_tiles(seed, dom.background)
        expected = np.stack([tiles[which[i], :, corner[i, 1]:corner[i, 1] + size,
                                   corner[i, 0]:corner[i, 0] + size] for i in idx]).astype(float)
        if cl.size:
            light = render_stamps(sources, size, offsets=offsets[cl], psf=dom.psf())
            expected[:cl.size] += light
            gamma[cl] = [s.truth["gamma"] for s in sources]
            flux[cl] = light.sum(axis=(2, 3))
        stamps[idx] = noisy_stamps(expected, noise_rng, dom)
        if cl.size:
            vis[cl] = visibility(light[:, V], stamps[cl, V] - light[:, V],
                                 c + offsets[cl, 0], c + offsets[cl, 1])

    truth = Table()
    nan = np.full(n_bg, np.nan)
    for k in ("log_age", "log_mass", "av", "r_h"):
        truth[k] = np.concatenate([params[k], nan])
    truth["gamma"] = gamma
    truth["distance_mpc"] = dist
    truth["p_cb"] = np.concatenate([np.ones(n_cl), np.zeros(n_bg)])
    truth["visibility"] = vis
    truth["dx"], truth["dy"] = offsets[:, 0], offsets[:, 1]
    doms.fill(truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, b in enumerate(BANDS):
            truth[f"mag_{b}"] = -2.5 * np.log10(flux[:, j]) + VEGA_ZEROPOINT[b]
    truth["r_h"].unit = "pc"
    truth.meta.update({"seed": seed, "size": size, "ranges": ranges,
                       "detection_limits": DETECTION_LIMITS, "randomise": bool(randomise),
                       "domain": None if randomise else (domain or NOMINAL).describe()})
    return stamps, truth
