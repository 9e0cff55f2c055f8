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


def test_like_for_like_randomised(trained_models, tmp_path, capsys):
    """--randomise renders the same clusters under drawn conditions: other stamps, other
    errors, and the JSON says so."""
    models = str(trained_models["models"])
    args = ["like-for-like", "--models", models, "--n", "30", "--seed", "1"]
    assert main(args + ["--json", str(tmp_path / "n.json")]) == 0
    assert "(seed 1, nominal conditions)" in capsys.readouterr().out
    assert main(args + ["--randomise", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "(seed 1, domain-randomised)" in out
    nominal = json.loads((tmp_path / "n.json").read_text())
    randomised = json.loads((tmp_path / "r.json").read_text())
    assert (nominal["randomise"], randomised["randomise"]) == (False, True)
    assert randomised["stdpsf"] is False
    assert randomised["estimators"] != nominal["estimators"]


def test_like_for_like_stdpsf_errors(tmp_path, capsys):
    assert main(["like-for-like", "--n", "30", "--stdpsf-dir", str(tmp_path)]) == 2
    assert "--stdpsf-dir is used only with --randomise" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    assert main(["like-for-like", "--n", "30", "--randomise", "--stdpsf-dir", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err, err
