"""Gathering ``metrics.json`` files of many runs into mean ± std tables, and telling whether
a finished run is the configuration a table row or recipe stage asks for.

Runs are grouped by their Hydra overrides with ``seed`` removed, so a multirun over
``experiment=a,b seed=0,1,2`` gives one row per experiment with the spread over seeds.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from affectlab.config import upgrade_config
from affectlab.utils import atomic_write_text

# Overrides that change where or how fast a run goes, not what it computes.
NOT_PART_OF_THE_NAME = ("seed=", "hydra.", "dataset.root=", "dataset.num_workers=",
                        "trainer.progress_bar=", "trainer.num_workers=", "trainer.device=",
                        "trainer.resume=", "packed=", "packed_dir=", "threads=")
# (resume continues a run exactly; packed pixels are the decoded ones: the same results)


@dataclass
class Row:
    """One configuration: its name and the metrics.json of each seed."""

    name: str
    runs: list[dict[str, Any]]

    def values(self, task: str, key: str) -> list[float]:
        return [run["tasks"][task][key] for run in self.runs]

    def per_label(self, task: str) -> tuple[list[str], list[list[float]]]:
        labels = self.runs[0]["tasks"][task]["labels"]
        return labels, [run["tasks"][task]["f1"] for run in self.runs]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def read_overrides(run_dir: str | Path) -> list[str]:
    """The command-line overrides of a run (``.hydra/overrides.yaml``; [] when absent)."""
    overrides_file = Path(run_dir) / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    return [str(o) for o in overrides or []]


def configuration_name(overrides: list[str]) -> str:
    """The overrides that change what a run computes (seed and run-location keys dropped)."""
    kept = [o for o in overrides if not o.startswith(NOT_PART_OF_THE_NAME)]
    return " ".join(kept) or "defaults"


def canonical_overrides(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """Overrides as Hydra's sweeper stores them per job (``x=false`` → ``x=False``), sorted,
    without seed and run-location keys: the identity of a configuration. A key given twice
    counts once, with its last value, as Hydra applies it (a recipe's shared
    ``experiment=a`` and a stage's own ``experiment=[a,b]``)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    last: dict[str, str] = {}
    for o in parsed:
        last[o.get_key_element()] = (str(o.input_line) if o.is_sweep_override() else
                                     f"{o.get_key_element()}={o.get_value_element_as_str()}")
    return sorted(configuration_name(list(last.values())).split(" "))


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Keys that say where or how fast a run goes, not what it computes
RUN_LOCATION_KEYS = tuple(k.rstrip("=.") for k in NOT_PART_OF_THE_NAME if k != "seed=")


@functools.lru_cache(maxsize=None)
def composed_config(overrides: tuple[str, ...]) -> dict[str, Any]:
    """The resolved config ``python train.py <overrides>`` would run now, flattened."""
    from affectlab.build import compose_config  # results is imported by the engine: no cycle

    config = compose_config("train", overrides)
    return flatten(OmegaConf.to_container(config, resolve=True))


def config_changes(run_dir: Path, overrides: list[str] | tuple[str, ...], seed: int) -> list[str]:
    """Keys whose value in the run's ``config_resolved.yaml`` differs from what ``overrides``
    give now (a preset or default edited since the run); run-location keys are ignored, and
    so are keys the run's config does not have (options added to the code since come with
    defaults that keep the earlier behaviour)."""
    resolved_file = run_dir / "config_resolved.yaml"
    if not resolved_file.is_file():
        return []
    then = flatten(upgrade_config(yaml.safe_load(resolved_file.read_text()) or {}))
    now = composed_config((*overrides, f"seed={seed}"))
    changed = sorted(key for key in then
                     if then.get(key) != now.get(key)
                     and not key.startswith(RUN_LOCATION_KEYS))
    return [f"{key}: {then.get(key)!r} then, {now.get(key)!r} now" for key in changed]


def run_differences(run_dir: Path, overrides: list[str] | tuple[str, ...],
                    seed: int) -> list[str]:
    """How a finished run differs from the configuration ``overrides`` give now: other
    overrides (seed and run-location keys aside), or the same overrides resolving to other
    values (a preset or default edited since). Empty when it is that configuration."""
    found = canonical_overrides(read_overrides(run_dir))
    expected = canonical_overrides(overrides)
    if found != expected:
        return [f"overrides: {' '.join(found)} then, {' '.join(expected)} now"]
    return config_changes(run_dir, overrides, seed)


def publish_report(text: str, out: str | Path | None) -> int:
    """Print a report script's Markdown and, when ``out`` is given, write it there atomically
    (never half-written). Returns 0, the script's exit status."""
    sys.stdout.write(text)
    if out:
        atomic_write_text(out, text)
    return 0


def finished_runs(path: str | Path) -> list[Path]:
    """``path`` itself when it is a finished run (``metrics.json``), else its finished
    sub-folder runs (a row of seeds: a recipe stage, a table script's row folder). Exits with
    a message naming ``path`` when there is none."""
    path = Path(path)
    if (path / "metrics.json").is_file():
        return [path]
    found = sorted(p.parent for p in path.glob("*/metrics.json"))
    if not found:
        raise SystemExit(f"{path}: no finished run (metrics.json) in it or in its sub-folders; "
                         "point at a run directory or at a folder of runs (a recipe stage, a "
                         "row folder of a table script)")
    return found


def _run_name(run_dir: Path) -> str:
    return configuration_name(read_overrides(run_dir))


def collect(root: str | Path) -> list[Row]:
    """Every run under ``root`` that finished (has metrics.json), grouped by overrides."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(root).rglob("metrics.json")):
        groups.setdefault(_run_name(path.parent), []).append(json.loads(path.read_text()))
    return [Row(name, sorted(runs, key=lambda r: r["seed"])) for name, runs in groups.items()]


def markdown_table(rows: list[Row], task: str = "au") -> str:
    """Per-label F1 (mean over seeds) and mean F1 as mean ± std, one line per row, in %."""
    labels, _ = rows[0].per_label(task)
    header = "| run | seeds | " + " | ".join(labels) + " | mean F1 |"
    lines = [header, "|" + "---|" * (len(labels) + 3)]
    for row in rows:
        _, per_seed = row.per_label(task)
        per_label = [statistics.fmean(col) * 100 for col in zip(*per_seed)]
        mean, std = mean_std([v * 100 for v in row.values(task, "f1_mean")])
        cells = " | ".join(f"{v:.1f}" for v in per_label)
        lines.append(f"| {row.name} | {len(row.runs)} | {cells} | {mean:.1f} ± {std:.1f} |")
    return "\n".join(lines)


# Columns of a stage summary: (header, task, how to read one run's number).
SUMMARY_COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("AU F1@0.5", "au", lambda m: m["f1_mean"]),
    ("AU F1@thr", "au", lambda m: m["tuned"]["f1_mean"] if "tuned" in m else None),
    ("AU AP", "au", lambda m: m["ap_mean"]),
    ("attr F1@0.5", "attr", lambda m: m["f1_mean"]),
    ("attr acc", "attr", lambda m: m["acc_mean"]),
    ("expr F1", "expr", lambda m: m["f1_macro"]),
    ("expr acc", "expr", lambda m: m["acc"]),
    ("CCC V", "va", lambda m: m["ccc_valence"]),
    ("CCC A", "va", lambda m: m["ccc_arousal"]),
    ("identity acc", "identity", lambda m: m["acc"]),
)


Column = tuple[str, str, Any]     # (header, task, how to read one run's number of that task)


def column_values(runs: list[dict[str, Any]], column: Column) -> list[float]:
    """The numbers of ``column`` in each of ``runs`` (metrics.json dicts) that has one;
    ``column`` with task None reads the run's top-level ``score``."""
    _, task, read = column
    if task is None:
        values = [run.get("score") for run in runs]
    else:
        values = [read(run["tasks"][task]) if task in run.get("tasks", {}) else None
                  for run in runs]
    return [v for v in values if v is not None]


def stage_summary(results: dict[str, list[dict[str, Any]]], title: str = "",
                  columns: tuple[Column, ...] = SUMMARY_COLUMNS,
                  score: bool = True) -> tuple[str, str]:
    """Markdown and CSV of ``{row name: [metrics.json of each seed]}``: per row the number of
    runs and, in %, mean ± std over them of each of ``columns`` some row has (default
    :data:`SUMMARY_COLUMNS`: AU F1 at 0.5, at the tuned thresholds, AP; expression
    F1/accuracy; CCCs; ...) and of ``score`` (unless ``score=False``). A cell a row has no
    value for is "–"."""
    shown = [c for c in columns if any(column_values(runs, c) for runs in results.values())]
    if score:
        shown.append(("score", None, None))
    header = ["row", "runs", *[c[0] for c in shown]]
    lines = ([f"{title}", ""] if title else []) + [
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv = [",".join(["row", "runs", *[f"{c[0]} mean,{c[0]} std" for c in shown]])]
    for name, runs in results.items():
        cells, csv_cells = [], []
        for column in shown:
            values = column_values(runs, column)
            if not values:
                cells.append("–")
                csv_cells.append(",")
                continue
            mean, std = mean_std([100 * v for v in values])
            cells.append(f"{mean:.1f} ± {std:.1f}")
            csv_cells.append(f"{mean:.2f},{std:.2f}")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
        csv.append(",".join([name, str(len(runs)), *csv_cells]))
    return "\n".join(lines) + "\n", "\n".join(csv) + "\n"


def with_reported_rows(markdown: str, csv: str,
                       reported: tuple[tuple[Any, ...], ...],
                       paper_columns: tuple[str, ...]) -> tuple[str, str]:
    """:func:`stage_summary`'s Markdown and CSV with a paper's rows appended as
    "<label> (reported)": each of ``reported`` is (label, *values as fractions) in the order of
    ``paper_columns``; the table's other columns get "–"."""
    header = markdown.splitlines()[0].strip("| ").split(" | ")[2:]
    for label, *values in reported:
        paper = dict(zip(paper_columns, values))
        cells = [f"{100 * paper[c]:.1f}" if c in paper else "–" for c in header]
        markdown += f"| {label} (reported) | – | " + " | ".join(cells) + " |\n"
        csv += ",".join([f"{label} (reported)", "", *[
            f"{100 * paper[c]:.2f}," if c in paper else "," for c in header]]) + "\n"
    return markdown, csv


def paired_differences(results: dict[str, list[dict[str, Any]]],
                       pairs: tuple[tuple[str, str], ...],
                       columns: tuple[Column, ...]) -> str:
    """Markdown: per (row, reference) of ``pairs`` that both have runs, the row's number minus
    the reference's run of the same seed, per column in points (%), "mean ± std (each seed's
    difference)" — the same seed shares the initialisation and the batch order, so the paired
    spread is the comparison's own. Seeds one of them lacks are left out; a pair with no seed
    in common is left out."""
    lines = ["| comparison | seeds | " + " | ".join(c[0] for c in columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for row, reference in pairs:
        if row not in results or reference not in results:
            continue
        base = {run["seed"]: run for run in results[reference]}
        both = [(run, base[run["seed"]]) for run in results[row] if run["seed"] in base]
        if not both:
            continue
        cells = []
        for column in columns:
            deltas = [100 * (a[0] - b[0]) for run, ref in both
                      if (a := column_values([run], column))
                      and (b := column_values([ref], column))]
            if not deltas:
                cells.append("–")
                continue
            mean, std = mean_std(deltas)
            cells.append(f"{_signed(mean)} ± {std:.1f} ({', '.join(map(_signed, deltas))})")
        seeds = ", ".join(str(run["seed"]) for run, _ in both)
        lines.append(f"| {row} − {reference} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def _signed(value: float) -> str:
    """``value`` with its sign and one decimal; a difference that rounds to zero is +0.0."""
    text = f"{value:+.1f}"
    return "+0.0" if text == "-0.0" else text


def seed_values_csv(results: dict[str, list[dict[str, Any]]],
                    columns: tuple[Column, ...]) -> str:
    """CSV of every run's own numbers behind a table: per row and seed, each of ``columns``
    in % (4 decimals; empty where the run has none) — what a table's mean ± std and paired
    differences are computed from, kept so they can be recomputed (or pooled with later
    seeds) without the run folders."""
    lines = [",".join(["row", "seed", *(c[0] for c in columns)])]
    for name, runs in results.items():
        for run in sorted(runs, key=lambda r: r.get("seed", -1)):
            cells = [f"{100 * v[0]:.4f}" if (v := column_values([run], c)) else ""
                     for c in columns]
            lines.append(",".join([name, str(run.get("seed", "")), *cells]))
    return "\n".join(lines) + "\n"


def write_table(out: Path, name: str, markdown: str, csv: str,
                draw: Callable[[Path], None], runs: Path | None = None,
                seed_values: str | None = None) -> list[Path]:
    """A table script's files, ``out/<name>.md``, ``.csv`` (atomically) and ``.png`` (``draw``
    writes it); with ``seed_values`` (:func:`seed_values_csv`) also ``out/<name>_seeds.csv``;
    with ``runs`` (the table's runs folder) also the report of those runs with its figures,
    ``out/<name>_report/`` (:mod:`affectlab.report`). The Markdown is printed. Returns the
    paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.csv", out / f"{name}.png"]
    atomic_write_text(paths[0], markdown)
    atomic_write_text(paths[1], csv)
    draw(paths[2])
    if seed_values is not None:
        paths.append(out / f"{name}_seeds.csv")
        atomic_write_text(paths[-1], seed_values)
    if runs is not None:
        from affectlab.report.report import write_report  # matplotlib: table scripts only

        paths.append(write_report([runs], out / f"{name}_report", overwrite=True,
                                  html_and_tensorboard=False,
                                  title=f"The runs of {out / name}.md")["markdown"])
    print(markdown)
    print("wrote " + ", ".join(str(p) for p in paths))
    return paths


def column_means(results: dict[str, list[dict[str, Any]]],
                 columns: tuple[Column, ...]) -> list[tuple[str, list[float | None]]]:
    """Per row, the mean over its runs of each column in % (None where it has none): the
    series of a table's bar chart."""
    return [(name, [mean_std([100 * v for v in column_values(runs, c)])[0]
                    if column_values(runs, c) else None for c in columns])
            for name, runs in results.items()]


def per_label_summary(results: dict[str, list[dict[str, Any]]], task: str = "au") -> str:
    """Markdown: per label of ``task``, F1 at 0.5 / F1 at the tuned thresholds / AP (%, means
    over each row's runs), one line per row that has the task; "" when none has it."""
    rows = {name: [run["tasks"][task] for run in runs if task in run.get("tasks", {})]
            for name, runs in results.items()}
    rows = {name: runs for name, runs in rows.items() if runs}
    if not rows:
        return ""
    labels = next(iter(rows.values()))[0]["labels"]
    header = ["row", *labels, "mean"]
    lines = [f"{task} per label: F1 at 0.5 / F1 at validation-tuned thresholds / AP (%, mean "
             "over runs)", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in rows.items():
        if [r["labels"] for r in runs] != [labels] * len(runs):
            continue

        def mean(key: str, c: int | None, runs=runs) -> str:
            values = [(r["tuned"] if key == "tuned" else r) for r in runs]
            if key == "tuned" and any("tuned" not in r for r in runs):
                return "–"
            field = {"f1": "f1", "tuned": "f1", "ap": "average_precision"}[key]
            if c is None:
                field = {"f1": "f1_mean", "tuned": "f1_mean", "ap": "ap_mean"}[key]
                return f"{100 * statistics.fmean(v[field] for v in values):.1f}"
            return f"{100 * statistics.fmean(v[field][c] for v in values):.1f}"

        cells = [f"{mean('f1', c)} / {mean('tuned', c)} / {mean('ap', c)}"
                 for c in range(len(labels))]
        cells.append(f"{mean('f1', None)} / {mean('tuned', None)} / {mean('ap', None)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ readable results
def format_task_lines(tasks: dict[str, Any]) -> list[str]:
    """Per task a readable block: per label F1 at 0.5, F1 at the tuned thresholds, the
    thresholds, accuracy and AP, and the means; the criteria of the other tasks."""
    lines = []
    for task, values in tasks.items():
        if "f1" in values:
            tuned = values.get("tuned")
            width = max(len(label) for label in values["labels"])
            lines.append(f"  {task}: {'label':<{width}}  F1@0.5  F1@thr  thr   Acc    AP")
            for c, label in enumerate(values["labels"]):
                tuned_cells = (f"{tuned['f1'][c]:.3f}   {values['thresholds'][c]:.2f}"
                               if tuned else "  –       – ")
                lines.append(f"  {'':{len(task)}}  {label:<{width}}  {values['f1'][c]:.3f}   "
                             f"{tuned_cells}  {values['acc'][c]:.3f}  "
                             f"{values['average_precision'][c]:.3f}")
            tuned_mean = f"{tuned['f1_mean']:.3f}        " if tuned else "  –          "
            lines.append(f"  {'':{len(task)}}  {'mean':<{width}}  {values['f1_mean']:.3f}   "
                         f"{tuned_mean}{values['acc_mean']:.3f}  {values['ap_mean']:.3f}")
        elif "f1_macro" in values:
            lines.append(f"  {task}: macro F1 {values['f1_macro']:.3f}  acc {values['acc']:.3f}")
        elif "ccc_valence" in values:
            lines.append(f"  {task}: CCC valence {values['ccc_valence']:.3f}  "
                         f"arousal {values['ccc_arousal']:.3f}")
        elif task == "identity":
            lines.append(f"  {task}: top-1 accuracy {values['acc']:.3f} over "
                         f"{values['num_valid']} faces of trained identities")
    return lines


def format_results(metrics: dict[str, Any]) -> str:
    """A readable table of a run's test metrics (:func:`format_task_lines`), its score and
    training throughput."""
    lines = [f"Test results — method={metrics['method']} dataset={metrics['dataset']} "
             f"seed={metrics['seed']} (best epoch {metrics['best_epoch']})",
             *format_task_lines(metrics["tasks"])]
    if metrics.get("score") is not None:
        lines.append(f"  score (mean of the tasks' criteria): {metrics['score']:.3f}")
    lines.append(f"  training throughput: {metrics['throughput_images_per_s']:.0f} images/s on "
                 f"{metrics['device']}")
    return "\n".join(lines)
