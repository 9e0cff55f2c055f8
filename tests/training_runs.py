"""Helpers of the training tests: in-process ``python -m training`` runs, and
tiny banks and models trained once per test session.

A plain module rather than a conftest, so that test modules import it by
name (``tests/`` is on ``sys.path`` through the root conftest).

`trained_models` builds, through ``training.__main__.main([...])``:

- ``banks/classifier`` (n=400, 32 px) and ``banks/physical`` (n=300, 64 px);
- ``models/classifier-s0`` and ``models/physical-s0`` (1 epoch each): a
  complete model folder for ``starclf classify --models``;
- ``extra/classifier-s1`` (seed 1): a second classifier member for the
  ensemble tests, kept out of ``models/`` so that folder holds one member
  per family.

The `trained_models` fixture itself lives in ``tests/conftest.py`` so that
every folder sees it; the work is done once per session, and the result is
kept under the session's base temporary folder (a ``done.json`` marker).
"""

import contextlib
import io
import json
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``training`` is a folder of the checkout, not installed
    sys.path.insert(0, str(ROOT))

N_CLASSIFIER = 400
N_PHYSICAL = 300


def run_training(*argv):
    """Run ``python -m training argv`` in-process; return (status, stdout, stderr)."""
    from training.__main__ import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def classifier_argv(bank, out, seed=0, epochs=1, *extra):
    return ["train-classifier", "--bank", str(bank), "--out", str(out), "--seed", str(seed),
            "--epochs", str(epochs), *extra]


def physical_argv(bank, out, seed=0, epochs=1, *extra):
    return ["train-physical", "--bank", str(bank), "--out", str(out), "--seed", str(seed),
            "--epochs", str(epochs), *extra]


def _check(status, out, err, what):
    assert status == 0, f"{what} failed ({status}):\n{out}\n{err[-2000:]}"


def build_trained_models(tmp_path_factory):
    """Banks and models of the module docstring; built once per session."""
    root = tmp_path_factory.getbasetemp() / "starclf-trained"
    marker = root / "done.json"
    if marker.exists():
        return _as_paths(json.loads(marker.read_text()))
    root.mkdir(parents=True, exist_ok=True)
    banks, models, extra = root / "banks", root / "models", root / "extra"
    t0 = time.perf_counter()
    info = {"root": str(root)}
    for kind, n in (("classifier", N_CLASSIFIER), ("physical", N_PHYSICAL)):
        _check(*run_training("make-bank", "--kind", kind, "--n", n, "--seed", 0,
                             "--out", banks / kind), f"make-bank {kind}")
        info[f"{kind}_bank"] = str(banks / kind)
    runs = {
        "classifier": classifier_argv(banks / "classifier", models / "classifier-s0.safetensors"),
        "physical": physical_argv(banks / "physical", models / "physical-s0.safetensors"),
        "classifier_s1": classifier_argv(banks / "classifier",
                                         extra / "classifier-s1.safetensors", seed=1),
    }
    for name, argv in runs.items():
        status, out, err = run_training(*argv)
        _check(status, out, err, name)
        info[name] = argv[argv.index("--out") + 1]
        info[f"{name}_argv"] = argv
        info[f"{name}_stdout"] = out
    info["models"] = str(models)
    info["extra"] = str(extra)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    marker.write_text(json.dumps(info, indent=2))
    return _as_paths(info)


def _as_paths(info):
    return {k: (Path(v) if isinstance(v, str) and k not in ("seconds",)
                and not k.endswith("_stdout") else v) for k, v in info.items()}
