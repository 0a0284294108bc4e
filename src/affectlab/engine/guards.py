"""Nothing lost, nothing silently wrong: stop requests, the non-finite watch and the checks
made before training.

* SIGTERM, SIGUSR1 (what schedulers send before they kill a job) and Ctrl-C ask the loop to stop
  at the next step boundary (:class:`StopRequest`): ``last.pt`` is saved there and
  :class:`TrainingInterrupted` is raised (``python train.py`` then exits with status 3 and
  prints the resume command). A second Ctrl-C stops at once.
* A non-finite loss term stops the run (:class:`DivergenceError`, naming the step and the term)
  before any checkpoint holds its weights (:class:`NonFiniteWatch`).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from affectlab.data.contract import FaceData
from affectlab.engine import distributed
from affectlab.engine.checkpoint import CheckpointError
from affectlab.metrics import MULTILABEL_TASKS

log = logging.getLogger("affectlab.engine")


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

    def agreed(self, device: torch.device, world_size: int) -> bool:
        """Whether a stop was asked for; under torchrun, whether it was on any process (a
        collective: every process calls it at the same step and gets the same answer, and
        one not yet signalled takes the signal of another)."""
        if world_size == 1:
            return self.signum is not None
        signum = distributed.largest(self.signum or 0, device)
        if signum and self.signum is None:
            self.signum = signum
        return bool(signum)

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
            f"{step}; the checkpoints on disk hold the last finite weights. Lower the learning "
            "rate (optim.optimizer.lr), set trainer.grad_clip_norm, or set "
            "trainer.skip_nonfinite=true to skip such steps.")


def check_can_fit(method: Any, data: FaceData, ckpt_dir: Path, is_main: bool) -> None:
    """Refuse, before anything is written, a run directory that already holds a run's
    checkpoints and a method needing an unlabelled pool the data does not have."""
    if is_main and (ckpt_dir / "last.pt").exists():
        raise CheckpointError(f"{ckpt_dir} already holds a run's checkpoints; refusing to "
                              "overwrite them. Use a new run directory, or continue that "
                              f"run with trainer.resume={ckpt_dir / 'last.pt'}.")
    if method.needs_unlabeled and data.unlabeled is None:
        raise ValueError(f"method {type(method).__name__} needs an unlabelled pool, but "
                         f"dataset '{data.name}' has none. Pick a dataset config with an "
                         "unlabelled split (or a pool: pool=<name>)" + (
                             ", or set method.unlabeled=false" if hasattr(method, "unlabeled")
                             else "") + ".")


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
