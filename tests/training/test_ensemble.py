"""``python -m training ensemble``: seeded members, kept on re-run, reserved options."""

from glue_starclf.core.checkpoints import load_card
from glue_starclf.core.predict import load_ensemble


def test_ensemble_trains_seeded_members_and_keeps_them(trained_models, run_training, tmp_path):
    argv = ["ensemble", "--family", "classifier", "--members", "2", "--first-seed", "3",
            "--out", tmp_path, "--", "--bank", trained_models["classifier_bank"],
            "--epochs", "1"]
    status, out, err = run_training(*argv)
    assert status == 0, err
    paths = [tmp_path / "classifier-s3.safetensors", tmp_path / "classifier-s4.safetensors"]
    cards = [load_card(p) for p in paths]
    assert [c["seed"] for c in cards] == [3, 4]
    assert "train-classifier" in cards[0]["training"]["command"]
    assert not list(tmp_path.glob("*.state.pt"))
    assert "| classifier-s3 |" in out and "| classifier-s4 |" in out
    assert len(load_ensemble("classifier", tmp_path).members) == 2

    stamp = [p.stat().st_mtime_ns for p in paths]
    status, out, err = run_training(*argv)
    assert status == 0, err
    assert "exists, kept" in out
    assert [p.stat().st_mtime_ns for p in paths] == stamp


def test_ensemble_rejects_options_it_sets(trained_models, run_training, tmp_path):
    status, _, err = run_training("ensemble", "--family", "physical", "--out", tmp_path, "--",
                                  "--bank", trained_models["physical_bank"], "--seed", "1")
    assert status == 2
    assert "--seed" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.safetensors"))


def test_ensemble_member_count_must_be_positive(run_training, tmp_path):
    status, _, err = run_training("ensemble", "--family", "physical", "--members", "0",
                                  "--out", tmp_path)
    assert status == 2 and "--members 0" in err
