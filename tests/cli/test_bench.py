"""``starclf bench`` inference figures: the keys of the JSON line and their consistency.

Behaviour only: wall times are reported by the benchmark, never asserted. The
end-to-end run is shrunk (one 2k tile, 200 sources) to keep the test short.
"""

import io

from glue_starclf.cli.bench import run_inference_benchmarks


def test_inference_benchmark_figures(trained_models):
    stream = io.StringIO()
    figures = run_inference_benchmarks(models=str(trained_models["models"]), n_objects=64,
                                       side=2048, n_sources=200, stream=stream)
    for key in ("classifier_ratio_vs_starcnet", "physical_ratio_vs_bn", "end_to_end_10k_s",
                "peak_rss_gb", "classifier_obj_s", "starcnet_obj_s", "physical_obj_s",
                "bn_obj_s", "torch_threads", "cpu"):
        assert key in figures, key
    ratio = figures["classifier_obj_s"] / figures["starcnet_obj_s"]
    assert abs(figures["classifier_ratio_vs_starcnet"] - ratio) <= 0.01 * ratio + 0.05
    assert figures["end_to_end_sources"] == 200
    # FLOPs per object and member: about 6 M (classifier) and 3.2 M (physical) multiply-adds.
    per_member = figures["classifier_mflop_per_obj"] / figures["classifier_members"]
    assert 10 < per_member < 14
    per_member = figures["physical_mflop_per_obj"] / figures["physical_members"]
    assert 5.5 < per_member < 7.5
    for kind in ("classifier", "physical"):
        assert 0 < figures[f"{kind}_gemm_fraction"] < 5
    assert figures["peak_rss_gb"] > 0 and figures["end_to_end_10k_s"] > 0
    text = stream.getvalue()
    assert "ratio" in text and "CPU:" in text and "end to end: 200 sources" in text
    assert "fp32 GEMM" in text and "GFLOP/s" in text
    # The yardstick is the faster of the two matrix-multiply back ends.
    each = [figures["gemm_gflops_torch_mm"], figures["gemm_gflops_onednn"]]
    assert figures["gemm_gflops"] == max(each)
    assert "the faster back end: torch.mm" in text
