"""Physics checks of the shipped isochrone photometry table."""

from pathlib import Path

import numpy as np
import pytest

from glue_starclf.io.bands import BANDS
from glue_starclf.io.catalogs import legus_distance_mpc, read_legus_tab
from glue_starclf.sim.isochrones import TABLE_NAME, load_isochrones
from glue_starclf.sim.sedfit import fit_ssp

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
LEGUS = SHARED / "data" / "legus"

#: LEGUS fields refitted: file and the number of class 1-2 clusters with >= 4
#: bands. Both are WFC3-only fields (F438W, F555W).
FIELDS = {
    "ngc1566": ("hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab", 881),
    "ngc7793-e": ("hlsp_legus_hst_wfc3_ngc7793-e_multiband_v1_padagb-mwext-avgapcor.tab", 108),
}

@pytest.fixture(scope="module")
def tab():
    return load_isochrones()


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_legus_clusters_are_refitted(field):
    """Class 1-2 LEGUS photometry is fitted by the table: median reduced chi^2 <= 2."""
    if not LEGUS.is_dir():
        pytest.skip("../shared/data/legus not found: the LEGUS catalogs live "
                    "outside the project")
    name, n_expected = FIELDS[field]
    cat = read_legus_tab(LEGUS / name)
    cat = cat[np.isin(cat["class"], (1, 2)) & (cat["n_bands"] >= 4)]
    assert len(cat) == n_expected            # the class column was read right
    mags = np.column_stack([cat[f"mag_{b}"] for b in BANDS])
    errs = np.column_stack([cat[f"err_{b}"] for b in BANDS])
    fit = fit_ssp(mags, errs, legus_distance_mpc(field))
    assert np.all(np.isfinite(fit["chi2_red"]))
    assert np.median(fit["chi2_red"]) <= 2.0, f"{field}: median {np.median(fit['chi2_red']):.2f}"


def colours(mags):
    """Adjacent blue-minus-red colours F275W-F336W ... F555W-F814W."""
    return mags[..., :-1] - mags[..., 1:]


def test_ssp_colours_redden_with_age(tab):
    c = colours(np.array([tab.ssp_abs_mag(age) for age in (7.0, 8.0, 9.0, 10.0)]))
    # NUV-U, U-B, B-V: the turn-off cools monotonically at these coarse steps.
    assert np.all(np.diff(c[:, :3], axis=0) > 0)
    # V-I: red supergiants make 10-30 Myr populations red in V-I, so only
    # require the monotonic reddening from 100 Myr on and old > young.
    assert np.all(np.diff(c[1:, 3]) > 0)
    assert c[3, 3] > c[0, 3]
    # fading: an older population of the same initial mass is fainter in V
    v = [tab.ssp_abs_mag(age)[3] for age in (7.0, 8.0, 9.0, 10.0)]
    assert np.all(np.diff(v) > 0)


def test_extinction_reddens_every_colour(tab):
    for age in (7.0, 8.5, 9.5):
        c = colours(np.array([tab.ssp_abs_mag(age, av=av) for av in (0.0, 1.0, 2.0, 4.0)]))
        assert np.all(np.diff(c, axis=0) > 0)


def test_band_extinction_ordering(tab):
    iso = tab.isochrone(8.0)
    warm = iso.log_teff >= 3.7   # cooler stars: F275W light is red leak
    for av in (0.5, 1.0, 3.0):
        a = iso.band_extinction(av)[warm]
        assert np.all(np.diff(a, axis=1) < 0)          # F275W > F336W > ... > F814W
        ratio = a / av
        assert np.all(np.abs(ratio[:, 3] - 1.0) < 0.1)  # F555W ~ V
        assert np.all((ratio[:, 4] > 0.5) & (ratio[:, 4] < 0.7))
    assert np.all(iso.band_extinction(0.0) == 0)


def test_isochrone_structure(tab):
    assert tab.log_age_range == (6.6, 10.1)
    assert np.allclose(np.diff(tab.log_ages), 0.05)
    assert 0.0 in tab.metallicities
    m_max = []
    for mh in tab.metallicities:
        for age in tab.log_ages:
            iso = tab.isochrone(age, mh)
            assert iso.mh == mh and iso.log_age == pytest.approx(age)
            assert np.all(np.diff(iso.mass_ini) > 0)
            assert np.all(np.isfinite(iso.abs_mag))
            if mh == 0.0:
                m_max.append(iso.m_max)
    assert np.all(np.diff(m_max) < 0)                  # stars die in mass order
    assert tab.isochrone(8.01) is tab.isochrone(8.0)   # nearest age, cached


def test_mags_at(tab):
    iso = tab.isochrone(8.0)
    mags = iso.mags_at([0.5, 2.0, iso.mass_ini[10], iso.m_max, iso.m_max * 1.01],
                       av=1.0)
    assert mags.shape == (5, 5)
    assert np.allclose(mags[2], iso.abs_mag[10] + iso.band_extinction(1.0)[10])
    assert np.all(np.isfinite(mags[:4])) and np.all(np.isinf(mags[4]))
    assert np.all(mags[0] > mags[1])                   # lighter stars are fainter
    # ssp is the IMF-weighted sum of the same stars
    ssp = tab.ssp_abs_mag(8.0)
    assert np.all((ssp > -1) & (ssp < 6))


def test_bad_age_and_metallicity(tab):
    with pytest.raises(ValueError, match=r"log_age 5\.00 is outside .*6\.60.10\.10"):
        tab.isochrone(5.0)
    with pytest.raises(ValueError, match=r"10\.20"):
        tab.ssp_abs_mag(10.2)
    tab.isochrone(10.12)                                # within half a step
    with pytest.raises(ValueError, match=r"-0\.7"):
        tab.isochrone(8.0, mh=-0.7)


def test_table_file_carries_sources():
    from astropy.io import fits
    path = Path(__file__).resolve().parents[2] / "glue_starclf" / "data" / TABLE_NAME
    assert path.stat().st_size <= 5e6
    header = fits.getheader(path)
    text = " ".join(str(c) for c in header["COMMENT"]) + " ".join(
        str(c) for c in header["HISTORY"])
    for needle in ("PARSEC v1.2S", "Bressan et al. 2012", "uwastro465isos",
                   "MIST", "Choi et al. 2016", "Dotter", "bc_tables.h5",
                   "astrolachesis", "astro-sedpy", "pyphot", "CCM89",
                   "R_V = 3.1", "build-photometry"):
        assert needle in text, needle
    pivots = fits.getdata(path, "BANDS")["PIVOT"]
    assert np.allclose(pivots, [2710, 3355, 4326, 5308, 8030], atol=10)
