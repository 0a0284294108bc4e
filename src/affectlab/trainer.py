"""The one training loop every method runs through.

The trainer owns devices, precision, data loading (its sampler comes from the ``sampler``
config group), optimizer and schedule, gradient clipping, evaluation, best-checkpoint
selection, per-label threshold search, checkpoints and resume, logging (TensorBoard,
``metrics.jsonl``, the console) and, under ``torchrun``, data parallelism. A method only turns
batches into loss terms and predictions (:mod:`affectlab.methods.base`); the data owns its
inputs and their transforms (``FaceData.transform``: augmentation, normalisation, views).

Loop unit: epochs over the labelled training split (incomplete last batch dropped); when the
method needs unlabelled data, a batch of the unlabelled pool is drawn alongside every labelled
batch from an endless deterministic stream. ``max_steps``, when set, caps the number of
optimizer steps and overrides ``max_epochs``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from affectlab.checkpoints import (CheckpointError, class_path, load_checkpoint,
                                   load_method_state)
from affectlab.datasets.base import TARGET_KEYS, FaceData, FaceImageDataset
from affectlab.datasets.samplers import EpochSampler, InfiniteSampler, uniform_epochs
from affectlab.methods.base import Method
from affectlab.metrics import (MULTILABEL_TASKS, THRESHOLD_CRITERIA, best_thresholds,
                               evaluate_tasks, flatten_metrics, overall_score)
from affectlab.schedules import Constant
from affectlab.utils import atomic_torch_save, resolve_device, rng_state, set_rng_state

log = logging.getLogger(__name__)

__all__ = ["Trainer", "CheckpointError", "RunLogger", "predict_split", "search_thresholds"]


class RunLogger:
    """Scalars to TensorBoard (``tb/``) and to ``metrics.jsonl``; inert on non-main ranks."""

    def __init__(self, run_dir: Path | None) -> None:
        self.writer = SummaryWriter(str(run_dir / "tb")) if run_dir is not None else None
        self.events = open(run_dir / "metrics.jsonl", "a") if run_dir is not None else None

    def record(self, scalars: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.events.write(json.dumps({"step": step, **scalars}) + "\n")
        self.events.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.events.close()


class Trainer:
    """Fits a :class:`~affectlab.methods.base.Method` on :class:`~affectlab.datasets.base.FaceData`.

    Args:
        max_epochs: epochs over the labelled training split.
        max_steps: optional cap on optimizer steps; overrides ``max_epochs`` when set.
        batch_size: labelled images per step (per process under torchrun).
        unlabeled_batch_size: unlabelled images per step (default: ``batch_size``).
        eval_batch_size: images per evaluation batch (default: 2 × ``batch_size``).
        num_workers: DataLoader worker processes.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
        grad_clip_norm: clip the global gradient norm to this value (None: no clipping).
        eval_every_epochs: validate every this many epochs (and after the last).
        monitor: validation metric that selects ``best.pt``, e.g. ``val/au/f1_mean``.
        monitor_mode: ``max`` or ``min``.
        resume: path to a ``last.pt`` to continue from, or None.
        log_every_steps: how often training losses go to TensorBoard and ``metrics.jsonl``.
        progress_bar: show a tqdm bar (epoch, step, loss, images/s).
        seed: seeds data order and augmentation.
        threshold_criterion: after training, per-label thresholds of each multi-label task
            are searched on the validation split for this criterion (``f1``, or ``emotionet``:
            ½ (F1 + accuracy)), stored with the best checkpoint and applied in the test
            metrics' ``tuned`` entries; ``none`` skips the search.
        optimizer: factory ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``).
        scheduler: a schedule from :mod:`affectlab.schedules`.
        sampler: factory ``(table, batch_size=, seed=, rank=, world_size=) -> EpochSampler``
            of the training split (the ``sampler`` config group; default: uniform epochs).
    """

    def __init__(
        self,
        *,
        max_epochs: int,
        max_steps: int | None = None,
        batch_size: int,
        unlabeled_batch_size: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        device: str = "auto",
        precision: str = "auto",
        grad_clip_norm: float | None = None,
        eval_every_epochs: int = 1,
        monitor: str = "val/score",
        monitor_mode: str = "max",
        resume: str | None = None,
        log_every_steps: int = 10,
        progress_bar: bool = True,
        seed: int = 0,
        threshold_criterion: str = "f1",
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Constant | None = None,
        sampler: Callable[..., EpochSampler] | None = None,
    ) -> None:
        if monitor_mode not in ("max", "min"):
            raise ValueError(f"trainer.monitor_mode={monitor_mode!r}: use max or min")
        if precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"trainer.precision={precision!r}: use auto, bf16 or fp32")
        if threshold_criterion not in (*THRESHOLD_CRITERIA, "none"):
            raise ValueError(f"trainer.threshold_criterion={threshold_criterion!r}: use "
                             f"{', '.join(THRESHOLD_CRITERIA)} or none")
        if max_epochs < 1 and not max_steps:
            raise ValueError("trainer.max_epochs must be ≥ 1 (or set trainer.max_steps)")
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.unlabeled_batch_size = unlabeled_batch_size or batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = num_workers
        self.grad_clip_norm = grad_clip_norm
        self.eval_every_epochs = eval_every_epochs
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.resume = resume
        self.log_every_steps = log_every_steps
        self.progress_bar = progress_bar
        self.seed = seed
        self.optimizer_factory = optimizer
        self.schedule = scheduler or Constant()
        self.sampler_factory = sampler or uniform_epochs
        self.threshold_criterion = threshold_criterion
        self._data: FaceData | None = None     # the data of the fit in progress

        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.device = resolve_device(device)
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision

    # ------------------------------------------------------------------ helpers
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loader(self, dataset: FaceImageDataset, sampler: Any, batch_size: int,
                persistent: bool = False) -> DataLoader:
        """``persistent``: a loader iterated once per epoch keeps its worker processes (starting
        them costs more than a small epoch); the sampler still runs in this process, so its
        position set before each epoch is what the workers load."""
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=persistent and self.num_workers > 0,
                          drop_last=False)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _prepare(self, batch: dict[str, torch.Tensor], data: FaceData, train: bool,
                 views: int = 1) -> dict[str, torch.Tensor]:
        """Move to the device and apply the data's own transform (augmentation, normalisation,
        ``views`` copies; :class:`~affectlab.datasets.transforms.InputTransform`)."""
        return data.transform(self._to_device(batch), train=train, views=views)

    def _better(self, value: float, best: float | None) -> bool:
        if best is None or math.isnan(best):
            return not math.isnan(value)
        return value > best if self.monitor_mode == "max" else value < best

    # --------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict_split(self, method: Method, data: FaceData,
                      dataset: FaceImageDataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Stacked predictions and targets over a whole split (see :func:`predict_split`)."""
        loader = self._loader(dataset, None, self.eval_batch_size)
        return predict_split(method, loader, lambda b: self._prepare(b, data, train=False),
                             self._autocast)

    def evaluate(self, method: Method, data: FaceData, dataset: FaceImageDataset,
                 thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
        """Metrics of every task the method predicts, on one split (see :mod:`affectlab.metrics`)."""
        outputs, targets = self.predict_split(method, data, dataset)
        names = {**data.label_names, **method.label_names}
        return evaluate_tasks(outputs, targets, names, thresholds)

    # -------------------------------------------------------------- checkpoints
    def _random_state(self) -> dict[str, Any]:
        transform = self._data.transform if self._data is not None else None
        return {"rng": rng_state(),
                "augment": transform.state_dict() if transform is not None else None}

    def _checkpoint(self, method: Method, optimizer: torch.optim.Optimizer, scheduler: Any,
                    position: dict[str, Any], config: dict[str, Any] | None,
                    random_state: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            **(random_state or self._random_state()),
            "config": config,
            "method_class": class_path(method),
            "label_names": method.label_names,
            "thresholds": method.thresholds,
            **position,
        }

    def _restore(self, method: Method, optimizer: torch.optim.Optimizer, scheduler: Any,
                 position: dict[str, Any], ckpt_dir: Path) -> dict[str, Any]:
        """Load ``trainer.resume`` into method, optimizer, schedule, augmentation and RNGs.

        The resumed run writes into its own run directory; the interrupted run's ``best.pt``
        is copied there so that best-checkpoint selection continues where it stopped.
        """
        checkpoint = load_checkpoint(self.resume)
        load_method_state(method, checkpoint, self.resume)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        self._data.transform.load_state_dict(checkpoint.get("augment"))
        set_rng_state(checkpoint["rng"])
        best_source = Path(self.resume).with_name("best.pt")
        if self.is_main and best_source.is_file():
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(best_source, ckpt_dir / "best.pt")
        log.info("resumed from %s at epoch %d, step %d", self.resume, checkpoint["epoch"],
                 checkpoint["global_step"])
        return {k: checkpoint[k] for k in position}

    def _step(self, model: torch.nn.Module, method: Method, batch: dict[str, Any],
              optimizer: torch.optim.Optimizer, scheduler: Any, step: int) -> dict[str, torch.Tensor]:
        """One optimizer step: forward (autocast), backward, clip, step, schedule, method hook."""
        with self._autocast():
            losses = model(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if self.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(method.parameters(), self.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        method.after_optimizer_step(step)
        return losses

    # --------------------------------------------------------------------- fit
    def fit(self, method: Method, data: FaceData, run_dir: str | Path,
            config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train, validate every epoch, keep the best checkpoint, and test it.

        Returns ``{"test": task metrics, "best_epoch", "best_value", "monitor", "steps",
        "epochs", "throughput_images_per_s", "train_time_s"}``.
        """
        run_dir = Path(run_dir)
        ckpt_dir = run_dir / "checkpoints"
        if self.is_main and (ckpt_dir / "last.pt").exists():
            raise CheckpointError(f"{ckpt_dir} already holds a run's checkpoints; refusing to "
                                  "overwrite them. Use a new run directory, or continue that "
                                  f"run with trainer.resume={ckpt_dir / 'last.pt'}.")
        if method.needs_unlabeled and data.unlabeled is None:
            raise ValueError(f"method {type(method).__name__} needs an unlabelled pool, but "
                             f"dataset '{data.name}' has none. Pick a dataset config with an "
                             "unlabelled split.")

        self._data = data
        method.prepare(data)
        method.to(self.device)
        model: torch.nn.Module = method
        if self.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=method.has_idle_parameters)

        sampler = self.sampler_factory(data.train.table, batch_size=self.batch_size,
                                       seed=self.seed, rank=self.rank, world_size=self.world_size)
        if sampler.summary():
            log.info("sampler: %s", sampler.summary())
        steps_per_epoch = sampler.batches_per_epoch()
        if steps_per_epoch < 1:
            raise ValueError(f"the training split has {sampler.epoch_length()} images per "
                             f"epoch, fewer than one batch (trainer.batch_size="
                             f"{self.batch_size} × {self.world_size} processes); lower "
                             "trainer.batch_size.")
        total_steps = self.max_steps or self.max_epochs * steps_per_epoch
        num_epochs = math.ceil(total_steps / steps_per_epoch)

        optimizer = self.optimizer_factory(method.param_groups())
        scheduler = self.schedule.build(optimizer, steps_per_epoch=steps_per_epoch,
                                        total_steps=total_steps)

        position = {"epoch": 0, "batch_in_epoch": 0, "global_step": 0, "best_value": None,
                    "best_epoch": None, "images_seen": 0, "train_time_s": 0.0}
        if self.resume:
            position = self._restore(method, optimizer, scheduler, position, ckpt_dir)
        logger = RunLogger(run_dir if self.is_main else None)

        unlabeled_iter: Iterator[dict[str, torch.Tensor]] | None = None
        if method.needs_unlabeled:
            unlabeled_sampler = InfiniteSampler(
                len(data.unlabeled), seed=self.seed,
                start=position["global_step"] * self.unlabeled_batch_size,
                rank=self.rank, world_size=self.world_size)
            unlabeled_iter = iter(self._loader(data.unlabeled, unlabeled_sampler,
                                               self.unlabeled_batch_size))

        loader = self._loader(data.train, sampler, self.batch_size, persistent=True)
        method.train()
        step = position["global_step"]
        step_start_random_state = self._random_state()
        try:
            for epoch in range(position["epoch"], num_epochs):
                start_batch = position["batch_in_epoch"] if epoch == position["epoch"] else 0
                sampler.set_position(epoch, start_batch)
                progress = self._progress(loader, epoch, num_epochs)
                epoch_start = time.perf_counter()
                images_in_epoch = 0
                for batch_index, batch in enumerate(progress, start=start_batch):
                    if step >= total_steps:
                        break
                    # An interrupt inside this step resumes from the step's start.
                    step_start_random_state = self._random_state()
                    views = method.augmented_views
                    batch = self._prepare(batch, data, train=True, views=views)
                    if unlabeled_iter is not None:
                        batch["unlabeled"] = self._prepare(next(unlabeled_iter), data,
                                                           train=True, views=views)
                    losses = self._step(model, method, batch, optimizer, scheduler, step)
                    step += 1
                    # samples (faces) this step, whatever inputs they carry
                    n_images = len(batch["index"]) + (
                        len(batch["unlabeled"]["index"]) if "unlabeled" in batch else 0)
                    images_in_epoch += n_images * self.world_size
                    position.update(global_step=step, batch_in_epoch=batch_index + 1)
                    # Reading loss values syncs a GPU, so it happens only every log_every_steps.
                    if step % self.log_every_steps == 0:
                        scalars = {f"train/{k}": float(v.detach()) for k, v in losses.items()}
                        if not math.isfinite(scalars["train/loss"]):
                            raise FloatingPointError(
                                f"loss became {scalars['train/loss']} by step {step}: lower the "
                                "learning rate (optim.optimizer.lr) or set "
                                "trainer.grad_clip_norm.")
                        scalars["train/lr"] = optimizer.param_groups[0]["lr"]
                        logger.record(scalars, step)
                        if hasattr(progress, "set_postfix"):
                            elapsed = position["train_time_s"] + time.perf_counter() - epoch_start
                            seen = position["images_seen"] + images_in_epoch
                            progress.set_postfix(step=step, loss=f"{scalars['train/loss']:.4f}",
                                                 img_s=f"{seen / max(elapsed, 1e-9):.0f}")
                position["train_time_s"] += time.perf_counter() - epoch_start
                position["images_seen"] += images_in_epoch
                position.update(epoch=epoch + 1, batch_in_epoch=0)
                last_epoch = epoch + 1 == num_epochs or step >= total_steps
                if self.is_main and ((epoch + 1) % self.eval_every_epochs == 0 or last_epoch):
                    self._validate(method, data, optimizer, scheduler, position, config, ckpt_dir,
                                   logger, epoch)
                if self.world_size > 1:
                    dist.barrier()
                if step >= total_steps:
                    break
        except KeyboardInterrupt:
            if self.is_main:
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                atomic_torch_save(self._checkpoint(method, optimizer, scheduler, position, config,
                                                   step_start_random_state),
                                  ckpt_dir / "last.pt")
                log.warning("interrupted at step %d; continue with trainer.resume=%s", step,
                            (ckpt_dir / "last.pt").resolve())
            logger.close()
            raise
        except BaseException:
            logger.close()
            raise

        result: dict[str, Any] = {
            "monitor": self.monitor, "best_value": position["best_value"],
            "best_epoch": position["best_epoch"], "steps": step, "epochs": position["epoch"],
            "train_time_s": round(position["train_time_s"], 3),
            "throughput_images_per_s": round(
                position["images_seen"] / max(position["train_time_s"], 1e-9), 1),
            "sampler": sampler.summary(),
        }
        if self.is_main:
            best_path = ckpt_dir / "best.pt"
            best = load_checkpoint(best_path)
            method.load_state_dict(best["method"])
            if self.threshold_criterion != "none":
                outputs, targets = self.predict_split(method, data, data.val)
                method.thresholds = search_thresholds(outputs, targets, self.threshold_criterion)
                if method.thresholds:
                    best["thresholds"] = method.thresholds
                    atomic_torch_save(best, best_path)
                    rounded = {t: [round(v, 2) for v in thr]
                               for t, thr in method.thresholds.items()}
                    log.info("per-label thresholds (%s on validation): %s",
                             self.threshold_criterion, rounded)
            result["test"] = self.evaluate(method, data, data.test, method.thresholds)
            result["score"] = overall_score(result["test"])
            logger.record({**flatten_metrics(result["test"], "test"),
                           "test/score": result["score"]}, step)
        logger.close()
        return result

    def _validate(self, method: Method, data: FaceData, optimizer: torch.optim.Optimizer,
                  scheduler: Any, position: dict[str, Any], config: dict[str, Any] | None,
                  ckpt_dir: Path, logger: RunLogger, epoch: int) -> None:
        task_metrics = self.evaluate(method, data, data.val)
        unscored = sorted(set(method.label_names) - set(task_metrics))
        if unscored and position["best_epoch"] is None:      # said once, at the first validation
            log.warning("no validation targets for %s (e.g. identities the validation split does "
                        "not share): not in val/score; their test metrics are skipped too%s",
                        unscored, "" if task_metrics else
                        ". Nothing is left to select on: best.pt follows the latest epoch")
        metrics = {**flatten_metrics(task_metrics, "val"), "val/score": overall_score(task_metrics)}
        if self.monitor not in metrics and task_metrics:
            raise KeyError(f"trainer.monitor={self.monitor!r} is not among the validation "
                           f"metrics: {sorted(k for k in metrics if k.count('/') <= 2)}")
        value = metrics.get(self.monitor, math.nan)
        logger.record(metrics, position["global_step"])
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        # without any validation signal (identity pre-training on identity-disjoint splits)
        # the latest weights are the best there is
        if self._better(value, position["best_value"]) or not task_metrics:
            position.update(best_value=value if task_metrics else None, best_epoch=epoch + 1)
            atomic_torch_save(self._checkpoint(method, optimizer, scheduler, position, config),
                              ckpt_dir / "best.pt")
        atomic_torch_save(self._checkpoint(method, optimizer, scheduler, position, config),
                          ckpt_dir / "last.pt")
        log.info("epoch %d  step %d  %s = %.4f  (best %.4f at epoch %s)", epoch + 1,
                 position["global_step"], self.monitor, value,
                 math.nan if position["best_value"] is None else position["best_value"],
                 position["best_epoch"])

    def _progress(self, loader: DataLoader, epoch: int, num_epochs: int) -> Any:
        if not (self.progress_bar and self.is_main):
            return loader
        from tqdm import tqdm

        return tqdm(loader, desc=f"epoch {epoch + 1}/{num_epochs}", leave=False, dynamic_ncols=True)


@torch.no_grad()
def predict_split(method: Method, loader: Any, prepare: Callable[[dict], dict],
                  autocast: Callable[[], Any] = contextlib.nullcontext,
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``method.predict`` over every batch of ``loader`` (each passed through ``prepare``:
    device and input transform) and stack predictions and targets (:data:`TARGET_KEYS`).

    Returns ``({task: (N, ·) predictions}, {target key: (N, ·) targets})`` as numpy arrays.
    """
    was_training = method.training
    method.eval()
    outputs: dict[str, list[np.ndarray]] = {}
    targets: dict[str, list[np.ndarray]] = {k: [] for k in TARGET_KEYS}
    for batch in loader:
        batch = prepare(batch)
        with autocast():
            predictions = method.predict(batch)
        for task, value in predictions.items():
            outputs.setdefault(task, []).append(value.float().cpu().numpy())
        for key in TARGET_KEYS:
            targets[key].append(batch[key].cpu().numpy())
    method.train(was_training)
    return ({k: np.concatenate(v) for k, v in outputs.items()},
            {k: np.concatenate(v) for k, v in targets.items()})


def search_thresholds(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray],
                      criterion: str = "f1") -> dict[str, list[float]]:
    """Per-label thresholds of every multi-label task in ``outputs`` with valid targets,
    maximising ``criterion`` (:func:`affectlab.metrics.best_thresholds`) on these predictions
    (a validation split's). Returns ``{task: [C thresholds]}``."""
    found: dict[str, list[float]] = {}
    for task in MULTILABEL_TASKS:
        if task in outputs and outputs[task].shape[1] and targets[f"{task}_mask"].any():
            found[task] = best_thresholds(targets[task], outputs[task], targets[f"{task}_mask"],
                                          criterion=criterion).tolist()
    return found
