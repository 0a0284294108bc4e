"""Inputs by key: a dataset with two input keys and a model that reads both train, resume
exactly and evaluate through the real trainer, untouched; a rule per input key in the data's
transform; channels-last only where PyTorch allows it."""

from __future__ import annotations

import functools
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from affectlab.data.contract import FaceData, FaceImageDataset, LabelTable, empty_labels
from affectlab.data.transforms import (
    BatchAugment,
    ClipRule,
    ImageRule,
    InputTransform,
    SpectrogramRule,
)
from affectlab.engine import Trainer, TrainerSettings, TrainingInterrupted
from affectlab.engine.loop import channels_last_3d_layout, channels_last_weights
from affectlab.methods.baseline import Baseline
from affectlab.utils import seed_everything

SIZE, WIDTH = 8, 5


class ImageAndVector(FaceImageDataset):
    """Faces made in memory, each with a feature vector (say, head pose and audio energy);
    AU c is present when vector[c] > 0, so only a model that reads the vector can learn it."""

    input_keys = ("image", "vector")

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        labels = empty_labels(n, num_aus=2)
        self.vectors = rng.normal(size=(n, WIDTH)).astype(np.float32)
        labels["au"] = (self.vectors[:, :2] > 0).astype(np.float32)
        labels["au_mask"][:] = True
        super().__init__(LabelTable(root=".", image_paths=[f"{i}.png" for i in range(n)],
                                    **labels), image_size=SIZE)
        self.images = torch.from_numpy(rng.random((n, 3, SIZE, SIZE), dtype=np.float32))

    def input_shapes(self) -> dict[str, list[int | None]]:
        return {"image": [3, SIZE, SIZE], "vector": [WIDTH]}

    def sample_image(self, row: int) -> torch.Tensor:
        return self.images[row]

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        return {**super().__getitem__(row), "vector": torch.from_numpy(self.vectors[row])}


class ImageVectorNet(nn.Module):
    """Reads both inputs: pooled convolution features beside a linear map of the vector."""

    input_keys = ("image", "vector")

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.linear = nn.Linear(WIDTH, 4)
        self.num_features = 8

    def forward_features(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(image).relu().mean(dim=(2, 3)), self.linear(vector)], 1)


def two_key_data() -> FaceData:
    return FaceData(name="image_and_vector", train=ImageAndVector(32, 0),
                    val=ImageAndVector(16, 1), test=ImageAndVector(16, 2),
                    label_names={"au": ["AU_a", "AU_b"]},
                    transform=InputTransform(mean=(0.5,) * 3, std=(0.25,) * 3,
                                             augment=BatchAugment(flip=0.5, seed=0)))


def fit(run_dir, resume=None):
    seed_everything(0)
    method = Baseline(model=ImageVectorNet, tasks=["au"])
    trainer = Trainer(TrainerSettings(max_epochs=3, batch_size=4, device="cpu",
                                      progress_bar=False, log_every_steps=1, resume=resume),
                      optimizer=functools.partial(torch.optim.Adam, lr=0.02), seed=0)
    data = two_key_data()
    result = trainer.fit(method, data, run_dir)
    return trainer, method, data, result


def test_two_input_keys_train_resume_exactly_and_evaluate(tmp_path, monkeypatch):
    trainer, method, data, result = fit(tmp_path / "full")
    assert result["steps"] == 24
    metrics = trainer.test(method, data)["test"]["au"]
    assert metrics["labels"] == ["AU_a", "AU_b"]
    assert metrics["f1_mean"] > 0.6          # the vector carries the labels: it was read

    calls = [0]
    terms = Baseline.terms

    def interrupting(self, batch):
        calls[0] += 1
        if calls[0] == 10:                   # mid-way through epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return terms(self, batch)

    monkeypatch.setattr(Baseline, "terms", interrupting)
    with pytest.raises(TrainingInterrupted):
        fit(tmp_path / "stopped")
    monkeypatch.undo()
    _, resumed, _, again = fit(tmp_path / "resumed",
                               resume=str(tmp_path / "stopped/checkpoints/last.pt"))
    assert again["steps"] == 24
    for (name, a), b in zip(method.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_model_reading_a_key_the_data_lacks_names_both():
    images_only = FaceData(name="images_only", train=FaceImageDataset(ImageAndVector(4, 0).table,
                                                                      image_size=SIZE),
                           val=None, test=None, label_names={"au": ["AU_a", "AU_b"]})
    with pytest.raises(ValueError, match=r"\['vector'\].*'images_only'.*\['image'\]"):
        Baseline(model=ImageVectorNet).prepare(images_only)


def test_image_rule_normalises_rgb_and_keeps_a_mask_channel():
    images = torch.rand(2, 4, 6, 6)
    out = ImageRule(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(images, train=False)
    assert torch.allclose(out[:, :3], (images[:, :3] - 0.5) / 0.25)
    assert torch.equal(out[:, 3], images[:, 3])
    # brightness and contrast leave the mask as it is; a flip moves it with the face
    jitter = ImageRule(mean=(0.0,) * 3, std=(1.0,) * 3,
                       augment=BatchAugment(brightness=0.3, contrast=0.3, seed=1))
    assert torch.equal(jitter(images, train=True)[:, 3], images[:, 3])
    flipped = ImageRule(mean=(0.0,) * 3, std=(1.0,) * 3,
                        augment=BatchAugment(flip=1.0, seed=1))(images, train=True)
    assert torch.allclose(flipped[:, 3], images[:, 3].flip(-1), atol=1e-6)


def test_clip_rule_moves_the_frames_of_a_clip_together():
    frame = torch.rand(1, 1, 3, 8, 8)
    clips = torch.cat([frame.expand(1, 4, 3, 8, 8), torch.rand(1, 4, 3, 8, 8)])   # (N, T, C, H, W)
    rule = ClipRule(mean=(0.5,) * 3, std=(0.5,) * 3,
                    augment=BatchAugment(rotation_deg=30, shift=0.2, brightness=0.2, seed=3))
    out = rule(clips, train=True)
    assert out.shape == clips.shape
    assert all(torch.allclose(out[0, t], out[0, 0]) for t in range(4))   # one draw per clip
    assert not torch.allclose(out[0, 0], (frame[0, 0] - 0.5) / 0.5)       # but augmented
    uint8 = (clips * 255).to(torch.uint8)
    assert torch.allclose(rule(uint8, train=False), (uint8.float() / 255 - 0.5) / 0.5)


def test_spectrogram_rule_and_keys_without_a_rule():
    transform = InputTransform(mean=(0.5,) * 3, std=(0.5,) * 3,
                               rules={"audio": SpectrogramRule(mean=-4.0, std=2.0)})
    batch = {"image": torch.rand(2, 3, 4, 4), "audio": torch.full((2, 1, 8, 10), -2.0),
             "vector": torch.arange(6.0).view(2, 3)}
    out = transform(dict(batch), train=False)
    assert torch.equal(out["audio"], torch.ones(2, 1, 8, 10))      # (−2 − (−4)) / 2
    assert torch.equal(out["vector"], batch["vector"])              # no rule: unchanged
    views = transform(dict(batch), train=True, views=2)
    assert views["image_views"].shape == (2, 2, 3, 4, 4) and views["audio_views"].shape[0] == 2
    with pytest.raises(ValueError, match="std=0"):
        SpectrogramRule(std=0)


def test_channels_last_only_for_four_dimensional_weights():
    net = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 2))
    channels_last_weights(net)         # module.to(memory_format=channels_last) refuses Conv3d
    assert net[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert net[0].weight.is_contiguous() and net[0].weight.dim() == 5
    with pytest.raises(RuntimeError):
        nn.Conv3d(3, 4, 3).to(memory_format=torch.channels_last)


def test_channels_last_3d_puts_every_conv3d_and_its_input_in_ndhwc_and_keeps_the_outputs():
    from affectlab.models.tsav import TSAV

    torch.manual_seed(0)
    model = TSAV(arch="small", small_widths=[8, 16]).eval()
    clips, audio = torch.randn(2, 4, 4, 16, 16), torch.randn(2, 1, 32, 40)
    before = model(clips, audio)
    channels_last_3d_layout(model)
    seen = []
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            assert module.weight.is_contiguous(memory_format=torch.channels_last_3d)
            module.register_forward_hook(lambda m, args, out: seen.append(
                args[0].is_contiguous(memory_format=torch.channels_last_3d)))
    after = model(clips, audio)
    assert len(seen) == 4 and all(seen)           # 2 widths × (spatial, temporal) convolutions
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_the_packed_store_leaves_splits_with_other_inputs_alone(tmp_path):
    from affectlab.data.packed import PackedImages, use_packed

    data = use_packed(two_key_data(), tmp_path / "packed", workers=0)
    assert not any(isinstance(getattr(data, s), PackedImages) for s in ("train", "val", "test"))
    assert not (tmp_path / "packed").exists() or not any((tmp_path / "packed").iterdir())


def test_another_rendering_of_an_input_takes_its_rule_and_leaves_its_draws_alone():
    from affectlab.data.transforms import BatchAugment, InputTransform

    def transform():
        return InputTransform(mean=(0.5,) * 3, std=(0.25,) * 3,
                              augment=BatchAugment(brightness=0.3, seed=3))

    images = torch.rand(4, 3, 8, 8)
    alone = transform()({"image": images.clone()}, train=True, views=2)
    both = transform()({"image": images.clone(), "image_alt": images.clone()}, train=True,
                       views=2)
    assert torch.equal(alone["image_views"], both["image_views"])
    assert both["image_alt_views"].shape == both["image_views"].shape
    assert not torch.equal(both["image_alt_views"], both["image_views"])   # its own draws
    plain = transform()({"image": images.clone(), "image_alt": images.clone()}, train=False)
    assert torch.allclose(plain["image_alt"], (images - 0.5) / 0.25)      # normalised as image


def test_view_strengths_multiply_the_augmentation_ranges_with_the_same_draws():
    from affectlab.data.transforms import BatchAugment, InputTransform

    images = torch.full((4, 3, 8, 8), 0.5)
    plain = BatchAugment(brightness=0.2, seed=5).augment(images.clone())
    strong = BatchAugment(brightness=0.2, seed=5).augment(images.clone(), strength=2.0)
    # brightness b·k on a flat grey image: the offsets double, the draws are the same
    assert torch.allclose(strong - 0.5, 2 * (plain - 0.5), atol=1e-6)

    def views(strengths):
        transform = InputTransform(mean=(0.0,) * 3, std=(1.0,) * 3,
                                   augment=BatchAugment(brightness=0.1, rotation_deg=5, seed=1))
        return transform({"image": torch.rand(4, 3, 8, 8, generator=torch.Generator()
                                              .manual_seed(0))}, train=True, views=2,
                         strengths=strengths)["image_views"]

    same, weak_strong = views(None), views((3.0, 1.0))
    assert torch.equal(views((1.0, 1.0)), same)
    assert torch.equal(weak_strong[1], same[1]) and not torch.equal(weak_strong[0], same[0])
    with pytest.raises(ValueError, match="1 view strengths for 2 views"):
        views((2.0,))
