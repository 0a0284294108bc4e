"""Run and write Wang & Wang's Table I: ``python scripts/tsav_tables.py [--dataset synthetic]``.

"A Multi-task Mean Teacher for Semi-supervised Facial Affective Behavior Analysis" (Wang &
Wang, ABAW 2021), Table I: a baseline, TSAV, and TSAV + the multi-task mean teacher on
Aff-Wild2's validation set, each with the ABAW criteria — expression 0.67·F1 + 0.33·Acc, the
mean CCC of valence and arousal, AU 0.5·F1 + 0.5·Acc (F1 and Acc at 0.5).

The table is the recipe ``tsav_<dataset>`` (``configs/recipe/``): its stages run through
:class:`affectlab.recipe.Runner` (finished stages are reused) into ``--runs`` (default
``results/<recipe>``), then ``<out>/table1.md``, ``.csv`` and ``.png`` are written: per row
the three criteria, and beside them AU F1 at 0.5, at the validation-tuned thresholds and AP,
and the arousal CCC (does the sound help arousal?), each mean ± std over the seeds in %; the
paper's rows follow as "(reported)". On the synthetic clips (``recipe=tsav_synthetic``) the
rows are the image CNN on the labelled frame (the paper's "baseline" is the challenge's, an
image network), TSAV's visual stream alone, its audio stream alone, TSAV, and TSAV without /
with the mean teacher on one-task labels.

Examples::

    python scripts/tsav_tables.py                         # synthetic clips, seeds 0 1 2
    python scripts/tsav_tables.py --dataset affwild2      # needs recipe tsav_affwild2 + data
    python scripts/tsav_tables.py --seeds 0 trainer.device=cuda model=tsav

Hydra overrides after the options apply to every training stage.
"""

from __future__ import annotations

import logging
import sys
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
    ("Expression criterion", "expr", lambda m: m.get("abaw")),
    ("CCC mean", "va", lambda m: m.get("ccc_mean")),
    ("AU criterion", "au", lambda m: m.get("abaw")),
    ("AU F1@0.5", "au", lambda m: m["f1_mean"]),
    ("AU F1@thr", "au", lambda m: m["tuned"]["f1_mean"] if "tuned" in m else None),
    ("AU AP", "au", lambda m: m["ap_mean"]),
    ("CCC arousal", "va", lambda m: m["ccc_arousal"]),
)
PAPER_COLUMNS = ("Expression criterion", "CCC mean", "AU criterion")
REPORTED: tuple[tuple[str, float, float, float], ...] = (
    ("Baseline (the challenge's)", 0.36, 0.22, 0.31),
    ("TSAV", 0.508, 0.537, 0.623),
    ("TSAV + multi-task mean teacher", 0.517, 0.562, 0.782),
)
PAPER = "Wang & Wang 2021, Aff-Wild2 validation set, their own split (reported)"
#: the recipe's stages, in the table's order, with their labels
ROWS: tuple[tuple[str, str], ...] = (
    ("frame_cnn", "Image CNN on the labelled frame"),
    ("tsav_one_frame", "TSAV, visual stream, the labelled frame only"),
    ("tsav_video", "TSAV, visual stream only"),
    ("tsav_audio", "TSAV, audio stream only"),
    ("tsav", "TSAV (clip + sound)"),
    ("tsav_without_sound", "TSAV (clip + sound), its sound taken away at test"),
    ("tsav_without_clip", "TSAV (clip + sound), its clip taken away at test"),
    ("late_fusion", "Late fusion: the visual-only and audio-only runs averaged"),
    ("tsav_partial", "TSAV, one-task labels"),
    ("tsav_partial_mean_teacher", "TSAV + mean teacher, one-task labels"),
    ("tsav_mean_teacher", "TSAV + mean teacher"),
)
#: the questions of the issue's evidence, as (row, reference) pairs compared seed by seed
PAIRS: tuple[tuple[str, str], ...] = (
    ("TSAV, visual stream only", "TSAV, visual stream, the labelled frame only"),
    ("TSAV (clip + sound)", "TSAV, visual stream only"),
    ("TSAV (clip + sound)", "TSAV, audio stream only"),
    ("Late fusion: the visual-only and audio-only runs averaged", "TSAV (clip + sound)"),
    ("Late fusion: the visual-only and audio-only runs averaged", "TSAV, audio stream only"),
    ("TSAV + mean teacher, one-task labels", "TSAV, one-task labels"),
)





def table_markdown(dataset: str, results: dict[str, list[dict[str, Any]]],
                   seeds: list[int]) -> tuple[str, str]:
    """The measured rows (mean ± std over seeds, %) and the paper's, Markdown and CSV."""
    markdown, csv = with_reported_rows(*stage_summary(results, columns=COLUMNS, score=False),
                                       REPORTED, PAPER_COLUMNS)
    caption = (f"**Table I on {dataset}** (test split; seeds {', '.join(map(str, seeds))}). "
               "The ABAW criteria: expression 0.67·macro F1 + 0.33·accuracy, the mean CCC of "
               "valence and arousal, AU 0.5·F1 + 0.5·accuracy (at 0.5); beside them AU F1 at "
               "0.5 and at per-AU thresholds searched on validation, AU average precision, "
               "and the arousal CCC. Mean ± std over the seeds, in %. \"(reported)\" rows: "
               f"{PAPER} — another dataset and budget: compare the differences between rows, "
               "not the numbers.")
    paired = paired_differences(results, PAIRS, COLUMNS)
    if paired:
        markdown += ("\nPaired by seed: the first row's number minus the second's run of the "
                     "same seed, in points, mean ± std (each seed's difference).\n\n" + paired)
    labels = per_label_summary(results)
    if labels:
        markdown += "\n" + labels
    return f"{caption}\n\n{markdown}", csv


def chart(dataset: str, results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    column_bars(path, f"Table I on {dataset} (mean ± std over seeds, %)", results, COLUMNS)


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the table's recipe (reusing finished stages), write its files, return their paths."""
    args = table_arguments(__doc__.split("\n\n")[0], argv)
    everything, seeds, runs = run_table_recipe(table_recipe("tsav", args.dataset, "Table I"),
                                               args)
    results = {label: everything[stage] for stage, label in ROWS if stage in everything}
    markdown, csv = table_markdown(args.dataset, results, seeds)
    return write_table(args.out or runs, "table1", markdown, csv,
                       lambda path: chart(args.dataset, results, path), runs=runs,
                       seed_values=seed_values_csv(results, COLUMNS))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except (TableError, RecipeError) as err:
        sys.exit(f"tsav_tables: {err}")
