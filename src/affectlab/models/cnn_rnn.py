"""CNN-RNN (Deng et al., 2020): a frame CNN's features through a bidirectional GRU per task,
one output row per frame of a window of consecutive frames (:mod:`affectlab.data.sequences`).

    clip (N, T, C, H, W) → CNN on each frame → f (N, T, d)
    per task τ: h_τ = BiGRU_τ(f) (N, T, 2·hidden)
    features = [h_au, h_expr, h_va] flattened to (N·T, tasks · 2·hidden)

The method's task heads then read one row per frame (the labels are flattened alike by the
data's transform). The paper feeds each task's GRU with that task's 128-d head feature of the
CNN and each task's output layer with its own GRU; here every GRU reads the CNN's features and
each head reads every GRU's state (a superset of the paper's connections, the same GRUs).

**Frozen CNN** (``freeze_cnn``, the paper's): the CNN's weights take no gradient and it stays
in evaluation mode (BatchNorm with its running statistics), so only the GRUs and the heads
learn. Its weights come from a trained frame CNN by ``init_from=<run> init_parts=[backbone]``:
this model says (``pretrained_part = "cnn"``) that a backbone loaded into it goes to its CNN.

**Cached features** (``cnn: null``, ``feature_size`` d): the model has no CNN and reads
``features`` (N, T, d), the frame CNN's features computed once per frame by the data
(``sequence.features_from=<frame CNN run>``, :mod:`affectlab.data.sequences`) — the same
function as a frozen CNN on un-augmented frames, without its forward pass at every step.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn


class CNNRNN(nn.Module):
    """See the module docstring.

    Args:
        cnn: the frame CNN's model config (any image model: ``_target_`` and its options).
        tasks: one GRU per name (the tasks the run learns).
        hidden: GRU units per direction (paper: 64).
        layers: stacked GRU layers per task (paper: 1).
        freeze_cnn: keep the CNN fixed (paper: yes).
        feature_size: d of cached features, with ``cnn`` None.
    """

    input_keys: tuple[str, ...] = ("clip",)

    def __init__(self, *, cnn: Any, tasks: list[str] = ("au", "expr", "va"), hidden: int = 64,
                 layers: int = 1, freeze_cnn: bool = True,
                 feature_size: int | None = None) -> None:
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"model.hidden={hidden}, model.layers={layers}: both ≥ 1")
        if not tasks:
            raise ValueError("model.tasks is empty: one GRU per task the run learns")
        if cnn is None:
            if feature_size is None or feature_size < 1:
                raise ValueError("model.cnn=null (cached frame features) needs "
                                 "model.feature_size: the frame CNN's feature width (256 for "
                                 "small_cnn's default widths)")
            self.cnn = None
            self.input_keys = ("features",)
            width = int(feature_size)
        else:
            node = cnn if isinstance(cnn, DictConfig) else OmegaConf.create(dict(cnn))
            self.cnn = instantiate(node)
            if getattr(self.cnn, "input_keys", ("image",)) != ("image",):
                raise ValueError(f"model.cnn reads {self.cnn.input_keys}: the frame CNN of a "
                                 "CNN-RNN must be an image model")
            width = self.cnn.num_features
        self.grus = nn.ModuleDict({str(task): nn.GRU(width, hidden, num_layers=layers,
                                                     batch_first=True, bidirectional=True)
                                   for task in tasks})
        self.freeze_cnn = bool(freeze_cnn) and self.cnn is not None
        if self.freeze_cnn:
            self.cnn.requires_grad_(False)
        self.num_features = len(self.grus) * 2 * hidden

    def train(self, mode: bool = True) -> CNNRNN:
        super().train(mode)
        if self.freeze_cnn and self.cnn is not None:
            self.cnn.eval()        # fixed features: running statistics, no dropout
        return self

    @property
    def pretrained_part(self) -> str | None:       # type: ignore[override]
        """Where a backbone loaded by init_from goes: the CNN (none with cached features)."""
        return "cnn" if self.cnn is not None else None

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Clips (N, T, C, H, W), or cached features (N, T, d) → (N·T, tasks · 2·hidden), rows
        frame-major within each window."""
        n, t = frames.shape[:2]
        if self.cnn is None:
            features = frames.float()
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_cnn):
                features = self.cnn.forward_features(frames.flatten(0, 1))
            features = features.view(n, t, -1)
        states = [gru(features)[0] for gru in self.grus.values()]
        return torch.cat(states, dim=2).flatten(0, 1)


__all__ = ["CNNRNN"]
