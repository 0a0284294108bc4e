"""One trained run, or several averaged, turning face crops into predictions.

    p_t(x) = (1/M) Σ_m p_t^m(x)      (as :class:`~affectlab.methods.ensemble.Ensemble`)

Each run normalises its inputs as it did in training (``LoadedRun.predict``), so runs with
other normalisation constants can be averaged; they must predict the same labels and read
faces the same way (crop settings and image size; clip runs: the same clip and sound
settings, :mod:`.clips`). Thresholds of the multi-label tasks: the
mean of the runs' stored per-label thresholds, or those of an evaluation's ``metrics.json``
(``python -m affectlab.evaluate`` searches them for an ensemble on validation data).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectlab.data.clips import ClipSettings
from affectlab.inference import LoadedRun, load_run
from affectlab.methods.ensemble import label_set_difference
from affectlab.predict.clips import clip_settings

log = logging.getLogger(__name__)

MULTILABEL = ("au", "attr")


class RunsError(ValueError):
    """Runs that cannot predict together, or thresholds that do not fit them."""


class Predictor:
    """The runs in ``run_dirs`` (directories or checkpoint files), loaded on ``device``.

    Attributes:
        label_names: ``{task: label names}`` of the predicted tasks (identity left out).
        thresholds: ``{task: per-label thresholds}`` of the multi-label tasks.
        reading: the runs' reading settings (how faces are cut).
    """

    def __init__(self, run_dirs: Sequence[str | Path], *, device: str = "cpu",
                 which: str = "best.pt", thresholds: str | Path | None = None) -> None:
        if not run_dirs:
            raise RunsError("name at least one run directory (--runs)")
        self.names = [str(r) for r in run_dirs]
        self.runs: list[LoadedRun] = [load_run(r, device=device, which=which)
                                      for r in run_dirs]
        first = self.runs[0]
        for name, run in zip(self.names[1:], self.runs[1:]):
            difference = label_set_difference(first.method.label_names, run.method.label_names)
            if difference:
                raise RunsError(f"runs {self.names[0]} and {name} cannot be averaged: "
                                f"{difference}. An ensemble needs runs of one label set.")
            if run.inputs.get("dataset") != first.inputs.get("dataset") or any(
                    run.config.dataset.get(k) != first.config.dataset.get(k)
                    for k in ("clip", "audio", "sample_rate")):
                raise RunsError(f"runs {self.names[0]} and {name} read faces differently "
                                f"({first.inputs.get('dataset')} vs {run.inputs.get('dataset')}, "
                                "or other clip / sound settings): an ensemble here needs one "
                                "crop, image size and clip.")
        keys = first.inputs["keys"]
        #: the clip settings of a clip run (TSAV), None for a run of single images
        self.clip: ClipSettings | None = None
        if "clip" in keys and set(keys) <= {"clip", "audio"}:
            self.clip = clip_settings(first.config.dataset, self.names[0])
        elif set(keys) != {"image"} or len(keys["image"]) != 3:
            raise RunsError(f"{self.names[0]} reads {keys}: predict serves runs of single "
                            "face images (3, S, S) and clip runs (TSAV); sequence models "
                            "(the CNN-RNN's windows of frames) are evaluated on their datasets "
                            "with python -m affectlab.evaluate.")
        size = keys["image"][-1] if "image" in keys else keys["clip"][-1]
        self.label_names = {t: list(n) for t, n in first.method.label_names.items()
                            if t != "identity"}
        self.reading: dict[str, Any] = dict(first.inputs.get("dataset") or {})
        self.reading.setdefault("image_size", size)
        self.thresholds = (self.thresholds_from(thresholds) if thresholds is not None
                           else self.stored_thresholds())
        self.device = next(first.method.parameters()).device

    def stored_thresholds(self) -> dict[str, list[float]]:
        """The mean of the runs' stored thresholds (0.5 where a run stored none)."""
        out = {}
        for task in MULTILABEL:
            if task not in self.label_names:
                continue
            stored = [run.method.thresholds.get(task) for run in self.runs]
            if any(t is None for t in stored):
                log.warning("%s stores no '%s' thresholds: occurrence columns use 0.5",
                            self.names[stored.index(None)], task)
                stored = [t if t is not None else [0.5] * len(self.label_names[task])
                          for t in stored]
            out[task] = np.mean(np.asarray(stored, dtype=np.float64), axis=0).tolist()
        return out

    def thresholds_from(self, path: str | Path) -> dict[str, list[float]]:
        """The per-label thresholds of an evaluation's ``metrics.json`` (or its folder)."""
        path = Path(path)
        path = path / "metrics.json" if path.is_dir() else path
        try:
            tasks = json.loads(path.read_text())["tasks"]
        except (OSError, ValueError, KeyError) as err:
            raise RunsError(f"--thresholds {path}: not an evaluation's metrics.json ({err})"
                            ) from None
        out = {}
        for task in MULTILABEL:
            if task not in self.label_names:
                continue
            found = tasks.get(task) or {}
            if found.get("labels") != self.label_names[task] or not found.get("thresholds"):
                raise RunsError(f"--thresholds {path} holds no '{task}' thresholds for the "
                                f"runs' labels {self.label_names[task]}")
            out[task] = [float(t) for t in found["thresholds"]]
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predictions for a batch of raw inputs — ``image``: uint8 (N, 3, S, S); ``clip``:
        uint8 (N, T, 3, S, S) and ``audio`` (N, 1, n_mels, frames) — as ``{task: (N, C)}``
        (VA: (N, 2)), the mean over the runs."""
        inputs = {key: torch.from_numpy(np.ascontiguousarray(value))
                  for key, value in batch.items()}
        outputs = [run.predict(inputs) for run in self.runs]
        return {task: torch.stack([o[task].float() for o in outputs]).mean(0).cpu().numpy()
                for task in self.label_names}


__all__ = ["Predictor", "RunsError"]
