"""Figures and affectlab-report: every figure a real PNG, every run in the report with its
group's mean ± std, the HTML self-contained; runs keep their test predictions and PR curves."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from affectlab.engine.evaluation import PREDICTIONS_FILE, load_predictions
from affectlab.report import figures
from affectlab.report.report import ReportError, write_report

from .conftest import train_tiny_run


def assert_png(path: Path, min_side: int = 200, max_side: int = 4000) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert min_side <= width <= max_side and min_side <= height <= max_side, image.size
        # not blank: a drawn figure has many colours
        assert len(image.convert("RGB").getcolors(maxcolors=width * height)) > 10


def test_every_figure_is_a_png_of_sane_size(tmp_path):
    rng = np.random.default_rng(0)
    targets = (rng.random((200, 3)) < 0.3).astype(np.float32)
    scores = np.clip(targets * 0.4 + rng.random((200, 3)) * 0.6, 0, 1)
    valid = np.ones_like(targets, dtype=bool)
    valid[:20, 0] = False
    paths = [
        figures.grouped_bars(tmp_path / "bars.png", "F1", ["AU01", "AU02", "AU04"],
                             [("a", [40.0, None, 20.0]), ("b", [35.0, 50.0, 25.0])],
                             errors=[[2.0, None, 1.0], [1.0, 3.0, 0.5]]),
        figures.column_bars(tmp_path / "columns.png", "table",
                            {"teacher": [{"tasks": {"au": {"ap_mean": 0.3}}},
                                         {"tasks": {"au": {"ap_mean": 0.32}}}]},
                            [("AU AP", "au", lambda m: m["ap_mean"])]),
        figures.pr_curves(tmp_path / "pr.png", "PR", ["AU01", "AU02", "AU04"],
                          {"run": (scores, targets, valid), "other": (1 - scores, targets, valid)}),
        figures.confusion_matrix(tmp_path / "confusion.png", "expr",
                                 rng.integers(0, 50, (7, 7)), [f"class{k}" for k in range(7)]),
        figures.va_scatter(tmp_path / "va.png", "VA", rng.uniform(-1, 1, (100, 2)),
                           rng.uniform(-1, 1, (100, 2)), (0.31, None)),
        figures.training_curves(tmp_path / "curves.png", "curves", {
            "run": [{"step": s, "train/loss": 1 / (s + 1)} for s in range(1, 60)]
            + [{"step": s, "val/score": s / 100} for s in (20, 40, 60)]}),
    ]
    for path in paths:
        assert_png(path)


def test_a_run_keeps_its_test_predictions_and_pr_curves(tiny_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    outputs, targets = load_predictions(tiny_runs[0] / PREDICTIONS_FILE)
    assert {"au", "expr", "va"} <= set(outputs)
    assert {"au", "au_mask", "expr", "va"} <= set(targets)
    assert len(outputs["au"]) == len(targets["au"]) > 0
    events = EventAccumulator(str(tiny_runs[0] / "tb"), size_guidance={"tensors": 0}).Reload()
    assert any(tag.startswith("test/pr_au/") for tag in events.Tags()["tensors"])


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.sources: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.sources += [value for key, value in attrs if key in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def report(tiny_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A report on the two tiny runs (one configuration, seeds 0 and 1) and an AU-only run."""
    other = tmp_path_factory.mktemp("other")
    au_only = train_tiny_run(tiny_runs[0].parent / "synthetic", other / "au_only", "[au]")
    out = tmp_path_factory.mktemp("report") / "report"
    written = write_report([tiny_runs[0].parent, au_only], out)
    return {"out": out, "written": written, "runs": [*tiny_runs, au_only]}


def test_the_report_lists_every_run_with_its_groups_mean_and_std(report):
    markdown = report["written"]["markdown"].read_text()
    for run in report["runs"]:
        assert str(run) in markdown
    table = markdown.split("## Test metrics")[1].split("##")[0]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header, *rows = lines
    assert ["AU F1@0.5", "AU F1@thr", "AU AP"] == header.split(" | ")[2:5]
    assert len(rows) == 2                                    # two configurations
    seeds = {row.split(" | ")[0].strip("| "): row.split(" | ")[1] for row in rows}
    assert sorted(seeds.values()) == ["1", "2"]
    assert all(" ± " in row for row in rows)
    assert "method.tasks" in markdown.split("## What differs")[1].split("##")[0]


def test_the_report_draws_the_figures_its_runs_allow(report):
    folder = report["out"] / "figures"
    for name in ("au_f1.png", "au_f1_tuned.png", "au_pr.png", "training_curves.png"):
        assert_png(folder / name)
    assert list(folder.glob("expr_confusion_*.png")) and list(folder.glob("va_*.png"))
    assert list((report["out"] / "tb").glob("events.out.tfevents.*"))


def test_the_html_report_is_self_contained(report):
    page = _Page()
    page.feed(report["written"]["html"].read_text())
    images = page.sources
    figures_drawn = len(list((report["out"] / "figures").glob("*.png")))
    assert len(images) == figures_drawn and all(s.startswith("data:image/png;base64,")
                                                for s in images)
    assert page.tags.count("table") == 2 and "h1" in page.tags
    text = " ".join(page.text)
    assert all(str(run) in text for run in report["runs"])


def test_a_report_is_never_written_over(report, tiny_runs):
    before = report["written"]["markdown"].read_text()
    with pytest.raises(ReportError, match="refusing to overwrite"):
        write_report(tiny_runs, report["out"])
    assert report["written"]["markdown"].read_text() == before


@pytest.mark.parametrize("case", ["missing", "no runs"])
def test_the_command_names_what_is_wrong(case, tmp_path):
    (tmp_path / "empty").mkdir()
    path, expected = {"missing": (tmp_path / "nowhere", "nowhere does not exist"),
                      "no runs": (tmp_path / "empty", "no finished training run")}[case]
    result = subprocess.run([sys.executable, "-m", "affectlab.report", str(path), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and expected in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
