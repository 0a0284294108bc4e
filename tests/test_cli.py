"""``python train.py`` as a user runs it: run directories, multirun, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TINY_DATA, TINY_MODEL, TINY_TRAINER, run_cli

pytestmark = pytest.mark.slow


def tiny_args(data_root: Path) -> list[str]:
    return [f"dataset.root={data_root}", *TINY_DATA, *TINY_MODEL, *TINY_TRAINER,
            "trainer.max_steps=2"]


def test_single_run_writes_everything_and_prints_a_table(tmp_path, data_root):
    result = run_cli(tiny_args(data_root) + ["hydra.run.dir=outputs/one"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "outputs/one"
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "config_resolved.yaml",
                 "train.log", "metrics.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    log = (run_dir / "train.log").read_text()
    assert "Test results" in log and "AU12" in log and "mean" in log
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"au"}


def test_multirun_over_three_seeds_gives_three_run_directories(tmp_path, data_root):
    result = run_cli(["-m", "seed=0,1,2", "trainer.max_epochs=1"] + tiny_args(data_root),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = sorted((tmp_path / "multirun").glob("*/*/*/metrics.json"))
    assert len(found) == 3
    seeds = sorted(json.loads(p.read_text())["seed"] for p in found)
    assert seeds == [0, 1, 2]
    assert len({p.parent for p in found}) == 3


@pytest.mark.parametrize("group,known", [("method", "baseline"), ("dataset", "synthetic"),
                                         ("model", "resnet18")])
def test_unknown_option_names_the_available_options(tmp_path, data_root, group, known):
    result = run_cli(tiny_args(data_root) + [f"{group}=nosuchthing"], cwd=tmp_path)
    assert result.returncode != 0
    assert "nosuchthing" in result.stderr and known in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_type_is_one_clear_line(tmp_path, data_root):
    result = run_cli(tiny_args(data_root) + ["trainer.batch_size=lots"], cwd=tmp_path)
    assert result.returncode == 2
    assert "trainer.batch_size='lots' has the wrong type" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_missing_gpu_is_one_clear_line(tmp_path, data_root):
    # cuda:99 is past the last GPU on any machine (or there is no CUDA at all)
    args = [a for a in tiny_args(data_root) if not a.startswith("trainer.device")]
    result = run_cli(args + ["trainer.device=cuda:99"], cwd=tmp_path)
    assert result.returncode == 2
    assert "trainer.device=cuda:99" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_truncated_image_names_the_file(tmp_path, data_root):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    victim = sorted(root.rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    result = run_cli([f"dataset.root={root}", *tiny_args(data_root)[1:]], cwd=tmp_path)
    assert result.returncode == 2
    assert victim.name in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("method", [["method=baseline"],
                                    ["method=mlcr", "method.step_two_start=2"],  # GCN joins mid-run
                                    ["method=baseline", "method.tasks=[au]", "sampler=ml_ros"]])
def test_torchrun_two_processes_share_each_epoch(tmp_path, data_root, method):
    import os
    import subprocess
    import sys

    args = [a for a in tiny_args(data_root) if not a.startswith("trainer.max_steps")]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(Path(__file__).resolve().parents[1] / "train.py"), *args, *method,
         "trainer.batch_size=4",
         # two CPU processes (gloo) whatever AFFECTLAB_TEST_DEVICE says: a one-GPU machine
         # cannot give each rank its own GPU
         "trainer.device=cpu", "hydra.run.dir=outputs/ddp"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "outputs/ddp/metrics.json").read_text())
    if "sampler=ml_ros" in method:
        # the 24 images and their ML-ROS clones, 8 per step over the 2 processes
        epoch = 24 + metrics["sampler"]["clones"]
        assert metrics["sampler"]["clones"] > 0 and metrics["steps"] == 2 * (epoch // 8)
        return
    # 24 labelled images, 4 per process and step, 2 processes → 3 steps per epoch, 2 epochs
    assert metrics["steps"] == 6 and metrics["epochs"] == 2


def _numbers(value, path=""):
    """Every number of a nested metrics dict, by path (lists by position)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in _numbers(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value)
                for k, v in _numbers(item, f"{path}/{i}").items()}
    return {path: value} if isinstance(value, (int, float)) and value is not None else {}


def test_two_gloo_processes_train_and_evaluate_as_one_process(tmp_path, data_root):
    """A batch of 8 split over two processes (4 each; rank r takes every second index of the
    same permutation) trains as the batch of 8 in one process when nothing depends on the
    split: GroupNorm instead of BatchNorm (per-rank statistics), no augmentation (drawn per
    process). Validation and test are predicted in shards and gathered: the same metrics."""
    import os
    import subprocess
    import sys

    args = [a for a in tiny_args(data_root) if not a.startswith("trainer.max_steps")]
    same = ["method=baseline", "model.norm=group", "augment=none", "trainer.device=cpu",
            "trainer.eval_batch_size=5"]    # batches that cut the val/test shards unevenly
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train_py = str(Path(__file__).resolve().parents[1] / "train.py")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", train_py, *args, *same, "trainer.batch_size=4",
                          "hydra.run.dir=outputs/two"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, train_py, *args, *same, "trainer.batch_size=8",
                          "hydra.run.dir=outputs/one"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    by_two, by_one = (json.loads((tmp_path / f"outputs/{n}/metrics.json").read_text())
                      for n in ("two", "one"))
    assert by_two["steps"] == by_one["steps"] == 6 and by_two["best_epoch"] == by_one["best_epoch"]
    numbers_two, numbers_one = _numbers(by_two["tasks"]), _numbers(by_one["tasks"])
    assert numbers_two.keys() == numbers_one.keys() and "/au/tuned/f1_mean" in numbers_one
    for key, value in numbers_one.items():
        assert numbers_two[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    assert by_two["best_value"] == pytest.approx(by_one["best_value"], rel=1e-4, abs=1e-5)


def test_constructor_validation_is_one_clear_line(tmp_path, data_root):
    result = run_cli(tiny_args(data_root)
                     + ["method=baseline", "method.heads.au.weighting=balanced"],
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "method.heads.au.weighting='balanced': use none, frequency or selective" in (
        result.stderr + result.stdout)
    assert "Traceback" not in result.stderr


def test_evaluate_and_recipe_apps_give_one_clear_line_for_bad_input(tmp_path):
    import subprocess
    import sys

    for module, args, expected in (
            ("affectlab.evaluate", [f"runs=[{tmp_path / 'nowhere'}]"],
             "does not exist: name a run directory"),
            ("affectlab.evaluate", ["runs=[]"], "runs=[] is empty"),
            ("affectlab.recipe", ["recipe=multitask_synthetic", "stages=[nope]"],
             "has no stage 'nope'")):
        result = subprocess.run([sys.executable, "-m", module, *args,
                                 f"hydra.run.dir={tmp_path / 'out'}"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        assert expected in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


GLOO_THREADS = """
import importlib, os, socket, sys
from pathlib import Path
import torch, torch.distributed as dist
from affectlab.engine.distributed import start_process_group
probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1")
def gloo_threads():
    return sum("gloo" in Path(t, "comm").read_text() for t in Path("/proc/self/task").iterdir())
if sys.argv[1] == "framework":
    start_process_group(torch.device("cpu"))
else:                       # the order that left the group alive: DDP imports it afterwards
    dist.init_process_group("gloo")
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
model(torch.ones(1, 2)).sum().backward()
during = gloo_threads()
del model
dist.destroy_process_group()
print(during, gloo_threads())
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="threads are read from /proc")
def test_destroying_the_process_group_joins_its_gloo_threads():
    """The torchrun abort's cause (train.main, engine/distributed.start_process_group): gloo
    threads still running at interpreter finalization. With the framework's start they are
    joined by destroy_process_group; the order that caused the abort leaves them running."""
    counts = {}
    for order in ("framework", "import_after"):
        result = subprocess.run([sys.executable, "-c", GLOO_THREADS, order], capture_output=True,
                                text=True, timeout=120, cwd=Path(__file__).parents[1])
        assert result.returncode == 0, result.stderr[-2000:]
        counts[order] = [int(v) for v in result.stdout.split()[-2:]]
    assert counts["framework"][0] > 0 and counts["framework"][1] == 0, counts
    assert counts["import_after"][1] > 0, counts      # the check can fail
