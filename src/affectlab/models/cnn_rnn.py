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
    """

    input_keys: tuple[str, ...] = ("clip",)
    #: where a backbone loaded by init_from goes (Method.parts)
    pretrained_part = "cnn"

    def __init__(self, *, cnn: Any, tasks: list[str] = ("au", "expr", "va"), hidden: int = 64,
                 layers: int = 1, freeze_cnn: bool = True) -> None:
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"model.hidden={hidden}, model.layers={layers}: both ≥ 1")
        if not tasks:
            raise ValueError("model.tasks is empty: one GRU per task the run learns")
        node = cnn if isinstance(cnn, DictConfig) else OmegaConf.create(dict(cnn))
        self.cnn = instantiate(node)
        if getattr(self.cnn, "input_keys", ("image",)) != ("image",):
            raise ValueError(f"model.cnn reads {self.cnn.input_keys}: the frame CNN of a "
                             "CNN-RNN must be an image model")
        width = self.cnn.num_features
        self.grus = nn.ModuleDict({str(task): nn.GRU(width, hidden, num_layers=layers,
                                                     batch_first=True, bidirectional=True)
                                   for task in tasks})
        self.freeze_cnn = bool(freeze_cnn)
        if self.freeze_cnn:
            self.cnn.requires_grad_(False)
        self.num_features = len(self.grus) * 2 * hidden

    def train(self, mode: bool = True) -> CNNRNN:
        super().train(mode)
        if self.freeze_cnn:
            self.cnn.eval()        # fixed features: running statistics, no dropout
        return self

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        """(N, T, C, H, W) → (N·T, tasks · 2·hidden), rows frame-major within each window."""
        n, t = clip.shape[:2]
        frames = clip.flatten(0, 1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_cnn):
            features = self.cnn.forward_features(frames)
        features = features.view(n, t, -1)
        states = [gru(features)[0] for gru in self.grus.values()]
        return torch.cat(states, dim=2).flatten(0, 1)


__all__ = ["CNNRNN"]
