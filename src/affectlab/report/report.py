"""``affectlab-report PATH [PATH ...] --out DIR``: runs compared in Markdown, HTML and figures.

A PATH is a run directory, a sweep (Hydra's multirun folder) or a recipe's folder: every
finished training run below it (``metrics.json`` beside ``config_resolved.yaml``) is read.
Runs whose resolved configs are equal but for the seed are one **group** (a configuration over
seeds), named by its folder (a recipe's stage: ``teacher``; a sweep's job: its overrides).
The report holds:

1. the runs (folder, seed, best epoch, training time);
2. what differs between the groups' resolved configs (every key with more than one value);
3. the metrics of the test split, mean ± std over each group's seeds: AU F1 at 0.5, F1 at the
   validation-tuned thresholds and average precision side by side, expressions, CCCs, score;
4. figures: per-label F1 bars (at 0.5 and tuned, ± std), PR curves per AU, the expression
   confusion matrix (summed over seeds), valence/arousal scatter with CCC, training curves.
   PR curves and scatters read each group's lowest seed's ``test_predictions.npz`` (written
   by every run since the report came; older runs get a note instead).

``DIR/report.md`` links the figures in ``DIR/figures/``; ``DIR/report.html`` is
self-contained (figures embedded); the figures are also logged to ``DIR/tb`` (TensorBoard's
Images tab). A report is never written over: another ``--out``, or ``--overwrite``.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from affectlab.config import upgrade_config
from affectlab.engine.evaluation import PREDICTIONS_FILE, load_predictions
from affectlab.results import (
    RUN_LOCATION_KEYS,
    configuration_name,
    flatten,
    mean_std,
    read_overrides,
    stage_summary,
)
from affectlab.utils import atomic_write_text

log = logging.getLogger("affectlab.report")

#: config keys that never tell groups apart (where and how fast a run went, its seed)
IGNORED_KEYS = ("seed", "run_dir", "hydra", *RUN_LOCATION_KEYS)
MAX_GROUPS_DRAWN = 8   # per-group figures (confusion, scatter) for this many groups at most


class ReportError(ValueError):
    """A report that cannot be made as asked (no runs, an output in the way)."""


@dataclass
class Run:
    """One finished training run."""

    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any]          # flattened resolved config

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", self.config.get("seed", 0)))

    def records(self) -> list[dict[str, Any]]:
        """The run's ``metrics.jsonl`` (every logged scalar, by step)."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Group:
    """Runs of one configuration (seeds)."""

    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return [run.metrics for run in self.runs]


def find_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every finished training run at or below ``paths`` (each read once)."""
    runs, seen = [], set()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ReportError(f"{path} does not exist: give run, sweep or recipe folders")
        candidates = [path] if (path / "metrics.json").is_file() else sorted(
            p.parent for p in path.rglob("metrics.json"))
        for run_dir in candidates:
            resolved = run_dir / "config_resolved.yaml"
            if run_dir.resolve() in seen or not resolved.is_file():
                continue        # an evaluation's folder: no config of its own
            seen.add(run_dir.resolve())
            config = flatten(upgrade_config(yaml.safe_load(resolved.read_text()) or {}))
            runs.append(Run(run_dir, json.loads((run_dir / "metrics.json").read_text()),
                            config))
    if not runs:
        raise ReportError(f"no finished training run (metrics.json with config_resolved.yaml) "
                          f"in {', '.join(map(str, paths))}")
    return runs


def _comparable(key: str, value: Any) -> Any:
    """A config value as groups are compared: a folder of one seed (``.../seed2``, a
    student's teacher) stands for that folder of every seed."""
    return re.sub(r"seed\d+", "seed<N>", value) if isinstance(value, str) else value


def _compared_keys(config: dict[str, Any]) -> dict[str, Any]:
    return {k: _comparable(k, v) for k, v in config.items()
            if not k.startswith(IGNORED_KEYS) and not k.endswith(".seed")}


def _identity(run: Run) -> str:
    """What makes runs one configuration: their overrides but the seed (recipes, sweeps), or
    their resolved configs but the seed-derived keys (a run without ``.hydra/``)."""
    if (run.path / ".hydra" / "overrides.yaml").is_file():
        return configuration_name(read_overrides(run.path))
    return json.dumps(_compared_keys(run.config), sort_keys=True, default=str)


def _folder_name(run: Run, roots: Sequence[Path]) -> str:
    """The run's folder relative to the PATH it was found under, without its ``seed<N>``
    folder (a recipe stage's name, a sweep job's number)."""
    path = run.path.resolve()
    for root in roots:
        root = root.resolve()
        if path == root or root in path.parents:
            relative = path.relative_to(root.parent if path == root else root)
            parts = [p for p in relative.parts if not re.fullmatch(r"seed\d+", p)]
            if len(roots) > 1 and path != root:   # several PATHs: say which one
                parts.insert(0, root.name)
            return "/".join(parts) or root.name
    return path.name


def group_runs(runs: list[Run], roots: Sequence[Path]) -> list[Group]:
    """Runs of one configuration (seed aside) as groups, in the order first found; a group
    is named by its runs' common folder (a recipe's stage), else by its overrides."""
    groups: dict[str, Group] = {}
    for run in runs:
        groups.setdefault(_identity(run), Group("")).runs.append(run)
    seen: dict[str, int] = {}
    for identity, group in groups.items():
        group.runs.sort(key=lambda r: r.seed)
        folders = {_folder_name(r, roots) for r in group.runs}
        group.name = folders.pop() if len(folders) == 1 else _short(identity, 60)
        seen[group.name] = seen.get(group.name, 0) + 1
        if seen[group.name] > 1:          # two configurations in one folder: number them
            group.name = f"{group.name} ({seen[group.name]})"
    return list(groups.values())


def config_differences(groups: list[Group]) -> dict[str, dict[str, str]]:
    """Per group, the config keys (seed-derived ones aside) where it departs from the value
    most groups share, ``{group: {key: its value}}`` (the first run of each group)."""
    configs = [_compared_keys(g.runs[0].config) for g in groups]
    keys = sorted({k for c in configs for k in c})
    out: dict[str, dict[str, str]] = {g.name: {} for g in groups}
    for key in keys:
        values = [json.dumps(c.get(key), default=str) for c in configs]
        if len(set(values)) < 2:
            continue
        usual = max(set(values), key=values.count)
        for group, config, value in zip(groups, configs, values):
            if value != usual:
                out[group.name][key] = _short(config.get(key))
    return out


def _short(value: Any, limit: int = 40) -> str:
    """``value`` as text of at most ``limit`` characters (a path keeps its end)."""
    text = "–" if value is None else str(value)
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1):] if "/" in text else text[:limit - 1] + "…"


# ------------------------------------------------------------------------------ figures
def per_label(groups: list[Group], task: str, read: Any) -> tuple[list[str], list, list]:
    """Labels of ``task``, and per group (name, mean per label) and (std per label), in %."""
    labels: list[str] = []
    series, errors = [], []
    for group in groups:
        values = [read(m["tasks"][task]) for m in group.metrics
                  if task in m.get("tasks", {}) and read(m["tasks"][task]) is not None]
        if not values:
            continue
        labels = labels or group.metrics[0]["tasks"][task]["labels"]
        columns = list(zip(*values))
        series.append((group.name, [100 * statistics.fmean(c) for c in columns]))
        errors.append([100 * mean_std(list(c))[1] for c in columns])
    return labels, series, errors


def draw_figures(groups: list[Group], folder: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """Every figure the groups' results allow, into ``folder``; returns (caption, path)
    pairs and notes on what could not be drawn."""
    from affectlab.report import figures

    notes: list[str] = []
    predictions = {g.name: g.runs[0].path / PREDICTIONS_FILE for g in groups}
    missing = [name for name, path in predictions.items() if not path.is_file()]
    if missing:
        notes.append(f"no {PREDICTIONS_FILE} in the runs of {', '.join(missing)} (runs older "
                     "than the report): no PR curves or VA scatter for them")
    lines = len(figures.COLORS)
    if len(groups) > lines:
        notes.append(f"{len(groups)} groups: the PR curves and training curves show the first "
                     f"{lines}; confusion matrices and scatters the first {MAX_GROUPS_DRAWN}")
    loaded = {name: load_predictions(path) for name, path in predictions.items()
              if path.is_file()}
    drawn = _label_bars(groups, folder)
    au = {name: (out["au"], tgt["au"], tgt.get("au_mask", np.ones_like(tgt["au"], bool)))
          for name, (out, tgt) in list(loaded.items())[:lines] if "au" in out and "au" in tgt}
    if au:
        first = next(g for g in groups if g.name in au)
        labels = first.metrics[0]["tasks"].get("au", {}).get("labels") or [
            str(k) for k in range(next(iter(au.values()))[0].shape[1])]
        drawn.append(("Precision-recall per AU (each group's lowest seed)",
                      figures.pr_curves(folder / "au_pr.png",
                                        "Precision-recall per AU (test)", labels, au)))
    for group in groups[:MAX_GROUPS_DRAWN]:
        drawn += _group_figures(group, loaded.get(group.name), folder)
    curves = {g.name: g.runs[0].records() for g in groups[:lines]}
    if any(curves.values()):
        drawn.append(("Training curves (each group's lowest seed)",
                      figures.training_curves(folder / "training_curves.png",
                                              "Training loss and validation score", curves)))
    return drawn, notes


def _label_bars(groups: list[Group], folder: Path) -> list[tuple[str, Path]]:
    """Per-label F1 bars of the multi-label tasks, at 0.5 and at the tuned thresholds."""
    from affectlab.report import figures

    drawn = []
    for task, what in (("au", "AU"), ("attr", "attribute")):
        for key, read, caption in (
                ("f1", lambda m: m.get("f1"), f"{what} F1 at 0.5 per label"),
                ("f1_tuned", lambda m: (m.get("tuned") or {}).get("f1"),
                 f"{what} F1 at the validation-tuned thresholds per label")):
            labels, series, errors = per_label(groups, task, read)
            if series:
                drawn.append((caption, figures.grouped_bars(
                    folder / f"{task}_{key}.png", f"{caption} (mean ± std over seeds)", labels,
                    series, errors=errors, y_label="F1 (%)")))
    return drawn


def _group_figures(group: Group, predictions: tuple[dict, dict] | None,
                   folder: Path) -> list[tuple[str, Path]]:
    """One group's expression confusion matrix (summed over seeds) and VA scatter (its
    lowest seed's ``predictions``)."""
    from affectlab.report import figures

    drawn = []
    confusions = [np.asarray(m["tasks"]["expr"]["confusion"]) for m in group.metrics
                  if "confusion" in m.get("tasks", {}).get("expr", {})]
    if confusions:
        labels = group.metrics[0]["tasks"]["expr"]["labels"]
        drawn.append((f"Expression confusion: {group.name} (summed over seeds)",
                      figures.confusion_matrix(folder / f"expr_confusion_{_file(group)}.png",
                                               f"{group.name}: expressions (test)",
                                               sum(confusions), labels)))
    if predictions is not None and "va" in predictions[0] and "va" in predictions[1]:
        out, tgt = predictions
        valid = tgt.get("va_mask", np.ones(len(tgt["va"]), bool)).astype(bool)
        va = group.metrics[0]["tasks"].get("va", {})
        drawn.append((f"Valence and arousal: {group.name} (lowest seed)",
                      figures.va_scatter(folder / f"va_{_file(group)}.png",
                                         f"{group.name}: valence/arousal (test)",
                                         out["va"][valid], tgt["va"][valid],
                                         (va.get("ccc_valence"), va.get("ccc_arousal")))))
    return drawn


def _file(group: Group) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", group.name).strip("_") or "group"


# ------------------------------------------------------------------------------ documents
def markdown_report(groups: list[Group], figures: list[tuple[str, Path]], notes: list[str],
                    out: Path, title: str) -> str:
    """The report in Markdown (figures linked relative to ``out``)."""
    lines = [f"# {title}", "", f"{sum(len(g.runs) for g in groups)} runs in {len(groups)} "
             "group(s) (a group: runs of one configuration, seeds apart).", "", "## Runs", "",
             "| group | seed | folder | best epoch | training time |", "|---|---|---|---|---|"]
    for group in groups:
        for run in group.runs:
            minutes = run.metrics.get("train_time_s")
            lines.append(f"| {group.name} | {run.seed} | {run.path} | "
                         f"{run.metrics.get('best_epoch', '–')} | "
                         f"{'–' if minutes is None else f'{minutes / 60:.1f} min'} |")
    differences = config_differences(groups)
    lines += ["", "## What differs between the groups' configs", ""]
    if any(differences.values()):
        lines += ["Each group's keys whose value differs from the one most groups share "
                  "(the resolved configs; seed-derived keys aside):", ""]
        lines += [f"- **{name}**: " + (", ".join(f"`{k}={v}`" for k, v in keys.items())
                                       or "the shared values") for name, keys in
                  differences.items()]
    else:
        lines.append("Nothing: one configuration." if len(groups) == 1 else
                     "Nothing but the seed.")
    table, _ = stage_summary({g.name: g.metrics for g in groups})
    lines += ["", "## Test metrics (%, mean ± std over seeds)", "",
              "AU F1 at 0.5 and at the validation-tuned thresholds, and average precision, "
              "side by side: a method can move calibration more than ranking.", "",
              table.rstrip()]
    if figures:
        lines += ["", "## Figures", ""]
        for caption, path in figures:
            lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(out)})", ""]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escaped text with Markdown's **bold** and `code` spans."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def html_report(markdown: str, out: Path, title: str) -> str:
    """The Markdown report as one self-contained HTML page (figures embedded as data URIs);
    only the constructs :func:`markdown_report` writes are translated."""
    body: list[str] = []
    table: list[list[str]] = []

    def close_table() -> None:
        if table:
            head, *rows = table
            body.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
                        + "</tr></thead><tbody>" + "".join(
                            "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                            for row in rows) + "</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                table.append(cells)
            continue
        close_table()
        image = re.fullmatch(r"!\[(.*)\]\((.*)\)", line)
        heading = re.match(r"(#+) (.*)", line)
        if image:
            data = base64.b64encode((out / image.group(2)).read_bytes()).decode()
            body.append(f'<img alt="{_inline(image.group(1))}" '
                        f'src="data:image/png;base64,{data}">')
        elif heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<ul><li>{_inline(line[2:])}</li></ul>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    close_table()
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%;margin:0.5em 0}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_inline(title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def log_figures(figures: list[tuple[str, Path]], folder: Path) -> None:
    """The figures in TensorBoard (``folder``, Images tab), one tag per figure."""
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    for _, path in figures:
        with Image.open(path) as image:
            writer.add_image(f"report/{path.stem}", np.asarray(image.convert("RGB")), 0,
                             dataformats="HWC")
    writer.close()


def write_report(paths: Sequence[str | Path], out: str | Path, *, title: str | None = None,
                 overwrite: bool = False, html_and_tensorboard: bool = True) -> dict[str, Path]:
    """Read the runs under ``paths`` and write the report into ``out``; returns the paths of
    ``markdown``, ``html`` and ``tensorboard`` (the last two only with
    ``html_and_tensorboard``: the table scripts keep the Markdown and its figures alone, which
    the HTML and the event file would only repeat)."""
    out = Path(out)
    if (out / "report.md").exists() and not overwrite:
        raise ReportError(f"{out} already holds a report; refusing to overwrite it (another "
                          "--out, or --overwrite)")
    roots = [Path(p) for p in paths]
    groups = group_runs(find_runs(roots), roots)
    title = title or "Report: " + ", ".join(str(p) for p in paths)
    figure_paths, notes = draw_figures(groups, out / "figures")
    markdown = markdown_report(groups, figure_paths, notes, out, title)
    atomic_write_text(out / "report.md", markdown)
    if not html_and_tensorboard:
        return {"markdown": out / "report.md"}
    atomic_write_text(out / "report.html", html_report(markdown, out, title))
    log_figures(figure_paths, out / "tb")
    return {"markdown": out / "report.md", "html": out / "report.html", "tensorboard": out / "tb"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="affectlab-report",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run, sweep or recipe folders")
    parser.add_argument("--out", required=True, help="the report's folder")
    parser.add_argument("--title", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace a report in --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = write_report(args.paths, args.out, title=args.title, overwrite=args.overwrite)
    except (ReportError, OSError, ValueError) as err:
        log.error("affectlab-report: %s", " ".join(str(err).split()))
        sys.exit(2)
    log.info("written: %s, %s; figures in TensorBoard: tensorboard --logdir %s",
             written["markdown"], written["html"], written["tensorboard"])


__all__ = ["write_report", "find_runs", "group_runs", "config_differences", "main",
           "ReportError"]
