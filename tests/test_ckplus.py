"""CK+ read from fixture trees in its published layout (written from synthetic faces)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import EXPRESSIONS, DataError
from affectlab.data.layouts.ckplus import write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.ckplus import CKPlus
from affectlab.train import run

AUS = [1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43]
NUM_SUBJECTS = 10
SEQUENCES_PER_SUBJECT = 3


@pytest.fixture(scope="module")
def faces():
    return layout_faces(NUM_SUBJECTS, SEQUENCES_PER_SUBJECT, seed=3, image_size=32)


@pytest.fixture
def tree(tmp_path, faces):
    """A CK+ tree (flat FACS/ and Emotion/) and what was written into it."""
    root = tmp_path / "CK+"
    written = write_layout(faces, root)
    return root, written


def load(root: Path, tmp_path: Path, **kwargs) -> CKPlus:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", 32)
    return CKPlus(root=str(root), **kwargs)


def rows_by_id(data) -> dict[str, tuple[np.ndarray, np.ndarray, int | None]]:
    out = {}
    for split in (data.train, data.val, data.test):
        t = split.table
        for i, path in enumerate(t.image_paths):
            out[path] = (t.au[i], t.au_mask[i], int(t.expr[i]) if t.expr_mask[i] else None)
    return out


def test_labels_equal_what_the_fixture_wrote(tree, tmp_path):
    root, written = tree
    data = load(root, tmp_path).build()
    rows = rows_by_id(data)
    assert set(rows) == set(written)   # one peak frame per sequence, nothing lost
    for sample_id, truth in written.items():
        au, mask, expression = rows[sample_id]
        assert mask.all()                                 # CK+: an unlisted AU is absent, known
        assert au.tolist() == [truth["aus"][a] for a in AUS], sample_id
        assert expression == truth["expression"]
    assert data.label_names["au"] == [f"AU{a}" for a in AUS]
    assert data.label_names["expr"] == list(EXPRESSIONS)
    # expressions exist only where an emotion file was written (every 2nd sequence)
    with_expression = sum(t["expression"] is not None for t in written.values())
    assert 0 < with_expression < len(written)
    assert sum(r[2] is not None for r in rows.values()) == with_expression
    # the statistics the loader reports are those of the written labels
    stats = data.summary()
    total = sum(stats[s]["num_samples"] for s in ("train", "val", "test"))
    positives = sum(np.array(stats[s]["au_positive_rate"]) * stats[s]["num_samples"]
                    for s in ("train", "val", "test"))
    expected = [sum(t["aus"][a] for t in written.values()) for a in AUS]
    np.testing.assert_allclose(positives, expected, atol=1e-2 * total)


def test_nested_archive_folders_give_the_same_samples(tmp_path, faces):
    flat = tmp_path / "flat"
    nested = tmp_path / "nested"
    write_layout(faces, flat)
    write_layout(faces, nested, facs_dir="FACS_labels/FACS", emotion_dir="Emotion_labels/Emotion")
    a = rows_by_id(load(flat, tmp_path, cache_dir=str(tmp_path / "c1")).build())
    b = rows_by_id(load(nested, tmp_path, cache_dir=str(tmp_path / "c2")).build())
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k][0], b[k][0]) and a[k][2] == b[k][2] for k in a)


def first_sequence(root: Path, folder: str) -> Path:
    return sorted((root / folder).glob("S*/*/*.txt"))[0]


def test_contempt_and_missing_emotion_files_are_masked_never_neutral(tree, tmp_path):
    root, written = tree
    emotion = first_sequence(root, "Emotion")
    emotion.write_text("   2.0000000e+00\n")          # contempt
    sample = f"cohn-kanade-images/{emotion.parent.parent.name}/{emotion.parent.name}/" \
             f"{emotion.name[:-len('_emotion.txt')]}.png"
    rows = rows_by_id(load(root, tmp_path).build())
    assert rows[sample][2] is None
    no_file = [k for k, t in written.items() if t["expression"] is None]
    assert all(rows[k][2] is None for k in no_file)


def test_intensity_zero_is_present_and_the_threshold_masks_it(tree, tmp_path):
    root, _ = tree
    facs = first_sequence(root, "FACS")
    facs.write_text("   1.0000000e+00   0.0000000e+00\n   2.0000000e+00   1.0000000e+00\n"
                    "   4.0000000e+00   3.0000000e+00\n   6.2000000e+01   2.0000000e+00\n\n")
    sample = f"cohn-kanade-images/{facs.parent.parent.name}/{facs.parent.name}/" \
             f"{facs.name[:-len('_facs.txt')]}.png"
    au, mask, _ = rows_by_id(load(root, tmp_path).build())[sample]
    assert au.tolist()[:3] == [1, 1, 1] and mask.all() and au.sum() == 3   # AU62: dropped
    # same cache folder: the threshold is part of the cache key, so the index is parsed anew
    au, mask, _ = rows_by_id(load(root, tmp_path, min_intensity=2).build())[sample]
    assert mask.tolist()[:3] == [False, True, True]      # intensity 0: unknown at a threshold
    assert au.tolist()[1:3] == [0, 1]                    # A (1) < 2: absent; C (3): present


def test_splits_are_subject_exclusive_seeded_and_recorded(tree, tmp_path):
    root, _ = tree
    runs = [load(root, tmp_path, run=r).build() for r in (0, 0, 1)]
    subjects = {s: set(np.unique(getattr(runs[0], s).table.subject))
                for s in ("train", "val", "test")}
    assert not (subjects["train"] & subjects["val"] or subjects["train"] & subjects["test"]
                or subjects["val"] & subjects["test"])
    assert [len(s) for s in subjects.values()] == [7, 1, 2]   # 0.7 / 0.1 / 0.2 of 10 subjects
    assert runs[0].manifest.checksum() == runs[1].manifest.checksum()
    assert runs[0].manifest.checksum() != runs[2].manifest.checksum()
    assert runs[2].manifest.protocol == "ckplus/random-subjects/run1"


def test_peak_frames_takes_the_last_frames_of_each_sequence(tree, tmp_path):
    root, written = tree
    data = load(root, tmp_path, peak_frames=2).build()
    assert sum(len(s) for s in (data.train, data.val, data.test)) == 2 * len(written)


def test_missing_root_names_the_path_and_shows_the_layout(tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "cohn-kanade-images/S005/001" in str(err.value)


def test_malformed_facs_line_leaves_the_sequence_out_never_a_negative(tree, tmp_path):
    root, written = tree
    facs = first_sequence(root, "FACS")
    # AU2 is present, its intensity garbled: dropping just the line would read AU2 as absent
    facs.write_text("   1.0000000e+00   2.0000000e+00\n   2.0000000e+00   oops\n")
    with pytest.raises(DataError, match=rf"{facs.name}, line 2: expected 2 number"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c2")).build()
    assert data.skipped == 1
    rows = rows_by_id(data)
    peak = (f"cohn-kanade-images/{facs.parent.parent.name}/{facs.parent.name}/"
            f"{facs.name[:-len('_facs.txt')]}.png")
    assert peak in written and peak not in rows          # left out, not labelled AU2 = 0
    assert len(rows) == len(written) - 1


def test_intensity_outside_the_convention_and_missing_peak_frame(tree, tmp_path):
    root, written = tree
    facs = first_sequence(root, "FACS")
    facs.write_text("   1.0000000e+00   7.0000000e+00\n")
    with pytest.raises(DataError, match="intensity 7, outside"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c2")).build()
    assert data.skipped == 1 and (
        sum(len(s) for s in (data.train, data.val, data.test)) == len(written) - 1)
    # a FACS file whose peak frame is not on disk
    shutil.rmtree(tmp_path / "c2")
    facs.write_text("   1.0000000e+00   2.0000000e+00\n")
    peak = facs.name[:-len("_facs.txt")] + ".png"
    (root / "cohn-kanade-images" / facs.parent.parent.name / facs.parent.name / peak).unlink()
    with pytest.raises(DataError, match="peak frame .* is missing"):
        load(root, tmp_path, cache_dir=str(tmp_path / "c3")).build()


def test_asking_for_an_au_ck_does_not_code(tree, tmp_path):
    root, _ = tree
    with pytest.raises(DataError, match=r"AU\(s\) \[8\]"):
        load(root, tmp_path, aus=[1, 8])


def test_index_is_cached_and_rebuilt_when_a_label_file_changes(tree, tmp_path, monkeypatch):
    root, _ = tree
    load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("ckplus-*.npz"))

    def fail(self, problems):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(CKPlus, "read_index", fail)
    load(root, tmp_path).build()                      # cached: read_index not called
    facs = first_sequence(root, "FACS")
    facs.write_text(facs.read_text() + "   4.3000000e+01   1.0000000e+00\n")
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path).build()                  # the file changed: parsed again


def test_train_py_runs_on_the_ckplus_layout(tree, tmp_path, tiny_cfg):
    root, _ = tree
    cfg = tiny_cfg("dataset=ckplus", f"dataset.root={root}", "dataset.image_size=32",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
                   "trainer.max_steps=2", "trainer.batch_size=4")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["dataset"] == "ckplus" and metrics["steps"] == 2
    assert len(metrics["tasks"]["au"]["f1"]) == 12
    manifest = json.loads((tmp_path / "run" / "split_manifest.json").read_text())
    assert manifest["protocol"] == "ckplus/random-subjects/run0"
    assert metrics["split_checksum"] == manifest["checksum"]
    assert metrics["skipped_problems"] == 0


def test_align_warps_each_frame_by_its_landmarks_and_keeps_the_centre(tree, tmp_path):
    from PIL import Image

    from affectlab.data.faces.alignment import align_face, five_points_from_68

    root, _ = tree
    data = load(root, tmp_path, crop="align", image_size=28, align_size=40).build()
    frames = data.train
    assert frames[0]["image"].shape == (3, 28, 28)
    # the same warp by hand: five points from the frame's 68, template at 40 px, centre 28
    path = frames.table.image_paths[0]
    landmark_file = root / "Landmarks" / Path(path).relative_to("cohn-kanade-images").parent / \
        f"{Path(path).stem}_landmarks.txt"
    points = np.loadtxt(landmark_file)
    with Image.open(root / path) as img:
        expected = align_face(img.convert("RGB"), five_points_from_68(points), "mlcr_240", 40)
    expected = np.asarray(expected.crop((6, 6, 34, 34)), dtype=np.float32) / 255.0
    np.testing.assert_allclose(frames.load_image(0).permute(1, 2, 0).numpy(), expected, atol=1e-6)
    # a frame without landmarks is found when the split is built, not mid-training
    landmark_file.unlink()
    with pytest.raises(DataError, match=r"cannot read the landmarks .*_landmarks.txt"):
        load(root, tmp_path, crop="align", image_size=28, align_size=40).build()
    skipped = load(root, tmp_path, crop="align", image_size=28, align_size=40,
                   on_error="skip").build()
    assert skipped.skipped == 1 and len(skipped.train) == len(frames) - 1
    assert path not in skipped.train.table.image_paths
    with pytest.raises(ValueError, match="align_size"):
        load(root, tmp_path, crop="align", image_size=64, align_size=40)
    with pytest.raises(ValueError, match="dataset.crop='bbox'"):
        load(root, tmp_path, crop="bbox")


def test_a_half_written_cache_is_rebuilt_not_trusted(tree, tmp_path):
    root, written = tree
    load(root, tmp_path).build()
    json_file = next((tmp_path / "cache").glob("ckplus-*.json"))
    meta = json.loads(json_file.read_text())
    meta["image_paths"] = meta["image_paths"][:-1]        # as if the other file were newer
    json_file.write_text(json.dumps(meta))
    data = load(root, tmp_path).build()
    assert sum(len(s) for s in (data.train, data.val, data.test)) == len(written)
