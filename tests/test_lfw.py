"""LFW read from fixture trees in its released layout (written from synthetic faces)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict
from PIL import Image

from affectlab.data.contract import DataError
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.layouts.lfw import write_layout
from affectlab.data.sources.lfw import LFW, CenterCropped
from affectlab.train import run

NUM_PEOPLE = 12


@pytest.fixture(scope="module")
def faces():
    """1–4 faces per person (LFW has many people with a single image)."""
    every = layout_faces(NUM_PEOPLE, 4, seed=3, image_size=24)
    return [f for f in every if f.index < 1 + f.subject % 4]


@pytest.fixture
def tree(tmp_path, faces):
    """An LFW release (lfw/ and the list files) and what was written into it."""
    root = tmp_path / "LFW"
    return root, write_layout(faces, root)


def load(root: Path, tmp_path: Path, **kwargs) -> LFW:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("image_size", 24)
    return LFW(root=str(root), **kwargs)


def people_by_split(dataset: LFW, data) -> dict[str, dict[str, str]]:
    """``{split: {image path: person}}`` of a built FaceData."""
    names = dataset.index().subject_names
    out = {}
    for split in ("train", "val", "test", "unlabeled"):
        part = getattr(data, split)
        if part is not None:
            out[split] = {p: names[s] for p, s in zip(part.table.image_paths, part.table.subject)}
    return out


def test_identities_equal_what_the_fixture_wrote(tree, tmp_path, faces):
    root, written = tree
    dataset = load(root, tmp_path)
    data = dataset.build()
    splits = people_by_split(dataset, data)
    found = {p: person for split in splits.values() for p, person in split.items()}
    assert found == written["images"]                    # every image, its person
    assert len(found) == len(faces)
    assert "unlabeled" not in splits and data.unlabeled is None
    for split in (data.train, data.val, data.test):
        t = split.table
        # identities only: no AU/attribute columns, no expression or valence/arousal label
        assert t.au.shape[1] == 0 and t.attr.shape[1] == 0
        assert not t.expr_mask.any() and not t.va_mask.any() and t.labeled.all()
    assert data.label_names == {} and data.tasks == []
    sample = data.train[0]
    assert sample["image"].shape == (3, 24, 24) and sample["subject"] >= 0
    # the statistics the loader reports are those of the written identities
    stats = data.summary()
    assert sum(stats[s]["num_subjects"] for s in ("train", "val", "test")) == NUM_PEOPLE
    counts = {}
    for person in written["images"].values():
        counts[person] = counts.get(person, 0) + 1
    assert sorted(counts.values()) == sorted(1 + s % 4 for s in range(NUM_PEOPLE))


def test_identity_protocol_is_seeded_and_identity_disjoint(tree, tmp_path):
    root, _ = tree
    builds = []
    for seed in (0, 0, 1):
        dataset = load(root, tmp_path, seed=seed)
        builds.append((dataset, dataset.build()))
    people = {s: set(v.values()) for s, v in people_by_split(*builds[0]).items()}
    assert [len(people[s]) for s in ("train", "val", "test")] == [8, 1, 3]  # 0.7/0.1/0.2 of 12
    assert not (people["train"] & people["val"] or people["train"] & people["test"]
                or people["val"] & people["test"])
    manifests = [data.manifest for _, data in builds]
    assert manifests[0].checksum() == manifests[1].checksum()
    assert manifests[0].checksum() != manifests[2].checksum()
    assert manifests[0].protocol == "lfw/identities/seed0"
    with pytest.raises(ValueError, match="dataset.protocol='pairs'"):
        load(root, tmp_path, protocol="pairs")


def test_view1_and_view2_follow_the_list_files(tree, tmp_path):
    root, written = tree
    dataset = load(root, tmp_path, protocol="view1")
    people = {s: set(v.values()) for s, v in people_by_split(dataset, dataset.build()).items()}
    assert people["test"] == set(written["dev_test"])
    assert people["train"] | people["val"] == set(written["dev_train"])
    assert len(people["val"]) == round(0.1 * len(written["dev_train"])) and people["val"]
    dataset = load(root, tmp_path, protocol="view2", fold=1)
    data = dataset.build()
    people = {s: set(v.values()) for s, v in people_by_split(dataset, data).items()}
    assert people["test"] == set(written["folds"][1])
    assert people["train"] | people["val"] == set(written["folds"][0])
    assert data.manifest.protocol == "lfw/view2/fold1/seed0"
    with pytest.raises(DataError, match="dataset.fold=2, but .*people.txt has 2 folds"):
        load(root, tmp_path, protocol="view2", fold=2).build()
    (root / "people.txt").unlink()
    with pytest.raises(DataError, match="protocol=view2 needs people.txt"):
        load(root, tmp_path, protocol="view2").build()


def test_pool_is_a_seeded_draw_with_labels_hidden(tree, tmp_path, faces):
    root, written = tree
    pools = [load(root, tmp_path, protocol="pool", pool_images=7, seed=s).pool(image_size=32)
             for s in (1, 1, 2)]
    first = pools[0]
    assert len(first) == 7 and len(set(first.table.image_paths)) == 7
    assert set(first.table.image_paths) <= set(written["images"])
    assert first.table.image_paths == pools[1].table.image_paths
    assert first.table.image_paths != pools[2].table.image_paths
    assert not first.table.labeled.any() and not first.table.expr_mask.any()
    sample = first[0]
    assert sample["image"].shape == (3, 32, 32) and not sample["labeled"]
    everything = load(root, tmp_path, protocol="pool").pool(image_size=32)
    assert len(everything) == len(faces)
    with pytest.raises(DataError, match="pool_images=100, but .* holds only 30"):
        load(root, tmp_path, protocol="pool", pool_images=100).pool(image_size=32)
    with pytest.raises(DataError, match="protocol=pool makes lfw an unlabelled pool only"):
        load(root, tmp_path, protocol="pool", pool_images=7).build()
    with pytest.raises(ValueError, match="pool_images=0"):
        load(root, tmp_path, pool_images=0)


def test_pool_images_with_a_protocol_come_from_train_only(tree, tmp_path):
    root, _ = tree
    plain = load(root, tmp_path)
    without = people_by_split(plain, plain.build())
    dataset = load(root, tmp_path, pool_images=5)
    data = dataset.build()
    assert data.manifest.protocol == "lfw/identities/seed0/pool5"
    splits = people_by_split(dataset, data)
    assert len(splits["unlabeled"]) == 5
    # drawn from train's images, which they leave; val and test do not move
    assert set(splits["unlabeled"]) | set(splits["train"]) == set(without["train"])
    assert not set(splits["unlabeled"]) & set(splits["train"])
    assert splits["val"] == without["val"] and splits["test"] == without["test"]
    assert not data.unlabeled.table.labeled.any()
    lent = dataset.pool(image_size=24)
    assert sorted(lent.table.image_paths) == sorted(splits["unlabeled"])


def test_missing_root_and_image_folder_show_the_layout(tmp_path, faces):
    with pytest.raises(DataError) as err:
        load(tmp_path / "nowhere", tmp_path).build()
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "lfw/<Person_Name>/<Person_Name>_0001.jpg" in str(err.value)
    write_layout(faces[:3], tmp_path / "deep", images="lfw-deepfunneled")
    with pytest.raises(DataError, match=r"image folder .*lfw is missing.*'lfw-deepfunneled'"):
        load(tmp_path / "deep", tmp_path).build()


def test_variant_folders_and_torchvision_root_give_the_same_people(tmp_path, faces):
    root = tmp_path / "data"
    written = write_layout(faces, root / "lfw-py", images="lfw-deepfunneled")
    ids = set()
    for given in (root, root / "lfw-py", root / "lfw-py" / "lfw-deepfunneled"):
        dataset = load(given, tmp_path, images="lfw-deepfunneled")
        data = dataset.build()
        found = {p: v for split in people_by_split(dataset, data).values()
                 for p, v in split.items()}
        assert found == written["images"]
        ids.add(data.manifest.checksum())
    assert len(ids) == 1 and next(iter(written["images"])).startswith("lfw-deepfunneled/")


def test_malformed_list_line_names_file_and_line_and_skip_counts_it(tree, tmp_path):
    root, written = tree
    path = root / "peopleDevTest.txt"
    lines = path.read_text().splitlines()
    person = lines[2].split("\t")[0]
    lines[2] = f"{person}\tthree"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"peopleDevTest.txt, line 3: expected 'name<TAB>number"):
        load(root, tmp_path, protocol="view1").build()
    dataset = load(root, tmp_path, protocol="view1", on_error="skip")
    data = dataset.build()
    assert data.skipped == 1
    test_people = set(people_by_split(dataset, data)["test"].values())
    assert test_people == set(written["dev_test"]) - {person}    # the line is left out
    # a broken count line loses the structure: never skipped
    path.write_text("two\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match=r"peopleDevTest.txt, line 1: expected the number of"):
        load(root, tmp_path, protocol="view1", on_error="skip").build()


def test_listed_image_missing_on_disk_is_reported_with_its_line(tree, tmp_path):
    root, written = tree
    lines = (root / "peopleDevTest.txt").read_text().splitlines()
    number, person, count = next((k + 1, *line.split("\t")) for k, line in enumerate(lines)
                                 if k and int(line.split("\t")[1]) >= 2)
    gone = f"lfw/{person}/{person}_0002.jpg"
    (root / gone).unlink()
    with pytest.raises(DataError, match=rf"lfw-names.txt, line \d+: {person} has {count} image"):
        load(root, tmp_path, protocol="view1").build()
    (root / "lfw-names.txt").unlink()
    with pytest.raises(DataError, match=rf"peopleDevTest.txt, line {number}: {person} is listed "
                                        rf"with {count} image\(s\); 1 of them are missing"):
        load(root, tmp_path, protocol="view1").build()
    dataset = load(root, tmp_path, protocol="view1", on_error="skip")
    data = dataset.build()
    assert data.skipped == 1
    test = people_by_split(dataset, data)["test"]
    assert gone not in test and f"lfw/{person}/{person}_0001.jpg" in test


def test_misnamed_image_is_reported_and_skipped(tree, tmp_path):
    root, written = tree
    person = next(iter(written["images"].values()))
    stray = root / "lfw" / person / "Someone_Else_0001.jpg"
    shutil.copy(root / next(iter(written["images"])), stray)
    (root / "lfw" / person / ".DS_Store").write_text("")   # hidden files are not images
    with pytest.raises(DataError, match=f"Someone_Else_0001.jpg: not named {person}_NNNN.jpg"):
        load(root, tmp_path).build()
    data = load(root, tmp_path, on_error="skip").build()
    assert data.skipped == 1
    assert sum(len(s) for s in (data.train, data.val, data.test)) == len(written["images"])


def test_index_is_cached_and_rebuilt_when_the_folders_change(tree, tmp_path, monkeypatch):
    root, written = tree
    load(root, tmp_path).build()
    assert list((tmp_path / "cache").glob("lfw-*.npz"))

    def fail(self, problems):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(LFW, "read_index", fail)
    load(root, tmp_path).build()                       # cached: read_index not called
    load(root, tmp_path, protocol="view1").build()     # the protocol is not part of the index
    first = next(iter(written["images"]))
    person = Path(first).parent.name
    shutil.copy(root / first, root / "lfw" / person / f"{person}_0099.jpg")
    with pytest.raises(AssertionError, match="from the cache"):
        load(root, tmp_path).build()                   # a folder changed: parsed again


def test_center_crop_keeps_the_middle_before_resizing(tree, tmp_path):
    root, _ = tree
    dataset = load(root, tmp_path, center_crop=24)
    frames = dataset.build().train
    assert isinstance(frames, CenterCropped)
    with Image.open(root / frames.table.image_paths[0]) as img:
        side = img.size[0]                             # 48: the face on a 2× canvas
        expected = img.convert("RGB").crop((12, 12, 36, 36))
    assert side == 48
    np.testing.assert_allclose(frames.load_image(0).permute(1, 2, 0).numpy(),
                               np.asarray(expected, dtype=np.float32) / 255.0, atol=1e-6)


def test_mlcr_trains_with_lfw_as_its_pool(tree, tmp_path, tiny_cfg):
    root, _ = tree
    # the pool node is configs/dataset/lfw.yaml, as a `defaults: - /dataset/lfw@_here_` pool
    # config would compose it
    lfw = tiny_cfg("dataset=lfw", f"dataset.root={root}", f"dataset.cache_dir={tmp_path / 'c'}",
                   "dataset.protocol=pool", "dataset.pool_images=10").dataset
    cfg = tiny_cfg("method=mlcr", "trainer.max_steps=2", "trainer.batch_size=4")
    with open_dict(cfg):
        cfg.pool = lfw
    metrics = run(cfg, tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["data"]["unlabeled"]["num_samples"] == 10    # the LFW draw, not the synthetic pool
    assert info["data"]["unlabeled"]["num_labeled"] == 0
    assert metrics["steps"] == 2 and metrics["dataset"] == "synthetic"
