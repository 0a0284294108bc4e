"""Batch-level image transforms, run on the training device.

Augmentation draws its random numbers from its own ``torch.Generator`` (state saved in
checkpoints), so a resumed run augments exactly as an uninterrupted one would, and the whole
batch is warped with one ``grid_sample`` call on CPU or GPU.
"""

from __future__ import annotations

import functools
import math

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

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] → augmented (N, 3, H, W), same device and dtype."""
        n = images.shape[0]
        scale = 1 + self._uniform(n, self.scale)
        angle = self._uniform(n, math.radians(self.rotation_deg))
        shift = torch.stack([self._uniform(n, self.shift), self._uniform(n, self.shift)], 1) * 2
        mirror = torch.where(torch.rand(n, generator=self.generator) < self.flip, -1.0, 1.0)
        brightness = self._uniform(n, self.brightness)
        contrast = 1 + self._uniform(n, self.contrast)
        if self.scale or self.rotation_deg or self.shift or self.flip:
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                                 torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)
            theta = theta.to(images.device, images.dtype)
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                   align_corners=False)
        if self.brightness or self.contrast:
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            contrast = contrast.to(images).view(n, 1, 1, 1)
            brightness = brightness.to(images).view(n, 1, 1, 1)
            images = ((images - mean) * contrast + mean + brightness).clamp(0, 1)
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


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Per-channel (x − mean) / std for (N, 3, H, W)."""
    mean_t, std_t = _channel_stats(tuple(mean), tuple(std), images.device, images.dtype)
    return (images - mean_t) / std_t


class InputTransform:
    """What the data does to a batch on the training device before a method sees it.

    Per input key (today ``image``; clip and audio keys add their own rule here, not in the
    trainer): uint8 pixels (the packed store's) become float in [0, 1]; training batches are augmented (``augment``, drawn ``views`` times
    independently) and normalised; evaluation batches are only normalised.

    With ``views`` = k > 1 (``Method.augmented_views``) the batch also gets ``image_views``
    (k, N, 3, H, W), k independently augmented copies, and ``image`` is the first of them.

    Args:
        mean, std: per-channel normalisation of the images.
        augment: the training augmentation (None: train on un-augmented images).
    """

    def __init__(self, *, mean: tuple[float, ...], std: tuple[float, ...],
                 augment: BatchAugment | None = None) -> None:
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.augment = augment

    def __call__(self, batch: dict, *, train: bool, views: int = 1) -> dict:
        images = batch["image"]
        if images.dtype == torch.uint8:      # packed pixels, converted here on the device
            images = pixels_to_float(images)
        if not train or self.augment is None:
            batch["image"] = normalize(images, self.mean, self.std)
            if train and views > 1:
                batch["image_views"] = batch["image"].expand(views, *batch["image"].shape)
            return batch
        copies = [normalize(self.augment.augment(images), self.mean, self.std)
                  for _ in range(views)]
        batch["image"] = copies[0]
        if views > 1:
            batch["image_views"] = torch.stack(copies)
        return batch

    def state_dict(self) -> dict | None:
        """The augmentation's random state (checkpointed, so resume augments identically)."""
        return self.augment.state_dict() if self.augment is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.augment is not None and state:
            self.augment.load_state_dict(state)
