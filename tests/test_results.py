"""Stage summaries of recipes: mean ± std per column over runs, per-label F1/tuned/AP."""

from __future__ import annotations

from affectlab.results import (
    paired_differences,
    per_label_summary,
    seed_values_csv,
    stage_summary,
    write_table,
)


def au(f1: list[float], tuned: list[float], ap: list[float]) -> dict:
    return {"labels": ["AU1", "AU2"], "f1": f1, "f1_mean": sum(f1) / 2,
            "tuned": {"f1": tuned, "f1_mean": sum(tuned) / 2},
            "average_precision": ap, "ap_mean": sum(ap) / 2}


def test_stage_summary_means_and_spreads():
    results = {
        "joint": [{"tasks": {"au": au([0.2, 0.4], [0.3, 0.5], [0.5, 0.5]),
                             "expr": {"f1_macro": 0.3, "acc": 0.5}}, "score": 0.4},
                  {"tasks": {"au": au([0.4, 0.6], [0.5, 0.7], [0.7, 0.7]),
                             "expr": {"f1_macro": 0.5, "acc": 0.5}}, "score": 0.6}],
        "expr": [{"tasks": {"expr": {"f1_macro": 0.4, "acc": 0.6}}, "score": 0.5}],
    }
    table, csv = stage_summary(results, title="t")
    lines = table.splitlines()
    assert lines[2] == ("| row | runs | AU F1@0.5 | AU F1@thr | AU AP | expr F1 | expr acc | "
                        "score |")
    # AU F1 means 0.3 and 0.5 → 40.0 ± 14.1; AP 0.5, 0.7 → 60.0 ± 14.1
    assert lines[4] == ("| joint | 2 | 40.0 ± 14.1 | 50.0 ± 14.1 | 60.0 ± 14.1 | 40.0 ± 14.1 | "
                        "50.0 ± 0.0 | 50.0 ± 14.1 |")
    assert lines[5] == "| expr | 1 | – | – | – | 40.0 ± 0.0 | 60.0 ± 0.0 | 50.0 ± 0.0 |"
    assert csv.splitlines()[2] == "expr,1,,,,,,,40.00,0.00,60.00,0.00,50.00,0.00"
    labels = per_label_summary(results).splitlines()
    assert labels[2] == "| row | AU1 | AU2 | mean |"
    assert labels[4] == "| joint | 30.0 / 40.0 / 60.0 | 50.0 / 60.0 / 60.0 | 40.0 / 50.0 / 60.0 |"
    assert per_label_summary({"expr": results["expr"]}) == ""


def test_composed_config_works_inside_a_running_hydra_app():
    """The recipe runner (a Hydra app) checks finished runs with composed_config."""
    from hydra import initialize_config_dir

    from affectlab.build import CONFIG_DIR
    from affectlab.results import composed_config

    composed_config.cache_clear()
    outside = composed_config(("seed=3",))
    composed_config.cache_clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        inside = composed_config(("seed=3",))
    assert inside == outside and inside["seed"] == 3


def test_paired_differences_match_seeds_and_skip_what_is_missing():
    def run(seed: int, ap: float, acc: float | None = None) -> dict:
        tasks = {"au": {"ap_mean": ap}}
        if acc is not None:
            tasks["expr"] = {"acc": acc}
        return {"seed": seed, "tasks": tasks}

    columns = (("AU AP", "au", lambda m: m["ap_mean"]), ("acc", "expr", lambda m: m["acc"]))
    results = {"new": [run(0, 0.50, 0.4), run(1, 0.60), run(2, 0.70, 0.7)],
               "old": [run(2, 0.65, 0.5), run(0, 0.40, 0.5)],      # no seed 1; other order
               "alone": [run(5, 0.1)]}
    table = paired_differences(results, (("new", "old"), ("new", "alone"), ("new", "gone")),
                               columns).splitlines()
    assert table[0] == "| comparison | seeds | AU AP | acc |"
    # seed 0: +10.0 AP, −10.0 acc; seed 2: +5.0 AP, +20.0 acc (seed 1 has no reference)
    assert table[2] == ("| new − old | 0, 2 | +7.5 ± 3.5 (+10.0, +5.0) | "
                        "+5.0 ± 21.2 (-10.0, +20.0) |")
    assert len(table) == 3              # no seed in common with "alone"; "gone" has no runs
    assert paired_differences(results, (("alone", "old"),), columns) == ""
    tiny = {"a": [run(0, 0.5 - 2e-4)], "b": [run(0, 0.5)]}
    assert "| a − b | 0 | +0.0 ± 0.0 (+0.0) |" in paired_differences(tiny, (("a", "b"),),
                                                                      columns[:1])


def test_seed_values_keep_each_run_number_and_write_table_stores_them(tmp_path):
    columns = (("AU AP", "au", lambda m: m["ap_mean"]), ("acc", "expr", lambda m: m["acc"]))
    results = {"teacher": [{"seed": 2, "tasks": {"au": {"ap_mean": 0.3125}}},
                           {"seed": 0, "tasks": {"au": {"ap_mean": 0.25},
                                                 "expr": {"acc": 0.5}}}],
               "student": [{"seed": 0, "tasks": {"expr": {"acc": 0.123456}}}]}
    csv = seed_values_csv(results, columns)
    # seeds in order; % with 4 decimals; a number the run lacks is an empty cell
    assert csv == ("row,seed,AU AP,acc\n"
                   "teacher,0,25.0000,50.0000\n"
                   "teacher,2,31.2500,\n"
                   "student,0,,12.3456\n")
    paths = write_table(tmp_path, "table9", "| x |\n", "x\n", lambda p: p.write_bytes(b""),
                        seed_values=csv)
    assert paths[-1] == tmp_path / "table9_seeds.csv"
    assert paths[-1].read_text() == csv
    assert not (tmp_path / "table8_seeds.csv").exists()
