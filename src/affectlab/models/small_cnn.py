"""A small convolutional backbone for CPU runs on the synthetic benchmark."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Stacked conv-BN-ReLU blocks, each halving the resolution, then global average pooling.

    Input (N, 3, H, W) → features (N, widths[-1]). Works for any H, W ≥ 2**len(widths).

    Args:
        widths: output channels of each block; block i has ``convs_per_block`` 3×3 convolutions
            followed by a 2×2 max-pool.
        convs_per_block: 3×3 convolutions per block.
        dropout: dropout on the pooled features.
    """

    def __init__(self, *, widths: list[int] = (32, 64, 128, 256), convs_per_block: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            for _ in range(convs_per_block):
                layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                in_channels = width
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.num_features = in_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) → (N, num_features)."""
        return self.dropout(self.body(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)
