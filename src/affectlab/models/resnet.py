"""torchvision ResNets as feature extractors, with offline-only pretrained weights."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

_ARCHS = {
    18: (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    34: (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    50: (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    152: (torchvision.models.resnet152, torchvision.models.ResNet152_Weights.IMAGENET1K_V1),
}


class PretrainedWeightsError(FileNotFoundError):
    """Requested weights are not on disk; nothing is ever downloaded."""


def pretrained_file(setting: str, *, option: str, hub_name: str,
                    hub_weights: torchvision.models.WeightsEnum) -> Path | None:
    """The weights file a ``pretrained`` option names: None for ``none``; for ``hub_name``
    (``imagenet``, ``kinetics``) torchvision's file of ``hub_weights`` in the torch hub cache,
    which must already be there (nothing is downloaded); otherwise a path. A missing file is a
    :class:`PretrainedWeightsError` saying where to put it and what else to pass."""
    if setting == "none":
        return None
    if setting == hub_name:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(hub_weights.url).name
        if not path.is_file():
            raise PretrainedWeightsError(
                f"{option}={hub_name} needs the file {path}, which is not there and is never "
                f"downloaded at run time. Copy torchvision's {path.name} to that path (or set "
                f"TORCH_HOME), or pass {option}=/path/to/weights.pth, or {option}=none.")
        return path
    path = Path(setting)
    if not path.is_file():
        raise PretrainedWeightsError(f"{option}={setting}: no such file. Give an existing "
                                     f"state-dict path, or {option}={hub_name}|none.")
    return path


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint file, unwrapping ``state_dict``/``model`` and ``module.``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "method" in state and "method_class" in state:
        # a whole trained method (backbone, heads, optimizer, ...), not one network's weights
        run = Path(path).parent.parent if Path(path).parent.name == "checkpoints" else path
        raise PretrainedWeightsError(
            f"{path} is an affectlab run's checkpoint, not a backbone state dict: start from it "
            f"with init_from={run} (init_parts=[backbone] by default; see configs/train.yaml) "
            "and model.pretrained=none.")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


class ResNet(nn.Module):
    """ResNet-18/34/50/152 trunk (torchvision), classifier removed.

    Input (N, 3, H, W) → features (N, 512) for 18/34, (N, 2048) for 50/152.

    Args:
        depth: 18, 34, 50 or 152.
        pretrained: ``none`` (random init), ``imagenet`` (torchvision's ImageNet weights, read
            from the torch hub cache; never downloaded), or a path to a state dict.
    """

    #: the sample keys forward_features reads, in argument order (affectlab.methods.base)
    input_keys: tuple[str, ...] = ("image",)

    def __init__(self, *, depth: int = 18, pretrained: str = "none") -> None:
        super().__init__()
        if depth not in _ARCHS:
            raise ValueError(f"model.depth={depth} is not supported; choose one of "
                             f"{sorted(_ARCHS)}")
        net = _ARCHS[depth][0](weights=None)
        path = pretrained_file(pretrained, option="model.pretrained", hub_name="imagenet",
                               hub_weights=_ARCHS[depth][1])
        if path is not None and pretrained == "imagenet":
            net.load_state_dict(load_state_dict_file(path))
        elif path is not None:
            state = {k: v for k, v in load_state_dict_file(path).items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise PretrainedWeightsError(
                    f"{path} does not hold ResNet-{depth} weights: missing {missing[:5]}, "
                    f"unexpected {unexpected[:5]}. Check model.depth.")
        self.num_features = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) → (N, num_features)."""
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)
