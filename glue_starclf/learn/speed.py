"""Speed of the networks against the machine itself.

The machine's fp32 matrix-multiply rate (the threads torch uses; the faster
of torch's two back ends, MKL's ``torch.mm`` and oneDNN's matmul) is the
yardstick: an ensemble's achieved FLOP rate as a fraction of it holds on any
CPU, where objects per second do not. Both back ends are timed because
either can lag on a given CPU (MKL takes slower paths on AMD processors),
and a slow yardstick would flatter the networks.
"""

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["gemm_flops_per_s", "gemm_rates", "count_flops", "best_seconds", "paired_gemm_fraction",
           "cpu_model", "machine"]


def cpu_model():
    """CPU model name of this machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """Where this process computes, for model cards: device, CPU model, cores, torch threads.

    Training runs on the CPU (the networks are small); the device is recorded
    so that a card says so.
    """
    return {"device": "cpu", "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def best_seconds(fn, repeat=3, warmup=1):
    """Shortest wall time of ``fn()`` over ``repeat`` calls after ``warmup`` calls.

    The minimum, not the mean: on a shared machine the other jobs only ever
    add time.
    """
    if repeat < 1:
        raise ValueError(f"repeat {repeat!r} must be >= 1")
    for _ in range(warmup):
        fn()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_rates(n=1024, repeat=10):
    """fp32 FLOP/s of the product of two n x n matrices with each of torch's back ends.

    Parameters
    ----------
    n : int
        Matrix side (2 n^3 FLOPs per product).
    repeat : int
        Products timed per back end; the fastest counts.

    Returns
    -------
    dict
        ``"torch.mm"`` (MKL or OpenBLAS) and, where torch has oneDNN,
        ``"onednn"`` (its matmul, as ``torch.nn.Linear`` runs under
        ``torch.utils.mkldnn``): FLOP/s with torch's current thread count.
    """
    if n < 1:
        raise ValueError(f"n {n!r} must be >= 1")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    flops = 2.0 * n ** 3
    rates = {"torch.mm": flops / best_seconds(lambda: torch.mm(a, b, out=out), repeat=repeat)}
    linear = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available() and linear is not None:
        with torch.inference_mode():
            rates["onednn"] = flops / best_seconds(lambda: linear(a, b, None, "none", [], ""),
                                                   repeat=repeat)
    return rates


def gemm_flops_per_s(n=1024, repeat=10):
    """The machine's fp32 GEMM rate [FLOP/s]: the faster back end of `gemm_rates`
    (same parameters)."""
    return max(gemm_rates(n, repeat).values())


def count_flops(fn):
    """FLOPs that ``fn()`` spends in convolutions and matrix products.

    Counted by `torch.utils.flop_counter.FlopCounterMode` (2 per
    multiply-add, padding included), oneDNN's fused convolutions included;
    element-wise work (activations, softmax, normalisation) is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

    def fused_conv(x_shape, w_shape, *args, out_shape=None, **kwargs):
        return conv_flop_count(x_shape, w_shape, out_shape)

    mapping = {}
    fused = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if fused is not None:  # the conv+ReLU kernel of `fuse_for_inference`
        mapping[fused] = fused_conv  # shapes in, as FlopCounterMode passes them
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def paired_gemm_fraction(fn, flops, pairs=7, gemm_n=1024):
    """FLOP rate of ``fn`` as a fraction of the GEMM rate, measured in alternation.

    On a shared machine the load drifts between measurements; timing the
    GEMM right before each call of ``fn`` and taking the median of the
    ``pairs`` ratios cancels most of that drift.

    Parameters
    ----------
    fn : callable
        One unit of work (e.g. one batch through an ensemble).
    flops : float
        FLOPs of one call (`count_flops`).
    pairs : int
        GEMM / ``fn`` pairs timed.
    gemm_n : int
        Matrix side of the GEMM (`gemm_flops_per_s`).

    Returns
    -------
    fraction : float
        Median over the pairs of (flops / seconds of ``fn``) / GEMM FLOP/s.
    gemm : float
        Median GEMM FLOP/s of the pairs.
    """
    if pairs < 1:
        raise ValueError(f"pairs {pairs!r} must be >= 1")
    fn()
    ratios, gemms = [], []
    for _ in range(pairs):
        g = gemm_flops_per_s(gemm_n, repeat=3)
        t = best_seconds(fn, repeat=1, warmup=0)
        gemms.append(g)
        ratios.append(flops / t / g)
    return float(np.median(ratios)), float(np.median(gemms))
