"""BP4D read from fixture trees in its published layout (written from synthetic faces).

The trees have BP4D's quirks (reference datasets.md §9): an integer header starting with ``0``,
frame numbers starting mid-sequence (F001/T1 at 2440, some below 1000 so the zero padding
matters), 9s inside the target AU columns (occluded faces, and AU14/AU24, which the synthetic
faces do not render), zero-padded image names, and, where asked, CSV rows without an image.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import DataError
from affectlab.data.layouts.bp4d import default_subjects, first_frame, write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources import bp4d
from affectlab.data.sources.bp4d import BP4D, PARTS
from affectlab.data.sources.synthetic.story import UNKNOWN as FACE_UNKNOWN
from affectlab.train import run

AUS = [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]
FRAMES = 2          # per subject: 41 subjects x 1 task x 2 frames at 32 px
OCC = "AUCoding/AU_OCC"
HEADER_WIDTH = 29   # "0" + AUs 1..28


@pytest.fixture(scope="module")
def faces():
    return layout_faces(len(bp4d.SUBJECTS), FRAMES, seed=1, image_size=32)


@pytest.fixture(scope="module")
def master(tmp_path_factory, faces) -> Path:
    root = tmp_path_factory.mktemp("bp4d") / "BP4D"
    write_layout(faces, root)
    return root


@pytest.fixture
def tree(tmp_path, master) -> Path:
    """A private copy of the full 41-subject tree (tests edit it)."""
    root = tmp_path / "BP4D"
    shutil.copytree(master, root)
    return root


def load(root: Path, tmp_path: Path, **kwargs) -> BP4D:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", 32)
    return BP4D(root=str(root), **kwargs)


def expected_codes(faces) -> dict[str, list[list[int]]]:
    """What write_layout put in the 12 target columns, per subject in frame order (1/0/9)."""
    names = default_subjects(len({f.subject for f in faces}))
    out: dict[str, list[list[int]]] = {}
    for face in sorted(faces, key=lambda f: (f.subject, f.index)):
        labels = face.labels.au_labels
        out.setdefault(names[face.subject], []).append(
            [9 if labels.get(a, FACE_UNKNOWN) == FACE_UNKNOWN else labels[a] for a in AUS])
    return out


def loaded_codes(data) -> dict[str, list[list[int]]]:
    """The loader's labels as 1/0/9 codes, per subject in frame order (from the sample ids)."""
    rows = []
    for split in (data.train, data.val, data.test):
        t = split.table
        for i, path in enumerate(t.image_paths):
            parts = Path(path).parts
            codes = np.where(t.au_mask[i], t.au[i], 9).astype(int).tolist()
            rows.append((parts[-3], int(Path(path).stem), codes))
    out: dict[str, list[list[int]]] = {}
    for subject, _, codes in sorted(rows):
        out.setdefault(subject, []).append(codes)
    return out


def subjects_of(ids: list[str]) -> set[str]:
    return {Path(i).parts[-3] for i in ids}


def csv_of(root: Path, subject: str, task: str = "T1") -> Path:
    return root / OCC / f"{subject}_{task}.csv"


# ------------------------------------------------------------------------------------------
# Labels


def test_labels_and_statistics_equal_what_was_written(tree, tmp_path, faces):
    data = load(tree, tmp_path).build()
    expected = expected_codes(faces)
    assert loaded_codes(data) == expected
    assert data.label_names == {"au": [f"AU{a}" for a in AUS]}
    assert data.skipped == 0
    # the quirks are really in the tree: mid-sequence frames, padding, 9s in target columns
    assert data.train.table.image_paths[0] == "BP4D-training/F001/T1/2440.jpg"
    assert any(Path(p).stem.startswith("0") for p in data.test.table.image_paths)
    codes = np.array([c for rows in expected.values() for c in rows])
    assert (codes[:, [AUS.index(14), AUS.index(24)]] == 9).all()   # not rendered: unknown
    assert (np.delete(codes, [AUS.index(14), AUS.index(24)], axis=1) == 9).any()  # occluded
    # the statistics the loader reports are those of the written labels, split by split
    summary = data.summary()
    for split in ("train", "val", "test"):
        subjects = subjects_of(getattr(data, split).table.image_paths)
        rows = np.array([c for s in sorted(subjects) for c in expected[s]])
        valid = rows != 9
        assert summary[split]["num_samples"] == len(rows)
        assert summary[split]["num_subjects"] == len(subjects)
        np.testing.assert_allclose(summary[split]["au_positive_rate"],
                                   ((rows == 1).sum(0) / np.maximum(valid.sum(0), 1)).round(4))
        np.testing.assert_allclose(summary[split]["au_unknown_rate"],
                                   (1 - valid.sum(0) / len(rows)).round(4))


def test_the_9_sentinel_is_a_mask_never_a_label(tree, tmp_path):
    path = csv_of(tree, "F001")
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[1], cells[12] = "9", "1"                      # AU1 unknown, AU12 present
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    table = load(tree, tmp_path).build().train.table
    row = table.image_paths.index("BP4D-training/F001/T1/2440.jpg")
    assert not table.au_mask[row, AUS.index(1)] and table.au[row, AUS.index(1)] == 0
    assert table.au_mask[row, AUS.index(12)] and table.au[row, AUS.index(12)] == 1


def test_columns_are_selected_by_header_name(tree, tmp_path):
    before = loaded_codes(load(tree, tmp_path, cache_dir=str(tmp_path / "c1")).build())
    # F001's file: columns reversed, non-target AU 3 dropped, two extra columns appended
    path = csv_of(tree, "F001")
    table = [line.split(",") for line in path.read_text().splitlines()]
    header = table[0]
    keep = [i for i, name in enumerate(header) if name != "3"][::-1]
    rows = [[r[i] for i in keep] + extra for r, extra in zip(table, [["50", "99"]]
                                                             + [["9", "1"]] * (len(table) - 1))]
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    assert path.read_text().startswith("28,27,")
    after = loaded_codes(load(tree, tmp_path, cache_dir=str(tmp_path / "c2")).build())
    assert after == before


def test_frame_padding_and_folder_variants_are_read_from_disk(tmp_path, faces):
    few = [f for f in faces if f.subject < 4]           # F001, M011, F007, M007
    variants = {
        "release": dict(),                                                # 4 digits
        "five": dict(pad_width=5, image_format="png", au_occ_dir="AUCoding"),
        "crops": dict(pad_width=0, image_dir="img"),                      # ME-GraphAU's crops
        "flat": dict(image_dir="."),                                      # JAA-Net's BP4D/F001/T1
    }
    indexes = {}
    for name, options in variants.items():
        write_layout(few, tmp_path / name, **options)
        dataset = load(tmp_path / name, tmp_path, cache_dir=str(tmp_path / f"c-{name}"))
        indexes[name] = dataset.index()
    first = {s: first_frame(s, 1) for s in default_subjects(4)}
    assert min(first.values()) < 1000                   # e.g. 0643.jpg vs 643.jpg
    f007 = f"F007/T1/{first['F007']:04d}.jpg"
    assert f"BP4D-training/{f007}" in indexes["release"].sample_ids
    assert f"BP4D-training/F007/T1/{first['F007']:05d}.png" in indexes["five"].sample_ids
    assert f"img/F007/T1/{first['F007']}.jpg" in indexes["crops"].sample_ids
    assert f007 in indexes["flat"].sample_ids
    reference = indexes["release"].table
    for index in indexes.values():
        assert index.subject_names == ["F001", "F007", "M007", "M011"]
        assert np.array_equal(index.table.au_mask, reference.au_mask)
        assert np.array_equal(index.table.au, reference.au)


# ------------------------------------------------------------------------------------------
# The protocol


@pytest.mark.parametrize("fold, tested", [(0, 2), (1, 1), (2, 0)])
def test_each_fold_tests_its_published_part_and_trains_on_the_others(tree, tmp_path, fold,
                                                                     tested):
    data = load(tree, tmp_path, fold=fold, val_subjects=3).build()
    ids = data.manifest.ids
    assert data.manifest.protocol == f"bp4d/3-fold/fold{fold}"
    train, val, test = (subjects_of(ids[s]) for s in ("train", "val", "test"))
    assert test == set(PARTS[tested])                   # exactly the part of §2.5
    assert train | val == {s for p in range(3) if p != tested for s in PARTS[p]}
    assert len(val) == 3 and not (train & val or train & test or val & test)
    assert len(ids["train"]) + len(ids["val"]) + len(ids["test"]) == 41 * FRAMES
    for split in ("train", "val", "test"):               # the datasets hold the manifest's ids
        assert getattr(data, split).table.image_paths == ids[split]


def test_the_published_part_lists_and_fold_convention():
    assert [len(p) for p in PARTS] == [14, 14, 13]
    assert PARTS[0][:3] == ("F001", "M007", "F018") and PARTS[2][-1] == "F014"
    assert sorted(s for p in PARTS for s in p) == [f"F{i:03d}" for i in range(1, 24)] + \
        [f"M{i:03d}" for i in range(1, 19)]
    # fold=0 is the papers' fold1: train part1+part2, test part3
    assert bp4d.TEST_PART == {0: 2, 1: 1, 2: 0}


def test_validation_subjects_follow_the_seed_not_the_order_on_disk(tree, tmp_path):
    a = load(tree, tmp_path, seed=0).build().manifest
    b = load(tree, tmp_path, seed=0).build().manifest
    c = load(tree, tmp_path, seed=1).build().manifest
    assert a.checksum() == b.checksum()
    assert subjects_of(a.ids["val"]) != subjects_of(c.ids["val"])
    assert a.ids["test"] == c.ids["test"]


def test_aus_select_and_order_the_columns(tree, tmp_path):
    data = load(tree, tmp_path, aus=[12, 1]).build()
    full = load(tree, tmp_path).build()
    assert data.label_names["au"] == ["AU12", "AU1"]
    np.testing.assert_array_equal(data.test.table.au, full.test.table.au[:, [6, 0]])
    with pytest.raises(DataError, match=r"AU\(s\) \[5\]"):
        load(tree, tmp_path, aus=[1, 5])


def test_arguments_are_checked_with_the_config_key():
    for kwargs, message in [(dict(fold=3), "dataset.fold=3: use 0, 1 or 2"),
                            (dict(val_subjects=0), "dataset.val_subjects=0"),
                            (dict(fold=1, val_subjects=27), "fold 1 trains on 27 subjects"),
                            (dict(image_dir="/abs"), "dataset.image_dir='/abs'"),
                            (dict(on_error="ignore"), "dataset.on_error='ignore'")]:
        with pytest.raises(ValueError, match=message):
            BP4D(root="nowhere", **kwargs)


# ------------------------------------------------------------------------------------------
# Bad inputs: one clear message each; on_error=skip leaves the rows out and counts them


def test_missing_root_names_the_path_and_shows_the_tree(tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "AUCoding/AU_OCC" in str(err.value) and "F001/T1/2440.jpg" in str(err.value)


def test_root_without_au_files_says_where_it_looked(tmp_path):
    (tmp_path / "BP4D" / "BP4D-training" / "F001" / "T1").mkdir(parents=True)
    with pytest.raises(DataError, match="no BP4D AU occurrence files .*AUCoding/AU_OCC/F001_T1"):
        load(tmp_path / "BP4D", tmp_path).build()


def test_a_split_subject_without_au_file_is_named(tree, tmp_path):
    csv_of(tree, "F014").unlink()
    with pytest.raises(DataError, match=r"part3: F014\).*AU_OCC"):
        load(tree, tmp_path).build()
    data = load(tree, tmp_path, on_error="skip").build()
    assert data.skipped == 1
    assert subjects_of(data.manifest.ids["test"]) == set(PARTS[2]) - {"F014"}


def test_malformed_line_names_file_and_line(tree, tmp_path):
    path = csv_of(tree, "M007")
    path.write_text(path.read_text() + "3999,1,0\n")    # line 4: too few values
    with pytest.raises(DataError, match=rf"M007_T1.csv, line 4: expected {HEADER_WIDTH} "):
        load(tree, tmp_path).build()
    data = load(tree, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and len(loaded_codes(data)["M007"]) == FRAMES


def test_non_integer_header_is_reported(tree, tmp_path):
    path = csv_of(tree, "M007")
    path.write_text("frame" + path.read_text()[1:])
    with pytest.raises(DataError, match=r"M007_T1.csv, line 1: the header must be integers"):
        load(tree, tmp_path).build()


def test_value_outside_0_1_9_names_file_line_and_au(tree, tmp_path):
    path = csv_of(tree, "F002")
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[4] = "2"                                      # AU4 on line 3
    path.write_text("\n".join([*lines[:2], ",".join(cells), *lines[3:]]) + "\n")
    with pytest.raises(DataError, match=r"F002_T1.csv, line 3: AU values .* found AU4=2"):
        load(tree, tmp_path).build()
    data = load(tree, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and len(loaded_codes(data)["F002"]) == FRAMES - 1


def test_coded_frames_without_an_image_are_known_gaps_left_out_and_counted(tmp_path, faces,
                                                                          caplog):
    root = tmp_path / "BP4D"
    write_layout(faces, root, rows_without_image=1)     # F001/T1 gets frame 2442, no image
    (root / "BP4D-training" / "M007" / "T1" / f"{first_frame('M007', 1):04d}.jpg").unlink()
    # by default (on_error=known_gaps) they are left out and counted, apart from problems
    with caplog.at_level("WARNING"):
        data = load(root, tmp_path).build()
    assert data.known_gaps == 2 and data.skipped == 0
    assert ("bp4d: left out 2 annotated frames without an image (known gap of the release; "
            "dataset.on_error=raise makes them errors); first: "
            f"{root / 'BP4D-training/F001/T1/2442.jpg'}") in caplog.text
    codes = loaded_codes(data)
    assert len(codes["F001"]) == FRAMES and len(codes["M007"]) == FRAMES - 1
    assert sum(map(len, codes.values())) == 41 * FRAMES - 1
    # on_error=raise makes them errors, naming file and line
    with pytest.raises(DataError, match=r"F001_T1.csv, line 4: frame 2442 has no image .*known "
                                        r"gap of the release"):
        load(root, tmp_path, on_error="raise").build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.known_gaps == 2 and data.skipped == 0
    # a sequence without its frame folder is not a gap of the release: an error by default
    shutil.rmtree(root / "BP4D-training" / "M007" / "T1")
    with pytest.raises(DataError, match=r"M007_T1.csv, line 2: frame \d+ has no image \(the "
                                        r"folder .*M007/T1 does not exist\)"):
        load(root, tmp_path).build()


def test_a_damaged_frame_fails_by_default_and_is_skipped_with_skip(tree, tmp_path):
    frame = tree / "BP4D-training" / "F001" / "T1" / "2440.jpg"
    frame.write_bytes(b"")                               # a failed download
    with pytest.raises(DataError, match=rf"image file {frame} is empty \(0 bytes\)"):
        load(tree, tmp_path).build()
    data = load(tree, tmp_path, on_error="skip").build()
    assert data.skipped == 1 and data.known_gaps == 0
    assert len(loaded_codes(data)["F001"]) == FRAMES - 1


# ------------------------------------------------------------------------------------------
# Cache and end to end


def test_index_is_cached_and_rebuilt_when_a_csv_changes(tree, tmp_path, monkeypatch):
    load(tree, tmp_path).build()
    assert len(list((tmp_path / "cache").glob("bp4d-*.npz"))) == 1
    parse = BP4D.read_index

    def fail(self, problems):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(BP4D, "read_index", fail)
    load(tree, tmp_path).build()                        # unchanged: read_index not called
    path = csv_of(tree, "F001")
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[12] = "0" if cells[12] == "1" else "1"        # flip AU12 of frame 2440
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n\n")
    with pytest.raises(AssertionError, match="from the cache"):
        load(tree, tmp_path).build()                    # the file changed: parsed again
    monkeypatch.setattr(BP4D, "read_index", parse)
    table = load(tree, tmp_path).build().train.table
    assert table.au[0, AUS.index(12)] == int(cells[12])


def test_index_is_rebuilt_when_a_missing_frame_appears(tmp_path, faces):
    root = tmp_path / "BP4D"
    write_layout(faces, root, rows_without_image=1)     # F001/T1: frame 2442 has no image
    assert load(root, tmp_path).build().known_gaps == 1
    shutil.copy(root / "BP4D-training/F001/T1/2441.jpg", root / "BP4D-training/F001/T1/2442.jpg")
    data = load(root, tmp_path).build()
    assert data.known_gaps == 0 and len(loaded_codes(data)["F001"]) == FRAMES + 1


def test_train_py_runs_on_the_bp4d_layout(tree, tmp_path, tiny_cfg):
    # coded frames without an image, as in the release: trained past by default, counted
    (tree / "BP4D-training" / "M007" / "T1" / f"{first_frame('M007', 1):04d}.jpg").unlink()
    (tree / "BP4D-training" / "F001" / "T1" / f"{first_frame('F001', 1):04d}.jpg").unlink()
    cfg = tiny_cfg("dataset=bp4d", f"dataset.root={tree}", "dataset.image_size=32",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
                   "trainer.max_steps=2", "trainer.batch_size=4")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["dataset"] == "bp4d" and metrics["steps"] == 2
    assert metrics["tasks"]["au"]["labels"] == [f"AU{a}" for a in AUS]
    manifest = json.loads((tmp_path / "run" / "split_manifest.json").read_text())
    assert manifest["protocol"] == metrics["split_protocol"] == "bp4d/3-fold/fold0"
    assert metrics["split_checksum"] == manifest["checksum"]
    assert subjects_of(manifest["ids"]["test"]) == set(PARTS[2])
    assert metrics["skipped_problems"] == 0 and metrics["known_gaps_left_out"] == 2


# ------------------------------------------------------------------ crop=align (2DFeatures)
def test_2dfeatures_are_written_as_matlab_v73_cells(master):
    import h5py
    subject = default_subjects(1)[0]
    start = first_frame(subject, 1)
    with h5py.File(master / "2DFeatures" / f"{subject}_T1.mat", "r") as mat:
        assert mat["fit"].attrs["MATLAB_class"] == b"struct"
        cells = mat["fit"]["pred"]
        assert cells.shape == (start + FRAMES - 1, 1)   # frames 1 … last coded frame
        assert mat[cells[0, 0]].attrs["MATLAB_empty"] == 1          # before the coded segment
        marks = np.asarray(mat[cells[start - 1, 0]])
        assert marks.shape == (2, 49) and marks.min() >= 1.0         # x row, y row; 1-based


def test_align_warps_each_frame_by_its_49_landmarks(tree, tmp_path):
    from PIL import Image

    from affectlab.data.faces.alignment import (
        IBUG68_TO_49,
        align_face,
        five_points_from_49,
        template_landmarks68,
    )

    data = load(tree, tmp_path, crop="align", image_size=24, align_size=32).build()
    sample = data.train
    assert sample[0]["image"].shape == (3, 24, 24)
    # by hand: the frame's 49 points (written 1-based) → five → template at 32 px, centre 24
    path = sample.table.image_paths[0]
    with Image.open(tree / path) as img:
        frame = img.convert("RGB")
    marks = template_landmarks68(frame.size[0])[list(IBUG68_TO_49)]
    expected = align_face(frame, five_points_from_49(marks), "mlcr_240", 32).crop((4, 4, 28, 28))
    np.testing.assert_allclose(sample.load_image(0).permute(1, 2, 0).numpy(),
                               np.asarray(expected, dtype=np.float32) / 255.0, atol=1e-6)
    # the synthetic points lie on the template, so the aligned face is the frame, resized
    resized = np.asarray(frame.resize((32, 32), Image.BILINEAR).crop((4, 4, 28, 28)), np.float32)
    assert np.abs(sample.load_image(0).permute(1, 2, 0).numpy() * 255 - resized).mean() < 8


def test_frames_without_landmarks_are_reported_or_skipped(tmp_path, faces):
    root = tmp_path / "BP4D"
    write_layout(faces, root, frames_without_landmarks=1)
    first = default_subjects(1)[0]
    with pytest.raises(DataError, match=rf"{first}_T1.mat: no landmarks for frame "
                                        rf"{first_frame(first, 1)} .*tracking failed"):
        load(root, tmp_path, crop="align").build()
    data = load(root, tmp_path, crop="align", on_error="skip").build()
    assert data.skipped == 1
    (root / "2DFeatures" / f"{first}_T1.mat").unlink()
    with pytest.raises(DataError, match=rf"cannot read the landmarks .*{first}_T1.mat.*"
                                        "dataset.features_dir"):
        load(root, tmp_path, crop="align").build()
    with pytest.raises(ValueError, match=r"dataset.crop='box': use one of \['none', 'align', "
                                         r"'detect'\]"):
        load(root, tmp_path, crop="box")


def test_train_py_aligns_bp4d_by_its_landmarks(tree, tmp_path, tiny_cfg):
    cfg = tiny_cfg("dataset=bp4d", f"dataset.root={tree}", "dataset.image_size=32",
                   "dataset.crop=align", "dataset.align_size=32",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
                   "trainer.max_steps=2", "trainer.batch_size=4")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["steps"] == 2 and metrics["skipped_problems"] == 0
