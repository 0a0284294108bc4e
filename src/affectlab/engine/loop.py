"""The one training loop every method runs through.

The trainer owns devices, precision, data loading (its sampler comes from the ``sampler``
config group), optimizer and schedule, gradient clipping, evaluation, best-checkpoint
selection, per-label threshold search, checkpoints and resume, logging and, under
``torchrun``, data parallelism. A method only turns batches into loss terms and predictions
(:mod:`affectlab.methods.base`); the data owns its inputs, their transforms
(``FaceData.transform``) and which keys are targets (``FaceData.target_keys``).

Loop unit: epochs over the labelled training split (incomplete last batch dropped); when the
method needs unlabelled data, a batch of the unlabelled pool is drawn alongside every labelled
batch from an endless deterministic stream. ``max_steps``, when set, caps the number of
optimizer steps and overrides ``max_epochs``. :meth:`Trainer.fit` ends with the best weights
loaded and their per-label thresholds searched on validation; :meth:`Trainer.test` is a
separate call.

What the loop leans on lives beside it in :mod:`affectlab.engine`: stop requests and the
non-finite watch (``guards``), resume checks (``resume``), checkpoints (``checkpoint``),
logging (``run_log``), agreement between torchrun processes (``distributed``), prediction
over splits (``evaluation``) and the choice of the best weights and their thresholds
(``selection``). Every resume continues bit-exactly: a checkpoint is only ever
written between two steps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from affectlab.data.contract import FaceData
from affectlab.data.samplers import EpochSampler, InfiniteSampler, uniform_epochs
from affectlab.engine import distributed
from affectlab.engine.checkpoint import (
    input_spec,
    load_checkpoint,
)
from affectlab.engine.evaluation import SplitEvaluator
from affectlab.engine.guards import (
    NonFiniteWatch,
    StopRequest,
    TrainingInterrupted,
    check_can_fit,
    warn_labels_without_positives,
)
from affectlab.engine.resume import check_resume_config
from affectlab.engine.run_log import RunLogger, progress
from affectlab.engine.selection import BestSelection
from affectlab.engine.session import Session, restore
from affectlab.engine.settings import TrainerSettings, default_workers
from affectlab.methods.base import Method
from affectlab.schedules import Constant
from affectlab.utils import atomic_torch_save, resolve_device

log = logging.getLogger("affectlab.trainer")


class Trainer:
    """Fits a :class:`~affectlab.methods.base.Method` on :class:`~affectlab.data.contract.FaceData`.

    Args:
        settings: how to train (:class:`~affectlab.engine.settings.TrainerSettings`, the
            ``trainer`` config group).
        optimizer: factory ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``).
        scheduler: a schedule from :mod:`affectlab.schedules` (default: constant).
        sampler: factory ``(table, batch_size=, seed=, rank=, world_size=) -> EpochSampler``
            of the training split (the ``sampler`` config group; default: uniform epochs).
        seed: seeds data order and augmentation.
    """

    def __init__(self, settings: TrainerSettings, *,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Constant | None = None,
                 sampler: Callable[..., EpochSampler] | None = None, seed: int = 0) -> None:
        self.settings = settings
        self.optimizer_factory = optimizer
        self.schedule = scheduler or Constant()
        self.sampler_factory = sampler or uniform_epochs
        self.seed = seed
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.device = resolve_device(settings.device)
        cuda = self.device.type == "cuda"
        self.precision = settings.precision if settings.precision != "auto" else (
            "bf16" if cuda else "fp32")
        self.num_workers = (default_workers(self.world_size)
                            if settings.num_workers is None and cuda else
                            settings.num_workers or 0)
        self.batch_size = settings.batch_size
        self.unlabeled_batch_size = settings.unlabeled_batch_size or settings.batch_size
        self.eval_batch_size = settings.eval_batch_size or 2 * settings.batch_size
        self.resume = settings.resume
        self.resume_changes: dict[str, tuple[Any, Any]] = {}   # allowed, applied differences
        self.skipped_steps = 0
        self._resume_checkpoint: dict[str, Any] | None = None
        self.evaluation = SplitEvaluator(
            # kept (with its workers) for the next evaluation of the split
            loader=lambda dataset, rows: self.loader(dataset, rows, self.eval_batch_size,
                                                     persistent=True),
            prepare=lambda batch, data: self.prepare_batch(batch, data, train=False),
            autocast=self.autocast, rank=self.rank, world_size=self.world_size)
        self.selection = BestSelection(monitor=settings.monitor, mode=settings.monitor_mode,
                                       threshold_criterion=settings.threshold_criterion,
                                       is_main=self.is_main, world_size=self.world_size)
        if cuda:
            torch.backends.cudnn.benchmark = not settings.deterministic
        if settings.deterministic:
            # cuBLAS needs this workspace setting for reproducible matrix products
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ placing
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loader(self, dataset: Dataset, sampler: Any, batch_size: int,
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

    def prepare_batch(self, batch: dict[str, Any], data: FaceData, train: bool,
                      views: int = 1,
                      strengths: tuple[float, ...] | None = None) -> dict[str, Any]:
        """Move to the device and apply the data's own transform (augmentation, normalisation,
        ``views`` copies, each augmented ``strengths[k]`` times as strongly;
        :class:`~affectlab.data.transforms.InputTransform`); 4-D float inputs (image batches)
        in channels-last order when ``channels_last``."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        batch = data.transform(batch, train=train, views=views, strengths=strengths)
        if self.settings.channels_last:
            for key, value in batch.items():
                if torch.is_tensor(value) and value.dim() == 4 and value.is_floating_point():
                    batch[key] = value.contiguous(memory_format=torch.channels_last)
        return batch

    def place(self, method: Method) -> torch.nn.Module:
        """Move ``method`` to the device (channels-last 4-D weights when ``channels_last``) and
        return what the training step calls: the method, wrapped in DistributedDataParallel
        under torchrun and compiled when ``compile``."""
        method.to(self.device)
        if self.settings.channels_last:
            channels_last_weights(method)
        if self.settings.channels_last_3d:
            channels_last_3d_layout(method)
        model: torch.nn.Module = method
        if self.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=method.has_idle_parameters)
        return torch.compile(model) if self.settings.compile else model

    # --------------------------------------------------------------- evaluation
    def test(self, method: Method, data: FaceData, run_dir: str | Path | None = None,
             step: int = 0) -> dict[str, Any]:
        """Test metrics of ``method`` with its stored thresholds
        (:meth:`~affectlab.engine.evaluation.SplitEvaluator.test`)."""
        return self.evaluation.test(method, data, run_dir, step)

    # ---------------------------------------------------------------------- fit
    def fit(self, method: Method, data: FaceData, run_dir: str | Path,
            config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train, validate every ``eval_every_epochs`` epochs and keep the best checkpoint;
        end with the best weights loaded and their thresholds searched on validation.

        Returns ``{"best_epoch", "best_value", "monitor", "steps", "epochs",
        "throughput_images_per_s", "train_time_s", "sampler", "skipped_nonfinite_steps",
        "resume_changes"}``. Raises :class:`TrainingInterrupted` (after saving ``last.pt``)
        on SIGTERM, SIGUSR1 or Ctrl-C, :class:`DivergenceError` on a non-finite loss.
        """
        ckpt_dir = Path(run_dir) / "checkpoints"
        check_can_fit(method, data, ckpt_dir, self.is_main)
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
        total_steps, num_epochs = self.settings.training_length(steps_per_epoch)
        method.on_fit_start(total_steps=total_steps)
        # said every time: the schedule follows the length, so a shorter run is another run
        log.info("training %d steps (%d epoch(s) of %d steps%s); the learning-rate schedule "
                 "spans these %d steps", total_steps, num_epochs, steps_per_epoch,
                 ", capped by trainer.max_steps" if self.settings.max_steps else "", total_steps)

        optimizer = self.optimizer_factory(method.param_groups())
        scheduler = self.schedule.build(optimizer, steps_per_epoch=steps_per_epoch,
                                        total_steps=total_steps)
        position = {"epoch": 0, "batch_in_epoch": 0, "global_step": 0, "best_value": None,
                    "best_epoch": None, "images_seen": 0, "train_time_s": 0.0}
        # eager on the CPU (reading a value there costs nothing); on CUDA, and under torchrun
        # (where the processes must agree), read where the loop reads or syncs anyway
        watch = NonFiniteWatch(eager=self.device.type != "cuda" and self.world_size == 1,
                               distributed=self.world_size > 1)
        run = Session(method, data, optimizer, scheduler, ckpt_dir, config,
                      RunLogger(Path(run_dir) if self.is_main else None), watch, position,
                      input_spec(data, config))
        if self.resume:
            run.position = restore(run, self.check_resume(run.config), self.resume,
                                   self.resume_changes, is_main=self.is_main)
        if self.is_main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)

        unlabeled: Iterator[dict[str, torch.Tensor]] | None = None
        if method.needs_unlabeled:
            unlabeled_sampler = InfiniteSampler(
                len(data.unlabeled), seed=self.seed,
                start=run.position["global_step"] * self.unlabeled_batch_size,
                rank=self.rank, world_size=self.world_size)
            unlabeled = iter(self.loader(data.unlabeled, unlabeled_sampler,
                                         self.unlabeled_batch_size))
        loader = self.loader(data.train, sampler, self.batch_size, persistent=True)
        method.train()
        steps = range(run.position["global_step"] + 1, total_steps + 1)   # this call's steps
        try:
            with StopRequest() as stop:
                for epoch in range(run.position["epoch"], num_epochs):
                    start = run.position["batch_in_epoch"] if epoch == run.position["epoch"] else 0
                    sampler.set_position(epoch, start)
                    batches = progress(loader, f"epoch {epoch + 1}/{num_epochs}",
                                       self.settings.progress_bar and self.is_main)
                    self._train_epoch(run, model, batches, unlabeled, start, steps, stop)
                    position = run.position
                    position.update(epoch=epoch + 1, batch_in_epoch=0)
                    watch.check()    # before validation writes any checkpoint
                    last_epoch = epoch + 1 == num_epochs or position["global_step"] >= total_steps
                    if (epoch + 1) % self.settings.eval_every_epochs == 0 or last_epoch:
                        self._validate(run, epoch)
                    elif self.settings.checkpoint_every_steps:
                        self._save_last(run, position)
                    # asked (and agreed under torchrun) before the processes wait for the
                    # main one's validation
                    stopping = self._stop_requested(stop, position["global_step"], True)
                    if self.world_size > 1:
                        dist.barrier()
                    if stopping:
                        raise TrainingInterrupted(stop.name, position["global_step"],
                                                  self._save_last(run, position))
                    if position["global_step"] >= total_steps:
                        break
            if distributed.main_says(not (ckpt_dir / "best.pt").is_file(), self.device,
                                     self.world_size):
                # a resume whose best.pt was gone, at its very end: the last weights are
                # all there is to select from
                self._validate(run, run.position["epoch"] - 1)
            self.selection.use_best(
                run, lambda: self.evaluation.predict(run.method, run.data, run.data.val))
        finally:
            run.logger.close()
        position = run.position
        return {
            "monitor": self.settings.monitor, "best_value": position["best_value"],
            "best_epoch": position["best_epoch"], "steps": position["global_step"],
            "epochs": position["epoch"], "train_time_s": round(position["train_time_s"], 3),
            "throughput_images_per_s": round(
                position["images_seen"] / max(position["train_time_s"], 1e-9), 1),
            "sampler": sampler.summary(), "skipped_nonfinite_steps": self.skipped_steps,
            "resume_changes": {k: list(v) for k, v in self.resume_changes.items()},
        }

    def _train_epoch(self, run: Session, model: torch.nn.Module, batches: Any,
                     unlabeled: Iterator[dict[str, torch.Tensor]] | None, start_batch: int,
                     steps: range, stop: StopRequest) -> None:
        """The steps of one epoch from ``start_batch`` on: prepare, step, log, checkpoint,
        stop at a step boundary when asked. ``steps``: the 1-based steps this fit takes (its
        first and last are always logged)."""
        position, views = run.position, run.method.augmented_views
        first_step, total_steps = steps.start, steps.stop - 1
        epoch_start, images_in_epoch = time.perf_counter(), 0

        def so_far() -> dict[str, Any]:
            """The position with this epoch's partial time and images counted."""
            return {**position, "train_time_s": position["train_time_s"]
                    + time.perf_counter() - epoch_start,
                    "images_seen": position["images_seen"] + images_in_epoch}

        for batch_index, batch in enumerate(batches, start=start_batch):
            step = position["global_step"]
            if step >= total_steps:
                break
            batch = self.prepare_batch(batch, run.data, train=True, views=views)
            if unlabeled is not None:
                batch["unlabeled"] = self.prepare_batch(
                    next(unlabeled), run.data, train=True, views=views,
                    strengths=run.method.pool_view_strengths)
            losses = self.step(model, run.method, batch, run.optimizer, run.scheduler, step,
                               run.watch)
            step += 1
            # samples (faces) this step, whatever inputs they carry
            n_samples = len(batch["index"]) + (
                len(batch["unlabeled"]["index"]) if "unlabeled" in batch else 0)
            images_in_epoch += n_samples * self.world_size
            position.update(global_step=step, batch_in_epoch=batch_index + 1)
            # Reading loss values syncs a GPU, so it happens only every log_every_steps (and
            # at the first and the last step).
            if (step % self.settings.log_every_steps == 0 or step == first_step
                    or step == total_steps):
                run.watch.check()
                run.logger.log_step(losses, run.optimizer.param_groups[0]["lr"], batches, step,
                                    so_far())
            every = self.settings.checkpoint_every_steps
            if every and step % every == 0:
                self._save_last(run, so_far())
            if step < total_steps and self._stop_requested(stop, step, False):
                raise TrainingInterrupted(stop.name, step, self._save_last(run, so_far()))
        position["train_time_s"] += time.perf_counter() - epoch_start
        position["images_seen"] += images_in_epoch

    def step(self, model: torch.nn.Module, method: Method, batch: dict[str, Any],
             optimizer: torch.optim.Optimizer, scheduler: Any, step: int,
             watch: NonFiniteWatch) -> dict[str, torch.Tensor]:
        """One optimizer step: forward (autocast), backward, clip, step, schedule, method hook.

        With ``skip_nonfinite`` a step whose loss terms are not all finite (on any process)
        updates no weights but still takes its batch and its place in the schedule."""
        skip_nonfinite = self.settings.skip_nonfinite
        with self.autocast():
            losses = model(batch)
        if skip_nonfinite:
            finite = watch.finite(losses).all().to(torch.int32)
            if self.world_size > 1:
                # every process skips the same steps; agreed before the backward, whose
                # gradient all-reduce must not interleave with this one
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if skip_nonfinite and not bool(finite):
            self.skipped_steps += 1
            log.warning("step %d: non-finite loss (%s), step skipped (%d so far)", step + 1,
                        ", ".join(f"{k}={float(v.detach()):.3g}" for k, v in losses.items()),
                        self.skipped_steps)
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            return losses
        if not skip_nonfinite:
            watch.observe(losses, step + 1)
        if self.settings.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(method.parameters(), self.settings.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        method.after_optimizer_step(step)
        return losses

    # ----------------------------------------------------- validation, selection
    def _validate(self, run: Session, epoch: int) -> None:
        """Validate (every process predicts its shard under torchrun), then let the selection
        write ``best.pt`` when the monitored value improved, and ``last.pt``."""
        self.selection.record(run, epoch,
                              self.evaluation.evaluate(run.method, run.data, run.data.val))

    # -------------------------------------------------------------- checkpoints
    def _save_last(self, run: Session, position: dict[str, Any]) -> Path:
        """``last.pt`` at a step boundary, after checking that no loss went non-finite since
        the last check (a checkpoint never holds diverged weights)."""
        run.watch.check()
        path = run.ckpt_dir / "last.pt"
        if self.is_main:
            atomic_torch_save(run.state(position), path)
        return path

    def check_resume(self, config: dict[str, Any] | None) -> dict[str, Any] | None:
        """Read ``trainer.resume`` and compare its config with ``config`` (this run's resolved
        config): differences in what is trained are refused with their list unless
        ``allow_changes`` names them. Called before the run writes anything; returns the
        checkpoint (kept for :meth:`fit`), or None when not resuming."""
        if not self.resume:
            return None
        if self._resume_checkpoint is None:
            self._resume_checkpoint = load_checkpoint(self.resume)
        self.resume_changes = check_resume_config(
            self.resume, self._resume_checkpoint.get("config"), config,
            self.settings.allow_changes)
        return self._resume_checkpoint

    # -------------------------------------------------------------------- stops
    def _stop_requested(self, stop: StopRequest, step: int, boundary: bool) -> bool:
        """Whether a signal asked to stop. Under torchrun the processes agree (a collective)
        every ``log_every_steps`` steps and at epoch ends, so they stop together."""
        if self.world_size > 1 and not boundary and step % self.settings.log_every_steps:
            return False
        return stop.agreed(self.device, self.world_size)


def _to_channels_last_3d(_: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(memory_format=torch.channels_last_3d), *args[1:])


def channels_last_3d_layout(module: torch.nn.Module) -> None:
    """Every Conv3d of ``module`` in NDHWC order, in place: its weight in
    ``torch.channels_last_3d`` memory format and its input converted to it by a forward pre-hook
    (a no-op after the first layer: such a convolution returns NDHWC output). The same
    computation, other float rounding."""
    for conv in module.modules():
        if isinstance(conv, torch.nn.Conv3d):
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)
            conv.register_forward_pre_hook(_to_channels_last_3d)


def channels_last_weights(module: torch.nn.Module) -> None:
    """4-D parameters and buffers (Conv2d weights) of ``module`` in channels-last order, in
    place; tensors of other ranks (Conv3d's 5-D weights, linear layers) keep their layout —
    PyTorch refuses channels-last on a 5-D tensor."""
    module._apply(lambda t: t.contiguous(memory_format=torch.channels_last)
                  if t.dim() == 4 else t)
