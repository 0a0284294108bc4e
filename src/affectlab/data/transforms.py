"""Batch-level image transforms, run on the training device.

Augmentation draws its random numbers from its own ``torch.Generator`` (state saved in
checkpoints), so a resumed run augments exactly as an uninterrupted one would, and the whole
batch is warped with one ``grid_sample`` call on CPU or GPU.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F


def pixels_to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any shape) → float32 in [0, 1], x / 255: the one conversion, wherever it
    runs (in the loader for decoded images, on the device for packed ones), so both give the
    same values."""
    return pixels.float().div_(255.0)


class BatchAugment:
    """Random similarity warp, horizontal flip and brightness/contrast jitter, then normalise.

    Per sample: scale s ~ U(1 − scale, 1 + scale), rotation θ ~ U(−rotation_deg, rotation_deg),
    shift t ~ U(−shift, shift) (fraction of the image side), flip with probability ``flip``;
    brightness b ~ U(−brightness, brightness) added, contrast c ~ U(1 − contrast, 1 + contrast)
    around the image mean. Finally x ← (x − mean) / std per channel.

    Args:
        scale, rotation_deg, shift, flip, brightness, contrast: augmentation strengths
            (0 disables each).
        seed: seed of the augmentation generator.
    """

    def __init__(self, *, scale: float = 0.0, rotation_deg: float = 0.0, shift: float = 0.0,
                 flip: float = 0.0, brightness: float = 0.0, contrast: float = 0.0,
                 seed: int = 0) -> None:
        self.scale = scale
        self.rotation_deg = rotation_deg
        self.shift = shift
        self.flip = flip
        self.brightness = brightness
        self.contrast = contrast
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, n: int, half_width: float) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator) * 2 - 1) * half_width

    def augment(self, images: torch.Tensor, group: int = 1,
                strength: float = 1.0) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] → augmented (N, C, H, W), same device and dtype.

        Every channel is warped alike; brightness and contrast change the first three (RGB)
        only, so a fourth channel (a landmark mask) keeps its values. ``group`` = T: each run
        of T consecutive images (the frames of one clip) shares one draw. ``strength`` = k
        multiplies every range but the flip's (k × scale, k × rotation_deg, ...): the strong
        view of weak → strong consistency; the random draws are the same for any k."""
        n = images.shape[0] // group
        k = float(strength)
        scale = 1 + self._uniform(n, self.scale) * k
        angle = self._uniform(n, math.radians(self.rotation_deg)) * k
        shift = torch.stack([self._uniform(n, self.shift), self._uniform(n, self.shift)], 1) * 2 * k
        mirror = torch.where(torch.rand(n, generator=self.generator) < self.flip, -1.0, 1.0)
        brightness = self._uniform(n, self.brightness) * k
        contrast = 1 + self._uniform(n, self.contrast) * k
        if group > 1:
            scale, angle, shift, mirror, brightness, contrast = (
                v.repeat_interleave(group, dim=0)
                for v in (scale, angle, shift, mirror, brightness, contrast))
            n = n * group
        if self.scale or self.rotation_deg or self.shift or self.flip:
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                                 torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)
            theta = theta.to(images.device, images.dtype)
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                   align_corners=False)
        if self.brightness or self.contrast:
            rgb, extra = (images, None) if images.shape[1] <= 3 else (images[:, :3], images[:, 3:])
            mean = rgb.mean(dim=(1, 2, 3), keepdim=True)
            contrast = contrast.to(rgb).view(n, 1, 1, 1)
            brightness = brightness.to(rgb).view(n, 1, 1, 1)
            rgb = ((rgb - mean) * contrast + mean + brightness).clamp(0, 1)
            images = rgb if extra is None else torch.cat([rgb, extra], dim=1)
        return images

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])


@functools.lru_cache(maxsize=16)
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # Built once per (stats, device, dtype): the training loop normalises every batch, and a
    # fresh host-to-device copy per batch is pure overhead on a GPU.
    return (torch.tensor(mean, device=device, dtype=dtype).view(1, -1, 1, 1),
            torch.tensor(std, device=device, dtype=dtype).view(1, -1, 1, 1))


def normalize(images: torch.Tensor, mean: tuple[float, ...],
              std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel (x − mean) / std for (N, C, H, W); with C greater than the statistics' length
    (an RGB image plus a landmark-mask channel), the channels past it are left as they are."""
    mean_t, std_t = _channel_stats(tuple(mean), tuple(std), images.device, images.dtype)
    if images.shape[1] > len(mean):
        k = len(mean)
        return torch.cat([(images[:, :k] - mean_t) / std_t, images[:, k:]], dim=1)
    return (images - mean_t) / std_t


def as_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (the packed store's, or a decoded clip's) → float in [0, 1]; float
    inputs as they are."""
    return pixels_to_float(pixels) if pixels.dtype == torch.uint8 else pixels


class ImageRule:
    """(N, C, H, W) images, C = 3 (RGB) or 4 (RGB and a landmark mask): to float, augmented
    when training (``augment``), RGB normalised by ``mean``/``std``."""

    def __init__(self, *, mean: tuple[float, ...], std: tuple[float, ...],
                 augment: BatchAugment | None = None) -> None:
        self.mean, self.std, self.augment = tuple(mean), tuple(std), augment

    def __call__(self, value: torch.Tensor, *, train: bool,
                 strength: float = 1.0) -> torch.Tensor:
        images = as_float(value)
        if train and self.augment is not None:
            images = self.augment.augment(images, strength=strength)
        return normalize(images, self.mean, self.std)


class ClipRule(ImageRule):
    """(N, T, C, H, W) clips: as :class:`ImageRule` frame by frame, the frames of one clip
    sharing one augmentation draw (a clip moves as a whole)."""

    def __call__(self, value: torch.Tensor, *, train: bool,
                 strength: float = 1.0) -> torch.Tensor:
        n, frames = value.shape[:2]
        images = as_float(value).flatten(0, 1)
        if train and self.augment is not None:
            images = self.augment.augment(images, group=frames, strength=strength)
        return normalize(images, self.mean, self.std).unflatten(0, (n, frames))


class SpectrogramRule:
    """(N, 1, F, T) spectrograms (log-mel of a clip's audio): (x − mean) / std with one mean
    and std (of the training split's values); no augmentation."""

    def __init__(self, *, mean: float = 0.0, std: float = 1.0) -> None:
        if not std > 0:
            raise ValueError(f"spectrogram std={std}: must be > 0")
        self.mean, self.std = float(mean), float(std)

    def __call__(self, value: torch.Tensor, *, train: bool) -> torch.Tensor:
        return (value.float() - self.mean) / self.std


#: suffix of an input key holding another rendering of that input (the synthetic pool's
#: ``image_alt``): it is transformed by the input's rule
ALTERNATE = "_alt"


class InputTransform:
    """What the data does to a batch on the training device before a method sees it: a rule
    per input key (:class:`ImageRule` for ``image`` by default; :class:`ClipRule`,
    :class:`SpectrogramRule` or any callable ``rule(value, train=) -> value`` for others).
    Keys without a rule (targets, vectors) pass unchanged.

    With ``views`` = k > 1 (``Method.augmented_views``) a training batch also gets
    ``<key>_views`` (k, N, ...) for each key with a rule: k independently augmented copies,
    ``<key>`` being the first of them. ``<key>_alt`` (another rendering of input ``key``,
    e.g. the synthetic pool's ``image_alt``) goes through ``key``'s rule too.

    Args:
        mean, std: per-channel normalisation of the images (the ``image`` rule).
        augment: the training augmentation of the images (None: un-augmented).
        rules: rules of other input keys (or another ``image`` rule).
        flatten: keys of per-frame values (N, T, ·) made (N·T, ·) after the rules (windows of
            frames, :mod:`affectlab.data.sequences`).
    """

    def __init__(self, *, mean: tuple[float, ...], std: tuple[float, ...],
                 augment: BatchAugment | None = None,
                 rules: dict[str, Any] | None = None, flatten: tuple[str, ...] = ()) -> None:
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.augment = augment
        self.rules: dict[str, Any] = {"image": ImageRule(mean=mean, std=std, augment=augment),
                                      **(rules or {})}
        self.flatten = tuple(flatten)

    def __call__(self, batch: dict, *, train: bool, views: int = 1,
                 strengths: tuple[float, ...] | None = None) -> dict:
        """``strengths``: per view, a multiple of the augmentation's ranges (None: 1 each),
        e.g. (3.0, 1.0): view 0 strongly, view 1 weakly augmented."""
        if strengths is not None and len(strengths) != views:
            raise ValueError(f"{len(strengths)} view strengths for {views} views")
        for key, rule in self.rules.items():
            # ``<key>_alt``, another rendering of the same input, takes the same rule (after
            # the input itself, whose augmentation draws are then those of a batch without it)
            for name in (key, f"{key}{ALTERNATE}"):
                if name in batch:
                    self._apply(batch, name, rule, train, views, strengths)
        for key in self.flatten:          # windows of frames: one row per frame
            if key in batch:
                batch[key] = batch[key].flatten(0, 1)
        return batch

    @staticmethod
    def _apply(batch: dict, key: str, rule: Any, train: bool, views: int,
               strengths: tuple[float, ...] | None) -> None:
        """``batch[key]`` through ``rule``; with ``views`` > 1 also ``batch[key_views]``."""
        raw = batch[key]
        augmented = getattr(rule, "augment", None) is not None

        def view(k: int, train: bool) -> torch.Tensor:
            if augmented and train and strengths is not None and strengths[k] != 1.0:
                return rule(raw, train=train, strength=strengths[k])
            return rule(raw, train=train)

        copies = [view(0, train)]
        if train and views > 1:
            copies += ([view(k, True) for k in range(1, views)] if augmented
                       else [copies[0]] * (views - 1))
            batch[f"{key}_views"] = (torch.stack(copies) if augmented
                                     else copies[0].expand(views, *copies[0].shape))
        batch[key] = copies[0]

    def state_dict(self) -> dict | None:
        """The augmentation's random state (checkpointed, so resume augments identically)."""
        return self.augment.state_dict() if self.augment is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.augment is not None and state:
            self.augment.load_state_dict(state)
