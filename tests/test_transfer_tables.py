"""scripts/transfer_tables.py: Ji et al.'s tables, end to end on tiny data (--quick)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from .conftest import REPO

SCRIPT = REPO / "scripts" / "transfer_tables.py"

pytestmark = pytest.mark.slow


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def rows_of(markdown: str) -> dict[str, list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


def test_table2_quick_runs_the_transfer_recipe_and_writes_the_table(tmp_path, data_root):
    result = run_script(["table2", "--quick", "--data-root", str(data_root),
                         "--runs", str(tmp_path / "runs")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    markdown = (tmp_path / "runs/table2.md").read_text()
    rows = rows_of(markdown)
    # the measured chain: pre-training → fine-tuning → per-seed ensemble, balancing, MLCR
    for row in ("AU from scratch", "F_face", "F_emotion", "F_face + F_emotion",
                "F_face + F_emotion + balancing", "MLCR, both views from F_face's backbone",
                "MLCR, one view from each backbone"):
        assert rows[row][0] == "1", row
    assert rows["F_face + F_emotion (reported)"][1:4] == ["92.5", "49.4", "71.0"]
    assert "Align + F_face + F_emotion" not in rows         # no alignment on synthetic faces
    # Avg is ½(Acc + F1@thr) of the same runs
    acc, f1, avg = (float(rows["F_face"][i].split(" ± ")[0]) for i in (1, 2, 3))
    assert avg == pytest.approx((acc + f1) / 2, abs=0.051)
    with (tmp_path / "runs/table2.csv").open() as handle:
        table = list(csv.reader(handle))
    assert table[0][:4] == ["row", "runs", "Acc mean", "Acc std"]
    assert Image.open(tmp_path / "runs/table2.png").size[0] > 200
    # the fine-tuning stages started from their pre-training runs
    face_au = (tmp_path / "runs/face_au/seed0/train.log").read_text()
    assert "init_from" in face_au and "face/seed0" in face_au


def test_table1_quick_trains_a_resnet_and_an_ir_net(tmp_path, data_root):
    result = run_script(["table1", "--quick", "--data-root", str(data_root),
                         "--runs", str(tmp_path / "runs")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = rows_of((tmp_path / "runs/table1.md").read_text())
    assert rows["ResNet-18"][0] == rows["IR-50"][0] == "1"
    assert rows["ResNet-152 (reported)"][1:4] == ["90.5", "47.4", "69.0"]


def test_a_table_without_its_recipe_says_which_datasets_have_one(tmp_path):
    result = run_script(["table2", "--dataset", "ckplus"], cwd=tmp_path)
    assert result.returncode != 0
    assert "no recipe transfer_ckplus.yaml" in result.stderr
    assert "emotionet" in result.stderr and "synthetic" in result.stderr


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (REPO / "configs/recipe").glob("*.yaml")))
def test_every_recipe_stage_composes_and_its_options_check(recipe):
    """Each training stage of every recipe (the EmotioNet ones included, which need data to
    run) composes, and its method, model, dataset and trainer options fit their classes."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from affectlab.config import check_config
    from affectlab.recipe import Runner

    runner = Runner(OmegaConf.load(REPO / "configs/recipe" / f"{recipe}.yaml"), out=Path("out"),
                    seeds=[0], overrides=[], launcher=[])
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        for stage in runner.stages:
            if stage.is_ensemble:
                continue
            overrides = [o for o in runner.training_overrides(stage)
                         if not o.startswith("init_from=")]
            cfg = compose("train", overrides=overrides)
            for group in ("method", "model", "dataset", "trainer"):
                check_config(cfg[group], group)
            if stage.init_from:
                assert all(ref in [s.name for s in runner.stages] for ref in stage.init_from)
