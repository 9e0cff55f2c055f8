"""class-separability: classes 1 and 2 against each other, by a network trained for it."""

import json

import numpy as np
import pytest
from astropy.table import Table

from training.__main__ import main
from training.separability import parse_split, split_metrics


def _truth(n):
    rng = np.random.default_rng(0)
    return Table({"class": 1 + np.arange(n) % 2, "distance_mpc": rng.uniform(3, 20, n),
                  "r_h": rng.uniform(0.5, 10, n),
                  "subtype": np.where(np.arange(n) % 2, "double", "cluster")})


def test_split_metrics_count_each_class_and_variant():
    y = np.arange(200) % 2
    truth = _truth(200)
    perfect = split_metrics(y, y, truth)
    assert perfect["balanced"] == 1.0 and perfect["recall"] == [1.0, 1.0]
    assert perfect["subtype_own_group"] == {"class 1 cluster": 1.0, "class 2 double": 1.0}
    everything_one = split_metrics(np.zeros(200, int), y, truth)
    assert everything_one["recall"] == [1.0, 0.0] and everything_one["balanced"] == 0.5
    assert everything_one["subtype_own_group"] == {"class 1 cluster": 1.0, "class 2 double": 0.0}
    assert sum(v["n"] for v in everything_one["distance"].values()) == 200
    assert sum(v["n"] for v in everything_one["r_h_px"].values()) == 200
    # a bin with one class only has no balanced accuracy
    near = split_metrics(y, y, Table({**{k: truth[k] for k in truth.colnames},
                                      "distance_mpc": np.where(y == 0, 4.0, 18.0)}))
    assert near["distance"]["3-8.7 Mpc"]["balanced"] is None
    assert near["distance"]["3-8.7 Mpc"]["recall"] == [1.0, None]


def test_parse_split():
    assert parse_split("1:2") == ((1,), (2,))
    assert parse_split("21:43") == ((1, 2), (3, 4))
    for bad in ("1", "1:1", "12:2", "1:5", "a:b", "1:2:3", ":2"):
        with pytest.raises(ValueError, match="--split"):
            parse_split(bad)


@pytest.mark.parametrize("split, stem, classes", [("1:2", "1-2", ["1", "2"]),
                                                  ("12:34", "12-34", ["1", "2", "3", "4"])])
def test_class_separability_trains_both_renders_and_reports(trained_models, tmp_path, capsys,
                                                            split, stem, classes):
    out = tmp_path / "sep"
    status = main(["class-separability", "--out", str(out), "--split", split,
                   "--n-train", "64", "--n-test", "32", "--epochs", "1", "--models",
                   str(trained_models["models"])])
    text, err = capsys.readouterr()
    assert status == 0, err
    assert "balanced accuracy: noise-free" in text
    res = json.loads((out / f"class_separability_{stem}.json").read_text())
    for name in ("noise-free", "noisy", "ensemble"):
        assert 0 <= res[name]["balanced"] <= 1
        assert sum(v["n"] for v in res[name]["distance"].values()) == 32
    # half of the stamps each group, its classes in equal shares
    called = res["ensemble"]["called"]
    assert sorted(called) == classes
    assert sum(sum(called[c]) for c in classes) == 32
    assert sum(sum(called[c]) for c in classes[:len(classes) // 2]) == 16
    report = (out / f"class_separability_{stem}.md").read_text()
    assert "| the split network, noise-free |" in report and "> 2 px" in report
    assert not list(out.glob("*.state.pt"))


def test_class_separability_bad_options_are_one_line(tmp_path, capsys):
    assert main(["class-separability", "--out", str(tmp_path / "a"), "--lr", "0"]) == 2
    assert "--lr 0.0: must be positive" in capsys.readouterr().err
    assert main(["class-separability", "--out", str(tmp_path / "b"), "--randomise",
                 "--stdpsf-dir", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["class-separability", "--out", str(tmp_path / "c"), "--split", "1:1"]) == 2
    assert "--split '1:1'" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")
