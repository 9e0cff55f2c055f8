"""004's setting as a test bank (`glue_starclf.learn.setting004`)."""

import numpy as np
import pytest

from glue_starclf.learn.setting004 import (SETTING_004, r_h_range_pc, setting004_mask,
                                           setting004_ranges)


def test_r_h_range_at_4_5_mpc():
    lo, hi = r_h_range_pc()
    assert lo == pytest.approx(0.873, abs=0.002) and hi == pytest.approx(8.73, abs=0.02)
    assert r_h_range_pc(10.0, (1.0, 1.0))[0] == pytest.approx(48.48, abs=0.01)


def test_setting004_bank_draws_in_the_setting():
    from glue_starclf.sim.bank import physical_bank
    stamps, truth = physical_bank(40, seed=1, **setting004_ranges())
    mask = setting004_mask(len(stamps))
    assert stamps.shape == (40, 5, 64, 64) and mask.shape == (40, 5)
    assert (mask == [False, True, True, False, True]).all()
    cl = np.asarray(truth["p_cb"]) > 0.5
    assert cl.sum() >= 30
    t = truth[cl]
    assert np.allclose(truth["distance_mpc"], SETTING_004["distance_mpc"])
    assert (t["log_mass"] >= 3.5 - 1e-9).all() and (t["log_mass"] <= 5.5 + 1e-9).all()
    lo, hi = r_h_range_pc()
    assert (t["r_h"] >= lo - 1e-6).all() and (t["r_h"] <= hi + 1e-6).all()
    assert (t["av"] >= 0).all() and (t["av"] <= 3).all()
