"""AFEW-VA read from fixture trees in its release layout (written from synthetic faces)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import DataError
from affectlab.data.faces.boxes import BoxCropImages
from affectlab.data.layouts.afew_va import write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.afew_va import AFEWVA, VA_SCALE

SIZE = 32
SPLITS = ("train", "val", "test")
NUM_SUBJECTS, IMAGES_PER_SUBJECT, FRAMES_PER_CLIP = 8, 5, 4   # → 2 clips per subject, 16 clips


@pytest.fixture(scope="module")
def faces():
    return layout_faces(NUM_SUBJECTS, IMAGES_PER_SUBJECT, seed=5, image_size=SIZE)


@pytest.fixture
def tree(tmp_path, faces):
    """An AFEW-VA tree (clip folders at the root) and what it holds, per frame path."""
    root = tmp_path / "AFEW-VA"
    return root, write_layout(faces, root, frames_per_clip=FRAMES_PER_CLIP)


def load(root: Path, tmp_path: Path, **kwargs) -> AFEWVA:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", SIZE)
    return AFEWVA(root=str(root), **kwargs)


def rows_by_path(data) -> dict[str, tuple[tuple[float, float], str]]:
    """Frame path → ((valence, arousal), clip) over all splits."""
    out = {}
    for split in SPLITS:
        t = getattr(data, split).table
        names = data.manifest.ids[split]
        assert t.image_paths == names            # sample ids are the frame paths
        for i, path in enumerate(t.image_paths):
            assert t.va_mask[i] and not t.expr_mask[i]
            out[path] = (tuple(t.va[i].tolist()), path.rsplit("/", 1)[0])
    return out


def total(data) -> int:
    return sum(len(getattr(data, s)) for s in SPLITS)


def test_labels_equal_what_the_fixture_wrote_rescaled_to_unit_range(tree, tmp_path):
    root, written = tree
    data = load(root, tmp_path).build()
    rows = rows_by_path(data)
    assert set(rows) == set(written)
    for path, truth in written.items():
        va, clip = rows[path]
        np.testing.assert_allclose(va, np.array(truth["raw"]) / VA_SCALE, atol=1e-6)
        assert clip == truth["clip"]
    assert data.label_names == {"va": ["valence", "arousal"]}
    assert data.tasks == ["va"]
    # subjects are clips: one subject id per clip folder, none shared by two clips
    for split in SPLITS:
        table = getattr(data, split).table
        clips = {}
        for subject, path in zip(table.subject, table.image_paths):
            clips.setdefault(int(subject), set()).add(path.rsplit("/", 1)[0])
        assert all(len(v) == 1 for v in clips.values()) and table.au.shape[1] == 0


def set_entry(root: Path, clip: str, key: str, **values) -> Path:
    """Change one frame entry of a clip's JSON, keeping one frame per line."""
    path = root / clip / f"{clip.rsplit('/', 1)[-1]}.json"
    lines = path.read_text().splitlines()
    for k, line in enumerate(lines):
        if line.lstrip().startswith(f'"{key}"'):
            entry = json.loads(line.split(":", 1)[1].rstrip(","))
            entry.update(values)
            lines[k] = f'  "{key}": {json.dumps(entry)}' + ("," if line.endswith(",") else "")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_scale_ends_map_to_plus_minus_one(tree, tmp_path):
    root, _ = tree
    set_entry(root, "001", "00000", valence=10, arousal=-10)
    set_entry(root, "001", "00001", valence=2.5, arousal=0)
    rows = rows_by_path(load(root, tmp_path).build())
    assert rows["001/00000.png"][0] == (1.0, -1.0)
    np.testing.assert_allclose(rows["001/00001.png"][0], (0.25, 0.0))


def test_part_folders_give_the_same_frames(tmp_path, faces):
    write_layout(faces, tmp_path / "flat", frames_per_clip=FRAMES_PER_CLIP)
    written = write_layout(faces, tmp_path / "parts", frames_per_clip=FRAMES_PER_CLIP,
                           clips_per_part=5)
    assert {p.split("/")[0] for p in written} == {"01", "02", "03", "04"}   # 16 clips, 5 a part
    a = rows_by_path(load(tmp_path / "flat", tmp_path, cache_dir=str(tmp_path / "c1")).build())
    b = rows_by_path(load(tmp_path / "parts", tmp_path, cache_dir=str(tmp_path / "c2")).build())
    assert {k.split("/", 1)[1]: v[0] for k, v in b.items()} == {k: v[0] for k, v in a.items()}


def test_landmark_crop_recovers_the_face(tree, tmp_path, faces):
    root, written = tree

    def error(**kwargs) -> float:
        data = load(root, tmp_path, **kwargs).build()
        errors = []
        for split in SPLITS:
            dataset = getattr(data, split)
            for row, path in enumerate(dataset.table.image_paths):
                face = faces[written[path]["face"]].image.astype(np.float32) / 255
                errors.append(np.abs(dataset[row]["image"].permute(1, 2, 0).numpy() - face).mean())
        return float(np.mean(errors))

    assert isinstance(load(root, tmp_path).build().train, BoxCropImages)
    # the 68 points' box is the face square: no margin gives the face back (PNG: lossless)
    assert error(box_margin=0.0) < 1e-3
    assert 0.02 < error() < error(crop="none")            # default margin 0.2; whole frame


def test_splits_are_clip_exclusive_seeded_and_recorded(tree, tmp_path):
    root, written = tree
    runs = [load(root, tmp_path, seed=s).build() for s in (0, 0, 1)]
    clips = {s: {written[p]["clip"] for p in runs[0].manifest.ids[s]} for s in SPLITS}
    assert not (clips["train"] & clips["val"] or clips["train"] & clips["test"]
                or clips["val"] & clips["test"])
    assert [len(clips[s]) for s in SPLITS] == [13, 2, 1]      # 0.8 / 0.1 / 0.1 of 16 clips
    assert runs[0].manifest.checksum() == runs[1].manifest.checksum()
    assert runs[0].manifest.checksum() != runs[2].manifest.checksum()
    assert runs[2].manifest.protocol == "afew_va/random-clips/seed1"
    assert total(runs[0]) == len(written)


def test_missing_root_or_no_clip_names_the_path_and_shows_the_layout(tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value) and "001/001.json" in str(err.value)
    (tmp_path / "empty" / "001").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no AFEW-VA clip under .*empty"):
        load(tmp_path / "empty", tmp_path).build()


# clip 003 = subject 1's first four frames, 00000..00003 on lines 2..5 of 003.json;
# (change, message fragment, frames lost with on_error=skip)
BAD_INPUTS = {
    "valence outside": (lambda root: set_entry(root, "003", "00001", valence=11),
                        r"003.json, line 3 \(frame 00001\): valence 11 is not a number in "
                        r"AFEW-VA's -10..10", 1),
    "arousal not a number": (lambda root: set_entry(root, "003", "00002", arousal="high"),
                             r"003.json, line 4 \(frame 00002\): arousal 'high' is not a number",
                             1),
    "valence missing": (lambda root: set_entry(root, "003", "00000", valence=None),
                        r"003.json, line 2 \(frame 00000\): valence None is not a number", 1),
    "landmarks malformed": (lambda root: set_entry(root, "003", "00003", landmarks=[[1, 2]] * 67),
                            r"003.json, line 5 \(frame 00003\): landmarks are not 68 \[x, y\] "
                            "pairs", 1),
    "invalid JSON": (lambda root: (root / "003/003.json").write_text('{"frames": {\n  "00000": {'),
                     r"003.json, line 2: not valid JSON", 4),        # the whole clip
    "no frames object": (lambda root: (root / "003/003.json").write_text('{"clip": 3}\n'),
                         r"003.json, line 1: expected an object with a 'frames' object", 4),
    "frame without entry": (lambda root: (root / "003/00007.png").write_bytes(
                                (root / "003/00000.png").read_bytes()),
                            r"003/00007.png: frame has no entry in .*003.json", 0),
    "entry without frame": (lambda root: (root / "003/00003.png").unlink(),
                            r"image file is missing: .*003/00003.png", 1),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_file_and_line_and_skip_counts_it(tree, tmp_path, case):
    root, written = tree
    assert sum(t["clip"] == "003" for t in written.values()) == 4
    edit, message, lost = BAD_INPUTS[case]
    edit(root)
    with pytest.raises(DataError, match=message) as err:
        load(root, tmp_path).build()
    assert "dataset.on_error=skip" in str(err.value)
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and total(data) == len(written) - lost


def test_landmarks_are_needed_only_by_the_landmark_crop(tree, tmp_path):
    root, written = tree
    set_entry(root, "003", "00000", landmarks=None)
    with pytest.raises(DataError, match=r"003.json, line 2 \(frame 00000\): landmarks"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, crop="none").build()           # its own cached index
    assert data.skipped == 0 and total(data) == len(written)


def test_skip_counts_every_bad_entry(tree, tmp_path):
    root, written = tree
    set_entry(root, "001", "00000", valence=-12)
    set_entry(root, "003", "00001", arousal=[1])
    (root / "004" / "00000.png").unlink()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 3 and total(data) == len(written) - 3


def test_bad_arguments_name_the_config_key(tree, tmp_path):
    root, _ = tree
    for kwargs, key in (({"val_fraction": 1.0}, "val_fraction"), ({"crop": "box"}, "crop"),
                        ({"box_margin": -0.5}, "box_margin"), ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=rf"dataset.{key}"):
            load(root, tmp_path, **kwargs)


def test_index_is_cached_and_rebuilt_when_a_clip_changes(tree, tmp_path, monkeypatch):
    root, _ = tree
    load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("afew_va-*.npz"))
    calls = []
    original = AFEWVA.read_index
    monkeypatch.setattr(AFEWVA, "read_index",
                        lambda self, problems: calls.append(1) or original(self, problems))
    load(root, tmp_path, seed=2, box_margin=0.0).build()     # same index
    assert calls == []
    set_entry(root, "001", "00000", valence=-7)
    rows = rows_by_path(load(root, tmp_path).build())
    assert calls == [1] and rows["001/00000.png"][0][0] == pytest.approx(-0.7)


def test_build_through_train_py_gives_va_batches(tree, tmp_path, tiny_cfg):
    """The batches `python train.py` builds carry the labels written into the fixture (training
    on them, method.tasks=[expr] or [va], is tests/test_expr_va_training.py)."""
    from affectlab.build import build

    root, _ = tree
    cfg = tiny_cfg("dataset=afew_va", f"dataset.root={root}", f"dataset.image_size={SIZE}",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
                   "method.tasks=[au]", "trainer.batch_size=4")
    data, method, trainer = build(cfg)
    batch = trainer.prepare_batch(next(iter(trainer.loader(data.train, None, 4))), data, train=True)
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["au"].shape == (4, 0)
    np.testing.assert_allclose(batch["va"].numpy(), data.train.table.va[:4])
    assert batch["va_mask"].all() and not batch["expr_mask"].any()
    assert (batch["va"].abs() <= 1).all()
    with pytest.raises(ValueError, match="method.tasks has 'au', but dataset"):
        method.setup(data)
