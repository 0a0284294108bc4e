"""The interface between a training method and the shared trainer.

Call order, all made by :class:`affectlab.trainer.Trainer`::

    method.setup(data)                       # once, before the optimizer exists: build heads,
                                             # read label statistics of the training split
    for each step:
        losses = method(batch)               # forward(): {"loss": scalar, **named_terms}
        losses["loss"].backward(); clip; optimizer.step(); scheduler.step()
        method.after_optimizer_step(step)    # e.g. an EMA teacher update
    per evaluation:
        outputs = method.predict(batch)      # {"au": probabilities (N, C), "va": (N, 2), ...}

``batch`` is the labelled sample dict of :mod:`affectlab.data.contract` with its inputs already
transformed by the data (``FaceData.transform``: augmented and normalised images), plus
``batch["unlabeled"]`` (a second sample dict drawn from the unlabelled pool) when
``needs_unlabeled`` is True, and ``batch["image_views"]`` (k independently augmented copies of
the images) when ``augmented_views`` = k > 1. The trainer logs every entry of the returned
dict under ``train/<name>``, so every term a method wants to see is a named entry. ``predict``
reads the input keys it needs from the batch, so inputs other than images (clips, audio) reach
a method without the trainer knowing them.

A method never touches devices, precision, optimizers or checkpoints: the trainer owns them.
After training the trainer stores per-label thresholds in ``method.thresholds`` (saved with
the checkpoint), and ``method.label_names`` (set in ``setup``) names what each task predicts.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn

from affectlab.data.contract import FaceData

Batch = dict[str, Any]
ModelFactory = Callable[[], nn.Module]


class Method(nn.Module):
    """Base class of every training recipe (see the module docstring for the call order)."""

    needs_unlabeled: ClassVar[bool] = False
    # True when some parameters sit idle in some steps (DDP must then look for them).
    has_idle_parameters: ClassVar[bool] = False
    # Independently augmented copies of each training image the method wants; with k > 1 the
    # trainer adds batch["image_views"] (k, N, 3, H, W) (and the same in batch["unlabeled"]).
    augmented_views: ClassVar[int] = 1

    def __init__(self) -> None:
        super().__init__()
        #: what each predicted task's outputs are, ``{task: label names}`` (set by setup)
        self.label_names: dict[str, list[str]] = {}
        #: per-label decision thresholds of the multi-label tasks, ``{task: (C,)}`` (set after
        #: training by the trainer's threshold search; absent: 0.5)
        self.thresholds: dict[str, list[float]] = {}
        self.is_set_up = False

    def setup(self, data: FaceData) -> None:
        """Build what depends on the data (heads sized by the label set, label statistics)."""

    def prepare(self, data: FaceData) -> None:
        """:meth:`setup` once (a method set up before, e.g. to load weights into it, is kept)."""
        if not self.is_set_up:
            self.setup(data)
            self.is_set_up = True

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss terms for one batch; must contain the scalar ``loss`` that is backpropagated."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Outputs of the deployed network per task, e.g. ``{"au": probs (N, C)}``."""
        raise NotImplementedError

    def parts(self) -> dict[str, list[str]]:
        """Named groups of state-dict prefixes, for starting from another run (``init_from``).

        ``backbone`` lists the feature extractors (one, or one per view); a run's backbones
        are loaded into this method's backbones. Default: every top-level module is its own
        part, and ``backbone`` is the module of that name when there is one.
        """
        names = [name for name, _ in self.named_children()]
        parts = {name: [name] for name in names}
        return parts

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer; default: every trainable parameter, one group."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def after_optimizer_step(self, step: int) -> None:
        """Hook after each optimizer step (EMA teachers, schedules of loss weights)."""


def label_task_size(data: FaceData, task: str) -> int:
    """Number of labels of a multi-label ``task`` ("au" or "attr"), with a clear error if absent."""
    names = data.label_names.get(task, [])
    if not names:
        raise ValueError(f"dataset '{data.name}' has no '{task}' labels; choose method.task from "
                         f"{sorted(k for k, v in data.label_names.items() if v)}")
    return len(names)
