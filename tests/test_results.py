"""Gathering metrics.json files into mean ± std tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affectlab.results import collect, markdown_table, mean_std


def fake_run(root: Path, name: str, overrides: list[str], seed: int, f1: list[float]) -> None:
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra/overrides.yaml").write_text(
        "".join(f"- {o}\n" for o in overrides + [f"seed={seed}", "trainer.progress_bar=false"]))
    metrics = {"method": "baseline", "dataset": "synthetic", "seed": seed, "split": "test",
               "tasks": {"au": {"labels": ["AU1", "AU2"], "f1": f1,
                                "f1_mean": sum(f1) / len(f1)}}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_runs_differing_only_in_seed_form_one_row(tmp_path):
    fake_run(tmp_path, "0", ["experiment=a"], 0, [0.2, 0.4])
    fake_run(tmp_path, "1", ["experiment=a"], 1, [0.4, 0.6])
    fake_run(tmp_path, "2", ["experiment=b"], 0, [0.5, 0.5])
    rows = {row.name: row for row in collect(tmp_path)}
    assert set(rows) == {"experiment=a", "experiment=b"}
    assert [r["seed"] for r in rows["experiment=a"].runs] == [0, 1]
    table = markdown_table(list(rows.values()))
    # experiment=a: per-AU means 30.0 and 50.0; mean F1 over seeds 40.0 ± stdev(30, 50) = 14.1
    assert "| experiment=a | 2 | 30.0 | 50.0 | 40.0 ± 14.1 |" in table
    assert "| experiment=b | 1 | 50.0 | 50.0 | 50.0 ± 0.0 |" in table


def test_mean_std():
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))
    assert mean_std([5.0]) == (5.0, 0.0)
