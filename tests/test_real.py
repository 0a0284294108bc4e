"""The shared machinery of the on-disk dataset modules (data/sources/on_disk.py)."""

from __future__ import annotations

import json
import re

import numpy as np

from affectlab.data.contract import LabelTable, empty_labels
from affectlab.data.sources.on_disk import DatasetIndex


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

    from affectlab.data.contract import DataError
    from affectlab.data.faces.boxes import boxes_in_index_order

    index = index_of(["a/1.jpg", "a/2.jpg", "b/1.jpg"], ["a/1.jpg", "a/2.jpg", "b/1.jpg"])
    boxes = {"b/1.jpg": (0, 0, 4, 4), "a/1.jpg": (1, 2, 3, 4), "a/2.jpg": (5, 6, 7, 8)}
    np.testing.assert_array_equal(boxes_in_index_order(index, boxes, "labels.txt"),
                                  [[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 4, 4]])
    boxes["a/2.jpg"] = None
    with pytest.raises(DataError, match=r"labels.txt gives no face box for 1 indexed sample\(s\), "
                                        r"e.g. a/2.jpg: it changed after the index was built"):
        boxes_in_index_order(index, boxes, "labels.txt")


# --------------------------------------------------------------------------- image checks
def write_image(path, fmt: str = "JPEG", size: int = 24):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(str(path))).integers(0, 256, (size, size, 3), np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def test_image_file_problem_finds_damaged_files_without_decoding_good_ones(tmp_path):
    from affectlab.data.contract import image_file_problem

    jpeg, png = write_image(tmp_path / "a.jpg"), write_image(tmp_path / "a.png", "PNG")
    data, png_data = jpeg.read_bytes(), png.read_bytes()
    files = {
        "padded.jpg": data + b"\0\0\n",                 # padding after the EOI marker: fine
        "trailer.jpg": data + b"SEFH" + bytes(40),     # data after the EOI marker: decodes, fine
        "cut.jpg": data[:-40],
        "cut.png": png_data[:len(png_data) // 2],
        "empty.jpg": b"",
        "text.jpg": b"<html>404 Not Found</html>",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    assert image_file_problem(jpeg) is None and image_file_problem(png) is None
    assert image_file_problem(tmp_path / "padded.jpg") is None
    assert image_file_problem(tmp_path / "trailer.jpg") is None
    assert image_file_problem(tmp_path / "cut.jpg").startswith(
        "is truncated: a JPEG file ends with the EOI marker FF D9, this one does not")
    assert image_file_problem(tmp_path / "cut.png").startswith(
        "is truncated: a PNG file ends with the IEND chunk")
    assert image_file_problem(tmp_path / "empty.jpg") == "is empty (0 bytes)"
    assert image_file_problem(tmp_path / "text.jpg").startswith("is not an image")
    assert image_file_problem(tmp_path / "gone.jpg") == "is missing"
    assert image_file_problem(tmp_path) == "is not a regular file"


def test_image_checks_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    import pytest

    from affectlab.data.contract import DataError
    from affectlab.data.sources import image_checks as real
    from affectlab.data.sources.image_checks import readable_images
    from affectlab.data.sources.on_disk import Problems

    root = tmp_path / "images"
    paths = [f"s{k}/{k}.jpg" for k in range(6)]
    for p in paths:
        write_image(root / p)
    cache = tmp_path / "cache" / "checks.npy"
    assert readable_images(root, paths, Problems(), cache_file=cache).all()
    assert len(np.load(cache)) == len(paths)

    def fail(path, size=None):
        raise AssertionError(f"{path} should be known good from the cache")

    checked = real.image_file_problem
    monkeypatch.setattr(real, "image_file_problem", fail)
    assert readable_images(root, paths, Problems(), cache_file=cache).all()   # no file read
    damaged = root / paths[2]
    damaged.write_bytes(damaged.read_bytes()[:-30])    # changed size and mtime: checked again
    monkeypatch.setattr(real, "image_file_problem", checked)
    with pytest.raises(DataError, match=rf"image file {damaged} is truncated.*Replace the file"):
        readable_images(root, paths, Problems(), cache_file=cache)
    problems = Problems("skip")
    ok = readable_images(root, paths + ["s9/9.jpg"], problems, cache_file=cache)
    assert ok.tolist() == [True, True, False, True, True, True, False]
    assert problems.messages[0].startswith(f"image file is missing: {root / 's9/9.jpg'}")
    assert len(problems.messages) == 2 and not problems.gaps
    # slow storage: the thread pool takes over after the first chunk, with the same verdicts
    monkeypatch.setattr(real, "LATENCY_BOUND_S", 0.0)
    monkeypatch.setattr(real, "IMAGE_CHECK_CHUNK", 2)
    pooled = readable_images(root, paths + ["s9/9.jpg"], Problems("skip"), cache_file=None)
    assert pooled.tolist() == ok.tolist()


def test_on_error_policies_tell_known_gaps_from_problems():
    import pytest

    from affectlab.data.contract import DataError
    from affectlab.data.sources.on_disk import Problems

    default = Problems()
    assert default.policy == "known_gaps"
    default.known_gap("/d/v/00004.jpg", "frame 4 has no crop")
    assert default.gaps == ["/d/v/00004.jpg"] and not default.messages
    with pytest.raises(DataError, match=r"bad line \(set dataset.on_error=skip to leave such"):
        default.report("bad line")
    with pytest.raises(DataError, match=r"frame 4 has no crop \(a known gap of the release: "
                                        r"dataset.on_error=known_gaps, the default"):
        Problems("raise").known_gap("/d/v/00004.jpg", "frame 4 has no crop")
    skip = Problems("skip")
    skip.report("bad line")
    skip.known_gap("/d/v/00004.jpg", "frame 4 has no crop")
    assert skip.messages == ["bad line"] and skip.gaps == ["/d/v/00004.jpg"]
    with pytest.raises(ValueError, match="use known_gaps"):
        Problems("ignore")


# --------------------------------------------------------------------------- roots, empty trees
def ckplus_tree(tmp_path):
    from affectlab.data.layouts.ckplus import write_layout
    from affectlab.data.layouts.faces import layout_faces

    root = tmp_path / "CK+"
    return root, write_layout(layout_faces(10, 2, seed=3, image_size=24), root)


def test_a_root_that_is_a_file_says_so(tmp_path):
    import pytest

    from affectlab.data.contract import DataError
    from affectlab.data.sources.ckplus import CKPlus
    from affectlab.data.sources.lfw import LFW

    archive = tmp_path / "CK+.zip"
    archive.write_bytes(b"PK\x03\x04")
    for dataset in (CKPlus(root=str(archive), cache_dir=str(tmp_path / "cache")),
                    LFW(root=str(archive), cache_dir=str(tmp_path / "cache"))):
        with pytest.raises(DataError, match=rf"dataset.root={re.escape(str(archive))} is a "
                                            r"file, not a directory: point it at the folder of "
                                            rf"your copy of {dataset.name}") as err:
            dataset.build()
        assert "does not exist" not in str(err.value)
    with pytest.raises(DataError, match=rf"dataset.root={re.escape(str(tmp_path))}/nowhere "
                                        r"does not exist"):
        CKPlus(root=str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "cache")).build()


def test_a_tree_without_images_says_no_images_found(tmp_path):
    import shutil

    import pytest

    from affectlab.data.contract import DataError
    from affectlab.data.sources.ckplus import CKPlus

    root, _ = ckplus_tree(tmp_path)
    images = root / "cohn-kanade-images"
    shutil.rmtree(images)
    images.mkdir()                                  # the labels are there, the images are not
    with pytest.raises(DataError, match=rf"no images found under {re.escape(str(root))}: "
                                        r"ckplus indexed no sample\. Expected layout:\n.*"
                                        r"cohn-kanade-images/S005"):
        CKPlus(root=str(root), cache_dir=str(tmp_path / "cache")).build()


def test_a_split_left_without_readable_images_says_so(tmp_path):
    import pytest

    from affectlab.data.contract import DataError
    from affectlab.data.sources.ckplus import CKPlus

    root, _ = ckplus_tree(tmp_path)
    dataset = CKPlus(root=str(root), cache_dir=str(tmp_path / "cache"), on_error="skip")
    val = dataset.build().val.table
    assert len(val)
    for path in val.image_paths:                    # every val image damaged, left out (skip)
        (root / path).write_bytes(b"")
    with pytest.raises(DataError, match=rf"no images found under {re.escape(str(root))}: the "
                                        r"val split of ckplus/random-subjects/run0 has no "
                                        rf"sample with a readable image of the {len(val)} "
                                        rf"listed \({len(val)} problem\(s\) skipped, first: "
                                        r"image file .* is empty"):
        CKPlus(root=str(root), cache_dir=str(tmp_path / "cache"), on_error="skip").build()
