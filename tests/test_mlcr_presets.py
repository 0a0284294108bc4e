"""Every MLCR paper preset trains through the real loaders on synthetic faces written in its
dataset's layout (the presets' own ResNet-34 and sizes swapped for tiny ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affectlab.data.layouts import bp4d, celeba, ckplus, emotionet
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.bp4d import SUBJECTS as BP4D_SUBJECTS
from affectlab.train import run

# the presets' networks and schedules, shrunk: what is tested is data, pool and method wiring
TINY = ["model=small_cnn", "model.widths=[8,16]", "dataset.image_size=32",
        "trainer.max_steps=2", "trainer.batch_size=4", "method.step_two_start=1",
        "trainer.eval_every_epochs=1"]


# EmotioNet's presets align by detected faces: faces large enough for MTCNN, and enough of them
DETECT = ["detector.min_face_size=20", "detector.device=cpu"]


def emotionet_tree(root: Path) -> Path:
    emotionet.write_layout(layout_faces(10, 6, seed=4, image_size=96), root)
    return root


def run_preset(tiny_cfg, tmp_path: Path, preset: str, *overrides: str) -> dict:
    cfg = tiny_cfg(f"experiment={preset}", *TINY, f"dataset.cache_dir={tmp_path / 'cache'}",
                   *overrides)
    metrics = run(cfg, tmp_path / "run")
    assert metrics["method"] == "mlcr" and metrics["steps"] == 2
    assert (tmp_path / "run" / "split_manifest.json").is_file()
    return json.loads((tmp_path / "run" / "run_info.json").read_text())


def test_mlcr_ckplus_with_a_folder_pool(tiny_cfg, tmp_path):
    root = tmp_path / "CK+"
    ckplus.write_layout(layout_faces(10, 3, seed=1, image_size=32), root)
    lfw = tmp_path / "lfw"
    ckplus.write_layout(layout_faces(3, 2, seed=9, image_size=32), lfw)   # any face folder
    info = run_preset(tiny_cfg, tmp_path, "mlcr_ckplus", f"dataset.root={root}",
                      f"pool.root={lfw}", "pool.num_images=12")
    assert info["data"]["unlabeled"]["num_samples"] == 12


def test_mlcr_bp4d_with_emotionet_as_its_pool(tiny_cfg, tmp_path):
    root = tmp_path / "BP4D"
    bp4d.write_layout(layout_faces(len(BP4D_SUBJECTS), 1, seed=2, image_size=32), root)
    pool = emotionet_tree(tmp_path / "EmotioNet")
    info = run_preset(tiny_cfg, tmp_path, "mlcr_bp4d", f"dataset.root={root}",
                      f"pool.root={pool}", "pool.num_labeled=16", "pool.num_val=4",
                      "pool.num_unlabeled=12", f"pool.cache_dir={tmp_path / 'cache'}",
                      "pool.image_size=32", "dataset.align_size=40", "pool.align_size=40",
                      *DETECT)
    # BP4D aligned by its 2DFeatures, the pool by detection (some drawn faces are missed)
    assert info["data"]["train"]["num_samples"] > 0
    assert 6 <= info["data"]["unlabeled"]["num_samples"] <= 12


def test_mlcr_emotionet(tiny_cfg, tmp_path):
    root = emotionet_tree(tmp_path / "EmotioNet")
    info = run_preset(tiny_cfg, tmp_path, "mlcr_emotionet", f"dataset.root={root}",
                      "dataset.num_labeled=16", "dataset.num_val=4", "dataset.num_unlabeled=12",
                      "dataset.align_size=40", *DETECT)
    assert 6 <= info["data"]["unlabeled"]["num_samples"] <= 12


def test_mlcr_celeba_attributes(tiny_cfg, tmp_path):
    root = tmp_path / "data"
    celeba.write_layout(layout_faces(12, 5, seed=3, image_size=32), root)
    run_preset(tiny_cfg, tmp_path, "mlcr_celeba", f"dataset.root={root}",
               "dataset.num_labeled=10", "dataset.num_unlabeled=20", "dataset.num_test=8")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["tasks"]["attr"]["f1"]) == 40


@pytest.mark.parametrize("preset", ["mlcr_ckplus", "mlcr_bp4d", "mlcr_emotionet",
                                    "mlcr_celeba"])
def test_presets_keep_the_papers_weights(tiny_cfg, preset):
    cfg = tiny_cfg(f"experiment={preset}")
    assert cfg.method.lambda_mv == 400 and cfg.method.lambda_cr == 100
    assert cfg.model.depth == 34 and cfg.method.supervised_reduction == "sum"
    if preset == "mlcr_ckplus":
        assert cfg.method.lambda_cr_step_two == 500 and cfg.pool.num_images == 2000
    # MLCR's SeetaFace alignment: by the dataset's landmarks where it has them, else detection
    crops = {"mlcr_ckplus": "align", "mlcr_bp4d": "align", "mlcr_emotionet": "detect",
             "mlcr_celeba": "center"}
    assert cfg.dataset.crop == crops[preset]
    if preset != "mlcr_celeba":
        assert (cfg.dataset.template, cfg.dataset.align_size) == ("mlcr_240", 240)
    if preset == "mlcr_bp4d":
        assert (cfg.pool.crop, cfg.pool.template) == ("detect", "mlcr_240")
