import numpy as np
import pytest
from scipy import integrate

from glue_starclf.sim import imf


def test_pdf_is_normalised_and_has_kroupa_slopes():
    total, _ = integrate.quad(imf.kroupa_pdf, imf.M_MIN, imf.M_MAX, points=[0.5], limit=200)
    assert total == pytest.approx(1.0, rel=1e-6)
    # dN/dm slopes: -1.3 below 0.5 Msun, -2.3 above.
    s_low = np.log(imf.kroupa_pdf(0.2) / imf.kroupa_pdf(0.1)) / np.log(2)
    s_high = np.log(imf.kroupa_pdf(20.0) / imf.kroupa_pdf(10.0)) / np.log(2)
    assert s_low == pytest.approx(-1.3)
    assert s_high == pytest.approx(-2.3)


@pytest.mark.parametrize("lo,hi", [(imf.M_MIN, imf.M_MAX), (0.1, 0.4), (2.0, 10.0), (0.3, 3.0)])
def test_samples_follow_the_truncated_imf(lo, hi):
    m = imf.sample_masses(np.random.default_rng(1), 200_000, lo, hi)
    assert m.min() >= lo and m.max() <= hi
    assert m.mean() == pytest.approx(imf.mean_mass(lo, hi), rel=0.02)
    frac = (m > 1.0).mean() if lo < 1.0 < hi else None
    if frac is not None:
        expect = (imf.number_fraction_above(1.0) - imf.number_fraction_above(hi)) / (
            imf.number_fraction_above(lo) - imf.number_fraction_above(hi))
        assert frac == pytest.approx(expect, rel=0.03)


def test_integrate_counts_stars_per_solar_mass():
    m = np.geomspace(imf.M_MIN, imf.M_MAX, 4000)
    # The IMF-weighted sum of the stellar mass per Msun of cluster is 1.
    assert imf.integrate(m, m) == pytest.approx(1.0, rel=1e-3)
