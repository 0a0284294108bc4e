"""MS-Celeb-1M read from fixture trees: insightface's record files (read without mxnet) and
extracted folders, written from synthetic faces."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from affectlab.data.contract import DataError, FaceImageDataset
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.layouts.msceleb import pack_record, write_layout, write_record
from affectlab.data.sources.msceleb import (
    MAGIC_BYTES,
    MSCeleb,
    RecordError,
    RecordImages,
    read_idx,
    read_record,
    unpack_record,
)
from affectlab.train import run

NUM_IDS = 10
PER_ID = 3
N = NUM_IDS * PER_ID


@pytest.fixture(scope="module")
def faces():
    return layout_faces(NUM_IDS, PER_ID, seed=4, image_size=24)


@pytest.fixture
def records(tmp_path, faces):
    """insightface's train.rec / train.idx / property and what was written into them."""
    root = tmp_path / "faces_emore"
    return root, write_layout(faces, root)


def load(root: Path, tmp_path: Path, **kwargs) -> MSCeleb:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", 24)
    return MSCeleb(root=str(root), **kwargs)


def identities(dataset: MSCeleb, data) -> dict[str, dict[str, str]]:
    """``{split: {sample path: identity}}`` of a built FaceData."""
    names = dataset.index().subject_names
    return {split: {p: names[s] for p, s in zip(part.table.image_paths, part.table.subject)}
            for split in ("train", "val", "test", "unlabeled")
            if (part := getattr(data, split)) is not None}


def everything(dataset: MSCeleb, data) -> dict[str, str]:
    return {p: v for split in identities(dataset, data).values() for p, v in split.items()}


def idx_lines(root: Path) -> list[str]:
    return (root / "train.idx").read_text().splitlines()


def test_recordio_bytes_follow_dmlc_and_mxnet():
    # the magic at data offset 0 and 8: cut there (cflag 1, 2, 3), lengths exclude the magic
    buffer = io.BytesIO()
    data = MAGIC_BYTES + b"abcd" + MAGIC_BYTES + b"xy"
    write_record(buffer, data)
    lrec = [(1 << 29) | 0, (2 << 29) | 4, (3 << 29) | 2]
    assert buffer.getvalue() == (MAGIC_BYTES + struct.pack("<I", lrec[0])
                                 + MAGIC_BYTES + struct.pack("<I", lrec[1]) + b"abcd"
                                 + MAGIC_BYTES + struct.pack("<I", lrec[2]) + b"xy" + b"\0\0")
    assert read_record(buffer, 0) == data
    # an unaligned magic is data; a whole record has cflag 0 and is padded to 4 bytes
    buffer = io.BytesIO()
    write_record(buffer, b"z" + MAGIC_BYTES)
    assert buffer.getvalue()[4:8] == struct.pack("<I", 5) and len(buffer.getvalue()) == 16
    assert read_record(buffer, 0) == b"z" + MAGIC_BYTES
    # mxnet IRHeader 'IfQQ': a number label → flag 0; an array → flag n, labels after it
    assert pack_record(b"jpg", 7, 3) == struct.pack("<IfQQ", 0, 7.0, 3, 0) + b"jpg"
    assert unpack_record(pack_record(b"jpg", [2.0, 5.0], 9)) == (2, (2.0, 5.0), 9, b"jpg")
    with pytest.raises(RecordError, match="no record starts at byte 1"):
        read_record(buffer, 1)


def test_record_identities_equal_what_the_fixture_wrote(records, tmp_path):
    root, written = records
    dataset = load(root, tmp_path)
    data = dataset.build()
    assert everything(dataset, data) == written          # imgs/<label>/<key>.jpg, its identity
    assert len(written) == N and len(set(written.values())) == NUM_IDS
    assert isinstance(data.train, RecordImages)
    for split in (data.train, data.val, data.test):
        t = split.table
        assert t.au.shape[1] == 0 and t.attr.shape[1] == 0
        assert not t.expr_mask.any() and not t.va_mask.any()
    assert data.label_names == {} and data.tasks == []
    assert data.train[0]["image"].shape == (3, 24, 24)
    stats = data.summary()
    assert sum(stats[s]["num_samples"] for s in ("train", "val", "test")) == N


def test_record_and_extracted_folder_give_the_same_split_and_pixels(records, tmp_path, faces):
    root, written = records
    assert write_layout(faces, root, layout="folder") == written   # extracted next to it
    # every third record holds the magic number in its data: written in parts
    lines = idx_lines(root)
    with open(root / "train.rec", "rb") as rec:
        flags = {}
        for line in lines:
            key, offset = map(int, line.split("\t"))
            rec.seek(offset)
            flags[key] = struct.unpack("<II", rec.read(8))[1] >> 29
    assert flags[3] == 1 and flags[4] == 0
    from_records = load(root, tmp_path, cache_dir=str(tmp_path / "c1"))
    from_folder = load(root, tmp_path, layout="folder", cache_dir=str(tmp_path / "c2"))
    a, b = from_records.build(), from_folder.build()
    assert a.manifest.checksum() == b.manifest.checksum()
    assert type(b.train) is FaceImageDataset and isinstance(a.train, RecordImages)
    for split in ("train", "val", "test"):
        x, y = getattr(a, split), getattr(b, split)
        assert x.table.image_paths == y.table.image_paths
        for row in range(len(x)):
            assert torch.equal(x.load_image(row), y.load_image(row))


def test_record_without_header_is_read_by_each_label(tmp_path, faces, records):
    _, written = records
    root = tmp_path / "im2rec"
    assert write_layout(faces, root, header=False) == written
    assert idx_lines(root)[0].startswith("1\t")          # no record 0: the images only
    (root / "train.idx").write_text("0\t0\n" + "\n".join(idx_lines(root)[1:]) + "\n")
    dataset = load(root, tmp_path, cache_dir=str(tmp_path / "c3"))
    # key 0 is now the first image (im2rec numbers from 0): read by its own label
    found = everything(dataset, dataset.build())
    assert found == {("imgs/0/0.jpg" if k == "imgs/0/1.jpg" else k): v for k, v in written.items()}


def test_decoded_tsv_folders_and_the_root_as_image_folder(tmp_path, faces):
    root = tmp_path / "MsCeleb"
    written = write_layout(faces, root, layout="folder", naming="tsv", images_dir="")
    assert all(p.split("/")[0].startswith("m.0") for p in written)
    dataset = load(root, tmp_path, images_dir="")
    assert everything(dataset, dataset.build()) == written
    # the original TSVs are not read: the error says how to decode them
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "MsCelebV1-Faces-Aligned.tsv").write_text("m.0abc\t1\turl\tpage\tFaceId-0\t..\t/9j/\n")
    with pytest.raises(DataError, match=r"(?s)MsCelebV1-Faces-Aligned.tsv.*b64decode"):
        load(raw, tmp_path).build()


def test_splits_are_identity_disjoint_and_seeded(records, tmp_path):
    root, _ = records
    builds = []
    for seed in (0, 0, 1):
        dataset = load(root, tmp_path, seed=seed)
        builds.append((dataset, dataset.build()))
    people = {s: set(v.values()) for s, v in identities(*builds[0]).items()}
    assert [len(people[s]) for s in ("train", "val", "test")] == [8, 1, 1]  # 0.8/0.1/0.1
    assert not (people["train"] & people["val"] or people["train"] & people["test"]
                or people["val"] & people["test"])
    sums = [data.manifest.checksum() for _, data in builds]
    assert sums[0] == sums[1] != sums[2]
    assert builds[0][1].manifest.protocol == "msceleb/identities/seed0"


def test_pool_draw_is_seeded_and_hides_labels(records, tmp_path):
    root, written = records
    pools = [load(root, tmp_path, protocol="pool", pool_images=6, seed=s).pool(image_size=32)
             for s in (3, 3, 4)]
    assert isinstance(pools[0], RecordImages) and len(pools[0]) == 6
    assert set(pools[0].table.image_paths) <= set(written)
    assert pools[0].table.image_paths == pools[1].table.image_paths != pools[2].table.image_paths
    assert not pools[0].table.labeled.any()
    sample = pools[0][0]
    assert sample["image"].shape == (3, 32, 32) and not sample["labeled"]
    # with the identities protocol the draw comes from train only
    dataset = load(root, tmp_path, pool_images=6)
    data = dataset.build()
    split = identities(dataset, data)
    assert len(split["unlabeled"]) == 6 and not set(split["unlabeled"]) & set(split["train"])
    plain = load(root, tmp_path)
    trained = set(plain.split(plain.aligned_index()).ids["train"])
    assert set(split["unlabeled"]) | set(split["train"]) == trained
    with pytest.raises(DataError, match="protocol=pool makes msceleb an unlabelled pool"):
        load(root, tmp_path, protocol="pool").build()


def test_missing_root_names_it_and_shows_both_layouts(tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "train.rec" in str(err.value) and "imgs/<label>/<key>.jpg" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has neither record files or the image folder"):
        load(tmp_path / "empty", tmp_path).build()


def test_malformed_idx_line_names_file_and_line_and_skip_counts_it(records, tmp_path):
    root, written = records
    lines = idx_lines(root)
    lines[5] = "5 oops"                                  # line 6: key 5, middle of identity 1
    (root / "train.idx").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train.idx, line 6: expected 'key<TAB>byte offset'"):
        load(root, tmp_path).build()
    dataset = load(root, tmp_path, on_error="skip")
    data = dataset.build()
    assert data.skipped == 2                 # the line, and the identity's image it leaves out
    assert set(everything(dataset, data)) == set(written) - {"imgs/1/5.jpg"}
    with pytest.raises(DataError, match="train.idx, line 6"):
        read_idx(root / "train.idx")


def test_unreadable_records_are_reported_with_their_key(records, tmp_path):
    root, written = records
    lines = idx_lines(root)
    key7, offset7 = lines[7].split("\t")                 # first image of identity 2
    lines[7] = f"{key7}\t{int(offset7) + 1}"
    (root / "train.idx").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train.rec: record 7 \(first image of identity record "
                                        r"33, at byte \d+ per train.idx\): no record starts"):
        load(root, tmp_path).build()
    dataset = load(root, tmp_path, on_error="skip")
    data = dataset.build()
    assert data.skipped == 1 and len(everything(dataset, data)) == N - PER_ID
    # a middle image is not read when indexing: its load names the record
    lines[7], (key8, offset8) = f"{key7}\t{offset7}", lines[8].split("\t")
    lines[8] = f"{key8}\t{int(offset8) + 2}"
    (root / "train.idx").write_text("\n".join(lines) + "\n")
    dataset = load(root, tmp_path, cache_dir=str(tmp_path / "c2"))
    data = dataset.build()
    split = next(s for s in (data.train, data.val, data.test)
                 if "imgs/2/8.jpg" in s.table.image_paths)
    with pytest.raises(DataError, match="record 8 of .*train.rec is unreadable"):
        split.load_image(split.table.image_paths.index("imgs/2/8.jpg"))


def test_bad_identity_records_and_property(records, tmp_path):
    root, written = records
    lines = idx_lines(root)
    original = lines[32]
    # identity record 32 (identity 1) pointed at identity record 31's data: overlapping ranges
    lines[32] = f"32\t{lines[31].split(chr(9))[1]}"
    (root / "train.idx").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="identity record 32 spans images 1..3, which overlap"):
        load(root, tmp_path).build()
    dataset = load(root, tmp_path, on_error="skip")
    data = dataset.build()
    # identity 1 is lost, and property's 10 identities no longer match the 9 found
    assert data.skipped == 2 and len(everything(dataset, data)) == N - PER_ID
    lines[32] = original                                 # repaired; now a bad property file
    (root / "train.idx").write_text("\n".join(lines) + "\n")
    (root / "property").write_text("ten,112,112\n")
    with pytest.raises(DataError, match=r"property, line 1: expected 'num_classes,height,width'"):
        load(root, tmp_path, cache_dir=str(tmp_path / "c3")).build()


def test_stray_image_outside_an_identity_folder(tmp_path, faces):
    root = tmp_path / "extracted"
    written = write_layout(faces, root, layout="folder")
    (root / "imgs" / "loose.jpg").write_bytes((root / next(iter(written))).read_bytes())
    with pytest.raises(DataError, match="loose.jpg: an image outside an identity folder"):
        load(root, tmp_path).build()
    dataset = load(root, tmp_path, on_error="skip")
    data = dataset.build()
    assert data.skipped == 1 and everything(dataset, data) == written


def test_index_is_cached_and_rebuilt_when_the_files_change(records, tmp_path, faces,
                                                           monkeypatch):
    root, _ = records
    load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("msceleb-*.npz"))

    def fail(self, problems):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(MSCeleb, "read_index", fail)
    load(root, tmp_path, seed=5).build()                 # another split, the same index
    (root / "property").write_text(f"{NUM_IDS},24,24 \n")
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path).build()                     # a record file changed: parsed again
    write_layout(faces, root, layout="folder")
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path, layout="folder").build()    # the layout keys the cache too


def test_mlcr_trains_with_msceleb_records_as_its_pool(records, tmp_path, tiny_cfg):
    root, _ = records
    pool = tiny_cfg("dataset=msceleb", f"dataset.root={root}",
                    f"dataset.cache_dir={tmp_path / 'c'}", "dataset.protocol=pool",
                    "dataset.pool_images=8").dataset
    cfg = tiny_cfg("method=mlcr", "trainer.max_steps=2", "trainer.batch_size=4")
    with open_dict(cfg):
        cfg.pool = pool
    metrics = run(cfg, tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["data"]["unlabeled"]["num_samples"] == 8
    assert info["data"]["unlabeled"]["num_labeled"] == 0
    assert metrics["steps"] == 2
    assert np.isfinite(metrics["tasks"]["au"]["f1_mean"])
