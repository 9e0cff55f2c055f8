"""Domain randomisation (`glue_starclf.sim.domain`) and its use by fields and banks."""

from pathlib import Path

import numpy as np
import pytest

from glue_starclf.io.bands import BANDS
from glue_starclf.sim.bank import physical_bank
from glue_starclf.sim.classbank import classifier_bank
from glue_starclf.sim.domain import NOMINAL, RANGES, draw_domain, perturbed
from glue_starclf.sim.effpsf import stellar_ci
from glue_starclf.sim.mosaic import random_field
from glue_starclf.sim.profiles import sample_eff
from glue_starclf.sim.render import add_noise

STDPSF = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "psf" / "stdpsf"


def test_drawn_domains_stay_in_range_and_vary():
    rng = np.random.default_rng(0)
    doms = [draw_domain(rng, str(STDPSF) if STDPSF.is_dir() else None) for _ in range(30)]
    for key in ("exposure_factor", "zeropoint_mag", "correlated_noise", "eff_truncation",
                "sky_factor"):
        lo, hi = RANGES[key]
        vals = np.concatenate([np.atleast_1d(getattr(d, key)) for d in doms])
        assert vals.min() >= lo and vals.max() <= hi
        assert vals.std() > 0
    assert max(np.hypot(*np.array(d.registration).T).max() for d in doms) <= 0.1
    assert {d.background for d in doms} == {"standard", "varied"}
    if STDPSF.is_dir():
        assert {d.psf_family for d in doms} == {"tinytim", "stdpsf"}


def test_drawn_extra_broadening_spans_its_range():
    # Half the fields keep the locus PSF; the others reach the range's top.
    rng = np.random.default_rng(1)
    extra = np.array([draw_domain(rng).extra_broadening_px for _ in range(400)])
    lo, hi = RANGES["extra_broadening_px"]
    assert 0.35 < np.mean(extra == 0) < 0.65
    assert extra.min() >= lo and extra.max() <= hi and extra.max() > 0.9 * hi


@pytest.mark.parametrize("name, value", [("exposure_factor", 3.0), ("zeropoint_mag", 0.05),
                                         ("registration_px", 0.2), ("eff_truncation", 2.0),
                                         ("sky_factor", -1.0), ("psf_family", "airy"),
                                         ("background", "elliptical"), ("young_light", "bars"),
                                         ("wobble", 1.0)])
def test_out_of_range_perturbation_is_one_line(name, value):
    with pytest.raises(ValueError, match=name) as exc:
        perturbed(**{name: value})
    assert "\n" not in str(exc.value)


def test_registration_shifts_the_band_image():
    yy, xx = np.indices((41, 41)) - 20
    cx = np.array([(p * xx).sum() for p in perturbed(registration_px=0.1).psf().kernels(41)])
    cx0 = np.array([(p * xx).sum() for p in NOMINAL.psf().kernels(41)])
    assert cx[BANDS.index("F275W")] - cx0[BANDS.index("F275W")] == pytest.approx(0.1, abs=0.01)
    assert cx[BANDS.index("F555W")] == pytest.approx(cx0[BANDS.index("F555W")], abs=1e-9)


def test_extra_broadening_raises_the_stellar_ci():
    assert stellar_ci(perturbed(extra_broadening_px=0.5).psf()) > stellar_ci(NOMINAL.psf()) + 0.1


def test_depth_sky_and_correlated_noise():
    rng = np.random.default_rng(1)
    flat = np.full((5, 64, 64), 0.5)
    base = add_noise(flat, rng).std(axis=(1, 2))
    deep = add_noise(flat, rng, exposure_factor=2.0).std(axis=(1, 2))
    np.testing.assert_allclose(deep / base, 1 / np.sqrt(2), rtol=0.1)
    corr = add_noise(flat, rng, correlation=0.5)[3]
    r = np.corrcoef(corr[:, :-1].ravel(), corr[:, 1:].ravel())[0, 1]
    assert r > 0.3


def test_eff_truncation_keeps_r_h_the_half_number_radius():
    rng = np.random.default_rng(2)
    for trunc in (5.0, 50.0):
        x, y = sample_eff(rng, 200000, 2.0, 3.0, truncation=trunc)
        r = np.hypot(x, y)
        assert np.median(r) == pytest.approx(2.0, rel=0.02)
        assert r.max() <= trunc * 2.0 + 1e-9


def test_randomised_banks_record_their_domains():
    _, t = classifier_bank(300, seed=1, randomise=True)
    for col in ("psf_family", "exposure_factor", "eff_truncation", "background"):
        assert col in t.colnames
    assert len(set(np.round(t["exposure_factor"], 6))) >= 2
    assert t.meta["randomise"] is True
    _, p = physical_bank(20, seed=1, domain=perturbed(exposure_factor=0.5))
    assert np.all(p["exposure_factor"] == 0.5)
    assert p.meta["domain"]["exposure_factor"] == [0.5] * 5


def test_random_field_with_a_domain():
    dom = perturbed(zeropoint_mag=0.03, background="varied", eff_truncation=5.0)
    f = random_field(seed=2, shape=(160, 160), n_sources=6, domain=dom)
    assert f.meta["domain"]["zeropoint_mag"] == [0.03] * 5
    assert f.meta["domain"]["background"] == "varied"
    nominal = random_field(seed=2, shape=(160, 160), n_sources=6)
    assert np.all(np.isfinite(f.images)) and not np.array_equal(f.images, nominal.images)
