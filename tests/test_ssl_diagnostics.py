"""scripts/ssl_diagnostics.py: late-training means of the logged pool diagnostics per row."""

from __future__ import annotations

import json

from .conftest import load_script


def write_run(run_dir, rates):
    run_dir.mkdir(parents=True)
    lines = [{"step": step, "train/loss": 1.0, "train/au_disagreement": 0.1,
              "train/au_pool_rate": rate, "train/au_rate_to_prior": 2 * rate,
              "train/consistency": 0.01} for step, rate in rates]
    lines.append({"step": rates[-1][0], "val/au/f1_mean": 0.3})        # not a training row
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    (run_dir / "metrics.json").write_text("{}")


def test_late_means_per_row_over_seeds(tmp_path):
    script = load_script("ssl_diagnostics")
    write_run(tmp_path / "row/seed0", [(10, 0.5), (80, 0.1), (100, 0.3)])
    write_run(tmp_path / "row/seed1", [(10, 0.5), (80, 0.3), (100, 0.5)])
    (tmp_path / "row/unfinished").mkdir()
    means = script.late_means(tmp_path / "row/seed0", ["au_pool_rate", "co_regularization"], 0.2)
    assert means == {"au_pool_rate": 0.2}              # steps ≥ 80; a term not logged: absent
    out = tmp_path / "table.md"
    assert script.main([str(tmp_path / "row"), "--out", str(out)]) == 0
    text = out.read_text()
    # seed means 0.2 and 0.4: mean 0.3, sample std 0.141; rate to prior twice that
    assert "| 2 | 0.100 ± 0.000 | 0.300 ± 0.141 | 0.600 ± 0.283 | 0.010 ± 0.000 | — |" in text
