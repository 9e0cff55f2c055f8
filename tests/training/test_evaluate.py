import json

import numpy as np
import pytest

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


def test_classifier_report_covers_the_issue_list(trained_models, tmp_path, capsys):
    out = tmp_path / "report"
    status = main(["evaluate", "--models", str(trained_models["models"]),
                   "--bank", str(trained_models["classifier_bank"]), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    report = (out / "classifier_report.md").read_text()
    for text in ("4-class, counts and row-normalised", "Binary, counts and row-normalised",
                 "average precision, binary", "entropy", "leave-one-field-out", "held out",
                 "Held-out fields pooled", "target"):
        assert text in report, text
    data = json.loads((out / "classifier_metrics.json").read_text())
    m = data["metrics"]
    conf, binary = np.array(m["confusion"]), np.array(m["binary_confusion"])
    # the binary matrix is the 4-class one folded: classes 1+2 vs 3+4
    assert binary.tolist() == [[conf[:2, :2].sum(), conf[:2, 2:].sum()],
                               [conf[2:, :2].sum(), conf[2:, 2:].sum()]]
    assert m["binary_accuracy"] == pytest.approx(np.trace(binary) / binary.sum())
    assert len(m["average_precision"]) == 4
    assert all(0 <= a <= 1 for a in m["average_precision"])
    assert set(m["reliability"]) == {"before", "after"}
    # the model trained on this very bank: its one field is not held out
    assert [r["in_training"] for r in data["per_field"].values()] == [True]
    assert data["held_out_fields"] is None
    assert data["targets_met"]["accuracy"] == (m["accuracy"] >= 0.80)


def test_physical_report(trained_models, tmp_path, capsys):
    from glue_starclf.core.checkpoints import load_checkpoint
    from glue_starclf.learn.banks import open_bank
    from training.train_physical import physical_metrics, predict
    out = tmp_path / "report"
    status = main(["evaluate", "--models", str(trained_models["models"]),
                   "--bank", str(trained_models["physical_bank"]), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    assert not (out / "classifier_report.md").exists()
    report = (out / "physical_report.md").read_text()
    for text in ("log age", "log mass", "A_V", "log r_h", "cluster/background AUC",
                 "F336W/F438W/F814W", "physical_report.png", "004 Fig. 10"):
        assert text in report, text
    assert (out / "physical_report.png").stat().st_size > 20_000
    data = json.loads((out / "physical_metrics.json").read_text())
    five = data["metrics"]["five_bands"]
    # one member: the ensemble's numbers are that member's
    stamps, truth, _ = open_bank(trained_models["physical_bank"])
    model, _ = load_checkpoint(trained_models["physical"])
    own = physical_metrics(predict(model, np.asarray(stamps),
                                   np.asarray(truth["distance_mpc"], np.float32)), truth)
    for key in ("p95_abs_err_log_age", "p95_abs_err_log_mass", "p95_abs_err_av",
                "p95_abs_err_log_r_h", "cb_auc"):
        assert five[key] == pytest.approx(own[key], rel=1e-5), key
        assert f"{five[key]:.3f}" in report
    assert five["n_clusters"] + five["n_background"] == len(truth)
    assert set(data["targets_met"]) == {"log_age", "log_mass", "av", "log_r_h", "cb_auc"}
    assert data["targets_met"]["cb_auc"] == (five["cb_auc"] >= 0.98)
    rows = five["by_visibility"]
    assert sum(r["n"] for r in rows) == five["n_clusters"]
    assert "By true visibility" in report and "| ≥ 100 |" in report
    for name in ("log_age", "log_mass", "av", "log_r_h"):
        interval = five[f"interval_{name}"]
        assert 0 <= interval["coverage"] <= 1 and interval["median_width"] > 0, name
    assert "within 16th–84th percentile | " + " | ".join(
        f"{five[f'interval_{n}']['coverage']:.2f}"
        for n in ("log_age", "log_mass", "av", "log_r_h")) in report
    bias = five["median_bias"]
    assert sum(r["n"] for r in bias["by_distance"]) == five["n_clusters"]
    assert "| 3.0 – 8.7 |" in report and "| 14.3 – 20.0 |" in report
    assert f"| all | {five['n_clusters']} | {bias['overall']['log_age']:+.3f} |" in report
    assert (out / "physical_bias.png").stat().st_size > 20_000


def test_physical_tools_give_a_conditioned_member_each_stamps_stellar_ci(trained_models,
                                                                        tmp_path, capsys):
    """evaluate, like-for-like and calibrate-intervals on a member that takes the
    stellar CI: each stamp's PSF value reaches it (a bank with other values scores
    otherwise)."""
    import shutil

    from astropy.table import Table

    from training_runs import physical_argv, run_training
    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(trained_models["classifier"].with_suffix(suffix), models)
    bank = trained_models["physical_bank"]
    status, _, err = run_training(*physical_argv(bank, models / "physical-ci.safetensors", 0, 1,
                                                 "--stellar-ci"))
    assert status == 0, err
    broad = tmp_path / "broad"
    shutil.copytree(bank, broad)
    truth = Table.read(broad / "truth.ecsv")
    truth["psf_stellar_ci"] += 0.2
    truth.write(broad / "truth.ecsv", overwrite=True)
    five = {}
    for name, folder in (("own", bank), ("broad", broad)):
        out = tmp_path / name
        assert main(["evaluate", "--models", str(models), "--bank", str(folder),
                     "--out", str(out)]) == 0, capsys.readouterr().err
        five[name] = json.loads((out / "physical_metrics.json").read_text())["metrics"][
            "five_bands"]
    keys = ("p95_abs_err_log_age", "p95_abs_err_log_mass", "p95_abs_err_av",
            "p95_abs_err_log_r_h")
    assert any(five["own"][k] != five["broad"][k] for k in keys)
    assert main(["like-for-like", "--models", str(models), "--n", "30", "--seed", "1"]) == 0
    assert main(["calibrate-intervals", "--models", str(models), "--val-bank", str(bank),
                 "--test-bank", str(broad)]) == 0, capsys.readouterr().err


def _md_cells(report, label):
    """The cells after the first one of the Markdown table row ``| label | ...``."""
    line = next(row for row in report.splitlines() if row.startswith(f"| {label} |"))
    return [c.strip() for c in line.split("|")[2:-1]]


def test_both_families_in_one_run(trained_models, tmp_path, capsys):
    from glue_starclf.learn.banks import open_bank
    out = tmp_path / "report"
    cbank, pbank = trained_models["classifier_bank"], trained_models["physical_bank"]
    status = main(["evaluate", "--models", str(trained_models["models"]),
                   "--bank", str(cbank), "--bank", str(pbank), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    # classifier: on its own bank only, every labelled row once, in its true class's row
    data = json.loads((out / "classifier_metrics.json").read_text())
    assert data["banks"] == [str(cbank)]
    m, classes = data["metrics"], np.asarray(open_bank(cbank)[1]["class"], int)
    conf = np.array(m["confusion"])
    assert m["n"] == conf.sum() == len(classes)
    assert conf.sum(axis=1).tolist() == np.bincount(classes - 1, minlength=4).tolist()
    assert m["accuracy"] == pytest.approx(np.trace(conf) / len(classes))
    assert m["recall"] == pytest.approx((np.diag(conf) / conf.sum(axis=1)).tolist())
    # ... and the Markdown report shows the JSON's numbers
    report = (out / "classifier_report.md").read_text()
    assert f"({len(classes)} sources)" in report
    for label, value in [("4-class accuracy", m["accuracy"]),
                         ("binary accuracy", m["binary_accuracy"]),
                         *((f"recall class {k + 1}", r) for k, r in enumerate(m["recall"]))]:
        assert float(_md_cells(report, label)[0]) == pytest.approx(value, abs=1e-3), label
    for k in range(4):
        assert [int(c.split()[0]) for c in _md_cells(report, k + 1)] == conf[k].tolist()
    # physical: on its own bank only, its clusters and background as the bank's p_cb says
    data = json.loads((out / "physical_metrics.json").read_text())
    assert data["banks"] == [str(pbank)]
    cl = np.asarray(open_bank(pbank)[1]["p_cb"]) > 0.5
    assert 0 < cl.sum() < len(cl)
    five, three = data["metrics"]["five_bands"], data["metrics"]["three_bands"]
    for mm in (five, three):
        assert (mm["n_clusters"], mm["n_background"]) == (cl.sum(), (~cl).sum())
        assert 0 <= mm["cb_auc"] <= 1
    assert sum(row["n"] for row in five["by_visibility"]) == cl.sum()
    report = (out / "physical_report.md").read_text()
    assert f"({cl.sum()} clusters, {(~cl).sum()} background stamps)" in report
    rows = {"log_age": "log age [yr]", "log_mass": "log mass [Msun]", "av": "A_V [mag]",
            "log_r_h": "log r_h [pc]"}
    for name, label in rows.items():
        key = f"p95_abs_err_{name}"
        assert five[key] >= 0 and three[key] >= 0
        cells = _md_cells(report, f"95th percentile of abs. error, {label}")
        assert [float(c) for c in cells[:2]] == pytest.approx([five[key], three[key]], abs=1e-3)
        assert data["targets_met"][name] == (five[key] <= data["targets"][name])
    cells = _md_cells(report, "cluster/background AUC")
    assert [float(c) for c in cells[:2]] == pytest.approx([five["cb_auc"], three["cb_auc"]],
                                                          abs=1e-3)


def test_physical_bank_without_physical_models(trained_models, tmp_path, capsys):
    import shutil
    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(trained_models["classifier"].with_suffix(suffix), models)
    status = main(["evaluate", "--models", str(models), "--bank",
                   str(trained_models["physical_bank"]), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2
    assert "no physical models" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_training_fields_from_the_cards(tmp_path):
    from astropy.table import Table

    from training.evaluate import training_fields
    legus = tmp_path / "legus"
    legus.mkdir()
    (legus / "meta.json").write_text(json.dumps({"kind": "legus"}))
    Table({"field": ["ngc1", "ngc1", "ngc2", "ngc3"]}).write(legus / "truth.ecsv")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "meta.json").write_text(json.dumps({"kind": "classifier"}))
    Table({"class": [1, 2]}).write(plain / "truth.ecsv")
    cards = [{"training": {"banks": [str(legus), str(plain)], "val_fields": "ngc3"}},
             {"training": {"banks": [str(legus)], "val_fields": "ngc2,ngc3"}},
             {"training": {"banks": [str(tmp_path / "gone")], "val_fields": ""}}]
    used, missing = training_fields(cards)
    assert used == {"ngc1", "ngc2", "classifier-plain"}
    assert missing == [str(tmp_path / "gone")]
    assert training_fields(cards[1:2]) == ({"ngc1"}, [])


def test_precision_recall_and_roc():
    from training.evaluate import precision_recall, roc_curve
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    prec, rec, ap = precision_recall(score, np.array([1, 0, 1, 0, 0], bool))
    np.testing.assert_allclose(prec, [1, 0.5, 2 / 3, 0.5, 0.4])
    np.testing.assert_allclose(rec, [0.5, 0.5, 1, 1, 1])
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    fpr, tpr = roc_curve(score, np.array([1, 1, 0, 0, 0], bool))
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 2 / 3, 1])


def test_errors_by_visibility():
    from training.evaluate import errors_by_visibility
    vis = np.array([1.0, 5.0, 20.0, 50.0, 500.0, 9.99])
    true = np.zeros(6)
    pred = np.array([1.0, -3.0, 0.5, 0.25, 0.1, 2.0])
    rows = errors_by_visibility({"log_age": (true, pred)}, vis, edges=(0, 10, 100, np.inf))
    assert [(r["lo"], r["hi"], r["n"]) for r in rows] == [(0, 10, 3), (10, 100, 2), (100, None, 1)]
    assert rows[0]["median_log_age"] == 2.0
    assert rows[0]["p95_log_age"] == pytest.approx(np.percentile([1, 3, 2], 95))
    assert rows[1]["median_log_age"] == pytest.approx(0.375)
    assert rows[2]["p95_log_age"] == pytest.approx(0.1)
    empty = errors_by_visibility({"log_age": (true, pred)}, vis, edges=(1000, np.inf))
    assert empty == [{"lo": 1000, "hi": None, "n": 0, "median_log_age": None,
                      "p95_log_age": None}]


def test_median_bias_by_distance_and_true_value():
    from training.evaluate import median_bias
    dist = np.array([3.0, 5.0, 9.0, 12.0, 15.0, 20.0])
    true = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    pred = true + np.array([0.1, 0.3, -0.2, -0.4, 0.0, 1.0])
    bias = median_bias({"log_mass": (true, pred)}, dist, edges=(3, 8, 14, 20), n_true_bins=2)
    assert bias["overall"]["log_mass"] == pytest.approx(0.05)
    # thirds [3, 8), [8, 14), [14, 20]: the last one holds 20 Mpc
    assert [(r["n"], r["log_mass"]) for r in bias["by_distance"]] == [
        (2, pytest.approx(0.2)), (2, pytest.approx(-0.3)), (2, pytest.approx(0.5))]
    (lo1, hi1, n1, m1), (lo2, hi2, n2, m2) = bias["by_true"]["log_mass"]
    assert (lo1, hi2, n1, n2) == (1.0, 6.0, 3, 3)
    assert m1 == pytest.approx(0.1) and m2 == pytest.approx(0.0)
    empty = median_bias({"log_mass": (true, pred)}, dist, edges=(30, 40))
    assert empty["by_distance"] == [{"lo": 30.0, "hi": 40.0, "n": 0, "log_mass": None}]


def test_interval_coverage():
    from training.evaluate import interval_coverage
    true = np.array([0.0, 1.0, 2.0, 3.0])
    lo = np.array([-1.0, 1.0, 2.5, 0.0])
    hi = np.array([1.0, 2.0, 3.0, 2.0])
    # inside, on the lower edge, below, above
    assert interval_coverage(true, lo, hi) == {"coverage": 0.5, "median_width": 1.5}
    assert interval_coverage([], [], []) == {"coverage": None, "median_width": None}


def test_robustness_report_per_perturbation(trained_models, tmp_path, capsys):
    from training.robustness import make_robustness_banks
    banks = make_robustness_banks("classifier", tmp_path / "rob", n=60, seed=2,
                                  only=["nominal", "shallow", "zeropoint"])
    pbanks = make_robustness_banks("physical", tmp_path / "prob", n=40, seed=2,
                                   only=["nominal", "psf_broader"])
    argv = ["evaluate", "--models", str(trained_models["models"]), "--robustness",
            "--out", str(tmp_path / "r")]
    for b in banks + pbanks:
        argv += ["--bank", str(b)]
    status = main(argv)
    assert status == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "r" / "robustness_metrics.json").read_text())
    assert list(data["classifier"]) == ["nominal", "shallow", "zeropoint"]
    assert data["classifier"]["shallow"]["perturbation"] == "exposure_factor=0.5"
    assert data["classifier"]["nominal"]["n"] == 60
    assert set(data["physical"]) == {"nominal", "psf_broader"}
    assert data["physical"]["psf_broader"]["p95_log_age"] > 0
    report = (tmp_path / "r" / "robustness_report.md").read_text()
    assert "| shallow | exposure_factor=0.5 | 60 |" in report


def _legus_subset(folder, names):
    """A folder with copies of the shared LEGUS catalogs of ``names`` (skip if absent)."""
    from pathlib import Path
    legus = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legus"
    if not legus.is_dir():
        pytest.skip("../shared/data/legus not found")
    folder.mkdir()
    for name in names:
        src = next(legus.glob(f"*_{name}_*.tab"))
        (folder / src.name).write_text(src.read_text())
    return folder


def test_shortcut_audit_on_a_bank_and_real_catalogs(trained_models, tmp_path, capsys):
    # Three small catalogs keep it quick.
    sub = _legus_subset(tmp_path / "legus", ("ngc4656", "ngc5253", "ngc3738"))
    status = main(["shortcut-audit", "--bank", str(trained_models["classifier_bank"]),
                   "--legus", str(sub), "--out", str(tmp_path / "a"), "--max-stamps", "400"])
    assert status == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "a" / "shortcut_audit.json").read_text())
    mock = data["banks"][str(trained_models["classifier_bank"])]
    assert mock["n"] == 400 and 0.25 <= mock["accuracy"] <= 1
    assert data["real"]["split"] == "leave-one-galaxy-out"
    assert set(data["real"]["per_galaxy"]) == {"ngc4656", "ngc5253", "ngc3738"}
    assert "Shortcut margin" in (tmp_path / "a" / "shortcut_audit.md").read_text()


def test_shortcut_audit_bad_legus_folder(trained_models, tmp_path, capsys):
    status = main(["shortcut-audit", "--bank", str(trained_models["classifier_bank"]),
                   "--legus", str(tmp_path / "nope"), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert status == 2 and "nope" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_shortcut_audit_refuses_a_physical_bank(trained_models, tmp_path, capsys):
    status = main(["shortcut-audit", "--bank", str(trained_models["classifier_bank"]),
                   "--bank", str(trained_models["physical_bank"]), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(trained_models["physical_bank"]) in err and "no classes" in err
    assert not (tmp_path / "a").exists()


def test_shortcut_audit_class4_versus_anchored_classes(trained_models, tmp_path, capsys):
    sub = _legus_subset(tmp_path / "legus", ("ngc5253",))
    bank = str(trained_models["classifier_bank"])
    status = main(["shortcut-audit", "--bank", bank, "--class4-versus", bank, "--legus", str(sub),
                   "--out", str(tmp_path / "a"), "--max-stamps", "200"])
    assert status == 0, capsys.readouterr().err
    versus = json.loads((tmp_path / "a" / "shortcut_audit.json").read_text())["class4_versus"]
    assert set(versus) == {bank, "real"}
    for r in versus.values():
        assert 50 <= r["n_a_side"] <= 200 and 0.3 <= r["accuracy"] <= 1
        assert set(r["single_feature"]) == {"m_F275W", "m_F336W", "m_F438W", "m_F555W",
                                            "m_F814W", "F275W-F336W", "F336W-F438W",
                                            "F438W-F555W", "F555W-F814W", "CI_V"}
        assert set(r["median_colours"]) == {"F275W-F336W", "F336W-F438W", "F438W-F555W",
                                            "F555W-F814W"}
    md = (tmp_path / "a" / "shortcut_audit.md").read_text()
    assert "Class 4 against anchored classes 1-3" in md and "real LEGUS catalogs" in md


def test_shortcut_audit_class4_versus_a_bank_without_classes(trained_models, tmp_path, capsys):
    status = main(["shortcut-audit", "--bank", str(trained_models["classifier_bank"]),
                   "--class4-versus", str(trained_models["physical_bank"]),
                   "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(trained_models["physical_bank"]) in err and "no classes" in err
    assert not (tmp_path / "a").exists()


def test_shortcut_audit_of_a_one_class_bank_needs_class4_versus(tmp_path, capsys):
    from astropy.table import Table
    bank = tmp_path / "u"
    bank.mkdir()
    np.save(bank / "stamps.npy", np.ones((60, 5, 32, 32), np.float32))
    Table({"class": np.full(60, 4)}).write(bank / "truth.ecsv")
    (bank / "meta.json").write_text(json.dumps({"kind": "unmatched"}))
    status = main(["shortcut-audit", "--bank", str(bank), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert str(bank) in err and "--class4-versus" in err
    assert not (tmp_path / "a").exists()


def test_classifier_report_splits_human_and_drawn_classes(trained_models, tmp_path, capsys):
    """Anchored rows with a LEGUS human class are reported apart from drawn ones."""
    import shutil
    from astropy.table import Table
    bank = tmp_path / "anchored"
    shutil.copytree(trained_models["classifier_bank"], bank)
    t = Table.read(bank / "truth.ecsv")
    t["legus_class"] = np.where(np.arange(len(t)) % 3 == 0, 0, t["class"])
    t.write(bank / "truth.ecsv", overwrite=True)
    out = tmp_path / "report"
    assert main(["evaluate", "--models", str(trained_models["models"]), "--bank", str(bank),
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert "Human and drawn classes" in (out / "classifier_report.md").read_text()
    data = json.loads((out / "classifier_metrics.json").read_text())
    human, drawn = data["by_label_source"]["human"], data["by_label_source"]["drawn"]
    assert (human["n"], drawn["n"]) == (len(t) - len(t[::3]), len(t[::3]))
    pooled = (human["n"] * human["accuracy"] + drawn["n"] * drawn["accuracy"]) / len(t)
    assert pooled == pytest.approx(data["metrics"]["accuracy"])
    # a bank of random sources has no catalog rows: no split
    assert main(["evaluate", "--models", str(trained_models["models"]), "--bank",
                 str(trained_models["classifier_bank"]), "--out", str(tmp_path / "r2")]) == 0
    assert json.loads((tmp_path / "r2" / "classifier_metrics.json").read_text())[
        "by_label_source"] == {}
