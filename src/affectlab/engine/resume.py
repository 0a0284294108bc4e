"""Resuming a run exactly, and refusing a resume that would train something else.

A resume whose configuration differs from the checkpoint's in anything that changes what is
trained is refused with the list of differences, unless the keys are named in
``trainer.allow_changes`` (then they are applied — :func:`apply_changes` — and recorded).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from affectlab.config import upgrade_config
from affectlab.engine.checkpoint import CheckpointError
from affectlab.results import flatten

log = logging.getLogger("affectlab.engine")

#: Trainer options that do not change what is trained: they may differ on resume.
RESUME_FREE_KEYS = ("trainer.resume", "trainer.progress_bar", "trainer.num_workers",
                    "trainer.log_every_steps", "trainer.eval_batch_size", "trainer.device",
                    "trainer.checkpoint_every_steps", "trainer.allow_changes",
                    "trainer.eval_every_epochs", "trainer.threshold_criterion", "run_name",
                    "init_from", "init_parts", "dataset.cache_dir", "packed", "packed_dir",
                    "threads")


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
    old, new = flatten(upgrade_config(saved)), flatten(current)
    return {k: (old.get(k), new.get(k)) for k in sorted(old)
            if old.get(k) != new.get(k) and not under(k, RESUME_FREE_KEYS)}


def check_resume_config(path: str, saved: dict[str, Any] | None, current: dict[str, Any] | None,
                        allow_changes: list[str]) -> dict[str, tuple[Any, Any]]:
    """The differences between the checkpoint at ``path`` (its resolved config ``saved``) and
    this run's ``current`` config; refused (:class:`CheckpointError`, listing them) unless
    every one is named in ``allow_changes``. Returns the allowed differences."""
    differences = resume_differences(saved, current)
    refused = {k: v for k, v in differences.items() if not under(k, allow_changes)}
    if refused:
        listed = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in refused.items())
        raise CheckpointError(
            f"trainer.resume={path} was trained with other settings: {listed}. A "
            "resume continues the same run: use the checkpoint's settings, or name the "
            f"keys to change on purpose with trainer.allow_changes=[{','.join(refused)}] "
            "(they are then applied from this step on and recorded in metrics.json).")
    return differences


def apply_changes(optimizer: torch.optim.Optimizer, scheduler: Any,
                  fresh_groups: list[dict[str, Any]],
                  changes: dict[str, tuple[Any, Any]]) -> None:
    """Deliberate changes on resume, applied for real: the optimizer's hyperparameters
    (learning rate, weight decay, momentum, ...) come from this run's config
    (``fresh_groups``: its parameter groups before the checkpoint was loaded), and the
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
        f"{k}: {old!r} → {new!r}" for k, (old, new) in changes.items()))
