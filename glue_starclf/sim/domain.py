"""Domain randomisation: what a catalog does not fix varies from field to field.

A `Domain` holds the instrument and calibration conditions of one rendered
field or bank chunk: the effective PSF (family, detector position, extra
broadening, per-band registration offsets), depth (exposure-time factor),
sky level, drizzle-correlated noise, zeropoint errors, the galaxy-background
variant, what the young light of the background follows (spiral arms or the
field's sources) and the EFF truncation radius. `NOMINAL` is the fixed setting of the
engine before randomisation; `draw_domain` draws one from `RANGES`;
`perturbed` sets single values (robustness banks), each checked against
`RANGES` with a one-line error naming the perturbation.
"""

from dataclasses import dataclass, replace

import numpy as np

from ..io.bands import BANDS
from .effpsf import DEFAULT_LOCUS, EffectivePSF, psf_for_locus, stellar_ci
from .render import add_noise

__all__ = ["RANGES", "PSF_FAMILIES", "BACKGROUNDS", "YOUNG_LIGHTS", "CHOICES", "Domain", "NOMINAL",
           "draw_domain", "perturbed", "check_perturbation", "chunk_domain", "noisy_stamps",
           "DomainColumns"]

PSF_FAMILIES = ("tinytim", "stdpsf")
BACKGROUNDS = ("standard", "varied")
#: What the young population of a field's background follows: random spiral
#: arms, or the field's own sources (`glue_starclf.sim.background.render_background`).
YOUNG_LIGHTS = ("arms", "sources")
#: The perturbations that name one of a few choices, and those choices.
CHOICES = {"psf_family": PSF_FAMILIES, "background": BACKGROUNDS, "young_light": YOUNG_LIGHTS}

#: Ranges of the numeric perturbations (mock-hst-data.md, domain randomisation).
RANGES = {
    "locus": (1.10, 1.45),              # stellar CI of fields without a catalog
    "extra_broadening_px": (0.0, 0.6),  # Gaussian sigma added in quadrature
    "exposure_factor": (0.5, 2.0),      # x the LEGUS exposure times
    "sky_factor": (0.5, 2.0),           # x the mean zodiacal sky
    "registration_px": (0.0, 0.1),      # per-band offset length
    "zeropoint_mag": (-0.03, 0.03),     # per-band calibration error
    "correlated_noise": (0.0, 0.5),     # drizzle correlation of neighbouring pixels
    "eff_truncation": (5.0, 50.0),      # in r_h
}

#: WFC3/UVIS detector frame [px] for STDPSF positions.
_DETECTOR = (4096.0, 4102.0)


@dataclass(frozen=True)
class Domain:
    """Conditions of one field or bank chunk (see the module docstring)."""

    psf_family: str = "tinytim"
    detector_xy: tuple = (2048.0, 2048.0)
    locus: float = DEFAULT_LOCUS
    extra_broadening_px: float = 0.0
    registration: tuple = ((0.0, 0.0),) * len(BANDS)
    exposure_factor: tuple = (1.0,) * len(BANDS)
    sky_factor: float = 1.0
    zeropoint_mag: tuple = (0.0,) * len(BANDS)
    correlated_noise: float = 0.0
    eff_truncation: float = 50.0
    background: str = "standard"
    stdpsf_dir: str = None
    young_light: str = "arms"

    def psf(self, locus=None):
        """The `EffectivePSF`: broadened to ``locus`` (default the domain's),
        then by the extra broadening, with the registration offsets."""
        base = psf_for_locus(self.locus if locus is None else locus, self.psf_family,
                             self.detector_xy, self.stdpsf_dir)
        sigma = float(np.hypot(base.broadening_px, self.extra_broadening_px))
        shifts = tuple(tuple(float(v) for v in r) for r in self.registration)
        if not np.any(self.registration):
            shifts = None
        return EffectivePSF(base.family, round(min(sigma, 3.0), 4), base.detector_xy,
                            base.stdpsf_dir, shifts)

    def flux_factor(self):
        """(5,) factor between the catalog's calibrated flux and the recorded one."""
        return 10.0 ** (-0.4 * np.asarray(self.zeropoint_mag, float))

    def describe(self):
        """Plain dict for metadata."""
        d = {k: getattr(self, k) for k in ("psf_family", "locus", "extra_broadening_px",
                                             "sky_factor", "correlated_noise",
                                             "eff_truncation", "background",
                                             "young_light")}
        d["detector_xy"] = [round(float(v), 1) for v in self.detector_xy]
        d["registration_px"] = [[round(float(a), 4) for a in r] for r in self.registration]
        d["exposure_factor"] = [round(float(v), 4) for v in self.exposure_factor]
        d["zeropoint_mag"] = [round(float(v), 4) for v in self.zeropoint_mag]
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


NOMINAL = Domain()


def check_perturbation(name, value):
    """Validate one perturbation value; one-line ValueError naming it."""
    if name in CHOICES:
        if value not in CHOICES[name]:
            raise ValueError(f"perturbation {name} {value!r}: expected one of "
                             f"{', '.join(CHOICES[name])}")
        return value
    if name == "detector_xy":
        xy = tuple(float(v) for v in value)
        if len(xy) != 2 or not all(0 <= v <= m for v, m in zip(xy, _DETECTOR)):
            raise ValueError(f"perturbation detector_xy {value!r} outside the "
                             f"{_DETECTOR[0]:.0f} x {_DETECTOR[1]:.0f} px detector")
        return xy
    if name not in RANGES:
        raise ValueError(f"unknown perturbation {name!r}: expected one of "
                         f"{', '.join([*CHOICES, 'detector_xy', *RANGES])}")
    lo, hi = RANGES[name]
    vals = np.atleast_1d(np.asarray(value, float))
    if vals.size == 0 or not np.all(np.isfinite(vals)) or np.any(vals < lo - 1e-9) \
            or np.any(vals > hi + 1e-9):
        raise ValueError(f"perturbation {name} {value!r} outside its range {lo:g} to {hi:g}")
    return value


def perturbed(domain=NOMINAL, **values):
    """A copy of ``domain`` with single perturbations set (validated).

    Parameters
    ----------
    domain : Domain
    **values
        Perturbations by name (`CHOICES`, `RANGES` or ``detector_xy``),
        checked by `check_perturbation`. ``registration_px``,
        ``exposure_factor`` and ``zeropoint_mag`` given as a number apply
        to every band (registration: an offset of that length in a fixed
        direction per band, alternating sign, F555W unshifted).

    Returns
    -------
    Domain
    """
    changes = {}
    for name, value in values.items():
        check_perturbation(name, value)
        if name == "registration_px":
            angles = np.deg2rad([0.0, 90.0, 180.0, 0.0, 270.0])
            r = float(value)
            changes["registration"] = tuple(
                (0.0, 0.0) if b == BANDS.index("F555W") else
                (round(r * np.cos(a), 4), round(r * np.sin(a), 4))
                for b, a in enumerate(angles))
        elif name in ("exposure_factor", "zeropoint_mag"):
            v = np.broadcast_to(np.asarray(value, float), (len(BANDS),))
            changes[name] = tuple(float(x) for x in v)
        elif name == "detector_xy":
            changes[name] = tuple(float(x) for x in value)
        else:
            changes[name] = value
    return replace(domain, **changes)


def draw_domain(rng, stdpsf_dir=None, locus=None):
    """A random `Domain` from `RANGES`.

    Parameters
    ----------
    rng : numpy.random.Generator
    stdpsf_dir : str, optional
        STDPSF folder; without it the PSF family is always TinyTim.
    locus : float, optional
        The field's stellar locus (anchored fields); default drawn.
    """
    families = PSF_FAMILIES if stdpsf_dir else ("tinytim",)
    fam = str(families[rng.integers(len(families))])
    reg = rng.uniform(0, RANGES["registration_px"][1], len(BANDS))
    phi = rng.uniform(0, 2 * np.pi, len(BANDS))
    return Domain(
        psf_family=fam,
        detector_xy=(float(rng.uniform(0, _DETECTOR[0])), float(rng.uniform(0, _DETECTOR[1]))),
        locus=float(rng.uniform(1.15, 1.35)) if locus is None else float(locus),
        # The whole range: 0.5 px raises the stellar CI by ~0.13, two thirds of
        # a typical class-1 excess over the locus; 0-0.3 px left that unseen.
        extra_broadening_px=float(rng.uniform(*RANGES["extra_broadening_px"]))
        if rng.random() < 0.5 else 0.0,
        registration=tuple((float(r * np.cos(p)), float(r * np.sin(p))) for r, p in zip(reg, phi)),
        exposure_factor=tuple(float(v) for v in np.exp(rng.uniform(np.log(0.5), np.log(2.0),
                                                                   len(BANDS)))),
        sky_factor=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
        zeropoint_mag=tuple(float(v) for v in rng.uniform(-0.03, 0.03, len(BANDS))),
        correlated_noise=float(rng.uniform(*RANGES["correlated_noise"])),
        eff_truncation=float(np.exp(rng.uniform(np.log(5.0), np.log(50.0)))),
        background=str(BACKGROUNDS[rng.integers(2)]),
        stdpsf_dir=stdpsf_dir if fam == "stdpsf" else None)


def chunk_domain(rng, domain=None, randomise=False, stdpsf_dir=None):
    """The domain of one bank chunk: drawn when ``randomise``, else fixed.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the domain when ``randomise``.
    domain : Domain, optional
        The fixed domain; default `NOMINAL`.
    randomise : bool
        Draw a random domain (`draw_domain`) instead.
    stdpsf_dir : str, optional
        STDPSF folder, for drawn domains of the ``stdpsf`` family.

    Returns
    -------
    Domain
    """
    if randomise:
        return draw_domain(rng, stdpsf_dir)
    return NOMINAL if domain is None else domain


def noisy_stamps(expected, rng, domain):
    """Zeropoint error, then photon/read noise at the domain's depth and sky.

    Parameters
    ----------
    expected : ndarray, shape (n, 5, s, s)
        Noise-free count rates [e-/s].
    rng : numpy.random.Generator
    domain : Domain
        Its zeropoint offsets, exposure and sky factors and correlated noise
        are applied.

    Returns
    -------
    ndarray of float32, shape (n, 5, s, s)
        Sky-subtracted noisy count rates [e-/s].
    """
    gain = domain.flux_factor().reshape(1, -1, 1, 1)
    return add_noise(expected * gain, rng, exposure_factor=domain.exposure_factor,
                     sky_factor=domain.sky_factor, correlation=domain.correlated_noise)


class DomainColumns:
    """Per-stamp domain columns of a bank's truth table.

    ``psf_stellar_ci`` is the F555W CI of a star on the PSF the stamps were
    rendered with: the field's stellar locus as an observer would measure it.

    Parameters
    ----------
    n : int
        Stamps of the bank.
    """

    NAMES = ("psf_family", "psf_broadening_px", "psf_stellar_ci", "exposure_factor",
             "sky_factor", "zeropoint_rms", "registration_max_px", "correlated_noise",
             "eff_truncation", "background", "young_light")

    def __init__(self, n):
        self.cols = {k: np.empty(n, dtype=object) if k in CHOICES else np.full(n, np.nan)
                     for k in self.NAMES}

    def set(self, idx, domain, psf=None):
        """Record ``domain`` for the stamps ``idx``.

        Parameters
        ----------
        idx : int, slice or array of int
            The stamps.
        domain : Domain
        psf : glue_starclf.sim.effpsf.EffectivePSF, optional
            The PSF they were rendered with where it is not ``domain.psf()``
            (anchored fields take the catalog's stellar locus).
        """
        psf = domain.psf() if psf is None else psf
        c = self.cols
        c["psf_family"][idx] = domain.psf_family
        c["psf_broadening_px"][idx] = psf.broadening_px
        c["psf_stellar_ci"][idx] = stellar_ci(psf)
        c["exposure_factor"][idx] = float(np.exp(np.mean(np.log(domain.exposure_factor))))
        c["sky_factor"][idx] = domain.sky_factor
        c["zeropoint_rms"][idx] = float(np.sqrt(np.mean(np.square(domain.zeropoint_mag))))
        c["registration_max_px"][idx] = float(np.max(np.hypot(*np.array(domain.registration).T)))
        c["correlated_noise"][idx] = domain.correlated_noise
        c["eff_truncation"][idx] = domain.eff_truncation
        c["background"][idx] = domain.background
        c["young_light"][idx] = domain.young_light

    def fill(self, table):
        """Add the columns to ``table`` (an astropy Table); choices as text."""
        for k, v in self.cols.items():
            table[k] = v.astype(str) if v.dtype == object else v
