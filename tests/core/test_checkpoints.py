"""Checkpoints: safetensors weights + JSON card with sha256, loaded without pickle."""

import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

from glue_starclf.core.checkpoints import list_models, load_card, load_checkpoint, save_checkpoint, \
    sha256_file
from glue_starclf.core.networks import PhysicalNet, StarClassifier


def _classifier_card():
    return {"family": "classifier", "architecture": "StarClassifier", "kwargs": {},
            "bands": ["F275W", "F336W", "F438W", "F555W", "F814W"], "stamp_size": 32,
            "normalisation": "classifier-asinh-v1", "seed": 3}


@pytest.fixture
def saved(tmp_path):
    """A randomly initialised StarClassifier saved as a checkpoint."""
    torch.manual_seed(3)
    model = StarClassifier().eval()
    path = tmp_path / "classifier-x.safetensors"
    card_path = save_checkpoint(model, path, _classifier_card())
    return model, path, card_path


def _fixed_input():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 32, 32, generator=g)
    mask = torch.ones(6, 5)
    mask[1, 0] = 0.0
    return x, mask


def test_round_trip_gives_the_same_outputs(saved):
    model, path, card_path = saved
    assert card_path == path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    # hashlib on the whole file, not sha256_file: the card is written with that one
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["weights"] == path.name
    assert card["card_version"] == 1
    x, mask = _fixed_input()
    with torch.inference_mode():
        want = model(x, mask).numpy()
    for which in (path, card_path):  # the weights or the card
        loaded, lcard = load_checkpoint(which)
        assert not loaded.training
        assert lcard["seed"] == 3 and lcard["_path"] == str(card_path)
        with torch.inference_mode():
            got = loaded(x, mask).numpy()
        np.testing.assert_array_equal(got, want)


def test_save_refuses_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match="safetensors"):
        save_checkpoint(StarClassifier(), tmp_path / "m.pt", _classifier_card())
    assert list(tmp_path.iterdir()) == []


def test_corrupt_weights_fail_the_hash_check(saved):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    for i in (len(data) // 2, len(data) - 5):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256") as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value)


def test_pickle_renamed_safetensors_is_never_unpickled(saved, monkeypatch):
    model, path, card_path = saved
    torch.save(model.state_dict(), path)  # a torch pickle (zip) under the .safetensors name
    card = json.loads(card_path.read_text())
    card["sha256"] = sha256_file(path)  # the card vouches for it: only the format can tell
    card_path.write_text(json.dumps(card))

    def no_pickle(*args, **kwargs):
        raise AssertionError("load_checkpoint unpickled something")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    with pytest.raises(ValueError, match="not a readable safetensors") as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value)


def test_unknown_architecture(saved):
    _, path, card_path = saved
    card = json.loads(card_path.read_text())
    card["architecture"] = "NoSuchNet"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="NoSuchNet"):
        load_checkpoint(path)


def test_weights_of_another_network(saved):
    _, path, card_path = saved
    card = json.loads(card_path.read_text())
    card["architecture"] = "PhysicalNet"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="do not fit PhysicalNet"):
        load_checkpoint(path)


def test_missing_weights(saved):
    _, path, card_path = saved
    path.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        load_checkpoint(card_path)


def test_missing_card_and_bad_card(saved, tmp_path):
    _, path, card_path = saved
    with pytest.raises(FileNotFoundError, match="nosuch.json"):
        load_card(tmp_path / "nosuch.json")
    card_path.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable model card"):
        load_checkpoint(path)
    card_path.write_text(json.dumps({"architecture": "StarClassifier", "kwargs": {}}))
    with pytest.raises(ValueError, match="lacks 'weights'"):
        load_checkpoint(path)


def test_list_models_on_a_folder(tmp_path):
    save_checkpoint(StarClassifier(), tmp_path / "b-classifier.safetensors", _classifier_card())
    save_checkpoint(PhysicalNet(), tmp_path / "a-physical.safetensors",
                    {"family": "physical", "architecture": "PhysicalNet", "kwargs": {},
                     "stamp_size": 64})
    # a card whose weights are gone, and unrelated JSON, are not models
    (tmp_path / "orphan.json").write_text(json.dumps({"architecture": "StarClassifier"}))
    (tmp_path / "notes.txt").write_text("hello")
    cards = list_models(tmp_path)
    assert [c["family"] for c in cards] == ["physical", "classifier"]  # sorted by name
    assert [c["weights"] for c in cards] == ["a-physical.safetensors",
                                             "b-classifier.safetensors"]
    assert list_models(tmp_path / "empty-but-missing") == []


@pytest.mark.parametrize("change, key, words", [
    ({"kwargs": {"width": [8, 8, 8, 8, 8], "depth": 3}}, "kwargs", ["takes no argument", "'depth'"]),
    ({"family": None}, "family", ["lacks 'family'"]),
    ({"stamp_size": None}, "stamp_size", ["lacks 'stamp_size'"]),
    ({"stamp_size": "32"}, "stamp_size", ["'32'", "positive whole number"]),
    ({"temperature": 0.0}, "temperature", ["0.0", "positive number"]),
    ({"temperature": -1.5}, "temperature", ["-1.5", "positive number"]),
    ({"temperature": "warm"}, "temperature", ["'warm'", "positive number"]),
    ({"family": "regressor"}, "family", ["'regressor'", "classifier, physical"]),
])
def test_bad_card_keys_are_refused_naming_card_and_key(saved, change, key, words):
    """Checked when the card is read: before a network is built or a member dropped."""
    _, path, card_path = saved
    card = json.loads(card_path.read_text())
    for k, v in change.items():
        if v is None:
            card.pop(k, None)
        else:
            card[k] = v
    card_path.write_text(json.dumps(card))
    for call in (load_card, load_checkpoint):
        with pytest.raises(ValueError) as exc:
            call(card_path)
        text = str(exc.value)
        assert str(card_path) in text and key in text and "\n" not in text
        for w in words:
            assert w in text
    with pytest.raises(ValueError, match=key):
        list_models(card_path.parent)  # a bad member is not silently left out
