"""A small convolutional backbone for CPU runs on the synthetic benchmark."""

from __future__ import annotations

import math

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Stacked conv-norm-ReLU blocks, each halving the resolution, then global average pooling.

    Input (N, in_channels, H, W) → features (N, widths[-1]). Works for any H, W ≥
    2**len(widths).

    Args:
        widths: output channels of each block; block i has ``convs_per_block`` 3×3 convolutions
            followed by a 2×2 max-pool.
        convs_per_block: 3×3 convolutions per block.
        dropout: dropout on the pooled features.
        pooling: ``avg`` (global average pooling, translation invariant) or ``flatten`` (keep the
            final spatial grid, so features know *where* on the face they fire; AUs are local).
        input_size: expected image side, needed to size the features when ``pooling=flatten``.
        norm: ``batch`` (BatchNorm: statistics of each process's batch) or ``group``
            (GroupNorm, 8 groups or fewer: per sample, so a batch split over torchrun
            processes trains exactly as the whole batch in one process, to float rounding).
        in_channels: input channels (3: RGB; 1: a spectrogram, TSAV's small audio stream).
    """

    #: the sample keys forward_features reads, in argument order (affectlab.methods.base)
    input_keys: tuple[str, ...] = ("image",)

    def __init__(self, *, widths: list[int] = (32, 64, 128, 256), convs_per_block: int = 1,
                 dropout: float = 0.0, pooling: str = "avg", input_size: int = 64,
                 norm: str = "batch", in_channels: int = 3) -> None:
        super().__init__()
        if norm not in ("batch", "group"):
            raise ValueError(f"model.norm={norm!r}: use batch or group")
        layers: list[nn.Module] = []
        for width in widths:
            for _ in range(convs_per_block):
                layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width) if norm == "batch"
                           else nn.GroupNorm(math.gcd(8, width), width), nn.ReLU(inplace=True)]
                in_channels = width
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        if pooling not in ("avg", "flatten"):
            raise ValueError(f"model.pooling={pooling!r}: use avg or flatten")
        self.pooling = pooling
        grid = input_size // 2 ** len(widths)
        if pooling == "flatten" and grid < 1:
            raise ValueError(f"model.input_size={input_size} is too small for {len(widths)} blocks")
        self.num_features = in_channels * (grid * grid if pooling == "flatten" else 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) → (N, num_features)."""
        maps = self.body(x)
        pooled = maps.flatten(1) if self.pooling == "flatten" else maps.mean(dim=(2, 3))
        return self.dropout(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)
