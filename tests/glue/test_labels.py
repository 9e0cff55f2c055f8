"""`glue_starclf.glue.labels` and `glue_starclf.glue.finetuning` without Qt: votes, orders,
summaries, labels files and the user's model versions."""

import math
import re

import numpy as np
import pytest
from astropy.table import Table

from glue_starclf.glue.data import table_to_data
from glue_starclf.glue.finetuning import (USER_MODELS_ENV, check_version_name, list_user_models,
                                          user_models_dir)
from glue_starclf.glue.labels import (check_labeller, consensus, export_labels, format_votes,
                                      import_labels, label_summary, labelling_order, merge_votes,
                                      parse_votes, set_votes, vote_fractions, votes_of)


def results(n=40, seed=0):
    """A results-like dataset: ids, positions, model classes, agreement, entropy, magnitude."""
    rng = np.random.default_rng(seed)
    t = Table({"id": np.arange(1, n + 1), "x": rng.uniform(0, 500, n),
               "y": rng.uniform(0, 500, n), "ra": 150 + rng.uniform(0, 0.005, n),
               "dec": 2 + rng.uniform(0, 0.005, n), "class": rng.integers(1, 5, n),
               "class_agreement": rng.choice([0.2, 0.6, 1.0], n),
               "class_entropy": rng.uniform(0, 1.3, n), "mag_F555W": rng.uniform(19, 25, n)})
    data = table_to_data(t, "star clusters")
    data.meta["starclf"] = "results"
    return data


def test_votes_text_round_trip_and_consensus():
    votes = {"ana": (2, "2026-01-01T10:00:00+00:00"), "ben": (3, "2026-01-01T11:00:00+00:00")}
    assert parse_votes(format_votes(votes)) == votes
    assert consensus(votes) == (3.0, "ben", "2026-01-01T11:00:00+00:00")  # tie: later vote
    votes["cy"] = (2, "2026-01-01T09:00:00+00:00")
    assert consensus(votes)[0] == 2.0  # two votes beat one
    assert consensus({"ana": (0, "t")})[0] == 0.0
    assert math.isnan(consensus({})[0])
    with pytest.raises(ValueError, match="malformed vote"):
        parse_votes("ana=7@t")


@pytest.mark.parametrize("name", ["", "  ", "a;b", "a=b", "a@b", "a\tb"])
def test_bad_labeller_names(name):
    reason = ("give the labeller's name" if not name.strip() else
              f"labeller name {re.escape(repr(name))} may not contain ';', '=', '@'")
    with pytest.raises(ValueError, match=reason):
        check_labeller(name)


def test_set_votes_one_vote_per_labeller():
    data = results()
    set_votes(data, [0, 1], "ana", [1, 2], when="2026-01-01T10:00:00+00:00")
    set_votes(data, [1], "ben", 4, when="2026-01-01T11:00:00+00:00")
    set_votes(data, [0], "ana", 3, when="2026-01-01T12:00:00+00:00")  # replaces ana's 1
    assert parse_votes(votes_of(data)[0]) == {"ana": (3, "2026-01-01T12:00:00+00:00")}
    np.testing.assert_array_equal(np.asarray(data["class_user"])[:2], [3, 4])
    assert np.isnan(np.asarray(data["class_user"])[2:]).all()
    assert list(np.asarray(data["labeller"])[:3]) == ["ana", "ben", ""]
    rows, fractions = vote_fractions(data)
    assert list(rows) == [0, 1]
    np.testing.assert_allclose(fractions, [[0, 0, 1, 0], [0, .5, 0, .5]])
    with pytest.raises(ValueError, match="unknown class"):
        set_votes(data, [0], "ana", 5)
    with pytest.raises(ValueError, match="out of range"):
        set_votes(data, [400], "ana", 1)


def test_merge_votes_newer_wins():
    old = {"ana": (1, "2026-01-02")}
    assert merge_votes(old, {"ana": (2, "2026-01-01")}) == (old, 0, 0)
    assert merge_votes(old, {"ana": (2, "2026-01-03")}) == ({"ana": (2, "2026-01-03")}, 0, 1)
    assert merge_votes(old, {"ben": (4, "x")})[1:] == (1, 0)


def test_summary_counts_and_confusion():
    data = results()
    model = np.asarray(data["class"], int)
    set_votes(data, range(10), "ana", model[:10])
    set_votes(data, [10], "ana", 0)
    other = model[11] % 4 + 1
    set_votes(data, [11], "ana", other)
    s = label_summary(data, "ana")
    assert (s["labelled"], s["mine"], s["not_sure"], s["compared"], s["agree"]) == \
        (12, 12, 1, 11, 10)
    assert s["confusion"][other - 1, model[11] - 1] == 1
    assert s["agreement"] == pytest.approx(10 / 11)


def test_orders():
    data = results(n=400, seed=3)
    rows = np.arange(400)
    dis = labelling_order(data, rows, "disagreement")
    agree = np.asarray(data["class_agreement"])[dis]
    assert (np.diff(agree) >= 0).all()
    strat = labelling_order(data, rows, "stratified")
    assert sorted(strat) == list(rows)
    # the first 16 hold one source of each class x magnitude-quartile stratum
    cls = np.asarray(data["class"])[strat[:16]]
    mag = np.asarray(data["mag_F555W"])
    quartile = np.searchsorted(np.quantile(mag, [.25, .5, .75]), mag[strat[:16]], side="right")
    assert len(set(zip(cls, quartile))) == 16
    with pytest.raises(ValueError, match="unknown labelling order"):
        labelling_order(data, rows, "random")


def test_export_import_round_trip(tmp_path):
    data = results()
    set_votes(data, [0, 1, 2], "ana", [1, 2, 0], when="2026-01-01T10:00:00+00:00")
    set_votes(data, [1], "ben", 3, when="2026-01-01T11:00:00+00:00")
    with pytest.raises(ValueError, match="no labels"):
        export_labels(results(), tmp_path / "none.ecsv")
    path = tmp_path / "labels.ecsv"
    assert export_labels(data, path) == 4
    with pytest.raises(FileExistsError):
        export_labels(data, path)
    fresh = results()
    r = import_labels(fresh, path)
    assert (r["added"], r["sources"], r["unknown"]) == (4, 3, 0)
    np.testing.assert_array_equal(votes_of(fresh), votes_of(data))
    # CSV and matching by position only (ids renumbered)
    t = Table.read(path)
    t["id"] = t["id"] + 1000
    t.write(tmp_path / "moved.csv")
    r = import_labels(results(), tmp_path / "moved.csv")
    assert (r["added"], r["by_position"], r["unknown"]) == (4, 4, 0)
    # a labels file without a labeller column: the file's name votes
    t = Table({"id": [5], "class": [4]})
    t.write(tmp_path / "mine.ecsv")
    fresh = results()
    import_labels(fresh, tmp_path / "mine.ecsv")
    assert parse_votes(votes_of(fresh)[4])["mine"][0] == 4


@pytest.mark.parametrize("table, message", [
    (Table({"id": [1], "p": [1]}), "no class_user or class column"),
    (Table({"id": [1], "class": [9]}), "unknown class 9"),
    (Table({"name": ["a"], "class": [1]}), "no id, ra/dec or x/y"),
])
def test_import_bad_files(tmp_path, table, message):
    path = tmp_path / "bad.ecsv"
    table.write(path)
    with pytest.raises(ValueError, match=message):
        import_labels(results(), path)


def test_import_missing_or_unreadable(tmp_path):
    missing = tmp_path / "missing.ecsv"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(str(missing))}: no such labels"):
        import_labels(results(), missing)
    junk = tmp_path / "junk.ecsv"
    junk.write_text("# %ECSV 1.0\n---\nnot yaml: [\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(junk))}: cannot read it as a labels"):
        import_labels(results(), junk)


def test_user_models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(USER_MODELS_ENV, str(tmp_path / "mine"))
    assert user_models_dir() == tmp_path / "mine"
    assert list_user_models() == []
    (tmp_path / "mine" / "taken").mkdir(parents=True)
    with pytest.raises(ValueError, match="exists"):
        check_version_name("taken")
    for bad in ("", "../up", "a b", "-x"):
        with pytest.raises(ValueError, match="version name"):
            check_version_name(bad)
    assert check_version_name(" new-1.0 ") == "new-1.0"
    monkeypatch.delenv(USER_MODELS_ENV)
    assert user_models_dir().parts[-2:] == ("starclf", "models")
