"""``starclf demo``: a mock field classified end to end, and its summary."""

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.cli.main import main
from glue_starclf.cli.demo import accuracy_against_truth
from glue_starclf.core.predict import RESULT_COLUMNS


def test_accuracy_against_truth_counts_and_skips_unclassified():
    truth = Table({"class": [1, 2, 3, 4, 4, 1]})
    results = Table({"class": [1, 3, 3, 4, 0, 2]})
    score = accuracy_against_truth(results, truth)
    assert score["n"] == 5
    assert score["accuracy"] == pytest.approx(3 / 5)
    # 1->1, 2->3 (cluster called non-cluster), 3->3, 4->4, 1->2
    assert score["binary_accuracy"] == pytest.approx(4 / 5)
    assert score["confusion"].sum() == 5 and score["confusion"][1, 2] == 1


def test_demo_classifies_a_mock_field(trained_models, tmp_path, capsys):
    import matplotlib.image as mpimg
    from regions import Regions
    out = tmp_path / "demo"
    status = main(["demo", "--out", str(out), "--shape", "512", "--n-sources", "30",
                   "--models", str(trained_models["models"])])
    assert status == 0
    text = capsys.readouterr().out
    assert "4-class accuracy" in text and "cluster/non-cluster" in text
    results = Table.read(out / "results.ecsv")
    truth = Table.read(out / "demo_truth.ecsv")
    assert list(results.colnames) == list(RESULT_COLUMNS)
    assert len(results) == 30
    assert len(Regions.read(out / "results.reg", format="ds9")) == 30
    png = mpimg.imread(out / "summary.png")
    assert png.shape[0] > 400 and png[..., :3].std() > 0.05
    np.testing.assert_allclose(results["x"], truth["x"])
    # the printed scores are those of the written results against the written truth
    pred, true = np.asarray(results["class"]), np.asarray(truth["class"])
    ok = (pred >= 1) & (true >= 1)
    accuracy = np.mean(pred[ok] == true[ok])
    binary = np.mean((pred[ok] <= 2) == (true[ok] <= 2))
    assert (f"4-class accuracy {accuracy:.3f}, cluster/non-cluster {binary:.3f} "
            f"({ok.sum()} sources)") in text, text


def test_demo_without_models_says_so(tmp_path, capsys):
    empty = tmp_path / "none"
    empty.mkdir()
    status = main(["demo", "--out", str(tmp_path / "d"), "--models", str(empty)])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no classifier models" in err[0]
    assert not (tmp_path / "d").exists()
