"""The packed store: the same pixels as decoding, the same training, atomic and resumable
builds, one builder among parallel runs, clear messages for damaged files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from affectlab.build import build_data
from affectlab.data import packed
from affectlab.data.contract import DataError
from affectlab.data.packed import PackedImages, build_pack, pack_path, use_packed
from affectlab.data.transforms import InputTransform
from affectlab.train import run

from .conftest import compose_config


@pytest.fixture
def decoded(data_root):
    """The tiny benchmark read by decoding (packed=false)."""
    return build_data(compose_config(data_root, ["packed=false"]))


def test_packed_splits_give_the_decoded_pixels_and_batches(decoded, data_root, tmp_path):
    data = use_packed(build_data(compose_config(data_root, ["packed=false"])), tmp_path,
                      workers=0)
    transform = InputTransform(mean=data.mean, std=data.std)
    for split in ("train", "unlabeled", "val", "test"):
        raw, fast = getattr(decoded, split), getattr(data, split)
        assert isinstance(fast, PackedImages) and not isinstance(raw, PackedImages)
        assert len(fast) == len(raw) > 0
        for row in range(len(raw)):
            sample = fast[row]
            assert sample["image"].dtype == torch.uint8
            assert torch.equal(fast.load_image(row), raw.load_image(row)), (split, row)
            for key, value in raw[row].items():
                if key != "image":
                    assert torch.equal(sample[key], value), (split, row, key)
        rows = list(range(min(5, len(raw))))
        stack = lambda ds, rows=rows: {  # noqa: E731
            "image": torch.stack([ds[r]["image"] for r in rows])}
        assert torch.equal(transform(stack(fast), train=False)["image"],
                           transform(stack(raw), train=False)["image"])


def test_training_on_packed_images_equals_training_on_decoded_ones(data_root, tmp_path):
    overrides = ["trainer.max_steps=3", "trainer.eval_every_epochs=1"]
    decoded = run(compose_config(data_root, [*overrides, "packed=false"]), tmp_path / "decoded")
    fast = run(compose_config(data_root, [*overrides, "packed=true",
                                          f"packed_dir={tmp_path / 'store'}"]),
               tmp_path / "packed")
    assert len(list((tmp_path / "store").glob("synthetic-*.npy"))) == 4   # one per split
    assert fast["tasks"] == decoded["tasks"] and fast["best_value"] == decoded["best_value"]


def test_an_interrupted_build_continues_where_it_stopped(decoded, tmp_path, monkeypatch):
    dataset = decoded.train
    target = pack_path(tmp_path, "synthetic", "train", dataset)
    monkeypatch.setattr(packed, "CHUNK_ROWS", 4)
    original = packed._Rows.__getitem__
    calls = []

    def dies_at_row_10(self, item):
        row, pixels = original(self, item)
        calls.append(row)
        if row == 10 and len(calls) < len(dataset):
            raise KeyboardInterrupt     # as Ctrl-C during the build
        return row, pixels

    monkeypatch.setattr(packed._Rows, "__getitem__", dies_at_row_10)
    with pytest.raises(KeyboardInterrupt):
        build_pack(dataset, target)
    assert not target.exists()       # never a half file under the final name
    progress = target.with_name(target.name + ".progress.json")
    assert json.loads(progress.read_text()) == {"rows_done": 8}
    calls.clear()
    monkeypatch.setattr(packed._Rows, "__getitem__", original)
    counted = []
    monkeypatch.setattr(packed._Rows, "__getitem__",
                        lambda self, item: counted.append(item) or original(self, item))
    build_pack(dataset, target)
    assert len(counted) == len(dataset) - 8          # rows 8.. only
    assert not progress.exists()
    whole = np.load(target, mmap_mode="r")
    for row in range(len(dataset)):
        assert np.array_equal(whole[row].transpose(1, 2, 0), dataset.load_pixels(row))


def test_parallel_runs_build_a_pack_once(decoded, tmp_path, monkeypatch):
    dataset = decoded.val
    target = pack_path(tmp_path, "synthetic", "val", dataset)
    built = []
    original = packed._Rows.__init__
    monkeypatch.setattr(packed._Rows, "__init__",
                        lambda self, *a: built.append(1) or original(self, *a))
    threads = [threading.Thread(target=build_pack, args=(dataset, target)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert built == [1] and target.is_file()


def test_keys_follow_what_a_pack_holds_and_damage_is_named(decoded, data_root, tmp_path):
    other_size = build_data(compose_config(data_root, ["packed=false", "dataset.image_size=24"]))
    assert (pack_path(tmp_path, "synthetic", "train", decoded.train)
            != pack_path(tmp_path, "synthetic", "train", other_size.train))
    data = use_packed(decoded, tmp_path, workers=0)
    path = data.test.path
    np.save(path, np.zeros((2, 3, 4, 4), dtype=np.uint8))     # a file of another shape
    fresh = PackedImages(data.test.table, image_size=data.test.image_size, path=path)
    with pytest.raises(DataError, match=f"packed images {path} hold uint8 \\(2, 3, 4, 4\\), "
                                        "expected .*delete the file"):
        fresh[0]
    Path(path).write_bytes(b"not an array")
    with pytest.raises(DataError, match="unreadable .*delete the file; the next run packs"):
        PackedImages(data.test.table, image_size=data.test.image_size, path=path)[0]
