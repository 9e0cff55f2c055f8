"""``starclf bench``: timings of this machine, side by side in one run.

Each benchmark runs in its own single-threaded child process, which reports
its own peak resident memory (``ru_maxrss``), so no warm cache or memory of
one benchmark leaks into the next.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..learn.speed import cpu_model

__all__ = ["run_benchmarks", "run_inference_benchmarks", "cpu_model"]

#: LEGUS field, 4k x 4k region and distance of the mosaic benchmark.
MOSAIC_FIELD = "ngc1566"
MOSAIC_REGION = (2000, 1000, 6000, 5000)

#: Environment variables that set the thread count of numpy/torch back ends.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS")


def _default_catalog():
    """NGC 1566 from ``../shared/data/legus`` next to the working folder or the checkout."""
    roots = [Path.cwd().parent, Path(__file__).resolve().parents[3]]
    for root in roots:
        hits = sorted((root / "shared" / "data" / "legus").glob(f"*_{MOSAIC_FIELD}_*.tab"))
        if hits:
            return str(hits[0])
    return None


def _child(code, *args, threads=1):
    """Run a worker in a fresh interpreter (single-threaded by default); its JSON result."""
    env = {**os.environ, **{k: str(threads) for k in _THREAD_VARS}}
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed: {err.strip().splitlines()[-1] if err else ''}")
    return json.loads(out.strip().splitlines()[-1])


_BANK_WORKER = """
import json, sys, time
from glue_starclf.sim.bank import physical_bank
n, randomise = int(sys.argv[1]), sys.argv[2] == "1"
physical_bank(n, seed=1, log_mass=4.0, background_fraction=0.0)  # warm the caches
t = time.perf_counter()
physical_bank(n, seed=1, log_mass=4.0, background_fraction=0.0, randomise=randomise)
print(json.dumps({"seconds": time.perf_counter() - t, "n": n}))
"""

_MOSAIC_WORKER = """
import json, resource, sys, tempfile, time
t = time.perf_counter()
from glue_starclf.sim.mosaic import legus_anchored_field, random_field, write_mosaic
catalog, out = sys.argv[1], sys.argv[2]
region = tuple(int(v) for v in sys.argv[3].split(","))
if catalog != "-":
    from glue_starclf.io.catalogs import read_legus_tab
    mock = legus_anchored_field(read_legus_tab(catalog), seed=0, region=region)
else:
    mock = random_field(seed=0, shape=(region[3] - region[1], region[2] - region[0]),
                        n_sources=2000)
write_mosaic(mock, out, prefix="bench")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
print(json.dumps({"seconds": time.perf_counter() - t, "sources": len(mock.truth),
                  "shape": list(mock.images.shape), "peak_rss_gb": peak}))
"""


_NETS_WORKER = """
import json, sys, time
import numpy as np, torch
from glue_starclf.core.networks import BNReference, StarcNetReference
from glue_starclf.core.predict import BATCH, _classify, _physical, bf16_supported, load_ensemble
from glue_starclf.learn.speed import count_flops, gemm_rates, paired_gemm_fraction
models = None if sys.argv[1] == "-" else sys.argv[1]
n = int(sys.argv[2])
rng = np.random.default_rng(0)
cls, phys = load_ensemble("classifier", models), load_ensemble("physical", models)

def rate(fn, n_obj, repeat=2):
    fn(min(n_obj, 64))                                   # warm-up
    best = 1e9
    for _ in range(repeat):
        t = time.perf_counter()
        fn(n_obj)
        best = min(best, time.perf_counter() - t)
    return n_obj / best

def ours(kind, ens, bf16=False):
    # The inference path of predict(): normalisation, shared views, members, averaging.
    # The stamps are drawn before the clock starts: only the inference is timed.
    size = ens.stamp_size
    x = rng.normal(0, 0.02, (n, 5, size, size)).astype(np.float32)
    m = np.ones((n, 5), np.float32)
    ci = 1.3 if ens.needs_stellar_ci else None  # a typical field
    def run(k):
        for i in range(0, k, BATCH):
            j = min(i + BATCH, k)
            if kind == "classifier":
                _classify(ens, x[i:j], m[i:j], bf16, ci)
            else:
                _physical(ens, x[i:j], m[i:j], 10.0, bf16, ci)
    return run

def reference(net, size, extra, n_obj):
    net.eval()
    x = torch.from_numpy(rng.normal(0, 1, (n_obj, 5, size, size)).astype(np.float32))
    def run(k):
        with torch.inference_mode():
            for i in range(0, k, 64):
                j = min(i + 64, k)
                net(x[i:j], torch.ones(j - i, 5), *extra(j - i))
    return run

no_extra = lambda k: ()
dist = lambda k: (torch.ones(k, 1),)
# The machine's own fp32 GEMM rate per back end, before and after the networks (the
# faster counts).
gemm = gemm_rates()
out = {"threads": torch.get_num_threads(),
       "classifier_members": len(cls.members), "physical_members": len(phys.members),
       "classifier_obj_s": rate(ours("classifier", cls), n),
       "physical_obj_s": rate(ours("physical", phys), n),
       "starcnet_obj_s": rate(reference(StarcNetReference(), 32, no_extra, 256), 256, repeat=1),
       "bn_obj_s": rate(reference(BNReference("fig6"), 64, dist, 256), 256, repeat=1)}
out["gemm_rates"] = {k: max(v, gemm_rates().get(k, 0.0)) for k, v in gemm.items()}
out["gemm_flops_s"] = max(out["gemm_rates"].values())
for kind, ens in (("classifier", cls), ("physical", phys)):
    run = ours(kind, ens)
    out[f"{kind}_flops_per_obj"] = count_flops(lambda: run(64)) / 64
    # GEMM and one batch in alternation: the fraction survives a drifting load.
    k = min(n, BATCH)
    out[f"{kind}_gemm_fraction"], out[f"{kind}_gemm_paired"] = paired_gemm_fraction(
        lambda: run(k), out[f"{kind}_flops_per_obj"] * k)
if bf16_supported():
    out["classifier_obj_s_bf16"] = rate(ours("classifier", cls, True), n)
    out["physical_obj_s_bf16"] = rate(ours("physical", phys, True), n)
print(json.dumps(out))
"""


def _mosaic_for_classify(folder, side, n_sources):
    """An ``side`` x ``side`` x 5 FITS mosaic tiled from a mock field, and its catalog."""
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from ..io.bands import BANDS
    from ..sim.mosaic import random_field
    tile = 2048
    k = side // tile
    per_tile = int(np.ceil(n_sources / (k * k)))
    mock = random_field(seed=5, shape=(tile, tile), n_sources=per_tile)
    header = mock.wcs.to_header()
    header["CRPIX1"] += (side - tile) / 2
    header["CRPIX2"] += (side - tile) / 2
    paths = []
    for b, band in enumerate(BANDS):
        h = header.copy()
        h["FILTER"] = band
        path = os.path.join(folder, f"bench_{band.lower()}.fits")
        fits.PrimaryHDU(np.tile(mock.images[b], (k, k)), header=h).writeto(path)
        paths.append(f"{band}={path}")
    xs = np.concatenate([mock.truth["x"] + tile * i for i in range(k) for _ in range(k)])
    ys = np.concatenate([mock.truth["y"] + tile * j for _ in range(k) for j in range(k)])
    cat = Table({"id": np.arange(1, xs.size + 1), "x": xs, "y": ys})[:n_sources]
    cat_path = os.path.join(folder, "bench_sources.ecsv")
    cat.write(cat_path)
    return paths, cat_path, len(cat)


def _timed_cli(args):
    """Run ``starclf`` in a child; wall seconds and its peak RSS in GB (os.wait4)."""
    env = {**os.environ}
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "glue_starclf.cli.main", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            raise RuntimeError(f"benchmark classify failed: {out.read().decode()[-300:]}")
    return seconds, usage.ru_maxrss / 1024 ** 2


def run_inference_benchmarks(models=None, n_objects=2048, side=8192, n_sources=10000,
                             stream=None):
    """Classifier and physical ensembles against the papers' networks, and end to end.

    Parameters
    ----------
    models : str, optional
        Folder of model cards (default: the bundled models).
    n_objects : int
        Stamps for the network throughput.
    side, n_sources : int
        Mosaic side and number of sources of the end-to-end run.
    stream : file, optional
        Where the report goes (default stdout).

    Returns
    -------
    dict
        Objects/s of each network, the ratios, the machine's fp32 GEMM rate
        and each ensemble's achieved FLOP rate as a fraction of it (FLOPs of
        the networks' convolutions and matrix products per object over the
        seconds of the whole inference path of one batch, against the GEMM
        rate timed just before that batch; the median of 7 such pairs), the
        end-to-end seconds and peak memory.
    """
    stream = stream or sys.stdout
    env_threads = os.cpu_count()
    nets = _child(_NETS_WORKER, models or "-", n_objects, threads=env_threads)
    r_cls = nets["classifier_obj_s"] / nets["starcnet_obj_s"]
    r_phys = nets["physical_obj_s"] / nets["bn_obj_s"]
    cpu = cpu_model()
    print(f"CPU: {cpu}, {os.cpu_count()} cores; torch threads: {nets['threads']}", file=stream)
    print(f"classifier ensemble ({nets['classifier_members']} members): "
          f"{nets['classifier_obj_s']:8.1f} objects/s   StarcNet reference "
          f"{nets['starcnet_obj_s']:6.1f} objects/s   ratio {r_cls:5.1f}x (target >= 20x)",
          file=stream)
    print(f"physical ensemble ({nets['physical_members']} members):   "
          f"{nets['physical_obj_s']:8.1f} objects/s   B&N Fig. 6 ResNet-50 "
          f"{nets['bn_obj_s']:6.1f} objects/s   ratio {r_phys:5.1f}x (target >= 10x)",
          file=stream)
    gemm = nets["gemm_flops_s"]
    frac = {k: nets[f"{k}_gemm_fraction"] for k in ("classifier", "physical")}
    each = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in nets["gemm_rates"].items())
    print(f"fp32 GEMM (1024x1024, same threads, the faster back end: {each}): "
          f"{gemm / 1e9:.1f} GFLOP/s; achieved "
          f"by the classifier ensemble ({nets['classifier_flops_per_obj'] / 1e6:.1f} MFLOP/object)"
          f" {frac['classifier']:.0%} of it (target >= 70%), by the physical ensemble "
          f"({nets['physical_flops_per_obj'] / 1e6:.1f} MFLOP/object) {frac['physical']:.0%} "
          "(target >= 50%); median of 7 batches, each against the GEMM rate timed just "
          "before it", file=stream)
    if "classifier_obj_s_bf16" in nets:
        print(f"with bfloat16 autocast (classify --bf16): classifier "
              f"{nets['classifier_obj_s_bf16']:.1f}, physical {nets['physical_obj_s_bf16']:.1f} "
              "objects/s", file=stream)
    with tempfile.TemporaryDirectory() as tmp:
        images, cat, n = _mosaic_for_classify(tmp, side, n_sources)
        args = ["classify", *sum((["--image", i] for i in images), []), "--catalog", cat,
                "--distance-mpc", "10", "--out", os.path.join(tmp, "results.ecsv")]
        if models:
            args += ["--models", models]
        seconds, peak = _timed_cli(args)
    print(f"end to end: {n} sources from a {side}x{side}x5 FITS mosaic to results.ecsv in "
          f"{seconds:.1f} s (target < 30 s), peak memory {peak:.2f} GB (target < 2.5 GB)",
          file=stream)
    return {"classifier_obj_s": round(nets["classifier_obj_s"], 1),
            "starcnet_obj_s": round(nets["starcnet_obj_s"], 1),
            "classifier_ratio_vs_starcnet": round(r_cls, 1),
            "physical_obj_s": round(nets["physical_obj_s"], 1),
            "bn_obj_s": round(nets["bn_obj_s"], 1), "physical_ratio_vs_bn": round(r_phys, 1),
            **{k: round(v, 1) for k, v in nets.items() if k.endswith("_bf16")},
            "gemm_gflops": round(gemm / 1e9, 1),
            **{f"gemm_gflops_{k.replace('.', '_')}": round(v / 1e9, 1)
               for k, v in nets["gemm_rates"].items()},
            "classifier_members": nets["classifier_members"],
            "physical_members": nets["physical_members"],
            "classifier_mflop_per_obj": round(nets["classifier_flops_per_obj"] / 1e6, 2),
            "physical_mflop_per_obj": round(nets["physical_flops_per_obj"] / 1e6, 2),
            "classifier_gemm_fraction": round(frac["classifier"], 3),
            "physical_gemm_fraction": round(frac["physical"], 3),
            "cpu": cpu, "torch_threads": nets["threads"], "end_to_end_10k_s": round(seconds, 1),
            "end_to_end_sources": n, "peak_rss_gb": round(peak, 2)}


def run_benchmarks(catalog=None, n_stamps=2000, stream=None):
    """Run the engine benchmarks and print a report.

    Parameters
    ----------
    catalog : str, optional
        LEGUS ``.tab`` for the mosaic benchmark; default NGC 1566 from
        ``../shared/data/legus`` when present, else a random field.
    n_stamps : int
        Physical-bank stamps to time.
    stream : file, optional
        Where the report goes (default stdout).

    Returns
    -------
    dict
        The measured figures (also the JSON of ``starclf bench --json``).
    """
    stream = stream or sys.stdout
    catalog = catalog or _default_catalog()
    if catalog is not None and not os.path.exists(catalog):
        raise FileNotFoundError(f"{catalog}: no such catalog")
    result = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": 1}
    print(f"CPU: {result['cpu']} ({result['cpu_count']} logical cores); "
          "each benchmark runs single-threaded in its own process", file=stream)

    for randomise, key, label in ((False, "bank_stamps_per_s_per_core", "nominal"),
                                  (True, "bank_randomised_stamps_per_s_per_core",
                                   "domain-randomised")):
        bank = _child(_BANK_WORKER, n_stamps, int(randomise))
        rate = bank["n"] / bank["seconds"]
        result[key] = round(rate, 1)
        print(f"physical bank  64x64x5, log M = 4, {label}: {rate:8.1f} stamps/s per core "
              f"(target >= 300)  [{bank['n']} stamps in {bank['seconds']:.1f} s]", file=stream)

    with tempfile.TemporaryDirectory() as tmp:
        region = ",".join(map(str, MOSAIC_REGION))
        mosaic = _child(_MOSAIC_WORKER, catalog or "-", os.path.join(tmp, "m"), region)
    kind = f"LEGUS-anchored on {os.path.basename(catalog)}" if catalog else "random field"
    result.update({"mosaic_4k_s": round(mosaic["seconds"], 1),
                   "mosaic_4k_peak_rss_gb": round(mosaic["peak_rss_gb"], 2),
                   "mosaic_4k_sources": mosaic["sources"], "mosaic_4k_kind": kind})
    _, ny, nx = mosaic["shape"]
    print(f"mosaic {nx}x{ny}x5, {mosaic['sources']} sources ({kind}), render + write FITS: "
          f"{mosaic['seconds']:.1f} s (target < 60 s), peak memory "
          f"{mosaic['peak_rss_gb']:.2f} GB (target < 4 GB)", file=stream)
    return result
