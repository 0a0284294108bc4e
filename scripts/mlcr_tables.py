"""Run and write MLCR's tables: ``python scripts/mlcr_tables.py {main,ablation,celeba} ...``.

One command per table of the MLCR paper / its reproduction (Chi et al., 2021):

- ``main``      Baseline vs MLCR, per-AU F1 (reproduction Table 1),
- ``ablation``  Baseline, + L_cr, + L_cr + L_mv, + L_cr + L_mv + GCN (= MLCR) (Table 2),
- ``celeba``    per-attribute F1 of Baseline vs MLCR on CelebA's 40 attributes (``method.tasks
                =[attr]``; Figure 3), as a table and a bar chart PNG.

Each row of a table is a list of Hydra overrides (``TABLES``, ``BASELINE_ROWS`` and
``ABLATION_ROWS`` below). The rows run as the stages of a recipe
(:class:`affectlab.recipe.Runner`), each one multirun over the seeds,

    python -m affectlab.train -m <row overrides> seed=0,1,2 hydra.sweep.dir=<out>/runs/<row slug>

one row after the other, then reads the rows' ``metrics.json`` files and writes
``<out>/<table>.md`` and ``<out>/<table>.csv`` (and ``<out>/<table>.png`` for ``celeba``):
per-label F1 averaged over the seeds and the average F1 as mean ± std over the seeds, in %.
When the dataset is CK+, the reproduction's reported numbers are printed beside as extra rows.

Finished runs (``metrics.json`` present) already in a row's directory are reused when they are
the row's configuration (else refused), so an interrupted table is completed by running the
same command again; an unfinished run directory is moved aside to ``seed<k>.incomplete-<n>/``
(never deleted) and its seed runs again.

Examples::

    python scripts/mlcr_tables.py ablation                       # synthetic, seeds 0 1 2
    python scripts/mlcr_tables.py main --seeds 0 1 2 3 4 --out results/main5
    python scripts/mlcr_tables.py main trainer.device=cuda --baseline single
    python scripts/mlcr_tables.py ablation --quick --out results/smoke   # smoke run, tiny data

The rows start from the preset ``experiment=mlcr_<dataset>`` when it exists (else from
``dataset=<dataset>``); an ``experiment=...`` override replaces it. Default ``--out``:
``results/mlcr_<table>_<dataset>/`` (``..._quick/`` with ``--quick``).

Hydra overrides go right after the table name (or after ``--``); they apply to every row,
except ``method.<key>`` overrides for a key the row's method does not have (they are left out
of that row, so ``method.step_two_start=...`` does not break the ``method=baseline`` row), and
a row's own switches always win over them.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from affectlab.recipe import RecipeError, Runner
from affectlab.report.figures import grouped_bars
from affectlab.report.report import ReportError, write_report
from affectlab.results import Row, configuration_name, mean_std, run_differences
from affectlab.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
PERCENT = 100.0

# ----------------------------------------------------------------------------- rows, as data


@dataclass(frozen=True)
class RowSpec:
    """One table row: its label in the table, its run folder name and its Hydra overrides."""

    name: str
    slug: str
    overrides: tuple[str, ...]


# The Baseline row, two definitions (``--baseline``). "two-view" is the reproduction's
# "two ResNet-34 trained on labelled data only": MLCR with every addition switched off, so each
# ablation step changes exactly the switch it names. "single" is the framework's supervised
# baseline method (one network, unweighted BCE) on the same data, model and schedule.
BASELINE_ROWS: dict[str, RowSpec] = {
    "two-view": RowSpec("Baseline", "baseline_two_view",
                        ("method=mlcr", "method.lambda_mv=0.0", "method.lambda_cr=0.0",
                         "method.gcn=false", "method.unlabeled=false")),
    "single": RowSpec("Baseline", "baseline_single", ("method=baseline",)),
}
BASELINE_CAPTIONS: dict[str, str] = {
    "two-view": ("Baseline = MLCR's two views trained on the labelled images only (λ_mv = 0, "
                 "λ_cr = 0, no GCN, no unlabelled pool), the reproduction's \"two ResNet-34 "
                 "trained on labelled data only\"; `--baseline single` gives the framework's "
                 "one-network `method=baseline` instead."),
    "single": ("Baseline = the framework's supervised baseline (`method=baseline`: one network, "
               "labelled images only) on the same data, model and schedule; `--baseline "
               "two-view` gives the reproduction's two-view form (MLCR with λ_mv = λ_cr = 0, no "
               "GCN, no unlabelled pool)."),
}
DEFAULT_BASELINE = "two-view"

MLCR_ROW = RowSpec("MLCR", "mlcr", ("method=mlcr",))
# The ablation in the reproduction's order; None stands for the Baseline row chosen above.
ABLATION_ROWS: tuple[RowSpec | None, ...] = (
    None,
    RowSpec("+ L_cr", "l_cr", ("method=mlcr", "method.lambda_mv=0.0", "method.gcn=false")),
    RowSpec("+ L_cr + L_mv", "l_cr_l_mv", ("method=mlcr", "method.gcn=false")),
    RowSpec("+ L_cr + L_mv + GCN (MLCR)", "mlcr", ("method=mlcr",)),
)


@dataclass(frozen=True)
class ReportedRow:
    """Published numbers of one row: F1 per label (in the order of the table's labels), Avg."""

    name: str
    f1: tuple[float, ...]
    average: float


@dataclass(frozen=True)
class ReportedTable:
    """A published table: where it comes from, its label names and its rows (F1 in %)."""

    source: str
    labels: tuple[str, ...]
    rows: tuple[ReportedRow, ...]


CKPLUS_AUS = tuple(f"AU{n}" for n in (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43))
CKPLUS_BASELINE = ReportedRow("Baseline (reported)", (45.7, 33.5, 58.1, 37.2, 69.8, 48.7, 76.2,
                                                      36.8, 36.1, 79.3, 46.2, 51.3), 51.6)
CKPLUS_MLCR_F1 = (51.7, 42.5, 63.4, 45.1, 72.9, 57.3, 78.4, 41.9, 45.2, 80.3, 53.1, 58.3)
CKPLUS_MLCR_AVERAGE = 57.5
REPRODUCTION = "Chi, Chen & Liu (2021), Reproduction of MLCR, CK+"

# Published numbers per table and dataset (the only published per-AU numbers: CK+).
REPORTED: dict[tuple[str, str], ReportedTable] = {
    ("main", "ckplus"): ReportedTable(f"{REPRODUCTION}, Table 1", CKPLUS_AUS, (
        CKPLUS_BASELINE,
        ReportedRow("MLCR (reported)", CKPLUS_MLCR_F1, CKPLUS_MLCR_AVERAGE),
    )),
    ("ablation", "ckplus"): ReportedTable(f"{REPRODUCTION}, Table 2", CKPLUS_AUS, (
        CKPLUS_BASELINE,
        ReportedRow("+ L_cr (reported)", (50.9, 39.3, 61.9, 44.1, 70.9, 55.6, 77.8, 40.8, 43.5,
                                          79.7, 52.6, 56.7), 56.2),
        ReportedRow("+ L_cr + L_mv (reported)", (50.6, 41.2, 62.0, 44.2, 71.3, 56.0, 77.5, 41.4,
                                                 44.6, 79.9, 52.9, 57.1), 56.6),
        ReportedRow("+ L_cr + L_mv + GCN (MLCR) (reported)", CKPLUS_MLCR_F1,
                    CKPLUS_MLCR_AVERAGE),
    )),
}


@dataclass(frozen=True)
class TableSpec:
    """A table: its rows, the task it reads from metrics.json and how it is laid out."""

    name: str
    title: str
    task: str
    default_dataset: str
    rows: tuple[RowSpec | None, ...]             # None: the chosen Baseline row
    task_overrides: tuple[str, ...] = ()          # added to every row of this table
    labels_as_rows: bool = False                  # Markdown transposed (many labels)
    bar_chart: bool = False


TABLES: dict[str, TableSpec] = {
    "main": TableSpec("main", "MLCR vs baseline: F1 (%) per AU", "au", "synthetic",
                      (None, MLCR_ROW), task_overrides=("method.tasks=[au]",)),
    "ablation": TableSpec("ablation", "MLCR ablation: F1 (%) per AU", "au", "synthetic",
                          ABLATION_ROWS, task_overrides=("method.tasks=[au]",)),
    "celeba": TableSpec("celeba", "MLCR vs baseline: F1 (%) per facial attribute", "attr",
                        "celeba", (None, MLCR_ROW),
                        task_overrides=("method.tasks=[attr]",
                                        "trainer.monitor=val/attr/f1_mean"),
                        labels_as_rows=True, bar_chart=True),
}

DEFAULT_SEEDS = (0, 1, 2)
# --quick: a smoke run on tiny synthetic data (mirrors TINY_DATA / TINY_MODEL of tests/conftest.py)
QUICK_SEEDS = (0, 1)
QUICK_DATA_ROOT = "data/synthetic"
QUICK_OVERRIDES: tuple[str, ...] = (
    "dataset.image_size=32",
    "dataset.num_subjects_train=4", "dataset.images_per_subject_train=6",
    "dataset.num_subjects_unlabeled=4", "dataset.images_per_subject_unlabeled=6",
    "dataset.num_subjects_val=3", "dataset.images_per_subject_val=4",
    "dataset.num_subjects_test=3", "dataset.images_per_subject_test=4",
    "model.widths=[8,16]",
    "trainer.batch_size=8", "trainer.max_steps=2", "trainer.device=cpu",
    "trainer.progress_bar=false",
    "method.step_two_start=1",
)
QUICK_DATASET = "synthetic"
QUICK_SUFFIX = "_quick"           # default --out of a smoke run, apart from the real table
DECIMALS = 1                      # in the Markdown (the paper's precision)
CSV_DECIMALS = 4


class TableError(RuntimeError):
    """A problem the user can fix (missing dataset, failed row, mixed run folders)."""


# ------------------------------------------------------------------------------- overrides


def override_key(override: str) -> str:
    """``+method.x=1`` → ``method.x``: the config key or group an override sets."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*lists: tuple[str, ...] | list[str]) -> list[str]:
    """Concatenate override lists; for a key set more than once the last value wins."""
    merged: dict[str, str] = {}
    for overrides in lists:
        for override in overrides:
            merged.pop(override_key(override), None)   # the new value goes last, as given
            merged[override_key(override)] = override
    return list(merged.values())


def method_keys(method: str) -> set[str]:
    """Top-level keys of ``configs/method/<method>.yaml``."""
    path = CONFIG_DIR / "method" / f"{method}.yaml"
    if not path.is_file():
        raise TableError(f"method={method} has no config ({path})")
    return set(yaml.safe_load(path.read_text()) or {})


def drop_foreign_method_keys(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Leave out ``method.<key>=`` overrides the row's method has no key for.

    Returns (kept, dropped). Overrides with a ``+``/``~`` prefix are always kept.
    """
    methods = [o.split("=", 1)[1] for o in overrides if override_key(o) == "method"]
    if not methods:
        return overrides, []
    known = method_keys(methods[-1])
    kept, dropped = [], []
    for override in overrides:
        key = override_key(override)
        plain = not override.startswith(("+", "~"))
        if plain and key.startswith("method.") and key.split(".")[1] not in known:
            dropped.append(override)
        else:
            kept.append(override)
    return kept, dropped


@dataclass(frozen=True)
class PlannedRow:
    """A row with every override it runs with (seed and hydra.* excluded)."""

    name: str
    slug: str
    overrides: tuple[str, ...]
    dropped: tuple[str, ...] = ()


def dataset_available(dataset: str) -> bool:
    """Whether ``configs/dataset/<dataset>.yaml`` exists (CelebA, CK+: not yet)."""
    return (CONFIG_DIR / "dataset" / f"{dataset}.yaml").is_file()


def base_overrides(dataset: str) -> list[str]:
    """``experiment=mlcr_<dataset>`` when that preset exists, else ``dataset=<dataset>``."""
    preset = f"mlcr_{dataset}"
    if (CONFIG_DIR / "experiment" / f"{preset}.yaml").is_file():
        return [f"experiment={preset}"]
    return [f"dataset={dataset}"]


def plan_rows(table: TableSpec, dataset: str, *, baseline: str = DEFAULT_BASELINE,
              quick: bool = False, data_root: str | None = None,
              extra: list[str] | tuple[str, ...] = ()) -> list[PlannedRow]:
    """Every row of ``table`` with its full override list, in the table's order.

    Order, later winning: dataset preset, the table's task overrides, --quick sizes,
    ``dataset.root``, the user's overrides, the row's own switches.
    """
    common = merge_overrides(base_overrides(dataset), table.task_overrides,
                             QUICK_OVERRIDES if quick else (),
                             [f"dataset.root={data_root}"] if data_root else (), extra)
    planned = []
    for spec in table.rows:
        spec = spec or BASELINE_ROWS[baseline]
        kept, dropped = drop_foreign_method_keys(merge_overrides(common, spec.overrides))
        planned.append(PlannedRow(spec.name, spec.slug, tuple(kept), tuple(dropped)))
    return planned


# ------------------------------------------------------------------------------ running rows


def finished_runs(row_dir: Path, row: PlannedRow) -> dict[int, dict[str, Any]]:
    """metrics.json of the finished runs in ``row_dir``, by seed (the first one per seed).

    Raises TableError when the folder holds a finished run of another configuration: other
    overrides, or the same overrides resolving to other values (a preset changed since).
    """
    by_seed: dict[int, dict[str, Any]] = {}
    for path in sorted(row_dir.rglob("metrics.json")) if row_dir.is_dir() else []:
        metrics = json.loads(path.read_text())
        changes = run_differences(path.parent, row.overrides, int(metrics["seed"]))
        if changes:
            raise TableError(
                f"{path.parent} ran with other values than row '{row.name}' gives now (another "
                "configuration, or a preset or default changed since):\n  "
                + "\n  ".join(changes) + "\nUse another --out (or move that run away).")
        by_seed.setdefault(int(metrics["seed"]), metrics)
    return by_seed


def run_rows(planned: list[PlannedRow], runs_dir: Path, seeds: list[int]) -> None:
    """Run every row's missing seeds as a recipe stage (:class:`affectlab.recipe.Runner`):
    ``<runs_dir>/<row slug>/seed<k>/``, finished runs reused (and checked against the row's
    configuration), an unfinished one moved aside and run again."""
    for row in planned:
        if row.dropped:
            print(f"[{row.name}] not for this row's method, left out: {' '.join(row.dropped)}")
    recipe = OmegaConf.create({"name": runs_dir.parent.name, "stages": {
        row.slug: {"overrides": list(row.overrides)} for row in planned}})
    try:
        Runner(recipe, out=runs_dir, seeds=seeds, overrides=[], launcher=[]).run()
    except RecipeError as err:
        raise TableError(str(err)) from None


def gather_row(row: PlannedRow, row_dir: Path, seeds: list[int]) -> Row:
    """The finished runs of ``row`` for exactly ``seeds``, as an affectlab.results.Row."""
    done = finished_runs(row_dir, row)
    missing = [s for s in seeds if s not in done]
    if missing:
        raise TableError(f"row '{row.name}' has no finished run for seeds {missing} in {row_dir}")
    return Row(row.name, [done[s] for s in seeds])


# ---------------------------------------------------------------------------------- tables


@dataclass
class TableLine:
    """One line of a table in %: per-label F1 (None: not reported) and the average."""

    name: str
    source: str                  # "measured" or the publication
    seeds: int | None
    f1: list[float | None]
    average: float
    average_std: float | None = None


@dataclass
class TableData:
    """A table ready to write: label names, measured lines, reported lines, caption."""

    spec: TableSpec
    dataset: str
    labels: list[str]
    measured: list[TableLine]
    reported: list[TableLine] = field(default_factory=list)
    caption: list[str] = field(default_factory=list)


def measured_line(row: Row, task: str) -> TableLine:
    """Per-label F1 averaged over seeds and the average F1 as mean ± std over seeds, in %."""
    _, per_seed = row.per_label(task)
    per_label = [PERCENT * sum(column) / len(column) for column in zip(*per_seed)]
    mean, std = mean_std([PERCENT * v for v in row.values(task, "f1_mean")])
    return TableLine(row.name, "measured", len(row.runs), per_label, mean, std)


def reported_lines(reported: ReportedTable, labels: list[str]) -> list[TableLine]:
    """The published rows aligned to ``labels`` (None where the publication has no value)."""
    position = {label: i for i, label in enumerate(reported.labels)}
    return [TableLine(row.name, reported.source, None,
                      [row.f1[position[label]] if label in position else None
                       for label in labels], row.average)
            for row in reported.rows]


def build_table(spec: TableSpec, dataset: str, rows: list[Row], *, seeds: list[int],
                baseline: str = DEFAULT_BASELINE,
                planned: list[PlannedRow] | None = None) -> TableData:
    """Measured lines from the rows' runs, the published lines when there are any, caption."""
    labels, _ = rows[0].per_label(spec.task)
    for row in rows[1:]:
        if row.per_label(spec.task)[0] != labels:
            raise TableError(f"row '{row.name}' has other labels than row '{rows[0].name}'")
    table = TableData(spec, dataset, list(labels), [measured_line(r, spec.task) for r in rows])
    seeds_text = ", ".join(str(s) for s in seeds)
    table.caption.append(
        f"{spec.title} on {dataset} (test split). Per label: mean over seeds {seeds_text} "
        f"({len(seeds)} runs per row); Avg.: mean F1 over the labels, mean ± sample std over "
        "the seeds.")
    table.caption.append(BASELINE_CAPTIONS[baseline])
    reported = REPORTED.get((spec.name, dataset))
    if reported:
        table.reported = reported_lines(reported, table.labels)
        table.caption.append(f"\"(reported)\" rows: {reported.source} (their own runs, not ours).")
    else:
        table.caption.append("No published numbers for this dataset.")
    if planned:
        table.caption.append(overrides_caption(planned))
    return table


def overrides_caption(planned: list[PlannedRow]) -> str:
    """The overrides shared by every row once, then each row's own ones."""
    shared = [o for o in planned[0].overrides if all(o in p.overrides for p in planned)]
    own = {p.name: [o for o in p.overrides if o not in shared] for p in planned}
    return (f"Every row: `{configuration_name(shared)}`. "
            + "; ".join(f"{name}: `{' '.join(overrides) or '(nothing more)'}`"
                        for name, overrides in own.items()) + ".")


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.{DECIMALS}f}"


def _average_cell(line: TableLine) -> str:
    if line.average_std is None:
        return _cell(line.average)
    return f"{line.average:.{DECIMALS}f} ± {line.average_std:.{DECIMALS}f}"


def markdown(table: TableData) -> str:
    """The table in Markdown: caption, then rows = methods and columns = labels + Avg.

    With ``labels_as_rows`` (CelebA's 40 attributes) the grid is transposed: one line per
    label, one column per method, the Avg. line last.
    """
    lines = [f"**{table.caption[0]}**", "", *table.caption[1:], ""]
    everything = table.measured + table.reported
    if table.spec.labels_as_rows:
        lines.append("| Attribute | " + " | ".join(line.name for line in everything) + " |")
        lines.append("|" + "---|" * (len(everything) + 1))
        for i, label in enumerate(table.labels):
            lines.append(f"| {label} | " + " | ".join(_cell(line.f1[i]) for line in everything)
                         + " |")
        lines.append("| Avg. | " + " | ".join(_average_cell(line) for line in everything) + " |")
    else:
        lines.append("| Method | " + " | ".join(table.labels) + " | Avg. |")
        lines.append("|" + "---|" * (len(table.labels) + 2))
        for line in everything:
            lines.append(f"| {line.name} | " + " | ".join(_cell(v) for v in line.f1)
                         + f" | {_average_cell(line)} |")
    return "\n".join(lines) + "\n"


def write_csv(table: TableData, path: Path) -> None:
    """One line per method: name, source, seeds, F1 per label, avg_mean, avg_std (in %)."""
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.{CSV_DECIMALS}f}"

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "source", "seeds", *table.labels, "avg_mean", "avg_std"])
        for line in table.measured + table.reported:
            writer.writerow([line.name, line.source, "" if line.seeds is None else line.seeds,
                             *(number(v) for v in line.f1), number(line.average),
                             number(line.average_std)])


# ------------------------------------------------------------------------------- bar chart


def bar_chart(table: TableData, path: Path) -> None:
    """Grouped bars: per label, one bar per measured method (F1 %, mean over seeds)."""
    grouped_bars(path, f"{table.spec.title} on {table.dataset}", table.labels,
                 [(f"{line.name} (avg {line.average:.{DECIMALS}f})", line.f1)
                  for line in table.measured], y_label="F1 (%)")


def write_outputs(table: TableData, out: Path) -> list[Path]:
    """``<out>/<table>.md``, ``<out>/<table>.csv``, for bar-chart tables ``.png``, and the
    report of the table's runs (``out/runs``) with its figures, ``<out>/<table>_report/``."""
    out.mkdir(parents=True, exist_ok=True)
    markdown_path, csv_path = out / f"{table.spec.name}.md", out / f"{table.spec.name}.csv"
    atomic_write_text(markdown_path, markdown(table))
    write_csv(table, csv_path)
    written = [markdown_path, csv_path]
    if table.spec.bar_chart:
        chart_path = out / f"{table.spec.name}.png"
        bar_chart(table, chart_path)
        written.append(chart_path)
    try:
        written.append(write_report([out / "runs"], out / f"{table.spec.name}_report",
                                    overwrite=True, html_and_tensorboard=False,
                                    title=f"The runs of {markdown_path}")
                       ["markdown"])
    except ReportError as err:    # rows gathered from metrics alone: the table, no report
        print(f"no report of the runs: {err}")
    return written


# ------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every row")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"default {' '.join(map(str, DEFAULT_SEEDS))} "
                             f"(--quick: {' '.join(map(str, QUICK_SEEDS))})")
    parser.add_argument("--dataset", default=None,
                        help="default: synthetic (main, ablation), celeba (celeba)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default results/mlcr_<table>_<dataset>[_quick]/")
    parser.add_argument("--baseline", choices=sorted(BASELINE_ROWS), default=DEFAULT_BASELINE,
                        help="definition of the Baseline row (see the table caption)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny synthetic data, 2 steps, CPU, seeds 0 1")
    parser.add_argument("--data-root", default=None,
                        help=f"dataset.root of the runs (--quick default: {QUICK_DATA_ROOT})")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    """Run the table's rows (reusing finished runs), write its files, return their paths."""
    args = parse_args(argv)
    spec = TABLES[args.table]
    dataset = args.dataset or spec.default_dataset
    if not dataset_available(dataset):
        raise TableError(f"dataset={dataset} is not available yet: configs/dataset/{dataset}"
                         ".yaml does not exist (its dataset module is still to be written). "
                         "The table's writer works once it does.")
    if args.quick and dataset != QUICK_DATASET:
        raise TableError(f"--quick runs on tiny synthetic data; it cannot be combined with "
                         f"--dataset {dataset}")
    seeds = list(args.seeds or (QUICK_SEEDS if args.quick else DEFAULT_SEEDS))
    if len(set(seeds)) != len(seeds):
        raise TableError(f"--seeds {seeds}: each seed once")
    suffix = QUICK_SUFFIX if args.quick else ""
    default_out = Path("results") / f"mlcr_{spec.name}_{dataset}{suffix}"
    out = (args.out or default_out).resolve()
    data_root = args.data_root or (QUICK_DATA_ROOT if args.quick else None)
    planned = plan_rows(spec, dataset, baseline=args.baseline, quick=args.quick,
                        data_root=data_root, extra=args.overrides)
    run_rows(planned, out / "runs", seeds)
    rows = [gather_row(row, out / "runs" / row.slug, seeds) for row in planned]
    table = build_table(spec, dataset, rows, seeds=seeds, baseline=args.baseline,
                        planned=planned)
    written = write_outputs(table, out)
    print(markdown(table))
    print("wrote " + ", ".join(str(p) for p in written))
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except TableError as err:
        sys.exit(f"mlcr_tables: {err}")
