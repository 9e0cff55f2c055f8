"""Two-process CPU DDP smoke run: ``torchrun --nproc_per_node=2 -m training``.

Runs the real ``torchrun`` of this interpreter's environment (gloo backend on
CPU). Only rank 0 writes: exactly one checkpoint and one card. A gloo that
cannot start here is a failure, not a skip.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from glue_starclf.core.checkpoints import load_checkpoint, sha256_file

ROOT = Path(__file__).resolve().parents[2]


def _torchrun():
    exe = Path(sys.executable).parent / "torchrun"
    assert exe.is_file(), f"no torchrun next to {sys.executable}"
    return str(exe)


def test_two_process_cpu_ddp(trained_models, tmp_path):
    out_dir = tmp_path / "ddp"
    out = out_dir / "ddp.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [_torchrun(), "--nproc_per_node=2", "--standalone", "-m", "training",
           "train-classifier", "--bank", str(trained_models["classifier_bank"]),
           "--out", str(out), "--epochs", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # rank 0 alone reports and writes
    assert proc.stdout.count("epoch 1: loss") == 1, proc.stdout
    loss = float(proc.stdout.split("epoch 1: loss")[1].split()[0])
    assert np.isfinite(loss), proc.stdout  # each rank trained on at least one batch
    assert proc.stdout.count("card ") == 1
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "ddp.json", "ddp.safetensors", "ddp.state.pt"]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sha256"] == sha256_file(out)
    assert card["family"] == "classifier"
    model, loaded = load_checkpoint(out)
    assert loaded["architecture"] == "StarClassifier"
    assert not model.training
