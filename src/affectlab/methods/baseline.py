"""Supervised baseline: one backbone and a head per task, trained on labelled data only.

This is the "Baseline" row of every table in the MLCR, transfer and mean-teacher papers, and
with several tasks the plain multi-task network (shared features, one head per task) the
multi-task papers start from.
"""

from __future__ import annotations

from typing import Any

import torch

from affectlab.data.contract import DataSpec, FaceData
from affectlab.methods.base import Batch, Method, ModelFactory, model_inputs
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

    def build(self, spec: DataSpec) -> None:
        self.heads.build(spec, self.backbone.num_features)
        self.label_names = dict(self.heads.label_names)

    def fit_statistics(self, data: FaceData) -> None:
        self.heads.fit_statistics(data.train.table)

    def outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``{task: raw head outputs (N, ·)}`` of the backbone's features of ``batch``."""
        return self.heads(self.backbone.forward_features(*model_inputs(self.backbone, batch)))

    def terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.heads.losses(self.outputs(batch), batch)

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.heads.predict(self.outputs(batch))


def _plain(options: Any) -> dict[str, dict] | None:
    """Head options as plain dicts (Hydra may pass DictConfig nodes)."""
    if options is None:
        return None
    return {str(task): dict(values or {}) for task, values in dict(options).items()}
