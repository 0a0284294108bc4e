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

Nothing is lost and nothing is silently wrong:

* SIGTERM, SIGUSR1 (what schedulers send before they kill a job) and Ctrl-C ask the loop to stop
  at the next step boundary: ``last.pt`` is saved there and :class:`TrainingInterrupted` is
  raised (``python train.py`` then exits with status 3 and prints the resume command). A second
  Ctrl-C stops at once. ``checkpoint_every_steps`` bounds what SIGKILL can lose. Every resume
  continues bit-exactly (a checkpoint is only ever written between two steps).
* A non-finite loss term stops the run (:class:`DivergenceError`, naming the step and the term)
  before any checkpoint holds its weights; on CUDA the check is a flag kept on the device and
  read when the host reads anyway (logging, checkpoints), so no step waits for it.
  ``skip_nonfinite`` skips such steps instead and counts them.
* A resume whose configuration differs from the checkpoint's in anything that changes what is
  trained is refused with the list of differences, unless the keys are named in
  ``allow_changes`` (then they are applied and recorded).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import signal
import threading
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
                                   load_method_state, remove_stray_temporaries)
from affectlab.data.contract import TARGET_KEYS, FaceData, FaceImageDataset
from affectlab.data.samplers import EpochSampler, InfiniteSampler, uniform_epochs
from affectlab.methods.base import Method
from affectlab.metrics import (MULTILABEL_TASKS, THRESHOLD_CRITERIA, best_thresholds,
                               evaluate_tasks, flatten_metrics, overall_score)
from affectlab.threads import usable_cpus
from affectlab.results import flatten
from affectlab.schedules import Constant
from affectlab.utils import atomic_torch_save, resolve_device, rng_state, set_rng_state

log = logging.getLogger(__name__)

__all__ = ["Trainer", "CheckpointError", "DivergenceError", "TrainingInterrupted", "RunLogger",
           "predict_split", "search_thresholds", "NonFiniteWatch", "resume_differences"]

#: Trainer options that do not change what is trained: they may differ on resume.
RESUME_FREE_KEYS = ("trainer.resume", "trainer.progress_bar", "trainer.num_workers",
                    "trainer.log_every_steps", "trainer.eval_batch_size", "trainer.device",
                    "trainer.checkpoint_every_steps", "trainer.allow_changes",
                    "trainer.eval_every_epochs", "trainer.threshold_criterion", "run_name",
                    "init_from", "init_parts", "dataset.cache_dir", "packed", "packed_dir",
                    "threads")


class TrainingInterrupted(Exception):
    """The run stopped on a signal at a step boundary; ``checkpoint`` continues it exactly."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None) -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        where = (f"{checkpoint} saved at step {step}" if checkpoint is not None
                 else f"step {step} (checkpoints are written by the main process)")
        super().__init__(f"stopped by {signal_name} at {where}")


class DivergenceError(FloatingPointError):
    """A loss term became NaN or ±inf; the checkpoints on disk predate it."""


class StopRequest:
    """While active, SIGTERM, SIGUSR1 and SIGINT only record that a stop was asked for; the
    loop stops at the next step boundary. A second SIGINT raises ``KeyboardInterrupt`` at once
    (for a run stuck in a step). Signal handlers can only be set from the main thread: in
    another thread this does nothing and the signals keep their usual meaning."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1")
                    if hasattr(signal, name))

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if signum == signal.SIGINT:
            log.warning("Ctrl-C: stopping after this step and saving last.pt (press again to "
                        "stop at once, without saving)")

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class NonFiniteWatch:
    """Which loss terms became non-finite, and at which step first.

    ``eager`` (one CPU process): every step's terms are read on the host at once. Otherwise
    (CUDA, torchrun) the finiteness of each term is folded into flags kept on the device, at
    the cost of a few tiny kernels and no host synchronisation; :meth:`check` reads them, and
    the trainer calls it only where it reads the device anyway: at logged steps, before every
    checkpoint write and at the end of each epoch. Under torchrun the first bad step of all
    processes is combined there (one small all-reduce), so every process stops at the same
    step; a NaN on one rank reaches every rank's weights through the gradient all-reduce, and
    no checkpoint is written before the check.
    """

    def __init__(self, *, eager: bool, distributed: bool = False) -> None:
        self.eager = eager
        self.distributed = distributed
        self.names: list[str] = []
        self._bad: torch.Tensor | None = None     # (T,) int: term t was ever non-finite
        self._first: torch.Tensor | None = None   # (1,) int64: first bad step, 0 while none

    def finite(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """(T,) bool, on the losses' device: whether each term is finite."""
        return torch.stack([torch.isfinite(v.detach()).all() for v in losses.values()])

    def observe(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Record the terms of ``step`` (1-based); eager: raise at once if one is non-finite."""
        bad = (~self.finite(losses)).to(torch.int64)
        if self._bad is None or list(losses) != self.names:
            self.names = list(losses)
            self._bad = torch.zeros_like(bad)
            self._first = torch.zeros(1, dtype=torch.int64, device=bad.device)
        newly = (bad.amax() > 0) & (self._first == 0)
        self._first = torch.where(newly, torch.full_like(self._first, step), self._first)
        self._bad = torch.maximum(self._bad, bad)
        if self.eager:
            self.check()

    def check(self) -> None:
        """Raise :class:`DivergenceError` if any term observed so far (on any process) was
        non-finite."""
        if self._first is None:
            return
        first = self._first
        if self.distributed:
            # the earliest bad step over processes (0, none, must not win the minimum); the
            # terms stay this process's own: methods may log other terms on other processes
            never = torch.iinfo(torch.int64).max
            first = torch.where(first == 0, torch.full_like(first, never), first)
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
            first = torch.where(first == never, torch.zeros_like(first), first)
        if int(first) > 0:
            self._raise(self.names, [bool(b) for b in self._bad.tolist()], int(first))

    @staticmethod
    def _raise(names: list[str], bad: list[bool], step: int) -> None:
        terms = [n for n, b in zip(names, bad) if b]
        # name the culprits; the total is non-finite because of them
        terms = [n for n in terms if n != "loss"] or terms or ["(of another process)"]
        raise DivergenceError(
            f"loss term(s) {', '.join(terms)} became non-finite (NaN or inf), first at step "
            f"{step}; the checkpoints on disk hold the last finite weights. Lower the learning rate "
            "(optim.optimizer.lr), set trainer.grad_clip_norm, or set "
            "trainer.skip_nonfinite=true to skip such steps.")


def under(key: str, prefixes: list[str] | tuple[str, ...]) -> bool:
    """Whether dotted ``key`` is one of ``prefixes`` or lies under one (``optim`` covers
    ``optim.optimizer.lr``)."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def resume_differences(saved: dict[str, Any] | None,
                       current: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """Settings that differ between a checkpoint's resolved config and this run's, among those
    that change what is trained (every key but :data:`RESUME_FREE_KEYS`), as
    ``{dotted key: (saved, current)}``. Keys the checkpoint's config does not have (options
    added to the code since) are not differences: a new option comes with a default that
    keeps the earlier behaviour."""
    if saved is None or current is None:
        return {}
    old, new = flatten(saved), flatten(current)
    return {k: (old.get(k), new.get(k)) for k in sorted(old)
            if old.get(k) != new.get(k) and not under(k, RESUME_FREE_KEYS)}


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
    """Fits a :class:`~affectlab.methods.base.Method` on :class:`~affectlab.data.contract.FaceData`.

    Args:
        max_epochs: epochs over the labelled training split (≥ 1).
        max_steps: optional cap on optimizer steps (≥ 1); overrides ``max_epochs`` when set.
        batch_size: labelled images per step (per process under torchrun).
        unlabeled_batch_size: unlabelled images per step (default: ``batch_size``).
        eval_batch_size: images per evaluation batch (default: 2 × ``batch_size``).
        num_workers: DataLoader worker processes; None (default): 0 on the CPU (the cores
            compute the step; packed images cost nothing to read), on CUDA this process's
            share of the CPUs, at most 8, with pinned memory and persistent workers.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
        grad_clip_norm: clip the global gradient norm to this value (None: no clipping).
        eval_every_epochs: validate every this many epochs (and after the last).
        monitor: validation metric that selects ``best.pt``, e.g. ``val/au/f1_mean``.
        monitor_mode: ``max`` or ``min``.
        resume: path to a ``last.pt`` to continue from, or None.
        allow_changes: config keys (or prefixes, e.g. ``optim``) that may differ from the
            resumed checkpoint's; any other difference in what is trained refuses the resume.
        log_every_steps: how often training losses go to TensorBoard and ``metrics.jsonl``
            (the first and the last step are always logged).
        checkpoint_every_steps: also save ``last.pt`` every this many steps (None: at
            validations only), bounding what a SIGKILL can lose.
        skip_nonfinite: skip steps whose loss is NaN/inf (counted) instead of stopping; costs
            one host synchronisation per step on CUDA.
        progress_bar: show a tqdm bar (epoch, step, loss, images/s).
        channels_last: convolution weights and image batches in NHWC order, the layout
            tensor cores and oneDNN's CPU convolutions read fastest (the same computation,
            other float rounding).
        compile: ``torch.compile`` the training step's forward (the first steps compile).
        deterministic: CUDA kernels that give the same bits on every run
            (``torch.use_deterministic_algorithms``), at some speed; otherwise cuDNN picks
            the fastest convolution algorithms (``cudnn.benchmark``).
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
        num_workers: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        grad_clip_norm: float | None = None,
        eval_every_epochs: int = 1,
        monitor: str = "val/score",
        monitor_mode: str = "max",
        resume: str | None = None,
        allow_changes: list[str] | None = None,
        log_every_steps: int = 10,
        checkpoint_every_steps: int | None = None,
        skip_nonfinite: bool = False,
        progress_bar: bool = True,
        channels_last: bool = True,
        compile: bool = False,
        deterministic: bool = False,
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
        for key, value, low, meaning in (
                ("max_steps", max_steps, 1, "optimizer steps; null trains max_epochs epochs"),
                ("batch_size", batch_size, 1, "labelled images per step and process"),
                ("unlabeled_batch_size", unlabeled_batch_size, 1,
                 "unlabelled images per step; null: batch_size"),
                ("eval_batch_size", eval_batch_size, 1,
                 "images per evaluation batch; null: 2 × batch_size"),
                ("num_workers", num_workers, 0, "loader processes; 0 loads in this process"),
                ("eval_every_epochs", eval_every_epochs, 1, "epochs between validations"),
                ("log_every_steps", log_every_steps, 1, "steps between logged losses"),
                ("checkpoint_every_steps", checkpoint_every_steps, 1,
                 "steps between saves of last.pt; null: at validations only")):
            check_range(f"trainer.{key}", value, low, meaning)
        if max_steps is None:
            check_range("trainer.max_epochs", max_epochs, 1,
                        "epochs over the training split, or set trainer.max_steps")
        if grad_clip_norm is not None and not grad_clip_norm > 0:
            raise ValueError(f"trainer.grad_clip_norm={grad_clip_norm}: must be > 0 (the largest "
                             "global gradient norm), or null for no clipping")
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.unlabeled_batch_size = unlabeled_batch_size or batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.grad_clip_norm = grad_clip_norm
        self.eval_every_epochs = eval_every_epochs
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.resume = resume
        self.allow_changes = list(allow_changes or [])
        self.log_every_steps = log_every_steps
        self.checkpoint_every_steps = checkpoint_every_steps
        self.skip_nonfinite = skip_nonfinite
        self.progress_bar = progress_bar
        self.seed = seed
        self.optimizer_factory = optimizer
        self.schedule = scheduler or Constant()
        self.sampler_factory = sampler or uniform_epochs
        self.threshold_criterion = threshold_criterion
        self._data: FaceData | None = None     # the data of the fit in progress
        self._eval_loaders: dict[int, DataLoader] = {}    # per split evaluated, by id
        self._resume_checkpoint: dict[str, Any] | None = None
        self.resume_changes: dict[str, tuple[Any, Any]] = {}   # allowed, applied differences
        self.skipped_steps = 0

        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.device = resolve_device(device)
        cuda = self.device.type == "cuda"
        if precision == "auto":
            precision = "bf16" if cuda else "fp32"
        self.precision = precision
        self.num_workers = default_workers(self.world_size) if num_workers is None and cuda \
            else (num_workers or 0)
        self.channels_last = channels_last
        self.compile = compile
        self.deterministic = deterministic
        if cuda:
            torch.backends.cudnn.benchmark = not deterministic
        if deterministic:
            # cuBLAS needs this workspace setting for reproducible matrix products
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)

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
        position set before each epoch is what the workers load. The loader draws its worker
        seeds from a generator of its own: starting an epoch's iteration must not move the
        global RNG, or a run resumed mid-epoch would differ from one that never stopped."""
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=persistent and self.num_workers > 0,
                          drop_last=False, generator=torch.Generator().manual_seed(self.seed))

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _prepare(self, batch: dict[str, torch.Tensor], data: FaceData, train: bool,
                 views: int = 1) -> dict[str, torch.Tensor]:
        """Move to the device and apply the data's own transform (augmentation, normalisation,
        ``views`` copies; :class:`~affectlab.data.transforms.InputTransform`); image
        batches in channels-last order when ``channels_last``."""
        batch = data.transform(self._to_device(batch), train=train, views=views)
        if self.channels_last:
            for key, value in batch.items():
                if torch.is_tensor(value) and value.dim() == 4 and value.is_floating_point():
                    batch[key] = value.contiguous(memory_format=torch.channels_last)
        return batch

    def place(self, method: Method) -> torch.nn.Module:
        """Move ``method`` to the device (channels-last weights when ``channels_last``) and
        return what the training step calls: the method, wrapped in DistributedDataParallel
        under torchrun and compiled when ``compile``."""
        method.to(self.device)
        if self.channels_last:
            method.to(memory_format=torch.channels_last)     # 4-D (convolution) weights only
        model: torch.nn.Module = method
        if self.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=method.has_idle_parameters)
        return torch.compile(model) if self.compile else model

    def _main_says(self, flag: bool) -> bool:
        """The main process's ``flag``, on every process (what it sees of its own files)."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def _better(self, value: float, best: float | None) -> bool:
        if best is None or math.isnan(best):
            return not math.isnan(value)
        return value > best if self.monitor_mode == "max" else value < best

    # --------------------------------------------------------------- evaluation
    @torch.inference_mode()
    def predict_split(self, method: Method, data: FaceData,
                      dataset: FaceImageDataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Stacked predictions and targets over a whole split (see :func:`predict_split`).

        Under torchrun every process predicts its shard (rows rank, rank + W, ...) and the
        shards are gathered, so each process returns the whole split in row order."""
        loader = self._eval_loaders.get(id(dataset))
        if loader is None or loader.dataset is not dataset:
            rows = (None if self.world_size == 1
                    else list(range(self.rank, len(dataset), self.world_size)))
            # kept (with its workers) for the next evaluation of the split
            loader = self._loader(dataset, rows, self.eval_batch_size, persistent=True)
            self._eval_loaders[id(dataset)] = loader
        outputs, targets = predict_split(method, loader,
                                         lambda b: self._prepare(b, data, train=False),
                                         self._autocast)
        if self.world_size > 1:
            outputs, targets = gather_shards((outputs, targets), len(dataset), self.world_size)
        return outputs, targets

    def evaluate(self, method: Method, data: FaceData, dataset: FaceImageDataset,
                 thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
        """Metrics of every task the method predicts, on one split (see :mod:`affectlab.metrics`)."""
        outputs, targets = self.predict_split(method, data, dataset)
        names = {**data.label_names, **method.label_names}
        return evaluate_tasks(outputs, targets, names, thresholds)

    # -------------------------------------------------------------- checkpoints
    def _checkpoint(self, method: Method, optimizer: torch.optim.Optimizer, scheduler: Any,
                    position: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
        """Everything a resume needs, taken between two steps (so it continues exactly)."""
        transform = self._data.transform if self._data is not None else None
        return {
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "augment": transform.state_dict() if transform is not None else None,
            "config": config,
            "method_class": class_path(method),
            "label_names": method.label_names,
            "thresholds": method.thresholds,
            **position,
        }

    def check_resume(self, config: dict[str, Any] | None) -> dict[str, Any] | None:
        """Read ``trainer.resume`` and compare its config with ``config`` (this run's resolved
        config): differences in what is trained are refused with their list unless
        ``allow_changes`` names them. Called before the run writes anything; returns the
        checkpoint (kept for :meth:`fit`), or None when not resuming."""
        if not self.resume:
            return None
        if self._resume_checkpoint is None:
            self._resume_checkpoint = load_checkpoint(self.resume)
        differences = resume_differences(self._resume_checkpoint.get("config"), config)
        refused = {k: v for k, v in differences.items() if not under(k, self.allow_changes)}
        if refused:
            listed = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in refused.items())
            raise CheckpointError(
                f"trainer.resume={self.resume} was trained with other settings: {listed}. A "
                "resume continues the same run: use the checkpoint's settings, or name the "
                f"keys to change on purpose with trainer.allow_changes=[{','.join(refused)}] "
                "(they are then applied from this step on and recorded in metrics.json).")
        self.resume_changes = differences
        return self._resume_checkpoint

    def _restore(self, method: Method, optimizer: torch.optim.Optimizer, scheduler: Any,
                 position: dict[str, Any], ckpt_dir: Path,
                 config: dict[str, Any] | None) -> dict[str, Any]:
        """Load ``trainer.resume`` into method, optimizer, schedule, augmentation and RNGs.

        The resumed run writes into its own run directory; the interrupted run's ``best.pt``
        is copied there so that best-checkpoint selection continues where it stopped. Without
        it (deleted, or never written) selection starts anew from here, with a warning.
        Allowed changes of the optimizer or schedule (``allow_changes``) take effect now.
        """
        checkpoint = self.check_resume(config)
        fresh_groups = [{k: v for k, v in g.items() if k != "params"}
                        for g in optimizer.param_groups]
        load_method_state(method, checkpoint, self.resume)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if self.resume_changes:
            self._apply_changes(optimizer, scheduler, fresh_groups)
        self._data.transform.load_state_dict(checkpoint.get("augment"))
        set_rng_state(checkpoint["rng"])
        source_dir = Path(self.resume).parent
        remove_stray_temporaries(source_dir)
        restored = {k: checkpoint[k] for k in position}
        best_source = source_dir / "best.pt"
        if self.is_main and best_source.is_file():
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(best_source, ckpt_dir / "best.pt")
        elif restored["best_epoch"] is not None:
            log.warning("%s names epoch %s as the best so far, but %s is gone: best-checkpoint "
                        "selection starts anew from this step", self.resume,
                        restored["best_epoch"], best_source)
            restored.update(best_value=None, best_epoch=None)
        log.info("resumed from %s at epoch %d, step %d", self.resume, checkpoint["epoch"],
                 checkpoint["global_step"])
        return restored

    def _apply_changes(self, optimizer: torch.optim.Optimizer, scheduler: Any,
                       fresh_groups: list[dict[str, Any]]) -> None:
        """Deliberate changes on resume, applied for real: the optimizer's hyperparameters
        (learning rate, weight decay, momentum, ...) come from this run's config, and the
        schedule's rate at the resumed step is recomputed from the new base rates and the new
        schedule (a changed ``max_steps`` changes its length)."""
        for group, fresh in zip(optimizer.param_groups, fresh_groups):
            group.update({k: v for k, v in fresh.items() if k not in ("lr", "initial_lr")})
            group["initial_lr"] = fresh["initial_lr"]
        scheduler.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs,
                                       scheduler.lr_lambdas):
            group["lr"] = base * factor(scheduler.last_epoch)
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        log.warning("resuming with changed settings (trainer.allow_changes): %s", "; ".join(
            f"{k}: {old!r} → {new!r}" for k, (old, new) in self.resume_changes.items()))

    def _step(self, model: torch.nn.Module, method: Method, batch: dict[str, Any],
              optimizer: torch.optim.Optimizer, scheduler: Any, step: int,
              watch: NonFiniteWatch) -> dict[str, torch.Tensor]:
        """One optimizer step: forward (autocast), backward, clip, step, schedule, method hook.

        With ``skip_nonfinite`` a step whose loss terms are not all finite (on any process)
        updates no weights but still takes its batch and its place in the schedule."""
        with self._autocast():
            losses = model(batch)
        if self.skip_nonfinite:
            finite = watch.finite(losses).all().to(torch.int32)
            if self.world_size > 1:
                # every process skips the same steps; agreed before the backward, whose
                # gradient all-reduce must not interleave with this one
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if self.skip_nonfinite and not bool(finite):
            self.skipped_steps += 1
            log.warning("step %d: non-finite loss (%s), step skipped (%d so far)", step + 1,
                        ", ".join(f"{k}={float(v.detach()):.3g}" for k, v in losses.items()),
                        self.skipped_steps)
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            return losses
        if not self.skip_nonfinite:
            watch.observe(losses, step + 1)
        if self.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(method.parameters(), self.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        method.after_optimizer_step(step)
        return losses

    def _save_last(self, method: Method, optimizer: torch.optim.Optimizer, scheduler: Any,
                   position: dict[str, Any], config: dict[str, Any] | None, ckpt_dir: Path,
                   watch: NonFiniteWatch) -> Path:
        """``last.pt`` at a step boundary, after checking that no loss went non-finite since
        the last check (a checkpoint never holds diverged weights)."""
        watch.check()
        path = ckpt_dir / "last.pt"
        if self.is_main:
            atomic_torch_save(self._checkpoint(method, optimizer, scheduler, position, config),
                              path)
        return path

    def _stop_requested(self, stop: StopRequest, step: int, boundary: bool) -> bool:
        """Whether a signal asked to stop; under torchrun all processes agree (the flags are
        combined every ``log_every_steps`` steps and at epoch ends, so they stop together)."""
        if self.world_size == 1:
            return stop.signum is not None
        if not boundary and step % self.log_every_steps:
            return False
        flag = torch.tensor([stop.signum or 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and stop.signum is None:
            stop.signum = int(flag.item())
        return bool(flag.item())

    # --------------------------------------------------------------------- fit
    def fit(self, method: Method, data: FaceData, run_dir: str | Path,
            config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train, validate every ``eval_every_epochs`` epochs, keep the best checkpoint, and
        test it.

        Returns ``{"test": task metrics, "best_epoch", "best_value", "monitor", "steps",
        "epochs", "throughput_images_per_s", "train_time_s", "skipped_nonfinite_steps",
        "resume_changes"}``. Raises :class:`TrainingInterrupted` (after saving ``last.pt``)
        on SIGTERM, SIGUSR1 or Ctrl-C, :class:`DivergenceError` on a non-finite loss.
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
        warn_labels_without_positives(data, method.label_names)
        model = self.place(method)

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
        # said every time: the schedule follows the length, so a shorter run is another run
        log.info("training %d steps (%d epoch(s) of %d steps%s); the learning-rate schedule "
                 "spans these %d steps", total_steps, num_epochs, steps_per_epoch,
                 ", capped by trainer.max_steps" if self.max_steps else "", total_steps)

        optimizer = self.optimizer_factory(method.param_groups())
        scheduler = self.schedule.build(optimizer, steps_per_epoch=steps_per_epoch,
                                        total_steps=total_steps)

        position = {"epoch": 0, "batch_in_epoch": 0, "global_step": 0, "best_value": None,
                    "best_epoch": None, "images_seen": 0, "train_time_s": 0.0}
        if self.resume:
            position = self._restore(method, optimizer, scheduler, position, ckpt_dir, config)
        logger = RunLogger(run_dir if self.is_main else None)
        if self.is_main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        # eager on the CPU (reading a value there costs nothing); on CUDA, and under torchrun
        # (where the processes must agree), read where the loop reads or syncs anyway
        watch = NonFiniteWatch(eager=self.device.type != "cuda" and self.world_size == 1,
                               distributed=self.world_size > 1)

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
        first_step = step + 1
        save = functools.partial(self._save_last, method, optimizer, scheduler,
                                 config=config, ckpt_dir=ckpt_dir, watch=watch)
        try:
            with StopRequest() as stop:
                for epoch in range(position["epoch"], num_epochs):
                    start_batch = position["batch_in_epoch"] if epoch == position["epoch"] else 0
                    sampler.set_position(epoch, start_batch)
                    progress = self._progress(loader, epoch, num_epochs)
                    epoch_start = time.perf_counter()
                    images_in_epoch = 0

                    def so_far() -> dict[str, Any]:
                        """The position with this epoch's partial time and images counted."""
                        return {**position,
                                "train_time_s": position["train_time_s"]
                                + time.perf_counter() - epoch_start,
                                "images_seen": position["images_seen"] + images_in_epoch}

                    for batch_index, batch in enumerate(progress, start=start_batch):
                        if step >= total_steps:
                            break
                        views = method.augmented_views
                        batch = self._prepare(batch, data, train=True, views=views)
                        if unlabeled_iter is not None:
                            batch["unlabeled"] = self._prepare(next(unlabeled_iter), data,
                                                               train=True, views=views)
                        losses = self._step(model, method, batch, optimizer, scheduler, step,
                                            watch)
                        step += 1
                        # samples (faces) this step, whatever inputs they carry
                        n_images = len(batch["index"]) + (
                            len(batch["unlabeled"]["index"]) if "unlabeled" in batch else 0)
                        images_in_epoch += n_images * self.world_size
                        position.update(global_step=step, batch_in_epoch=batch_index + 1)
                        # Reading loss values syncs a GPU, so it happens only every
                        # log_every_steps (and at the first and the last step).
                        if (step % self.log_every_steps == 0 or step == first_step
                                or step == total_steps):
                            watch.check()
                            self._log_step(losses, optimizer, logger, progress, step, so_far())
                        if self.checkpoint_every_steps and step % self.checkpoint_every_steps == 0:
                            save(so_far())
                        if step < total_steps and self._stop_requested(stop, step, False):
                            raise TrainingInterrupted(stop.name, step, save(so_far()))
                    position["train_time_s"] += time.perf_counter() - epoch_start
                    position["images_seen"] += images_in_epoch
                    position.update(epoch=epoch + 1, batch_in_epoch=0)
                    watch.check()    # before validation writes any checkpoint
                    last_epoch = epoch + 1 == num_epochs or step >= total_steps
                    if (epoch + 1) % self.eval_every_epochs == 0 or last_epoch:
                        self._validate(method, data, optimizer, scheduler, position, config,
                                       ckpt_dir, logger, epoch)
                    elif self.checkpoint_every_steps:
                        save(position)
                    # asked (and agreed under torchrun) before the processes wait for the
                    # main one's validation
                    stopping = self._stop_requested(stop, step, True)
                    if self.world_size > 1:
                        dist.barrier()
                    if stopping:
                        raise TrainingInterrupted(stop.name, step, save(position))
                    if step >= total_steps:
                        break

            result: dict[str, Any] = {
                "monitor": self.monitor, "best_value": position["best_value"],
                "best_epoch": position["best_epoch"], "steps": step, "epochs": position["epoch"],
                "train_time_s": round(position["train_time_s"], 3),
                "throughput_images_per_s": round(
                    position["images_seen"] / max(position["train_time_s"], 1e-9), 1),
                "sampler": sampler.summary(), "skipped_nonfinite_steps": self.skipped_steps,
                "resume_changes": {k: list(v) for k, v in self.resume_changes.items()},
            }
            if self._main_says(not (ckpt_dir / "best.pt").is_file()):
                # a resume whose best.pt was gone, at its very end: the last weights are
                # all there is to select from
                self._validate(method, data, optimizer, scheduler, position, config,
                               ckpt_dir, logger, position["epoch"] - 1)
            self._test(method, data, ckpt_dir / "best.pt", result, logger, step)
        finally:
            logger.close()
        return result

    def _log_step(self, losses: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                  logger: "RunLogger", progress: Any, step: int, position: dict[str, Any]) -> None:
        scalars = {f"train/{k}": float(v.detach()) for k, v in losses.items()}
        scalars["train/lr"] = optimizer.param_groups[0]["lr"]
        logger.record(scalars, step)
        if hasattr(progress, "set_postfix"):
            rate = position["images_seen"] / max(position["train_time_s"], 1e-9)
            progress.set_postfix(step=step, loss=f"{scalars['train/loss']:.4f}",
                                 img_s=f"{rate:.0f}")

    def _test(self, method: Method, data: FaceData, best_path: Path, result: dict[str, Any],
              logger: "RunLogger", step: int) -> None:
        """Load the best checkpoint, search thresholds on validation, test. Under torchrun
        the main process loads it and sends the weights to the others; every process
        predicts its shard of each split and gets the same gathered predictions, so all find
        the same thresholds and metrics; the main one writes."""
        best = load_checkpoint(best_path) if self.is_main else None
        if best is not None:
            method.load_state_dict(best["method"])
        if self.world_size > 1:
            for tensor in method.state_dict().values():    # parameters and buffers, in place
                dist.broadcast(tensor, src=0)
        if self.threshold_criterion != "none":
            outputs, targets = self.predict_split(method, data, data.val)
            method.thresholds = search_thresholds(outputs, targets, self.threshold_criterion)
            if method.thresholds and best is not None:
                best["thresholds"] = method.thresholds
                atomic_torch_save(best, best_path)
                rounded = {t: [round(v, 2) for v in thr] for t, thr in method.thresholds.items()}
                log.info("per-label thresholds (%s on validation): %s", self.threshold_criterion,
                         rounded)
        result["test"] = self.evaluate(method, data, data.test, method.thresholds)
        result["score"] = overall_score(result["test"])
        logger.record({**flatten_metrics(result["test"], "test"), "test/score": result["score"]},
                      step)

    def _validate(self, method: Method, data: FaceData, optimizer: torch.optim.Optimizer,
                  scheduler: Any, position: dict[str, Any], config: dict[str, Any] | None,
                  ckpt_dir: Path, logger: RunLogger, epoch: int) -> None:
        """Validate, write ``best.pt`` when the monitored value improved, then ``last.pt``.

        Order matters: ``best.pt`` first, so a ``last.pt`` never names a best epoch whose
        checkpoint was not yet written (an interrupt between the two leaves a ``last.pt`` one
        validation older, which replays to the same point). Under torchrun every process
        predicts its shard; the main one selects and writes."""
        task_metrics = self.evaluate(method, data, data.val)
        if not self.is_main:
            return
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


def default_workers(world_size: int) -> int:
    """Loader processes per training process on CUDA, at most 8, at least 1: its share of the
    CPUs less one for itself — under torchrun the node's CPUs over its processes, otherwise
    the threads this job was given (``affectlab.threads``: parallel jobs share the CPUs)."""
    if world_size > 1:
        share = usable_cpus() // max(int(os.environ.get("LOCAL_WORLD_SIZE", world_size)), 1)
    else:
        share = torch.get_num_threads()
    return max(1, min(8, share - 1))


def check_range(key: str, value: int | None, low: int, meaning: str) -> None:
    """One message naming the key, the value and the allowed range for a count option
    (None passes: the option's default applies)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key}={value!r}: must be an integer ≥ {low} ({meaning})")


def warn_labels_without_positives(data: FaceData, label_names: dict[str, list[str]]) -> None:
    """Warn, by name, about multi-label labels (AUs, attributes) the run trains on that have
    no positive example in the training split: their heads can only learn "absent"."""
    table = data.train.table
    for task in MULTILABEL_TASKS:
        values = getattr(table, task, None)
        if task not in label_names or values is None or not values.shape[1]:
            continue
        positives = (values * getattr(table, f"{task}_mask")).sum(0)
        empty = [name for name, count in zip(label_names[task], positives) if count == 0]
        if empty:
            log.warning("%s: %s have no positive example among the %d training faces: they "
                        "train as always absent (select labels with dataset.aus, or check the "
                        "label files)", task, ", ".join(empty), len(table))


@torch.inference_mode()
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
            {k: np.concatenate(v) for k, v in targets.items() if v})  # none: an empty shard


def gather_shards(shards: tuple[dict[str, np.ndarray], ...], num_rows: int,
                  world_size: int) -> tuple[dict[str, np.ndarray], ...]:
    """Every process's strided shard (rows rank, rank + W, ...) of some row-stacked arrays
    gathered into the whole arrays in row order, on every process: ``shards`` is this
    process's tuple of ``{name: (rows, ·) array}``; returns the same tuple over all
    ``num_rows`` rows. Collective (``all_gather_object``: gloo and NCCL)."""
    parts: list[Any] = [None] * world_size
    dist.all_gather_object(parts, shards)
    whole = []
    for position in range(len(shards)):
        merged = {}
        for name, value in parts[0][position].items():   # rank 0 holds row 0: never empty
            full = np.empty((num_rows, *value.shape[1:]), dtype=value.dtype)
            for rank, part in enumerate(parts):
                if rank < num_rows:                       # a rank past the last row has none
                    full[rank::world_size] = part[position][name]
            merged[name] = full
        whole.append(merged)
    return tuple(whole)


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
