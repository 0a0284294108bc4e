"""Building from the packaged configs, loading runs from their checkpoints alone, and the
messages for what cannot be loaded; recipe references checked before any stage runs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import affectlab
from affectlab.build import CONFIG_DIR
from affectlab.config import upgrade_config
from affectlab.engine import CheckpointError
from affectlab.engine.checkpoint import load_checkpoint
from affectlab.inference import add_spec
from affectlab.models.resnet import PretrainedWeightsError, ResNet
from affectlab.recipe import RecipeError, Runner
from affectlab.train import run

from .conftest import TINY_DATA, TINY_MODEL, TINY_TRAINER, compose_config


def test_configs_ship_inside_the_package():
    assert Path(CONFIG_DIR).is_relative_to(Path(affectlab.__file__).parent)
    assert (Path(CONFIG_DIR) / "train.yaml").is_file()


def test_installed_console_script_finds_its_configs_from_any_directory(tmp_path):
    script = Path(sys.executable).with_name("affectlab-train")
    assert script.is_file(), "make venv installs the console scripts"
    result = subprocess.run([str(script), "--cfg", "job", "method=baseline"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    job = OmegaConf.create(result.stdout)
    assert job.method.name == "baseline" and job.trainer._target_.endswith("TrainerSettings")
    assert not list(tmp_path.iterdir())          # --cfg job writes nothing


def test_saved_configs_of_the_earlier_layout_name_todays_classes():
    old = {"trainer": {"_target_": "affectlab.trainer.Trainer", "max_epochs": 3},
           "dataset": {"_target_": "affectlab.datasets.synthetic.SyntheticFaces"},
           "other": [{"_target_": "affectlab.datasets.real.X"}], "seed": 0}
    assert upgrade_config(old) == {
        "trainer": {"_target_": "affectlab.engine.TrainerSettings", "max_epochs": 3},
        "dataset": {"_target_": "affectlab.data.sources.synthetic.benchmark.SyntheticFaces"},
        "other": [{"_target_": "affectlab.data.sources.on_disk.X"}], "seed": 0}


@pytest.fixture(scope="module")
def own_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny benchmark of this module's own: tests here move it away."""
    return tmp_path_factory.mktemp("load") / "synthetic"


@pytest.fixture(scope="module")
def trained(own_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    run(compose_config(own_root, ["method.tasks=[au,expr]", "trainer.max_steps=3"]), run_dir)
    return run_dir


def test_load_run_without_data_predicts_raw_images(trained, own_root):
    checkpoint = load_checkpoint(trained / "checkpoints/best.pt")
    assert checkpoint["format"] == 2 and checkpoint["spec"]["inputs"]["image"] == [3, 32, 32]
    assert checkpoint["inputs"]["dataset"]["image_size"] == 32
    moved = own_root.with_name("gone")
    own_root.rename(moved)
    try:
        loaded = affectlab.load_run(trained)
        pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
        outputs = loaded.predict({"image": pixels})
    finally:
        moved.rename(own_root)
    assert outputs["au"].shape == (2, len(loaded.method.label_names["au"]))
    assert torch.allclose(outputs["expr"].sum(1), torch.ones(2))
    # the same as normalising by hand with the recorded statistics
    mean = torch.tensor(loaded.inputs["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(loaded.inputs["std"]).view(1, 3, 1, 1)
    by_hand = loaded.method.predict({"image": (pixels.float() / 255 - mean) / std})
    assert torch.allclose(by_hand["au"], outputs["au"], atol=1e-6)


def test_an_older_checkpoint_loads_through_its_data_and_can_be_resaved(trained, tmp_path,
                                                                       caplog):
    checkpoint = load_checkpoint(trained / "checkpoints/best.pt")
    for key in ("format", "spec", "inputs"):
        checkpoint.pop(key)
    old = tmp_path / "old.pt"
    torch.save(checkpoint, old)
    (tmp_path / "blocked").write_text("a file where the data folder should be")
    checkpoint["config"]["dataset"]["root"] = str(tmp_path / "blocked" / "synthetic")
    unreadable = tmp_path / "unreadable.pt"
    torch.save(checkpoint, unreadable)

    with caplog.at_level(logging.WARNING):
        loaded = affectlab.load_run(old)
    assert "older checkpoint without the spec" in caplog.text and loaded.data is not None
    with pytest.raises(CheckpointError, match=r"has no spec.*cannot be read.*add_spec"):
        affectlab.load_run(unreadable)
    add_spec(old)
    resaved = affectlab.load_run(old)
    assert resaved.data is None and resaved.method.label_names == loaded.method.label_names


def test_load_run_of_a_folder_without_checkpoint_says_what_is_missing(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(CheckpointError, match="has no checkpoints/best.pt"):
        affectlab.load_run(tmp_path / "half")


def test_a_run_checkpoint_as_model_pretrained_points_to_init_from(trained):
    with pytest.raises(PretrainedWeightsError, match=f"init_from={trained}"):
        ResNet(depth=18, pretrained=str(trained / "checkpoints/best.pt"))


def recipe(data_root: Path, **stages) -> Runner:
    spec = {"name": "refs", "seeds": [0],
            "overrides": [f"dataset.root={data_root}", *TINY_DATA, *TINY_MODEL, *TINY_TRAINER,
                          "method=baseline", "trainer.max_steps=1"],
            "stages": {"first": {}, **stages}}
    return Runner(OmegaConf.create(spec), out=Path("unused"), seeds=[0], overrides=[],
                  launcher=[])


def test_recipe_references_to_any_key_are_checked_before_any_stage_runs(data_root):
    runner = recipe(data_root, second={"refs": {"init_from": "first"}},
                    third={"refs": {"trainer.resume": ["second"]}})
    assert runner.training_overrides(runner.stage("third"))[-1].startswith("trainer.resume=")
    assert runner.stage("second").init_from == ["first"]
    with pytest.raises(RecipeError, match="'method.teacher'"):
        recipe(data_root, student={"refs": {"method.teacher": "first"}})
    with pytest.raises(RecipeError, match="refers to 'nope'"):
        recipe(data_root, student={"refs": {"init_from": "nope"}})
