"""The figures of tables and reports, drawn with matplotlib (Agg: no display needed).

Every function writes one PNG and returns its path:

- :func:`grouped_bars`: per category (a label, a metric) one bar per series (a run or a group
  of seeds), optional error bars (± std over seeds);
- :func:`pr_curves`: precision-recall curves, one panel per label, one line per series, the
  average precision in the legend;
- :func:`confusion_matrix`: a row-normalised confusion matrix with counts;
- :func:`va_scatter`: predicted against true valence and arousal, with their CCC;
- :func:`training_curves`: training loss per step and the validation score per evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: E402

DPI = 110
COLORS = plt.get_cmap("tab10").colors


def _save(figure: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def grouped_bars(path: str | Path, title: str, categories: Sequence[str],
                 series: Sequence[tuple[str, Sequence[float | None]]], *,
                 errors: Sequence[Sequence[float | None]] | None = None,
                 y_max: float | None = 100.0, y_label: str = "%") -> Path:
    """Per category one bar per series (``series`` = [(legend, one value per category)];
    None / NaN: no bar); ``errors``: a half-width per value (± std), drawn as error bars."""
    count = max(len(series), 1)
    width = 0.8 / count
    # about 0.12 in a bar, 6 to 18 in wide: thin bars rather than an unreadable wide strip
    width_in = min(max(6.0, 0.12 * len(categories) * count + 2.0), 18.0)
    figure, axes = plt.subplots(figsize=(width_in, 4.2))
    x = np.arange(len(categories))
    for m, (name, values) in enumerate(series):
        heights = np.array([np.nan if v is None else float(v) for v in values])
        spread = None
        if errors is not None:
            spread = np.array([np.nan if e is None else float(e) for e in errors[m]])
        axes.bar(x - 0.4 + width * (m + 0.5), np.nan_to_num(heights, nan=0.0), width,
                 yerr=None if spread is None else np.nan_to_num(spread, nan=0.0),
                 label=name, color=COLORS[m % len(COLORS)], capsize=2,
                 alpha=1.0, error_kw={"elinewidth": 0.8})
    axes.set_xticks(x, categories, rotation=60 if len(categories) > 6 else 0, ha="right"
                    if len(categories) > 6 else "center")
    if y_max is not None:
        axes.set_ylim(0, y_max)
    axes.set_ylabel(y_label)
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    if count > 4:    # many series: the legend under the plot, not over the bars
        axes.legend(fontsize=8, ncols=min(count, 4), loc="upper center",
                    bbox_to_anchor=(0.5, -0.25 if len(categories) > 6 else -0.12))
    else:
        axes.legend(fontsize=8, ncols=count, loc="upper right")
    return _save(figure, path)


def column_bars(path: str | Path, title: str, results: Mapping[str, Sequence[Mapping]],
                columns: Sequence[tuple]) -> Path:
    """A table's bar chart: per column (:data:`affectlab.results.Column`, e.g. "AU AP") one
    bar per row of ``results`` ({row: [metrics.json of each seed]}), mean ± std over its
    seeds in %."""
    from affectlab.results import column_values, mean_std

    series, errors = [], []
    for name, runs in results.items():
        spread = [mean_std([100 * v for v in column_values(list(runs), c)])
                  if column_values(list(runs), c) else (None, None) for c in columns]
        series.append((name, [m for m, _ in spread]))
        errors.append([s for _, s in spread])
    return grouped_bars(path, title, [c[0] for c in columns], series, errors=errors, y_max=None)


def pr_curves(path: str | Path, title: str, label_names: Sequence[str],
              series: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Path:
    """One panel per label; ``series`` = {name: (scores (N, C), targets (N, C) in {0, 1},
    valid (N, C) bool)}; a label without a positive among a series' valid targets gets no
    line for it."""
    columns = min(4, len(label_names))
    rows = math.ceil(len(label_names) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.7 * rows),
                                squeeze=False, sharex=True, sharey=True)
    for k, label in enumerate(label_names):
        axes = grid[k // columns][k % columns]
        for m, (name, (scores, targets, valid)) in enumerate(series.items()):
            keep = valid[:, k].astype(bool)
            truth = targets[keep, k] > 0.5
            if not truth.any() or truth.all():
                continue
            precision, recall, _ = precision_recall_curve(truth, scores[keep, k])
            ap = average_precision_score(truth, scores[keep, k])
            axes.plot(recall, precision, color=COLORS[m % len(COLORS)], linewidth=1.2,
                      label=f"{name} (AP {100 * ap:.1f})")
            if m == 0:   # chance level: the positive rate
                axes.axhline(truth.mean(), color="grey", linewidth=0.7, linestyle=":")
        axes.set_title(label, fontsize=9)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=6, loc="lower left")
    for k in range(len(label_names), rows * columns):
        grid[k // columns][k % columns].axis("off")
    for axes in grid[-1]:
        axes.set_xlabel("recall")
    for row in grid:
        row[0].set_ylabel("precision")
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def confusion_matrix(path: str | Path, title: str, confusion: np.ndarray,
                     labels: Sequence[str]) -> Path:
    """Rows: true class, columns: predicted; colour = share of the row, text = count."""
    counts = np.asarray(confusion, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = 1.0 + 0.6 * len(labels)
    figure, axes = plt.subplots(figsize=(side + 1.2, side))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                      color="white" if shares[i, j] > 0.5 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    return _save(figure, path)


def va_scatter(path: str | Path, title: str, predictions: np.ndarray, targets: np.ndarray,
               ccc: Sequence[float | None]) -> Path:
    """Predicted against true valence (left) and arousal (right), (N, 2) each."""
    figure, panels = plt.subplots(1, 2, figsize=(8.4, 4.0), sharey=True)
    for k, (axes, name) in enumerate(zip(panels, ("valence", "arousal"))):
        axes.scatter(targets[:, k], predictions[:, k], s=4, alpha=0.35, color=COLORS[k])
        axes.plot([-1, 1], [-1, 1], color="grey", linewidth=0.8, linestyle="--")
        score = ccc[k]
        axes.set_title(f"{name}: CCC {score:.3f}" if score is not None else name)
        axes.set_xlim(-1.05, 1.05)
        axes.set_ylim(-1.05, 1.05)
        axes.set_xlabel(f"true {name}")
        axes.set_aspect("equal")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("predicted")
    figure.suptitle(title)
    return _save(figure, path)


def training_curves(path: str | Path, title: str,
                    runs: Mapping[str, Sequence[Mapping[str, float]]], *,
                    loss_key: str = "train/loss", score_key: str = "val/score") -> Path:
    """Left: ``loss_key`` per step (a moving average over 1/50 of the run); right:
    ``score_key`` at each evaluation; one line per run (``runs`` = {name: metrics.jsonl
    records})."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    for m, (name, records) in enumerate(runs.items()):
        color = COLORS[m % len(COLORS)]
        losses = [(r["step"], r[loss_key]) for r in records if loss_key in r]
        if losses:
            steps, values = map(np.asarray, zip(*losses))
            window = max(1, len(values) // 50)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            left.plot(steps[window - 1:], smooth, color=color, linewidth=1.0, label=name)
        scores = [(r["step"], r[score_key]) for r in records if score_key in r]
        if scores:
            steps, values = map(np.asarray, zip(*scores))
            right.plot(steps, values, color=color, marker="o", markersize=2.5, linewidth=1.0,
                       label=name)
    left.set_title(f"{loss_key} (moving average)")
    right.set_title(score_key)
    for axes in (left, right):
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


__all__ = ["grouped_bars", "column_bars", "pr_curves", "confusion_matrix", "va_scatter",
           "training_curves"]
