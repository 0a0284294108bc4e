"""Is a difference in F1 one of ranking or of calibration? Threshold analysis of finished runs.

    python scripts/analyze_runs.py RUN_OR_ROW_DIR [...] [--out analysis.md]

A directory holding ``metrics.json`` is one run; a directory whose sub-folders hold runs (a row
folder of ``scripts/mlcr_tables.py``, e.g. ``results/mlcr_ablation_synthetic/runs/l_cr``) is a
row, averaged over its runs (seeds). For every run the best checkpoint is loaded, the validation
and test splits are predicted, and per label:

- ``F1@0.5``: F1 at the fixed threshold 0.5 (the number in ``metrics.json`` and the tables),
- ``pred+/true+``: test rate of predicted positives at 0.5 over the true positive rate
  (< 1: the run under-predicts the label),
- ``AP``: test average precision, which does not depend on a threshold
  (:func:`affectlab.metrics.average_precision`),
- ``F1@val-thr``: test F1 at per-label thresholds tuned on the validation split
  (:func:`affectlab.metrics.best_thresholds`).

Written as Markdown (stdout, and ``--out`` if given): one table of the label means per row, one
per-label table of AP and one of F1@val-thr. Runs are read, never written.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from affectlab.build import build_trainer
from affectlab.inference import load_run
from affectlab.metrics import average_precision, best_thresholds, multilabel_metrics
from affectlab.results import finished_runs, mean_std, publish_report

PERCENT = 100.0


@dataclass
class RunAnalysis:
    """Per-label test measures of one run (each (C,), fractions in [0, 1])."""

    labels: list[str]
    f1: np.ndarray
    predicted_over_true: np.ndarray
    average_precision: np.ndarray
    f1_tuned: np.ndarray


def analyze_run(run_dir: Path, task: str, device: str) -> RunAnalysis:
    """Load ``run_dir``'s best checkpoint and measure its val-tuned and threshold-free test F1/AP.
    """
    loaded = load_run(run_dir, device=device, data=True)
    data = loaded.data
    trainer = build_trainer(OmegaConf.merge(loaded.config, {"trainer": {"device": device,
                                                                         "resume": None}}))

    def predict(split):
        outputs, targets = trainer.evaluation.predict(loaded.method, data, split)
        return outputs[task], targets[task], targets[f"{task}_mask"]

    val_score, val_true, val_mask = predict(data.val)
    score, true, mask = predict(data.test)
    names = data.label_names[task]
    thresholds = best_thresholds(val_true, val_score, val_mask)
    at_half = multilabel_metrics(true, score, mask, names=names)
    tuned = multilabel_metrics(true, score, mask, threshold=thresholds, names=names)
    valid = mask.astype(bool)
    predicted = ((score >= 0.5) & valid).sum(0) / np.maximum(valid.sum(0), 1)
    positive = np.asarray(at_half["positive_rate"])
    return RunAnalysis(
        labels=at_half["labels"], f1=np.asarray(at_half["f1"]),
        predicted_over_true=np.divide(predicted, positive, out=np.zeros_like(predicted),
                                      where=positive > 0),
        average_precision=average_precision(true, score, mask),
        f1_tuned=np.asarray(tuned["f1"]))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from a header and rows of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def report(rows: dict[str, list[RunAnalysis]]) -> str:
    """The three Markdown tables (values in %, ratios as they are; mean ± std over runs)."""
    def cell(values: list[float], scale: float = PERCENT) -> str:
        mean, std = mean_std([v * scale for v in values])
        return f"{mean:.1f} ± {std:.1f}" if scale == PERCENT else f"{mean:.2f} ± {std:.2f}"

    summary = [[name, str(len(runs)),
                cell([r.f1.mean() for r in runs]),
                cell([r.predicted_over_true.mean() for r in runs], scale=1.0),
                cell([r.average_precision.mean() for r in runs]),
                cell([r.f1_tuned.mean() for r in runs])] for name, runs in rows.items()]
    labels = next(iter(rows.values()))[0].labels
    out = ["Label means (test; mean ± std over runs)", "",
           markdown_table(["row", "runs", "F1@0.5 (%)", "pred+/true+", "AP (%)",
                           "F1@val-thr (%)"], summary)]
    for title, field in (("AP (%) per label", "average_precision"),
                         ("F1 (%) at validation-tuned thresholds, per label", "f1_tuned"),
                         ("Predicted / true positive rate at 0.5, per label",
                          "predicted_over_true")):
        scale = 1.0 if field == "predicted_over_true" else PERCENT
        digits = 2 if field == "predicted_over_true" else 1
        table = [[name] + [f"{np.mean([getattr(r, field)[c] for r in runs]) * scale:.{digits}f}"
                           for c in range(len(labels))] for name, runs in rows.items()]
        out += ["", title, "", markdown_table(["row", *labels], table)]
    return "\n".join(out) + "\n"


def row_names(paths: list[Path]) -> list[str]:
    """A row name per path: its folder name, lengthened by parent folders until no two rows
    share one (``results/a/mlcr`` and ``results/b/mlcr`` → ``a/mlcr``, ``b/mlcr``)."""
    depth = 1
    while True:
        names = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(names)) == len(names) or depth >= max(len(p.parts) for p in paths):
            return names
        depth += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run directories or row folders")
    parser.add_argument("--task", default="au", help="multi-label task to analyse (au | attr)")
    parser.add_argument("--device", default="cpu", help="device for the predictions")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args(argv)
    rows = {name: [analyze_run(run, args.task, args.device) for run in finished_runs(path)]
            for name, path in zip(row_names(args.paths), args.paths)}
    text = report(rows)
    return publish_report(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
