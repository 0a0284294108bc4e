"""scripts/tsav_tables.py: Wang & Wang's Table I from a recipe's runs — the ABAW criteria beside
AU F1 / tuned F1 / AP, the paper's rows, and the recipe's stages as its rows."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from .conftest import REPO, load_script


@pytest.fixture(scope="module")
def tables():
    return load_script("tsav_tables")


def a_run(au_abaw: float, expr_abaw: float, ccc_a: float, seed: int = 0) -> dict:
    return {"seed": seed, "tasks": {
        "au": {"abaw": au_abaw, "labels": ["AU1"], "f1": [0.4], "f1_mean": 0.4,
               "tuned": {"f1": [0.5], "f1_mean": 0.5}, "average_precision": [0.45],
               "ap_mean": 0.45},
        "expr": {"abaw": expr_abaw},
        "va": {"ccc_mean": (0.2 + ccc_a) / 2, "ccc_arousal": ccc_a}}}


def test_the_table_has_the_criteria_per_row_and_the_papers_rows(tables):
    results = {"TSAV (clip + sound)": [a_run(0.6, 0.5, 0.4), a_run(0.7, 0.5, 0.6)]}
    markdown, csv = tables.table_markdown("synthetic", results, [0, 1])
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| row"))
    assert header.split(" | ")[2:5] == ["Expression criterion", "CCC mean", "AU criterion"]
    row = next(line for line in lines if line.startswith("| TSAV (clip + sound)"))
    assert "| 2 | 50.0 ± 0.0 | 35.0 ± 7.1 | 65.0 ± 7.1 | 40.0 ± 0.0 | 50.0 ± 0.0 |" in row
    reported = next(line for line in lines if line.startswith("| TSAV + multi-task"))
    assert "51.7 | 56.2 | 78.2 | – |" in reported
    assert "TSAV (reported),,50.80," in csv
    assert "Paired by seed" not in markdown             # one row: nothing to compare
    assert "| TSAV (clip + sound) | 40.0 / 50.0 / 45.0 | 40.0 / 50.0 / 45.0 |" in markdown


def test_the_issues_comparisons_are_paired_by_seed(tables):
    results = {"TSAV (clip + sound)": [a_run(0.6, 0.5, 0.9, seed=0), a_run(0.7, 0.5, 0.8, seed=1)],
               "TSAV, visual stream only": [a_run(0.6, 0.3, 0.3, seed=1),
                                            a_run(0.6, 0.3, 0.4, seed=0)]}
    markdown, _ = tables.table_markdown("synthetic", results, [0, 1])
    paired = next(line for line in markdown.splitlines()
                  if line.startswith("| TSAV (clip + sound) − TSAV, visual stream only"))
    assert paired.split(" | ")[1:3] == ["0, 1", "+20.0 ± 0.0 (+20.0, +20.0)"]
    assert paired.endswith("| +50.0 ± 0.0 (+50.0, +50.0) |")          # arousal CCC, last


@pytest.mark.parametrize("dataset", ["synthetic", "affwild2"])
def test_every_stage_of_the_recipes_is_a_row(tables, dataset):
    recipe = OmegaConf.load(REPO / f"configs/recipe/tsav_{dataset}.yaml")
    assert set(recipe.stages) <= {stage for stage, _ in tables.ROWS}


def test_a_dataset_without_a_recipe_is_named(tables):
    with pytest.raises(tables.TableError, match="no recipe tsav_ckplus.yaml.*synthetic"):
        tables.main(["--dataset", "ckplus"])
    with pytest.raises(tables.TableError, match=r"--stages \['nope'\]"):
        tables.main(["--stages", "nope"])
