"""scripts/benchmark_clip_step.py --quick writes its JSON (timings are measured by the script,
never asserted; the channels-last-3d layout itself: tests/test_inputs.py)."""

from __future__ import annotations

import json

from .conftest import load_script


def test_quick_run_writes_both_variants(tmp_path):
    assert load_script("benchmark_clip_step").main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "clip_step.json").read_text())
    assert set(result["variants"]) == {"eager", "channels_last_3d"}
    assert result["variants"]["eager"]["speed_vs_eager"] == 1.0
    assert all(v["clips_per_s"] > 0 for v in result["variants"].values())
    assert result["settings"]["arch"] == "small" and result["precision"] == "fp32"
