"""``starclf bench``: timings of this machine, side by side in one run.

Each benchmark runs in its own single-threaded child process, which reports
its own peak resident memory (``ru_maxrss``), so no warm cache or memory of
one benchmark leaks into the next.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["run_benchmarks", "cpu_model"]

#: LEGUS field, 4k x 4k region and distance of the mosaic benchmark.
MOSAIC_FIELD = "ngc1566"
MOSAIC_REGION = (2000, 1000, 6000, 5000)

_SINGLE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                   "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


def cpu_model():
    """CPU model name of this machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _default_catalog():
    """NGC 1566 from ``../shared/data/legus`` next to the working folder or the checkout."""
    roots = [Path.cwd().parent, Path(__file__).resolve().parents[2]]
    for root in roots:
        hits = sorted((root / "shared" / "data" / "legus").glob(f"*_{MOSAIC_FIELD}_*.tab"))
        if hits:
            return str(hits[0])
    return None


def _child(code, *args):
    """Run a worker in a fresh single-threaded interpreter and return its JSON result."""
    env = {**os.environ, **_SINGLE_THREAD}
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed: {err.strip().splitlines()[-1] if err else ''}")
    return json.loads(out.strip().splitlines()[-1])


_BANK_WORKER = """
import json, sys, time
from glue_starclf.sim.bank import physical_bank
n = int(sys.argv[1])
physical_bank(n, seed=1, log_mass=4.0, background_fraction=0.0)  # warm the caches
t = time.perf_counter()
physical_bank(n, seed=1, log_mass=4.0, background_fraction=0.0)
print(json.dumps({"seconds": time.perf_counter() - t, "n": n}))
"""

_MOSAIC_WORKER = """
import json, resource, sys, tempfile, time
t = time.perf_counter()
from glue_starclf.sim.mosaic import legus_anchored_field, random_field, write_mosaic
catalog, out = sys.argv[1], sys.argv[2]
region = tuple(int(v) for v in sys.argv[3].split(","))
if catalog != "-":
    from glue_starclf.catalogs import read_legus_tab
    mock = legus_anchored_field(read_legus_tab(catalog), seed=0, region=region)
else:
    mock = random_field(seed=0, shape=(region[3] - region[1], region[2] - region[0]),
                        n_sources=2000)
write_mosaic(mock, out, prefix="bench")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
print(json.dumps({"seconds": time.perf_counter() - t, "sources": len(mock.truth),
                  "shape": list(mock.images.shape), "peak_rss_gb": peak}))
"""


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

    bank = _child(_BANK_WORKER, n_stamps)
    rate = bank["n"] / bank["seconds"]
    result["bank_stamps_per_s_per_core"] = round(rate, 1)
    print(f"physical bank  64x64x5, log M = 4 : {rate:8.1f} stamps/s per core "
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
