"""scripts/benchmark.py --quick: it runs every measurement and writes its JSON and table
(the numbers themselves are measured by the script, never asserted as timings here)."""

from __future__ import annotations

import json

import pytest

from .conftest import load_script

pytestmark = pytest.mark.slow


def test_quick_benchmark_writes_json_and_table(tmp_path, data_root):
    out = tmp_path / "bench"
    assert load_script("benchmark").main(["--quick", "--out", str(out), f"dataset.root={data_root}",
                               f"packed_dir={tmp_path / 'packed'}", "trainer.device=cpu"]) == 0
    result = json.loads((out / "benchmark.json").read_text())
    assert result["settings"]["packed"] is True and result["settings"]["batch_size"] == 8
    step = result["step"]
    assert step["framework_ms"] > 0 and step["bare_ms"] > 0
    assert step["ratio"] == pytest.approx(step["framework_ms"] / step["bare_ms"], rel=1e-2)
    assert len(step["ratio_per_round"]) == 2
    assert result["pipeline"]["loader_images_per_s"] > 0
    methods = result["methods"]
    # MLCR's step carries the pool batch too: twice the faces of the baseline's
    assert methods["mlcr"]["faces_per_step"] == 2 * methods["baseline"]["faces_per_step"] == 16
    assert methods["baseline"]["step_over_baseline"] == 1.0
    assert result["peak_rss_mb"] > 0
    table = (out / "benchmark.md").read_text()
    assert "framework / bare" in table and "method=mlcr" in table
