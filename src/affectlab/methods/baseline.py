"""Supervised baseline: one backbone and a head per task, trained on labelled data only.

This is the "Baseline" row of every table in the MLCR, transfer and mean-teacher papers, and
with several tasks the plain multi-task network (shared features, one head per task) the
multi-task papers start from.
"""

from __future__ import annotations

from typing import Any

import torch

from affectlab.data.contract import FaceData
from affectlab.methods.base import Batch, Method, ModelFactory
from affectlab.methods.heads import TaskHeads


class Baseline(Method):
    """Backbone → one head per task (:class:`~affectlab.methods.heads.TaskHeads`).

        L = Σ_t λ_t L_t     (L_t: the masked loss of task t's head, λ_t = ``loss_weights``)

    ``forward`` returns ``loss`` and each task's unweighted term under its name (``au``,
    ``expr``, ...); ``predict`` returns every task it learned.

    Args:
        model: factory returning a backbone with ``forward_features`` and ``num_features``.
        tasks: tasks to learn (``au``, ``attr``, ``expr``, ``va``, ``identity``); None: every
            task the dataset labels (identity excepted: name it to pre-train on identities).
        loss_weights: λ_t per task (default 1 each).
        heads: per-task head options, e.g. ``{au: {weighting: selective}, va: {form: bins}}``
            (see :mod:`affectlab.methods.heads`).
        name: the method's name in run directories and ``metrics.json``.
    """

    def __init__(self, *, model: ModelFactory, tasks: list[str] | None = None,
                 loss_weights: dict[str, float] | None = None,
                 heads: dict[str, dict] | None = None, name: str = "baseline") -> None:
        super().__init__()
        self.name = name
        self.backbone = model()
        self.heads = TaskHeads(tasks=tasks, loss_weights=loss_weights, options=_plain(heads))

    def setup(self, data: FaceData) -> None:
        self.heads.setup(data, self.backbone.num_features)
        self.label_names = dict(self.heads.label_names)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        terms = self.heads.losses(self.heads(self.backbone.forward_features(batch["image"])), batch)
        return {k: v if k == "loss" else v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.heads.predict(self.heads(self.backbone.forward_features(batch["image"])))


def _plain(options: Any) -> dict[str, dict] | None:
    """Head options as plain dicts (Hydra may pass DictConfig nodes)."""
    if options is None:
        return None
    return {str(task): dict(values or {}) for task, values in dict(options).items()}
