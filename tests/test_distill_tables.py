"""scripts/distill_tables.py: Deng et al.'s Table 2 from a recipe's runs — the ABAW criteria
beside AU F1 / tuned F1 / AP, the single student averaged per seed, the paper's rows, and the
paired comparisons the issue asks for."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from .conftest import REPO, load_script


@pytest.fixture(scope="module")
def tables():
    return load_script("distill_tables")


def a_run(au_abaw: float, expr_abaw: float, ccc_v: float, seed: int = 0) -> dict:
    return {"seed": seed, "method": "distill", "tasks": {
        "au": {"abaw": au_abaw, "labels": ["AU1"], "f1": [0.4], "f1_mean": 0.4,
               "tuned": {"f1": [0.5], "f1_mean": 0.5}, "average_precision": [0.45],
               "ap_mean": 0.45},
        "expr": {"abaw": expr_abaw, "f1_macro": 0.3},
        "va": {"ccc_valence": ccc_v, "ccc_arousal": 0.5}}}


def test_the_single_student_is_each_seeds_students_averaged(tables):
    runs = {"teacher": [a_run(0.5, 0.3, 0.2, seed=0), a_run(0.5, 0.3, 0.2, seed=1)]}
    for k in range(5):
        runs[f"student{k}"] = [a_run(0.5 + 0.01 * k, 0.4, 0.3, seed=0),
                               a_run(0.6, 0.4, 0.3 + 0.1 * k, seed=1)]
    runs["students"] = [a_run(0.7, 0.5, 0.4, seed=0), a_run(0.7, 0.5, 0.6, seed=1)]
    single = tables.single_student(runs)
    assert [r["seed"] for r in single] == [0, 1]
    assert single[0]["tasks"]["au"]["abaw"] == pytest.approx(0.52)
    assert single[1]["tasks"]["va"]["ccc_valence"] == pytest.approx(0.5)
    assert single[0]["tasks"]["au"]["f1"] == [pytest.approx(0.4)]
    markdown, csv, results = tables.table_markdown("synthetic", runs, [0, 1])
    assert list(results)[-2:] == [tables.SINGLE, "Student ensemble"]   # no redraw row here
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| row"))
    assert header.split(" | ")[2:6] == ["AU criterion", "Expression criterion", "CCC valence",
                                        "CCC arousal"]
    row = next(line for line in lines if line.startswith(f"| {tables.SINGLE}"))
    assert "| 2 | 56.0 ± 5.7 | 40.0 ± 0.0 | 40.0 ± 14.1 |" in row
    paired = next(line for line in lines
                  if line.startswith("| Student ensemble − Teacher"))
    assert paired.split(" | ")[1:3] == ["0, 1", "+20.0 ± 0.0 (+20.0, +20.0)"]
    assert any(line.startswith(f"| {tables.SINGLE} − Teacher") for line in lines)
    reported = next(line for line in lines if line.startswith("| Student ensemble (reported)"))
    assert "| 62.6 | 46.0 | 37.3 | 51.3 |" in reported
    assert "Teacher (reported),,57.71," in csv


@pytest.mark.parametrize("number", [1, 2, 3])
def test_every_stage_of_each_tables_recipe_is_a_row(tables, number):
    table = tables.TABLES[number]
    recipe = OmegaConf.load(REPO / f"configs/recipe/{table.recipe}_synthetic.yaml")
    assert set(recipe.stages) == {stage for stage, _ in table.rows}
    labels = {label for _, label in table.rows} | {tables.SINGLE}
    assert all(a in labels and b in labels for a, b in table.pairs)


def test_table_one_pairs_balanced_with_imbalanced_rows(tables):
    table = tables.TABLES[1]
    runs = {"au": [a_run(0.5, 0.3, 0.2, seed=0)], "au_balanced": [a_run(0.56, 0.3, 0.2, seed=0)]}
    markdown, _, _ = tables.table_markdown("synthetic", runs, [0], table)
    assert "**Table 1 on synthetic: single-task CNNs" in markdown
    paired = next(line for line in markdown.splitlines()
                  if line.startswith("| AU, balanced (ML-ROS) − AU, imbalanced"))
    assert paired.split(" | ")[2] == "+6.0 ± 0.0 (+6.0)"
    assert "| balanced data (reported) | – | 58.0 | 42.4 | 24.4 | 40.3 |" in markdown


def test_a_dataset_without_a_recipe_is_named(tables):
    with pytest.raises(tables.TableError, match="no recipe distill_ckplus.yaml.*synthetic"):
        tables.main(["--dataset", "ckplus"])
    with pytest.raises(tables.TableError, match=r"--stages \['nope'\]"):
        tables.main(["--stages", "nope"])
    with pytest.raises(tables.TableError, match="Table 3 on dataset ckplus"):
        tables.main(["--table", "3", "--dataset", "ckplus"])


def test_the_students_are_compared_with_the_teachers_configuration_run_again(tables):
    runs = {"teacher": [a_run(0.5, 0.3, 0.2)],
            **{f"student{k}": [a_run(0.48, 0.3, 0.2)] for k in range(5)},
            "students": [a_run(0.49, 0.3, 0.2)], "teacher_redraw": [a_run(0.51, 0.3, 0.2)]}
    markdown, _, results = tables.table_markdown("synthetic", runs, [0])
    assert list(results)[-3:] == [tables.SINGLE, "Student ensemble", tables.REDRAW]
    paired = next(line for line in markdown.splitlines()
                  if line.startswith(f"| {tables.SINGLE} − {tables.REDRAW}"))
    assert paired.split(" | ")[2] == "-3.0 ± 0.0 (-3.0)"
