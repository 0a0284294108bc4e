"""Predictions over whole splits, and per-label thresholds searched on them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from affectlab.metrics import MULTILABEL_TASKS, best_thresholds


@torch.inference_mode()
def predict_split(method: Any, loader: Any, prepare: Callable[[dict], dict],
                  autocast: Callable[[], Any] = contextlib.nullcontext,
                  target_keys: Sequence[str] = (),
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``method.predict`` over every batch of ``loader`` (each passed through ``prepare``:
    device and input transform) and stack predictions and the targets named in
    ``target_keys`` (the data's: ``FaceData.target_keys``).

    Returns ``({task: (N, ·) predictions}, {target key: (N, ·) targets})`` as numpy arrays.
    """
    was_training = method.training
    method.eval()
    outputs: dict[str, list[np.ndarray]] = {}
    targets: dict[str, list[np.ndarray]] = {k: [] for k in target_keys}
    for batch in loader:
        batch = prepare(batch)
        with autocast():
            predictions = method.predict(batch)
        for task, value in predictions.items():
            outputs.setdefault(task, []).append(value.float().cpu().numpy())
        for key in target_keys:
            targets[key].append(batch[key].cpu().numpy())
    method.train(was_training)
    return ({k: np.concatenate(v) for k, v in outputs.items()},
            {k: np.concatenate(v) for k, v in targets.items() if v})  # none: an empty shard


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
