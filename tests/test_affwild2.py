"""Aff-Wild2 (ABAW 2020 / 2021) read from fixture trees in its published layout, written from
synthetic faces.

The trees have Aff-Wild2's quirks (reference datasets.md §6, §9): one annotation file per video
side and task with a header line (line k + 1 = frame k), whole −1 AU lines, −1 expression lines
and −5,−5 VA lines, AUs −1 where a face is occluded, frames whose lines are all sentinels and
whose crop is missing, ``<video>_left`` / ``<video>_right`` sides of one video, a crop without a
label line, videos without an EXPR or VA file, and both the ``Training_Set`` (2020, 8 AUs) and
``Train_Set`` (2021, 12 AUs) variants.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from affectlab.data.contract import EXPRESSIONS, DataError
from affectlab.data.layouts.affwild2 import write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.affwild2 import RELEASE_AUS, AffWild2, video_of
from affectlab.train import run

NUM_SUBJECTS = 8      # 5 training sides (one _left/_right pair: 4 videos), 3 validation sides
FRAMES = 6            # per side
TRAIN = {"abaw2020": "Training_Set", "abaw2021": "Train_Set"}


@pytest.fixture(scope="module")
def faces():
    return layout_faces(NUM_SUBJECTS, FRAMES, seed=5, image_size=32)


@pytest.fixture(scope="module")
def masters(tmp_path_factory, faces) -> dict[str, tuple[Path, dict]]:
    """One tree per release, written once; tests that edit a tree work on a copy."""
    out = {}
    for release in TRAIN:
        root = tmp_path_factory.mktemp(release) / "Aff-Wild2"
        out[release] = (root, write_layout(faces, root, release=release))
    return out


def copy_tree(masters, tmp_path: Path, release: str = "abaw2021") -> tuple[Path, dict]:
    source, written = masters[release]
    root = tmp_path / "Aff-Wild2"
    shutil.copytree(source, root)
    return root, written


@pytest.fixture
def tree(masters, tmp_path) -> tuple[Path, dict]:
    """A private copy of the ABAW 2021 tree and what was written into it."""
    return copy_tree(masters, tmp_path)


def load(root: Path, tmp_path: Path, **kwargs) -> AffWild2:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", 32)
    return AffWild2(root=str(root), **kwargs)


def rows_by_id(data) -> dict[str, dict]:
    """Every sample of every split by id: its labels, None where masked, and its split."""
    out = {}
    for split in ("train", "val", "test"):
        t = getattr(data, split).table
        ids = data.manifest.ids[split]
        assert [i.split(":", 1)[1] for i in ids] == t.image_paths
        for i, sample_id in enumerate(ids):
            out[sample_id] = {
                "split": split, "subject": int(t.subject[i]),
                "au": t.au[i], "au_mask": t.au_mask[i],
                "expr": int(t.expr[i]) if t.expr_mask[i] else None,
                "va": tuple(t.va[i].tolist()) if t.va_mask[i] else None}
    return out


def has_label(record: dict, tasks=("au", "expr", "va")) -> bool:
    au = record["au"] is not None and any(v is not None for v in record["au"].values())
    return (("au" in tasks and au) or ("expr" in tasks and record["expr"] is not None)
            or ("va" in tasks and record["va"] is not None))


def expected_ids(written: dict, tasks=("au", "expr", "va")) -> set[str]:
    """Samples the loader must make: frames with a crop and a label of the tasks read."""
    return {k for k, r in written.items() if r["image"] and has_label(r, tasks)}


def side_file(root: Path, written: dict, task: str, official: str = "train",
              position: int = 0) -> Path:
    """The ``task`` file of the ``position``-th side (among those having one) of a set."""
    names = sorted({r["name"] for r in written.values()
                    if r["set"] == official and task in r["files"]})
    record = next(r for r in written.values() if r["name"] == names[position])
    return root / record["files"][task]


# --------------------------------------------------------------------------- labels
@pytest.mark.parametrize("release", ["abaw2020", "abaw2021"])
def test_labels_equal_what_the_fixture_wrote(masters, tmp_path, release):
    root, written = masters[release]
    dataset = load(root, tmp_path)                    # release=auto: from the folder names
    data = dataset.build()
    assert dataset.release == release
    aus = list(RELEASE_AUS[release])
    assert dataset.aus == aus and data.label_names["au"] == [f"AU{a}" for a in aus]
    assert data.label_names["expr"] == list(EXPRESSIONS)
    assert data.manifest.protocol == f"affwild2/{release}/official"
    rows = rows_by_id(data)
    assert set(rows) == expected_ids(written)         # nothing lost, nothing invented
    for sample_id, row in rows.items():
        truth = written[sample_id]
        au = truth["au"] or {a: None for a in aus}     # no AU file: every AU masked
        assert row["au_mask"].tolist() == [au[a] is not None for a in aus], sample_id
        assert row["au"].tolist() == [au[a] or 0 for a in aus], sample_id
        assert row["expr"] == truth["expr"], sample_id
        if truth["va"] is None:
            assert row["va"] is None, sample_id
        else:
            np.testing.assert_allclose(row["va"], truth["va"], atol=1e-6)
        assert (row["split"] == "test") == (truth["set"] == "validation"), sample_id
    assert data.skipped == 0


def test_sentinels_become_masks_never_labels(masters, tmp_path):
    root, written = masters["abaw2021"]
    rows = rows_by_id(load(root, tmp_path).build())
    first = side_file(root, written, "au").stem
    frame = {k: f"train:cropped_aligned/{first}/{k:05d}.jpg" for k in range(1, FRAMES + 1)}
    assert side_file(root, written, "au").read_text().splitlines()[2] == ",".join(["-1"] * 12)
    # line 3 (frame 2) is all -1: the frame stays (it has an expression) with every AU masked
    assert not rows[frame[2]]["au_mask"].any() and not rows[frame[2]]["au"].any()
    assert rows[frame[2]]["expr"] is not None
    assert rows[frame[3]]["expr"] is None                 # EXPR -1
    assert rows[frame[1]]["va"] is None                   # VA -5,-5
    assert rows[frame[1]]["au_mask"].any()
    # an occluded AU is -1 in an otherwise annotated line: that AU alone is masked
    partial = [r for r in rows.values() if 0 < r["au_mask"].sum() < 12]
    assert partial
    # frame 4 of the first side: every line a sentinel and no crop — not a sample, not a problem
    assert frame[4] not in rows and not written[frame[4]]["image"]
    # a crop without a label line (00007.jpg) is ignored
    assert (root / f"cropped_aligned/{first}/{FRAMES + 1:05d}.jpg").is_file()
    assert f"train:cropped_aligned/{first}/{FRAMES + 1:05d}.jpg" not in rows


def test_fixture_tree_has_the_quirks_of_the_release(masters):
    for release, (root, written) in masters.items():
        ann = root / "annotations"
        assert (ann / "AU_Set" / TRAIN[release]).is_dir()
        assert not (ann / "AU_Set" / TRAIN["abaw2020" if release == "abaw2021" else "abaw2021"]
                    ).exists()
        header = sorted((ann / "AU_Set" / TRAIN[release]).glob("*.txt"))[0].read_text()
        assert header.splitlines()[0] == ",".join(f"AU{a}" for a in RELEASE_AUS[release])
        names = {r["name"] for r in written.values()}
        assert any(n.endswith("_left") for n in names) and any(n.endswith("_right") for n in names)
        expr = sorted((ann / "EXPR_Set" / "Validation_Set").glob("*.txt"))[0].read_text()
        assert expr.splitlines()[0] == "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"
        assert "-1" in expr.splitlines()
        va = sorted((ann / "VA_Set" / TRAIN[release]).glob("*.txt"))[0].read_text()
        assert va.splitlines()[0] == "valence,arousal" and "-5,-5" in va.splitlines()
        assert any(not r["image"] for r in written.values())           # missing crops
        assert any(r["au"] is None for r in written.values())          # a side without AU file


def test_tasks_choose_the_annotation_sets(masters, tmp_path):
    root, written = masters["abaw2021"]
    data = load(root, tmp_path, tasks=["au"]).build()
    rows = rows_by_id(data)
    assert set(rows) == expected_ids(written, ("au",))
    assert all(r["expr"] is None and r["va"] is None for r in rows.values())
    assert set(data.label_names) == {"au"}
    data = load(root, tmp_path, tasks=["va", "expr"]).build()
    rows = rows_by_id(data)
    assert set(rows) == expected_ids(written, ("expr", "va"))
    assert all(not r["au_mask"].any() for r in rows.values())
    assert set(data.label_names) == {"expr", "va"}
    with pytest.raises(ValueError, match="dataset.tasks"):
        load(root, tmp_path, tasks=["au", "attr"])


def test_selected_aus_and_aus_the_release_does_not_code(masters, tmp_path):
    root, written = masters["abaw2020"]
    data = load(root, tmp_path, aus=[12, 1]).build()
    assert data.label_names["au"] == ["AU12", "AU1"]
    rows = rows_by_id(data)
    some = next(k for k, r in written.items() if k in rows and r["au"] and r["au"][12] is not None)
    assert rows[some]["au"][0] == written[some]["au"][12]
    with pytest.raises(DataError, match=r"AU\(s\) \[7\].*abaw2020"):
        load(root, tmp_path, aus=[1, 7]).build()         # AU7 is ABAW 2021's only
    with pytest.raises(DataError, match=r"AU\(s\) \[20\]"):
        load(root, tmp_path, release="abaw2021", aus=[20])


def test_nested_annotation_folder_and_release_mismatches(faces, masters, tmp_path):
    nested = tmp_path / "nested"
    write_layout(faces, nested, release="abaw2020", annotation_dir="annotations/annotations")
    flat = rows_by_id(load(masters["abaw2020"][0], tmp_path,
                           cache_dir=str(tmp_path / "c1")).build())
    again = rows_by_id(load(nested, tmp_path, cache_dir=str(tmp_path / "c2")).build())
    assert flat.keys() == again.keys()
    # a 2020 tree read as 2021: the folder name says which release it is
    with pytest.raises(DataError, match=r"Train_Set.*Training_Set is there.*release=abaw2020"):
        load(nested, tmp_path, release="abaw2021").build()
    # both names in one root: ambiguous
    (nested / "annotations/annotations/AU_Set/Train_Set").mkdir()
    with pytest.raises(DataError, match="both ABAW 2020 .* and ABAW 2021"):
        load(nested, tmp_path).build()


def test_an_au_header_of_the_other_release(tree, tmp_path):
    root, written = tree
    path = side_file(root, written, "au", position=1)
    path.write_text("AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25\n0,0,0,0,1,0,0,0\n")
    with pytest.raises(DataError, match=rf"{path.name}, line 1: .*lacks AU\(s\) \[7, 10, 23, 24, "
                                        r"26\].*abaw2020's"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c2")).build()
    assert data.skipped == 1
    rows = rows_by_id(data)
    own = [k for k in rows if f"/{path.stem}/" in k]
    assert own and all(not rows[k]["au_mask"].any() for k in own)   # its other labels remain


# --------------------------------------------------------------------------- protocol
def test_splits_are_video_exclusive_seeded_and_test_is_the_official_validation(masters, tmp_path):
    root, written = masters["abaw2021"]
    data = load(root, tmp_path).build()
    ids = data.manifest.ids
    # test = every labelled frame of the official validation set, nothing else
    assert set(ids["test"]) == {k for k in expected_ids(written) if k.startswith("validation:")}
    assert all(k.startswith("train:") for k in ids["train"] + ids["val"])
    subjects = {s: set(getattr(data, s).table.subject.tolist()) for s in ("train", "val", "test")}
    assert not (subjects["train"] & subjects["val"] or subjects["train"] & subjects["test"]
                or subjects["val"] & subjects["test"])
    assert len(subjects["val"]) == 1 and len(subjects["train"]) == 3   # 4 training videos
    # the two sides of one video are one subject, in one split
    rows = rows_by_id(data)
    by_video: dict[str, set[tuple[str, int]]] = {}
    for k, r in rows.items():
        by_video.setdefault(video_of(written[k]["name"]), set()).add((r["split"], r["subject"]))
    assert all(len(v) == 1 for v in by_video.values())
    assert any(written[k]["name"].endswith("_right") for k in rows)
    # seeded: the same seed gives the same manifest, the seeds differ in what they hold out
    same = load(root, tmp_path).build().manifest
    assert same.checksum() == data.manifest.checksum()
    held_out = {tuple(sorted({written[k]["video"] for k in load(root, tmp_path, seed=s)
                               .build().manifest.ids["val"]})) for s in range(6)}
    assert len(held_out) > 1
    two = load(root, tmp_path, val_videos=2).build()
    assert len(set(two.val.table.subject.tolist())) == 2
    with pytest.raises(DataError, match="holding out 4"):
        load(root, tmp_path, val_videos=4).build()


def test_a_video_in_both_official_sets_is_leakage(tree, tmp_path):
    root, written = tree
    au = side_file(root, written, "au", position=2)          # a training video's AU file
    moved = root / "annotations/AU_Set/Validation_Set" / au.name
    au.rename(moved)
    with pytest.raises(DataError, match=rf"both the official training and validation sets "
                                        rf"\({au.stem}: .*AU_Set/Validation_Set/{au.name}"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, overlap="exclude_from_train").build()
    rows = rows_by_id(data)
    own = {k: r for k, r in rows.items() if f"/{au.stem}/" in k}
    assert own and all(r["split"] == "test" and k.startswith("validation:") for k, r in own.items())
    # the test rows carry the validation file's labels (AU) only, not the training EXPR/VA
    assert all(r["expr"] is None and r["va"] is None for r in own.values())


# --------------------------------------------------------------------------- bad inputs
def test_missing_root_names_the_path_and_shows_the_layout(tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "cropped_aligned/<video>/00001.jpg" in str(err.value)
    assert "Train_Set" in str(err.value) and "Training_Set" in str(err.value)


def test_missing_annotation_folders(tree, tmp_path):
    root, _ = tree
    shutil.rmtree(root / "annotations/VA_Set")
    with pytest.raises(DataError, match=r"includes 'va', but the annotation folder .*VA_Set does "
                                        r"not exist.*dataset.tasks=\[au, expr\]"):
        load(root, tmp_path).build()
    assert len(load(root, tmp_path, tasks=["au", "expr"]).build().test) > 0
    shutil.rmtree(root / "annotations/EXPR_Set/Validation_Set")
    with pytest.raises(DataError, match=r"validation folder .*EXPR_Set/Validation_Set"):
        load(root, tmp_path, tasks=["au", "expr"]).build()
    shutil.rmtree(root / "annotations")
    with pytest.raises(DataError, match="no Aff-Wild2 annotation folder"):
        load(root, tmp_path).build()


def test_malformed_line_names_file_and_line_and_skip_counts_it(tree, tmp_path):
    root, written = tree
    path = side_file(root, written, "au")
    lines = path.read_text().splitlines()
    lines[1] = "0,1,0"                                      # frame 1: 3 fields, not 12
    lines[6] = "x," + lines[6].split(",", 1)[1]            # frame 6: not a number
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{path.name}, line 2: expected 12 comma-separated"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c2")).build()
    assert data.skipped == 2
    rows = rows_by_id(data)
    frame1 = f"train:cropped_aligned/{path.stem}/00001.jpg"
    assert not rows[frame1]["au_mask"].any()                # the line's labels are left out …
    assert rows[frame1]["expr"] == written[frame1]["expr"]  # … the frame's others are kept
    assert set(rows) == expected_ids(written)


@pytest.mark.parametrize("task, line, message", [
    ("au", "2,0,0,1,1,1,1,0,0,0,1,0", r"AU1 = 2 is outside Aff-Wild2's AU codes"),
    ("expr", "7", r"expression 7 is outside 0\.\.6 .*Other"),
    ("va", "1.500,0.2", r"valence = 1\.5 is outside \[-1, 1\]"),
])
def test_values_outside_the_conventions(tree, tmp_path, task, line, message):
    root, written = tree
    path = side_file(root, written, task)
    lines = path.read_text().splitlines()
    lines[4] = line                                          # frame 4 (line 5)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{path.name}, line 5: {message}"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c2")).build()
    assert data.skipped == 1


def test_expression_file_of_a_later_abaw(tree, tmp_path):
    root, written = tree
    path = side_file(root, written, "expr")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ",Other", *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"line 1: expected the header .*ABAW 2022"):
        load(root, tmp_path).build()


def test_labelled_frames_without_a_crop_are_known_gaps_left_out_and_counted(faces, tmp_path,
                                                                            caplog):
    root = tmp_path / "Aff-Wild2"
    written = write_layout(faces, root, labelled_without_image=2)
    lost = sorted(k for k, r in written.items() if not r["image"] and has_label(r))
    assert len(lost) == 2
    # by default (on_error=known_gaps) they are left out and counted, apart from problems
    with caplog.at_level("WARNING"):
        data = load(root, tmp_path).build()
    assert data.known_gaps == 2 and data.skipped == 0
    assert set(rows_by_id(data)) == expected_ids(written)
    first = root / written[lost[0]]["files"]["au"].replace("annotations/AU_Set/Train_Set/",
                                                           "cropped_aligned/")
    assert (f"affwild2: left out 2 annotated frames without an image (known gap of the release; "
            f"dataset.on_error=raise makes them errors); first: "
            f"{first.with_suffix('')}/00001.jpg") in caplog.text
    assert load(root, tmp_path).build().known_gaps == 2      # counted from the cached index too
    # on_error=raise makes them errors, naming file, line and crop
    with pytest.raises(DataError, match=r"\.txt, line 2: frame 1 is labelled but its crop "
                                        r".*00001\.jpg is missing .*known gap of the release"):
        load(root, tmp_path, on_error="raise", cache_dir=str(tmp_path / "c1")).build()
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c2")).build()
    assert data.known_gaps == 2 and data.skipped == 0
    assert set(rows_by_id(data)) == expected_ids(written)
    # a whole crop folder missing is not a gap of the release: an error unless skip
    name = written[lost[0]]["name"]
    shutil.rmtree(root / "cropped_aligned" / name)
    with pytest.raises(DataError, match=rf"the crop folder .*{name} does not exist"):
        load(root, tmp_path, cache_dir=str(tmp_path / "c3")).build()
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c4")).build()
    assert data.skipped == 1 and data.known_gaps == 1        # the folder; the other frame
    assert not any(f"/{name}/" in k for k in rows_by_id(data))


def test_a_damaged_crop_fails_by_default_and_is_skipped_with_skip(tree, tmp_path):
    root, written = tree
    sample = sorted(k for k, r in written.items() if r["image"] and has_label(r))[0]
    crop = root / sample.split(":", 1)[1]
    data = crop.read_bytes()
    crop.write_bytes(data[:-64])                             # an interrupted copy
    with pytest.raises(DataError, match=rf"image file {crop} is truncated: a JPEG file ends "
                                        r"with the EOI marker FF D9"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and data.known_gaps == 0
    kept = [p for split in (data.train, data.val, data.test) for p in split.table.image_paths]
    assert len(kept) == len(expected_ids(written)) - 1
    assert crop.relative_to(root).as_posix() not in kept


# --------------------------------------------------------------------------- cache
def test_index_is_cached_and_rebuilt_when_the_tree_changes(tree, tmp_path, monkeypatch):
    root, written = tree
    load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("affwild2-*.npz"))

    def fail(self, problems):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(AffWild2, "read_index", fail)
    load(root, tmp_path).build()                         # cached: read_index not called
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path, tasks=["au"]).build()       # another option: another index
    path = side_file(root, written, "va")
    path.write_text(path.read_text() + "0.100,0.200\n")
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path).build()                     # a label file changed: parsed again
    monkeypatch.undo()
    load(root, tmp_path).build()
    monkeypatch.setattr(AffWild2, "read_index", fail)
    crop = root / "cropped_aligned" / path.stem / "00002.jpg"
    crop.unlink()
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path).build()                     # a crop removed: parsed again


# --------------------------------------------------------------------------- end to end
def test_train_py_runs_on_the_affwild2_layout(masters, tmp_path, tiny_cfg):
    # as in the real release, some labelled frames have no crop: the run trains by default
    # and reports how many it left out
    root = tmp_path / "Aff-Wild2"
    shutil.copytree(masters["abaw2021"][0], root)
    for video in sorted((root / "cropped_aligned").iterdir())[:2]:
        (video / "00001.jpg").unlink()
    cfg = tiny_cfg("dataset=affwild2", f"dataset.root={root}", "dataset.image_size=32",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
                   "trainer.max_steps=2", "trainer.batch_size=4")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["dataset"] == "affwild2" and metrics["steps"] == 2
    au = metrics["tasks"]["au"]
    assert len(au["f1"]) == 12 and au["labels"][-1] == "AU26" and "abaw" in au
    # the baseline predicts AUs only; expression / VA metrics appear for methods that predict them
    assert set(metrics["tasks"]) <= {"au", "expr", "va"}
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["tasks"]["au"]["f1"] == au["f1"]
    manifest = json.loads((tmp_path / "run" / "split_manifest.json").read_text())
    assert manifest["protocol"] == "affwild2/abaw2021/official"
    assert metrics["split_checksum"] == manifest["checksum"]
    assert metrics["skipped_problems"] == 0 and metrics["known_gaps_left_out"] == 2


# --------------------------------------------------------------------------- clips and sound
CLIP = {"length": 3, "dilation": 1, "rule": "black", "anchor": "end", "mask": True}
SOUND = {"sample_rate": 8000, "window_s": 1.0, "n_mels": 16, "n_fft": 256, "win_length": 160,
         "hop_length": 80}


def test_clips_read_the_crop_folders_landmarks_and_extracted_sound(tree, tmp_path):
    from affectlab.data.audio import write_wav
    from affectlab.data.clips import FaceClipDataset

    root, written = tree
    # (the fixture's _left side already lacks its frame 4 and has an extra frame 7)
    with_sound, with_points, with_openface = "1-30-1280x720_right", "10-60-1280x720", "102"
    (root / "audio").mkdir()
    seconds = np.arange(8000 * 2) / 8000
    write_wav(root / "audio" / f"{video_of(with_sound)}.wav",
              0.3 * np.sin(2 * np.pi * 440 * seconds), 8000)
    (root / "audio/videos.csv").write_text(
        f"video,fps,seconds,has_audio\n{video_of(with_sound)},25,2.0,1\n")
    (root / "landmarks").mkdir()
    points = np.tile(np.linspace(4, 28, 68)[:, None], (FRAMES, 1, 2)).reshape(FRAMES, 68, 2)
    np.save(root / "landmarks" / f"{with_points}.npy", points)
    header = ["frame", "face_id", "success"] + [f"x_{i}" for i in range(68)] + \
        [f"y_{i}" for i in range(68)]
    lines = [", ".join(header)] + [", ".join([str(k), "0", "1" if k != 2 else "0",
                                              *map(str, points[k - 1, :, 0]),
                                              *map(str, points[k - 1, :, 1])])
                                   for k in range(1, FRAMES + 1)]
    (root / "landmarks" / f"{with_openface}.csv").write_text("\n".join(lines) + "\n")
    (root / "cropped_aligned" / with_sound / "00003.jpg").unlink()      # a frame without a face

    data = load(root, tmp_path, clip=CLIP, audio=SOUND, landmarks_dir="landmarks",
                on_error="known_gaps").build()
    splits = [data.train, data.val, data.test]
    assert all(isinstance(s, FaceClipDataset) for s in splits)
    assert data.spec().inputs == {"clip": [3, 4, 32, 32], "audio": [1, 16, 101]}
    by_side = {}
    for split in splits:
        for row, path in enumerate(split.table.image_paths):
            by_side.setdefault(Path(path).parent.name, []).append((split, row, path))
    # frame 4 of the side with sound: frames 2, 3, 4 with 3 missing → black
    split, row, _ = next(x for x in by_side[with_sound] if x[2].endswith("00004.jpg"))
    assert split.frames_of(row).tolist() == [1, -1, 3]
    sample = split[row]
    assert sample["clip"][1].amax() == 0 and sample["clip"][0, :3].amax() > 0
    video = split.videos[split.video_of_row[row]]
    assert video.fps == 25.0 and video.audio.endswith(".wav")
    assert sample["audio"].shape == (1, 16, 101) and sample["audio"].std() > 1      # a tone
    assert sample["clip"][:, 3].amax() == 0                       # no landmarks: empty mask
    # frame 1: two positions before the video's start
    split, row, _ = next(x for x in by_side[with_points] if x[2].endswith("00001.jpg"))
    assert split.frames_of(row).tolist() == [-1, -1, 0]
    clip = split[row]["clip"]
    assert clip[2, 3].amax() > 0 and clip[:2].amax() == 0          # the mask, from the .npy
    silent = split[row]["audio"]
    assert torch.all(silent == silent.min())                       # no WAV: silence
    # the OpenFace file: frame 2 failed (success 0), its mask channel stays empty
    split, row, _ = next(x for x in by_side[with_openface] if x[2].endswith("00003.jpg"))
    clip = split[row]["clip"]
    assert clip[0, 3].amax() > 0 and clip[1, 3].amax() == 0 and clip[2, 3].amax() > 0
    batch = data.transform(torch.utils.data.default_collate([split[row], split[row]]),
                           train=True)
    assert batch["clip"].dtype == torch.float32 and batch["audio"].shape == (2, 1, 16, 101)


def test_clip_settings_and_landmark_files_that_cannot_be_used(tree, tmp_path):
    root, _ = tree
    with pytest.raises(ValueError, match="dataset.audio is read with clips"):
        load(root, tmp_path, audio=SOUND)
    with pytest.raises(ValueError, match="dataset.clip.length=0"):
        load(root, tmp_path, clip={**CLIP, "length": 0})
    side = sorted(p.name for p in (root / "cropped_aligned").iterdir())[0]
    (root / "landmarks").mkdir()
    (root / "landmarks" / f"{side}.csv").write_text("frame,confidence\n1,0.9\n")
    with pytest.raises(DataError, match=f"{side}.csv: not an OpenFace landmark CSV"):
        load(root, tmp_path, clip=CLIP, landmarks_dir="landmarks").build()
