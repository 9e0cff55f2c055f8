import json

from training.__main__ import main


def test_like_for_like_table(trained_models, tmp_path, capsys):
    status = main(["like-for-like", "--models", str(trained_models["models"]), "--n", "30",
                   "--seed", "1", "--json", str(tmp_path / "l.json")])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "| mean (shipped for log age, A_V, log r_h) |" in out
    assert "| median (shipped for log mass) |" in out
    assert "| 004 (its own mocks) | 0.9 | 0.4 | 1.4 | 0.2 |" in out
    res = json.loads((tmp_path / "l.json").read_text())
    assert res["n_clusters"] == 27                     # 10% background stamps
    assert set(res["coverage"]) == {"log_age", "log_mass", "av", "log_r_h"}
    # Where the errors sit: quarters of each true value and of the visibility.
    assert set(res["by_true"]) == {"log_age", "log_mass", "av", "log_r_h", "visibility"}
    assert all(sum(r["n"] for r in rows) == 27 for rows in res["by_true"].values())
    assert "| true value, quarter | n | log age | log mass | A_V | log r_h |" in out
    assert "| visibility " in out
    deg = res["mass_age_same_sign"]
    assert deg["threshold"] == 0.4 and 0 <= deg["n"] <= 27
    assert main(["like-for-like", "--n", "5"]) == 2
    assert "at least 10" in capsys.readouterr().err
