"""Unlabelled pools from elsewhere: a folder of faces, or another dataset with labels hidden."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from affectlab.datasets.base import DataError
from affectlab.datasets.ckplus import write_layout
from affectlab.datasets.image_folder import ImageFolder
from affectlab.datasets.synthetic import layout_faces
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
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        ImageFolder(root=str(tmp_path / "empty")).pool(image_size=16)
    with pytest.raises(DataError, match="holds only 12 images"):
        ImageFolder(root=str(lfw), num_images=50).pool(image_size=16)
    with pytest.raises(ValueError, match="pool.num_images=0"):
        ImageFolder(root=str(lfw), num_images=0)


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
    from affectlab.datasets.emotionet import EmotioNet
    from affectlab.datasets.emotionet import write_layout as write_emotionet

    root = tmp_path / "EmotioNet"
    write_emotionet(layout_faces(10, 5, seed=2, image_size=24), root)
    dataset = EmotioNet(root=str(root), cache_dir=str(tmp_path / "cache"), image_size=24,
                        on_error="skip", num_labeled=16, num_val=4, num_unlabeled=12)
    pool = dataset.pool(image_size=24)
    manifest = dataset.split(dataset.aligned_index())
    assert len(pool) == len(manifest.ids["unlabeled"]) == 12
    assert not pool.table.labeled.any() and not pool.table.au_mask.any()
