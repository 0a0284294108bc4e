"""IR face-recognition backbones: shapes at 112 and 224 px, parameter counts (a hand formula
and the published insightface counts), the unit's layer order, the input-size errors, and a
training step composed from the real configs. Big nets are built on the meta device (shapes
and counts without memory or compute)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from affectlab.models.irnet import IR_UNITS, IRNet, IRUnit
from affectlab.models.resnet import ResNet


def meta_irnet(**kwargs) -> IRNet:
    with torch.device("meta"):
        return IRNet(**kwargs)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("depth", [50, 101, 152])
@pytest.mark.parametrize("size, grid", [(112, 7), (224, 14)])
def test_output_shapes_at_112_and_224(depth, size, grid):
    net = meta_irnet(depth=depth, input_size=size)
    x = torch.empty(2, 3, size, size, device="meta")
    maps = net.stages(net.stem(x))
    assert maps.shape == (2, 512, grid, grid)                  # no pooling: the grid is kept
    assert net.output[3].in_features == 512 * grid * grid
    assert net.forward_features(x).shape == (2, 512) and net.num_features == 512


@pytest.mark.parametrize("size", [112, 224])
def test_ir50_real_forward_at_batch_one(size):
    torch.manual_seed(0)
    net = IRNet(depth=50, input_size=size, embedding=64).eval()
    with torch.no_grad():
        features = net.forward_features(torch.rand(1, 3, size, size))
    assert features.shape == (1, 64) and torch.isfinite(features).all()


# ------------------------------------------------------------------------ parameter counts
def hand_count(units: tuple[int, ...], size: int, embedding: int = 512) -> int:
    """Trainable parameters of the published layout, written out from the architecture."""
    widths = (64, 128, 256, 512)
    bn = lambda c: 2 * c                                        # noqa: E731  (γ, β)
    total = 3 * 64 * 3 * 3 + bn(64) + 64                        # stem conv, BN, PReLU
    cin = 64
    for c, n in zip(widths, units):
        for i in range(n):
            total += bn(cin) + cin * c * 9 + bn(c) + c + c * c * 9 + bn(c)
            if i == 0:                                          # stride 2: 1×1 projection + BN
                total += cin * c + bn(c)
            cin = c
    grid = size // 16
    total += bn(512) + (512 * grid * grid * embedding + embedding) + bn(embedding)
    return total


@pytest.mark.parametrize("depth", [50, 101, 152])
@pytest.mark.parametrize("size", [112, 224])
def test_parameter_counts_follow_the_architecture(depth, size):
    assert n_params(meta_irnet(depth=depth, input_size=size)) == hand_count(IR_UNITS[depth], size)


def test_parameter_counts_at_112_px():
    # the numbers in the module docstring
    assert {d: n_params(meta_irnet(depth=d)) for d in (34, 50, 101, 152)} == {
        34: 34_139_328, 50: 43_590_848, 101: 65_156_160, 152: 70_765_760}
    assert hand_count((3, 4, 14, 3), 224) - hand_count((3, 4, 14, 3), 112) == 38_535_168


def folded_count(net: IRNet) -> int:
    """Parameters once every BN that an inference graph folds into a neighbouring linear
    layer is folded: a BN right after a convolution or the FC (its scale and shift become
    that layer's weights and bias: 2c parameters → c, or → 0 when the layer has a bias), and
    the BN2d before dropout → flatten → FC (exactly absorbed by the FC: 2c → 0). The BN that
    opens each IR unit stays (a zero-padded 3×3 convolution cannot absorb it exactly)."""
    total = n_params(net)
    for sequence in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        layers = list(sequence)
        for before, layer in zip(layers, layers[1:]):
            if isinstance(layer, nn.modules.batchnorm._BatchNorm) and isinstance(
                    before, (nn.Conv2d, nn.Linear)):
                c = layer.num_features
                total -= 2 * c - (0 if before.bias is not None else c)
    output = list(net.output)
    assert isinstance(output[0], nn.BatchNorm2d) and isinstance(output[3], nn.Linear)
    return total - 2 * output[0].num_features


def test_inference_counts_match_the_published_insightface_models():
    # OpenVINO Open Model Zoo, face-recognition-resnet34-arcface (LResNet34E-IR,
    # ArcFace@ms1m-refine-v1): 34.129 MParams; face-recognition-resnet100-arcface
    # (LResNet100E-IR, ArcFace@ms1m-refine-v2): 65.131 MParams; both 112 px, 512-d. The
    # converted graphs hold BNs folded into their convolutions, hence folded_count.
    assert round(folded_count(meta_irnet(depth=34)) / 1e6, 3) == 34.129
    assert round(folded_count(meta_irnet(depth=101)) / 1e6, 3) == 65.131


def test_resnet152_matches_torchvision_published_count():
    import torchvision

    with torch.device("meta"):
        net = ResNet(depth=152)
    published = torchvision.models.ResNet152_Weights.IMAGENET1K_V1.meta["num_params"]
    assert n_params(net) == published - (2048 * 1000 + 1000)     # classifier removed
    assert net.num_features == 2048


# ----------------------------------------------------------------------------- layer order
def test_ir_unit_layer_order_and_shortcuts():
    unit = IRUnit(64, 128, stride=2)
    kinds = [type(m) for m in unit.residual]
    assert kinds == [nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d, nn.PReLU, nn.Conv2d,
                     nn.BatchNorm2d]
    first_conv, second_conv = unit.residual[1], unit.residual[4]
    assert first_conv.kernel_size == second_conv.kernel_size == (3, 3)
    assert first_conv.stride == (1, 1) and second_conv.stride == (2, 2)   # stride: 2nd conv
    assert unit.residual[0].num_features == 64 and unit.residual[3].num_parameters == 128
    assert [type(m) for m in unit.shortcut] == [nn.Conv2d, nn.BatchNorm2d]
    assert unit.shortcut[0].kernel_size == (1, 1) and unit.shortcut[0].stride == (2, 2)
    assert isinstance(IRUnit(64, 64, stride=1).shortcut, nn.Identity)
    # stage 1's first unit keeps 64 channels but halves the map: a projection (insightface)
    assert isinstance(IRUnit(64, 64, stride=2).shortcut, nn.Sequential)
    # unit(x) = residual(x) + shortcut(x), no activation after the sum
    unit.eval()
    x = torch.randn(1, 64, 8, 8)
    assert torch.allclose(unit(x), unit.residual(x) + unit.shortcut(x))


def test_irnet_stem_stages_and_output_layout():
    net = meta_irnet(depth=50, dropout=0.4)
    assert [type(m) for m in net.stem] == [nn.Conv2d, nn.BatchNorm2d, nn.PReLU]
    assert net.stem[0].kernel_size == (3, 3) and net.stem[0].stride == (1, 1)
    assert [len(stage) for stage in net.stages] == [3, 4, 14, 3]
    for stage, width in zip(net.stages, (64, 128, 256, 512)):
        assert [u.residual[4].stride for u in stage] == [(2, 2)] + [(1, 1)] * (len(stage) - 1)
        assert all(u.residual[4].out_channels == width for u in stage)
    assert [type(m) for m in net.output] == [nn.BatchNorm2d, nn.Dropout, nn.Flatten, nn.Linear,
                                             nn.BatchNorm1d]
    assert net.output[1].p == 0.4
    assert not any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)) for m in net.modules())


# ------------------------------------------------------------------------------ input size
def test_wrong_input_size_is_named():
    with pytest.raises(ValueError, match=r"model.input_size=96: IR nets take 112 or 224 px "
                                         r"faces \(dataset.image_size\)"):
        IRNet(depth=50, input_size=96)
    with pytest.raises(ValueError, match=r"model.depth=18 is not supported"):
        IRNet(depth=18)
    net = meta_irnet(depth=50, input_size=112)
    with pytest.raises(ValueError, match=r"built for 112 px faces .* got \(224, 224\)"):
        net.forward_features(torch.empty(1, 3, 224, 224, device="meta"))


def test_config_takes_the_input_size_from_the_dataset(tiny_cfg):
    from affectlab.config import ConfigError, check_config

    cfg = tiny_cfg("model=ir152", "dataset=bp4d")
    assert cfg.model.input_size == cfg.dataset.image_size == 224
    check_config(cfg.model, "model")
    cfg = tiny_cfg("model=ir101", "model.input_size=big")
    with pytest.raises(ConfigError, match=r"model.input_size='big' has the wrong type"):
        check_config(cfg.model, "model")


# --------------------------------------------------------------- a step from the configs
def test_ir50_training_step_through_the_composed_config(tiny_cfg):
    from hydra.utils import instantiate

    from affectlab.build import build_data, build_method

    cfg = tiny_cfg("model=ir50", "method.tasks=[au,identity]",
                   "+method.heads.identity={margin: arcface, scale: 16.0}")
    assert cfg.dataset.image_size == cfg.model.input_size == 112
    torch.manual_seed(0)
    data = build_data(cfg)
    method = build_method(cfg)
    method.prepare(data)
    assert isinstance(method.backbone, IRNet) and method.backbone.depth == 50
    assert method.heads.heads["identity"].margin == "arcface"
    batch = data.transform(default_collate([data.train[i] for i in (0, 7)]), train=True)
    optimizer = instantiate(cfg.optim.optimizer, _partial_=True)(method.parameters())
    head_before = method.heads.heads["identity"].linear.weight.detach().clone()
    fc_before = method.backbone.output[3].weight.detach().clone()
    losses = method(batch)
    assert set(losses) == {"loss", "au", "identity"}
    assert all(torch.isfinite(v) for v in losses.values())
    optimizer.zero_grad()
    losses["loss"].backward()
    optimizer.step()
    assert not torch.equal(method.heads.heads["identity"].linear.weight, head_before)
    assert not torch.equal(method.backbone.output[3].weight, fc_before)
    method.eval()
    predictions = method.predict(batch)
    assert predictions["identity"].shape == (2, 4) and predictions["au"].shape[0] == 2
