"""Schedules, samplers, batch augmentation, config type checks and model contracts."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from affectlab.config import ConfigError, check_config
from affectlab.data.samplers import EpochSampler, InfiniteSampler
from affectlab.data.transforms import BatchAugment, normalize
from affectlab.models.resnet import PretrainedWeightsError, ResNet
from affectlab.models.small_cnn import SmallCNN
from affectlab.schedules import Constant, Cosine, StepDecay


def lrs(schedule, steps_per_epoch, total_steps, base_lr=1.0):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = schedule.build(optimizer, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    values = []
    for _ in range(total_steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_step_decay_divides_by_ten_every_n_epochs():
    values = lrs(StepDecay(step_epochs=2, gamma=0.1), steps_per_epoch=3, total_steps=18)
    expected = [1.0] * 6 + [0.1] * 6 + [0.01] * 6
    assert values == pytest.approx(expected)


def test_cosine_starts_at_base_and_halves_midway():
    values = lrs(Cosine(min_lr_ratio=0.0), steps_per_epoch=5, total_steps=10)
    assert values[0] == pytest.approx(1.0)
    assert values[5] == pytest.approx(0.5)
    assert values[-1] < 0.05


def test_constant_with_warmup_is_linear_then_flat():
    values = lrs(Constant(warmup_epochs=1), steps_per_epoch=4, total_steps=6)
    assert values == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_epoch_sampler_is_a_permutation_per_epoch_and_resumes_mid_epoch():
    sampler = EpochSampler(10, batch_size=3, seed=5)
    sampler.set_position(0)
    epoch0 = list(sampler)
    sampler.set_position(1)
    epoch1 = list(sampler)
    assert len(epoch0) == 9 and len(set(epoch0)) == 9  # incomplete last batch dropped
    assert epoch0 != epoch1
    sampler.set_position(1, start_batch=2)
    assert list(sampler) == epoch1[6:]


def test_epoch_sampler_shards_disjointly_across_ranks():
    shards = []
    for rank in range(2):
        sampler = EpochSampler(12, batch_size=2, seed=0, rank=rank, world_size=2)
        shards.append(set(sampler))
    assert not shards[0] & shards[1]
    assert len(shards[0] | shards[1]) == 12


def test_infinite_sampler_start_matches_stream_position():
    full = InfiniteSampler(7, seed=1)
    stream = iter(full)
    head = [next(stream) for _ in range(20)]
    resumed = iter(InfiniteSampler(7, seed=1, start=9))
    assert [next(resumed) for _ in range(11)] == head[9:]
    assert sorted(head[:7]) == list(range(7)) and sorted(head[7:14]) == list(range(7))


def test_batch_augment_is_deterministic_and_identity_when_disabled():
    images = torch.rand(4, 3, 16, 16)
    a = BatchAugment(scale=0.1, rotation_deg=10, shift=0.1, flip=0.5, brightness=0.2,
                     contrast=0.2, seed=3)
    b = BatchAugment(scale=0.1, rotation_deg=10, shift=0.1, flip=0.5, brightness=0.2,
                     contrast=0.2, seed=3)
    out = a.augment(images)
    assert torch.equal(out, b.augment(images))
    assert not torch.allclose(out, images)
    state = a.state_dict()
    next_a = a.augment(images)
    b.load_state_dict(state)
    assert torch.equal(next_a, b.augment(images))
    assert torch.equal(BatchAugment(seed=0).augment(images), images)


def test_flip_only_mirrors_the_image():
    images = torch.rand(8, 3, 6, 6)
    out = BatchAugment(flip=1.0, seed=0).augment(images)
    assert torch.allclose(out, images.flip(-1), atol=1e-5)


def test_normalize():
    images = torch.full((1, 3, 2, 2), 0.75)
    out = normalize(images, (0.5, 0.25, 0.75), (0.25, 0.5, 1.0))
    assert out[0, :, 0, 0].tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_check_config_rejects_wrong_type_and_unknown_key():
    node = OmegaConf.create({"_target_": "affectlab.schedules.StepDecay", "step_epochs": "ten"})
    with pytest.raises(ConfigError, match=r"optim.scheduler.step_epochs='ten'.*int"):
        check_config(node, "optim.scheduler")
    node = OmegaConf.create({"_target_": "affectlab.schedules.StepDecay", "step_epoch": 3})
    with pytest.raises(ConfigError, match="step_epoch is not a parameter.*step_epochs"):
        check_config(node, "optim.scheduler")
    node = OmegaConf.create({"_target_": "affectlab.schedules.StepDecay", "step_epochs": 3,
                             "gamma": 1})  # an int where a float is expected is fine
    check_config(node, "optim.scheduler")


@pytest.mark.parametrize("model", [SmallCNN(widths=[4, 8]), ResNet(depth=18)])
def test_models_follow_the_feature_contract(model):
    features = model.forward_features(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, model.num_features)


def test_missing_imagenet_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsError, match=r"resnet18-.*\.pth.*never downloaded"):
        ResNet(depth=18, pretrained="imagenet")
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        ResNet(depth=18, pretrained=str(tmp_path / "missing.pth"))


def test_resnet_loads_a_local_state_dict(tmp_path):
    source = ResNet(depth=18)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.net.state_dict().items()}},
               path)
    loaded = ResNet(depth=18, pretrained=str(path))
    assert torch.equal(loaded.net.conv1.weight, source.net.conv1.weight)
