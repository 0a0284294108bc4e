"""The shared machinery of the on-disk dataset modules (datasets/real.py)."""

from __future__ import annotations

import json

import numpy as np

from affectlab.datasets.base import LabelTable, empty_labels
from affectlab.datasets.real import DatasetIndex


def index_of(paths: list[str], ids: list[str]) -> DatasetIndex:
    labels = empty_labels(len(paths), num_aus=2)
    labels["au"][:, 0] = [1, 0, 1]
    labels["au_mask"][:] = True
    table = LabelTable(root="/data/x", image_paths=paths, **labels)
    return DatasetIndex(table, ids, ["S1"], [1, 2], ["skipped one line"])


def test_index_round_trip_stores_ids_once_when_they_are_the_paths(tmp_path):
    paths = ["a/1.jpg", "a/2.jpg", "b/1.jpg"]
    index_of(paths, list(paths)).save(tmp_path / "same")
    assert json.loads((tmp_path / "same.json").read_text())["sample_ids"] is None
    loaded = DatasetIndex.load(tmp_path / "same")
    assert loaded.sample_ids == paths and loaded.table.image_paths == paths
    np.testing.assert_array_equal(loaded.table.au[:, 0], [1, 0, 1])
    assert loaded.problems == ["skipped one line"] and loaded.aus == [1, 2]

    ids = ["000001", "000002", "000003"]    # e.g. CelebA names its samples by file name
    index_of(paths, ids).save(tmp_path / "other")
    assert DatasetIndex.load(tmp_path / "other").sample_ids == ids


def test_boxes_come_in_index_order_and_a_lost_box_is_named():
    import pytest

    from affectlab.datasets.base import DataError
    from affectlab.datasets.face_boxes import boxes_in_index_order

    index = index_of(["a/1.jpg", "a/2.jpg", "b/1.jpg"], ["a/1.jpg", "a/2.jpg", "b/1.jpg"])
    boxes = {"b/1.jpg": (0, 0, 4, 4), "a/1.jpg": (1, 2, 3, 4), "a/2.jpg": (5, 6, 7, 8)}
    np.testing.assert_array_equal(boxes_in_index_order(index, boxes, "labels.txt"),
                                  [[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 4, 4]])
    boxes["a/2.jpg"] = None
    with pytest.raises(DataError, match=r"labels.txt gives no face box for 1 indexed sample\(s\), "
                                        r"e.g. a/2.jpg: it changed after the index was built"):
        boxes_in_index_order(index, boxes, "labels.txt")
