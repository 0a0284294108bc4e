"""Unlabelled pools from elsewhere: a folder of faces, or another dataset with labels hidden."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from affectlab.data.contract import DataError
from affectlab.data.layouts.ckplus import write_layout
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.ckplus import CKPlus
from affectlab.data.sources.image_folder import ImageFolder
from affectlab.train import run


@pytest.fixture
def lfw(tmp_path):
    """An LFW-like tree: lfw/<Person_Name>/<Person_Name>_000k.jpg, plus a non-image file."""
    root = tmp_path / "lfw"
    for person in ("Ada_Lovelace", "Alan_Turing", "Grace_Hopper"):
        (root / person).mkdir(parents=True)
        for k in range(1, 5):
            value = np.full((20, 20, 3), 40 * k, dtype=np.uint8)
            Image.fromarray(value).save(root / person / f"{person}_{k:04d}.jpg")
    (root / "lfw-names.txt").write_text("Ada_Lovelace 4\n")
    return root


def test_image_folder_lists_images_recursively_and_draws_a_seeded_subset(lfw):
    every = ImageFolder(root=str(lfw)).pool(image_size=16)
    assert len(every) == 12
    assert every.table.image_paths[0] == "Ada_Lovelace/Ada_Lovelace_0001.jpg"
    sample = every[0]
    assert sample["image"].shape == (3, 16, 16) and not sample["labeled"]
    assert not sample["au_mask"].any() and not sample["expr_mask"]
    a = ImageFolder(root=str(lfw), num_images=5, seed=1).pool(image_size=16).table.image_paths
    b = ImageFolder(root=str(lfw), num_images=5, seed=1).pool(image_size=16).table.image_paths
    c = ImageFolder(root=str(lfw), num_images=5, seed=2).pool(image_size=16).table.image_paths
    assert a == b and a != c and len(set(a)) == 5


def test_image_folder_errors_name_the_folder(tmp_path, lfw):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder(root=str(tmp_path / "missing")).pool(image_size=16)
    archive = tmp_path / "lfw.tgz"
    archive.write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError, match=r"pool.root=.*lfw.tgz is a file, not a directory: point "
                                        r"it at the folder of face images"):
        ImageFolder(root=str(archive)).pool(image_size=16)
    (tmp_path / "empty" / "Nobody").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images found under .*empty \(pool.root\).*"
                                        r"Expected layout:\n.*<Person_Name>"):
        ImageFolder(root=str(tmp_path / "empty")).pool(image_size=16)
    with pytest.raises(DataError, match="holds only 12 images"):
        ImageFolder(root=str(lfw), num_images=50).pool(image_size=16)
    with pytest.raises(ValueError, match="pool.num_images=0"):
        ImageFolder(root=str(lfw), num_images=0)


def test_image_folder_checks_its_images_before_training(tmp_path, lfw):
    cache = str(tmp_path / "cache")
    damaged = lfw / "Alan_Turing" / "Alan_Turing_0002.jpg"
    damaged.write_bytes(damaged.read_bytes()[:-50])          # an interrupted copy
    with pytest.raises(DataError, match=r"image file .*Alan_Turing_0002.jpg is (damaged or )?"
                                        r"truncated"):
        ImageFolder(root=str(lfw), cache_dir=cache).pool(image_size=16)
    folder = ImageFolder(root=str(lfw), cache_dir=cache, on_error="skip")
    pool = folder.pool(image_size=16)
    assert len(pool) == 11 and len(folder.problems.messages) == 1
    assert "Alan_Turing/Alan_Turing_0002.jpg" not in pool.table.image_paths
    for path in lfw.rglob("*.jpg"):                          # nothing readable left
        path.write_bytes(b"")
    with pytest.raises(DataError, match=r"no images found under .*lfw \(pool.root\) that are "
                                        r"readable \(12 problem\(s\) skipped"):
        ImageFolder(root=str(lfw), cache_dir=cache, on_error="skip").pool(image_size=16)


def test_a_dataset_pool_checks_its_images(tmp_path):
    ckplus = tmp_path / "CK+"
    written = write_layout(layout_faces(4, 2, seed=5, image_size=24), ckplus)
    (ckplus / sorted(written)[0]).write_bytes(b"not a png")
    dataset = CKPlus(root=str(ckplus), cache_dir=str(tmp_path / "cache"), image_size=24)
    with pytest.raises(DataError, match=r"S005_001_00000003.png is not an image"):
        dataset.pool(image_size=24)


def test_mlcr_trains_with_a_folder_as_its_pool(tiny_cfg, tmp_path, lfw):
    run_dir = tmp_path / "run"
    run(tiny_cfg("method=mlcr", "pool=image_folder", f"pool.root={lfw}", "pool.num_images=8",
                 "trainer.max_steps=2", "trainer.batch_size=4"), run_dir)
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["data"]["unlabeled"]["num_samples"] == 8     # the folder, not the synthetic pool
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 2


def test_a_dataset_serves_as_the_pool_of_another(tiny_cfg, tmp_path):
    ckplus = tmp_path / "CK+"
    written = write_layout(layout_faces(4, 2, seed=5, image_size=24), ckplus)
    run_dir = tmp_path / "run"
    run(tiny_cfg("method=mlcr", "pool=ckplus", f"pool.root={ckplus}",
                 f"pool.cache_dir={tmp_path / 'cache'}", "trainer.max_steps=2",
                 "trainer.batch_size=4"), run_dir)
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["data"]["unlabeled"]["num_samples"] == len(written)
    assert info["data"]["unlabeled"]["num_labeled"] == 0


def test_a_dataset_with_an_unlabelled_split_lends_that_split_as_its_pool(tmp_path):
    from affectlab.data.layouts.emotionet import write_layout as write_emotionet
    from affectlab.data.sources.emotionet import EmotioNet

    root = tmp_path / "EmotioNet"
    write_emotionet(layout_faces(10, 5, seed=2, image_size=24), root)
    dataset = EmotioNet(root=str(root), cache_dir=str(tmp_path / "cache"), image_size=24,
                        on_error="skip", num_labeled=16, num_val=4, num_unlabeled=12)
    pool = dataset.pool(image_size=24)
    manifest = dataset.split(dataset.aligned_index())
    assert len(pool) == len(manifest.ids["unlabeled"]) == 12
    assert not pool.table.labeled.any() and not pool.table.au_mask.any()
