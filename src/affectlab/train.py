"""``python train.py``: compose the config, build data, model and method, train, test, report.

Everything a run writes lands in its run directory, claimed before the first write
(:func:`~affectlab.checkpoints.claim_run_dir`): ``run_info.json`` (the claim, then the
environment), ``.hydra/`` (the composed config and overrides), ``config_resolved.yaml``,
``train.log``, ``tb/`` (TensorBoard), ``metrics.jsonl`` (every logged scalar),
``checkpoints/{last,best}.pt`` and ``metrics.json`` (final test results of the best
checkpoint).
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

from affectlab.build import CONFIG_DIR, build_data, build_method, build_trainer, run_seed
from affectlab.config import ConfigError
from affectlab.data.contract import DataError, FaceData
from affectlab.engine import (
    CheckpointError,
    DivergenceError,
    RunDirectoryError,
    Trainer,
    TrainingInterrupted,
)
from affectlab.engine.checkpoint import init_from
from affectlab.engine.distributed import start_process_group
from affectlab.engine.run_dir import RUN_CLAIM, claim_run_dir
from affectlab.results import format_results
from affectlab.threads import configure_threads
from affectlab.utils import atomic_write_json, atomic_write_text, resolve_device, seed_everything

log = logging.getLogger("affectlab")

MAX_SUBDIR_LENGTH = 120
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"   # Hydra's console format

# exit statuses of python train.py (see main)
EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_DIVERGED, EXIT_CTRL_C = 2, 3, 4, 130


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


def run(cfg: DictConfig, run_dir: str | Path, *, unique_dir: bool = False) -> dict[str, Any]:
    """Train and test one configuration; write ``metrics.json`` into ``run_dir`` and return it.

    Everything that can be checked without writing is checked first (the trainer's values, a
    resume's checkpoint and its settings); then ``run_dir`` is claimed
    (:func:`~affectlab.checkpoints.claim_run_dir`; ``unique_dir``: take ``<run_dir>_1``, ...
    when it is taken) and the run writes only there. Returns the metrics, with the directory
    actually used as ``run_dir``.
    """
    resolved = OmegaConf.to_container(cfg, resolve=True)
    trainer = build_trainer(cfg)
    trainer.check_resume(resolved)
    run_dir = claim_on_main(run_dir, unique=unique_dir, is_main=trainer.is_main)
    if not trainer.is_main:     # under torchrun only the main process writes
        return _train_and_test(cfg, resolved, trainer, run_dir)
    log_file = logging.FileHandler(run_dir / "train.log")
    log_file.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(log_file)
    try:
        return _train_and_test(cfg, resolved, trainer, run_dir)
    finally:
        logging.getLogger().removeHandler(log_file)
        log_file.close()


def claim_on_main(run_dir: str | Path, *, unique: bool, is_main: bool) -> Path:
    """The main process claims the run directory; under torchrun the others learn which one
    (or the refusal) from it, so every process uses the same directory or stops with the same
    message."""
    outcome: list[str | None] = [None, None]       # [claimed directory, refusal]
    if is_main:
        try:
            outcome[0] = str(claim_run_dir(run_dir, unique=unique))
        except RunDirectoryError as refused:
            outcome[1] = str(refused)
    if dist.is_initialized():
        dist.broadcast_object_list(outcome, src=0)
    if outcome[1] is not None:
        raise RunDirectoryError(outcome[1])
    return Path(outcome[0])


def _train_and_test(cfg: DictConfig, resolved: dict[str, Any], trainer: Trainer,
                    run_dir: Path) -> dict[str, Any]:
    seed_everything(run_seed(cfg))
    if trainer.is_main:
        atomic_write_text(run_dir / "config_resolved.yaml", OmegaConf.to_yaml(resolved))
        if HydraConfig.initialized():
            save_hydra_files(cfg, run_dir)

    data, method = build_data(cfg), build_method(cfg)
    log.info("data: %s", {k: v.get("num_samples") for k, v in data.summary().items()})
    if trainer.is_main:
        write_run_info(run_dir, data, trainer)

    if cfg.get("init_from") and not cfg.trainer.get("resume"):
        method.prepare(data)
        init_from(method, cfg.init_from, list(cfg.get("init_parts") or ["backbone"]),
                  model_config=resolved.get("model"))
        method.on_weights_loaded(source="init_from")
    result = trainer.fit(method, data, run_dir, config=resolved)
    result.update(trainer.test(method, data, run_dir, step=result["steps"]))
    if not trainer.is_main:
        return result
    metrics = {
        "method": cfg.method.name, "dataset": cfg.dataset.name, "seed": cfg.seed,
        "seed_offset": cfg.get("seed_offset") or 0, "split": "test",
        "tasks": result["test"], "score": result["score"], "monitor": result["monitor"],
        "best_value": result["best_value"],
        "best_epoch": result["best_epoch"], "epochs": result["epochs"], "steps": result["steps"],
        "train_time_s": result["train_time_s"],
        "throughput_images_per_s": result["throughput_images_per_s"],
        "device": str(trainer.device), "resumed_from": cfg.trainer.get("resume"),
        "resume_changes": result["resume_changes"],
        "split_protocol": data.manifest.protocol if data.manifest is not None else None,
        "split_checksum": data.manifest.checksum() if data.manifest is not None else None,
        "skipped_problems": data.skipped, "known_gaps_left_out": data.known_gaps,
        "skipped_nonfinite_steps": result["skipped_nonfinite_steps"],
        "sampler": result["sampler"], "init_from": resolved.get("init_from"),
        "run_dir": str(run_dir),
    }
    atomic_write_json(metrics, run_dir / "metrics.json")
    log.info("\n%s", format_results(metrics))
    return metrics


def write_run_info(run_dir: Path, data: FaceData, trainer: Trainer) -> None:
    """``run_info.json``: where and how the run ran (replacing the claim written first), and
    ``split_manifest.json``: the split protocol as sample ids."""
    if data.manifest is not None:
        data.manifest.save(run_dir / "split_manifest.json")
    atomic_write_json({
        "git_sha": _git_sha(), "torch": torch.__version__, "python": platform.python_version(),
        "device": str(trainer.device), "precision": trainer.precision,
        "world_size": trainer.world_size, "threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": (torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda"
                else None),
        "hostname": platform.node(), "pid": os.getpid(), "argv": sys.argv,
        "data": data.summary(),
    }, run_dir / RUN_CLAIM)


def save_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """What Hydra writes into ``.hydra/`` (the composed config unresolved, the command-line
    overrides and Hydra's own settings), written here after the run directory is claimed
    (``hydra.output_subdir`` is null in configs/train.yaml)."""
    hydra_cfg = HydraConfig.get()
    folder = run_dir / ".hydra"
    atomic_write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write_text(folder / "overrides.yaml",
                      OmegaConf.to_yaml(OmegaConf.create(list(hydra_cfg.overrides.task))))
    atomic_write_text(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create(
        {"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)})))


def default_run_dir() -> bool:
    """Whether this Hydra job's directory is the default timestamped one (not named with
    ``hydra.run.dir`` / ``hydra.sweep.dir`` / ``hydra.sweep.subdir``): such a directory may
    be renamed when taken; a named one is refused."""
    named = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")
    return not any(o.split("=", 1)[0].lstrip("+~") in named
                   for o in HydraConfig.get().overrides.hydra)


def resume_command(checkpoint: Path | None) -> str:
    """The command that continues this job from ``checkpoint``: its own overrides, with
    ``trainer.resume`` pointing there."""
    task = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    overrides = [o for o in task if not o.lstrip("+~").startswith("trainer.resume=")]
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    launcher = (f"torchrun --nproc_per_node={world_size} train.py" if world_size > 1
                else "python train.py")
    return " ".join([launcher, *overrides, f"trainer.resume={checkpoint}"])


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the best validation value of the monitored metric (for
    sweepers). Exit status: 0 done, 2 bad input (one message), 3 stopped by a signal with
    ``last.pt`` saved (the resume command is printed), 4 diverged (non-finite loss), 130
    Ctrl-C pressed twice or before training began."""
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    try:
        if distributed and not dist.is_initialized():
            # the trainer's own device rule (cuda:LOCAL_RANK), so a process without a GPU gets
            # its message before NCCL is started
            start_process_group(resolve_device(cfg.trainer.device))
        configure_threads(cfg)    # this job's share of the CPUs (src/affectlab/threads.py)
        metrics = run(cfg, HydraConfig.get().runtime.output_dir, unique_dir=default_run_dir())
    except TrainingInterrupted as stopped:
        if int(os.environ.get("RANK", 0)) == 0:
            log.warning("%s. Continue exactly where it stopped with:\n  %s", stopped,
                        resume_command(stopped.checkpoint))
        sys.exit(EXIT_INTERRUPTED)
    except DivergenceError as err:
        log.error("%s: %s", type(err).__name__, err)
        sys.exit(EXIT_DIVERGED)
    except KeyboardInterrupt:
        log.warning("interrupted: stopped at once, nothing more saved (the run's last "
                    "checkpoints/last.pt, if any, continues it)")
        sys.exit(EXIT_CTRL_C)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, ValueError,
            InstantiationException) as err:
        # One clear message for input problems; a traceback would only hide it.
        # HYDRA_FULL_ERROR=1 shows the traceback when it is a bug, not an input.
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s: %s", type(err).__name__, " ".join(str(err).split()))
        sys.exit(EXIT_BAD_INPUT)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
    return metrics.get("best_value")


if __name__ == "__main__":
    main()
