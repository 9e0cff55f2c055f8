"""Detections matched to a mock field's truth (`glue_starclf.learn.field_audit`)."""

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.learn.field_audit import (audit_detections, match_detections,
                                            unmatched_class4_stamps)


def test_match_is_one_to_one_nearest_first():
    truth = np.array([[10.0, 10.0], [20.0, 10.0]])
    det = np.array([[10.5, 10.0], [10.2, 10.0], [19.0, 10.0], [50.0, 50.0]])
    m = match_detections(det, truth, radius=2.0)
    assert list(m) == [-1, 0, 1, -1]          # the nearer of two claims truth 0
    assert list(match_detections(det, truth[:0])) == [-1] * 4
    with pytest.raises(ValueError, match="radius"):
        match_detections(det, truth, radius=0)


def test_audit_counts_completeness_and_unmatched_class4():
    truth = Table({"x": [10.0, 40, 70, 100, 130, 500], "y": [10.0, 10, 10, 10, 10, 10],
                   "class": [1, 2, 3, 3, 4, 1]})
    det = Table({"x": [10.5, 40.3, 70.0, 130.0, 200, 220, 240, 260, 280],
                 "y": [10.0, 10.2, 11.0, 10.0, 50, 50, 50, 50, 50]})
    pred = [1, 2, 3, 4, 4, 4, 4, 1, 2]
    a = audit_detections(det, truth, pred, region=(0, 0, 300, 300))
    assert (a["n_detections"], a["n_matched"], a["n_unmatched"]) == (9, 4, 5)
    assert a["completeness"] == {1: 1.0, 2: 1.0, 3: 0.5, "1-3": 0.75}   # x=500 is outside
    assert a["matched_class"] == {1: 1, 2: 1, 3: 1, 4: 1}
    assert a["unmatched_called"] == {1: 1, 2: 1, 3: 0, 4: 3}
    assert a["unmatched_called_class4"] == pytest.approx(0.6)
    assert (a["n_unmatched_near"], a["n_unmatched_isolated"]) == (0, 5)
    assert a["unmatched_isolated_called_class4"] == pytest.approx(0.6)
    assert a["unmatched_near_called_class4"] is None
    truth["mag_F555W"] = [22.0, 25.0, 23.0, 26.0, 20.0, 22.0]
    bright = audit_detections(det, truth, region=(0, 0, 300, 300), mag_limit=24.0)
    assert bright["completeness_bright"] == {1: 1.0, 2: None, 3: 1.0, "1-3": 1.0}
    whole = audit_detections(det, truth)
    assert whole["completeness"][1] == 0.5 and "unmatched_called_class4" not in whole
    with pytest.raises(ValueError, match="predicted_class"):
        audit_detections(det, truth, pred[:3])


def test_unmatched_detections_near_a_mock_source_are_counted_apart():
    """An off-centre peak 5 px from a source (also one outside the region) is "near"."""
    truth = Table({"x": [50.0, 304.0], "y": [50.0, 50.0], "class": [3, 1]})
    det = Table({"x": [50.0, 55.0, 296.0, 150.0], "y": [50.0, 50.0, 50.0, 150.0]})
    a = audit_detections(det, truth, [3, 3, 4, 4], region=(0, 0, 300, 300))
    assert a["n_unmatched"] == 3 and a["unmatched_called_class4"] == pytest.approx(2 / 3)
    assert (a["n_unmatched_near"], a["n_unmatched_isolated"]) == (2, 1)
    assert a["unmatched_near_called_class4"] == pytest.approx(0.5)
    assert a["unmatched_isolated_called_class4"] == 1.0
    empty = audit_detections(det[:1], truth, [3])
    assert empty["n_unmatched"] == 0 and empty["unmatched_near_called_class4"] is None


def test_unmatched_class4_stamps_on_a_small_field():
    from glue_starclf.sim.mosaic import random_field
    mock = random_field(seed=2, shape=(512, 512), n_sources=40)
    stamps, table = unmatched_class4_stamps(mock, ci_min=None, abs_mag_limit=None,
                                            min_bands=None)
    assert len(table) > 0 and stamps.shape == (len(table), 5, 32, 32)
    assert stamps.dtype == np.float32 and np.isfinite(stamps).all()
    assert (table["class"] == 4).all() and set(table["subtype"]) == {"unmatched-detection"}
    # Every stamp is centred on light: the central pixels of V beat the stamp's median.
    centre = stamps[:, 3, 14:18, 14:18].mean(axis=(1, 2))
    assert (centre > np.median(stamps[:, 3], axis=(1, 2))).mean() > 0.9
    # None of them lies within 3 px of a mock source.
    truth = mock.truth
    d = np.hypot(np.asarray(table["x"])[:, None] - np.asarray(truth["x"])[None],
                 np.asarray(table["y"])[:, None] - np.asarray(truth["y"])[None])
    assert d.min() > 3.0


def test_unmatched_class4_stamps_with_the_field_ci_cut():
    from glue_starclf.core.stellar_ci import field_ci_cut
    from glue_starclf.io.mosaic import Mosaic
    from glue_starclf.sim.mosaic import random_field
    mock = random_field(seed=3, shape=(1024, 1024), n_sources=150)
    cut = field_ci_cut(Mosaic.from_arrays(mock.images))[0]
    assert cut < 1.35  # the nominal PSF: its own cut is below the fixed 1.4
    _, fixed = unmatched_class4_stamps(mock)
    stamps, table = unmatched_class4_stamps(mock, field_cut=True)
    assert len(stamps) == len(table) > len(fixed) > 0
    assert np.allclose(table["ci_min"], cut) and (table["ci"] >= cut).all()
    assert np.allclose(fixed["ci_min"], 1.4) and (fixed["ci"] >= 1.4).all()
