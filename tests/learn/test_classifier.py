"""The classifier's validation metrics (`glue_starclf.learn.classifier`)."""

import numpy as np
import pytest

from glue_starclf.learn.classifier import (classification_metrics, confusion_metrics,
                                           format_recall)


def test_confusion_metrics():
    s = confusion_metrics([[5, 1, 0, 0], [2, 2, 0, 0], [1, 0, 2, 1], [0, 0, 0, 0]])
    assert s["n"] == 14
    assert s["accuracy"] == pytest.approx(9 / 14)
    assert s["binary_accuracy"] == pytest.approx(13 / 14)      # class 3 called 1 once
    assert s["recall"] == [pytest.approx(5 / 6), 0.5, 0.5, None]
    empty = confusion_metrics(np.zeros((4, 4)))
    assert empty["accuracy"] is None and empty["recall"] == [None] * 4


def test_confusion_metrics_rejects_other_shapes():
    with pytest.raises(ValueError, match="not \\(4, 4\\)"):
        confusion_metrics(np.zeros((3, 3)))


def test_classification_metrics_counts_argmax_classes():
    y = np.array([0, 0, 1, 2, 3, 3])
    probs = np.eye(4)[[0, 1, 1, 3, 3, 2]] * 0.7 + 0.075          # argmax 0, 1, 1, 3, 3, 2
    m = classification_metrics(probs, y)
    assert m["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]]
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["binary_accuracy"] == pytest.approx(1.0)           # no 1+2 / 3+4 swap
    assert m["recall"] == [0.5, 1.0, 0.0, 0.5]


def test_format_recall():
    assert format_recall([0.5, None, 0.25, 1.0]) == "0.50 / – / 0.25 / 1.00"
    assert format_recall([0.5, 0.125], sep=", ", digits=3) == "0.500, 0.125"
