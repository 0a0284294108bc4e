"""models/tsav.py: the two streams' shapes, gradients, the mask and audio switches, weights from
local files only, and one clear message for each wrong input."""

from __future__ import annotations

import pytest
import torch
import torchvision

from affectlab.methods.base import model_inputs
from affectlab.models.resnet import PretrainedWeightsError
from affectlab.models.tsav import TSAV


def tiny_batch(n: int = 2, channels: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"clip": torch.randn(n, 4, channels, 32, 32, generator=generator),
            "audio": torch.randn(n, 1, 16, 40, generator=generator)}


def test_two_streams_give_1024_features_and_the_gradient_reaches_both():
    model = TSAV()
    assert model.input_keys == ("clip", "audio") and model.num_features == 1024
    batch = tiny_batch()
    features = model.forward_features(*model_inputs(model, batch))
    assert features.shape == (2, 1024)
    features.square().mean().backward()
    assert model.video.stem[0].weight.grad.abs().sum() > 0
    assert model.video.stem[0].weight.grad[:, 3].abs().sum() > 0      # the mask channel's
    assert model.audio.conv1.weight.grad.abs().sum() > 0


def test_without_audio_the_model_reads_the_clip_only():
    model = TSAV(audio=False)
    assert model.input_keys == ("clip",) and model.num_features == 512
    assert not hasattr(model, "audio")
    batch = tiny_batch()
    del batch["audio"]
    assert model.forward_features(*model_inputs(model, batch)).shape == (2, 512)


def test_without_video_the_model_reads_the_audio_only():
    model = TSAV(video=False)
    assert model.input_keys == ("audio",) and model.num_features == 512
    assert not hasattr(model, "video")
    batch = tiny_batch()
    del batch["clip"]
    features = model.forward_features(*model_inputs(model, batch))
    assert features.shape == (2, 512)
    features.square().mean().backward()
    assert model.audio.conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="leave TSAV no stream"):
        TSAV(video=False, audio=False)


def test_the_mask_channel_is_read_only_when_the_mask_is_on():
    batch = tiny_batch()
    changed = {**batch, "clip": batch["clip"].clone()}
    changed["clip"][:, :, 3] += 1.0
    for mask, differs in ((True, True), (False, False)):
        torch.manual_seed(0)
        model = TSAV(mask=mask, audio=False).eval()
        assert model.video.stem[0].in_channels == (4 if mask else 3)
        with torch.no_grad():
            a, b = model(batch["clip"]), model(changed["clip"])
        assert (not torch.allclose(a, b)) == differs
    rgb_only = TSAV(mask=False, audio=False).eval()
    with torch.no_grad():
        assert rgb_only(tiny_batch(channels=3)["clip"]).shape == (2, 512)


def test_kinetics_weights_from_a_local_file_fill_the_rgb_filters(tmp_path):
    reference = torchvision.models.video.r2plus1d_18(weights=None)
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "r2plus1d.pth")
    model = TSAV(audio=False, pretrained_video=str(tmp_path / "r2plus1d.pth"))
    stem = model.video.stem[0].weight
    assert torch.equal(stem[:, :3], reference.stem[0].weight)
    assert not torch.equal(stem[:, 3], reference.stem[0].weight[:, 0])  # the mask's: own init
    assert torch.equal(model.video.layer4[1].conv2[0][0].weight,
                       reference.layer4[1].conv2[0][0].weight)
    audio = torchvision.models.resnet18(weights=None)
    torch.save(audio.state_dict(), tmp_path / "resnet18.pth")
    model = TSAV(pretrained_audio=str(tmp_path / "resnet18.pth"))
    assert torch.allclose(model.audio.conv1.weight,
                          audio.conv1.weight.mean(dim=1, keepdim=True))


def test_weights_are_never_downloaded_and_wrong_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(PretrainedWeightsError, match=r"kinetics needs the file .*never downloaded"):
        TSAV(pretrained_video="kinetics")
    with pytest.raises(PretrainedWeightsError, match="model.pretrained_audio=.*no such file"):
        TSAV(pretrained_audio=str(tmp_path / "missing.pth"))
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(PretrainedWeightsError, match="does not hold R\\(2\\+1\\)D-18 weights"):
        TSAV(pretrained_video=str(tmp_path / "r18.pth"))


def test_wrong_inputs_get_one_clear_message():
    model = TSAV()
    batch = tiny_batch()
    with pytest.raises(ValueError, match=r"reads clips \(N, T, C, H, W\)"):
        model(batch["clip"][:, 0], batch["audio"])
    with pytest.raises(ValueError, match="needs 4 channels per frame; the clip has 3"):
        model(tiny_batch(channels=3)["clip"], batch["audio"])
    with pytest.raises(ValueError, match=r"none for \['audio'\].*model.audio=false"):
        model(batch["clip"])
    with pytest.raises(KeyError, match=r"reads inputs \['clip', 'audio'\].*no \['audio'\]"):
        model_inputs(model, {"clip": batch["clip"]})


def test_the_small_arch_reads_the_same_inputs_for_cpu_runs():
    model = TSAV(arch="small", small_widths=[8, 16])
    assert model.input_keys == ("clip", "audio") and model.num_features == 32
    features = model.forward_features(*model_inputs(model, tiny_batch()))
    assert features.shape == (2, 32)
    features.sum().backward()
    assert model.video.body[0].weight.grad[:, 3].abs().sum() > 0       # the mask channel
    assert TSAV(arch="small", audio=False, mask=False, small_widths=[8]).num_features == 8
    with pytest.raises(ValueError, match="model.arch='x3d'"):
        TSAV(arch="x3d")
    with pytest.raises(ValueError, match="arch=small has no pretrained weights"):
        TSAV(arch="small", pretrained_video="kinetics")
