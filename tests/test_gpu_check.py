"""scripts/gpu_check.sh --quick: the GPU machine's one prepared command, run tiny on the CPU,
passes every step and writes its summary (the numbers are measured, never asserted as
timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow      # ~40 s of CPU, 75 s wall on the shared 2-core machine

# What the device tool brings back from $OUT: at most 8 files, none in sub-folders here.
OUTPUT_FILES = {"gpu_check.json", "gpu_check.md", "env.log", "benchmark.log", "tests.log",
                "default_job.log", "metrics.json", "clip_step.json"}


def test_quick_gpu_check_passes_every_step_on_the_cpu(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)}
    env.pop("OUT", None)           # the device's output folder, never this test's
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("GPU_CHECK_TESTS", None)
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--quick", "--out", str(out),
         "--work", str(work), "--python", sys.executable],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    console = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert (out / "gpu_check.json").is_file(), console
    summary = json.loads((out / "gpu_check.json").read_text())
    assert proc.returncode == 0, console
    assert summary["mode"] == "quick" and summary["device"] == "cpu"
    assert summary["finished"] is True and summary["all_ok"] is True
    steps = summary["steps"]
    assert list(steps) == ["env", "benchmark", "clip_step", "tests", "default_job"]
    for name, step in steps.items():
        assert step["status"] == "ok", (name, step)
        assert step["seconds"] > 0
    assert steps["env"]["cuda_available"] in (True, False) and summary["torch"]

    rows = steps["benchmark"]["rows"]
    assert len(rows) >= 1
    for row in rows.values():
        assert row["status"] == "ok" and row["device"] == "cpu" and row["compile"] is False
        assert row["framework_images_per_s"] > 0 and row["bare_images_per_s"] > 0
        assert row["framework_over_bare"] == pytest.approx(
            row["framework_ms"] / row["bare_ms"], rel=2e-2)
        assert row["result"]["settings"]["batch_size"] == 8

    clip = steps["clip_step"]
    assert set(clip["variants"]) == {"eager", "channels_last_3d"}
    assert all(v["clips_per_s"] > 0 for v in clip["variants"].values())
    assert clip["settings"]["arch"] == "small" and clip["precision"] == "fp32"

    tests = steps["tests"]
    assert tests["passed"] > 0 and not tests.get("failed") and not tests.get("errors")

    job = steps["default_job"]
    assert job["device"] == "cpu" and job["steps"] == 2
    assert job["throughput_images_per_s"] > 0
    assert isinstance(job["score"], (int, float))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"] == "cpu" and metrics["score"] == job["score"]

    # a flat output folder the device tool can bring back whole; the work folder kept (--work)
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    assert "all steps ok" in (out / "gpu_check.md").read_text()
    assert (work / "default_job" / "metrics.json").is_file()
