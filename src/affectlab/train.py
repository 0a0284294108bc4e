"""``python train.py``: compose the config, build data, model and method, train, test, report.

Everything a run writes lands in Hydra's run directory: ``.hydra/`` (the composed config and
overrides), ``config_resolved.yaml``, ``run_info.json``, ``train.log``, ``tb/`` (TensorBoard),
``metrics.jsonl`` (every logged scalar), ``checkpoints/{last,best}.pt`` and ``metrics.json``
(final test results of the best checkpoint).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from affectlab.config import ConfigError, instantiate_checked
from affectlab.datasets.base import DataError, FaceData
from affectlab.datasets.preprocess import use_crops
from affectlab.methods.base import Method
from affectlab.trainer import CheckpointError, Trainer
from affectlab.utils import atomic_write_json, resolve_device, seed_everything

log = logging.getLogger("affectlab")

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
MAX_SUBDIR_LENGTH = 120


def sweep_subdir(job_num: int, overrides: str) -> str:
    """``<job>_<overrides>`` as one safe directory name: no ``/``, at most 120 characters.

    Long override lists are cut and suffixed with a hash of the full list, so names stay
    unique and readable; ``.hydra/overrides.yaml`` in the run directory keeps the full list.
    """
    name = f"{job_num}_{overrides}".replace("/", "_")
    if len(name) <= MAX_SUBDIR_LENGTH:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_SUBDIR_LENGTH - 9]}_{digest}"


OmegaConf.register_new_resolver("sweep_subdir", sweep_subdir, replace=True)


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def format_results(metrics: dict[str, Any]) -> str:
    """A readable table of the test metrics: per-label F1/accuracy and the means per task."""
    lines = [f"Test results — method={metrics['method']} dataset={metrics['dataset']} "
             f"seed={metrics['seed']} (best epoch {metrics['best_epoch']})"]
    for task, values in metrics["tasks"].items():
        if "f1" in values:
            width = max(len(label) for label in values["labels"])
            lines.append(f"  {task}: {'label':<{width}}  F1     Acc")
            for label, f1, acc in zip(values["labels"], values["f1"], values["acc"]):
                lines.append(f"  {'':{len(task)}}  {label:<{width}}  {f1:.3f}  {acc:.3f}")
            lines.append(f"  {'':{len(task)}}  {'mean':<{width}}  {values['f1_mean']:.3f}  "
                         f"{values['acc_mean']:.3f}")
        elif "f1_macro" in values:
            lines.append(f"  {task}: macro F1 {values['f1_macro']:.3f}  acc {values['acc']:.3f}")
        elif "ccc_valence" in values:
            lines.append(f"  {task}: CCC valence {values['ccc_valence']:.3f}  "
                         f"arousal {values['ccc_arousal']:.3f}")
    lines.append(f"  training throughput: {metrics['throughput_images_per_s']:.0f} images/s on "
                 f"{metrics['device']}")
    return "\n".join(lines)


def build_data(cfg: DictConfig, *, crops: bool = True) -> FaceData:
    """The dataset of a composed config, with its pool (``pool``) and, when ``crops`` and
    ``preprocessed`` is set, reading the crops written by ``scripts/preprocess.py``."""
    data = instantiate_checked(cfg.dataset, "dataset").build()
    if cfg.get("pool") is not None:
        # an unlabelled pool from elsewhere replaces the dataset's own (configs/pool/)
        data.unlabeled = instantiate_checked(cfg.pool, "pool").pool(
            image_size=data.train.image_size)
    if crops and cfg.get("preprocessed"):
        data = use_crops(data, cfg.preprocessed)
    return data


def build(cfg: DictConfig) -> tuple[FaceData, Method, Trainer]:
    """Data, method (networks not yet set up) and trainer of a composed training config."""
    data = build_data(cfg)
    model_factory = instantiate_checked(cfg.model, "model", _partial_=True)
    model_factory().forward_features  # fail here, not mid-setup, if the model cannot be built
    method = instantiate_checked(cfg.method, "method", model=model_factory)
    trainer = instantiate_checked(
        cfg.trainer, "trainer", seed=cfg.seed,
        optimizer=instantiate_checked(cfg.optim.optimizer, "optim.optimizer", _partial_=True),
        scheduler=instantiate_checked(cfg.optim.scheduler, "optim.scheduler"),
        augment=instantiate_checked(cfg.augment, "augment") if cfg.get("augment") else None)
    return data, method, trainer


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train and test one configuration; write ``metrics.json`` into ``run_dir`` and return it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))

    data, method, trainer = build(cfg)
    if data.manifest is not None:
        data.manifest.save(run_dir / "split_manifest.json")
    log.info("data: %s", {k: v.get("num_samples") for k, v in data.summary().items()})
    atomic_write_json({
        "git_sha": _git_sha(), "torch": torch.__version__, "python": platform.python_version(),
        "device": str(trainer.device), "precision": trainer.precision,
        "world_size": trainer.world_size, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else None,
        "hostname": platform.node(), "argv": sys.argv, "data": data.summary(),
    }, run_dir / "run_info.json")

    result = trainer.fit(method, data, run_dir, config=resolved)
    if not trainer.is_main:
        return result
    metrics = {
        "method": cfg.method.name, "dataset": cfg.dataset.name, "seed": cfg.seed, "split": "test",
        "tasks": result["test"], "monitor": result["monitor"], "best_value": result["best_value"],
        "best_epoch": result["best_epoch"], "epochs": result["epochs"], "steps": result["steps"],
        "train_time_s": result["train_time_s"],
        "throughput_images_per_s": result["throughput_images_per_s"],
        "device": str(trainer.device), "resumed_from": cfg.trainer.get("resume"),
        "split_protocol": data.manifest.protocol if data.manifest is not None else None,
        "split_checksum": data.manifest.checksum() if data.manifest is not None else None,
        "skipped_problems": data.skipped,
    }
    atomic_write_json(metrics, run_dir / "metrics.json")
    log.info("\n%s", format_results(metrics))
    return metrics


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the best validation value of the monitored metric (for sweepers)."""
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    try:
        if distributed and not dist.is_initialized():
            # the trainer's own device rule (cuda:LOCAL_RANK), so a process without a GPU gets
            # its message before NCCL is started
            device = resolve_device(cfg.trainer.device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            if device.type == "cuda":
                torch.cuda.set_device(device)
        metrics = run(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, ValueError,
            InstantiationException) as err:
        # One clear message for input problems; a traceback would only hide it.
        # HYDRA_FULL_ERROR=1 shows the traceback when it is a bug, not an input.
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s: %s", type(err).__name__, " ".join(str(err).split()))
        sys.exit(2)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
    return metrics.get("best_value")
