"""EmotioNet read from fixture trees in its published layout (written from synthetic faces):
the manual CSV (quoted 'AU n' headers, quoted URLs), the automatic TSVs, URL-named images with
some URLs dead, and the MLCR protocol built on them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from affectlab.data.contract import DataError
from affectlab.data.layouts.emotionet import write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.emotionet import EmotioNet, image_name, parse_value
from affectlab.train import run

AUS = [1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43]
NUM_SUBJECTS = 10
IMAGES_PER_SUBJECT = 6
MANUAL_CSV = "EmotioNet_FACS_aws_2020_24600.csv"
# small protocol sizes for the 60-face tree: 36 manual faces (30 with an image), 24 more in the
# automatic set only (20 with an image)
SIZES = {"num_labeled": 20, "num_val": 4, "num_unlabeled": 10}


@pytest.fixture(scope="module")
def faces():
    return layout_faces(NUM_SUBJECTS, IMAGES_PER_SUBJECT, seed=3, image_size=32)


@pytest.fixture
def tree(tmp_path, faces):
    """An EmotioNet download (manual CSV, two automatic TSVs, images) and what was written."""
    root = tmp_path / "EmotioNet"
    return root, write_layout(faces, root)


def load(root: Path, tmp_path: Path, **kwargs) -> EmotioNet:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", 32)
    # on_error: the default, known_gaps: dead URLs are part of every EmotioNet download
    for key, value in SIZES.items():
        kwargs.setdefault(key, value)
    return EmotioNet(root=str(root), **kwargs)


def rows_by_id(data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split in ("train", "val", "test"):
        t = getattr(data, split).table
        ids = data.manifest.ids[split]
        assert [i.split(":", 1)[1] for i in ids] == t.image_paths
        for i, sample_id in enumerate(ids):
            out[sample_id] = (t.au[i], t.au_mask[i])
    return out


def expected(truth: dict) -> tuple[list[float], list[bool]]:
    """Labels and mask the loader should produce from what was written (999 → unknown)."""
    values = [truth["aus"][a] for a in AUS]
    return [float(v == 1) for v in values], [v != 999 for v in values]


def labelled(written: dict, product: str, present: bool = True) -> dict[str, dict]:
    return {k: t for k, t in written.items()
            if t["product"] == product and t["present"] == present}


def test_manual_labels_equal_what_the_fixture_wrote(tree, tmp_path):
    root, written = tree
    data = load(root, tmp_path).build()
    rows = rows_by_id(data)
    truth = labelled(written, "manual")
    assert set(rows) == set(truth)             # every manual image on disk, nothing else
    for sample_id, t in truth.items():
        au, mask = rows[sample_id]
        values, known = expected(t)
        assert au.tolist() == values and mask.tolist() == known, sample_id
    # the fixture has 999s among the 12 AUs, and they are masked, not negatives
    unknown = sum(v == 999 for t in truth.values() for a, v in t["aus"].items() if a in AUS)
    assert unknown > 0
    assert sum(int((~m).sum()) for _, m in rows.values()) == unknown
    assert data.label_names == {"au": [f"AU{a}" for a in AUS]}
    assert data.tasks == ["au"]
    # the dead URLs of the manual set are known gaps: left out and counted by default
    assert data.known_gaps == len(labelled(written, "manual", present=False)) > 0
    assert data.skipped == 0


def test_automatic_labels_equal_what_the_fixture_wrote(tmp_path, faces):
    root = tmp_path / "auto-only"
    written = write_layout(faces, root, products=("automatic",), automatic_dir="emotioNet_"
                           "challenge_files_server_challenge_1.2_aws")
    data = load(root, tmp_path, num_labeled=30, num_val=5).build()   # annotations=auto
    assert data.manifest.protocol == "emotionet/mlcr-automatic/run0"
    rows = rows_by_id(data)
    truth = labelled(written, "automatic")
    # train + val + test + pool = every automatic image on disk
    assert len(rows) + len(data.unlabeled) == len(truth) == 50
    for sample_id, au_mask in rows.items():
        values, known = expected(truth[sample_id])
        assert au_mask[0].tolist() == values and au_mask[1].tolist() == known, sample_id
    assert data.known_gaps == len(labelled(written, "automatic", present=False))
    assert data.skipped == 0


def test_fast_and_line_by_line_parsing_of_the_tsv_agree(tree, tmp_path, monkeypatch):
    root, _ = tree
    calls = []
    slow = EmotioNet._automatic_slow

    def counting_slow(self, path, problems):
        calls.append(path)
        return slow(self, path, problems)

    monkeypatch.setattr(EmotioNet, "_automatic_slow", counting_slow)
    fast = load(root, tmp_path, annotations="automatic").index()
    assert calls == []                                  # clean files: np.loadtxt only
    monkeypatch.setattr(EmotioNet, "_automatic_fast", lambda self, path: None)
    by_line = load(root, tmp_path, annotations="automatic", cache_dir=str(tmp_path / "c2")).index()
    assert len(calls) == 2
    assert fast.sample_ids == by_line.sample_ids and fast.problems == by_line.problems
    assert np.array_equal(fast.table.au, by_line.table.au)
    assert np.array_equal(fast.table.au_mask, by_line.table.au_mask)


def test_products_differ_and_annotations_picks_one(tree, tmp_path):
    root, written = tree
    manual = rows_by_id(load(root, tmp_path).build())
    automatic = rows_by_id(load(root, tmp_path, annotations="automatic").build())
    assert all(k.startswith("manual:") for k in manual)
    assert all(k.startswith("automatic:") for k in automatic)
    # same image, other product: the labels are the automatic file's (AU 1 flipped on some)
    flipped = 0
    for sample_id, (au, _) in automatic.items():
        values, _ = expected(written[sample_id])
        assert au.tolist() == values
        twin = "manual:" + sample_id.split(":", 1)[1]
        flipped += twin in written and written[twin]["aus"][1] != written[sample_id]["aus"][1]
    assert flipped > 0


def test_mlcr_protocol_sizes_pool_and_seeded_draws(tree, tmp_path, caplog):
    root, written = tree
    runs = [load(root, tmp_path, run=r).build() for r in (0, 0, 1)]
    data = runs[0]
    manual_on_disk = len(labelled(written, "manual"))
    assert (len(data.train), len(data.val)) == (16, 4)        # num_labeled − num_val, num_val
    assert len(data.test) == manual_on_disk - 20               # MLCR: every other manual image
    assert len(data.unlabeled) == 10
    ids = data.manifest.ids
    assert set(ids) == {"train", "val", "test", "unlabeled"}
    every = [i for split in ids.values() for i in split]
    assert len(every) == len(set(every))                        # splits are disjoint
    # the pool: automatic-set images on disk, none of them in the manual set (test included)
    manual_images = {t["image"] for t in written.values() if t["product"] == "manual"}
    pool = [i.split(":", 1)[1] for i in ids["unlabeled"]]
    assert all(i.startswith("automatic:") for i in ids["unlabeled"])
    assert not set(pool) & manual_images
    assert all((root / p).is_file() for p in pool)
    assert not data.unlabeled.table.au_mask.any() and not data.unlabeled.table.labeled.any()
    # no subjects in EmotioNet: -1 everywhere, so exclusivity cannot be checked
    assert (data.train.table.subject == -1).all()
    # seeded: the same run gives the same manifest, another run another one
    assert runs[0].manifest.checksum() == runs[1].manifest.checksum()
    assert runs[0].manifest.checksum() != runs[2].manifest.checksum()
    assert runs[0].manifest.protocol == "emotionet/mlcr/run0"
    assert runs[2].manifest.protocol == "emotionet/mlcr/run1"
    # num_test caps the test split; a pool larger than the candidates warns and takes them all
    capped = load(root, tmp_path, num_test=5, num_unlabeled=100).build()
    assert len(capped.test) == 5 and len(capped.unlabeled) == 20
    assert capped.manifest.ids["train"] == ids["train"]        # pool size: labelled split kept
    assert "only 20 automatic-set image(s)" in caplog.text


def test_too_few_labelled_images_for_the_protocol(tree, tmp_path):
    root, _ = tree
    with pytest.raises(DataError, match=r"has 30 labelled image\(s\) on disk.*Lower "
                                        r"dataset.num_labeled"):
        load(root, tmp_path, num_labeled=30, num_val=4).build()


def test_missing_root_names_the_path_and_shows_the_layout(tmp_path):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "images/N_0000000001_00002.jpg" in str(err.value)
    assert "dataFile_1001.txt" in str(err.value)


def test_missing_annotation_files_name_what_was_expected(tree, tmp_path):
    root, written = tree
    # a manual file under another name, named in the config, is read; a missing one is an error
    (root / MANUAL_CSV).rename(root / "my_labels.csv")
    data = load(root, tmp_path, manual_file="my_labels.csv").build()
    assert set(rows_by_id(data)) == set(labelled(written, "manual"))
    with pytest.raises(DataError, match=r"expected .*/typo.csv"):
        load(root, tmp_path, manual_file="typo.csv").build()          # not: fall back to TSVs
    (root / "my_labels.csv").unlink()
    with pytest.raises(DataError, match=rf"manual annotation file not found: expected "
                                        rf".*{MANUAL_CSV}"):
        load(root, tmp_path, annotations="manual").build()
    for path in root.glob("dataFile_*.txt"):
        path.unlink()
    with pytest.raises(DataError, match="automatic annotation files not found"):
        load(root, tmp_path, annotations="automatic").build()
    with pytest.raises(DataError, match=r"no EmotioNet annotation file in .*expected a manual"):
        load(root, tmp_path).build()


def test_malformed_lines_name_file_and_line_and_skip_counts_them(tree, tmp_path):
    root, written = tree
    csv_path = root / MANUAL_CSV
    lines = csv_path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].rsplit(",", 1)[0] + "\n"                        # one field short
    csv_path.write_text("".join(lines))
    with pytest.raises(DataError, match=rf"{MANUAL_CSV}, line 3: expected 25 comma-separated "
                                        r"fields \(as in the header\), got 24"):
        load(root, tmp_path).build()              # known_gaps: a malformed line is no gap
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c2")).build()
    dead = len(labelled(written, "manual", present=False))
    assert data.skipped == 1 and data.known_gaps == dead
    assert sum(len(getattr(data, s)) for s in ("train", "val", "test")) == \
        len(labelled(written, "manual")) - 1
    # the automatic TSV: a short row and a value outside {0, 1, 999}
    tsv = root / "dataFile_1001.txt"
    rows = tsv.read_text().splitlines(keepends=True)
    rows[1] = rows[1].rsplit("\t", 1)[0] + "\n"
    fields = rows[3].rstrip("\n").split("\t")
    fields[2 + 3] = "2"                                                 # AU 4
    rows[3] = "\t".join(fields) + "\n"
    tsv.write_text("".join(rows))
    with pytest.raises(DataError, match=r"dataFile_1001.txt, line 2: expected 62 tab-separated"):
        load(root, tmp_path, annotations="automatic", cache_dir=str(tmp_path / "c3")).build()
    data = load(root, tmp_path, annotations="automatic", on_error="skip",
                cache_dir=str(tmp_path / "c4")).build()
    messages = "\n".join(load(root, tmp_path, annotations="automatic", on_error="skip",
                              cache_dir=str(tmp_path / "c4")).index().problems)
    assert "dataFile_1001.txt, line 4: AU 4 has value '2'" in messages
    assert data.skipped == 2
    assert data.known_gaps == len(labelled(written, "automatic", present=False))


def test_value_outside_the_convention_is_reported(tree, tmp_path):
    root, written = tree
    csv_path = root / MANUAL_CSV
    lines = csv_path.read_text().splitlines(keepends=True)
    cells = lines[1].rstrip("\n").split(",")
    cells[2] = "7"                                                      # 'AU 1'
    cells[3] = "1.0"                                                    # spreadsheet float: fine
    lines[1] = ",".join(cells) + "\n"
    csv_path.write_text("".join(lines))
    with pytest.raises(DataError, match=rf"{MANUAL_CSV}, line 2: AU 1 has value '7'; EmotioNet "
                                        r"codes 1 \(present\), 0 \(absent\), 999 \(unknown\)"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip", cache_dir=str(tmp_path / "c2")).build()
    assert data.skipped == 1
    assert data.known_gaps == len(labelled(written, "manual", present=False))
    assert [parse_value(v) for v in ("1", " 0 ", "999", "999.0", "'1'", "2", "", "x")] == \
        [1, 0, 999, 999, 1, None, None, None]


def test_dead_urls_are_known_gaps_left_out_by_default_and_errors_under_raise(tree, tmp_path):
    root, written = tree
    dead = sorted((t["line"], t["image"]) for t in labelled(written, "manual", False).values())
    line, image = dead[0]
    with pytest.raises(DataError, match=rf"{MANUAL_CSV}, line {line}: image file is missing: "
                                        rf".*{Path(image).name} \(URL http://.*known gap"):
        load(root, tmp_path, on_error="raise").build()
    data = load(root, tmp_path).build()
    assert data.known_gaps == len(dead) and data.skipped == 0
    # a pool image removed after indexing: the listing changed, so the index is rebuilt
    pool_image = root / data.unlabeled.table.image_paths[0]
    pool_image.unlink()
    rebuilt = load(root, tmp_path).build()
    assert str(pool_image.relative_to(root)) not in rebuilt.unlabeled.table.image_paths
    assert rebuilt.known_gaps == len(dead)       # not downloaded pool images are not gaps
    assert rebuilt.skipped == 0


def test_xlsx_needs_openpyxl_or_a_csv_export(tree, tmp_path, monkeypatch):
    root, _ = tree
    (root / MANUAL_CSV).unlink()
    (root / "EmotioNet_FACS_aws_2020_24600.xlsx").write_bytes(b"PK\x03\x04 not read")
    monkeypatch.setitem(sys.modules, "openpyxl", None)            # import openpyxl fails
    with pytest.raises(DataError, match=r"Excel workbook and openpyxl is not installed\. Export "
                                        r"the sheet to CSV \(e\.g\. as "
                                        r"EmotioNet_FACS_aws_2020_24600\.csv"):
        load(root, tmp_path).build()


def test_url_path_naming_and_image_dir(tmp_path, faces):
    root = tmp_path / "mirror"
    written = write_layout(faces, root, image_dir="downloads", image_naming="url_path")
    some = next(t["image"] for t in written.values() if t["present"])
    assert some.startswith("downloads/example.invalid/emotionet/N_")
    data = load(root, tmp_path, image_dir="downloads", image_naming="url_path").build()
    assert set(rows_by_id(data)) == set(labelled(written, "manual"))
    assert image_name("'http://a.org/x/N_1_2.jpg?s=1'") == "N_1_2.jpg"
    assert image_name("http://a.org/x/N_1_2.jpg'", "url_path") == "a.org/x/N_1_2.jpg"


def test_asking_for_an_au_the_files_do_not_code(tree, tmp_path):
    root, _ = tree
    with pytest.raises(DataError, match=r"AU\(s\) \[61\]"):
        load(root, tmp_path, aus=[1, 61])
    # AU 7 is an automatic-file column but not a column of this manual file
    with pytest.raises(DataError, match=rf"AU\(s\) \[7\], which {MANUAL_CSV} has no column"):
        load(root, tmp_path, aus=[1, 7]).build()


def test_bad_arguments_are_refused(tree, tmp_path):
    root, _ = tree
    for kwargs, message in (({"annotations": "both"}, "dataset.annotations"),
                            ({"protocol": "kfold"}, "dataset.protocol"),
                            ({"num_val": 20}, "num_val < num_labeled"),
                            ({"image_naming": "hash"}, "dataset.image_naming"),
                            ({"run": -1}, "dataset.run")):
        with pytest.raises(ValueError, match=message):
            load(root, tmp_path, **kwargs)


def test_check_images_false_trusts_the_files(tree, tmp_path):
    root, written = tree
    index = load(root, tmp_path, check_images=False, num_unlabeled=0).index()
    assert set(index.sample_ids) == set(k for k, t in written.items() if t["product"] == "manual")
    assert not index.problems


def test_index_is_cached_and_rebuilt_when_a_label_file_changes(tree, tmp_path, monkeypatch):
    root, _ = tree
    first = load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("emotionet-*.npz"))

    def fail(self, problems):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(EmotioNet, "read_index", fail)
    again = load(root, tmp_path).build()                # cached: read_index not called
    assert again.manifest.checksum() == first.manifest.checksum()
    assert again.skipped == first.skipped              # the problems come back from the cache
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path, aus=[1, 2]).build()        # another AU selection: parsed again
    csv_path = root / MANUAL_CSV
    csv_path.write_text(csv_path.read_text() + "\n")
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path).build()                    # the file changed: parsed again


def test_train_py_runs_mlcr_on_the_emotionet_layout(tree, tmp_path, tiny_cfg):
    root, _ = tree
    cfg = tiny_cfg("dataset=emotionet", f"dataset.root={root}", "dataset.image_size=32",
                   f"dataset.cache_dir={tmp_path / 'cache'}",
                   "dataset.num_labeled=20", "dataset.num_val=4", "dataset.num_unlabeled=10",
                   "method=mlcr", "method.step_two_start=1", "trainer.max_steps=2",
                   "trainer.batch_size=4")
    metrics = run(cfg, tmp_path / "run")
    assert metrics["dataset"] == "emotionet" and metrics["steps"] == 2
    assert len(metrics["tasks"]["au"]["f1"]) == 12
    manifest = json.loads((tmp_path / "run" / "split_manifest.json").read_text())
    assert manifest["protocol"] == "emotionet/mlcr/run0"
    assert manifest["sizes"] == {"train": 16, "val": 4, "test": 10, "unlabeled": 10}
    assert metrics["split_checksum"] == manifest["checksum"]
    assert metrics["skipped_problems"] == 0 and metrics["known_gaps_left_out"] == 6
