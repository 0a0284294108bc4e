"""scripts/benchmark_clip_step.py: the channels-last-3d variant computes the same step in NDHWC
order, and --quick writes its JSON (timings are measured by the script, never asserted)."""

from __future__ import annotations

import json

import torch

from affectlab.models.tsav import TSAV

from .conftest import load_script


def test_channels_last_3d_keeps_the_outputs_and_puts_every_conv3d_in_ndhwc():
    bench = load_script("benchmark_clip_step")
    torch.manual_seed(0)
    model = bench.StepModel(TSAV(arch="small", small_widths=[8, 16]), outputs=3).eval()
    clips, audio = torch.randn(2, 4, 4, 16, 16), torch.randn(2, 1, 32, 40)
    before = model(clips, audio)
    seen = []
    bench.to_channels_last_3d(model)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            assert module.weight.is_contiguous(memory_format=torch.channels_last_3d)
            module.register_forward_hook(lambda m, args, out: seen.append(
                args[0].is_contiguous(memory_format=torch.channels_last_3d)))
    after = model(clips, audio)
    assert seen and all(seen)                    # every Conv3d read NDHWC input
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_quick_run_writes_both_variants(tmp_path):
    assert load_script("benchmark_clip_step").main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "clip_step.json").read_text())
    assert set(result["variants"]) == {"eager", "channels_last_3d"}
    assert result["variants"]["eager"]["speed_vs_eager"] == 1.0
    assert all(v["clips_per_s"] > 0 for v in result["variants"].values())
    assert result["settings"]["arch"] == "small" and result["precision"] == "fp32"
