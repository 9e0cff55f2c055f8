"""Photometric calibration of band images: every file to the models' reference.

The networks were trained on WFC3/UVIS images in e-/s at 0.04"/px, the band
of each slot (`glue_starclf.io.bands.BANDS`) with the zeropoints of
`glue_starclf.io.bands.VEGA_ZEROPOINT`. A user's file may be in electrons or
counts (``BUNIT``, divided by ``EXPTIME``), calibrated differently
(``PHOTFLAM``/``PHOTPLAM``, ``PHOTZPT``, ``VEGAZPT``, or a zeropoint given
by the user), or taken with the ACS/WFC filter that stands in for a slot
(F435W for F438W, F606W for F555W, ACS F814W). `calibrate` finds the one
factor per band that turns the file's pixel values into the reference
e-/s of the slot's WFC3/UVIS band, and says what it applied.

The factor is the ratio of inverse sensitivities (PHOTFLAM of the file over
that of the reference band) times a colour term for a different filter:
the mean difference between the slot band's STmag and the file filter's,
interpolated in log wavelength between the WFC3/UVIS pivots of the shipped
isochrone table (``data/isochrones_parsec_mist_wfc3.fits``: the summed light
of each solar-metallicity isochrone, averaged over its 71 ages). Zeropoints
in Vega magnitudes are turned into STmag with the filter's Vega - ST
offset.

Only numpy and astropy are used; nothing else of the package but
`glue_starclf.io.bands`.
"""

import functools
import logging
import math
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .bands import ALIASES, BANDS, VEGA_ZEROPOINT

__all__ = ["BandCalibration", "calibrate", "colour_term", "REFERENCE_PHOTFLAM",
           "REFERENCE_PIVOT", "ACS_WFC", "RATE_UNITS", "TOTAL_UNITS", "PHOTZPT_TOLERANCE"]

log = logging.getLogger("glue_starclf")

#: WFC3/UVIS inverse sensitivity [erg/s/cm2/A per e-/s] of each slot's band
#: (UVIS2, STScI "WFC3 UVIS photometric zeropoints", 2020 calibration).
REFERENCE_PHOTFLAM = {"F275W": 3.216e-18, "F336W": 1.321e-18, "F438W": 6.760e-19,
                      "F555W": 1.963e-19, "F814W": 1.498e-19}

#: Pivot wavelengths [A] of the reference bands (same source).
REFERENCE_PIVOT = {"F275W": 2709.7, "F336W": 3354.5, "F438W": 4326.2,
                   "F555W": 5308.4, "F814W": 8039.1}

#: ACS/WFC filters LEGUS and PHANGS use for a slot: (PHOTFLAM, pivot [A],
#: Vega zeropoint of 1 e-/s), from the ACS zeropoint calculator (WFC, 2020).
#: Used when a file of these filters lacks its own keywords.
ACS_WFC = {"F435W": (3.140e-19, 4329.9, 25.779), "F606W": (7.862e-20, 5921.9, 26.405),
           "F814W": (7.033e-20, 8045.5, 25.517)}

#: BUNIT values (upper case, blanks removed) that are count rates.
RATE_UNITS = ("ELECTRONS/S", "ELECTRONS/SEC", "ELECTRON/S", "E-/S", "E/S", "COUNTS/S",
              "COUNTS/SEC", "COUNT/S", "CPS", "DN/S")

#: BUNIT values that are totals over the exposure (divided by EXPTIME).
TOTAL_UNITS = ("ELECTRONS", "ELECTRON", "E-", "COUNTS", "COUNT", "DN")

_ST = -21.10  # STmag of f_lambda = 1 erg/s/cm2/A

#: Largest |PHOTZPT - (-21.10)| [mag] taken as the STmag zero point beside PHOTFLAM.
PHOTZPT_TOLERANCE = 0.05


class BandCalibration(NamedTuple):
    """What `calibrate` applied to one band.

    Attributes
    ----------
    band : str
        The slot's band (one of `BANDS`).
    filter : str
        The file's filter (e.g. F435W).
    instrument : str
        ``WFC3/UVIS`` or ``ACS/WFC``.
    factor : float
        Pixel values are multiplied by it to give reference e-/s.
    unit : str
        The file's BUNIT ("" when absent: taken as e-/s).
    exptime : float or None
        Seconds divided out for a unit that is a total.
    zeropoint : str
        Where the photometric scale came from (e.g. "header PHOTFLAM").
    colour_term : float
        Mean STmag(slot band) - STmag(file filter) [mag] applied (0 for the
        reference band itself).
    """

    band: str
    filter: str
    instrument: str
    factor: float
    unit: str
    exptime: float | None
    zeropoint: str
    colour_term: float

    def as_meta(self):
        """A JSON-ready dict for the results metadata."""
        d = self._asdict()
        d["factor"] = float(f"{self.factor:.6g}")
        d["colour_term"] = float(f"{self.colour_term:.4f}")
        return d


def _st_minus_vega(band):
    """STmag - Vegamag of one e-/s in a reference band."""
    return _ST - 2.5 * math.log10(REFERENCE_PHOTFLAM[band]) - VEGA_ZEROPOINT[band]


@functools.lru_cache(maxsize=1)
def _isochrone_st_mags():
    """(pivots, STmag per isochrone (n_ages, 5)) of the shipped table's summed light."""
    from astropy.io import fits
    path = Path(str(resources.files("glue_starclf") / "data" /
                    "isochrones_parsec_mist_wfc3.fits"))
    with fits.open(path) as hdul:
        iso = hdul["ISOCHRONES"].data
        bands = [b.strip() for b in hdul["BANDS"].data["BAND"]]
        pivots = np.asarray(hdul["BANDS"].data["PIVOT"], float)
        mh = np.asarray(iso["MH"], float)
        age = np.asarray(iso["LOG_AGE"], float)
        mag = np.asarray(iso["MAG"], float)
    if tuple(bands) != BANDS:
        raise ValueError(f"{path}: bands {bands} are not {BANDS}")
    solar = np.isclose(mh, 0.0)
    ages = np.unique(age[solar])
    offset = np.array([_st_minus_vega(b) for b in BANDS])
    st = np.empty((len(ages), len(BANDS)))
    for k, a in enumerate(ages):
        m = mag[solar & (age == a)]
        st[k] = -2.5 * np.log10(np.sum(10.0 ** (-0.4 * m), axis=0)) + offset
    return pivots, st


def colour_term(band, pivot):
    """Mean STmag(band) - STmag(at ``pivot``) of the shipped isochrones' light.

    Parameters
    ----------
    band : str
        A reference band (one of `BANDS`).
    pivot : float
        Pivot wavelength [A] of the file's filter.

    Returns
    -------
    float
        Magnitudes; the STmag at ``pivot`` is interpolated linearly in log
        wavelength between the two nearest reference pivots (extrapolated
        from the last two beyond the ends).
    """
    pivots, st = _isochrone_st_mags()
    j = BANDS.index(band)
    lp = np.log(pivots)
    k = int(np.clip(np.searchsorted(lp, math.log(pivot)) - 1, 0, len(lp) - 2))
    w = (math.log(pivot) - lp[k]) / (lp[k + 1] - lp[k])
    at = st[:, k] * (1 - w) + st[:, k + 1] * w
    return float(np.mean(st[:, j] - at))


def _instrument(header, filt):
    inst = str(header.get("INSTRUME", "")).strip().upper()
    if inst == "ACS" or (not inst and filt in ("F435W", "F606W")):
        return "ACS/WFC"
    return "WFC3/UVIS"


def _number(header, key, path):
    value = header[key]
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{path}: header {key} = {header[key]!r} is not a number")
    return value


def calibrate(band, filt, header, path, zeropoint=None):
    """The factor that turns a file's pixel values into the reference e-/s of its slot.

    Parameters
    ----------
    band : str
        The slot's band (one of `BANDS`).
    filt : str
        The file's filter (the band itself, or an alias such as F435W).
    header : astropy.io.fits.Header
        The image's header (primary keywords merged in).
    path : path-like
        Named in messages.
    zeropoint : float, optional
        User-given Vega magnitude of one unit per second of the file, in its
        filter; wins over the header.

    Returns
    -------
    BandCalibration

    Notes
    -----
    Beside ``PHOTFLAM``, ``PHOTZPT`` is the STmag zero point, -21.10 in every
    HST file; a value farther than `PHOTZPT_TOLERANCE` from it (a Vega or AB
    zeropoint written into that keyword) is ignored with a warning.

    Raises
    ------
    ValueError
        For a unit that cannot be converted (e.g. MJy/sr), a total (electrons,
        counts) without a positive EXPTIME, or a calibration keyword that is
        not a positive number.
    """
    filt = filt.upper()
    inst = _instrument(header, filt)
    unit = str(header.get("BUNIT", "")).strip()
    key = unit.upper().replace(" ", "")
    exptime = None
    if key in TOTAL_UNITS:
        if "EXPTIME" not in header:
            raise ValueError(f"{path}: BUNIT = {unit!r} is a total over the exposure but the "
                             f"header has no EXPTIME to divide by")
        exptime = _number(header, "EXPTIME", path)
        if exptime <= 0:
            raise ValueError(f"{path}: EXPTIME = {exptime:g} must be positive")
    elif key and key not in RATE_UNITS:
        raise ValueError(f"{path}: BUNIT = {unit!r} cannot be converted to e-/s (the models "
                         f"take count rates: ELECTRONS/S, or ELECTRONS/COUNTS with EXPTIME)")

    acs = ACS_WFC.get(filt) if inst == "ACS/WFC" else None
    pivot = (acs[1] if acs else REFERENCE_PIVOT.get(filt, REFERENCE_PIVOT[band]))
    if "PHOTPLAM" in header:
        pivot = _number(header, "PHOTPLAM", path)
    # STmag of one file unit per second, in the file's filter
    if zeropoint is not None:
        source = f"user zeropoint {zeropoint:g} (Vega)"
        zp_st = zeropoint + _filter_st_minus_vega(filt, inst)
    elif "PHOTFLAM" in header:
        flam = _number(header, "PHOTFLAM", path)
        if flam <= 0:
            raise ValueError(f"{path}: PHOTFLAM = {flam:g} must be positive")
        zpt = _number(header, "PHOTZPT", path) if "PHOTZPT" in header else _ST
        source = "header PHOTFLAM" + ("/PHOTZPT" if "PHOTZPT" in header else "")
        if abs(zpt - _ST) > PHOTZPT_TOLERANCE:
            # PHOTZPT is the STmag zero point of PHOTFLAM, -21.10 in every HST file; another
            # value is a magnitude zeropoint written into the wrong keyword.
            log.warning("%s: PHOTZPT = %g is not the STmag zero point %.2f of PHOTFLAM; "
                        "using %.2f (give --zeropoint %s=MAG if the file's zeropoint differs)",
                        path, zpt, _ST, _ST, band)
            source = f"header PHOTFLAM (PHOTZPT {zpt:g} ignored: not {_ST:.2f})"
            zpt = _ST
        zp_st = zpt - 2.5 * math.log10(flam)
    elif "VEGAZPT" in header:
        source = "header VEGAZPT"
        zp_st = _number(header, "VEGAZPT", path) + _filter_st_minus_vega(filt, inst)
    elif "PHOTZPT" in header:
        source = "header PHOTZPT (as Vega)"
        zp_st = _number(header, "PHOTZPT", path) + _filter_st_minus_vega(filt, inst)
    elif acs is not None:
        source = f"nominal ACS/WFC {filt} PHOTFLAM (no header keyword)"
        zp_st = _ST - 2.5 * math.log10(acs[0])
    else:
        source = "none: taken as WFC3/UVIS e-/s"
        zp_st = _ST - 2.5 * math.log10(REFERENCE_PHOTFLAM[band])
    same = filt == band and inst == "WFC3/UVIS" and abs(pivot - REFERENCE_PIVOT[band]) < 50
    colour = 0.0 if same else colour_term(band, pivot)
    zp_ref = _ST - 2.5 * math.log10(REFERENCE_PHOTFLAM[band])
    # m_slot = m_file + colour; counts_ref = 10**(-0.4 (m_slot - zp_ref))
    factor = 10.0 ** (-0.4 * (zp_st - zp_ref + colour))
    if exptime is not None:
        factor /= exptime
    return BandCalibration(band, filt, inst, float(factor), unit, exptime, source, colour)


def _filter_st_minus_vega(filt, inst):
    if inst == "ACS/WFC" and filt in ACS_WFC:
        flam, _, vega = ACS_WFC[filt]
        return _ST - 2.5 * math.log10(flam) - vega
    band = ALIASES.get(filt, filt)
    if band not in BANDS:
        raise ValueError(f"no Vega - ST offset known for filter {filt}")
    return _st_minus_vega(band)
