"""scripts/clip_label_ceilings.py: per key value, the training frames' majority expression and
AU rates, scored on test — checked on tables where the answer is known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import LabelTable

from .conftest import load_script


@pytest.fixture(scope="module")
def ceilings():
    return load_script("clip_label_ceilings")


def table(expr: list[int], au: list[list[int]], arousal: list[float]) -> LabelTable:
    n = len(expr)
    return LabelTable(root=Path("."), image_paths=[f"{i}.png" for i in range(n)],
                      subject=np.zeros(n, np.int64), labeled=np.ones(n, bool),
                      au=np.array(au, np.float32), au_mask=np.ones((n, len(au[0])), bool),
                      expr=np.array(expr, np.int64), expr_mask=np.ones(n, bool),
                      va=np.c_[np.zeros(n), arousal].astype(np.float32),
                      va_mask=np.ones(n, bool), attr=np.zeros((n, 0), np.float32),
                      attr_mask=np.zeros((n, 0), bool))


def test_a_key_that_fixes_the_labels_scores_100_and_one_that_says_nothing_the_prior(ceilings):
    # arousal −0.9 ↔ class 0 with AU 1 absent, +0.9 ↔ class 1 with AU 1 present
    train = table([0, 0, 1, 1], [[0, 1], [0, 0], [1, 1], [1, 0]], [-0.9, -0.9, 0.9, 0.9])
    test = table([1, 0], [[1, 0], [0, 1]], [0.9, -0.9])
    key = lambda t: ceilings.bin_of(t.va[:, 1], 40)                          # noqa: E731
    known = ceilings.ceiling(train, test, key(train), key(test), num_classes=2)
    assert known == {"expression criterion": 100.0, "AU AP": pytest.approx(75.0)}
    # AU 0 ranked perfectly (AP 100); AU 1 has rate ½ in both bins: a tie, AP = ½
    blind = ceilings.ceiling(train, test, np.zeros(4), np.zeros(2), num_classes=2)
    # the majority class (0, the first on a tie) everywhere: F1 (2/3 + 0)/2, accuracy ½
    assert blind["expression criterion"] == pytest.approx(100 * (0.67 / 3 + 0.33 / 2))
    assert blind["AU AP"] == pytest.approx(50.0)


def test_bins_cover_the_closed_interval(ceilings):
    assert ceilings.bin_of(np.array([-1.0, -0.951, 0.0, 0.999, 1.0]), 40).tolist() == \
        [0, 0, 20, 39, 39]
