"""Summarise finished runs: ``python scripts/collect_results.py multirun/<dir> [--task au]``.

Prints a Markdown table (per-label F1 averaged over seeds, mean F1 as mean ± std over seeds)
with one row per configuration; runs differing only in ``seed`` form one row.
"""

from __future__ import annotations

import argparse
import sys

from affectlab.results import collect, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="directory searched recursively for metrics.json")
    parser.add_argument("--task", default="au", help="multi-label task to tabulate (au, attr)")
    args = parser.parse_args()
    rows = collect(args.root)
    if not rows:
        sys.exit(f"no metrics.json under {args.root}: did the runs finish?")
    print(markdown_table(rows, args.task))


if __name__ == "__main__":
    main()
