"""HST bands, their slots in the 5-band model input, and the instrument constants.

The photometric constants are those the mock-data engine renders with; real
mosaics carry their own calibration and only the band names are needed.
"""

__all__ = [
    "BANDS",
    "ALIASES",
    "PIXEL_SCALE_ARCSEC",
    "VEGA_ZEROPOINT",
    "EXPOSURE_TIME_S",
    "SKY_E_PER_S",
    "READ_NOISE_E",
    "N_EXPOSURES",
    "canonical_band",
    "band_index",
]

#: The five model bands in input order (blue to red).
BANDS = ("F275W", "F336W", "F438W", "F555W", "F814W")

#: Other filters accepted for a slot.
ALIASES = {"F225W": "F275W", "F435W": "F438W", "F606W": "F555W"}

#: Drizzled LEGUS / PHANGS-HST pixel scale.
PIXEL_SCALE_ARCSEC = 0.04

#: WFC3/UVIS Vega zeropoints (infinite aperture, 1 e-/s), from the SMOV
#: calibration of WFC3 ISR 2009-31 (Kalirai et al. 2009) as tabulated by
#: STScI's "WFC3 Photometric Zeropoints" page.
VEGA_ZEROPOINT = {"F275W": 22.65, "F336W": 23.46, "F438W": 24.98,
                  "F555W": 25.81, "F814W": 24.67}

#: Typical LEGUS total exposure times (Calzetti et al. 2015, Table 2; the
#: mock-data spec).
EXPOSURE_TIME_S = {"F275W": 2400.0, "F336W": 1100.0, "F438W": 900.0,
                   "F555W": 1100.0, "F814W": 900.0}

#: Zodiacal + earthshine sky per 0.04" pixel at average conditions, from the
#: WFC3 Instrument Handbook sky-background tables (rounded).
SKY_E_PER_S = {"F275W": 0.0004, "F336W": 0.0015, "F438W": 0.006,
               "F555W": 0.025, "F814W": 0.020}

#: WFC3/UVIS read noise per read (Instrument Handbook Table 5.1) and the number
#: of dithered exposures combined per band.
READ_NOISE_E = 3.1
N_EXPOSURES = 3


def canonical_band(name):
    """Return the model band for a filter name.

    Parameters
    ----------
    name : str
        Filter name in any case, e.g. ``"f435w"``.

    Returns
    -------
    str
        One of `BANDS`.

    Raises
    ------
    ValueError
        If the filter is not one of the five bands or their aliases.
    """
    key = str(name).strip().upper()
    key = ALIASES.get(key, key)
    if key not in BANDS:
        raise ValueError(
            f"unknown band {name!r}: expected one of {', '.join(BANDS)} "
            f"(or {', '.join(ALIASES)})")
    return key


def band_index(name):
    """Slot index (0-4) of a filter name in the 5-band input."""
    return BANDS.index(canonical_band(name))
