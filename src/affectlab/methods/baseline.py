"""Supervised baseline: one backbone, a linear multi-label head, BCE on labelled data only.

This is the "Baseline" row of every table in the MLCR, transfer and mean-teacher papers.
"""

from __future__ import annotations

import torch
from torch import nn

from affectlab.datasets.base import EXPRESSIONS, FaceData
from affectlab.losses import (inverse_frequency_weights, masked_bce_with_logits,
                              masked_cross_entropy, masked_mse)
from affectlab.methods.base import Batch, Method, ModelFactory, label_task_size


class Baseline(Method):
    """Backbone → Linear head, trained on one task's labelled samples (unknown labels masked).

    - ``au`` / ``attr`` (multi-label): sigmoid outputs, masked (weighted) BCE
      L = Σ_{n,c} m_nc · w_c · BCE(z_nc, y_nc) / Σ_{n,c} m_nc;
    - ``expr`` (K classes, Aff-Wild2 order): softmax outputs, cross-entropy over the samples with
      an expression label;
    - ``va`` (valence, arousal): tanh outputs in [−1, 1], mean squared error over the samples
      with a VA label.

    Args:
        model: factory returning a backbone with ``forward_features`` and ``num_features``.
        task: the task to learn: ``au``, ``attr``, ``expr`` or ``va``.
        label_weighting: ``none`` (w_c = 1) or ``inverse_frequency`` (w_c ∝ 1 / positive rate
            of label c in the labelled training split, mean 1; multi-label tasks only).
        name: the method's name in run directories and ``metrics.json``.
    """

    def __init__(self, *, model: ModelFactory, task: str = "au", label_weighting: str = "none",
                 name: str = "baseline") -> None:
        super().__init__()
        if label_weighting not in ("none", "inverse_frequency"):
            raise ValueError(f"method.label_weighting={label_weighting!r}: use none or "
                             "inverse_frequency")
        if task not in ("au", "attr", "expr", "va"):
            raise ValueError(f"method.task={task!r}: use au, attr, expr or va")
        if task in ("expr", "va") and label_weighting != "none":
            raise ValueError(f"method.label_weighting={label_weighting!r} applies to the "
                             "multi-label tasks (au, attr) only")
        self.task = task
        self.label_weighting = label_weighting
        self.name = name
        self.backbone = model()
        self.head: nn.Linear | None = None
        self.register_buffer("label_weights", torch.ones(0))

    def setup(self, data: FaceData) -> None:
        if self.task in ("expr", "va"):
            if not getattr(data.train.table, f"{self.task}_mask").any():
                raise ValueError(f"dataset '{data.name}' has no '{self.task}' labels in its "
                                 f"training split; choose method.task from {data.tasks}")
            outputs = len(data.label_names.get("expr") or EXPRESSIONS) if self.task == "expr" else 2
            self.head = nn.Linear(self.backbone.num_features, outputs)
            return
        num_labels = label_task_size(data, self.task)
        self.head = nn.Linear(self.backbone.num_features, num_labels)
        table = data.train.table
        targets = torch.from_numpy(getattr(table, self.task))
        mask = torch.from_numpy(getattr(table, f"{self.task}_mask"))
        if self.label_weighting == "inverse_frequency":
            self.label_weights = inverse_frequency_weights(targets, mask)
        else:
            self.label_weights = torch.ones(num_labels)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) → (N, C) label logits."""
        return self.head(self.backbone.forward_features(images))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.logits(batch["image"])
        targets, mask = batch[self.task], batch[f"{self.task}_mask"]
        if self.task == "expr":
            loss = masked_cross_entropy(logits, targets, mask)
        elif self.task == "va":
            loss = masked_mse(torch.tanh(logits.float()), targets, mask)
        else:
            loss = masked_bce_with_logits(logits, targets, mask, self.label_weights)
        return {"loss": loss}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.logits(images).float()
        if self.task == "expr":
            return {"expr": torch.softmax(logits, dim=1)}
        if self.task == "va":
            return {"va": torch.tanh(logits)}
        return {self.task: torch.sigmoid(logits)}
