import json

from training.__main__ import main


def test_audit_field_on_a_small_mock_field(trained_models, tmp_path, capsys):
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    write_mosaic(random_field(seed=0, shape=(512, 512), n_sources=60), tmp_path / "f")
    status = main(["audit-field", "--field", str(tmp_path / "f"), "--distance-mpc", "10",
                   "--models", str(trained_models["models"]), "--json", str(tmp_path / "a.json")])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "LEGUS defaults (the field's own CI cut):" in out and "loose (CI >= 1.3" in out
    res = json.loads((tmp_path / "a.json").read_text())["settings"]
    loose = res["loose (CI >= 1.3, no magnitude or band cut)"]
    legus = res["LEGUS defaults (the field's own CI cut)"]
    assert legus["n_detections"] < loose["n_detections"]
    assert legus["n_matched"] + legus["n_unmatched"] == legus["n_detections"]
    assert legus["cuts"]["n_after_bands"] == legus["n_detections"]
    assert 0 < loose["completeness"]["1-3"] <= 1
    assert sum(loose["unmatched_called"].values()) == loose["n_unmatched"]
    assert loose["n_unmatched_isolated"] + loose["n_unmatched_near"] == loose["n_unmatched"]
    assert "farther than 10 px from every mock source" in out
    # The default cut is the field's own: its stellar CI (here the default, too few
    # stars) + 0.05 mag; the fixed 1.4 of before is the third setting.
    fixed = res["LEGUS cuts, the fixed CI >= 1.4"]
    from glue_starclf.core.stellar_ci import field_ci_cut
    from glue_starclf.io.mosaic import open_mosaic
    with open_mosaic(sorted(str(p) for p in (tmp_path / "f").glob("mock_*_drc.fits"))) as m:
        assert legus["cuts"]["ci_min"] == field_ci_cut(m, (256, 256))[0]
    assert fixed["cuts"]["ci_min"] == 1.4
    assert fixed["n_matched"] + fixed["n_unmatched"] == fixed["n_detections"]


def test_audit_field_without_a_field(tmp_path, capsys):
    status = main(["audit-field", "--field", str(tmp_path), "--distance-mpc", "10"])
    err = capsys.readouterr().err
    assert status == 2 and "starclf simulate field" in err and len(err.strip().splitlines()) == 1
