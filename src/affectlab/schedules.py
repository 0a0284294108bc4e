"""Learning-rate schedules, stepped once per optimizer step.

Each schedule is configured in ``configs/optim/*.yaml`` and turned into a
``torch.optim.lr_scheduler.LambdaLR`` by :meth:`build` once the trainer knows the number of
steps per epoch and in total.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class Constant:
    """lr(t) = lr₀ (after an optional linear warm-up of ``warmup_epochs``)."""

    def __init__(self, *, warmup_epochs: float = 0.0) -> None:
        self.warmup_epochs = warmup_epochs

    def factor(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        warmup = self.warmup_epochs * steps_per_epoch
        return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0

    def build(self, optimizer: Optimizer, *, steps_per_epoch: int, total_steps: int) -> LambdaLR:
        return LambdaLR(optimizer, lambda step: self.factor(step, steps_per_epoch, total_steps))


class StepDecay(Constant):
    """lr(t) = lr₀ · gamma^⌊epoch(t) / step_epochs⌋ — "divide by 10 every N epochs" with
    gamma=0.1."""

    def __init__(self, *, step_epochs: int, gamma: float = 0.1, warmup_epochs: float = 0.0) -> None:
        super().__init__(warmup_epochs=warmup_epochs)
        if step_epochs < 1:
            raise ValueError(f"optim.scheduler.step_epochs must be ≥ 1, got {step_epochs}")
        self.step_epochs = step_epochs
        self.gamma = gamma

    def factor(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        epoch = step // max(steps_per_epoch, 1)
        return super().factor(step, steps_per_epoch, total_steps) * self.gamma ** (
            epoch // self.step_epochs)


class Cosine(Constant):
    """lr(t) = lr₀ · (r + (1 − r) · ½ (1 + cos(π t / T))) with r = ``min_lr_ratio``,
    T = total steps."""

    def __init__(self, *, warmup_epochs: float = 0.0, min_lr_ratio: float = 0.0) -> None:
        super().__init__(warmup_epochs=warmup_epochs)
        self.min_lr_ratio = min_lr_ratio

    def factor(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        progress = min(step / max(total_steps, 1), 1.0)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return super().factor(step, steps_per_epoch, total_steps) * (
            self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)
