"""DISFA read from fixture trees in its layout (written from synthetic faces)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import DataError
from affectlab.data.layouts.disfa import write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.disfa import DISFA
from affectlab.train import run

ALL_AUS = [1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26]
BENCHMARK_AUS = [1, 2, 4, 6, 9, 12, 25, 26]
FRAMES = 3                     # per subject; SN010 gets one fewer, as in the real data
# §3.4 of the dataset reference, typed out here rather than imported: the test checks the module
PART1 = "SN002 SN010 SN001 SN026 SN027 SN032 SN030 SN009 SN016".split()
PART2 = "SN013 SN018 SN011 SN028 SN012 SN006 SN031 SN021 SN024".split()
PART3 = "SN003 SN029 SN023 SN025 SN008 SN005 SN007 SN017 SN004".split()


@pytest.fixture(scope="module")
def faces():
    return layout_faces(27, FRAMES, seed=5, image_size=32)


@pytest.fixture
def tree(tmp_path, faces):
    """A DISFA tree (27 subjects, left-camera ffmpeg frames) and what was written into it."""
    root = tmp_path / "DISFA"
    return root, write_layout(faces, root)


def load(root: Path, tmp_path: Path, **kwargs) -> DISFA:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", 32)
    return DISFA(root=str(root), **kwargs)


def rows_by_id(data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split in (data.train, data.val, data.test):
        t = split.table
        for i, path in enumerate(t.image_paths):
            out[path] = (t.au[i], t.au_mask[i])
    return out


def size(data) -> int:
    return sum(len(s) for s in (data.train, data.val, data.test))


def subjects_of(split) -> set[str]:
    return {re.search(r"SN\d{3}", p).group() for p in split.table.image_paths}


def test_labels_equal_what_the_fixture_wrote(tree, tmp_path):
    root, written = tree
    assert len(written) == 27 * FRAMES - 1                       # SN010: one frame fewer
    data = load(root, tmp_path, aus=ALL_AUS).build()
    rows = rows_by_id(data)
    assert set(rows) == set(written)        # every subject is in one of the three splits
    assert "images/LeftVideoSN001_comp/LeftVideoSN001_comp_0001.png" in rows
    for sample_id, truth in written.items():
        au, mask = rows[sample_id]
        assert mask.all()                                    # DISFA codes every AU, every frame
        assert au.tolist() == [truth["aus"][a] for a in ALL_AUS], sample_id
        assert truth["aus"] == {a: int(v >= 2) for a, v in truth["intensity"].items()}
    assert data.skipped == 0                      # SN010's shorter files agree: not a problem
    assert sum("SN010" in k for k in rows) == FRAMES - 1
    # the fixture straddles the threshold: intensity 1 (absent at ≥ 2) and ≥ 2 both occur
    values = [v for t in written.values() for v in t["intensity"].values()]
    assert values.count(1) > 0 and sum(v >= 2 for v in values) > 0 and max(values) <= 5
    assert data.label_names["au"] == [f"AU{a}" for a in ALL_AUS]
    # default: the detection benchmark's 8 AUs, the same labels restricted
    default = load(root, tmp_path).build()
    assert default.label_names["au"] == [f"AU{a}" for a in BENCHMARK_AUS]
    columns = [ALL_AUS.index(a) for a in BENCHMARK_AUS]
    for sample_id, (au, _) in rows_by_id(default).items():
        assert au.tolist() == rows[sample_id][0][columns].tolist()


def test_occurrence_threshold_one_counts_intensity_one_as_present(tree, tmp_path):
    root, written = tree
    at_two = rows_by_id(load(root, tmp_path, aus=ALL_AUS).build())
    # same cache folder: the threshold must key the cache, not be served the ≥ 2 index
    at_one = rows_by_id(load(root, tmp_path, aus=ALL_AUS, occurrence_threshold=1).build())
    for sample_id, truth in written.items():
        assert at_one[sample_id][0].tolist() == [int(truth["intensity"][a] >= 1)
                                                 for a in ALL_AUS]
    assert sum(at_one[k][0].sum() for k in written) > sum(at_two[k][0].sum() for k in written)


def test_au_files_are_read_by_name_not_by_listing_position(tree, tmp_path):
    root, written = tree
    folder = root / "ActionUnit_Labels" / "SN001"
    listed = sorted(os.listdir(folder))
    assert listed[:5] == ["SN001_au1.txt", "SN001_au12.txt", "SN001_au15.txt",
                          "SN001_au17.txt", "SN001_au2.txt"]       # ≠ AU order
    (folder / "SN001_au12.txt").write_text("".join(f"{f},5\n" for f in range(1, FRAMES + 1)))
    rows = rows_by_id(load(root, tmp_path, aus=ALL_AUS).build())
    for sample_id, truth in written.items():
        expected = [truth["aus"][a] for a in ALL_AUS]
        if truth["subject"] == "SN001":
            expected[ALL_AUS.index(12)] = 1                      # only AU12's column changed
        assert rows[sample_id][0].tolist() == expected, sample_id


@pytest.mark.parametrize("fold,test_part,train_parts",
                         [(0, PART3, PART1 + PART2), (1, PART2, PART1 + PART3),
                          (2, PART1, PART2 + PART3)])
def test_each_fold_tests_its_documented_part(tree, tmp_path, fold, test_part, train_parts):
    root, _ = tree
    data = load(root, tmp_path, fold=fold).build()
    train, val, test = (subjects_of(s) for s in (data.train, data.val, data.test))
    assert test == set(test_part)
    assert train | val == set(train_parts) and len(val) == 3
    assert not (train & val or train & test or val & test)      # subject-exclusive
    assert data.manifest.protocol == f"disfa/3-fold/fold{fold}"
    assert len(data.test) == FRAMES * 9 - (fold == 2)           # SN010 (part1) is one short


def test_validation_subjects_are_seeded(tree, tmp_path):
    root, _ = tree
    a, b, c = (load(root, tmp_path, seed=s).build() for s in (0, 0, 1))
    assert a.manifest.checksum() == b.manifest.checksum()
    assert subjects_of(a.val) != subjects_of(c.val)            # another seed, other subjects
    assert subjects_of(a.test) == subjects_of(c.test)          # the fold does not move
    assert len(subjects_of(load(root, tmp_path, val_subjects=5).build().val)) == 5


def test_camera_and_frame_naming_variants_give_the_same_labels(tmp_path, faces):
    both = tmp_path / "both"
    written = write_layout(faces, both, cameras=("left", "right"))
    left = rows_by_id(load(both, tmp_path, aus=ALL_AUS).build())
    right = rows_by_id(load(both, tmp_path, aus=ALL_AUS, camera="right").build())
    assert all("/LeftVideoSN" in k for k in left) and all("/RightVideoSN" in k for k in right)
    for sample_id, (au, _) in right.items():
        twin = sample_id.replace("Right", "Left")
        assert written[sample_id]["camera"] == "right"
        assert np.array_equal(au, left[twin][0])
    index = tmp_path / "index"
    write_layout(faces, index, frame_naming="index", image_ext="jpg")
    by_index = rows_by_id(load(index, tmp_path, aus=ALL_AUS, frame_naming="index",
                               image_ext="jpg").build())
    assert "img/SN001/0.jpg" in by_index and "img/SN001/3.jpg" not in by_index   # frame f: f-1
    for sample_id, (au, _) in by_index.items():
        subject, image = re.match(r"img/(SN\d{3})/(\d+)\.jpg", sample_id).groups()
        video = f"LeftVideo{subject}_comp"
        twin = f"images/{video}/{video}_{int(image) + 1:04d}.png"
        assert np.array_equal(au, left[twin][0])


def test_missing_root_names_the_path_and_shows_the_layout(tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "ActionUnit_Labels/SN001/SN001_au1.txt" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="DISFA label folder not found"):
        load(tmp_path / "empty", tmp_path).build()


def test_subjects_of_a_part_missing_on_disk_are_named(tree, tmp_path):
    root, _ = tree
    for subject in ("SN016", "SN004"):
        for path in (root / "ActionUnit_Labels" / subject).iterdir():
            path.unlink()
        (root / "ActionUnit_Labels" / subject).rmdir()
    with pytest.raises(DataError, match=r"lacks part1: SN016; part3: SN004"):
        load(root, tmp_path).build()


def test_missing_au_file_leaves_the_subject_out(tree, tmp_path):
    root, written = tree
    (root / "ActionUnit_Labels" / "SN005" / "SN005_au15.txt").unlink()
    with pytest.raises(DataError, match=r"SN005_au15.txt missing"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and size(data) == len(written) - FRAMES
    assert "SN005" not in subjects_of(data.test)


def test_malformed_line_names_file_and_line_and_skip_counts_it(tree, tmp_path):
    root, written = tree
    path = root / "ActionUnit_Labels" / "SN003" / "SN003_au4.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = "2;1\n"
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"SN003_au4.txt, line 2: expected 'frame,intensity'"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and size(data) == len(written) - 1        # frame 2 left out
    assert "images/LeftVideoSN003_comp/LeftVideoSN003_comp_0002.png" not in rows_by_id(data)
    # from the cache: the same samples and the same count of skipped problems
    again = load(root, tmp_path, on_error="skip").build()
    assert again.skipped == 1 and size(again) == size(data)


def test_intensity_outside_zero_to_five(tree, tmp_path):
    root, written = tree
    path = root / "ActionUnit_Labels" / "SN003" / "SN003_au26.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "3,7\n"
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"SN003_au26.txt, line 3: intensity 7 is outside"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and size(data) == len(written) - 1


def test_au_files_disagreeing_on_the_frame_count(tmp_path, faces):
    root = tmp_path / "DISFA"
    written = write_layout(faces, root, truncated_au_file=("SN003", 9))
    with pytest.raises(DataError, match="disagree on the frame count") as err:
        load(root, tmp_path).build()
    assert f"SN003_au9.txt: {FRAMES - 1} frames" in str(err.value)
    assert f"{FRAMES} frames" in str(err.value) and f"frame(s) {FRAMES} " in str(err.value)
    data = load(root, tmp_path, on_error="skip").build()
    incomplete = [k for k, t in written.items() if not t["complete"]]
    assert incomplete == ["images/LeftVideoSN003_comp/LeftVideoSN003_comp_0003.png"]
    assert data.skipped == 1 and set(rows_by_id(data)) == set(written) - set(incomplete)


def test_missing_image_is_reported_and_skipped(tree, tmp_path):
    root, written = tree
    image = root / "images/LeftVideoSN007_comp/LeftVideoSN007_comp_0002.png"
    image.unlink()
    with pytest.raises(DataError, match="image file is missing: .*LeftVideoSN007_comp_0002.png"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and size(data) == len(written) - 1


def test_a_last_label_frame_without_an_image_is_a_known_gap(tree, tmp_path):
    # the labels can run one frame past the extracted video (datasets.md §3.5)
    root, written = tree
    last = root / f"images/LeftVideoSN007_comp/LeftVideoSN007_comp_{FRAMES:04d}.png"
    last.unlink()
    data = load(root, tmp_path).build()
    assert data.known_gaps == 1 and data.skipped == 0 and size(data) == len(written) - 1
    with pytest.raises(DataError, match=rf"image file is missing: .*{last.name} .*known gap"):
        load(root, tmp_path, on_error="raise").build()


def test_bad_arguments_fail_early(tree, tmp_path):
    root, _ = tree
    for bad in ({"fold": 3}, {"val_subjects": 0}, {"val_subjects": 18},
                {"occurrence_threshold": 0}, {"occurrence_threshold": 6}, {"camera": "centre"},
                {"frame_naming": "ffmpeg"}, {"image_ext": "."}):
        with pytest.raises(ValueError):
            load(root, tmp_path, **bad)
    with pytest.raises(DataError, match=r"AU\(s\) \[7\]"):
        load(root, tmp_path, aus=[1, 7])


def test_index_is_cached_and_rebuilt_when_a_label_file_changes(tree, tmp_path, monkeypatch):
    root, _ = tree
    load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("disfa-*.npz"))

    def fail(self, problems):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(DISFA, "read_index", fail)
    load(root, tmp_path, fold=2, val_subjects=4).build()   # split options: same index, cached
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path, occurrence_threshold=1).build()   # labels differ: parsed again
    path = root / "ActionUnit_Labels" / "SN001" / "SN001_au1.txt"
    path.write_text(path.read_text().replace("1,", "1, ", 1))
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path).build()                           # the file changed: parsed again


def test_train_py_runs_on_the_disfa_layout(tree, tmp_path, tiny_cfg):
    root, _ = tree
    cfg = tiny_cfg("dataset=disfa", f"dataset.root={root}", "dataset.image_size=32",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
                   "trainer.max_steps=2", "trainer.batch_size=4")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["dataset"] == "disfa" and metrics["steps"] == 2
    assert len(metrics["tasks"]["au"]["f1"]) == 8
    manifest = json.loads((tmp_path / "run" / "split_manifest.json").read_text())
    assert manifest["protocol"] == "disfa/3-fold/fold0"
    assert metrics["split_checksum"] == manifest["checksum"]
    assert metrics["skipped_problems"] == 0
    assert (tmp_path / "run" / "metrics.json").is_file()
