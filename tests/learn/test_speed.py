"""`glue_starclf.learn.speed`: FLOP counts and the GEMM yardstick."""

import pytest
import torch

from glue_starclf.core import networks as N
from glue_starclf.learn.speed import (count_flops, gemm_flops_per_s, gemm_rates,
                                     paired_gemm_fraction)


def test_count_flops_of_plain_and_fused_convolutions():
    net = N.build_network("PhysicalNet").eval()
    x, m, d = torch.randn(2, 5, 64, 64), torch.ones(2, 5), torch.ones(2, 1)
    with torch.inference_mode():
        plain = count_flops(lambda: net(x, m, d))
        fused = count_flops(lambda: N.fuse_for_inference(net)(x, m, d))
    # conv 4x4/4 (5->32 at 16x16) alone: 2 * 2 * 256 * 32 * 80 FLOPs
    assert plain > 2 * 2 * 256 * 32 * 80
    assert plain / 2 == pytest.approx(6.5e6, rel=0.05)        # 3.2 M multiply-adds a stamp
    assert fused == plain                                      # the fused kernel is counted too


def test_gemm_rate_and_paired_fraction():
    g = gemm_flops_per_s(n=256, repeat=3)
    assert g > 1e8
    # The same work as the yardstick, so the fraction is about 1. One thread and
    # five pairs: on a loaded machine a two-thread product of 0.4 ms waits for
    # its slower thread (measured 0.07 in a CI run beside two other jobs).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(384, 384)
        frac, gemm = paired_gemm_fraction(lambda: a @ a, 2 * 384 ** 3, pairs=5, gemm_n=384)
    finally:
        torch.set_num_threads(threads)
    assert 0.1 < frac < 10 and gemm > 1e8
    with pytest.raises(ValueError, match="pairs"):
        paired_gemm_fraction(lambda: None, 1.0, pairs=0)
    with pytest.raises(ValueError, match="n 0"):
        gemm_flops_per_s(n=0)


def test_gemm_rates_time_both_back_ends_and_the_yardstick_is_the_faster(monkeypatch):
    rates = gemm_rates(n=256, repeat=3)
    assert set(rates) == {"torch.mm", "onednn"}     # this torch has oneDNN
    assert all(r > 1e8 for r in rates.values())
    # The oneDNN call is a real product of the same size: a @ b.T.
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    with torch.inference_mode():
        prod = torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    assert torch.allclose(prod, a @ b.T, atol=1e-4)
    from glue_starclf.learn import speed
    monkeypatch.setattr(speed, "gemm_rates", lambda n, repeat: {"torch.mm": 2e9, "onednn": 3e9})
    assert speed.gemm_flops_per_s() == 3e9
