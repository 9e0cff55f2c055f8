"""Galaxy backgrounds: disk light with spiral arms and dust lanes, field stars.

The light of a galaxy disk is split into an old, smooth population and a
young population concentrated in logarithmic spiral arms or, given tracer
positions, around the field's own sources (young clusters sit in star-
forming complexes of young stars and diffuse light, not at random places on
a disk). Each is an IMF-sampled stellar population: the stars that a LEGUS image resolves are drawn
one by one at random positions that follow the surface density, the rest is
smooth light. Dust lanes trail the arms and dim everything behind them with
the band extinction of a mid-type star. Sky and read noise are added with the
rest of the noise by `glue_starclf.sim.render.add_noise`.
"""

from dataclasses import dataclass

import numpy as np

from ..io.bands import BANDS, PIXEL_SCALE_ARCSEC, VEGA_ZEROPOINT
from .isochrones import load_isochrones
from .populations import distance_modulus, flux_scale, population
from .sources import Light

__all__ = ["GalaxyModel", "random_galaxy", "render_background", "catalog_star_colours",
           "RECOLOUR_BRIGHTER", "YOUNG_TRACE_PC"]

#: Ages [log yr] of the old disk and of the young arm populations.
OLD_AGES = (9.5, 10.0)
YOUNG_AGES = (7.0, 7.5, 8.0)

#: Apparent magnitude down to which field stars are drawn one by one.
RESOLVED_MAG = 27.0

#: Mean density of one-by-one field stars per population, per pixel.
MAX_STARS_PER_PIXEL = 0.001

#: Absolute V magnitude (after dust) of the field stars that take catalog
#: colours in `render_background`: a magnitude below the LEGUS cut (M_V <= -6),
#: so blends of two such stars that pass it are recoloured too.
RECOLOUR_BRIGHTER = -5.0

#: Range [pc] of the Gaussian scale, drawn per field, over which the young
#: population spreads around its tracer sources: the sizes of star-forming
#: complexes in nearby disks.
YOUNG_TRACE_PC = (30.0, 150.0)


@dataclass
class GalaxyModel:
    """Geometry and surface brightness of a mock disk galaxy.

    Lengths are in pixels of the mosaic; the centre may lie outside it.
    """

    centre: tuple
    scale_length: float
    inclination_deg: float
    position_angle_deg: float
    mu_v_centre: float          # old-disk central V surface brightness [mag/arcsec^2]
    arm_contrast: float         # young/old mass surface density ratio on an arm ridge
    pitch_deg: float
    n_arms: int
    arm_phase: float
    dust_av: float              # peak A_V of the dust lanes
    av_disk: float = 0.2        # A_V of the smooth disk light and field stars


#: Parameter ranges of the two galaxy-background variants: ``standard`` (the
#: engine's original draws) and ``varied`` (domain randomisation: dwarfs to
#: bright disks, dust-free to dusty, smooth to strongly armed).
GALAXY_RANGES = {
    "standard": {"scale": (0.3, 0.6), "inclination": (0, 60), "mu_v": (20.5, 22.5),
                 "arm": (0.0005, 0.003), "dust": (0.3, 1.5), "av_disk": (0.2, 0.2)},
    "varied": {"scale": (0.15, 1.0), "inclination": (0, 75), "mu_v": (19.5, 24.0),
               "arm": (0.0001, 0.006), "dust": (0.0, 2.5), "av_disk": (0.0, 0.6)},
}


def random_galaxy(rng, shape, variant="standard"):
    """A random `GalaxyModel` whose disk fills a mosaic of ``shape``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : (int, int)
        ``(ny, nx)`` of the mosaic [px].
    variant : str
        A key of `GALAXY_RANGES`: the parameter ranges drawn from.

    Returns
    -------
    GalaxyModel
    """
    if variant not in GALAXY_RANGES:
        raise ValueError(f"galaxy background variant {variant!r}: expected one of "
                         f"{', '.join(GALAXY_RANGES)}")
    r = GALAXY_RANGES[variant]
    ny, nx = shape
    g = GalaxyModel(
        centre=(nx * rng.uniform(0.3, 0.7), ny * rng.uniform(0.3, 0.7)),
        scale_length=max(ny, nx) * rng.uniform(*r["scale"]),
        inclination_deg=rng.uniform(*r["inclination"]), position_angle_deg=rng.uniform(0, 180),
        mu_v_centre=rng.uniform(*r["mu_v"]), arm_contrast=rng.uniform(*r["arm"]),
        pitch_deg=rng.uniform(12, 25), n_arms=int(rng.choice([2, 2, 3])),
        arm_phase=rng.uniform(0, 2 * np.pi), dust_av=rng.uniform(*r["dust"]))
    if variant != "standard":
        g.av_disk = float(rng.uniform(*r["av_disk"]))
    return g


def _maps(model, shape, step, tracer=None, sigma_px=None):
    """Old and young mass surface densities (relative) and dust A_V on a coarse grid.

    With ``tracer`` ((m, 2) pixel positions) the young mass that the arms
    would hold (the same total) follows the tracers instead, smoothed by a
    Gaussian of ``sigma_px``; the inter-arm floor stays.
    """
    ny, nx = shape
    yy, xx = np.mgrid[0:ny:step, 0:nx:step].astype(float) + (step - 1) / 2.0
    pa, inc = np.deg2rad(model.position_angle_deg), np.deg2rad(model.inclination_deg)
    dx, dy = xx - model.centre[0], yy - model.centre[1]
    u = dx * np.cos(pa) + dy * np.sin(pa)
    v = (-dx * np.sin(pa) + dy * np.cos(pa)) / np.cos(inc)
    r = np.hypot(u, v) + 1.0
    theta = np.arctan2(v, u)
    disk = np.exp(-r / model.scale_length)
    # Logarithmic spiral: phase constant along theta - ln(r)/tan(pitch).
    phase = model.n_arms * (theta - np.log(r) / np.tan(np.deg2rad(model.pitch_deg))) + model.arm_phase
    ridge = np.cos(phase)
    arms = np.clip(ridge, 0, None) ** 3
    # Dust lanes lie on the inner (trailing) side of each arm.
    lanes = np.clip(np.cos(phase + 0.6), 0, None) ** 12
    dust = model.dust_av * lanes * np.exp(-r / (1.5 * model.scale_length))
    young = disk * (0.05 + arms)
    if tracer is not None:
        traced = _tracer_density(tracer, disk.shape, step, sigma_px)
        if traced.sum() > 0:
            young = disk * 0.05 + traced * ((disk * arms).sum() / traced.sum())
    return disk, young, dust


def _tracer_density(tracer, grid_shape, step, sigma_px):
    """Counts of ``tracer`` positions per coarse cell, Gaussian-smoothed.

    Tracers beyond the image (within 3 sigma) still spread light into it.
    """
    from scipy.ndimage import gaussian_filter
    s = float(sigma_px) / step
    pad = int(np.ceil(3 * s)) + 1
    xy = np.asarray(tracer, float).reshape(-1, 2)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    ix = np.floor((xy[:, 0] + 0.5) / step).astype(int) + pad
    iy = np.floor((xy[:, 1] + 0.5) / step).astype(int) + pad
    gy, gx = grid_shape[0] + 2 * pad, grid_shape[1] + 2 * pad
    ok = (ix >= 0) & (ix < gx) & (iy >= 0) & (iy < gy)
    counts = np.zeros((gy, gx))
    np.add.at(counts, (iy[ok], ix[ok]), 1.0)
    smooth = gaussian_filter(counts, s, mode="constant")
    return smooth[pad:pad + grid_shape[0], pad:pad + grid_shape[1]]


def _upsample(coarse, shape, step):
    from scipy.ndimage import zoom
    out = zoom(coarse, step, order=1, mode="nearest", grid_mode=True)
    return out[:shape[0], :shape[1]]


def render_background(rng, model, shape, distance_mpc, step=16, star_colours=None,
                      recolour_brighter=RECOLOUR_BRIGHTER, young_tracer=None):
    """Light of a galaxy background before the PSF.

    Parameters
    ----------
    rng : numpy.random.Generator
    model : GalaxyModel
    shape : (int, int)
        Image shape (ny, nx).
    distance_mpc : float
    step : int
        Resolution [px] of the density maps; stars are placed within cells.
    star_colours : ndarray, shape (m, 5), optional
        Magnitudes relative to F555W in `BANDS` order (`catalog_star_colours`).
        Field stars brighter than ``recolour_brighter`` (absolute V, after
        dust) keep their F555W flux and take the colours of a random row, so
        the stars that LEGUS cuts detect have the colours of a real
        population; fainter ones keep their isochrone colours. None
        (default): all keep them.
    recolour_brighter : float
        Default `RECOLOUR_BRIGHTER`; fainter for detections kept below the
        LEGUS cut.
    young_tracer : ndarray, shape (m, 2), optional
        Pixel positions (x, y; they may lie outside the image) that the
        young population follows instead of the spiral arms, with the same
        total mass, spread by a Gaussian whose scale is drawn from
        `YOUNG_TRACE_PC` at ``distance_mpc`` (on the maps' grid of ``step``
        px, which sets the smallest scale). None (default): the arms.

    Returns
    -------
    smooth : ndarray, float32, shape (5, ny, nx)
        Unresolved light [e-/s], dust applied.
    stars : Light
        Resolved field stars, positions in image pixels, dust applied.
    dust_av : ndarray, float32, shape (ny, nx)
        A_V of the dust lanes.
    """
    ny, nx = shape
    sigma_px = None
    if young_tracer is not None:
        pc_per_px = distance_mpc * 1e6 * np.deg2rad(PIXEL_SCALE_ARCSEC / 3600.0)
        sigma_px = np.exp(rng.uniform(*np.log(YOUNG_TRACE_PC))) / pc_per_px
    disk, young, dust = _maps(model, shape, step, young_tracer, sigma_px)
    scale = flux_scale(distance_mpc)
    pix_arcsec2 = PIXEL_SCALE_ARCSEC ** 2
    v = BANDS.index("F555W")
    # Old-disk mass per pixel from the central V surface brightness.
    old_v_per_msun = np.mean([population(a, model.av_disk).flux_per_msun[v]
                              for a in OLD_AGES]) * scale[v]
    centre_rate = 10.0 ** (-0.4 * (model.mu_v_centre + 2.5 * np.log10(1 / pix_arcsec2)
                                   - VEGA_ZEROPOINT["F555W"]))
    mass_old = disk * centre_rate / old_v_per_msun      # Msun per pixel
    # Young/old mass ratio: arm_contrast between the arms, ~20x that on a ridge.
    mass_young = young * model.arm_contrast * centre_rate / old_v_per_msun / 0.05

    k_band = _band_extinction_ratios()
    smooth = np.zeros((len(BANDS),) + mass_old.shape)
    star_parts = []
    cell_area = step * step
    cy, cx = np.indices(mass_old.shape)
    faintest = min(0.5, RESOLVED_MAG - distance_modulus(distance_mpc))
    for ages, mass in ((OLD_AGES, mass_old), (YOUNG_AGES, mass_young)):
        for age in ages:
            m = mass / len(ages)
            pop = _resolved_population(age, model.av_disk, faintest,
                                       m.sum() * cell_area / (ny * nx))
            smooth += pop.smooth_per_msun[:, None, None] * m[None] * scale[:, None, None]
            n = rng.poisson(m * cell_area * pop.bright_per_msun)
            total = int(n.sum())
            if total == 0:
                continue
            flux = pop.star_fluxes(rng, total) * scale
            iy = np.repeat(cy.ravel(), n.ravel())
            ix = np.repeat(cx.ravel(), n.ravel())
            x = (ix + rng.random(total)) * step - 0.5
            y = (iy + rng.random(total)) * step - 0.5
            star_parts.append(Light(x, y, flux))
    stars = Light.concat(star_parts) if star_parts else Light.empty()
    inside = (stars.x >= -0.5) & (stars.x < nx - 0.5) & (stars.y >= -0.5) & (stars.y < ny - 0.5)
    stars = Light(stars.x[inside], stars.y[inside], stars.flux[inside])
    dust_full = _upsample(dust, shape, step).astype(np.float32)
    av_at_star = dust_full[np.clip(np.round(stars.y).astype(int), 0, ny - 1),
                           np.clip(np.round(stars.x).astype(int), 0, nx - 1)]
    stars.flux = stars.flux * 10.0 ** (-0.4 * av_at_star[:, None] * k_band[None, :])
    if star_colours is not None:
        _recolour(rng, stars, star_colours, distance_mpc, recolour_brighter)
    smooth_full = np.empty((len(BANDS), ny, nx), np.float32)
    for b in range(len(BANDS)):
        smooth_full[b] = _upsample(smooth[b], shape, step)
        smooth_full[b] *= 10.0 ** (-0.4 * dust_full * k_band[b])
    return smooth_full, stars, dust_full


def _recolour(rng, stars, star_colours, distance_mpc, brighter=RECOLOUR_BRIGHTER):
    """Give the bright ``stars`` (in place) the colours of random ``star_colours`` rows."""
    colours = np.asarray(star_colours, float)
    v = BANDS.index("F555W")
    if colours.ndim != 2 or colours.shape[1] != len(BANDS) or not len(colours) \
            or not np.all(np.isfinite(colours)):
        raise ValueError(f"star colours: expected a finite ({len(BANDS)},) row per star, "
                         f"got shape {colours.shape}")
    zp = np.array([VEGA_ZEROPOINT[b] for b in BANDS])
    with np.errstate(divide="ignore"):
        mag_v = -2.5 * np.log10(stars.flux[:, v]) + zp[v]
    bright = np.flatnonzero(mag_v - distance_modulus(distance_mpc) <= brighter)
    rows = colours[rng.integers(len(colours), size=bright.size)]
    stars.flux[bright] = 10.0 ** (-0.4 * (mag_v[bright, None] + rows - rows[:, v:v + 1] - zp))


def catalog_star_colours(catalogs, classes=(4,)):
    """Colours of the catalog rows of ``classes`` measured in every band.

    Parameters
    ----------
    catalogs : sequence of astropy.table.Table or path
        Tables as returned by `glue_starclf.io.catalogs.read_legus_tab`
        (``class``, ``mag_<band>`` with NaN where a band was not measured),
        or paths of LEGUS .tab files, which are read with it.
    classes : sequence of int
        LEGUS classes whose rows are used (default: class 4, which in LEGUS
        are mostly single stars, asterisms and background galaxies).

    Returns
    -------
    ndarray, shape (m, 5)
        Magnitude minus F555W magnitude per band (`BANDS` order; the F555W
        column is 0), for `render_background`'s ``star_colours``.
    """
    from ..io.catalogs import read_legus_tab
    catalogs = [c if hasattr(c, "colnames") else read_legus_tab(c) for c in catalogs]
    v = BANDS.index("F555W")
    parts = []
    for cat in catalogs:
        mag = np.column_stack([np.asarray(cat[f"mag_{b}"], float) for b in BANDS])
        keep = np.isin(np.asarray(cat["class"]), classes) & np.all(np.isfinite(mag), axis=1)
        parts.append(mag[keep] - mag[keep, v:v + 1])
    colours = np.concatenate(parts) if parts else np.empty((0, len(BANDS)))
    if not len(colours):
        names = ", ".join(str(c.meta.get("path", "catalog")) for c in catalogs) or "no catalog"
        raise ValueError(f"{names}: no row of class {', '.join(map(str, classes))} "
                         "measured in every band")
    return colours


def _resolved_population(log_age, av, faintest, mass_per_pixel):
    """Population whose one-by-one stars are the resolved ones.

    Stars are drawn individually down to ``faintest`` absolute magnitude, or
    brighter where they would be denser than `MAX_STARS_PER_PIXEL`: fainter
    ones blend into surface-brightness fluctuations that the smooth light
    represents as well, at a fraction of the cost.
    """
    # Beyond ~630 Mpc even -12 mag stars are unresolved: one population, all smooth.
    mags = np.arange(round(faintest, 1), -12.0, -0.5) if faintest > -12.0 else [faintest]
    for mag in mags:
        pop = population(log_age, av, bright_mag=mag)
        if pop.bright_per_msun * mass_per_pixel <= MAX_STARS_PER_PIXEL:
            return pop
    return pop


def _band_extinction_ratios():
    """A_band / A_V for a mid-type (log Teff ~ 3.9) SED."""
    iso = load_isochrones().isochrone(8.0)
    i = int(np.argmin(np.abs(iso.log_teff - 3.9)))
    return iso.band_extinction(1.0)[i]
