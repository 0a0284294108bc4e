"""Scalars of a run: TensorBoard (``tb/``), ``metrics.jsonl`` and the progress bar."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter


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

    def pr_curves(self, prefix: str, outputs: dict[str, np.ndarray],
                  targets: dict[str, np.ndarray], label_names: dict[str, list[str]],
                  step: int) -> None:
        """A precision-recall curve per label of the multi-label tasks (AUs, attributes) in
        TensorBoard's PR-curve tab (``<prefix>/pr_<task>/<label>``), valid targets only."""
        if self.writer is None:
            return
        for task in ("au", "attr"):
            if task not in outputs or task not in targets:
                continue
            mask = targets.get(f"{task}_mask", np.ones_like(targets[task], dtype=bool))
            names = label_names.get(task) or [str(k) for k in range(outputs[task].shape[1])]
            for k, name in enumerate(names):
                valid = mask[:, k].astype(bool)
                if valid.any():
                    self.writer.add_pr_curve(f"{prefix}/pr_{task}/{name}",
                                             targets[task][valid, k] > 0.5,
                                             outputs[task][valid, k], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.events.close()

    def log_step(self, losses: dict[str, torch.Tensor], lr: float, progress: Any, step: int,
                 position: dict[str, Any]) -> None:
        """A training step's loss terms (``train/<name>``) and learning rate; the progress
        bar shows the step, the loss and images/s so far."""
        scalars = {f"train/{k}": float(v.detach()) for k, v in losses.items()}
        scalars["train/lr"] = lr
        self.record(scalars, step)
        if hasattr(progress, "set_postfix"):
            rate = position["images_seen"] / max(position["train_time_s"], 1e-9)
            progress.set_postfix(step=step, loss=f"{scalars['train/loss']:.4f}",
                                 img_s=f"{rate:.0f}")


def progress(loader: Iterable[Any], description: str, shown: bool) -> Iterable[Any]:
    """``loader`` behind a tqdm progress bar when ``shown`` (the main process, with
    ``trainer.progress_bar``), else ``loader`` itself."""
    if not shown:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=description, leave=False, dynamic_ncols=True)
