import json

from training.__main__ import main


def test_evaluate_writes_the_report(trained_models, tmp_path, capsys):
    status = main(["evaluate", "--models", str(trained_models["models"]),
                   "--bank", str(trained_models["classifier_bank"]),
                   "--out", str(tmp_path / "report")])
    assert status == 0, capsys.readouterr().err
    report = (tmp_path / "report" / "classifier_report.md").read_text()
    for text in ("4-class accuracy", "binary accuracy", "recall class 4", "Band ablation",
                 "ECE before / after", "Per field", "classifier_report.png"):
        assert text in report
    metrics = json.loads((tmp_path / "report" / "classifier_metrics.json").read_text())
    assert set(metrics["band_ablation"]) == {"F275W", "F336W", "F438W", "F555W", "F814W"}
    assert metrics["metrics"]["n"] == sum(map(sum, metrics["metrics"]["confusion"]))
    assert (tmp_path / "report" / "classifier_report.png").stat().st_size > 10_000


def test_evaluate_without_models(trained_models, tmp_path, capsys):
    status = main(["evaluate", "--models", str(tmp_path), "--bank",
                   str(trained_models["classifier_bank"]), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2
    assert "no classifier models" in err and len(err.strip().splitlines()) == 1
