"""The trainer's settings (the ``trainer`` config group), checked when they are made.

Every value is checked at instantiation, before a run claims its directory: a wrong one is one
message naming the key, the value and what is allowed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from affectlab.metrics import THRESHOLD_CRITERIA
from affectlab.threads import usable_cpus


@dataclass(kw_only=True)
class TrainerSettings:
    """How the shared trainer runs (``configs/trainer/default.yaml`` documents each key).

    Attributes:
        max_epochs: epochs over the labelled training split (≥ 1).
        max_steps: optional cap on optimizer steps (≥ 1); overrides ``max_epochs`` when set.
        batch_size: labelled samples per step (per process under torchrun).
        unlabeled_batch_size: unlabelled samples per step (default: ``batch_size``).
        eval_batch_size: samples per evaluation batch (default: 2 × ``batch_size``).
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
        threshold_criterion: after training, per-label thresholds of each multi-label task
            are searched on the validation split for this criterion (``f1``, or ``emotionet``:
            ½ (F1 + accuracy)), stored with the best checkpoint and applied in the test
            metrics' ``tuned`` entries; ``none`` skips the search.
        progress_bar: show a tqdm bar (epoch, step, loss, images/s).
        channels_last: 4-D convolution weights and 4-D input batches in NHWC order, the
            layout tensor cores and oneDNN's CPU convolutions read fastest (the same
            computation, other float rounding); other tensors (Conv3d weights, clips) keep
            their layout.
        channels_last_3d: Conv3d weights and their inputs in NDHWC order
            (``torch.channels_last_3d``; clip networks), off by default: measured 1.21× on
            the CPU for ``model=tsav_small`` (docs/clips.md), not yet on a GPU.
        compile: ``torch.compile`` the training step's forward (the first steps compile).
        deterministic: CUDA kernels that give the same bits on every run
            (``torch.use_deterministic_algorithms``), at some speed; otherwise cuDNN picks
            the fastest convolution algorithms (``cudnn.benchmark``).
    """

    max_epochs: int
    max_steps: int | None = None
    batch_size: int
    unlabeled_batch_size: int | None = None
    eval_batch_size: int | None = None
    num_workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    grad_clip_norm: float | None = None
    eval_every_epochs: int = 1
    monitor: str = "val/score"
    monitor_mode: str = "max"
    resume: str | None = None
    allow_changes: list[str] = field(default_factory=list)
    log_every_steps: int = 10
    checkpoint_every_steps: int | None = None
    skip_nonfinite: bool = False
    threshold_criterion: str = "f1"
    progress_bar: bool = True
    channels_last: bool = True
    channels_last_3d: bool = False
    compile: bool = False
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.monitor_mode not in ("max", "min"):
            raise ValueError(f"trainer.monitor_mode={self.monitor_mode!r}: use max or min")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"trainer.precision={self.precision!r}: use auto, bf16 or fp32")
        if self.threshold_criterion not in (*THRESHOLD_CRITERIA, "none"):
            raise ValueError(f"trainer.threshold_criterion={self.threshold_criterion!r}: use "
                             f"{', '.join(THRESHOLD_CRITERIA)} or none")
        for key, low, meaning in (
                ("max_steps", 1, "optimizer steps; null trains max_epochs epochs"),
                ("batch_size", 1, "labelled images per step and process"),
                ("unlabeled_batch_size", 1, "unlabelled images per step; null: batch_size"),
                ("eval_batch_size", 1, "images per evaluation batch; null: 2 × batch_size"),
                ("num_workers", 0, "loader processes; 0 loads in this process"),
                ("eval_every_epochs", 1, "epochs between validations"),
                ("log_every_steps", 1, "steps between logged losses"),
                ("checkpoint_every_steps", 1,
                 "steps between saves of last.pt; null: at validations only")):
            check_range(f"trainer.{key}", getattr(self, key), low, meaning)
        if self.max_steps is None:
            check_range("trainer.max_epochs", self.max_epochs, 1,
                        "epochs over the training split, or set trainer.max_steps")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"trainer.grad_clip_norm={self.grad_clip_norm}: must be > 0 (the "
                             "largest global gradient norm), or null for no clipping")
        self.allow_changes = list(self.allow_changes or [])

    def training_length(self, steps_per_epoch: int) -> tuple[int, int]:
        """``(total optimizer steps, epochs begun)`` of a fit whose epochs have
        ``steps_per_epoch`` steps: ``max_steps`` when set, else ``max_epochs`` epochs."""
        total_steps = self.max_steps or self.max_epochs * steps_per_epoch
        return total_steps, math.ceil(total_steps / steps_per_epoch)


def check_range(key: str, value: int | None, low: int, meaning: str) -> None:
    """One message naming the key, the value and the allowed range for a count option
    (None passes: the option's default applies)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key}={value!r}: must be an integer ≥ {low} ({meaning})")


def default_workers(world_size: int) -> int:
    """Loader processes per training process on CUDA, at most 8, at least 1: its share of the
    CPUs less one for itself — under torchrun the node's CPUs over its processes, otherwise
    the threads this job was given (``affectlab.threads``: parallel jobs share the CPUs)."""
    if world_size > 1:
        share = usable_cpus() // max(int(os.environ.get("LOCAL_WORLD_SIZE", world_size)), 1)
    else:
        share = torch.get_num_threads()
    return max(1, min(8, share - 1))
