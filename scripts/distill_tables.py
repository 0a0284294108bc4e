"""Run and write Deng et al.'s Tables 1–3: ``python scripts/distill_tables.py [--table 2]``.

"Multitask Emotion Recognition with Incomplete Labels" (Deng, Chen & Shi, ABAW 2020): Table 1,
single-task CNNs on imbalanced vs balanced data; Table 2, the multi-task CNN teacher trained on
partial labels, five students distilled from it and the students' ensemble; Table 3, the same
for the CNN-RNN over frame sequences. Each with the ABAW criteria — AU 0.5·F1 + 0.5·Acc (at
0.5), expression 0.67·F1 + 0.33·Acc, the CCC of valence and of arousal.

A table is a recipe (``configs/recipe/``): Table 1 ``distill_balance_<dataset>``, Table 2
``distill_<dataset>``, Table 3 ``distill_sequences_<dataset>``. Its stages run through
:class:`affectlab.recipe.Runner` (finished stages are reused) into ``--runs`` (default
``results/<recipe>``), then ``<out>/table<N>.md``, ``.csv`` and ``.png`` are written: per row
the paper's four criteria and beside them AU F1 at 0.5, at the validation-tuned thresholds and
AP, and the expression macro F1, mean ± std over the seeds in %; "Single student (mean of the
five)" averages each seed's students before the seeds are summarised; the paper's rows follow
as "(reported)", and the paired differences the evidence asks for (balanced − imbalanced;
ensemble − teacher, single student − teacher and − the teacher's configuration run again with
other draws, the same budget without a teacher; CNN-RNN − frame CNN), seed by seed.

Examples::

    python scripts/distill_tables.py                           # Table 2, synthetic, seeds 0 1 2
    python scripts/distill_tables.py --table 1
    python scripts/distill_tables.py --seeds 0 --stages teacher student0 student1
    python scripts/distill_tables.py --runs results/distill_synthetic   # tabulate only

Hydra overrides after the options apply to every training stage.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectlab.recipe import RecipeError
from affectlab.report.figures import column_bars
from affectlab.results import (
    Column,
    paired_differences,
    per_label_summary,
    seed_values_csv,
    stage_summary,
    with_reported_rows,
    write_table,
)
from affectlab.tables import TableError, run_table_recipe, table_arguments, table_recipe

#: the paper's columns first (the ABAW criteria), then what this framework reports beside them
COLUMNS: tuple[Column, ...] = (
    ("AU criterion", "au", lambda m: m.get("abaw")),
    ("Expression criterion", "expr", lambda m: m.get("abaw")),
    ("CCC valence", "va", lambda m: m["ccc_valence"]),
    ("CCC arousal", "va", lambda m: m["ccc_arousal"]),
    ("AU F1@0.5", "au", lambda m: m["f1_mean"]),
    ("AU F1@thr", "au", lambda m: m["tuned"]["f1_mean"] if "tuned" in m else None),
    ("AU AP", "au", lambda m: m["ap_mean"]),
    ("Expression macro F1", "expr", lambda m: m["f1_macro"]),
)
PAPER_COLUMNS = ("AU criterion", "Expression criterion", "CCC valence", "CCC arousal")
PAPER = "Deng et al. 2020, Aff-Wild2 validation set (reported)"
STUDENTS = tuple(f"student{k}" for k in range(5))
SINGLE = "Single student (mean of the five)"
REDRAW = "Teacher's configuration, other draws (no teacher)"
TEACHER_STUDENTS: tuple[tuple[str, str], ...] = (
    ("teacher", "Teacher"),
    *((stage, f"Student {k}") for k, stage in enumerate(STUDENTS)),
    ("students", "Student ensemble"),
    ("teacher_redraw", REDRAW),
)


@dataclass(frozen=True)
class Table:
    """One of the paper's tables: its recipe (``<recipe>_<dataset>``), its rows (recipe stage
    → label, in order), the paper's rows (label, AU, EXPR, V, A as fractions) and the pairs of
    rows compared seed by seed."""

    number: int
    recipe: str
    title: str
    rows: tuple[tuple[str, str], ...]
    reported: tuple[tuple[Any, ...], ...]
    pairs: tuple[tuple[str, str], ...]


TABLES: dict[int, Table] = {t.number: t for t in (
    Table(1, "distill_balance", "single-task CNNs, imbalanced vs balanced data", (
        ("au", "AU, imbalanced"), ("au_balanced", "AU, balanced (ML-ROS)"),
        ("expr", "Expression, imbalanced"),
        ("expr_balanced", "Expression, balanced (equal classes)"),
        ("va", "Valence/arousal, imbalanced"),
        ("va_balanced", "Valence/arousal, balanced (equal VA cells)")), (
        ("Baseline (the challenge's)", 0.31, 0.36, 0.14, 0.24),
        ("imbalanced data", 0.5465, 0.3399, 0.2406, 0.4178),
        ("balanced data", 0.5802, 0.4243, 0.2438, 0.4027)), (
        ("AU, balanced (ML-ROS)", "AU, imbalanced"),
        ("Expression, balanced (equal classes)", "Expression, imbalanced"),
        ("Valence/arousal, balanced (equal VA cells)", "Valence/arousal, imbalanced"))),
    Table(2, "distill", "the multi-task CNN: teacher, students, their ensemble",
          TEACHER_STUDENTS, (
              ("Teacher", 0.5771, 0.4219, 0.3260, 0.4564),
              ("Student 0", 0.5939, 0.4367, 0.3700, 0.5043),
              ("Student 1", 0.5831, 0.4538, 0.3699, 0.5065),
              ("Student 2", 0.5796, 0.4485, 0.3546, 0.4878),
              ("Student 3", 0.5783, 0.4440, 0.3684, 0.4854),
              ("Student 4", 0.5733, 0.4441, 0.3534, 0.5112),
              ("Student ensemble", 0.6260, 0.4599, 0.3727, 0.5129)), (
              ("Student ensemble", "Teacher"), (SINGLE, "Teacher"),
              ("Student ensemble", SINGLE), (SINGLE, REDRAW), (REDRAW, "Teacher"))),
    Table(3, "distill_sequences", "the multi-task CNN-RNN: teacher, students, their ensemble", (
        ("frame_teacher", "Frame CNN teacher"), ("frame_student", "Frame CNN student"),
        *TEACHER_STUDENTS), (
        ("Teacher", 0.5768, 0.4773, 0.3035, 0.4956),
        ("Student 0", 0.5745, 0.4881, 0.3066, 0.5206),
        ("Student 1", 0.5707, 0.4634, 0.3417, 0.4786),
        ("Student 2", 0.5773, 0.4792, 0.2999, 0.5087),
        ("Student 3", 0.5804, 0.4772, 0.3327, 0.4818),
        ("Student 4", 0.5710, 0.4824, 0.3203, 0.5063),
        ("Student ensemble", 0.5905, 0.4929, 0.3351, 0.5150)), (
        ("Teacher", "Frame CNN teacher"), ("Student ensemble", "Teacher"),
        (SINGLE, "Teacher"), (SINGLE, REDRAW), (SINGLE, "Frame CNN student"))),
)}


def averaged(values: list[Any]) -> Any:
    """The element-wise mean of the numbers of several metrics.json trees of one structure
    (dicts by key, lists by position); anything else is the first's."""
    first = values[0]
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, (int, float)):
        numbers = [v for v in values if isinstance(v, (int, float))]
        return sum(numbers) / len(numbers)
    if isinstance(first, dict):
        return {key: averaged([v[key] for v in values if isinstance(v, dict) and key in v])
                for key in first}
    if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first)
                                       for v in values):
        return [averaged([v[i] for v in values]) for i in range(len(first))]
    return first


def single_student(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per seed, the mean of that seed's students' metrics (a seed needs all its students)."""
    students = [results[s] for s in STUDENTS if s in results]
    if not students:
        return []
    seeds = sorted(set.intersection(*({r["seed"] for r in runs} for runs in students)))
    return [{**averaged([next(r for r in runs if r["seed"] == seed) for runs in students]),
             "seed": seed} for seed in seeds]


def table_markdown(dataset: str, everything: dict[str, list[dict[str, Any]]],
                   seeds: list[int], table: Table = TABLES[2]
                   ) -> tuple[str, str, dict[str, list[dict[str, Any]]]]:
    """The measured rows (mean ± std over seeds, %) and the paper's, Markdown and CSV, and
    the rows' results."""
    results = {label: everything[stage] for stage, label in table.rows if stage in everything}
    single = single_student(everything)
    if single:        # the single student's row just before the ensemble's
        position = list(results).index("Student ensemble") if "Student ensemble" in results \
            else len(results)
        rows = list(results.items())
        results = dict([*rows[:position], (SINGLE, single), *rows[position:]])
    markdown, csv = with_reported_rows(*stage_summary(results, columns=COLUMNS, score=False),
                                       table.reported, PAPER_COLUMNS)
    present = sum(s in everything for s in STUDENTS)
    students = f"; {present} student(s) a seed" if present else ""
    caption = (f"**Table {table.number} on {dataset}: {table.title}** (test split; seeds "
               f"{', '.join(map(str, seeds))}{students}). The ABAW criteria: AU 0.5·F1 + "
               "0.5·accuracy "
               "(at 0.5), expression 0.67·macro F1 + 0.33·accuracy, the CCC of valence and of "
               "arousal; beside them AU F1 at 0.5 and at per-AU thresholds searched on "
               "validation, AU average precision and the expression macro F1. Mean ± std over "
               "the seeds, in %. \"(reported)\" rows: "
               f"{PAPER} — another dataset and budget: compare the differences between rows, "
               "not the numbers.")
    paired = paired_differences(results, table.pairs, COLUMNS)
    if paired:
        markdown += ("\nPaired by seed: the first row's number minus the second's of the "
                     "same seed, in points, mean ± std (each seed's difference).\n\n" + paired)
    labels = per_label_summary(results)
    if labels:
        markdown += "\n" + labels
    return f"{caption}\n\n{markdown}", csv, results


def chart(dataset: str, results: dict[str, list[dict[str, Any]]], path: Path,
          number: int = 2) -> None:
    column_bars(path, f"Table {number} on {dataset} (mean ± std over seeds, %)", results,
                COLUMNS[:4])


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the table's recipe (reusing finished stages), write its files, return their paths."""
    args = table_arguments(__doc__.split("\n\n")[0], argv, tables=sorted(TABLES), default=2)
    table = TABLES[args.table]
    recipe = table_recipe(table.recipe, args.dataset, f"Table {table.number}")
    everything, seeds, runs = run_table_recipe(recipe, args)
    markdown, csv, results = table_markdown(args.dataset, everything, seeds, table)
    if args.finished_only:
        markdown = ("**Interim** (`--finished-only`): the runs finished so far; the `runs` "
                    "column says over how many seeds each row is.\n\n" + markdown)
    return write_table(args.out or runs, f"table{table.number}", markdown, csv,
                       lambda path: chart(args.dataset, results, path, table.number), runs=runs,
                       seed_values=seed_values_csv(results, COLUMNS))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except (TableError, RecipeError) as err:
        sys.exit(f"distill_tables: {err}")
