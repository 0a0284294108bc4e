"""scripts/analyze_runs.py: re-predicts finished runs from their best checkpoints."""

from __future__ import annotations

import pytest

from affectlab.train import run

from .conftest import load_script


def test_analysis_of_a_row_reproduces_the_runs_f1_and_writes_markdown(tiny_cfg, tmp_path, capsys):
    row = tmp_path / "runs" / "baseline"
    f1_means = []
    for seed in (0, 1):
        metrics = run(tiny_cfg(f"seed={seed}", "trainer.max_epochs=2"), row / f"seed{seed}")
        f1_means.append(metrics["tasks"]["au"]["f1_mean"])
    analyze_runs = load_script("analyze_runs")
    out = tmp_path / "analysis.md"
    assert analyze_runs.main([str(row), "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.startswith("| baseline |")]
    assert len(lines) == 4  # the summary and the three per-label tables
    cells = [c.strip() for c in lines[0].strip("|").split("|")]
    assert cells[1] == "2"
    # the best checkpoints, predicted again, give the F1 that metrics.json reports (non-zero
    # here, so the comparison is not trivially 0 = 0)
    assert min(f1_means) > 0
    mean_f1 = float(cells[2].split(" ± ")[0])
    assert mean_f1 == pytest.approx(100 * sum(f1_means) / 2, abs=0.05 + 1e-9)
    assert 0.0 <= float(cells[4].split(" ± ")[0]) <= 100.0
    assert "| row | AU1 | AU2 |" in text


def test_a_folder_without_runs_is_a_clear_error(tmp_path):
    analyze_runs = load_script("analyze_runs")
    with pytest.raises(SystemExit, match=r"no finished run \(metrics.json\)"):
        analyze_runs.main([str(tmp_path)])


def test_rows_of_equal_folder_names_stay_apart():
    from pathlib import Path

    names = load_script("analyze_runs").row_names([Path("results/a/mlcr"), Path("results/b/mlcr"),
                                     Path("results/b/baseline")])
    assert names == ["a/mlcr", "b/mlcr", "b/baseline"]
    assert load_script("analyze_runs").row_names([Path("x/one"), Path("y/two")]) == ["one", "two"]
