"""Effective PSFs per field: drizzled TinyTim and empirical STDPSFs (`glue_starclf.sim.effpsf`)."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from glue_starclf.io.catalogs import read_legus_tab
from glue_starclf.sim.effpsf import (EffectivePSF, psf_for_locus, read_stdpsf, stellar_ci,
                                     stellar_locus)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
STDPSF = SHARED / "psf" / "stdpsf"
FIELDS = ("hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab",
          "hlsp_legus_hst_acs-wfc3_ngc5474_multiband_v1_padagb-mwext-avgapcor.tab",
          "hlsp_legus_hst_wfc3_ngc4656_multiband_v2_padagb-mwext-avgapcor.tab",
          "hlsp_legus_hst_wfc3_ngc7793-e_multiband_v1_padagb-mwext-avgapcor.tab")


def stdpsf_dir():
    if not STDPSF.is_dir():
        pytest.skip("../shared/data/psf/stdpsf not found")
    return str(STDPSF)


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("family", ["tinytim", "stdpsf"])
def test_stellar_ci_of_field_psf_follows_the_field_locus(name, family):
    path = SHARED / "legus" / name
    if not path.exists():
        pytest.skip("../shared/data/legus not found")
    cat = read_legus_tab(path)
    locus = stellar_locus(cat["ci"])
    # The LEGUS cut (1st percentile of the catalog CI) sits just above the locus.
    assert np.nanpercentile(np.asarray(cat["ci"], float), 1) - locus == pytest.approx(0.05)
    kw = {"stdpsf_dir": stdpsf_dir(), "detector_xy": (900.0, 3100.0)} if family == "stdpsf" else {}
    psf = psf_for_locus(locus, family, **kw)
    assert abs(stellar_ci(psf) - locus) <= 0.05


def test_tinytim_needs_derived_drizzle_broadening():
    """Drizzled TinyTim alone is far more compact than any LEGUS locus (1.15-1.35)."""
    bare = EffectivePSF("tinytim", 0.0)
    assert stellar_ci(bare) < 1.0
    psf = psf_for_locus(1.30)
    assert 0.5 < psf.broadening_px < 0.9
    assert stellar_ci(psf) == pytest.approx(1.30, abs=0.005)


def test_stdpsf_kernels_vary_over_the_detector_and_are_normalised():
    d = stdpsf_dir()
    a = EffectivePSF("stdpsf", 0.0, (100.0, 100.0), d).kernels(41)
    b = EffectivePSF("stdpsf", 0.0, (4000.0, 4000.0), d).kernels(41)
    np.testing.assert_allclose(a.sum(axis=(1, 2)), 1.0)
    for k in a:
        assert np.unravel_index(k.argmax(), k.shape) == (20, 20)
    assert np.abs(a - b).max() > 1e-3
    # The empirical PSF is broader than TinyTim's, near the LEGUS loci.
    assert 1.1 < stellar_ci(EffectivePSF("stdpsf", 0.0, (2048.0, 1000.0), d)) < 1.3
    desc = EffectivePSF("stdpsf", 0.0, (2048.0, 1000.0), d).describe()
    assert len(desc["stdpsf"]["PSFSTD_WFC3UV_F555W.fits"]) == 16


def test_bad_stdpsf_file_shape_is_one_line(tmp_path):
    bad = tmp_path / "PSFSTD_WFC3UV_F555W.fits"
    hdu = fits.PrimaryHDU(np.ones((10, 51, 51), np.float32))
    hdu.header["NXPSFS"], hdu.header["NYPSFS"] = 2, 5
    for i in (1, 2):
        hdu.header[f"IPSFX{i:02d}"] = 2048 * (i - 1)
    for i in range(1, 6):
        hdu.header[f"JPSFY{i:02d}"] = 1000 * (i - 1)
    hdu.writeto(bad)
    with pytest.raises(ValueError, match="PSFSTD_WFC3UV_F555W.fits: STDPSF cube of shape") as exc:
        read_stdpsf(bad)
    assert "\n" not in str(exc.value)


def test_bad_psf_options():
    with pytest.raises(ValueError, match="family"):
        EffectivePSF("gaussian")
    with pytest.raises(ValueError, match="broadening"):
        EffectivePSF("tinytim", 5.0)
    with pytest.raises(ValueError, match="stdpsf_dir"):
        EffectivePSF("stdpsf")
