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
logging (``run_log``), agreement between torchrun processes (``distributed``) and prediction
over splits (``evaluation``). Every resume continues bit-exactly: a checkpoint is only ever
written between two steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from affectlab.data.contract import FaceData
from affectlab.data.samplers import EpochSampler, InfiniteSampler, uniform_epochs
from affectlab.engine import distributed
from affectlab.engine.checkpoint import (
    CheckpointError,
    input_spec,
    load_checkpoint,
)
from affectlab.engine.evaluation import predict_split, search_thresholds
from affectlab.engine.guards import (
    NonFiniteWatch,
    StopRequest,
    TrainingInterrupted,
    warn_labels_without_positives,
)
from affectlab.engine.resume import check_resume_config
from affectlab.engine.run_log import RunLogger
from affectlab.engine.session import Session, restore
from affectlab.engine.settings import TrainerSettings, default_workers
from affectlab.methods.base import Method
from affectlab.metrics import evaluate_tasks, flatten_metrics, overall_score
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
        self._eval_loaders: dict[int, DataLoader] = {}    # per split evaluated, by id
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
                      views: int = 1) -> dict[str, Any]:
        """Move to the device and apply the data's own transform (augmentation, normalisation,
        ``views`` copies; :class:`~affectlab.data.transforms.InputTransform`); 4-D float
        inputs (image batches) in channels-last order when ``channels_last``."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        batch = data.transform(batch, train=train, views=views)
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
        model: torch.nn.Module = method
        if self.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=method.has_idle_parameters)
        return torch.compile(model) if self.settings.compile else model

    # --------------------------------------------------------------- evaluation
    def predict_split(self, method: Method, data: FaceData,
                      dataset: Dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Stacked predictions and targets over a whole split
        (:func:`~affectlab.engine.evaluation.predict_split`). Under torchrun every process
        predicts its shard and the shards are gathered, so each returns the whole split."""
        loader = self._eval_loaders.get(id(dataset))
        if loader is None or loader.dataset is not dataset:
            rows = distributed.shard_rows(len(dataset), self.rank, self.world_size)
            # kept (with its workers) for the next evaluation of the split
            loader = self.loader(dataset, rows, self.eval_batch_size, persistent=True)
            self._eval_loaders[id(dataset)] = loader
        outputs, targets = predict_split(method, loader,
                                         lambda b: self.prepare_batch(b, data, train=False),
                                         self.autocast, data.target_keys)
        if self.world_size > 1:
            outputs, targets = distributed.gather_shards((outputs, targets), len(dataset),
                                                         self.world_size)
        return outputs, targets

    def evaluate(self, method: Method, data: FaceData, dataset: Dataset,
                 thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
        """Metrics of every task the method predicts, on one split (:mod:`affectlab.metrics`)."""
        outputs, targets = self.predict_split(method, data, dataset)
        names = {**data.label_names, **method.label_names}
        return evaluate_tasks(outputs, targets, names, thresholds)

    def test(self, method: Method, data: FaceData, run_dir: str | Path | None = None,
             step: int = 0) -> dict[str, Any]:
        """Test metrics of ``method`` (its stored thresholds applied in ``tuned``) on the test
        split; logged at ``step`` into ``run_dir``'s TensorBoard and ``metrics.jsonl`` when
        given. Returns ``{"test": task metrics, "score": their mean criterion}``."""
        metrics = self.evaluate(method, data, data.test, method.thresholds)
        score = overall_score(metrics)
        if run_dir is not None and self.is_main:
            logger = RunLogger(Path(run_dir))
            logger.record({**flatten_metrics(metrics, "test"), "test/score": score}, step)
            logger.close()
        return {"test": metrics, "score": score}

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
        if self.is_main and (ckpt_dir / "last.pt").exists():
            raise CheckpointError(f"{ckpt_dir} already holds a run's checkpoints; refusing to "
                                  "overwrite them. Use a new run directory, or continue that "
                                  f"run with trainer.resume={ckpt_dir / 'last.pt'}.")
        if method.needs_unlabeled and data.unlabeled is None:
            raise ValueError(f"method {type(method).__name__} needs an unlabelled pool, but "
                             f"dataset '{data.name}' has none. Pick a dataset config with an "
                             "unlabelled split.")
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
        max_steps = self.settings.max_steps
        total_steps = max_steps or self.settings.max_epochs * steps_per_epoch
        num_epochs = math.ceil(total_steps / steps_per_epoch)
        # said every time: the schedule follows the length, so a shorter run is another run
        log.info("training %d steps (%d epoch(s) of %d steps%s); the learning-rate schedule "
                 "spans these %d steps", total_steps, num_epochs, steps_per_epoch,
                 ", capped by trainer.max_steps" if max_steps else "", total_steps)

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
                    self._train_epoch(run, model, self._progress(loader, epoch, num_epochs),
                                      unlabeled, start, steps, stop)
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
            self._use_best(run)
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
                batch["unlabeled"] = self.prepare_batch(next(unlabeled), run.data, train=True,
                                                        views=views)
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
        """Validate, write ``best.pt`` when the monitored value improved, then ``last.pt``.

        Order matters: ``best.pt`` first, so a ``last.pt`` never names a best epoch whose
        checkpoint was not yet written (an interrupt between the two leaves a ``last.pt`` one
        validation older, which replays to the same point). Under torchrun every process
        predicts its shard; the main one selects and writes."""
        task_metrics = self.evaluate(run.method, run.data, run.data.val)
        if not self.is_main:
            return
        position, monitor = run.position, self.settings.monitor
        unscored = sorted(set(run.method.label_names) - set(task_metrics))
        if unscored and position["best_epoch"] is None:      # said once, at the first validation
            log.warning("no validation targets for %s (e.g. identities the validation split does "
                        "not share): not in val/score; their test metrics are skipped too%s",
                        unscored, "" if task_metrics else
                        ". Nothing is left to select on: best.pt follows the latest epoch")
        metrics = {**flatten_metrics(task_metrics, "val"), "val/score": overall_score(task_metrics)}
        if monitor not in metrics and task_metrics:
            raise KeyError(f"trainer.monitor={monitor!r} is not among the validation "
                           f"metrics: {sorted(k for k in metrics if k.count('/') <= 2)}")
        value = metrics.get(monitor, math.nan)
        run.logger.record(metrics, position["global_step"])
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
        # without any validation signal (identity pre-training on identity-disjoint splits)
        # the latest weights are the best there is
        if self._better(value, position["best_value"]) or not task_metrics:
            position.update(best_value=value if task_metrics else None, best_epoch=epoch + 1)
            atomic_torch_save(run.state(position), run.ckpt_dir / "best.pt")
        atomic_torch_save(run.state(position), run.ckpt_dir / "last.pt")
        log.info("epoch %d  step %d  %s = %.4f  (best %.4f at epoch %s)", epoch + 1,
                 position["global_step"], monitor, value,
                 math.nan if position["best_value"] is None else position["best_value"],
                 position["best_epoch"])

    def _better(self, value: float, best: float | None) -> bool:
        if best is None or math.isnan(best):
            return not math.isnan(value)
        return value > best if self.settings.monitor_mode == "max" else value < best

    def _use_best(self, run: Session) -> None:
        """Load the best checkpoint's weights and search per-label thresholds for them on
        validation (stored in ``best.pt``). Under torchrun the main process loads it and sends
        the weights to the others; every process predicts its shard of validation and gets
        the same gathered predictions, so all find the same thresholds."""
        best_path = run.ckpt_dir / "best.pt"
        best = load_checkpoint(best_path) if self.is_main else None
        if best is not None:
            run.method.load_state_dict(best["method"])
        if self.world_size > 1:
            distributed.broadcast_module(run.method)
        criterion = self.settings.threshold_criterion
        if criterion == "none":
            return
        outputs, targets = self.predict_split(run.method, run.data, run.data.val)
        run.method.thresholds = search_thresholds(outputs, targets, criterion)
        if run.method.thresholds and best is not None:
            best["thresholds"] = run.method.thresholds
            atomic_torch_save(best, best_path)
            rounded = {t: [round(v, 2) for v in thr] for t, thr in run.method.thresholds.items()}
            log.info("per-label thresholds (%s on validation): %s", criterion, rounded)

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
        """Whether a signal asked to stop; under torchrun all processes agree (the flags are
        combined every ``log_every_steps`` steps and at epoch ends, so they stop together)."""
        if self.world_size == 1:
            return stop.signum is not None
        if not boundary and step % self.settings.log_every_steps:
            return False
        signum = distributed.largest(stop.signum or 0, self.device)
        if signum and stop.signum is None:
            stop.signum = signum
        return bool(signum)

    def _progress(self, loader: DataLoader, epoch: int, num_epochs: int) -> Any:
        if not (self.settings.progress_bar and self.is_main):
            return loader
        from tqdm import tqdm

        return tqdm(loader, desc=f"epoch {epoch + 1}/{num_epochs}", leave=False, dynamic_ncols=True)


def channels_last_weights(module: torch.nn.Module) -> None:
    """4-D parameters and buffers (Conv2d weights) of ``module`` in channels-last order, in
    place; tensors of other ranks (Conv3d's 5-D weights, linear layers) keep their layout —
    PyTorch refuses channels-last on a 5-D tensor."""
    module._apply(lambda t: t.contiguous(memory_format=torch.channels_last)
                  if t.dim() == 4 else t)
