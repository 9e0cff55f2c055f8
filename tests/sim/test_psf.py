"""Shipped TinyTim PSFs and their loader (`glue_starclf.sim.psf`)."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from glue_starclf.io.bands import BANDS
from glue_starclf.sim import psf as psf_mod
from glue_starclf.sim.psf import load_psf, psf_stack

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ALL_FILTERS = BANDS + ("F435W", "F606W", "F225W", "f555w")
SHIPPED = ["wfc3_uvis_f275w.fits", "wfc3_uvis_f336w.fits", "wfc3_uvis_f438w.fits",
           "wfc3_uvis_f555w.fits", "wfc3_uvis_f814w.fits",
           "acs_wfc_f435w.fits", "acs_wfc_f606w.fits"]


@pytest.mark.parametrize("band", ALL_FILTERS)
def test_full_psf(band):
    p = load_psf(band)
    assert p.dtype == np.float64
    assert p.ndim == 2 and p.shape[0] == p.shape[1] and p.shape[0] % 2 == 1
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(p >= 0)
    c = p.shape[0] // 2
    assert np.unravel_index(np.argmax(p), p.shape) == (c, c)
    assert not p.flags.writeable
    assert load_psf(band) is p  # cached


@pytest.mark.parametrize("band", ["F275W", "F814W", "F435W", "F606W"])
@pytest.mark.parametrize("size", [1, 5, 25, 149])
def test_crop(band, size):
    full = load_psf(band)
    p = load_psf(band, size)
    assert p.shape == (size, size)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.unravel_index(np.argmax(p), p.shape) == (size // 2, size // 2)
    c, h = full.shape[0] // 2, size // 2
    window = full[c - h:c + h + 1, c - h:c + h + 1]
    np.testing.assert_allclose(p, window / window.sum(), rtol=1e-12)
    assert not p.flags.writeable


def test_wfc3_psf_is_the_file():
    data = fits.getdata(psf_mod.PSF_DIR / "wfc3_uvis_f555w.fits").astype(np.float64)
    np.testing.assert_allclose(load_psf("F555W"), data / data.sum(), rtol=1e-12)


def test_acs_psf_rebinned_to_mosaic_scale():
    # ACS/WFC PSFs are at ~0.0496"/px; on the 0.04" grid the light spreads
    # over more pixels with the same angular profile.
    raw = fits.getdata(psf_mod.PSF_DIR / "acs_wfc_f435w.fits").astype(np.float64)
    raw /= raw.sum()
    p = load_psf("F435W")
    assert p.max() < raw.max()

    def radius_rms(a, scale):
        n = a.shape[0]
        y, x = np.mgrid[:n, :n] - n // 2
        r2 = (x * x + y * y) * scale * scale
        inner = r2 < 0.5 ** 2  # within 0.5"
        return np.sqrt((a * r2)[inner].sum() / a[inner].sum())

    assert radius_rms(p, 0.04) == pytest.approx(radius_rms(raw, 0.0496), rel=0.05)


def test_bad_sizes():
    for size in (0, 4, -3, 2.5, True):
        with pytest.raises(ValueError, match="odd"):
            load_psf("F555W", size)
    with pytest.raises(ValueError, match="exceeds"):
        load_psf("F555W", 151)


def test_unknown_band():
    with pytest.raises(ValueError, match="F999W"):
        load_psf("F999W")
    with pytest.raises(ValueError, match="F110W"):
        load_psf("F110W")


def test_psf_stack():
    s = psf_stack(31)
    assert s.shape == (5, 31, 31)
    for i, band in enumerate(BANDS):
        np.testing.assert_array_equal(s[i], load_psf(band, 31))
    np.testing.assert_allclose(s.sum(axis=(1, 2)), 1.0, rtol=1e-12)


def test_shipped_files_and_licence():
    for name in SHIPPED:
        with fits.open(psf_mod.PSF_DIR / name) as hdul:
            assert hdul[0].data.dtype.kind == "f" and hdul[0].data.dtype.itemsize == 4
            assert float(hdul[0].data.sum(dtype=np.float64)) == pytest.approx(1.0, abs=1e-6)
            header = hdul[0].header
            assert "drizzlepac" in " ".join(header["HISTORY"])
            assert header["FILTER"].strip().upper() in name.upper()
    licence = psf_mod.PSF_DIR / "LICENSE-drizzlepac.txt"
    assert licence.is_file()
    text = licence.read_text()
    assert "BSD 3-Clause" in text and "Association of Universities" in text
    for name in SHIPPED:
        assert name in text


def test_shipped_files_match_shared_copies():
    shared = SHARED / "data" / "psf"
    if not shared.is_dir():
        pytest.skip("../shared/data/psf not found: the reference PSFs live outside the project")
    for name in SHIPPED:
        ref = fits.getdata(shared / name).astype(np.float64)
        ours = fits.getdata(psf_mod.PSF_DIR / name)
        np.testing.assert_array_equal(ours, (ref / ref.sum()).astype(np.float32))
