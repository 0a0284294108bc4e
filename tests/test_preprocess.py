"""scripts/preprocess.py + preprocessed=<folder>: crops written once, read back, same pixels."""

from __future__ import annotations

import json

import pytest
import torch

from affectlab.build import build_data
from affectlab.data.contract import DataError
from affectlab.data.layouts import celeba, ckplus
from affectlab.data.layouts.faces import layout_faces
from affectlab.train import run

from .conftest import load_script


@pytest.fixture
def ckplus_args(tmp_path):
    root = tmp_path / "CK+"
    ckplus.write_layout(layout_faces(10, 2, seed=6, image_size=48), root)
    return ["dataset=ckplus", f"dataset.root={root}", "dataset.image_size=32",
            f"dataset.cache_dir={tmp_path / 'cache'}"]


def same_pixels(a, b) -> None:
    for split in ("train", "val", "test"):
        raw, crops = getattr(a, split), getattr(b, split)
        assert len(raw) == len(crops) > 0
        for row in range(len(raw)):
            assert torch.equal(raw.load_image(row), crops.load_image(row)), (split, row)
            assert torch.equal(raw[row]["au"], crops[row]["au"])


def test_crops_give_the_raw_pixels_and_labels(tmp_path, tiny_cfg, ckplus_args):
    out = tmp_path / "crops"
    assert load_script("preprocess").main(["--out", str(out), *ckplus_args]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == "ckplus" and manifest["image_size"] == 32
    assert manifest["files"] == 20
    cfg = tiny_cfg(*ckplus_args, f"preprocessed={out}")
    same_pixels(build_data(cfg, crops=False), build_data(cfg))
    assert build_data(cfg).train.table.root == out.resolve()
    metrics = run(tiny_cfg(*ckplus_args, f"preprocessed={out}", "trainer.max_steps=2",
                           "trainer.batch_size=4"), tmp_path / "run")
    assert metrics["steps"] == 2


def test_a_dataset_with_its_own_crop_is_preprocessed_through_it(tmp_path, tiny_cfg):
    root = tmp_path / "data"
    celeba.write_layout(layout_faces(12, 5, seed=3, image_size=48), root)
    args = ["dataset=celeba", f"dataset.root={root}", "dataset.image_size=24",
            "dataset.crop=center", f"dataset.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "crops"
    load_script("preprocess").main(["--out", str(out), *args])
    cfg = tiny_cfg(*args, f"preprocessed={out}")
    same_pixels(build_data(cfg, crops=False), build_data(cfg))


def test_crops_of_other_options_are_refused_and_a_rerun_resumes(tmp_path, tiny_cfg, ckplus_args):
    out = tmp_path / "crops"
    with pytest.raises(DataError, match="no readable manifest.json"):
        build_data(tiny_cfg(*ckplus_args, f"preprocessed={out}"))
    script = load_script("preprocess")
    script.main(["--out", str(out), *ckplus_args])
    with pytest.raises(DataError, match="another image_size"):
        build_data(tiny_cfg(*ckplus_args, "dataset.image_size=24", f"preprocessed={out}"))
    with pytest.raises(DataError, match="other samples"):
        build_data(tiny_cfg(*ckplus_args, "dataset.run=1", f"preprocessed={out}"))
    # an interrupted run (a crop and the manifest missing) is completed, the rest kept
    crops = sorted((out / "crops").rglob("*.png"))
    kept_mtime = crops[1].stat().st_mtime_ns
    crops[0].unlink()
    (out / "manifest.json").unlink()
    script.main(["--out", str(out), *ckplus_args])
    assert crops[0].is_file() and crops[1].stat().st_mtime_ns == kept_mtime
    assert (out / "manifest.json").is_file()


def test_a_pool_with_the_datasets_own_paths_gets_its_own_crops(tmp_path, tiny_cfg, ckplus_args):
    # another CK+ copy as the pool: its relative paths are the dataset's, its faces are not
    other = tmp_path / "other"
    ckplus.write_layout(layout_faces(10, 2, seed=7, image_size=48), other)
    args = [*ckplus_args, "pool=image_folder", f"pool.root={other}"]
    out = tmp_path / "crops"
    load_script("preprocess").main(["--out", str(out), *args])
    cfg = tiny_cfg(*args, f"preprocessed={out}")
    raw, crops = build_data(cfg, crops=False), build_data(cfg)
    shared = set(raw.unlabeled.table.image_paths) & set(raw.train.table.image_paths)
    assert shared   # the collision this layout has to survive
    same_pixels(raw, crops)
    for row in range(len(raw.unlabeled)):
        assert torch.equal(raw.unlabeled.load_image(row), crops.unlabeled.load_image(row))


def test_crops_of_an_older_layout_are_refused(tmp_path, tiny_cfg, ckplus_args):
    out = tmp_path / "crops"
    load_script("preprocess").main(["--out", str(out), *ckplus_args])
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["layout"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="older affectlab .*re-run scripts/preprocess.py"):
        build_data(tiny_cfg(*ckplus_args, f"preprocessed={out}"))


def test_worker_processes_write_the_same_crops(tmp_path, tiny_cfg, ckplus_args):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    load_script("preprocess").main(["--out", str(serial), *ckplus_args])
    load_script("preprocess").main(["--out", str(parallel), "--workers", "2", *ckplus_args])
    files = sorted(p.relative_to(serial) for p in (serial / "crops").rglob("*.png"))
    assert len(files) == 20
    assert files == sorted(p.relative_to(parallel) for p in (parallel / "crops").rglob("*.png"))
    assert all((serial / f).read_bytes() == (parallel / f).read_bytes() for f in files)
    assert (serial / "manifest.json").read_text() == (parallel / "manifest.json").read_text()
