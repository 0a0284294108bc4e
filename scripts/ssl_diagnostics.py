"""What the unlabelled term did on the pool, per row of runs: the diagnostics every
semi-supervised method logs (:mod:`affectlab.methods.diagnostics`) over the last part of
training, mean ± std over a row's runs (seeds).

    python scripts/ssl_diagnostics.py ROW_DIR [...] [--task au] [--last 0.2] [--out FILE]

A row directory holds finished runs (``*/metrics.json``), e.g. a recipe stage folder
``results/ssl_synthetic/mean_teacher``; a run directory is a row of one. Per run the logged
values of the last ``--last`` fraction of its steps are averaged; the table gives
``<task>_disagreement``, ``<task>_pool_rate``, ``<task>_rate_to_prior`` and the unweighted
unlabelled term (``consistency`` or MLCR's ``co_regularization``). Runs are read, never
written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from affectlab.results import finished_runs, mean_std, publish_report

TERMS = ("consistency", "co_regularization")


def late_means(run_dir: Path, keys: list[str], last: float) -> dict[str, float]:
    """Mean of each logged ``train/<key>`` over the last ``last`` fraction of the steps."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/loss" in r]
    if not rows:
        raise SystemExit(f"{run_dir}/metrics.jsonl has no training steps logged")
    start = rows[-1]["step"] * (1.0 - last)
    late = [r for r in rows if r["step"] >= start]
    return {key: sum(r[f"train/{key}"] for r in late) / len(late)
            for key in keys if all(f"train/{key}" in r for r in late)}


def table(rows: dict[str, list[Path]], task: str, last: float) -> str:
    keys = [f"{task}_disagreement", f"{task}_pool_rate", f"{task}_rate_to_prior", *TERMS]
    lines = [f"Pool diagnostics over the last {last:.0%} of the steps (mean ± std over runs)", "",
             "| row | runs | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for name, runs in rows.items():
        values = [late_means(run, keys, last) for run in runs]
        cells = []
        for key in keys:
            found = [v[key] for v in values if key in v]
            mean, std = mean_std(found) if found else (None, None)
            cells.append("—" if mean is None else f"{mean:.3f} ± {std:.3f}")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="+", type=Path)
    parser.add_argument("--task", default="au")
    parser.add_argument("--last", type=float, default=0.2,
                        help="fraction of the steps at the end to average (default 0.2)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not 0.0 < args.last <= 1.0:
        parser.error(f"--last {args.last}: a fraction in (0, 1]")
    text = table({str(p): finished_runs(p) for p in args.rows}, args.task, args.last)
    return publish_report(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
