"""ExpW read from fixture trees in its release layout (written from synthetic faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import EXPRESSIONS, DataError
from affectlab.data.faces.boxes import BoxCropImages
from affectlab.data.layouts.expw import write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.expw import EXPW_CLASSES, EXPW_TO_EXPRESSION, ExpW

SIZE = 32
SPLITS = ("train", "val", "test")
LABELS = "label/label.lst"


@pytest.fixture(scope="module")
def faces():
    return layout_faces(8, 5, seed=4, image_size=SIZE)


@pytest.fixture
def tree(tmp_path, faces):
    """An ExpW tree (image/origin, label/label.lst) and what it holds, per sample id."""
    root = tmp_path / "ExpW"
    return root, write_layout(faces, root)


def load(root: Path, tmp_path: Path, **kwargs) -> ExpW:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", SIZE)
    return ExpW(root=str(root), **kwargs)


def total(data) -> int:
    return sum(len(getattr(data, s)) for s in SPLITS)


def samples(data) -> dict[str, tuple[int, np.ndarray]]:
    """Sample id → (expression, cropped image (H, W, 3) in [0, 1]) over all splits, through the
    manifest (a table row has an image path, shared by the faces of one photo)."""
    out = {}
    for split in SPLITS:
        dataset = getattr(data, split)
        assert len(dataset) == len(data.manifest.ids[split])   # no image missing here
        for row, sample_id in enumerate(data.manifest.ids[split]):
            assert dataset.table.expr_mask[row]
            out[sample_id] = (int(dataset.table.expr[row]),
                              dataset[row]["image"].permute(1, 2, 0).numpy())
    return out


def test_one_sample_per_face_with_the_expression_written(tree, tmp_path, faces):
    root, written = tree
    data = load(root, tmp_path).build()
    got = samples(data)
    assert set(got) == set(written) and len(got) == len(faces)
    assert len({t["image"] for t in written.values()}) < len(written)   # photos with 2-3 faces
    for sample_id, truth in written.items():
        assert got[sample_id][0] == truth["expression"], sample_id
    assert data.label_names == {"expr": list(EXPRESSIONS)}
    assert data.tasks == ["expr"]
    for split in SPLITS:
        table = getattr(data, split).table
        assert (table.subject == -1).all() and not table.va_mask.any()
        assert table.au.shape[1] == 0


def test_the_expression_map_matches_the_class_names():
    # ExpW 0..6 → ABAW index: [1, 2, 3, 4, 5, 6, 0] (wtomin's ExpW_to_aff_wild2)
    assert EXPW_TO_EXPRESSION == (1, 2, 3, 4, 5, 6, 0)
    same = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
            "sad": "sadness", "surprise": "surprise", "neutral": "neutral"}
    assert [EXPRESSIONS[e] for e in EXPW_TO_EXPRESSION] == [same[c] for c in EXPW_CLASSES]


def face_errors(data, written, faces) -> list[float]:
    return [float(np.abs(image - faces[written[i]["face"]].image.astype(np.float32) / 255).mean())
            for i, (_, image) in samples(data).items()]


def test_each_face_is_cropped_from_its_box_in_top_left_right_bottom_order(tree, tmp_path, faces):
    root, written = tree
    data = load(root, tmp_path).build()
    assert isinstance(data.train, BoxCropImages)
    assert max(face_errors(data, written, faces)) < 0.04           # JPEG error only
    whole = load(root, tmp_path, crop="none").build()
    assert np.mean(face_errors(whole, written, faces)) > 0.1
    # the same file read as if the box were 'left top right bottom' finds no faces
    path = root / LABELS
    lines = [line.split() for line in path.read_text().splitlines()]
    path.write_text("".join(" ".join(f[:2] + [f[3], f[2], f[5], f[4]] + f[6:]) + "\n"
                            for f in lines))
    swapped = load(root, tmp_path, cache_dir=str(tmp_path / "c2")).build()
    assert np.mean(face_errors(swapped, written, faces)) > 0.1


def test_splits_keep_the_faces_of_a_photo_together_and_are_seeded(tree, tmp_path):
    root, written = tree
    runs = [load(root, tmp_path, seed=s).build() for s in (0, 0, 1)]
    images = {split: {written[i]["image"] for i in runs[0].manifest.ids[split]} for split in SPLITS}
    assert not (images["train"] & images["val"] or images["train"] & images["test"]
                or images["val"] & images["test"])
    num_images = len({t["image"] for t in written.values()})
    assert num_images == 21        # 40 faces as photos of 1, 2, 3, 1, 2, 3, ..., 1, 2, 1 faces
    assert [len(images[s]) for s in SPLITS] == [17, 2, 2]       # 0.8 / 0.1 / 0.1 of the photos
    assert sum(len(runs[0].manifest.ids[s]) for s in SPLITS) == len(written)
    assert runs[0].manifest.checksum() == runs[1].manifest.checksum()
    assert runs[0].manifest.checksum() != runs[2].manifest.checksum()
    assert runs[2].manifest.protocol == "expw/random-images/seed1"


def test_flat_layout_gives_the_same_samples(tmp_path, faces):
    write_layout(faces, tmp_path / "flat", nested=False)
    write_layout(faces, tmp_path / "nested")
    assert (tmp_path / "flat" / "label.lst").is_file() and (tmp_path / "flat" / "origin").is_dir()
    a = load(tmp_path / "flat", tmp_path, cache_dir=str(tmp_path / "c1")).build()
    b = load(tmp_path / "nested", tmp_path, cache_dir=str(tmp_path / "c2")).build()
    assert a.manifest.ids == b.manifest.ids
    assert a.train.table.image_paths[0].startswith("origin/")
    assert b.train.table.image_paths[0].startswith("image/origin/")


def test_missing_root_and_files_name_the_path_and_show_the_layout(tree, tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value) and "label/label.lst" in str(err.value)
    root, _ = tree
    (root / LABELS).unlink()
    with pytest.raises(DataError, match=r"ExpW label file not found: expected .*label.lst"):
        load(root, tmp_path).build()


def edit_line(path: Path, number: int, fields_of) -> list[str]:
    """Rewrite line ``number`` (1-based) through ``fields_of`` (fields → fields); return the
    original fields."""
    lines = path.read_text().splitlines()
    fields = lines[number - 1].split()
    lines[number - 1] = " ".join(fields_of(list(fields)))
    path.write_text("\n".join(lines) + "\n")
    return fields


def _set(column: int, value: str):
    def change(fields: list[str]) -> list[str]:
        fields[column] = value
        return fields
    return change


# line 2 = the first face of the second photo (the first photo has one face);
# (change, message fragment after "label.lst, line 2: ")
BAD_LINES = {
    "field count": (lambda f: f[:7], r"expected 8 fields 'image_name face_id top left right "
                                     r"bottom confidence expression', found 7"),
    "not a number": (_set(7, "happy"), r".*: face id and expression must be integers"),
    "box without area": (lambda f: f[:4] + [f[3]] + f[5:],
                         r".*: face box top=\d+ left=(\d+) right=\1 bottom=\d+ has no area"),
    "expression outside 0..6": (_set(7, "7"), r".*: expression 7 is outside ExpW's 0..6"),
    "negative face id": (_set(1, "-1"), r".*: face id -1 is negative"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_line_names_file_and_line_and_skip_counts_it(tree, tmp_path, case):
    root, written = tree
    change, message = BAD_LINES[case]
    edit_line(root / LABELS, 2, change)
    with pytest.raises(DataError, match=rf"label.lst, line 2: {message}") as err:
        load(root, tmp_path).build()
    assert str(root / LABELS) in str(err.value) and "dataset.on_error=skip" in str(err.value)
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and total(data) == len(written) - 1


def test_repeated_face_and_missing_image_are_reported(tree, tmp_path):
    root, written = tree
    path = root / LABELS
    first = edit_line(path, 3, lambda f: f)              # the second photo's second face
    edit_line(path, 3, _set(1, "0"))                      # ... now claims face id 0 again
    with pytest.raises(DataError, match=rf"line 3: {first[0]}: face id 0 is listed a second"):
        load(root, tmp_path).build()
    edit_line(path, 3, _set(1, "1"))
    lonely = path.read_text().split()[0]                  # the first photo holds one face
    (root / "image/origin" / lonely).unlink()
    with pytest.raises(DataError, match=rf"image file is missing: .*{lonely}"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and total(data) == len(written) - 1
    kept = {i for s in SPLITS for i in data.manifest.ids[s]}
    assert f"{lonely}#0" in kept                          # in the manifest, not in the splits


def test_a_missing_photo_drops_its_faces_and_the_others_keep_their_boxes(tree, tmp_path,
                                                                         faces):
    root, written = tree
    photo = next(t["image"] for i, t in written.items() if i.endswith("#2"))   # three faces
    (root / "image/origin" / photo).unlink()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 3 and total(data) == len(written) - 3   # one report per face row
    for split in SPLITS:
        dataset = getattr(data, split)
        kept = [i for i in data.manifest.ids[split] if written[i]["image"] != photo]
        assert len(kept) == len(dataset)
        for row, sample_id in enumerate(kept):                     # each row, its own box
            face = faces[written[sample_id]["face"]].image.astype(np.float32) / 255
            image = dataset[row]["image"].permute(1, 2, 0).numpy()
            assert np.abs(image - face).mean() < 0.04, sample_id


def test_skip_counts_every_bad_line(tree, tmp_path):
    root, written = tree
    edit_line(root / LABELS, 2, _set(7, "9"))
    edit_line(root / LABELS, 4, lambda f: f[:3])
    edit_line(root / LABELS, 5, _set(4, "x"))
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 3 and total(data) == len(written) - 3


def test_bad_arguments_name_the_config_key(tree, tmp_path):
    root, _ = tree
    for kwargs, key in (({"train_fraction": 0.95}, "train_fraction"), ({"crop": "align"}, "crop"),
                        ({"box_margin": -1.0}, "box_margin"), ({"seed": -2}, "seed")):
        with pytest.raises(ValueError, match=rf"dataset.{key}"):
            load(root, tmp_path, **kwargs)


def test_as_a_pool_every_face_is_cropped_and_unlabelled(tree, tmp_path, faces):
    root, written = tree
    pool = load(root, tmp_path).pool(image_size=16)
    assert isinstance(pool, BoxCropImages) and len(pool) == len(written)
    assert not pool.table.expr_mask.any() and pool[0]["image"].shape == (3, 16, 16)


def test_index_is_cached_and_rebuilt_when_the_label_file_changes(tree, tmp_path, monkeypatch):
    root, _ = tree
    load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("expw-*.npz"))
    calls = []
    original = ExpW.read_index
    monkeypatch.setattr(ExpW, "read_index",
                        lambda self, problems: calls.append(1) or original(self, problems))
    load(root, tmp_path, seed=3, box_margin=0.2).build()        # same index, other split/crop
    assert calls == []
    edit_line(root / LABELS, 1, _set(7, "6"))
    data = load(root, tmp_path).build()
    assert calls == [1]
    first = data.manifest.ids
    row = {i: (s, k) for s in SPLITS for k, i in enumerate(first[s])}
    split, k = row[f"{(root / LABELS).read_text().split()[0]}#0"]
    assert getattr(data, split).table.expr[k] == EXPW_TO_EXPRESSION[6]


def test_build_through_train_py_gives_expression_batches(tree, tmp_path, tiny_cfg):
    """The batches `python train.py` builds carry the labels written into the fixture (training
    on them, method.tasks=[expr] or [va], is tests/test_expr_va_training.py)."""
    from affectlab.build import build

    root, _ = tree
    cfg = tiny_cfg("dataset=expw", f"dataset.root={root}", f"dataset.image_size={SIZE}",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
                   "method.tasks=[au]", "trainer.batch_size=4")
    data, method, trainer = build(cfg)
    batch = trainer.prepare_batch(next(iter(trainer.loader(data.train, None, 4))), data, train=True)
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["au"].shape == (4, 0)
    assert batch["expr"].tolist() == data.train.table.expr[:4].tolist()
    assert batch["expr_mask"].all() and not batch["va_mask"].any()
    assert (batch["subject"] == -1).all()
    with pytest.raises(ValueError, match="method.tasks has 'au', but dataset"):
        method.setup(data)
