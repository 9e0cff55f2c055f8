"""Mock multi-band mosaics: random fields and fields anchored on LEGUS catalogs.

A field is a galaxy background plus mock sources, rendered as light, PSF-
convolved, with artifacts, saturation and noise, and written as one FITS file
per band (TAN WCS, ``FILTER``) plus a truth table in the results-schema
column names.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points

from ..io.bands import BANDS, EXPOSURE_TIME_S, PIXEL_SCALE_ARCSEC, VEGA_ZEROPOINT
from ..version import __version__
from .background import RECOLOUR_BRIGHTER, random_galaxy, render_background
from .compose import (apply_masked_rows, noise_free_ci, render_stamps, saturate,
                      tune_knobs_to_ci, visibility)
from .domain import NOMINAL
from .effpsf import stellar_locus
from .populations import distance_modulus, flux_scale, population
from .profiles import EFF_TRUNCATION
from .render import add_noise, convolve_image, default_psf, deposit
from .sedfit import fit_ssp
from .sources import (ANCHORED_CLASS4_SHARES, CLASS4_SUBTYPES, V, Light, anchor_fluxes,
                      render_class1, render_class2, render_class3, render_class4)

__all__ = ["MockField", "random_field", "legus_anchored_field", "anchored_subtypes",
           "uninspected_classes", "draw_source", "write_mosaic", "check_distance",
           "LEGUS_ABS_MAG_CUT", "UNINSPECTED_CI_KERNEL"]

_ZP = np.array([VEGA_ZEROPOINT[b] for b in BANDS])

#: LEGUS visual-inspection cut (Adamo et al. 2017): M_V <= -6 mag.
LEGUS_ABS_MAG_CUT = -6.0

#: Side [px] of the stamps used for saturated stars and visibility.
_BIG_STAMP = 129
_VIS_STAMP = 61

#: Gaussian width [mag] of the CI kernel that gives an uninspected row the
#: classes of the inspected rows of its CI (`uninspected_classes`).
UNINSPECTED_CI_KERNEL = 0.05

#: Realisations drawn per anchored cluster to find one that reaches the CI.
ANCHOR_DRAWS = {1: 2, 2: 2, 3: 10, 4: 2}

#: Grid ages of the physical-parameter ranges (mock-hst-data.md).
AGE_GRID = np.round(np.arange(6.6, 10.1001, 0.05), 2)


@dataclass
class MockField:
    """A rendered mosaic: images (5, ny, nx) in e-/s, WCS, truth, provenance and
    the `glue_starclf.sim.effpsf.EffectivePSF` it was rendered with."""

    images: np.ndarray
    wcs: WCS
    truth: Table
    distance_mpc: float
    meta: dict = field(default_factory=dict)
    psf: object = None


def check_distance(distance_mpc):
    """Validate a galaxy distance in Mpc (positive, finite)."""
    d = float(distance_mpc)
    if not np.isfinite(d) or d <= 0:
        raise ValueError(f"distance {distance_mpc!r} Mpc must be positive")
    return d


# -- drawing sources -----------------------------------------------------------

def _cluster_mass_range(log_age, av, distance_mpc, lo=3.5, hi=5.5):
    """log-mass range of clusters that pass the LEGUS cut M_V <= -6."""
    mv_per_msun = -2.5 * np.log10(population(log_age, av).flux_per_msun[V])
    need = (mv_per_msun - LEGUS_ABS_MAG_CUT) / 2.5
    return max(lo, need), hi


def draw_source(rng, cls, distance_mpc, subtype=None, truncation=EFF_TRUNCATION):
    """A random mock source of LEGUS class ``cls`` (1-4) at a distance.

    Parameters follow the ranges of ``mock-hst-data.md``; clusters and
    associations are drawn until they pass the LEGUS M_V <= -6 cut.
    Non-clusters (but saturated stars) take the band totals of a cluster
    drawn the same way: in real catalogs class 4 has cluster-like colours
    and magnitudes, so these must not tell the classes apart.

    Parameters
    ----------
    rng : numpy.random.Generator
    cls : int
        LEGUS class, 1-4.
    distance_mpc : float
        Galaxy distance [Mpc].
    subtype : str, optional
        Class-4 sub-type (`CLASS4_SUBTYPES`); default drawn with its
        weights. Ignored for classes 1-3.
    truncation : float
        EFF truncation radius [r_h] of classes 1-2.

    Returns
    -------
    MockSource
    """
    if cls in (1, 2, 3):
        log_age, av, log_mass = _cluster_photometry(rng, cls, distance_mpc)
        if cls == 1:
            return render_class1(rng, log_age, log_mass, av, _log_uniform(rng, 0.5, 10),
                                 distance_mpc, truncation=truncation)
        if cls == 2:
            return render_class2(rng, log_age, log_mass, av, _log_uniform(rng, 0.5, 10),
                                 distance_mpc, truncation=truncation)
        return render_class3(rng, log_age, log_mass, av, rng.uniform(3, 15), distance_mpc)
    if cls != 4:
        raise ValueError(f"unknown class {cls!r}: LEGUS classes are 1-4")
    if subtype is None:
        names = list(CLASS4_SUBTYPES)
        p = np.array(list(CLASS4_SUBTYPES.values()))
        subtype = names[rng.choice(len(names), p=p / p.sum())]
    if subtype == "saturated":
        return render_class4(rng, subtype, rng.uniform(16.0, 18.5))
    log_age, av, log_mass = _cluster_photometry(rng, int(rng.integers(1, 4)), distance_mpc)
    flux = population(log_age, av).flux_per_msun * 10.0 ** log_mass * flux_scale(distance_mpc)
    mags = -2.5 * np.log10(flux) + _ZP
    src = render_class4(rng, subtype, mags[V])
    anchor_fluxes(src, mags)
    return src


def _cluster_photometry(rng, cls, distance_mpc):
    """(log_age, A_V, log_mass) of a random cluster of class ``cls`` above the LEGUS cut."""
    while True:
        ages = AGE_GRID[AGE_GRID <= 7.5] if cls == 3 else AGE_GRID
        log_age = float(rng.choice(ages))
        av = round(float(rng.choice(np.arange(0.0, 1.51, 0.1))), 1)
        lo, hi = _cluster_mass_range(log_age, av, distance_mpc)
        if lo < hi:
            break
    # Cluster mass function dN/dM ~ M^-2 above the detection cut.
    return log_age, av, -np.log10(rng.uniform(10.0 ** -hi, 10.0 ** -lo))


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


# -- painting ------------------------------------------------------------------

def _paint(rng, shape, sources, xy, galaxy, distance_mpc, psf=None, domain=NOMINAL,
           star_colours=None, recolour_brighter=RECOLOUR_BRIGHTER, young_tracer=None):
    """Render sources at positions ``xy`` (n, 2) on a galaxy background.

    ``young_tracer``: positions the background's young light follows when
    the domain's ``young_light`` is ``"sources"``.
    """
    ny, nx = shape
    if domain.young_light != "sources":
        young_tracer = None
    smooth, stars, _ = render_background(rng, galaxy, shape, distance_mpc,
                                         star_colours=star_colours,
                                         recolour_brighter=recolour_brighter,
                                         young_tracer=young_tracer)
    canvas = smooth
    lights = [stars]
    for s, (x, y) in zip(sources, xy):
        if not s.saturated and s.light.x.size:
            lights.append(s.pixels().shifted(x, y))
    # Deposit in chunks: the points of a big field do not all fit in memory at once.
    chunk = []
    size = 0
    for light in lights + [None]:
        if light is not None:
            chunk.append(light)
            size += light.x.size
        if chunk and (light is None or size > 2_000_000):
            all_ = Light.concat(chunk)
            deposit(canvas, all_.x, all_.y, all_.flux)
            chunk, size = [], 0
    for b in range(len(BANDS)):
        canvas[b] = convolve_image(canvas[b], b, psf=psf)
    big = [i for i, s in enumerate(sources) if s.saturated]
    if big:
        stamps = render_stamps([sources[i] for i in big], _BIG_STAMP,
                               offsets=xy[big] - np.round(xy[big]), psf=psf)
        for stamp, i in zip(stamps, big):
            _add_stamp(canvas, stamp, *np.round(xy[i]).astype(int))
        for i in big:
            x, y = np.round(xy[i]).astype(int)
            h = _BIG_STAMP // 2
            sl = (slice(None), slice(max(y - 3 * h, 0), y + 3 * h + 1),
                  slice(max(x - h, 0), x + h + 1))
            saturate(canvas[sl])
    for s, (x, y) in zip(sources, xy):
        if s.artifact is not None:
            ix = np.round(s.artifact.x + x).astype(int)
            iy = np.round(s.artifact.y + y).astype(int)
            ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
            for b in range(len(BANDS)):
                np.add.at(canvas[b], (iy[ok], ix[ok]), s.artifact.flux[ok, b])
    noisy = np.empty_like(canvas)
    gain = domain.flux_factor()
    for b in range(len(BANDS)):
        # A zeropoint error: the recorded flux differs from the calibrated one.
        noisy[b] = add_noise(canvas[b:b + 1] * gain[b], rng, bands=[b],
                             exposure_factor=domain.exposure_factor[b],
                             sky_factor=domain.sky_factor,
                             correlation=domain.correlated_noise)[0]
    del canvas
    for s, (x, y) in zip(sources, xy):
        if s.masked_rows is not None:
            apply_masked_rows(noisy, x, y, s.masked_rows)
    return noisy


def _add_stamp(image, stamp, x, y):
    """Add a (5, s, s) stamp centred on integer pixel (x, y), clipped to the image."""
    h = stamp.shape[-1] // 2
    ny, nx = image.shape[-2:]
    y0, y1, x0, x1 = y - h, y + h + 1, x - h, x + h + 1
    sy0, sx0 = max(0, -y0), max(0, -x0)
    sy1 = stamp.shape[-2] - max(0, y1 - ny)
    sx1 = stamp.shape[-1] - max(0, x1 - nx)
    if sy0 < sy1 and sx0 < sx1:
        image[:, max(y0, 0):min(y1, ny), max(x0, 0):min(x1, nx)] += stamp[:, sy0:sy1, sx0:sx1]


def _truth_table(sources, xy, images, wcs, ci_true, psf=None):
    """Truth columns, including visibility measured on the rendered image."""
    n = len(sources)
    offsets = xy - np.round(xy)
    light = render_stamps(sources, _VIS_STAMP, offsets=offsets, bands=(V,), psf=psf)[:, 0]
    c = _VIS_STAMP // 2
    vis = np.full(n, np.nan)
    ny, nx = images.shape[-2:]
    corner = np.round(xy).astype(int) - c
    for k in range(0, n, 256):
        part = slice(k, min(k + 256, n))
        cuts = np.full((part.stop - k, _VIS_STAMP, _VIS_STAMP), np.nan)
        for cut, (x0, y0) in zip(cuts, corner[part]):
            ys = slice(max(y0, 0), min(y0 + _VIS_STAMP, ny))
            xs = slice(max(x0, 0), min(x0 + _VIS_STAMP, nx))
            cut[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = images[V, ys, xs]
        vis[part] = visibility(light[part], cuts - light[part], c + offsets[part, 0],
                               c + offsets[part, 1])
    rows = [s.truth for s in sources]
    t = Table()
    t["id"] = np.arange(1, n + 1)
    t["x"], t["y"] = xy[:, 0], xy[:, 1]
    if wcs is not None and n:
        sky = wcs.pixel_to_world(xy[:, 0], xy[:, 1])
        t["ra"], t["dec"] = sky.ra.deg, sky.dec.deg
    else:
        t["ra"] = t["dec"] = np.full(n, np.nan)
    t["class"] = np.array([r["class"] for r in rows], int)
    t["subtype"] = [r["subtype"] for r in rows]
    for name in ("log_age", "log_mass", "av", "r_h", "p_cb"):
        t[name] = np.array([r.get(name, np.nan) for r in rows], float)
    t["visibility"] = vis
    # Noise-free band totals: light and artifacts (a cosmic ray holds part of its band).
    flux = np.array([(s.light.total() if s.light.x.size else np.zeros(5))
                     + (s.artifact.total() if s.artifact is not None else 0.0)
                     for s in sources])
    flux = flux.reshape(n, len(BANDS))
    with np.errstate(divide="ignore"):
        mags = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1)) + _ZP, np.nan)
    for j, b in enumerate(BANDS):
        t[f"mag_{b}"] = mags[:, j]
    t["ci_true"] = ci_true
    t["r_h"].unit = "pc"
    t["log_age"].unit = "dex(yr)"
    t["log_mass"].unit = "dex(Msun)"
    t["av"].unit = "mag"
    return t


def _tan_wcs(shape, ra, dec):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    s = PIXEL_SCALE_ARCSEC / 3600.0
    w.wcs.cd = [[-s, 0.0], [0.0, s]]
    w.wcs.radesys = "ICRS"
    return w


def _place(rng, n, shape, galaxy, margin=20, min_sep=12.0, tries=50):
    """Positions weighted by the disk light, at least ``min_sep`` apart."""
    ny, nx = shape
    out = np.empty((0, 2))
    for _ in range(tries):
        k = 4 * (n - len(out))
        cand = np.column_stack([rng.uniform(margin, nx - margin, k),
                                rng.uniform(margin, ny - margin, k)])
        dx = (cand[:, 0] - galaxy.centre[0]) / galaxy.scale_length
        dy = (cand[:, 1] - galaxy.centre[1]) / galaxy.scale_length
        keep = rng.random(k) < np.exp(-np.hypot(dx, dy)) + 0.15
        for p in cand[keep]:
            if len(out) == n:
                break
            if not len(out) or np.min(np.hypot(*(out - p).T)) >= min_sep:
                out = np.vstack([out, p])
        if len(out) == n:
            break
    return out


def random_field(seed=0, shape=(2048, 2048), distance_mpc=10.0, n_sources=300,
                 class_weights=(0.25, 0.25, 0.25, 0.25), ra=150.0, dec=2.0, psf=None,
                 domain=None, field_star_colours=None, recolour_brighter=RECOLOUR_BRIGHTER):
    """Render a random mock field; needs no outside data.

    Parameters
    ----------
    seed : int
        Seed of every random draw: the same seed gives the same field.
    shape : (int, int)
        Image shape (ny, nx).
    distance_mpc : float
        Galaxy distance (3-20 Mpc is the trained range).
    n_sources : int
        Number of mock sources.
    class_weights : sequence of 4 float
        Relative frequency of LEGUS classes 1-4.
    ra, dec : float
        Sky position of the mosaic centre [deg].
    psf : glue_starclf.sim.effpsf.EffectivePSF, optional
        Effective PSF (default: the domain's, else
        `glue_starclf.sim.render.default_psf`).
    domain : glue_starclf.sim.domain.Domain, optional
        Instrument and calibration conditions (default `NOMINAL`). With its
        ``young_light`` ``"sources"`` the background's young light follows
        the clusters (classes 1-3).
    field_star_colours : ndarray, shape (m, 5), optional
        Colours for the bright field stars of the background
        (`glue_starclf.sim.background.catalog_star_colours`; default: their
        isochrone colours).
    recolour_brighter : float
        Absolute V (after dust) above which field stars take those colours
        (`glue_starclf.sim.background.render_background`).

    Returns
    -------
    MockField
    """
    distance_mpc = check_distance(distance_mpc)
    if psf is None:
        psf = default_psf() if domain is None else domain.psf()
    domain = NOMINAL if domain is None else domain
    ny, nx = (int(v) for v in shape)
    if ny < 64 or nx < 64:
        raise ValueError(f"mosaic shape {shape} too small: at least 64 x 64 pixels")
    rng = np.random.default_rng(seed)
    galaxy = random_galaxy(rng, (ny, nx), domain.background)
    xy = _place(rng, int(n_sources), (ny, nx), galaxy)
    w = np.asarray(class_weights, float)
    classes = rng.choice(4, size=len(xy), p=w / w.sum()) + 1
    sources = [draw_source(rng, int(c), distance_mpc, truncation=domain.eff_truncation)
               for c in classes]
    ci_true = noise_free_ci(sources, psf=psf)
    # With young light on the sources it follows the clusters (classes 1-3).
    images = _paint(rng, (ny, nx), sources, xy, galaxy, distance_mpc, psf, domain,
                    field_star_colours, recolour_brighter, young_tracer=xy[classes < 4])
    wcs = _tan_wcs((ny, nx), ra, dec)
    truth = _truth_table(sources, xy, images, wcs, ci_true, psf)
    meta = {"mode": "random", "seed": seed, "galaxy": galaxy.__dict__, "psf": psf.describe(),
            "domain": domain.describe(),
            "field_star_colours": _colours_meta(field_star_colours, recolour_brighter)}
    return MockField(images, wcs, truth, distance_mpc, meta, psf)


def _colours_meta(colours, brighter=RECOLOUR_BRIGHTER):
    """How the bright field stars were coloured, for a field's metadata."""
    if colours is None:
        return "isochrone"
    if brighter != RECOLOUR_BRIGHTER:
        return f"catalog rows ({len(colours)}), M_V <= {brighter:g}"
    return f"catalog rows ({len(colours)})"


# -- LEGUS-anchored fields -----------------------------------------------------

def legus_anchored_field(catalog, seed=0, distance_mpc=None, region=None, max_sources=None,
                         psf=None, domain=None, field_star_colours=None):
    """Render one mock source per row of a LEGUS catalog.

    Every source reproduces its row: positions, and the noise-free total
    magnitude in every band the catalog measured (isochrone stars, Sersic
    galaxies, blends and cluster SEDs only split that flux; bands the row
    lacks keep the model's flux). Clusters (classes 1-3) take the age and
    extinction that fit the row's photometry with the shipped isochrone
    table and the mass of its V magnitude; every source's size is tuned so
    that its noise-free CI equals the catalog's. Class-4 rows get the
    sub-types of `glue_starclf.sim.sources.ANCHORED_CLASS4_SHARES` in
    exact shares (stars carry faint blends that give them the catalog CI).
    Rows not inspected (class 0) get a class drawn as the field's humans
    classed rows of their CI (`uninspected_classes`). The effective PSF's
    stellar CI is the field's stellar locus
    (`glue_starclf.sim.effpsf.stellar_locus` of the catalog CIs).

    Parameters
    ----------
    catalog : astropy.table.Table
        As returned by `glue_starclf.io.catalogs.read_legus_tab` (0-based x/y).
    seed : int
    distance_mpc : float, optional
        Default: the field's distance from StarcNet Table 6.
    region : (x0, y0, x1, y1), optional
        Pixel box of the catalog frame to render (default: all sources).
    max_sources : int, optional
        Keep only the first rows (in catalog order) inside the region.
    psf : glue_starclf.sim.effpsf.EffectivePSF, optional
        Default: the domain's PSF family broadened to the field's stellar
        locus (drizzled TinyTim without a domain).
    domain : glue_starclf.sim.domain.Domain, optional
        Instrument and calibration conditions (default `NOMINAL`); its
        locus is replaced by the field's. With its ``young_light``
        ``"sources"`` the background's young light follows every catalog
        row, in the region and around it.
    field_star_colours : ndarray, shape (m, 5), optional
        Colours for the bright field stars of the background, as in
        `random_field`.

    Returns
    -------
    MockField
        Truth ``x``/``y`` are in the rendered (region) frame; ``legus_id``,
        ``legus_class`` and ``catalog_ci`` keep the link to the real rows.

    Raises
    ------
    ValueError
        A row in the region with no measured band (named by its id), a
        region too small or empty.
    """
    from ..io.catalogs import legus_distance_mpc
    field_name = catalog.meta.get("field", "")
    if distance_mpc is None:
        distance_mpc = legus_distance_mpc(field_name)
    distance_mpc = check_distance(distance_mpc)
    rng = np.random.default_rng(seed)
    x, y = np.asarray(catalog["x"], float), np.asarray(catalog["y"], float)
    if region is None:
        region = (0, 0, int(np.ceil(np.nanmax(x))) + 50, int(np.ceil(np.nanmax(y))) + 50)
    x0, y0, x1, y1 = (int(v) for v in region)
    if x1 - x0 < 64 or y1 - y0 < 64:
        raise ValueError(f"region {region} too small: at least 64 x 64 pixels")
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    rows = catalog[inside]
    if max_sources is not None:
        rows = rows[:int(max_sources)]
    if len(rows) == 0:
        raise ValueError(f"region {region} holds none of the {len(catalog)} catalog sources")
    mags = np.column_stack([np.asarray(rows[f"mag_{b}"], float) for b in BANDS])
    errs = np.column_stack([np.asarray(rows[f"err_{b}"], float) for b in BANDS])
    empty = ~np.isfinite(mags).any(axis=1)
    if empty.any():
        where = catalog.meta.get("path", field_name)
        raise ValueError(f"{where}: row id {int(rows['id'][np.argmax(empty)])} has no "
                         "measured band (all magnitudes 99.999/66.666)")
    locus = stellar_locus(catalog["ci"])
    domain = NOMINAL if domain is None else domain
    if psf is None:
        psf = domain.psf(locus)
    shape = (y1 - y0, x1 - x0)
    # Sources sit on the pixel centre nearest to the catalog position, where
    # the CI measured on the image is the CI they were tuned to.
    xy = np.round(np.column_stack([np.asarray(rows["x"], float) - x0,
                                   np.asarray(rows["y"], float) - y0]))

    cls = np.asarray(rows["class"], int)
    ci_cat = np.asarray(rows["ci"], float)
    ci_all, cls_all = np.asarray(catalog["ci"], float), np.asarray(catalog["class"], int)
    inspected = (cls_all >= 1) & (cls_all <= 4)
    cls = np.where(cls < 1, uninspected_classes(rng, ci_cat, ci_all[inspected],
                                                cls_all[inspected]), cls)
    subtypes = np.full(len(cls), "", dtype=object)
    # Blanked rows of an edge source span +-MASK_HALF_WIDTH px and up to 28 rows.
    near = _nearest_neighbour(xy)
    subtypes[cls == 4] = anchored_subtypes(rng, ci_cat[cls == 4], near[cls == 4] > 40)
    fit = fit_ssp(mags, errs, distance_mpc)
    dm = distance_modulus(distance_mpc)
    # Rows without V: the model's V at the LEGUS M_V cut shapes the source
    # before its measured bands are imposed.
    v_mag = np.where(np.isfinite(mags[:, V]), mags[:, V], dm + LEGUS_ABS_MAG_CUT)

    # A few realisations per row, each tuned to the catalog CI; the closest wins.
    cands = [[_anchored_source(rng, int(c), fit, i, v_mag[i], distance_mpc, subtypes[i],
                               dominance=(j + 1) / ANCHOR_DRAWS.get(c, 1),
                               truncation=domain.eff_truncation)
              for j in range(ANCHOR_DRAWS.get(c, 1))]
             for i, c in enumerate(cls)]
    flat = [s for group in cands for s in group]
    owner = np.repeat(np.arange(len(cands)), [len(g) for g in cands])
    err = np.abs(tune_knobs_to_ci(flat, ci_cat[owner], psf=psf) - ci_cat[owner])
    err[~np.isfinite(err)] = np.inf
    sources = []
    for i, group in enumerate(cands):
        k = np.flatnonzero(owner == i)
        sources.append(group[int(np.argmin(err[k]))])
    for src, m in zip(sources, mags):
        anchor_fluxes(src, m)
    ci = noise_free_ci(sources, psf=psf)

    galaxy = random_galaxy(rng, shape, domain.background)
    # With young light on the sources it follows every catalog row, in the
    # region and around it: LEGUS sources trace where the galaxy forms stars.
    tracer = np.column_stack([x - x0, y - y0])
    images = _paint(rng, shape, sources, xy, galaxy, distance_mpc, psf, domain,
                    field_star_colours, young_tracer=tracer)
    wcs = _anchored_wcs(rows, x0, y0, shape)
    truth = _truth_table(sources, xy, images, wcs, ci, psf)
    truth["legus_id"] = np.asarray(rows["id"], int)
    truth["legus_class"] = np.asarray(rows["class"], int)
    truth["catalog_ci"] = ci_cat
    meta = {"mode": "legus", "seed": seed, "field": field_name,
            "catalog": str(catalog.meta.get("path", "")), "region": [x0, y0, x1, y1],
            "stellar_locus": round(locus, 3), "psf": psf.describe(),
            "domain": domain.describe(), "field_star_colours": _colours_meta(field_star_colours)}
    return MockField(images, wcs, truth, distance_mpc, meta, psf)


def anchored_subtypes(rng, catalog_ci, isolated=None):
    """Class-4 sub-types of anchored rows in exact `ANCHORED_CLASS4_SHARES`.

    Background galaxies (r_e >= 0.1") are the most extended class-4 sources,
    so they go to the rows of highest catalog CI (ranked with 0.1 mag of
    scatter); the other sub-types are shuffled among the remaining rows.
    Edge sources (blanked rows) go to ``isolated`` rows only, so that their
    blanked rows do not cross a neighbour; where too few rows are isolated,
    the rest become hot pixels (the artifact share stays).

    Parameters
    ----------
    rng : numpy.random.Generator
    catalog_ci : array_like, shape (n,)
        Catalog CI [mag] of the class-4 rows (NaN ranks last).
    isolated : array_like of bool, shape (n,), optional
        Rows without a close neighbour; default: no restriction on edges.

    Returns
    -------
    ndarray of object (str), shape (n,)
        Sub-type of each row.
    """
    ci = np.asarray(catalog_ci, float)
    n = ci.size
    names = list(ANCHORED_CLASS4_SHARES)
    share = np.array([ANCHORED_CLASS4_SHARES[k] for k in names]) * n
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share)[:n - counts.sum()]] += 1
    out = np.empty(n, dtype=object)
    key = np.where(np.isfinite(ci), ci, -np.inf) + rng.normal(0.0, 0.1, n)
    n_gal = counts[names.index("galaxy")]
    order = np.argsort(key)[::-1]
    out[order[:n_gal]] = "galaxy"
    rest = [k for k, c in zip(names, counts) if k != "galaxy" for _ in range(c)]
    out[order[n_gal:]] = rng.permutation(np.array(rest, dtype=object))
    if isolated is not None:
        isolated = np.asarray(isolated, bool)
        for i in np.flatnonzero((out == "edge") & ~isolated):
            free = np.flatnonzero(isolated & ~np.isin(out, ("edge", "galaxy")))
            if free.size:
                j = rng.choice(free)
                out[i], out[j] = out[j], "edge"
            else:
                out[i] = "hot_pixel"
    return out


def uninspected_classes(rng, ci, inspected_ci, inspected_class, kernel=UNINSPECTED_CI_KERNEL):
    """Classes for catalog rows nobody inspected, drawn given their CI.

    LEGUS inspected only rows brighter than M_V = -6; the rest (class 0) lie
    nearer the stellar locus, where humans called most rows class 4. A row
    takes class k with probability proportional to the Gaussian-kernel
    weight of the inspected rows of class k at its CI, plus one pseudo-row
    spread over the field's class frequencies (each count + 1), which alone
    decides rows of no finite CI or with no inspected row near them.

    Parameters
    ----------
    rng : numpy.random.Generator
    ci : array_like, shape (n,)
        CI of the rows to classify.
    inspected_ci, inspected_class : array_like, shape (m,)
        CI and class (1-4) of the field's inspected rows.
    kernel : float
        Gaussian width of the CI kernel [mag].

    Returns
    -------
    ndarray of int, shape (n,)
        Classes 1-4 (``len(ci)`` uniform numbers are drawn whatever the input).
    """
    ci = np.asarray(ci, float)
    ref_ci = np.asarray(inspected_ci, float)
    ref_cls = np.asarray(inspected_class, int)
    ok = np.isfinite(ref_ci) & (ref_cls >= 1) & (ref_cls <= 4)
    ref_ci, ref_cls = ref_ci[ok], ref_cls[ok]
    freq = np.bincount(ref_cls, minlength=5)[1:] + 1.0
    weight = np.tile(freq / freq.sum(), (ci.size, 1))
    onehot = np.eye(4)[ref_cls - 1]
    for i in range(0, ci.size, 4096):
        d = (ci[i:i + 4096, None] - ref_ci[None]) / kernel
        k = np.exp(-0.5 * np.nan_to_num(d, nan=np.inf) ** 2)
        weight[i:i + 4096] += k @ onehot
    cdf = np.cumsum(weight / weight.sum(axis=1, keepdims=True), axis=1)
    u = rng.uniform(size=ci.size)
    return np.minimum((u[:, None] > cdf).sum(axis=1), 3) + 1


def _nearest_neighbour(xy):
    """Distance [px] from each position to its nearest other position."""
    from scipy.spatial import cKDTree
    if len(xy) < 2:
        return np.full(len(xy), np.inf)
    d, _ = cKDTree(xy).query(xy, k=2)
    return d[:, 1]


def _anchored_source(rng, cls, fit, i, v_mag, distance_mpc, subtype, dominance=1.0,
                     truncation=EFF_TRUNCATION):
    if cls == 4:
        return render_class4(rng, subtype, v_mag)
    log_age, av = float(fit["log_age"][i]), float(fit["av"][i])
    if not np.isfinite(fit["chi2_red"][i]) and fit["n_bands"][i] < 2:
        log_age, av = float(rng.choice(AGE_GRID[AGE_GRID <= 8.5])), 0.5
    if cls == 3:
        log_age = min(log_age, 7.5)
    # Mass from the V magnitude with this population's light-to-mass ratio.
    v_per_msun = population(log_age, av).flux_per_msun[V]
    log_mass = (-0.4 * (v_mag - distance_modulus(distance_mpc))
                - np.log10(v_per_msun))
    if cls == 1:
        return render_class1(rng, log_age, log_mass, av, 2.0, distance_mpc, truncation=truncation)
    if cls == 2:
        return render_class2(rng, log_age, log_mass, av, 2.0, distance_mpc, truncation=truncation)
    return render_class3(rng, log_age, log_mass, av, 8.0, distance_mpc, dominance=dominance)


def _anchored_wcs(rows, x0, y0, shape):
    """TAN WCS fitted to the catalog's pixel and sky positions."""
    ok = np.isfinite(np.asarray(rows["ra"], float)) & np.isfinite(np.asarray(rows["dec"], float))
    if ok.sum() < 4:
        return _tan_wcs(shape, 150.0, 2.0)
    sky = SkyCoord(np.asarray(rows["ra"])[ok] * u.deg, np.asarray(rows["dec"])[ok] * u.deg)
    px = (np.asarray(rows["x"], float)[ok] - x0, np.asarray(rows["y"], float)[ok] - y0)
    return fit_wcs_from_points(px, sky, projection="TAN")


# -- writing -------------------------------------------------------------------

def write_mosaic(mock, out_dir, prefix="mock", bands=BANDS, overwrite=False):
    """Write a mock field as one FITS per band plus ``<prefix>_truth.ecsv``.

    Files are written to a temporary folder next to ``out_dir`` and moved in
    only when all are complete, so a failure leaves nothing behind.

    Parameters
    ----------
    mock : MockField
    out_dir : str or Path
    prefix : str
    bands : sequence of str
        Bands to write (subset of `BANDS`).
    overwrite : bool
        Replace existing files of the same names.

    Returns
    -------
    dict
        ``{band: path}`` plus ``"truth"``.
    """
    from ..io.bands import canonical_band
    bands = [canonical_band(b) for b in bands]
    out_dir = os.path.abspath(os.fspath(out_dir))
    names = {b: f"{prefix}_{b.lower()}_drc.fits" for b in bands}
    names["truth"] = f"{prefix}_truth.ecsv"
    targets = {k: os.path.join(out_dir, v) for k, v in names.items()}
    existing = [p for p in targets.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (use --overwrite to replace it)")
    # The temporary folder sits in the nearest existing ancestor, so that a
    # failure leaves no folder behind either.
    parent = os.path.dirname(out_dir)
    while not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    tmp = tempfile.mkdtemp(prefix=".starclf-", dir=parent)
    try:
        header = mock.wcs.to_header()
        for b in bands:
            j = BANDS.index(b)
            hdu = fits.PrimaryHDU(mock.images[j].astype(np.float32), header=header)
            h = hdu.header
            h["TELESCOP"] = "HST"
            h["INSTRUME"] = "WFC3"
            h["DETECTOR"] = "UVIS"
            h["FILTER"] = b
            h["BUNIT"] = "ELECTRONS/S"
            h["EXPTIME"] = (EXPOSURE_TIME_S[b], "[s] mock LEGUS-like exposure")
            h["VEGAZPT"] = (VEGA_ZEROPOINT[b], "Vega zeropoint for 1 e-/s")
            h["DISTMPC"] = (mock.distance_mpc, "[Mpc] galaxy distance")
            h["ORIGIN"] = f"glue-starclf {__version__} mock engine"
            h["MOCKMODE"] = mock.meta.get("mode", "")
            h["MOCKSEED"] = mock.meta.get("seed", -1)
            hdu.writeto(os.path.join(tmp, names[b]))
        truth = mock.truth.copy()
        truth.meta.update({"distance_mpc": mock.distance_mpc, "bands": list(bands),
                           "generator": f"glue-starclf {__version__}",
                           "pixel_convention": "x, y are 0-based (numpy/glue)",
                           **{k: v for k, v in mock.meta.items() if k != "galaxy"}})
        truth.write(os.path.join(tmp, names["truth"]), format="ascii.ecsv")
        os.makedirs(out_dir, exist_ok=True)
        for k, name in names.items():
            os.replace(os.path.join(tmp, name), targets[k])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return targets
