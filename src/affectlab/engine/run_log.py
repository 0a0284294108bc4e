"""Scalars of a run: TensorBoard (``tb/``), ``metrics.jsonl`` and the progress bar."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
