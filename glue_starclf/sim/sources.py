"""Mock sources of the four LEGUS morphological classes.

Each renderer returns a `MockSource`: weighted points of light (offsets from
the source centre in pixels, fluxes in e-/s per band) plus whatever is not
light (cosmic rays, masked rows, saturation) and the truth. Point positions
are stored in units of one size parameter (the *knob*: r_h for clusters, the
association radius, the asterism spacing, the galaxy r_e), so that the size
can be tuned afterwards, e.g. to reproduce a catalog's concentration index,
without redrawing the stars. The class definitions follow the class table of
``mock-hst-data.md``.
"""

from dataclasses import dataclass, field

import numpy as np

from ..io.bands import BANDS, EXPOSURE_TIME_S, N_EXPOSURES, PIXEL_SCALE_ARCSEC, VEGA_ZEROPOINT
from .populations import flux_scale, pc_per_pixel, population
from .profiles import EFF_TRUNCATION, sample_eff, sample_sersic

__all__ = ["Light", "MockSource", "CLASS4_SUBTYPES", "CLASS2_VARIANTS", "FWHM_PX",
           "STAR_KNOB_RANGE", "ANCHORED_CLASS4_SHARES", "anchor_fluxes",
           "render_class1", "render_class2", "render_class3", "render_class4",
           "saturation_rate", "smooth_point_count", "V"]

V = BANDS.index("F555W")

#: FWHM [px] of the effective (TinyTim + drizzle) PSF in F555W.
FWHM_PX = 2.2

#: Class-4 sub-types and their share among non-clusters (spec class table).
CLASS4_SUBTYPES = {"star": 0.35, "asterism": 0.25, "galaxy": 0.20,
                   "cosmic_ray": 0.05, "hot_pixel": 0.05, "saturated": 0.05, "edge": 0.05}

#: Class-4 sub-type shares in LEGUS-anchored fields: the spec's 35 / 25 / 20 /
#: 20 with the artifacts split among those whose band totals can equal a
#: catalog row (a saturated star's cannot).
ANCHORED_CLASS4_SHARES = {"star": 0.35, "asterism": 0.25, "galaxy": 0.20,
                          "cosmic_ray": 0.07, "hot_pixel": 0.06, "edge": 0.07}

#: Ways a class-2 cluster is asymmetric.
CLASS2_VARIANTS = ("elongated", "double", "colour_gradient")

#: WFC3/UVIS full well [e-] (Instrument Handbook Table 5.1).
FULL_WELL_E = 63000.0

#: Smooth light (a cluster's unresolved stars, a galaxy) is drawn as equal
#: points: at least N_SMOOTH for a cluster and N_GALAXY for a galaxy, and
#: enough that none is brighter than SMOOTH_POINT_MAG in F555W (far below any
#: noise peak: a bright galaxy's points would otherwise be detected as stars
#: in its wings), up to N_SMOOTH_MAX.
N_SMOOTH = 600
N_GALAXY = 3000
SMOOTH_POINT_MAG = 29.0
N_SMOOTH_MAX = 200_000


@dataclass
class Light:
    """Points of light: offsets ``x``, ``y`` [knob units] and ``flux`` (k, 5) [e-/s]."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray

    @classmethod
    def empty(cls):
        """No points."""
        return cls(np.empty(0), np.empty(0), np.empty((0, len(BANDS))))

    @classmethod
    def concat(cls, parts):
        """The points of every `Light` of ``parts`` (None entries skipped)."""
        parts = [p for p in parts if p is not None]
        return cls(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                   np.concatenate([p.flux for p in parts]))

    def total(self):
        """Summed flux per band, shape (5,) [e-/s]."""
        return self.flux.sum(axis=0)

    def scaled_flux(self, factor):
        """A copy with every flux multiplied by ``factor`` (scalar or per band)."""
        return Light(self.x, self.y, self.flux * factor)

    def shifted(self, dx, dy):
        """A copy with the positions moved by ``dx``, ``dy`` (same units)."""
        return Light(self.x + dx, self.y + dy, self.flux)

    def thinned(self, rng, n_max):
        """At most ``n_max`` points with the same expected image.

        The brightest third of the budget is kept as is; the rest is a random
        subsample carrying the remaining flux.
        """
        if self.x.size <= n_max:
            return self
        cut = self.x.size - n_max // 3
        order = np.argpartition(self.flux.sum(axis=1), min(cut, self.x.size - 1))
        keep, rest = order[cut:], order[:cut]
        pick = rng.choice(rest, n_max - keep.size, replace=False)
        factor = self.flux[rest].sum(axis=0) / np.maximum(self.flux[pick].sum(axis=0), 1e-300)
        idx = np.concatenate([keep, pick])
        flux = np.concatenate([self.flux[keep], self.flux[pick] * factor])
        return Light(self.x[idx], self.y[idx], flux)


@dataclass
class MockSource:
    """One mock source before it is placed on an image.

    Attributes
    ----------
    light : Light
        PSF-convolved light, positions in knob units.
    knob : float
        Current size parameter [px]; positions in pixels are ``knob * light.x``.
    knob_range : (float, float)
        Allowed knob values [px] (equal bounds: not tunable).
    knob_truth : (str, float) or None
        Truth column updated from the knob and its factor (truth = knob * factor).
    artifact : Light or None
        Light that is not convolved with the PSF, positions in pixels.
    saturated : bool
        Render with the full PSF (spikes, halo) and saturate at the full well.
    masked_rows : tuple or None
        ``(dy0, dy1, value, bands)``: rows dy0..dy1 (pixels, relative to the
        centre) set to ``value`` (NaN or 0) in ``bands`` after the noise.
    truth : dict
        Truth columns (results-schema names plus ``subtype``).
    """

    light: Light
    knob: float
    knob_range: tuple
    knob_truth: tuple = None
    artifact: Light = None
    saturated: bool = False
    masked_rows: tuple = None
    truth: dict = field(default_factory=dict)

    def pixels(self, knob=None):
        """The light with positions in pixels for a knob value."""
        k = self.knob if knob is None else knob
        return Light(self.light.x * k, self.light.y * k, self.light.flux)

    def set_knob(self, knob):
        """Set `knob` [px], clipped to `knob_range`, and its truth column."""
        lo, hi = self.knob_range
        self.knob = min(max(float(knob), lo), hi)
        if self.knob_truth is not None:
            name, factor = self.knob_truth
            self.truth[name] = self.knob * factor


def saturation_rate(band_index):
    """Count rate [e-/s] at which a pixel fills the full well in one exposure."""
    return FULL_WELL_E * N_EXPOSURES / EXPOSURE_TIME_S[BANDS[band_index]]


def _truth(cls, subtype, log_age=np.nan, log_mass=np.nan, av=np.nan, r_h=np.nan):
    return {"class": cls, "subtype": subtype, "log_age": log_age, "log_mass": log_mass,
            "av": av, "r_h": r_h, "p_cb": 1.0 if cls in (1, 2, 3) else 0.0}


def smooth_point_count(v_rate, n_min):
    """Points for smooth light of F555W rate ``v_rate`` [e-/s].

    One point per `SMOOTH_POINT_MAG` of light, at least ``n_min`` and at most
    `N_SMOOTH_MAX`.
    """
    per_point = 10.0 ** (-0.4 * (SMOOTH_POINT_MAG - VEGA_ZEROPOINT["F555W"]))
    return int(np.clip(np.ceil(v_rate / per_point), n_min, N_SMOOTH_MAX))


def _smooth_positions(rng, n, n_min, draw):
    """``n`` positions of ``draw(rng, k) -> (x, y)``: the first ``n_min`` from ``rng``,
    the rest from a child stream, so ``rng``'s later draws do not depend on ``n``."""
    x, y = draw(rng, n_min)
    if n > n_min:
        ex, ey = draw(rng.spawn(1)[0], n - n_min)
        x, y = np.concatenate([x, ex]), np.concatenate([y, ey])
    return x, y


def _population_light(rng, log_age, log_mass, av, distance_mpc, gamma, q=1.0, theta=0.0,
                      max_star_fraction=None, mh=0.0, truncation=EFF_TRUNCATION):
    """Stars + smooth light of one EFF population with r_h = 1 (knob units)."""
    pop = population(log_age, av, mh)
    scale = flux_scale(distance_mpc)
    mass = 10.0 ** log_mass
    for _ in range(5):
        stars, smooth = pop.sample(rng, mass)
        v_total = stars[:, V].sum() + smooth[V]
        if max_star_fraction is None or stars.shape[0] == 0 \
                or stars[:, V].max() <= max_star_fraction * v_total:
            break
    else:
        # Still dominated by single stars: drop the offenders so the light
        # follows the class definition (a rare low-mass, young case).
        keep = stars[:, V] <= max_star_fraction * v_total
        stars = stars[keep]
    sx, sy = sample_eff(rng, stars.shape[0], 1.0, gamma, q, theta, truncation)
    n = smooth_point_count(smooth[V] * scale[V], N_SMOOTH)
    px, py = _smooth_positions(rng, n, N_SMOOTH,
                               lambda r, k: sample_eff(r, k, 1.0, gamma, q, theta, truncation))
    flux = np.concatenate([stars, np.broadcast_to(smooth / n, (n, len(BANDS)))])
    return Light(np.concatenate([sx, px]), np.concatenate([sy, py]), flux * scale)


def _cluster_knob_range(distance_mpc):
    ppx = pc_per_pixel(distance_mpc)
    return 0.5 / ppx, 10.0 / ppx


def render_class1(rng, log_age, log_mass, av, r_h_pc, distance_mpc, gamma=None, q=None,
                  truncation=EFF_TRUNCATION):
    """Symmetric compact cluster: one population, EFF, q >= 0.85.

    The brightest single star holds at most 25% of the V flux.

    Parameters
    ----------
    rng : numpy.random.Generator
    log_age : float
        log10 age [yr].
    log_mass : float
        log10 initial mass [Msun].
    av : float
        V-band extinction [mag].
    r_h_pc : float
        Half-number radius [pc] (clipped to 0.5-10 pc).
    distance_mpc : float
        Galaxy distance [Mpc].
    gamma : float, optional
        EFF power-law slope; default drawn from 2.05-8.
    q : float, optional
        Axis ratio; default drawn from 0.85-1.
    truncation : float
        EFF truncation radius in units of r_h (r_h is the half-number radius
        of the stars drawn).

    Returns
    -------
    MockSource
        Class 1; its knob is r_h in pixels.
    """
    gamma = rng.uniform(2.05, 8.0) if gamma is None else gamma
    q = rng.uniform(0.85, 1.0) if q is None else q
    light = _population_light(rng, log_age, log_mass, av, distance_mpc, gamma, q,
                              rng.uniform(0, np.pi), max_star_fraction=0.25,
                              truncation=truncation)
    ppx = pc_per_pixel(distance_mpc)
    src = MockSource(light, r_h_pc / ppx, _cluster_knob_range(distance_mpc), ("r_h", ppx),
                     truth=_truth(1, "cluster", log_age, log_mass, av))
    src.truth.update(gamma=gamma, q=q, eff_truncation=float(truncation))
    src.set_knob(r_h_pc / ppx)
    return src


def render_class2(rng, log_age, log_mass, av, r_h_pc, distance_mpc, variant=None, gamma=None,
                  truncation=EFF_TRUNCATION):
    """Compact asymmetric cluster: elongated, with a second component, or a colour gradient.

    Parameters
    ----------
    rng, log_age, log_mass, av, r_h_pc, distance_mpc, gamma, truncation
        As in `render_class1`.
    variant : str, optional
        One of `CLASS2_VARIANTS`; default drawn.

    Returns
    -------
    MockSource
        Class 2, ``subtype`` the variant; its knob is r_h in pixels.
    """
    variant = CLASS2_VARIANTS[rng.integers(3)] if variant is None else variant
    gamma = rng.uniform(2.05, 8.0) if gamma is None else gamma
    theta = rng.uniform(0, np.pi)
    if variant == "elongated":
        q = rng.uniform(0.4, 0.8)
        light = _population_light(rng, log_age, log_mass, av, distance_mpc, gamma, q, theta,
                                  max_star_fraction=0.25, truncation=truncation)
    elif variant == "double":
        q = rng.uniform(0.85, 1.0)
        frac = rng.uniform(0.15, 0.35)
        main = _population_light(rng, log_age, log_mass + np.log10(1 - frac), av, distance_mpc,
                                 gamma, q, theta, max_star_fraction=0.25, truncation=truncation)
        second = _population_light(rng, log_age, log_mass + np.log10(frac), av, distance_mpc,
                                   gamma, rng.uniform(0.7, 1.0), theta, truncation=truncation)
        # Exact flux share, and an offset of 0.5-1.5 r_h.
        second = second.scaled_flux(frac / (1 - frac) * main.total()[V] / second.total()[V])
        d, phi = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
        # A compact second component keeps its peak under half the main peak.
        second = Light(second.x * 0.7 + d * np.cos(phi), second.y * 0.7 + d * np.sin(phi),
                       second.flux)
        light = Light.concat([main, second])
    elif variant == "colour_gradient":
        q = rng.uniform(0.7, 1.0)
        core_age = max(6.6, log_age - rng.uniform(0.5, 1.5))
        core = _population_light(rng, core_age, log_mass - 0.5, av, distance_mpc, gamma, q, theta,
                                 truncation=truncation)
        core = Light(core.x * 0.4, core.y * 0.4, core.flux)
        env = _population_light(rng, log_age, log_mass, av, distance_mpc, gamma, q, theta,
                                truncation=truncation)
        light = Light.concat([core, env])
    else:
        raise ValueError(f"unknown class-2 variant {variant!r}: expected one of {CLASS2_VARIANTS}")
    ppx = pc_per_pixel(distance_mpc)
    src = MockSource(light, r_h_pc / ppx, _cluster_knob_range(distance_mpc), ("r_h", ppx),
                     truth=_truth(2, variant, log_age, log_mass, av))
    src.truth.update(gamma=gamma, q=q, eff_truncation=float(truncation))
    src.set_knob(r_h_pc / ppx)
    return src


def _separated_points(rng, n, min_sep, radius=1.0, tries=2000):
    """``n`` points in a disc of ``radius`` at least ``min_sep`` apart (first at the centre)."""
    pts = [(0.0, 0.0)]
    for _ in range(tries):
        if len(pts) == n:
            break
        r, phi = radius * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        p = (r * np.cos(phi), r * np.sin(phi))
        if all(np.hypot(p[0] - a, p[1] - b) >= min_sep for a, b in pts):
            pts.append(p)
    return np.array(pts)


def render_class3(rng, log_age, log_mass, av, radius_pc, distance_mpc, n_peaks=None,
                  diffuse_fraction=None, dominance=1.0):
    """Compact association: 2-6 separated peaks on diffuse emission, young.

    Peaks hold at least 10% of the brightest peak's flux and lie at least
    1.5 PSF FWHM apart; the diffuse light holds 30-70% of the flux.

    Parameters
    ----------
    rng : numpy.random.Generator
    log_age : float
        log10 age [yr], at most 7.5.
    log_mass : float
        log10 initial mass [Msun] of the whole association.
    av : float
        V-band extinction [mag].
    radius_pc : float
        Radius [pc] of the disc the peaks are placed in: the size knob,
        clipped to 3-15 pc (the lower bound raised where the peaks would
        come closer than 1.5 PSF FWHM); the truth ``r_h`` is the half-light
        radius that follows from it.
    distance_mpc : float
        Galaxy distance [Mpc].
    n_peaks : int, optional
        Peaks asked for; default drawn (2-6 at ``dominance`` 1). Fewer may
        fit in the disc.
    diffuse_fraction : float, optional
        Share of the V flux in diffuse light; default drawn.
    dominance : float in (0, 1]
        Narrows the draws towards a dominant central peak: secondary peaks
        get 10% to (10 + 90 dominance)% of its flux, and the diffuse fraction
        30% to (30 + 40 dominance)%; 1 draws from the whole class range.
    """
    if log_age > 7.5:
        raise ValueError(f"log_age {log_age:.2f} too old for a class-3 association (<= 7.5)")
    n_peaks = int(rng.integers(2, 2 + max(1, round(5 * dominance)))) if n_peaks is None else n_peaks
    f_diff = rng.uniform(0.3, 0.3 + 0.4 * dominance) if diffuse_fraction is None else diffuse_fraction
    centres = _separated_points(rng, n_peaks, 0.45)
    n_peaks = len(centres)
    weights = np.concatenate([[1.0], rng.uniform(0.1, 0.1 + 0.9 * dominance, n_peaks - 1)])
    mass = 10.0 ** log_mass
    peaks = []
    for (cx, cy), w in zip(centres, weights):
        clump = _population_light(rng, log_age, np.log10(mass * (1 - f_diff) * w / weights.sum()),
                                  av, distance_mpc, rng.uniform(2.5, 5.0))
        peaks.append((clump, w, cx, cy))
    diffuse = _population_light(rng, log_age, np.log10(mass * f_diff), av, distance_mpc,
                                rng.uniform(2.2, 3.5), rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))
    peak_v = (1 - f_diff) / weights.sum()
    parts = []
    for clump, w, cx, cy in peaks:
        clump = clump.scaled_flux(peak_v * w / clump.total()[V])
        parts.append(Light(clump.x * 0.04 + cx, clump.y * 0.04 + cy, clump.flux))
    spread = rng.uniform(0.6, 2.0)
    parts.append(Light(diffuse.x * spread, diffuse.y * spread,
                       diffuse.flux * f_diff / diffuse.total()[V]))
    light = Light.concat(parts)
    light = light.scaled_flux(_v_flux(log_age, log_mass, av, distance_mpc) / light.total()[V])
    ppx = pc_per_pixel(distance_mpc)
    seps = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    min_sep = seps[seps > 0].min() if n_peaks > 1 else 1.0
    lo = max(3.0 / ppx, 1.5 * FWHM_PX / min_sep)
    hi = max(15.0 / ppx, lo)
    r_half = _half_light_radius(light)
    src = MockSource(light, radius_pc / ppx, (lo, hi), ("r_h", ppx * r_half),
                     truth=_truth(3, "association", log_age, log_mass, av))
    src.truth.update(n_peaks=n_peaks, diffuse_fraction=f_diff)
    src.set_knob(radius_pc / ppx)
    return src


def _half_light_radius(light):
    """V-flux-weighted median radius of a light cloud (knob units)."""
    r = np.hypot(light.x, light.y)
    order = np.argsort(r)
    c = np.cumsum(light.flux[order, V])
    return float(r[order][np.searchsorted(c, 0.5 * c[-1])])


def _v_flux(log_age, log_mass, av, distance_mpc):
    """Expected V flux [e-/s] of a population."""
    return population(log_age, av).flux_per_msun[V] * 10.0 ** log_mass * flux_scale(distance_mpc)[V]


def _star_sed(rng, kind):
    """SED (5,) in absolute flux units of a supergiant or a foreground dwarf."""
    if kind == "supergiant":
        pop = population(round(rng.uniform(6.7, 7.6) * 20) / 20, rng.uniform(0, 1.0))
        stars = pop.star_fluxes(rng, 50)
        return stars[np.argmax(stars[:, V])]
    pop = population(9.7, 0.0)  # a Milky-Way dwarf: old main-sequence colours
    stars = pop.star_fluxes(rng, 50)
    return stars[rng.integers(len(stars))]


#: Faint companions of a class-4 star (a blend the catalog saw as one source):
#: their number, and the range of their summed share of the light.
STAR_COMPANIONS = (1, 3)
STAR_COMPANION_SHARE = (0.2, 0.8)
_BLEND_POINTS = 40

#: Knob of a blended star: Gaussian sigma [px] of its companions' offsets.
STAR_KNOB_RANGE = (0.05, 6.0)


def _blended_star(rng, v_rate, truth, size_px):
    """A star of total V rate ``v_rate`` blended with 1-3 fainter stars and unresolved light.

    Stars in LEGUS catalogs lie above the field's CI cut, just above the
    stellar locus; a blend of faint companions (or a broader PSF) carries
    them there. The knob is the spread of the companions, so a star can be
    tuned to any catalog CI from the locus upwards; at the smallest knob it
    is a point source.
    """
    sed = _star_sed(rng, "supergiant" if rng.random() < 0.6 else "dwarf")
    n = int(rng.integers(STAR_COMPANIONS[0], STAR_COMPANIONS[1] + 1))
    share = rng.uniform(*STAR_COMPANION_SHARE)
    comp = np.array([_star_sed(rng, "supergiant") for _ in range(n)])
    # Half the blend or more is unresolved light of fainter stars.
    resolved = share * rng.uniform(0.0, 0.5)
    comp *= (rng.dirichlet(np.ones(n)) * resolved / comp[:, V])[:, None]
    faint = np.broadcast_to(sed * (share - resolved) / sed[V] / _BLEND_POINTS,
                            (_BLEND_POINTS, len(BANDS)))
    seds = np.vstack([sed * (1 - share) / sed[V], comp, faint])
    off = rng.normal(size=(n + _BLEND_POINTS, 2))
    x, y = np.concatenate([[0.0], off[:, 0]]), np.concatenate([[0.0], off[:, 1]])
    truth.update(n_companions=n, companion_share=share)
    knob = (float(np.exp(rng.uniform(*np.log(STAR_KNOB_RANGE)))) if size_px is None
            else size_px)
    src = MockSource(Light(x, y, seds * v_rate), knob, STAR_KNOB_RANGE,
                     ("blend_sigma_px", 1.0), truth=truth)
    src.set_knob(knob)
    return src


def render_class4(rng, subtype, v_mag, size_px=None):
    """A non-cluster of one sub-type with apparent V magnitude ``v_mag``.

    Parameters
    ----------
    rng : numpy.random.Generator
    subtype : str
        One of `CLASS4_SUBTYPES`.
    v_mag : float
        Apparent Vega magnitude in F555W of the source (of the saturated star
        for ``"saturated"``).
    size_px : float, optional
        Knob: companion spread (star, edge), star spacing (asterism), r_e
        (galaxy).
    """
    v_rate = 10.0 ** (-0.4 * (v_mag - VEGA_ZEROPOINT["F555W"]))
    truth = _truth(4, subtype)
    if subtype == "saturated":
        sed = _star_sed(rng, "supergiant" if rng.random() < 0.6 else "dwarf")
        light = Light(np.zeros(1), np.zeros(1), (sed * v_rate / sed[V])[None, :])
        src = MockSource(light, 1.0, (1.0, 1.0), truth=truth)
        src.saturated = True
        return src
    if subtype in ("star", "edge"):
        src = _blended_star(rng, v_rate, truth, size_px)
        if subtype == "edge":
            dy0 = int(rng.choice([-1, 1]) * rng.integers(4, 9))
            rows = (dy0, dy0 + int(np.sign(dy0)) * int(rng.integers(4, 20)))
            bands = tuple(range(len(BANDS))) if rng.random() < 0.5 else (int(rng.integers(5)),)
            src.masked_rows = (min(rows), max(rows), np.nan if rng.random() < 0.5 else 0.0, bands)
        return src
    if subtype == "asterism":
        n = int(rng.integers(2, 5))
        sep = rng.uniform(2, 8) if size_px is None else size_px
        pts = _separated_points(rng, n, 0.8, radius=1.0)
        seds = np.array([_star_sed(rng, "supergiant") * rng.uniform(0.3, 1.0) for _ in pts])
        # The detection sits on the brightest star.
        seds = seds[np.argsort(seds[:, V])[::-1]]
        light = Light(pts[:, 0], pts[:, 1], seds * v_rate / seds[:, V].sum())
        truth["n_stars"] = len(pts)
        return MockSource(light, sep, (2.0, 8.0), ("separation_px", 1.0), truth=truth)
    if subtype == "galaxy":
        r_e = rng.uniform(2.5, 20.0) if size_px is None else size_px
        n_s, q = rng.uniform(0.8, 4.0), rng.uniform(0.3, 1.0)
        pa = rng.uniform(0, np.pi)
        x, y = _smooth_positions(rng, smooth_point_count(v_rate, N_GALAXY), N_GALAXY,
                                 lambda r, k: sample_sersic(r, k, 1.0, n_s, q, pa))
        # Background galaxies: old, reddened stellar light.
        sed = population(round(rng.uniform(9.5, 10.05) * 20) / 20, rng.uniform(0.3, 1.5)).flux_per_msun
        flux = np.broadcast_to(sed * v_rate / sed[V] / x.size, (x.size, len(BANDS)))
        truth.update(sersic_n=n_s, q=q)
        return MockSource(Light(x, y, flux), r_e, (2.5, 20.0),
                          ("r_e_arcsec", PIXEL_SCALE_ARCSEC), truth=truth)
    if subtype in ("cosmic_ray", "hot_pixel"):
        # A catalog detection in several bands: a (blended) star whose light in
        # one band is partly replaced by an unconvolved cosmic-ray or hot-pixel
        # residual, so the band totals stay those of the star.
        src = _blended_star(rng, v_rate, truth, None)
        band = int(rng.integers(len(BANDS)))
        if subtype == "hot_pixel":
            xs, ys = np.zeros(1), np.zeros(1)
        else:
            length = rng.uniform(1.5, 6.0)
            t = np.linspace(-length / 2, length / 2, max(2, int(length * 2)))
            phi = rng.uniform(0, np.pi)
            xs, ys = t * np.cos(phi), t * np.sin(phi)
        share = rng.uniform(0.5, 1.0)
        band_flux = src.light.total()[band]
        src.light.flux[:, band] *= 1.0 - share
        flux = np.zeros((xs.size, len(BANDS)))
        flux[:, band] = share * band_flux / xs.size
        truth["artifact_band"] = BANDS[band]
        truth["artifact_share"] = share
        src.artifact = Light(xs, ys, flux)
        return src
    raise ValueError(f"unknown class-4 subtype {subtype!r}: expected one of "
                     f"{', '.join(CLASS4_SUBTYPES)}")


def anchor_fluxes(source, mags):
    """Scale a source so its noise-free band totals equal catalog magnitudes.

    Every point of light and of any artifact is scaled by one factor per
    band, so stars, components and artifacts keep their shares of the band
    flux; bands whose magnitude is not finite keep the model's flux.

    Parameters
    ----------
    source : MockSource
        Modified in place.
    mags : array_like, shape (5,)
        Apparent Vega magnitudes in `BANDS` order (NaN: not measured).
    """
    zp = np.array([VEGA_ZEROPOINT[b] for b in BANDS])
    mags = np.asarray(mags, float)
    target = 10.0 ** (-0.4 * (mags - zp))
    total = source.light.total() if source.light.x.size else np.zeros(len(BANDS))
    if source.artifact is not None:
        total = total + source.artifact.total()
    ok = np.isfinite(mags) & (total > 0)
    factor = np.where(ok, target / np.where(total > 0, total, 1.0), 1.0)
    source.light = source.light.scaled_flux(factor)
    if source.artifact is not None:
        source.artifact = source.artifact.scaled_flux(factor)
