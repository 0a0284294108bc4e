"""CelebA loader (``dataset=celeba``) on fixture trees written in the release's exact layout.

Every tree is generated here (:func:`write_layout` over :func:`layout_faces`): 12 identities ×
5 faces at 32 px, partitioned by identity into 40 train / 10 val / 10 test images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import DataError
from affectlab.data.layouts.celeba import layout_records, write_layout
from affectlab.data.layouts.faces import LayoutFace, layout_faces
from affectlab.data.sources.celeba import (
    ATTR_FILE,
    ATTRIBUTES,
    BBOX_FILE,
    IDENTITY_FILE,
    LANDMARKS_ALIGN_FILE,
    LANDMARKS_WILD_FILE,
    PARTITION_FILE,
    CelebA,
    CelebAImages,
)

SUBJECTS, PER_SUBJECT, SIZE = 12, 5, 32
SIZES = {"train": 40, "val": 10, "test": 10}            # partitions: subject % 5 → 0 0 0 1 2
SEMI = {"num_labeled": 10, "num_unlabeled": 20, "num_test": 8}


@pytest.fixture(scope="module")
def faces() -> list[LayoutFace]:
    return layout_faces(SUBJECTS, PER_SUBJECT, seed=0, image_size=SIZE)


@pytest.fixture
def tree(tmp_path: Path, faces: list[LayoutFace]) -> Path:
    """A fresh CelebA tree; returns the parent of ``celeba/`` (torchvision's root)."""
    root = tmp_path / "data"
    write_layout(faces, root, images=("img_align_celeba", "img_celeba"))
    return root


def make(root: Path, **kwargs) -> CelebA:
    kwargs.setdefault("cache_dir", str(root.parent / "cache"))
    return CelebA(root=str(root), image_size=SIZE, **kwargs)


def subjects(dataset) -> set[int]:
    return set(dataset.table.subject.tolist())


def edit_line(path: Path, number: int, edit) -> None:
    """Replace 1-based line ``number`` of ``path`` by ``edit(line)`` (None deletes it)."""
    lines = path.read_text().splitlines(keepends=True)
    new = edit(lines[number - 1])
    lines[number - 1:number] = [] if new is None else [new]
    path.write_text("".join(lines))


# ----------------------------------------------------------------------------- the layout
def test_written_layout_has_the_release_shapes(tree):
    folder = tree / "celeba"
    attr = (folder / ATTR_FILE).read_text().splitlines()
    assert attr[0] == "60" and attr[1].split() == list(ATTRIBUTES)
    assert "  " in attr[2] and "" in attr[2].split(" ")      # multi-space padding
    assert attr[2].split()[0] == "000001.jpg" and len(attr[2].split()) == 41
    bbox = (folder / BBOX_FILE).read_text().splitlines()
    assert bbox[0] == "60" and bbox[1].split() == ["image_id", "x_1", "y_1", "width", "height"]
    landmarks = (folder / LANDMARKS_ALIGN_FILE).read_text().splitlines()
    assert landmarks[1].split()[0] == "lefteye_x" and len(landmarks[2].split()) == 11
    partitions = [line.split()[1] for line in (folder / PARTITION_FILE).read_text().splitlines()]
    assert sorted(set(partitions)) == ["0", "1", "2"] and len(partitions) == 60
    assert (folder / "img_align_celeba" / "000060.jpg").is_file()
    assert (folder / "img_celeba" / "000001.jpg").is_file()


# ----------------------------------------------------------------------------- protocols
def test_official_protocol_reads_what_was_written(tree, faces):
    data = make(tree).build()
    assert data.manifest.protocol == "celeba/official" and data.unlabeled is None
    assert {k: len(getattr(data, k)) for k in SIZES} == SIZES
    assert data.label_names == {"attr": list(ATTRIBUTES)} and data.tasks == ["attr"]
    assert data.train.table.au.shape == (40, 0)                 # no AUs
    # every sample's 40 attributes, and the per-split statistics, are those written
    records = {f"img_align_celeba/{r.image}": r for r in layout_records(faces)}
    summary = data.summary()
    for split in SIZES:
        table = getattr(data, split).table
        expected = np.stack([(records[p].attributes > 0) for p in table.image_paths])
        assert np.array_equal(table.attr, expected.astype(np.float32)) and table.attr_mask.all()
        assert all(records[p].partition == ("train", "val", "test").index(split)
                   for p in table.image_paths)
        rates = expected.mean(0)
        assert np.allclose(summary[split]["attr_positive_rate"], rates, atol=1e-4)
        assert summary[split]["num_subjects"] == len({records[p].identity
                                                      for p in table.image_paths})
    assert not subjects(data.train) & subjects(data.val)
    assert not subjects(data.val) & subjects(data.test)
    # the renderer-driven attributes are not constant, so a model can learn something
    written = np.stack([r.attributes for r in records.values()])
    for name in ("Eyeglasses", "Smiling", "Mouth_Slightly_Open", "Male"):
        assert len(set(written[:, ATTRIBUTES.index(name)])) == 2, name


def test_semi_supervised_sizes_identities_and_seed(tree):
    data = make(tree, protocol="semi_supervised", **SEMI).build()
    manifest = data.manifest
    assert manifest.protocol == "celeba/semi_supervised"
    assert {k: len(v) for k, v in manifest.ids.items()} == {
        "train": 10, "unlabeled": 20, "val": 10, "test": 8}
    assert len(data.train) == 10 and len(data.unlabeled) == 20 and len(data.test) == 8
    assert not data.unlabeled.table.attr_mask.any() and not data.unlabeled.table.labeled.any()
    assert all(p.startswith("img_align_celeba/") for ids in manifest.ids.values() for p in ids)
    trained = subjects(data.train) | subjects(data.unlabeled)
    assert not trained & subjects(data.val) and not trained & subjects(data.test)
    assert not subjects(data.val) & subjects(data.test)
    # deterministic in the seed; another seed draws another subset
    again = make(tree, protocol="semi_supervised", **SEMI).build().manifest
    other = make(tree, protocol="semi_supervised", seed=1, **SEMI).build().manifest
    assert again.checksum() == manifest.checksum() and again.ids == manifest.ids
    assert other.checksum() != manifest.checksum()
    # the official protocol is another manifest
    assert make(tree).build().manifest.checksum() != manifest.checksum()


@pytest.mark.parametrize("num_labeled", [10, 7])      # 7: one identity is cut
def test_semi_supervised_disjoint_identities(tree, num_labeled):
    dataset = make(tree, protocol="semi_supervised", unlabeled_identities="disjoint",
                   num_labeled=num_labeled, num_unlabeled=20, num_test=8, num_val=6)
    data = dataset.build()
    assert (len(data.train), len(data.unlabeled), len(data.val), len(data.test)) == (
        num_labeled, 20, 6, 8)
    assert not subjects(data.train) & subjects(data.unlabeled)
    assert dataset.split(dataset.index()).ids == data.manifest.ids      # deterministic


def test_semi_supervised_subset_larger_than_available(tree):
    with pytest.raises(DataError, match=r"30 \+ dataset.num_unlabeled=20 = 50 images .* holds 40"):
        make(tree, protocol="semi_supervised", num_labeled=30, num_unlabeled=20,
             num_test=8).build()
    with pytest.raises(DataError, match="dataset.num_test=11 .* holds: 10"):
        make(tree, protocol="semi_supervised", num_labeled=5, num_unlabeled=5,
             num_test=11).build()
    with pytest.raises(DataError, match="disjoint identities"):
        # 39 <= 40 images, but 18 takes 4 identities (the 4th cut to 3 of its 5) and 21 takes 5
        make(tree, protocol="semi_supervised", unlabeled_identities="disjoint", num_labeled=18,
             num_unlabeled=21, num_test=8).build()


@pytest.mark.parametrize("kwargs, key", [
    ({"protocol": "mlcr"}, "dataset.protocol"),
    ({"images": "img_align"}, "dataset.images"),
    ({"crop": "square"}, "dataset.crop"),
    ({"crop": "bbox"}, "dataset.crop=bbox needs dataset.images=img_celeba"),
    ({"crop": "align", "template": "dlib"}, "dataset.template"),
    ({"num_labeled": 0}, "dataset.num_labeled"),
    ({"num_unlabeled": -1}, "dataset.num_unlabeled"),
    ({"num_val": 0}, "dataset.num_val"),
    ({"seed": -1}, "dataset.seed"),
    ({"unlabeled_identities": "some"}, "dataset.unlabeled_identities"),
    ({"on_error": "ignore"}, "dataset.on_error"),
])
def test_bad_arguments_name_the_config_key(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        make(tmp_path, **kwargs)


# ----------------------------------------------------------------------------- root and images
def test_root_may_be_the_celeba_folder_or_its_parent(tree):
    a = make(tree).build().manifest
    b = make(tree / "celeba").build().manifest
    assert a.ids == b.ids


def test_missing_root_names_the_path_and_shows_the_tree(tmp_path):
    with pytest.raises(DataError) as err:
        make(tmp_path / "nowhere").build()
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    assert "img_align_celeba/000001.jpg" in message and ATTR_FILE in message


def test_crops_recover_the_face(tree, faces):
    records = layout_records(faces)
    face = faces[records[0].face].image.astype(np.float32) / 255
    other = faces[records[1].face].image.astype(np.float32) / 255    # another identity

    def error(**kwargs) -> float:
        """Mean absolute difference of the loaded first image to the face written."""
        data = make(tree, **kwargs).build()
        row = data.train.table.image_paths.index(f"{kwargs.get('images', 'img_align_celeba')}/"
                                                 f"{records[0].image}")
        return float(np.abs(data.train[row]["image"].permute(1, 2, 0).numpy() - face).mean())

    assert np.abs(face - other).mean() > 0.2
    # the aligned image is 32×39 (178:218 with the face centred): center cuts the face back out
    # (JPEG error only), none squashes it
    assert error(crop="center") < 0.03 < error(crop="none")
    # the in-the-wild face sits somewhere on a 64-80 px noisy canvas: bbox and the five points
    # find it, the centre of the photo does not
    assert error(images="img_celeba", crop="bbox") < 0.05
    assert error(images="img_celeba", crop="align") < 0.06
    assert error(crop="align") < 0.06
    assert error(images="img_celeba", crop="center") > 0.1


def test_geometry_files_are_checked_when_a_crop_needs_them(tree):
    folder = tree / "celeba"
    edit_line(folder / LANDMARKS_WILD_FILE, 4, lambda s: None)                 # 000002.jpg
    with pytest.raises(DataError, match=rf"{LANDMARKS_WILD_FILE} has no line for 1 image.*000002"):
        make(tree, images="img_celeba", crop="align").build()
    edit_line(folder / LANDMARKS_WILD_FILE, 4, lambda s: "000003.jpg 1 2 3\n")
    with pytest.raises(DataError, match=rf"{LANDMARKS_WILD_FILE}, line 4: expected an image name "
                                        "and 10 numbers"):
        make(tree, images="img_celeba", crop="align").build()
    (folder / BBOX_FILE).unlink()
    with pytest.raises(DataError, match=rf"annotation file {BBOX_FILE} is missing"):
        make(tree, images="img_celeba", crop="bbox").build()
    make(tree).build()                      # the default crop needs neither file


def test_as_a_pool_every_image_is_cropped_and_unlabelled(tree):
    pool = make(tree).pool(image_size=16)
    assert isinstance(pool, CelebAImages) and len(pool) == 60
    assert not pool.table.attr_mask.any() and pool[0]["image"].shape == (3, 16, 16)


def test_png_folder_variant(tmp_path, faces):
    write_layout(faces, tmp_path, images=("img_align_celeba_png",))
    data = make(tmp_path, images="img_align_celeba_png").build()
    assert data.train.table.image_paths[0].endswith(".png")
    assert data.train[0]["image"].shape == (3, SIZE, SIZE)
    with pytest.raises(DataError, match=r"img_align_celeba is missing.*\['img_align_celeba_png'\]"):
        make(tmp_path).build()


def test_without_identity_file_subjects_are_unknown(tree):
    (tree / "celeba" / IDENTITY_FILE).unlink()
    data = make(tree).build()
    assert (data.train.table.subject == -1).all() and len(data.train) == 40


def test_crlf_line_ends_and_trailing_spaces_parse(tree):
    for name in (ATTR_FILE, PARTITION_FILE, IDENTITY_FILE):
        path = tree / "celeba" / name
        path.write_bytes(path.read_text().replace("\n", "  \r\n").encode())
    assert {k: len(v) for k, v in make(tree).build().manifest.ids.items()} == SIZES


# ----------------------------------------------------------------------------- bad inputs
def _missing_partition_file(folder: Path) -> None:
    (folder / PARTITION_FILE).unlink()


def _short_line(folder: Path) -> None:         # line 5 = 000003.jpg with 39 values
    edit_line(folder / ATTR_FILE, 5, lambda s: s.rsplit(" ", 1)[0] + "\n")


def _value_outside(folder: Path) -> None:
    edit_line(folder / ATTR_FILE, 6, lambda s: s[:-3] + " 0\n")


def _count_mismatch(folder: Path) -> None:
    edit_line(folder / ATTR_FILE, 1, lambda s: "61\n")


def _image_missing(folder: Path) -> None:
    (folder / "img_align_celeba" / "000002.jpg").unlink()


def _not_in_partition_file(folder: Path) -> None:
    edit_line(folder / PARTITION_FILE, 7, lambda s: None)     # 000007.jpg


def _bad_partition_value(folder: Path) -> None:
    edit_line(folder / PARTITION_FILE, 8, lambda s: "000008.jpg 3\n")


# (tree edit, message fragment, number of samples skipped with on_error=skip; None: not
# skippable)
BAD_INPUTS = {
    "missing annotation file": (_missing_partition_file,
                                rf"annotation file {PARTITION_FILE} is missing from .*celeba",
                                None),
    "malformed line": (_short_line, rf"{ATTR_FILE}, line 5: expected an image name and 40 "
                                    "values, found 40 fields", 1),
    "value outside -1/1": (_value_outside, rf"{ATTR_FILE}, line 6: 000004.jpg: Young='0', "
                                           "expected 1 \\(present\\) or -1", 1),
    "count mismatch": (_count_mismatch, rf"{ATTR_FILE}, line 1: the count line says 61 images "
                                        "but the file lists 60", 0),
    "image missing": (_image_missing, r"image file is missing: .*img_align_celeba/000002.jpg", 1),
    "in one file only": (_not_in_partition_file,
                         rf"000007.jpg is listed in {ATTR_FILE} but not in {PARTITION_FILE}", 1),
    "bad partition": (_bad_partition_value, rf"{PARTITION_FILE}, line 8: expected '<image> "
                                            "<0\\|1\\|2>', found '000008.jpg 3'", 1),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_clear_message(tree, case):
    edit, message, skipped = BAD_INPUTS[case]
    edit(tree / "celeba")
    with pytest.raises(DataError, match=message) as err:
        make(tree).build()
    if skipped is not None:
        assert "dataset.on_error=skip" in str(err.value)
        data = make(tree, on_error="skip").build()
        assert data.skipped == 1          # one problem each (the count mismatch drops no row)
        assert sum(len(getattr(data, s)) for s in SIZES) == 60 - skipped


def test_skip_counts_every_bad_row(tree):
    folder = tree / "celeba"
    _short_line(folder)
    _value_outside(folder)
    _image_missing(folder)
    data = make(tree, on_error="skip").build()
    assert data.skipped == 3 and sum(len(getattr(data, s)) for s in SIZES) == 57
    kept = {p for s in SIZES for p in getattr(data, s).table.image_paths}
    assert not kept & {f"img_align_celeba/00000{i}.jpg" for i in (2, 3, 4)}


def test_wrong_header_and_count_line_are_file_errors(tree):
    path = tree / "celeba" / ATTR_FILE
    edit_line(path, 2, lambda s: s.replace("Smiling", "Smile"))
    with pytest.raises(DataError, match=r"line 2: expected the header .* unknown \['Smile'\]"):
        make(tree, on_error="skip").build()
    edit_line(path, 2, lambda s: s.replace("Smile", "Smiling"))
    edit_line(path, 1, lambda s: "image_id,5_o_Clock_Shadow\n")
    with pytest.raises(DataError, match=r"line 1: expected the image count"):
        make(tree, on_error="skip").build()


# ----------------------------------------------------------------------------- cache
def test_index_cache_is_reused_and_refreshed(tree, monkeypatch):
    first = make(tree).build()
    calls = []
    original = CelebA.read_index
    monkeypatch.setattr(CelebA, "read_index",
                        lambda self, problems: calls.append(1) or original(self, problems))
    second = make(tree).build()
    assert calls == [] and second.manifest.ids == first.manifest.ids
    assert np.array_equal(second.train.table.attr, first.train.table.attr)
    # another image folder, or changed labels, mean another index
    make(tree, images="img_celeba", crop="bbox").build()
    assert calls == [1]
    _count_mismatch(tree / "celeba")
    with pytest.raises(DataError, match="count line"):
        make(tree).build()
    assert calls == [1, 1]


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("overrides", [
    ["method=baseline", "method.tasks=[attr]"],
    ["method=mlcr", "method.tasks=[attr]", "dataset.protocol=semi_supervised",
     "dataset.num_labeled=10", "dataset.num_unlabeled=20", "dataset.num_test=8",
     "method.step_two_start=1"],
], ids=["baseline-official", "mlcr-semi_supervised"])
def test_training_end_to_end(tiny_cfg, tree, tmp_path, overrides):
    from affectlab.train import run

    cfg = tiny_cfg("dataset=celeba", f"dataset.root={tree}", "dataset.image_size=32",
                   f"dataset.cache_dir={tmp_path / 'cache'}",
                   "trainer.monitor=val/attr/f1_mean", "trainer.max_steps=2", *overrides)
    metrics = run(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    attr = saved["tasks"]["attr"]
    assert attr["labels"] == list(ATTRIBUTES) and len(attr["f1"]) == 40
    assert saved["dataset"] == "celeba" and saved["steps"] == 2 == metrics["steps"]
    manifest = json.loads((tmp_path / "run" / "split_manifest.json").read_text())
    assert manifest["protocol"] == saved["split_protocol"]
    assert manifest["checksum"] == saved["split_checksum"]
    if "method=mlcr" in overrides:
        assert manifest["sizes"] == {"train": 10, "unlabeled": 20, "val": 10, "test": 8}
    else:
        assert manifest["sizes"] == SIZES


def test_images_without_landmarks_are_skipped_and_counted(tree):
    folder = tree / "celeba"
    edit_line(folder / LANDMARKS_WILD_FILE, 4, lambda s: None)                 # 000002.jpg
    data = make(tree, images="img_celeba", crop="align", on_error="skip").build()
    assert data.skipped == 1
    kept = {p for split in (data.train, data.val, data.test) for p in split.table.image_paths}
    assert "img_celeba/000002.jpg" not in kept and "img_celeba/000003.jpg" in kept
