import json
import shutil

from training.__main__ import main


def _models_copy(trained_models, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(trained_models["models"], folder)
    return folder


def _reachable_target(folder, bank):
    """A coverage every parameter of the one-epoch test model reaches at some temperature
    (its intervals cover only about 0.65-0.78 whatever the temperature)."""
    import numpy as np

    from glue_starclf.core.predict import load_ensemble
    from glue_starclf.learn.banks import open_bank
    from glue_starclf.learn.intervals import (PARAMETERS, bank_posteriors, cluster_marginals,
                                              interval_coverage)
    stamps, truth, _ = open_bank(bank)
    ens = load_ensemble("physical", folder)
    marg = cluster_marginals(bank_posteriors(ens.members, stamps, truth["distance_mpc"]), truth)
    temps = np.exp(np.linspace(np.log(0.05), np.log(20), 61))
    lo, hi = 0.0, 1.0
    for name, (m, true, _) in marg.items():
        cov = [interval_coverage(m, PARAMETERS[name], true, t) for t in temps]
        lo, hi = max(lo, min(cov)), min(hi, max(cov))
    assert lo < hi, "no coverage common to all four parameters"
    return 0.5 * (lo + hi)


def test_calibrate_intervals_writes_the_cards(trained_models, tmp_path, capsys):
    from glue_starclf.core.checkpoints import load_checkpoint
    from glue_starclf.core.predict import load_ensemble
    folder = _models_copy(trained_models, tmp_path)
    bank = str(trained_models["physical_bank"])
    card_path = folder / "physical-s0.json"
    before = json.loads(card_path.read_text())
    target = _reachable_target(folder, bank)
    status = main(["calibrate-intervals", "--models", str(folder), "--val-bank", bank,
                   "--test-bank", bank, "--target", f"{target:.4f}", "--write",
                   "--json", str(tmp_path / "cal.json")])
    out, err = capsys.readouterr()
    assert status == 0, err
    for text in ("| test | peak |", "| test | median |", "| test | mean |", "temperatures:",
                 "before -> after"):
        assert text in out
    card = json.loads(card_path.read_text())
    temps = card["interval_temperature"]
    assert set(temps) == {"log_age", "log_mass", "av", "log_r_h"}
    assert all(t > 0 for t in temps.values())
    assert card["sha256"] == before["sha256"]                # weights untouched
    cal = card["interval_calibration"]
    assert cal["command"].startswith("python -m training calibrate-intervals")
    # Fitted and checked on the same bank here: the coverage after is the target.
    for name, c in cal["coverage"]["validation"].items():
        assert abs(c["after"] - target) < 0.03, name
    assert json.loads((tmp_path / "cal.json").read_text())["interval_temperature"] == temps
    load_checkpoint(card_path)
    assert load_ensemble("physical", folder).members[0][1]["interval_temperature"] == temps


def test_calibrate_intervals_refuses_a_classifier_bank(trained_models, tmp_path, capsys):
    folder = _models_copy(trained_models, tmp_path)
    status = main(["calibrate-intervals", "--models", str(folder),
                   "--val-bank", str(trained_models["classifier_bank"]),
                   "--test-bank", str(trained_models["physical_bank"])])
    err = capsys.readouterr().err
    assert status == 2
    assert "need a physical one" in err and len(err.strip().splitlines()) == 1
    assert "interval_temperature" not in json.loads((folder / "physical-s0.json").read_text())


def test_calibrate_intervals_unreachable_target(trained_models, tmp_path, capsys):
    folder = _models_copy(trained_models, tmp_path)
    bank = str(trained_models["physical_bank"])
    status = main(["calibrate-intervals", "--models", str(folder), "--val-bank", bank,
                   "--test-bank", bank, "--target", "0.2", "--write"])
    err = capsys.readouterr().err
    assert status == 2 and "cannot reach 0.2" in err and len(err.strip().splitlines()) == 1
    assert "interval_temperature" not in json.loads((folder / "physical-s0.json").read_text())
