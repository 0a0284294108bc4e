"""AffectNet read from fixture trees in its release layout (written from synthetic faces)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import EXPRESSIONS, DataError
from affectlab.data.faces.boxes import BoxCropImages
from affectlab.data.layouts.affectnet import write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.affectnet import AFFECTNET_CLASSES, AFFECTNET_TO_EXPRESSION, AffectNet

NESTED = "Manually_Annotated/Manually_Annotated_Images"
LISTS = "Manually_Annotated_file_lists"
SIZE = 32
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def faces():
    return layout_faces(8, 5, seed=3, image_size=SIZE)


@pytest.fixture
def tree(tmp_path, faces):
    """An AffectNet tree (nested image folder, CSVs in the file-list folder) and what it holds."""
    root = tmp_path / "AffectNet"
    return root, write_layout(faces, root)


def load(root: Path, tmp_path: Path, **kwargs) -> AffectNet:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", SIZE)
    return AffectNet(root=str(root), **kwargs)


def rows_by_path(data) -> dict[str, tuple[int | None, tuple[float, float] | None]]:
    out = {}
    for split in SPLITS:
        t = getattr(data, split).table
        for i, path in enumerate(t.image_paths):
            out[path] = (int(t.expr[i]) if t.expr_mask[i] else None,
                         tuple(t.va[i].tolist()) if t.va_mask[i] else None)
    return out


def image_path(sample_id: str, folder: str = NESTED) -> str:
    return f"{folder}/{sample_id.split('/', 1)[1]}"


def total(data) -> int:
    return sum(len(getattr(data, s)) for s in SPLITS)


def test_labels_equal_what_the_fixture_wrote(tree, tmp_path):
    root, written = tree
    data = load(root, tmp_path).build()
    rows = rows_by_path(data)
    assert set(rows) == {image_path(i) for i in written}
    for sample_id, truth in written.items():
        expression, va = rows[image_path(sample_id)]
        assert expression == truth["expression"], sample_id
        if truth["va"] is None:
            assert va is None, sample_id                      # the -2 sentinel: masked
        else:
            np.testing.assert_allclose(va, truth["va"], atol=1e-6)
    assert data.label_names == {"expr": list(EXPRESSIONS), "va": ["valence", "arousal"]}
    assert data.tasks == ["expr", "va"]
    assert all((getattr(data, s).table.subject == -1).all() for s in SPLITS)
    assert all(getattr(data, s).table.au.shape[1] == 0 for s in SPLITS)
    # every class without an ABAW counterpart was written and is masked, never a class
    codes = {t["code"] for t in written.values()}
    assert {7, 8, 9, 10} <= codes
    for sample_id, truth in written.items():
        if truth["code"] >= 7:
            assert rows[image_path(sample_id)][0] is None
    # contempt and None keep their valid VA; Uncertain and No-Face carry the sentinel
    assert all((rows[image_path(i)][1] is None) == (t["code"] in (9, 10))
               for i, t in written.items() if t["code"] >= 7)


def test_the_expression_map_matches_the_class_names():
    # AffectNet 0..6 → ABAW index: [0, 4, 5, 6, 3, 2, 1] (shared/reference/datasets.md §0.2)
    assert AFFECTNET_TO_EXPRESSION == (0, 4, 5, 6, 3, 2, 1)
    same = {"Neutral": "neutral", "Happy": "happiness", "Sad": "sadness", "Surprise": "surprise",
            "Fear": "fear", "Disgust": "disgust", "Anger": "anger"}
    for code, abaw in enumerate(AFFECTNET_TO_EXPRESSION):
        assert EXPRESSIONS[abaw] == same[AFFECTNET_CLASSES[code]]


def test_protocol_official_validation_is_test_and_val_is_a_seeded_carve_out(tree, tmp_path):
    root, written = tree
    runs = [load(root, tmp_path, seed=s).build() for s in (0, 0, 1)]
    ids = runs[0].manifest.ids
    training = {i for i, t in written.items() if t["partition"] == "training"}
    assert set(ids["test"]) == {i for i, t in written.items() if t["partition"] == "validation"}
    assert set(ids["train"]) | set(ids["val"]) == training
    assert not set(ids["train"]) & set(ids["val"])
    assert len(ids["val"]) == round(0.1 * len(training)) == 3 and len(ids["test"]) == 10
    assert [len(getattr(runs[0], s)) for s in SPLITS] == [27, 3, 10]
    assert runs[0].manifest.checksum() == runs[1].manifest.checksum()
    assert runs[0].manifest.ids["val"] != runs[2].manifest.ids["val"]
    assert runs[0].manifest.ids["test"] == runs[2].manifest.ids["test"]
    assert runs[2].manifest.protocol == "affectnet/official-validation-as-test/val0.1-seed1"
    larger = load(root, tmp_path, val_fraction=0.5).build()
    assert len(larger.val) == 15


def test_flat_layout_gives_the_same_samples(tmp_path, faces):
    flat = tmp_path / "flat"
    write_layout(faces, flat, nested=False, lists_dir=".")
    assert (flat / "training.csv").is_file() and (flat / "Manually_Annotated_Images").is_dir()
    nested = tmp_path / "nested"
    write_layout(faces, nested)
    a = rows_by_path(load(flat, tmp_path, cache_dir=str(tmp_path / "c1")).build())
    b = rows_by_path(load(nested, tmp_path, cache_dir=str(tmp_path / "c2")).build())
    assert {k.replace("Manually_Annotated_Images/", f"{NESTED}/"): v for k, v in a.items()} == b


def test_box_crop_recovers_the_face(tree, tmp_path, faces):
    root, written = tree
    truth = {image_path(i): t for i, t in written.items()}

    def error(**kwargs) -> float:
        data = load(root, tmp_path, **kwargs).build()
        errors = []
        for split in SPLITS:
            dataset = getattr(data, split)
            for row, path in enumerate(dataset.table.image_paths):
                face = faces[truth[path]["face"]].image.astype(np.float32) / 255
                image = dataset[row]["image"].permute(1, 2, 0).numpy()
                errors.append(np.abs(image - face).mean())
        return float(np.mean(errors))

    assert isinstance(load(root, tmp_path).build().train, BoxCropImages)
    assert error() < 0.03 < 0.1 < error(crop="none")     # JPEG error only vs a squashed canvas
    # a margin widens the square around the same centre: the face shrinks, error grows
    assert error(box_margin=0.5) > 0.05


def test_missing_root_and_files_name_the_path_and_show_the_layout(tree, tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "Manually_Annotated_Images/512/" in str(err.value)
    root, _ = tree
    (root / LISTS / "validation.csv").unlink()
    with pytest.raises(DataError, match=r"validation.csv not found: expected .*validation.csv"):
        load(root, tmp_path).build()


def edit_line(path: Path, number: int, change: Callable[[list[str]], list[str] | None]) -> str:
    """Rewrite line ``number`` (1-based) of a CSV through ``change`` (fields → fields, or None
    to delete it); return the image path of the original line."""
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[number - 1].rstrip("\n").split(",")
    new = change(list(fields))
    lines[number - 1] = "" if new is None else ",".join(new) + "\n"
    path.write_text("".join(lines))
    return fields[0]


def _set(column: int, value: str) -> Callable[[list[str]], list[str]]:
    def change(fields: list[str]) -> list[str]:
        fields[column] = value
        return fields
    return change


# (change of line 3 of training.csv, message fragment after "training.csv, line 3: ")
BAD_LINES = {
    "field count": (lambda f: f[:-1], "expected 9 comma-separated fields, found 8"),
    "not a number": (_set(6, "happy"), r".*: box, expression, valence and arousal must be "
                                       "numbers"),
    "box without area": (_set(3, "0"), r".*: face box x=\d+ y=\d+ width=0 height=32 has no area"),
    "class outside 0..10": (_set(6, "11"), r".*: expression 11 is outside AffectNet's 0..10"),
    "valence outside": (_set(7, "1.500000"), r".*: valence 1.5 is outside \[-1, 1\] \(and is "
                                             r"not the -2 sentinel\)"),
    "arousal outside": (_set(8, "-3"), r".*: arousal -3 is outside \[-1, 1\]"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_line_names_file_and_line_and_skip_counts_it(tree, tmp_path, case):
    root, written = tree
    change, message = BAD_LINES[case]
    csv = root / LISTS / "training.csv"
    edit_line(csv, 3, change)
    with pytest.raises(DataError, match=rf"training.csv, line 3: {message}") as err:
        load(root, tmp_path).build()
    assert str(csv) in str(err.value) and "dataset.on_error=skip" in str(err.value)
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and total(data) == len(written) - 1


def test_duplicate_path_and_missing_image_are_reported(tree, tmp_path):
    root, written = tree
    csv = root / LISTS / "training.csv"
    lines = csv.read_text().splitlines(keepends=True)
    lines[3] = lines[2]                                  # line 4 repeats line 3's image
    csv.write_text("".join(lines))
    with pytest.raises(DataError, match=r"training.csv, line 4: .* is listed a second time"):
        load(root, tmp_path).build()
    csv.write_text("".join(lines[:3] + lines[4:]))       # drop it; then lose an image file
    gone = lines[5].split(",")[0]
    (root / NESTED / gone).unlink()
    with pytest.raises(DataError, match=rf"image file is missing: .*{gone}"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and total(data) == len(written) - 2


def test_wrong_header_is_a_file_error_even_with_skip(tree, tmp_path):
    root, _ = tree
    csv = root / LISTS / "validation.csv"
    csv.write_text(csv.read_text().replace("face_x", "x", 1))
    with pytest.raises(DataError, match=r"validation.csv, line 1: expected the header "
                                        "subDirectory_filePath,face_x"):
        load(root, tmp_path, on_error="skip").build()


def test_sentinel_on_one_value_masks_the_pair_and_keeps_the_expression(tree, tmp_path):
    root, written = tree
    csv = root / LISTS / "training.csv"
    name = edit_line(csv, 2, _set(8, "-2"))
    code = int(csv.read_text().splitlines()[1].split(",")[6])
    expression, va = rows_by_path(load(root, tmp_path).build())[f"{NESTED}/{name}"]
    assert va is None
    assert expression == (AFFECTNET_TO_EXPRESSION[code] if code < 7 else None)


def test_skip_counts_every_bad_line(tree, tmp_path):
    root, written = tree
    csv = root / LISTS / "training.csv"
    edit_line(csv, 2, _set(6, "12"))
    edit_line(csv, 4, lambda f: f[:5])
    edit_line(root / LISTS / "validation.csv", 2, _set(7, "nan?"))
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 3 and total(data) == len(written) - 3


def test_bad_arguments_name_the_config_key(tree, tmp_path):
    root, _ = tree
    for kwargs, key in (({"val_fraction": 0.0}, "val_fraction"), ({"crop": "align"}, "crop"),
                        ({"box_margin": -0.1}, "box_margin"), ({"seed": -1}, "seed"),
                        ({"on_error": "ignore"}, "on_error")):
        with pytest.raises(ValueError, match=rf"dataset.{key}"):
            load(root, tmp_path, **kwargs)


def test_index_is_cached_and_rebuilt_when_a_list_changes(tree, tmp_path, monkeypatch):
    root, _ = tree
    first = load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("affectnet-*.npz"))
    calls = []
    original = AffectNet.read_index
    monkeypatch.setattr(AffectNet, "read_index",
                        lambda self, problems: calls.append(1) or original(self, problems))
    second = load(root, tmp_path, crop="none", val_fraction=0.2).build()   # same index
    assert calls == [] and np.array_equal(
        np.sort(np.concatenate([getattr(first, s).table.expr for s in SPLITS])),
        np.sort(np.concatenate([getattr(second, s).table.expr for s in SPLITS])))
    edit_line(root / LISTS / "training.csv", 2, _set(6, "7"))          # now contempt
    load(root, tmp_path).build()
    assert calls == [1]


def test_build_through_train_py_gives_expression_and_va_batches(tree, tmp_path, tiny_cfg):
    """The batches `python train.py` builds carry the labels written into the fixture (training
    on them, method.tasks=[expr] or [va], is tests/test_expr_va_training.py)."""
    from affectlab.build import build

    root, written = tree
    cfg = tiny_cfg("dataset=affectnet", f"dataset.root={root}", f"dataset.image_size={SIZE}",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
                   "method.tasks=[au]", "trainer.batch_size=4")
    data, method, trainer = build(cfg)
    batch = next(iter(trainer.loader(data.train, None, 4)))
    batch = trainer.prepare_batch(batch, data, train=True)
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["au"].shape == (4, 0)
    table = data.train.table
    assert batch["expr"].tolist() == table.expr[:4].tolist()
    assert batch["expr_mask"].tolist() == table.expr_mask[:4].tolist()
    np.testing.assert_allclose(batch["va"].numpy(), table.va[:4])
    data.manifest.save(tmp_path / "split_manifest.json")
    saved = json.loads((tmp_path / "split_manifest.json").read_text())
    assert saved["sizes"] == {"train": 27, "val": 3, "test": 10}
    with pytest.raises(ValueError, match="method.tasks has 'au', but dataset"):
        method.setup(data)          # the AU baseline refuses clearly, naming expr and va
