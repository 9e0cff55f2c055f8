"""Classifier bank: shapes, class shares, determinism, centring."""

import numpy as np
import pytest

from glue_starclf.sim.classbank import classifier_bank


@pytest.fixture(scope="module")
def bank():
    return classifier_bank(40, seed=3)


def test_shapes_and_columns(bank):
    stamps, truth = bank
    assert stamps.shape == (40, 5, 32, 32) and stamps.dtype == np.float32
    assert len(truth) == 40
    for col in ("class", "subtype", "distance_mpc", "log_age", "log_mass", "av", "r_h",
                "mag_F555W", "dx", "dy"):
        assert col in truth.colnames


def test_all_classes_with_equal_shares(bank):
    _, truth = bank
    assert np.bincount(truth["class"], minlength=5)[1:].tolist() == [10, 10, 10, 10]
    clusters = np.isin(truth["class"], [1, 2, 3])
    assert np.isfinite(truth["log_mass"][clusters]).all()
    assert np.isnan(truth["log_mass"][~clusters]).all()


def test_class_weights():
    _, truth = classifier_bank(10, seed=1, class_weights=(0, 0, 1, 1))
    assert sorted(set(truth["class"])) == [3, 4]
    with pytest.raises(ValueError, match="class_weights"):
        classifier_bank(4, class_weights=(1, 1, 1))


def test_jitter_and_distance(bank):
    _, truth = bank
    assert np.all(np.abs(truth["dx"]) <= 1.0) and np.all(np.abs(truth["dy"]) <= 1.0)
    assert np.all((truth["distance_mpc"] >= 3) & (truth["distance_mpc"] <= 20))
    with pytest.raises(ValueError, match="distance_range"):
        classifier_bank(2, distance_range=(0, 5))


def test_deterministic_by_seed(bank):
    stamps, truth = classifier_bank(40, seed=3)
    assert np.array_equal(stamps, bank[0], equal_nan=True)
    assert np.array_equal(truth["class"], bank[1]["class"])
    other, _ = classifier_bank(40, seed=4)
    assert not np.array_equal(other, stamps, equal_nan=True)


def test_edge_sources_have_masked_rows():
    stamps, truth = classifier_bank(60, seed=0, class_weights=(0, 0, 0, 1))
    edge = np.asarray(truth["subtype"]) == "edge"
    assert edge.any()
    blank = [(~np.isfinite(s) | (s == 0)).all(axis=-1).any() for s in stamps[edge]]
    assert all(blank)


def test_a_changed_condition_renders_the_same_sources():
    # As for the physical bank: the noise of one chunk must not shift the
    # sources of the next, so that two conditions see the same sources.
    import dataclasses

    from glue_starclf.sim.classbank import _CHUNK
    from glue_starclf.sim.domain import NOMINAL
    n = _CHUNK + 12
    deep = dataclasses.replace(NOMINAL, exposure_factor=(2.0,) * 5)
    _, a = classifier_bank(n, seed=4)
    _, b = classifier_bank(n, seed=4, domain=deep)
    for col in ("class", "subtype", "log_mass", "mag_F555W"):
        np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]), err_msg=col)


def test_noise_free_render_is_the_same_sources_without_background_or_noise(bank):
    stamps, truth = bank
    light, same = classifier_bank(40, seed=3, noise_free=True)
    for col in ("class", "subtype", "distance_mpc", "log_mass", "r_h", "dx", "mag_F555W"):
        np.testing.assert_array_equal(np.asarray(same[col]), np.asarray(truth[col]),
                                      err_msg=col)
    # What the noisy bank adds is the background and noise; the light alone is
    # nearly nothing in the stamp corners.
    keep = np.asarray(truth["subtype"]) != "edge"
    added = stamps[keep] - light[keep]
    corner = (slice(None), slice(None), slice(0, 4), slice(0, 4))
    assert np.median(np.abs(light[keep][corner])) < 0.1 * np.nanstd(added[corner])
    # The light is the noisy stamps' source: the two agree where it dominates.
    centre = (slice(None), 3, slice(14, 18), slice(14, 18))
    bright = light[centre].sum(axis=(1, 2)) > 10.0       # e-/s in the central 4 x 4 px
    assert bright.sum() >= 5
    np.testing.assert_allclose(stamps[centre].sum(axis=(1, 2))[bright],
                               light[centre].sum(axis=(1, 2))[bright], rtol=0.25)
