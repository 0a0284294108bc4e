"""Shared fixtures: composing the real Hydra configs with tiny sizes, data under tmp_path."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from affectlab.threads import usable_cpus

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(REPO / "configs")

# make test runs the suite in parallel (pytest-xdist, -n auto). Each worker takes its share of
# the CPUs, and the trainings it starts in subprocesses inherit it through OMP_NUM_THREADS:
# processes that each take every core slow one another many times over (affectlab/threads.py).
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if XDIST_WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(usable_cpus() // XDIST_WORKERS, 1))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# A benchmark small enough for a few CPU steps: 32 px faces, a handful of subjects per split.
TINY_DATA = [
    "dataset.image_size=32",
    "dataset.num_subjects_train=4", "dataset.images_per_subject_train=6",
    "dataset.num_subjects_unlabeled=4", "dataset.images_per_subject_unlabeled=6",
    "dataset.num_subjects_val=3", "dataset.images_per_subject_val=4",
    "dataset.num_subjects_test=3", "dataset.images_per_subject_test=4",
]
TINY_MODEL = ["model.widths=[8,16]"]
TINY_DATA_IR = ["dataset.image_size=112"]   # the smallest face an IR net takes (models/irnet.py)
# AFFECTLAB_TEST_DEVICE=cuda runs the suite's training on a GPU (CI has none: cpu)
TEST_DEVICE = os.environ.get("AFFECTLAB_TEST_DEVICE", "cpu")
TINY_TRAINER = ["trainer.batch_size=8", f"trainer.device={TEST_DEVICE}",
                "trainer.progress_bar=false", "trainer.max_epochs=2", "trainer.log_every_steps=1"]


def compose_config(data_root: Path, overrides: list[str] = ()) -> DictConfig:
    """The composed training config with tiny defaults, as ``python train.py`` would see it.

    The tiny sizes apply where they fit: TINY_DATA to the synthetic benchmark (with 112 px
    faces for the IR nets, TINY_DATA_IR), TINY_MODEL to the small CNN; a test of another
    dataset or model (named directly or by an experiment) passes its own values. The shared
    machinery is tested with the one-network baseline (half the cost of the default MLCR)
    unless a test names a method or an experiment.
    """
    method = ([] if any(o.startswith(("method=", "experiment=")) for o in overrides)
              else ["method=baseline"])
    rest = [*TINY_TRAINER, *method, *overrides]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        plain = compose("train", overrides=rest)
        tiny = []
        if plain.dataset.name == "synthetic":
            tiny += [f"dataset.root={data_root}", *TINY_DATA]
            if plain.model._target_.endswith(".IRNet"):
                tiny += TINY_DATA_IR     # IR nets are built for 112 or 224 px faces only
        if plain.model._target_.endswith(".SmallCNN"):
            tiny += TINY_MODEL
        if "consistency_rampup_steps" in plain.method:
            tiny += ["method.consistency_rampup_steps=0"]   # a ramp must fit a run of a few steps
        return compose("train", overrides=[*tiny, *rest])


@pytest.fixture(scope="session", autouse=True)
def packed_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Packed images of every test (and of the trainings they start in subprocesses) stay in
    the session's tmp folder, not in the repository's data/cache/packed."""
    folder = tmp_path_factory.mktemp("packed")
    previous = os.environ.get("AFFECTLAB_PACKED_DIR")
    os.environ["AFFECTLAB_PACKED_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("AFFECTLAB_PACKED_DIR", None)
    else:
        os.environ["AFFECTLAB_PACKED_DIR"] = previous


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder per test session, so the tiny benchmark is generated once."""
    return tmp_path_factory.mktemp("data") / "synthetic"


@pytest.fixture
def tiny_cfg(data_root: Path) -> Callable[..., DictConfig]:
    return lambda *overrides: compose_config(data_root, list(overrides))


def train_tiny_run(data_root: Path, run_dir: Path, tasks: str = "[au,expr,va]",
                   seed: int = 0) -> Path:
    """A run of two steps of the baseline on the tiny benchmark, learning ``tasks``."""
    from affectlab.train import run

    run(compose_config(data_root, [f"method.tasks={tasks}", "trainer.max_steps=2",
                                   f"seed={seed}"]), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two finished tiny runs (seeds 0 and 1) of AUs, expressions and valence/arousal, on a
    benchmark of their own (``<data_root>/synthetic``, beside the runs): for the tests that
    use trained runs (predict, export, report)."""
    folder = tmp_path_factory.mktemp("tiny_runs")
    return [train_tiny_run(folder / "synthetic", folder / f"run{seed}", seed=seed)
            for seed in range(2)]


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (registered in ``sys.modules``: dataclasses
    look their module up)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in a subprocess, from ``cwd``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def run_interrupted(cfg: DictConfig, run_dir: Path, interrupt_at_call: int,
                    monkeypatch: pytest.MonkeyPatch, signum: int = signal.SIGINT) -> dict:
    """Run ``cfg`` but send this process ``signum`` (Ctrl-C by default) during the n-th training
    forward; the run stops after that step. Return the saved last.pt."""
    from affectlab.engine import Trainer, TrainingInterrupted
    from affectlab.engine.checkpoint import load_checkpoint
    from affectlab.train import run

    fit = Trainer.fit
    calls = {"n": 0}

    def interrupting_fit(self, method, *args, **kwargs):
        original_forward = type(method).forward

        def forward(module, batch):
            calls["n"] += 1
            if calls["n"] == interrupt_at_call:
                os.kill(os.getpid(), signum)
            return original_forward(module, batch)

        monkeypatch.setattr(type(method), "forward", forward)
        return fit(self, method, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", interrupting_fit)
    with pytest.raises(TrainingInterrupted, match=signal.Signals(signum).name):
        run(cfg, run_dir)
    monkeypatch.undo()
    return load_checkpoint(run_dir / "checkpoints/last.pt")


def same_final_weights(run_a: Path, run_b: Path) -> bool:
    """Whether two runs' last.pt hold bit-identical method weights."""
    import torch

    from affectlab.engine.checkpoint import load_checkpoint

    a = load_checkpoint(run_a / "checkpoints/last.pt")["method"]
    b = load_checkpoint(run_b / "checkpoints/last.pt")["method"]
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path → bytes): equal snapshots, untouched tree."""
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end (``slow``) tests first: a parallel run then spreads its few long tests
    over the workers at the start instead of finishing on one of them alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
