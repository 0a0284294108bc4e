"""scripts/mlcr_tables.py: a --quick ablation end to end, reuse of finished runs, the CelebA
writer (table + bar chart) on fake runs, and the published CK+ rows."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from PIL import Image

from affectlab.results import Row

from .conftest import REPO, TINY_DATA, TINY_MODEL, load_script

SCRIPT = REPO / "scripts" / "mlcr_tables.py"
AUS = [f"AU{n}" for n in (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43)]
CELEBA_ATTRIBUTES = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
]
QUICK_SEEDS = [0, 1]
HALF_LAST_DIGIT = 0.05 + 1e-9   # tolerance of a number printed with one decimal


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    """The script, imported as a module."""
    return load_script("mlcr_tables")


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


def markdown_grid(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header cells and {first cell: other cells} of the Markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, body = cells[0], cells[2:]
    return header, {row[0]: row[1:] for row in body}


@pytest.fixture(scope="module")
def quick_ablation(tmp_path_factory, data_root) -> tuple[Path, list[str]]:
    """One --quick ablation through the script (4 rows × seeds 0 1); its --out and args."""
    work = tmp_path_factory.mktemp("tables")
    args = ["ablation", "--quick", "--data-root", str(data_root), "--out", str(work / "out")]
    result = run_script(args, cwd=work)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return work / "out", args


@pytest.mark.slow
def test_quick_ablation_table_matches_the_runs(quick_ablation, tables):
    out, _ = quick_ablation
    planned = tables.plan_rows(tables.TABLES["ablation"], "synthetic", quick=True)
    assert len(planned) == 4
    header, rows = markdown_grid((out / "ablation.md").read_text())
    assert header == ["Method", *AUS, "Avg."]
    assert list(rows) == [p.name for p in planned]
    assert "No published numbers for this dataset" in (out / "ablation.md").read_text()
    with (out / "ablation.csv").open() as handle:
        csv_rows = {r["method"]: r for r in csv.DictReader(handle)}
    assert list(csv_rows) == [p.name for p in planned]

    for row in planned:
        runs = [json.loads(p.read_text())
                for p in sorted((out / "runs" / row.slug).glob("*/metrics.json"))]
        assert sorted(r["seed"] for r in runs) == QUICK_SEEDS
        per_au = [100 * statistics.fmean(r["tasks"]["au"]["f1"][i] for r in runs)
                  for i in range(len(AUS))]
        averages = [100 * r["tasks"]["au"]["f1_mean"] for r in runs]
        cells = rows[row.name]
        for printed, expected in zip(cells[:-1], per_au, strict=True):
            assert abs(float(printed) - expected) <= HALF_LAST_DIGIT
        mean, std = cells[-1].split(" ± ")
        assert abs(float(mean) - statistics.fmean(averages)) <= HALF_LAST_DIGIT
        assert abs(float(std) - statistics.stdev(averages)) <= HALF_LAST_DIGIT
        line = csv_rows[row.name]
        assert [float(line[au]) for au in AUS] == pytest.approx(per_au, abs=1e-3)
        assert float(line["avg_mean"]) == pytest.approx(statistics.fmean(averages), abs=1e-3)
        assert int(line["seeds"]) == len(QUICK_SEEDS)


@pytest.mark.slow
def test_rerun_reuses_finished_runs(quick_ablation):
    out, args = quick_ablation
    run_dirs = sorted(p for p in (out / "runs").rglob("*") if p.is_dir())
    result = run_script(args, cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert log.count("finished for seeds [0, 1], skipped") == 4
    assert "affectlab.train" not in log
    assert sorted(p for p in (out / "runs").rglob("*") if p.is_dir()) == run_dirs


@pytest.mark.slow
def test_runs_of_an_edited_preset_are_not_reused(quick_ablation, tables, tmp_path):
    out, _ = quick_ablation
    row = tables.plan_rows(tables.TABLES["ablation"], "synthetic", quick=True)[-1]
    row_dir = tmp_path / row.slug
    shutil.copytree(out / "runs" / row.slug, row_dir)
    assert sorted(tables.finished_runs(row_dir, row)) == QUICK_SEEDS
    resolved = row_dir / "seed0" / "config_resolved.yaml"
    config = yaml.safe_load(resolved.read_text())
    config["method"]["lambda_cr"] = 1.0      # as if the preset had said so when it ran
    resolved.write_text(yaml.safe_dump(config))
    with pytest.raises(tables.TableError, match="method.lambda_cr: 1.0 then, 100.0 now"):
        tables.finished_runs(row_dir, row)


def fake_runs(tables: ModuleType, out: Path, table: str, dataset: str, labels: list[str],
              seeds: list[int], task: str) -> list:
    """Finished-looking run folders (overrides + metrics.json) for every row of ``table``."""
    rng = random.Random(0)
    planned = tables.plan_rows(tables.TABLES[table], dataset)
    for row in planned:
        for seed in seeds:
            run_dir = out / "runs" / row.slug / f"seed{seed}"
            (run_dir / ".hydra").mkdir(parents=True)
            (run_dir / ".hydra" / "overrides.yaml").write_text(
                "".join(f"- {o}\n" for o in [*row.overrides, f"seed={seed}"]))
            f1 = [rng.random() for _ in labels]
            metrics = {"method": "mlcr", "dataset": dataset, "seed": seed, "split": "test",
                       "tasks": {task: {"labels": labels, "f1": f1,
                                        "f1_mean": statistics.fmean(f1)}}}
            (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return planned


def test_celeba_writer_table_and_bar_chart(tmp_path, tables):
    seeds = [0, 1, 2]
    planned = fake_runs(tables, tmp_path, "celeba", "celeba", CELEBA_ATTRIBUTES, seeds, "attr")
    rows = [tables.gather_row(p, tmp_path / "runs" / p.slug, seeds) for p in planned]
    table = tables.build_table(tables.TABLES["celeba"], "celeba", rows, seeds=seeds,
                               planned=planned)
    written = tables.write_outputs(table, tmp_path)
    assert {p.name for p in written} == {"celeba.md", "celeba.csv", "celeba.png"}

    header, grid = markdown_grid((tmp_path / "celeba.md").read_text())
    assert header == ["Attribute", "Baseline", "MLCR"]
    assert list(grid) == [*CELEBA_ATTRIBUTES, "Avg."]
    for i, attribute in enumerate(CELEBA_ATTRIBUTES):
        expected = 100 * statistics.fmean(r["tasks"]["attr"]["f1"][i] for r in rows[1].runs)
        assert abs(float(grid[attribute][1]) - expected) <= HALF_LAST_DIGIT
    assert " ± " in grid["Avg."][0]
    with (tmp_path / "celeba.csv").open() as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [r["method"] for r in csv_rows] == ["Baseline", "MLCR"]
    assert all(attribute in csv_rows[0] for attribute in CELEBA_ATTRIBUTES)

    with Image.open(tmp_path / "celeba.png") as image:   # the chart: a PNG of sane size
        assert image.format == "PNG"
        width, height = image.size
        assert 600 <= width <= 2500 and 300 <= height <= 1500
        assert len(image.convert("RGB").getcolors(maxcolors=width * height)) > 10


def test_a_dataset_without_a_config_is_refused(tmp_path, tables):
    with pytest.raises(tables.TableError, match="dataset=nosuch is not available yet"):
        tables.main(["main", "--dataset", "nosuch", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_celeba_table_runs_on_a_celeba_layout(tmp_path):
    """The CelebA table end to end: experiment=mlcr_celeba on synthetic faces in CelebA's
    layout, shrunk, two seeds; table, CSV and bar chart over the 40 attributes."""
    from affectlab.data.layouts.celeba import write_layout
    from affectlab.data.layouts.faces import layout_faces

    root = tmp_path / "data"
    write_layout(layout_faces(12, 5, seed=3, image_size=32), root)
    out = tmp_path / "out"
    result = run_script(["celeba", "--seeds", "0", "1", "--out", str(out), f"dataset.root={root}",
                         f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.num_labeled=10",
                         "dataset.num_unlabeled=20", "dataset.num_test=8",
                         "dataset.image_size=32", "model=small_cnn", "model.widths=[8,16]",
                         "trainer.max_steps=2", "trainer.batch_size=4", "trainer.device=cpu",
                         "trainer.progress_bar=false", "method.step_two_start=1"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    header, rows = markdown_grid((out / "celeba.md").read_text())
    assert list(rows)[:40] == CELEBA_ATTRIBUTES and "Avg." in rows
    with (out / "celeba.csv").open() as handle:
        assert [r["method"] for r in csv.DictReader(handle)] == ["Baseline", "MLCR"]
    with Image.open(out / "celeba.png") as image:
        assert image.format == "PNG"
    runs = sorted((out / "runs").glob("*/*/metrics.json"))
    assert len(runs) == 4
    assert all(len(json.loads(p.read_text())["tasks"]["attr"]["f1"]) == 40 for p in runs)


def fake_row(name: str, f1_per_seed: list[list[float]], labels: list[str]) -> Row:
    runs = [{"seed": seed, "tasks": {"au": {"labels": labels, "f1": f1,
                                            "f1_mean": statistics.fmean(f1)}}}
            for seed, f1 in enumerate(f1_per_seed)]
    return Row(name, runs)


@pytest.mark.parametrize("table, averages", [
    ("main", {"Baseline (reported)": "51.6", "MLCR (reported)": "57.5"}),
    ("ablation", {"Baseline (reported)": "51.6", "+ L_cr (reported)": "56.2",
                  "+ L_cr + L_mv (reported)": "56.6",
                  "+ L_cr + L_mv + GCN (MLCR) (reported)": "57.5"}),
])
def test_ckplus_tables_print_the_published_rows(tables, table, averages):
    spec = tables.TABLES[table]
    rows = [fake_row(f"row {i}", [[0.5] * len(AUS)], AUS) for i in range(len(spec.rows))]
    text = tables.markdown(tables.build_table(spec, "ckplus", rows, seeds=[0]))
    header, grid = markdown_grid(text)
    assert header == ["Method", *AUS, "Avg."]
    for name, average in averages.items():
        assert grid[name][-1] == average
    assert grid["Baseline (reported)"][:2] == ["45.7", "33.5"]   # AU1, AU2 of Table 1
    assert ("Table 1" if table == "main" else "Table 2") in text
    synthetic = tables.markdown(tables.build_table(spec, "synthetic", rows, seeds=[0]))
    assert "(reported)" not in synthetic
    assert "No published numbers for this dataset" in synthetic


def test_quick_overrides_mirror_the_test_fixtures(tables):
    assert set(TINY_DATA + TINY_MODEL) <= set(tables.QUICK_OVERRIDES)
