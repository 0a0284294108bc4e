"""scripts/seed_table.py: per-seed results and paired differences to a reference row."""

from __future__ import annotations

import json

import pytest

from .conftest import load_script


def write_run(run_dir, seed, f1, ap, tuned=0.5):
    run_dir.mkdir(parents=True)
    au = {"f1_mean": f1, "ap_mean": ap, "tuned": {"f1_mean": tuned}}
    (run_dir / "metrics.json").write_text(json.dumps(
        {"seed": seed, "best_epoch": 7, "tasks": {"au": au}}))


def test_paired_differences_by_seed(tmp_path):
    script = load_script("seed_table")
    write_run(tmp_path / "base/seed0", 0, 0.40, 0.45)
    write_run(tmp_path / "base/seed1", 1, 0.41, 0.44)
    write_run(tmp_path / "new/seed0", 0, 0.30, 0.46)
    write_run(tmp_path / "new/seed1", 1, 0.31, 0.47)
    write_run(tmp_path / "new/seed5", 5, 0.31, 0.90)      # no baseline seed 5: unpaired
    out = tmp_path / "t.md"
    assert script.main([f"base={tmp_path / 'base'}", f"new={tmp_path / 'new'}",
                        "--versus", "base", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert "| base | 0 | 40.0 | 50.0 | 45.0 | — | 7 |" in lines
    assert "| new | 1 | 31.0 | 50.0 | 47.0 | +3.0 | 7 |" in lines
    assert "| new | 5 | 31.0 | 50.0 | 90.0 | — | 7 |" in lines
    # +1.0 and +3.0: mean +2.0, sample std 1.4
    assert "| new | paired mean (2) | | | | +2.0 ± 1.4 | |" in lines
    with pytest.raises(SystemExit):
        script.main([f"base={tmp_path / 'base'}", "--versus", "other"])
    with pytest.raises(SystemExit, match="no 'expr' results"):
        script.main([f"base={tmp_path / 'base'}", "--task", "expr"])
