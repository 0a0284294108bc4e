"""Face-recognition IR backbones (ArcFace's "improved residual" nets, Deng et al., CVPR 2019).

The transfer paper (Ji et al., 2020) fine-tunes IR-152, an ArcFace face-recognition trunk, for
AU detection and "removes the 7×7 pooling": the final 512 × 7 × 7 map is not averaged but
flattened into a fully connected embedding, so each embedding unit sees *where* on the face a
feature fires. This module builds those nets from their published description.

Architecture (input (N, 3, S, S), S = ``input_size`` ∈ {112, 224}, g = S / 16)::

    stem     3×3 conv 3→64 (stride 1) → BN → PReLU                        (N, 64, S, S)
    stage 1  U₁ IR units,  64 channels, the first with stride 2             (N, 64, S/2, S/2)
    stage 2  U₂ IR units, 128 channels, the first with stride 2             (N, 128, S/4, S/4)
    stage 3  U₃ IR units, 256 channels, the first with stride 2             (N, 256, S/8, S/8)
    stage 4  U₄ IR units, 512 channels, the first with stride 2             (N, 512, g, g)
    output   BN2d → Dropout → Flatten → FC(512·g·g → E) → BN1d              (N, E)

with (U₁, U₂, U₃, U₄) = IR-50: (3, 4, 14, 3), IR-101: (3, 13, 30, 3), IR-152: (3, 8, 36, 3)
(IR-34: (3, 4, 6, 3), insightface's LResNet34E-IR, is also accepted), E = ``embedding``
(512 in the face-recognition models). At 112 px the last map is 7 × 7 (FC over 512·7·7 =
25 088 inputs, as published); at 224 px it is 14 × 14 (FC over 512·14·14 = 100 352 inputs,
which makes the FC alone 51.4 M parameters at E = 512).

IR unit (ArcFace Fig. 7(c), "BN-Conv-BN-PReLU-Conv-BN")::

    residual(x) = BN(Conv3×3_s(PReLU(BN(Conv3×3_1(BN(x))))))
    shortcut(x) = x                               when stride 1 and channels unchanged,
                  BN(Conv1×1_s(x))                otherwise (projection)
    unit(x)     = residual(x) + shortcut(x)       (no activation after the sum)

The stride s sits on the *second* 3×3 convolution. The shortcut is the published insightface
form (MXNet ``residual_unit_v3`` of LResNet-E-IR and the PyTorch ``iresnet`` of
arcface_torch): a 1×1 strided projection + BN wherever the shape changes, including the
first unit of stage 1 (64 → 64 channels, stride 2). face.evoLVe's IR nets instead subsample
the identity there (a 1×1 max-pool of stride 2, no parameters); that variant has 4 224 fewer
parameters and is not what is built here.

Parameter counts at 112 px, E = 512 (trainable, every BN affine):
IR-34 34 139 328, IR-50 43 590 848, IR-101 65 156 160, IR-152 70 765 760; at 224 px add
38 535 168 (the larger FC). With the BNs an inference graph folds into a neighbouring
convolution or the FC folded (all but the BN opening each unit, which a zero-padded
convolution cannot absorb), IR-34 and IR-101 come to 34.129 M and 65.131 M, the counts
published for insightface's LResNet34E-IR and LResNet100E-IR (OpenVINO Open Model Zoo,
``face-recognition-resnet34-arcface`` / ``-resnet100-arcface``, 112 px, 512-d); see
tests/test_irnet.py. No published count of IR-50 or IR-152 was found; theirs are checked
against a formula written out from this layout.

Initialisation (no pretrained face-recognition weights ship with affectlab; start from a run
with ``init_from``): convolutions Kaiming-normal (fan-out), BN γ = 1, β = 0, PReLU slopes
0.25, the FC PyTorch's default. The embedding BN1d keeps a learnable γ (face.evoLVe; insightface
fixes it at 1). In training mode the BN1d needs ≥ 2 samples per batch.
"""

from __future__ import annotations

import torch
from torch import nn

#: units per stage of each depth
IR_UNITS: dict[int, tuple[int, int, int, int]] = {
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    101: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
}
IR_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)
#: face sides the output FC can be sized for (the last map is input_size / 16 on a side)
IR_INPUT_SIZES: tuple[int, ...] = (112, 224)


class IRUnit(nn.Module):
    """ArcFace's improved residual unit: BN → 3×3 conv → BN → PReLU → 3×3 conv (stride) → BN,
    plus the identity, or a 1×1 conv (stride) + BN projection when the shape changes.

    (N, in_channels, H, W) → (N, channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        if stride == 1 and in_channels == channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class IRNet(nn.Module):
    """IR-50/101/152 face-recognition trunk with its flattened-FC embedding (no global pooling).

    Input (N, 3, S, S) with S = ``input_size`` → features (N, ``embedding``). The layout, the
    unit and the parameter counts are in the module docstring.

    Args:
        depth: 50, 101 or 152 (34 also: insightface's IR-34).
        input_size: the face side the net is built for, 112 (7 × 7 last map) or 224
            (14 × 14); the model configs take it from ``dataset.image_size``. Another size is a
            ValueError, as is an input of another size at run time.
        embedding: width E of the output embedding (``num_features``).
        dropout: dropout probability before the FC.
    """

    #: the sample keys forward_features reads, in argument order (affectlab.methods.base)
    input_keys: tuple[str, ...] = ("image",)

    def __init__(self, *, depth: int = 50, input_size: int = 112, embedding: int = 512,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if depth not in IR_UNITS:
            raise ValueError(f"model.depth={depth} is not supported; choose one of "
                             f"{sorted(IR_UNITS)}")
        if input_size not in IR_INPUT_SIZES:
            raise ValueError(f"model.input_size={input_size}: IR nets take "
                             f"{' or '.join(str(s) for s in IR_INPUT_SIZES)} px faces "
                             "(dataset.image_size)")
        if embedding < 1:
            raise ValueError(f"model.embedding={embedding}: at least 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout={dropout}: a probability in [0, 1)")
        self.depth = depth
        self.input_size = input_size
        self.stem = nn.Sequential(nn.Conv2d(3, IR_WIDTHS[0], 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(IR_WIDTHS[0]), nn.PReLU(IR_WIDTHS[0]))
        stages = []
        in_channels = IR_WIDTHS[0]
        for channels, units in zip(IR_WIDTHS, IR_UNITS[depth]):
            stage = [IRUnit(in_channels, channels, stride=2)]
            stage += [IRUnit(channels, channels, stride=1) for _ in range(units - 1)]
            stages.append(nn.Sequential(*stage))
            in_channels = channels
        self.stages = nn.Sequential(*stages)
        grid = input_size // 2 ** len(IR_WIDTHS)
        self.output = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(in_channels * grid * grid, embedding),
            nn.BatchNorm1d(embedding),
        )
        self.num_features = embedding
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, input_size, input_size) → (N, num_features)."""
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(f"IR-{self.depth} was built for {self.input_size} px faces "
                             f"(model.input_size) but got {tuple(x.shape[-2:])}; set "
                             "dataset.image_size to the model's input size")
        return self.output(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


__all__ = ["IRNet", "IRUnit", "IR_UNITS", "IR_WIDTHS", "IR_INPUT_SIZES"]
