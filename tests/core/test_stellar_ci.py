"""The field's stellar CI measured on mock fields of known PSF."""

import numpy as np
import pytest

from glue_starclf.core.stellar_ci import (CI_CUT_ABOVE_STELLAR, STELLAR_CI_DEFAULT, field_ci_cut,
                                          measure_stellar_ci,
                                          stellar_ci_or_default)
from glue_starclf.io.mosaic import Mosaic
from glue_starclf.sim.domain import NOMINAL, perturbed
from glue_starclf.sim.effpsf import stellar_ci
from glue_starclf.sim.mosaic import random_field


@pytest.fixture(scope="module")
def fields():
    """The same sources under the nominal PSF and one broadened by 0.5 px."""
    return {name: random_field(seed=3, shape=(1024, 1024), n_sources=150, domain=dom)
            for name, dom in (("nominal", NOMINAL),
                              ("broader", perturbed(extra_broadening_px=0.5)))}


def test_measured_stellar_ci_follows_the_psf(fields):
    measured = {}
    for name, mock in fields.items():
        value, info = measure_stellar_ci(Mosaic.from_arrays(mock.images))
        assert abs(value - stellar_ci(mock.psf)) < 0.05, name
        assert info["n_used"] == 200 and info["region"] == [0, 0, 1024, 1024]
        measured[name] = value
    # The broader PSF raises the stars' CI by 0.135 mag; the measurement sees it.
    true_step = stellar_ci(fields["broader"].psf) - stellar_ci(fields["nominal"].psf)
    assert true_step > 0.1
    assert abs((measured["broader"] - measured["nominal"]) - true_step) < 0.03


def test_box_is_centred_on_the_sources_and_clipped(fields):
    m = Mosaic.from_arrays(fields["nominal"].images)
    _, info = measure_stellar_ci(m, centre=(1000.0, 30.0), box=512)
    assert info["region"] == [512, 0, 1024, 512]


def test_too_few_detections_is_one_line():
    mock = random_field(seed=1, shape=(128, 128), n_sources=3)
    with pytest.raises(ValueError, match="too few .* to measure the stellar CI") as err:
        measure_stellar_ci(Mosaic.from_arrays(mock.images))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="box 10 px"):
        measure_stellar_ci(Mosaic.from_arrays(mock.images), box=10)
    images = np.array(mock.images)
    images[3] = np.nan  # no V data at all
    with pytest.raises(ValueError, match="too few"):
        measure_stellar_ci(Mosaic.from_arrays(images))


def test_measurement_does_not_report_its_detections_as_candidates(fields, caplog):
    import logging
    with caplog.at_level(logging.INFO, logger="glue_starclf"):
        measure_stellar_ci(Mosaic.from_arrays(fields["nominal"].images))
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "detected" in r.message]


def test_stellar_ci_or_default(fields):
    m = Mosaic.from_arrays(fields["nominal"].images)
    value, source, measured = stellar_ci_or_default(m)
    assert measured and value == measure_stellar_ci(m)[0]
    assert source.startswith("measured in region (")
    sparse = random_field(seed=1, shape=(128, 128), n_sources=3)
    value, source, measured = stellar_ci_or_default(Mosaic.from_arrays(sparse.images))
    assert not measured and value == STELLAR_CI_DEFAULT
    assert source.startswith("default (not measured: region (0, 0, 128, 128): ")
    assert "too few" in source


def test_field_ci_cut_sits_above_the_field_stellar_ci(fields):
    cuts = {}
    for name, mock in fields.items():
        m = Mosaic.from_arrays(mock.images)
        cut, source, measured = field_ci_cut(m)
        assert measured and cut == pytest.approx(measure_stellar_ci(m)[0] + CI_CUT_ABOVE_STELLAR)
        cuts[name] = cut
    # The broader PSF's stars have a larger CI: its field's cut is higher by as much.
    assert cuts["broader"] - cuts["nominal"] > 0.1
    sparse = random_field(seed=1, shape=(128, 128), n_sources=3)
    cut, source, measured = field_ci_cut(Mosaic.from_arrays(sparse.images))
    assert not measured and cut == pytest.approx(STELLAR_CI_DEFAULT + CI_CUT_ABOVE_STELLAR)
    assert source.startswith("default (not measured")


def test_a_measurement_outside_the_trained_range_is_not_trusted(monkeypatch):
    # A small region's few stars gave 1.04 (the inspector screenshot's mock field),
    # below every training field (1.12-1.46).
    from glue_starclf.core import stellar_ci as module
    monkeypatch.setattr(module, "measure_stellar_ci",
                        lambda mosaic, centre: (1.04, {"region": [0, 0, 320, 320], "n_used": 91}))
    value, source, measured = stellar_ci_or_default(None)
    assert not measured and value == STELLAR_CI_DEFAULT
    assert "1.040 mag, is outside 1.1-1.55" in source
