"""Per-seed results of rows of runs, and each seed's difference to a reference row.

    python scripts/seed_table.py NAME=ROW_DIR [...] [--versus NAME] [--task au] [--out FILE]

A row directory holds finished runs (``*/metrics.json``, e.g. a recipe stage folder). One line
per run: the task's mean F1 at 0.5, at the validation-tuned thresholds, AP (multi-label tasks)
and the best epoch; with ``--versus NAME`` also each run's AP minus the AP of NAME's run of the
same seed, and a last line per row with the mean ± std of those paired differences (the same
seed shares the initialisation draw and the batch order's seed, so the paired spread is the
comparison's own). Runs are read, never written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from affectlab.results import finished_runs, mean_std, publish_report


def run_values(run_dir: Path, task: str) -> dict[str, float]:
    """Seed, F1@0.5, F1@thr, AP (in %) and best epoch of one finished run."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if task not in metrics["tasks"]:
        raise SystemExit(f"{run_dir}: no '{task}' results in metrics.json (it has "
                         f"{sorted(metrics['tasks'])}); choose --task")
    scores = metrics["tasks"][task]
    tuned = scores.get("tuned", {}).get("f1_mean")
    return {"seed": metrics["seed"], "f1": 100 * scores["f1_mean"],
            "f1_thr": None if tuned is None else 100 * tuned, "ap": 100 * scores["ap_mean"],
            "best_epoch": metrics.get("best_epoch")}


def table(rows: dict[str, Path], task: str, versus: str | None) -> str:
    values = {name: [run_values(run, task) for run in finished_runs(path)]
              for name, path in rows.items()}
    reference = {v["seed"]: v["ap"] for v in values[versus]} if versus else {}
    head = ["row", "seed", "F1@0.5", "F1@thr", "AP"]
    head += [f"AP − {versus}"] if versus else []
    lines = [f"Per-seed test {task} results (%)", "", "| " + " | ".join(head + ["best epoch"])
             + " |", "|" + "---|" * (len(head) + 1)]
    for name, runs in values.items():
        deltas = []
        for v in runs:
            cells = [name, str(v["seed"]), f"{v['f1']:.1f}",
                     "—" if v["f1_thr"] is None else f"{v['f1_thr']:.1f}", f"{v['ap']:.1f}"]
            if versus:
                paired = v["seed"] in reference and name != versus
                if paired:
                    deltas.append(v["ap"] - reference[v["seed"]])
                cells.append(f"{deltas[-1]:+.1f}" if paired else "—")
            lines.append("| " + " | ".join(cells + [str(v["best_epoch"])]) + " |")
        if deltas:
            mean, std = mean_std(deltas)
            lines.append(f"| {name} | paired mean ({len(deltas)}) | | | | "
                         f"{mean:+.1f} ± {std:.1f} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="+", metavar="NAME=ROW_DIR")
    parser.add_argument("--versus", metavar="NAME", help="the reference row of the differences")
    parser.add_argument("--task", default="au")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows: dict[str, Path] = {}
    for row in args.rows:
        name, sep, path = row.partition("=")
        if not sep or not name or not path:
            parser.error(f"{row!r}: give each row as NAME=ROW_DIR")
        rows[name] = Path(path)
    if args.versus is not None and args.versus not in rows:
        parser.error(f"--versus {args.versus}: not one of the rows {list(rows)}")
    text = table(rows, args.task, args.versus)
    return publish_report(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
