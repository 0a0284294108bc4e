"""Predictions and metrics over whole splits (:class:`SplitEvaluator`), and per-label
thresholds searched on them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from affectlab.data.contract import FaceData
from affectlab.engine import distributed
from affectlab.engine.run_log import RunLogger
from affectlab.metrics import (
    MULTILABEL_TASKS,
    best_thresholds,
    evaluate_tasks,
    flatten_metrics,
    overall_score,
)
from affectlab.utils import save_npz


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


def average_by_index(outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Predictions of windows of frames (targets carrying ``index`` and ``frame_valid``,
    :mod:`affectlab.data.sequences`) as one prediction per frame: each frame's outputs
    averaged over the windows that hold it, padded positions left out, its targets once.
    Other predictions are returned as they are."""
    if "index" not in targets or "frame_valid" not in targets:
        return outputs, targets
    valid = targets["frame_valid"].astype(bool)
    index = targets["index"][valid]
    frames, first, inverse = np.unique(index, return_index=True, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(frames)).astype(np.float64)
    averaged = {}
    for task, values in outputs.items():
        kept = values[valid].astype(np.float64)
        sums = np.zeros((len(frames), *kept.shape[1:]))
        np.add.at(sums, inverse, kept)
        averaged[task] = (sums / counts.reshape(-1, *[1] * (kept.ndim - 1))).astype(np.float32)
    return averaged, {key: value[valid][first] for key, value in targets.items()}


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


class SplitEvaluator:
    """Predicts and scores whole splits the way the trainer feeds them: its loaders, devices,
    precision and evaluation transform. Under torchrun every process predicts its strided
    shard and the shards are gathered, so each process gets the whole split (a collective).

    Args:
        loader: ``(dataset, rows or None) -> DataLoader`` of those rows in order.
        prepare: ``(batch, data) -> batch`` on the device, evaluation transform applied.
        autocast: context factory of the trainer's precision.
        rank, world_size: this process among the torchrun processes.
    """

    def __init__(self, *, loader: Callable[[Dataset, list[int] | None], DataLoader],
                 prepare: Callable[[dict[str, Any], FaceData], dict[str, Any]],
                 autocast: Callable[[], Any], rank: int = 0, world_size: int = 1) -> None:
        self._make_loader, self._prepare, self._autocast = loader, prepare, autocast
        self.rank, self.world_size = rank, world_size
        self._loaders: dict[int, DataLoader] = {}    # per split evaluated, by id

    def predict(self, method: Any, data: FaceData,
                dataset: Dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Stacked predictions and targets (``data.target_keys``) over a whole split
        (:func:`predict_split`)."""
        loader = self._loaders.get(id(dataset))
        if loader is None or loader.dataset is not dataset:
            rows = distributed.shard_rows(len(dataset), self.rank, self.world_size)
            loader = self._loaders[id(dataset)] = self._make_loader(dataset, rows)
        outputs, targets = predict_split(method, loader, lambda b: self._prepare(b, data),
                                         self._autocast, data.target_keys)
        if self.world_size > 1:
            if "frame_valid" in targets:
                raise NotImplementedError("evaluating windows of frames (sequence=...) under "
                                          "torchrun is not supported yet: evaluate in one "
                                          "process (python -m affectlab.evaluate)")
            outputs, targets = distributed.gather_shards((outputs, targets), len(dataset),
                                                         self.world_size)
        return average_by_index(outputs, targets)

    def evaluate(self, method: Any, data: FaceData, dataset: Dataset,
                 thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
        """Metrics of every task the method predicts, on one split (:mod:`affectlab.metrics`;
        ``thresholds`` give the ``tuned`` ones)."""
        outputs, targets = self.predict(method, data, dataset)
        return evaluate_tasks(outputs, targets, {**data.label_names, **method.label_names},
                              thresholds)

    def test(self, method: Any, data: FaceData, run_dir: str | Path | None = None,
             step: int = 0) -> dict[str, Any]:
        """Test metrics of ``method`` (its stored thresholds applied in ``tuned``) on the test
        split; logged at ``step`` into ``run_dir``'s TensorBoard and ``metrics.jsonl`` when
        given (main process). Returns ``{"test": task metrics, "score": their mean
        criterion}``."""
        outputs, targets = self.predict(method, data, data.test)
        label_names = {**data.label_names, **method.label_names}
        metrics = evaluate_tasks(outputs, targets, label_names, method.thresholds)
        score = overall_score(metrics)
        if run_dir is not None and self.rank == 0:
            save_predictions(Path(run_dir) / PREDICTIONS_FILE, outputs, targets)
            logger = RunLogger(Path(run_dir))
            logger.record({**flatten_metrics(metrics, "test"), "test/score": score}, step)
            logger.pr_curves("test", outputs, targets, label_names, step)
            logger.close()
        return {"test": metrics, "score": score}


PREDICTIONS_FILE = "test_predictions.npz"


def save_predictions(path: Path, outputs: dict[str, np.ndarray],
                     targets: dict[str, np.ndarray]) -> None:
    """A split's predictions (``output/<task>``) and targets (``target/<key>``), for figures
    drawn later (``affectlab-report``: PR curves, confusion matrices, VA scatter)."""
    save_npz(str(path), {**{f"output/{k}": v for k, v in outputs.items()},
                         **{f"target/{k}": v for k, v in targets.items()}})


def load_predictions(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(outputs, targets)`` as :func:`save_predictions` wrote them."""
    with np.load(path) as stored:
        outputs = {k[len("output/"):]: stored[k] for k in stored.files
                   if k.startswith("output/")}
        targets = {k[len("target/"):]: stored[k] for k in stored.files
                   if k.startswith("target/")}
    return outputs, targets
