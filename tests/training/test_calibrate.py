import json
import shutil

from training.__main__ import main


def _models_copy(trained_models, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(trained_models["models"], folder)
    return folder


def _overwide_posteriors(members, stamps, distance_mpc, mask=None, batch=256,
                         stellar_ci=None):
    """Posteriors whose intervals are twice too wide, from the bank's truth (which the
    patched `bank_posteriors` of the test reads): truth scattered by one bin, claimed
    two. The one-epoch test model's own intervals cover 0.65-0.78 whatever the
    temperature, too little range to test the fit with."""
    import numpy as np

    from glue_starclf.core import networks as N
    truth = _overwide_posteriors.truth
    rng = np.random.default_rng(0)
    n = len(truth)
    w = {k: b[1] - b[0] for k, b in (("log_age", N.LOG_AGE_BINS), ("av", N.AV_BINS),
                                     ("log_mass", N.LOG_MASS_BINS), ("r_h", N.LOG_RH_BINS))}
    noisy = {k: np.asarray(truth[k] if k != "r_h" else np.log10(truth["r_h"]), float)
             + rng.normal(0, w[k], n) for k in w}
    grid = N.gaussian_targets_3d(noisy["log_age"], noisy["av"], noisy["log_mass"],
                                 sigma_bins=2.0)
    return {"grid": grid, "r_h": N.gaussian_targets_1d(noisy["r_h"], N.LOG_RH_BINS, 2.0)}


def test_calibrate_intervals_writes_the_cards(trained_models, tmp_path, capsys, monkeypatch):
    from glue_starclf.core.checkpoints import load_checkpoint
    from glue_starclf.core.predict import load_ensemble
    folder = _models_copy(trained_models, tmp_path)
    bank = str(trained_models["physical_bank"])
    card_path = folder / "physical-s0.json"
    before = json.loads(card_path.read_text())
    from glue_starclf.learn import intervals
    from glue_starclf.learn.banks import open_bank
    _overwide_posteriors.truth = open_bank(bank)[1]
    monkeypatch.setattr(intervals, "bank_posteriors", _overwide_posteriors)
    status = main(["calibrate-intervals", "--models", str(folder), "--val-bank", bank,
                   "--test-bank", bank, "--write", "--json", str(tmp_path / "cal.json")])
    out, err = capsys.readouterr()
    assert status == 0, err
    for text in (f"| test {bank} | peak |", f"| test {bank} | median |",
                 f"| test {bank} | mean |", "temperatures:", "before -> after",
                 "posterior tilt", "median error of log mass"):
        assert text in out
    card = json.loads(card_path.read_text())
    tilt = card["posterior_tilt"]
    assert set(tilt) == {"log_age", "av", "log_mass", "log_r_h"}
    assert all(len(c) == 3 for c in tilt.values())
    # Fitted by maximum likelihood on this bank: no worse than no tilt there.
    nll = card["interval_calibration"]["nll"]["validation"][0]
    assert nll["after"]["grid"] <= nll["before"]["grid"] + 1e-9
    assert nll["after"]["log_r_h"] <= nll["before"]["log_r_h"] + 1e-9
    temps = card["interval_temperature"]
    assert set(temps) == {"log_age", "log_mass", "av", "log_r_h"}
    assert all(t > 0 for t in temps.values())
    assert card["sha256"] == before["sha256"]                # weights untouched
    cal = card["interval_calibration"]
    assert cal["command"].startswith("python -m training calibrate-intervals")
    # Fitted and checked on the same bank here: the coverage after is the target.
    for name, c in cal["coverage"]["validation"][0].items():
        assert c["before"] > 0.8 and abs(c["after"] - 0.68) < 0.03, name
        assert temps[name] < 0.6, name
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
