"""Run and write Ji et al.'s tables: ``python scripts/transfer_tables.py {table1,table2} ...``.

One command per table of "Multiple transfer learning and multi-label balanced training
strategies for facial AU detection in the wild" (Ji et al., CVPR-W 2020, EmotioNet 2020):

- ``table1``  backbone selection: ResNet-18/50/152 and the face-recognition IR-50/101/152,
              AU detection from scratch (recipe ``backbones_<dataset>``),
- ``table2``  the ablation: F_face (identity pre-training → AU), F_emotion (expression
              pre-training → AU), their ensemble, + alignment, + balancing (recipe
              ``transfer_<dataset>``), with AU from scratch and MLCR from F_face's backbone
              as extra rows where the recipe has them.

Each table is a recipe (``configs/recipe/``): its stages run through
:class:`affectlab.recipe.Runner` (finished stages are reused, so an interrupted table is
completed by the same command), into ``--runs`` (default ``results/<recipe>``). The script
then writes ``<out>/<table>.md``, ``.csv`` and ``.png``: per row Acc, F1 at the
validation-tuned thresholds and their average (the challenge's criterion, ½(Acc + F1): the
paper's columns), beside F1 at 0.5 and average precision, each mean ± std over the seeds in %;
the paper's numbers follow as "(reported)" rows (EmotioNet 2020, their own runs).

Examples::

    python scripts/transfer_tables.py table2                      # synthetic, seeds 0 1 2
    python scripts/transfer_tables.py table2 --dataset emotionet  # needs the data (local config)
    python scripts/transfer_tables.py table1 trainer.device=cuda --seeds 0
    python scripts/transfer_tables.py table2 --quick              # smoke run, tiny data

Hydra overrides after the table name apply to every training stage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectlab.recipe import RecipeError, Runner
from affectlab.report.figures import column_bars
from affectlab.results import (
    Column,
    seed_values_csv,
    stage_summary,
    with_reported_rows,
    write_table,
)
from affectlab.tables import TableError, table_recipe


def tuned(metrics: dict[str, Any], key: str) -> float | None:
    return metrics["tuned"][key] if "tuned" in metrics else None


def emotionet_average(metrics: dict[str, Any]) -> float | None:
    """½ (accuracy + F1), both at the validation-tuned thresholds (the challenge's score)."""
    if "tuned" not in metrics:
        return None
    return 0.5 * (metrics["tuned"]["acc_mean"] + metrics["tuned"]["f1_mean"])


#: The tables' columns; Acc, F1@thr and Avg are the paper's.
COLUMNS: tuple[Column, ...] = (
    ("Acc", "au", lambda m: tuned(m, "acc_mean")),
    ("F1@thr", "au", lambda m: tuned(m, "f1_mean")),
    ("Avg", "au", emotionet_average),
    ("F1@0.5", "au", lambda m: m["f1_mean"]),
    ("AP", "au", lambda m: m["ap_mean"]),
)
PAPER_COLUMNS = ("Acc", "F1@thr", "Avg")


@dataclass(frozen=True)
class TableSpec:
    """A table: the recipe it runs (``<recipe>_<dataset>``), its rows as (stage, label), the
    paper's rows as (label, Acc, F1, Avg)."""

    name: str
    title: str
    recipe: str
    rows: tuple[tuple[str, str], ...]
    reported: tuple[tuple[str, float, float, float], ...]
    quick_rows: tuple[str, ...]          # the stages a --quick run takes (CPU seconds)


TABLES = {
    "table1": TableSpec(
        "table1", "Backbone selection: AU detection", "backbones",
        (("resnet18", "ResNet-18"), ("resnet50", "ResNet-50"), ("resnet152", "ResNet-152"),
         ("ir50", "IR-50"), ("ir101", "IR-101"), ("ir152", "IR-152")),
        (("ResNet-18", 0.901, 0.364, 0.633), ("ResNet-50", 0.905, 0.409, 0.657),
         ("ResNet-152", 0.905, 0.474, 0.690)),
        ("resnet18", "ir50")),
    "table2": TableSpec(
        "table2", "Transfer, ensemble and balancing: AU detection", "transfer",
        (("scratch", "AU from scratch"), ("face_au", "F_face"), ("emotion_au", "F_emotion"),
         ("face_emotion", "F_face + F_emotion"),
         ("face_emotion_aligned", "Align + F_face + F_emotion"),
         ("face_au_balanced", "F_face + balancing"),
         ("emotion_au_balanced", "F_emotion + balancing"),
         ("face_emotion_balanced", "F_face + F_emotion + balancing"),
         ("face_emotion_aligned_balanced", "Align + F_face + F_emotion + balancing"),
         ("mlcr_face", "MLCR, both views from F_face's backbone"),
         ("mlcr_emotion", "MLCR, both views from F_emotion's backbone"),
         ("mlcr_face_emotion", "MLCR, one view from each backbone")),
        (("F_face", 0.921, 0.384, 0.652), ("F_emotion", 0.925, 0.429, 0.677),
         ("F_face + F_emotion", 0.925, 0.494, 0.710),
         ("Align + F_face + F_emotion", 0.927, 0.527, 0.727),
         ("Align + F_face + F_emotion + balancing", 0.915, 0.552, 0.734)),
        ()),      # every stage of the recipe: a tiny chain runs in seconds
}
PAPER = "Ji et al. 2020, EmotioNet 2020 (reported)"

# --quick: the recipe on tiny synthetic data, 2 steps per stage (cf. tests/conftest.py)
QUICK_OVERRIDES = (
    "dataset.num_subjects_train=4", "dataset.images_per_subject_train=6",
    "dataset.num_subjects_unlabeled=4", "dataset.images_per_subject_unlabeled=6",
    "dataset.num_subjects_val=3", "dataset.images_per_subject_val=4",
    "dataset.num_subjects_test=3", "dataset.images_per_subject_test=4",
    "trainer.batch_size=4", "trainer.max_steps=2", "trainer.device=cpu",
    "trainer.progress_bar=false")
QUICK_SMALL_INPUTS = ("dataset.image_size=32", "model.widths=[8,16]")   # the small CNN's rows


def table_markdown(spec: TableSpec, dataset: str, results: dict[str, list[dict[str, Any]]],
                   seeds: list[int]) -> tuple[str, str]:
    """The measured rows (mean ± std over seeds, %) and the paper's rows, Markdown and CSV."""
    markdown, csv = with_reported_rows(*stage_summary(results, columns=COLUMNS, score=False),
                                       spec.reported, PAPER_COLUMNS)
    caption = (f"**{spec.title} on {dataset}** (test split; seeds {', '.join(map(str, seeds))}). "
               "Acc and F1@thr at per-AU thresholds searched on the validation split (for "
               "the recipe's trainer.threshold_criterion: F1 on synthetic, ½(F1 + Acc) in the "
               "EmotioNet recipes, the paper's), Avg = ½(Acc + F1@thr) — the EmotioNet 2020 "
               "criterion and the paper's columns; F1@0.5 "
               "and AP (ranking, threshold-free) beside. Mean ± std over the seeds, in %. "
               f"\"(reported)\" rows: {PAPER} — another dataset, other networks and budgets: "
               "compare the differences between rows, not the numbers.")
    if dataset == "synthetic":
        caption += (" The synthetic faces are generated centred and upright, so the paper's "
                    "alignment rows have no counterpart here.")
    return f"{caption}\n\n{markdown}", csv


def chart(spec: TableSpec, dataset: str, results: dict[str, list[dict[str, Any]]],
          path: Path) -> None:
    column_bars(path, f"{spec.title} on {dataset} (mean ± std over seeds, %)", results, COLUMNS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every training stage")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="default: the recipe's (--quick: 0)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="where the recipe's runs go (default results/<recipe>[_quick])")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the table goes (default: --runs)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny synthetic data, 2 steps a stage, CPU, seed 0")
    parser.add_argument("--data-root", default=None, help="dataset.root of every stage")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the table's recipe (reusing finished stages), write its files, return their paths."""
    args = parse_args(argv)
    spec = TABLES[args.table]
    if args.quick and args.dataset != "synthetic":
        raise TableError("--quick runs on tiny synthetic data; it cannot be combined with "
                         f"--dataset {args.dataset}")
    recipe = table_recipe(spec.recipe, args.dataset, spec.name)
    stages = [s for s, _ in spec.rows if s in recipe.stages]
    overrides = list(args.overrides)
    if args.quick:
        keep = set(spec.quick_rows) or set(recipe.stages)
        recipe.stages = {k: v for k, v in recipe.stages.items() if k in keep}
        stages = [s for s in stages if s in keep]
        small = not any("model=" in str(o) for v in recipe.stages.values()
                        for o in (v or {}).get("overrides", []))
        overrides = [*QUICK_OVERRIDES, *(QUICK_SMALL_INPUTS if small else ()), *overrides]
    if args.data_root:
        overrides.append(f"dataset.root={args.data_root}")
    seeds = args.seeds or ([0] if args.quick else [int(s) for s in recipe.seeds])
    runs = (args.runs or Path("results") / f"{recipe.name}{'_quick' if args.quick else ''}")
    runner = Runner(recipe, out=runs.resolve(), seeds=seeds, overrides=overrides, launcher=[])
    everything = runner.run()
    labels = dict(spec.rows)
    results = {labels[s]: everything[s] for s in stages if s in everything}
    markdown, csv = table_markdown(spec, args.dataset, results, seeds)
    return write_table(args.out or runs, spec.name, markdown, csv,
                       lambda path: chart(spec, args.dataset, results, path), runs=runs,
                       seed_values=seed_values_csv(results, COLUMNS))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except (TableError, RecipeError) as err:
        sys.exit(f"transfer_tables: {err}")
