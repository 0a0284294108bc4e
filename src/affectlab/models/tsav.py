"""The two-stream aural-visual model, TSAV (Kuhnke et al., FG 2020), as a feature extractor.

Visual stream: torchvision's R(2+1)D-18 on a clip of T frames, its first convolution widened
to 4 input channels (RGB and the landmark mask, :mod:`affectlab.data.clips`); audio stream:
ResNet-18 on the log-mel spectrogram of the window around the labelled frame (1 channel,
:mod:`affectlab.data.audio`); the two 512-d features concatenated:

    clip (N, T, C, H, W) ──R(2+1)D-18──► (N, 512) ┐
                                                   ├─ cat ─► (N, 1024) → the method's task heads
    audio (N, 1, F, S) ──ResNet-18────► (N, 512) ┘

``audio=false`` drops the audio stream (features (N, 512), the model reads the clip only);
``video=false`` drops the visual stream (the model reads the audio only: what sound alone
carries); ``mask=false`` feeds the clip's RGB channels only (a 3-channel stem; a 4-channel
clip's mask is ignored). TSAV's released model has a plain linear layer on the 1,024 features
for all tasks; here the heads are the method's (one per task, ``methods/heads.py``).

``arch=small`` swaps both streams for small CNNs with the same inputs and fusion, for CPU runs
(as ``model=small_cnn`` is to the image networks): a (2+1)D stack on the clip
(:class:`SmallClipCNN`) and :class:`~affectlab.models.small_cnn.SmallCNN` on the spectrogram,
``small_widths`` channels each: a training step on 8 clips of 8 frames at 64 px took 0.36 s
instead of 14 s on one thread of the 2-core development machine (about 40× faster).

Pretrained weights (``arch=r2plus1d_18``) are read from local files only:
``pretrained_video=kinetics`` reads torchvision's Kinetics-400 R(2+1)D-18 file from the torch
hub cache (TSAV's start), or a path; the RGB filters of the first convolution are copied and
the mask channel's keep their random initialisation, as TSAV did. ``pretrained_audio``: a path
to ResNet-18 weights (TSAV trained its audio stream from scratch; its first convolution then
takes the mean of the RGB filters).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from affectlab.models.resnet import PretrainedWeightsError, load_state_dict_file, pretrained_file
from affectlab.models.small_cnn import SmallCNN

ARCHS: tuple[str, ...] = ("r2plus1d_18", "small")


def _widen_first_conv(conv: nn.Module, channels: int) -> nn.Module:
    """A copy of ``conv`` (Conv2d or Conv3d) taking ``channels`` input channels."""
    kind = type(conv)
    return kind(channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                padding=conv.padding, bias=conv.bias is not None)


def _load_into(net: nn.Module, path, first_conv: str, *, what: str, average: bool) -> None:
    """Load a state dict into ``net`` except its classifier; the first convolution's filters
    go into the first input channels (``average``: their mean over RGB, for 1 channel)."""
    state = {k: v for k, v in load_state_dict_file(path).items() if not k.startswith("fc.")}
    own = net.get_submodule(first_conv).weight
    weights = state.pop(f"{first_conv}.weight", None)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.") and k != f"{first_conv}.weight"]
        if missing or unexpected or weights is None:
            raise RuntimeError(f"missing {missing[:5] or [first_conv]}, unexpected "
                               f"{unexpected[:5]}")
        with torch.no_grad():
            if average:
                own.copy_(weights.mean(dim=1, keepdim=True).expand_as(own))
            else:
                own[:, :weights.shape[1]].copy_(weights)
    except RuntimeError as error:       # names or shapes of another network
        detail = str(error).strip().splitlines()[-1].strip()
        raise PretrainedWeightsError(f"{path} does not hold {what} weights ({detail})") \
            from None


class SmallClipCNN(nn.Module):
    """A small (2+1)D network for clips on the CPU: per width w, a spatial 1×3×3 convolution
    (the first with stride 2, as R(2+1)D's stem), a temporal 3×1×1 one (each with BatchNorm
    and ReLU) and a 1×2×2 max-pool; then the mean over time and space.
    (N, C, T, H, W) → (N, widths[-1])."""

    def __init__(self, *, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k, width in enumerate(widths):
            stride = (1, 2, 2) if k == 0 else 1
            layers += [nn.Conv3d(in_channels, width, (1, 3, 3), stride=stride, padding=(0, 1, 1),
                                 bias=False),
                       nn.BatchNorm3d(width), nn.ReLU(inplace=True),
                       nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0), bias=False),
                       nn.BatchNorm3d(width), nn.ReLU(inplace=True),
                       nn.MaxPool3d((1, 2, 2))]
            in_channels = width
        self.body = nn.Sequential(*layers)
        self.num_features = in_channels

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.body(clip).mean(dim=(2, 3, 4))


def _video_stream(arch: str, channels: int, small_widths: list[int],
                  pretrained: str) -> nn.Module:
    """The visual stream: (N, C, T, H, W) → (N, num_features)."""
    if arch == "small":
        return SmallClipCNN(in_channels=channels, widths=small_widths)
    video = torchvision.models.video.r2plus1d_18(weights=None)
    video.stem[0] = _widen_first_conv(video.stem[0], channels)
    path = pretrained_file(pretrained, option="model.pretrained_video", hub_name="kinetics",
                           hub_weights=torchvision.models.video.R2Plus1D_18_Weights.DEFAULT)
    if path is not None:
        _load_into(video, path, "stem.0", what="R(2+1)D-18", average=False)
    video.fc = nn.Identity()
    video.num_features = 512
    return video


def _audio_stream(arch: str, small_widths: list[int], pretrained: str) -> nn.Module:
    """The audio stream: (N, 1, F, S) → (N, num_features)."""
    if arch == "small":
        return SmallCNN(widths=small_widths, in_channels=1)
    sound = torchvision.models.resnet18(weights=None)
    sound.conv1 = _widen_first_conv(sound.conv1, 1)
    if pretrained != "none":
        path = pretrained_file(pretrained, option="model.pretrained_audio", hub_name="imagenet",
                               hub_weights=torchvision.models.ResNet18_Weights.DEFAULT)
        _load_into(sound, path, "conv1", what="ResNet-18", average=True)
    sound.fc = nn.Identity()
    sound.num_features = 512
    return sound


class TSAV(nn.Module):
    """TSAV's two streams (module docstring). Inputs: ``clip`` (N, T, C, H, W) with C = 4 (or 3
    with ``mask=false``), ``audio`` (N, 1, F, S); output (N, 1024), or (N, 512) with one
    stream switched off.

    Args:
        audio: use the audio stream (the model then reads ``audio``).
        video: use the visual stream (the model then reads ``clip``).
        mask: feed the landmark-mask channel (4 input channels) or RGB only (3).
        arch: ``r2plus1d_18`` (TSAV's streams) or ``small`` (small CNNs, for CPU runs).
        small_widths: channels of the small streams' blocks (``arch=small``).
        pretrained_video: ``none``, ``kinetics`` (torchvision's file in the torch hub cache)
            or a path to R(2+1)D-18 weights.
        pretrained_audio: ``none`` or a path to ResNet-18 weights.
    """

    def __init__(self, *, audio: bool = True, video: bool = True, mask: bool = True,
                 arch: str = "r2plus1d_18",
                 small_widths: list[int] = (16, 32, 64, 128), pretrained_video: str = "none",
                 pretrained_audio: str = "none") -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"model.arch={arch!r}: one of {', '.join(ARCHS)}")
        if arch == "small" and (pretrained_video != "none" or pretrained_audio != "none"):
            raise ValueError("model.arch=small has no pretrained weights: set "
                             "model.pretrained_video=none and model.pretrained_audio=none")
        if not (audio or video):
            raise ValueError("model.audio=false and model.video=false leave TSAV no stream: "
                             "switch one on")
        self.use_audio, self.use_video, self.use_mask = bool(audio), bool(video), bool(mask)
        self.input_keys: tuple[str, ...] = (("clip",) if self.use_video else ()) \
            + (("audio",) if self.use_audio else ())
        self.num_features = 0
        if self.use_video:
            self.video = _video_stream(arch, 4 if self.use_mask else 3, list(small_widths),
                                       pretrained_video)
            self.num_features += self.video.num_features
        if self.use_audio:
            self.audio = _audio_stream(arch, list(small_widths), pretrained_audio)
            self.num_features += self.audio.num_features

    def forward_features(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The inputs of ``input_keys`` in that order — clip (N, T, C, H, W), audio
        (N, 1, F, S) — → (N, num_features)."""
        if len(inputs) != len(self.input_keys):
            missing = list(self.input_keys[len(inputs):])
            hint = " (set model.audio=false for clips without sound)" if "audio" in missing else ""
            raise ValueError(f"TSAV with model.audio={self.use_audio}, model.video="
                             f"{self.use_video} reads {list(self.input_keys)}; it got "
                             f"{len(inputs)} input(s), none for {missing}{hint}")
        named = dict(zip(self.input_keys, inputs))
        features = []
        if self.use_video:
            features.append(self._video_features(named["clip"]))
        if self.use_audio:
            features.append(self.audio(named["audio"]))
        return torch.cat(features, dim=1) if len(features) > 1 else features[0]

    def _video_features(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dim() != 5:
            raise ValueError(f"TSAV reads clips (N, T, C, H, W); got a tensor of shape "
                             f"{tuple(clip.shape)}")
        channels = 4 if self.use_mask else 3
        if clip.shape[2] < channels:
            raise ValueError(f"TSAV with model.mask={self.use_mask} needs {channels} channels per "
                             f"frame; the clip has {clip.shape[2]} (set model.mask=false for "
                             "clips without a landmark mask)")
        # torchvision's video networks take (N, C, T, H, W)
        return self.video(clip[:, :, :channels].transpose(1, 2))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_features(*inputs)
