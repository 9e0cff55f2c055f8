"""``real-reference``: our classes on a mock render of NGC 1566 beside StarcNet's on the sky."""

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from training.__main__ import main

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NGC1566 = SHARED / "legus" / "hlsp_legus_hst_wfc3_ngc1566_multiband_v1_padagb-mwext-avgapcor.tab"
STARCNET = SHARED / "starcnet"
needs_shared = pytest.mark.skipif(not (NGC1566.exists() and STARCNET.is_dir()),
                                  reason="../shared/data (LEGUS catalogs, StarcNet results) absent")


@needs_shared
def test_real_reference_on_the_same_rows(trained_models, ngc1566_bank, tmp_path, capsys):
    status = main(["real-reference", "--models", str(trained_models["models"]),
                   "--bank", str(ngc1566_bank), "--starcnet", str(STARCNET),
                   "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    res = json.loads((tmp_path / "real_reference.json").read_text())
    entry = res["fields"]["ngc1566"]
    # StarcNet's confusion, independently: its CSV joined to the bank's human rows by id.
    truth = Table.read(ngc1566_bank / "truth.ecsv")
    human = truth[np.asarray(truth["legus_class"]) > 0]
    pred = Table.read(STARCNET / "ngc1566_starcnet_predictions.csv")
    by_id = dict(zip(np.asarray(pred["Id"], int), np.asarray(pred["Prediction"], int)))
    conf = np.zeros((4, 4), int)
    for i, c in zip(np.asarray(human["legus_id"], int), np.asarray(human["legus_class"], int)):
        if i in by_id:
            conf[c - 1, by_id[i] - 1] += 1
    assert len(human) > 20
    assert entry["starcnet_on_real"]["confusion"] == conf.tolist()
    assert entry["same_rows"] is True
    assert entry["ours_on_mock"]["n"] == len(human)
    assert 0.0 <= entry["networks_agree"] <= 1.0
    assert res["pooled"]["starcnet_on_real"]["confusion"] == conf.tolist()
    md = (tmp_path / "real_reference.md").read_text()
    assert "| ngc1566 | StarcNet (real images; same rows) |" in md
    assert "| ngc1566 | ours (mock render) |" in md


@needs_shared
def test_real_reference_errors(trained_models, ngc1566_bank, tmp_path, capsys):
    models = str(trained_models["models"])
    assert main(["real-reference", "--models", models, "--bank", str(ngc1566_bank),
                 "--starcnet", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ngc1566_starcnet_predictions.csv" in err, err
    assert main(["real-reference", "--models", models,
                 "--bank", str(trained_models["classifier_bank"]),
                 "--starcnet", str(STARCNET), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a LEGUS-anchored bank" in err and len(err.splitlines()) == 1, err
    assert str(trained_models["classifier_bank"]) in err
    assert not (tmp_path / "o").exists()
