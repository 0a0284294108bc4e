"""Stage chains: pre-train on one task, init_from it for another, ensemble two seeds; finished
stages skipped; unfinished runs kept aside; stages that refer to missing ones named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from affectlab.recipe import RecipeError, Runner, parse_stages

from .conftest import TINY_DATA, TINY_MODEL, TINY_TRAINER

pytestmark = pytest.mark.slow


def tiny_recipe(data_root: Path) -> dict:
    return {
        "name": "tiny_chain",
        "seeds": [0, 1],
        "overrides": [f"dataset.root={data_root}", *TINY_DATA, *TINY_MODEL, *TINY_TRAINER,
                      "method=baseline", "trainer.max_steps=2"],
        "stages": {
            "expr": {"overrides": ["method.tasks=[expr]"]},
            "au": {"overrides": ["method.tasks=[au]"], "init_from": "expr"},
            "ensemble": {"ensemble": ["au"], "overrides": ["split=test"]},
            "au_blind": {"ensemble": ["au"], "per_seed": True, "overrides": ["ablate=[image]"]},
        },
    }


def runner(recipe: dict, out: Path, seeds=(0, 1)) -> Runner:
    return Runner(OmegaConf.create(recipe), out=out, seeds=list(seeds), overrides=[],
                  launcher=[])


def test_pretrain_finetune_ensemble_chain_end_to_end(tmp_path, data_root, monkeypatch):
    out = tmp_path / "chain"
    results = runner(tiny_recipe(data_root), out).run()
    assert set(results) == {"expr", "au", "ensemble", "au_blind"}
    # one evaluation per seed, each of that seed's run, its seed taken from its folder
    assert [r["seed"] for r in results["au_blind"]] == [0, 1]
    assert [r["runs"] for r in results["au_blind"]] == [
        [str((out / f"au/seed{s}").resolve())] for s in (0, 1)]
    assert all(r["ablated"] == ["image"] for r in results["au_blind"])
    for seed in (0, 1):
        expr = json.loads((out / f"expr/seed{seed}/metrics.json").read_text())
        au = json.loads((out / f"au/seed{seed}/metrics.json").read_text())
        assert set(expr["tasks"]) == {"expr"} and set(au["tasks"]) == {"au"}
        assert expr["seed"] == au["seed"] == seed
        assert au["init_from"] == str((out / f"expr/seed{seed}").resolve())
    ensemble = json.loads((out / "ensemble/metrics.json").read_text())
    assert ensemble["members"] == 2 and ensemble["runs"] == [
        str((out / f"au/seed{s}").resolve()) for s in (0, 1)]
    summary = (out / "summary.md").read_text()
    assert "| au | 2 |" in summary and "| ensemble | 1 |" in summary
    assert (out / "summary.csv").read_text().startswith("row,runs,")

    # started again: everything is finished, nothing runs
    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(Runner, "call", must_not_run)
    runner(tiny_recipe(data_root), out).run()
    # an edited recipe does not reuse runs made with other settings
    edited = tiny_recipe(data_root)
    edited["stages"]["expr"]["overrides"].append("method.heads.expr.weighting=frequency")
    with pytest.raises(RecipeError, match="expr/seed0 is a finished run of another "
                                          "configuration"):
        runner(edited, out).run()
    # runs made on another generator version's data: same overrides, other data
    resolved = out / "expr" / "seed0" / "config_resolved.yaml"
    older = OmegaConf.load(resolved)
    assert older.dataset.generator_version >= 1
    older.dataset.generator_version -= 1
    OmegaConf.save(older, resolved)
    with pytest.raises(RecipeError, match="another configuration.*dataset.generator_version"):
        runner(tiny_recipe(data_root), out).run()


def test_an_unfinished_run_is_kept_aside_and_missing_stages_are_named(tmp_path, data_root,
                                                                      monkeypatch):
    out = tmp_path / "chain"
    killed = out / "expr" / "seed0"
    killed.mkdir(parents=True)
    (killed / "train.log").write_text("killed mid-run")
    calls = []
    monkeypatch.setattr(Runner, "call", lambda self, stage, command: calls.append(command))
    with pytest.raises(RecipeError, match="ended without metrics.json for seeds \\[0\\]"):
        runner(tiny_recipe(data_root), out, seeds=[0]).run(["expr"])
    assert (out / "expr" / "seed0.incomplete-1" / "train.log").read_text() == "killed mid-run"
    assert "seed=0" in calls[0] and "hydra.sweep.subdir=seed${seed}" in calls[0]
    with pytest.raises(RecipeError, match="stage 'au' needs stage 'expr', which has not run for "
                                          "seeds \\[0\\].*Make it first: python -m "
                                          "affectlab.recipe recipe=.* stages=\\[expr\\] "
                                          "seeds=\\[0\\]"):
        runner(tiny_recipe(data_root), out, seeds=[0]).run(["au"])


def test_an_interrupted_run_with_a_checkpoint_continues_from_it(tmp_path, data_root,
                                                                 monkeypatch):
    out = tmp_path / "chain"
    stopped = out / "expr" / "seed1"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "checkpoints" / "last.pt").write_bytes(b"a checkpoint")
    calls = []
    monkeypatch.setattr(Runner, "call", lambda self, stage, command: calls.append(command))
    with pytest.raises(RecipeError, match="ended without metrics.json for seeds \\[0, 1\\]"):
        runner(tiny_recipe(data_root), out).run(["expr"])
    moved = (out / "expr" / "seed1.incomplete-1" / "checkpoints" / "last.pt").resolve()
    assert moved.read_bytes() == b"a checkpoint"
    fresh, resumed = calls  # seed 0 from the start, seed 1 from where it stopped
    assert "seed=0" in fresh and not any(o.startswith("trainer.resume=") for o in fresh)
    assert "seed=1" in resumed and f"trainer.resume={moved}" in resumed
    assert "hydra.sweep.subdir=seed${seed}" in resumed


def test_a_resumed_run_counts_as_its_configuration():
    from affectlab.results import canonical_overrides

    assert canonical_overrides(["method=mlcr", "trainer.resume=/runs/a/checkpoints/last.pt"]) \
        == canonical_overrides(["method=mlcr"]) == ["method=mlcr"]


def test_a_key_given_twice_counts_with_its_last_value_as_hydra_applies_it():
    from affectlab.results import canonical_overrides

    assert canonical_overrides(["experiment=a", "x=1", "experiment=[a,b]"]) \
        == canonical_overrides(["experiment=[a,b]", "x=1"]) == ["experiment=[a,b]", "x=1"]
    assert canonical_overrides(["x=1", "x=2"]) != canonical_overrides(["x=1"])


def test_recipes_that_refer_to_later_or_unknown_stages_are_refused(data_root):
    recipe = tiny_recipe(data_root)
    recipe["stages"] = {"au": {"init_from": "expr"}, "expr": {}}
    with pytest.raises(RecipeError, match="stage 'au' refers to 'expr', which is not an earlier"):
        parse_stages(OmegaConf.create(recipe))
    recipe["stages"] = {"au": {"init": "expr"}}
    with pytest.raises(RecipeError, match="unknown keys \\['init'\\]"):
        parse_stages(OmegaConf.create(recipe))
    with pytest.raises(RecipeError, match="has no stage 'va'"):
        runner(tiny_recipe(data_root), Path("unused")).stage("va")


def test_every_shipped_recipe_parses():
    from .conftest import CONFIG_DIR

    for path in sorted(Path(CONFIG_DIR, "recipe").glob("*.yaml")):
        stages = parse_stages(OmegaConf.load(path))
        assert stages, path.name


def test_a_stage_may_start_each_view_from_another_stage(tmp_path, data_root):
    recipe = tiny_recipe(data_root)
    recipe["stages"] = {"face": {}, "emotion": {},
                        "mlcr": {"init_from": ["face", "emotion"], "overrides": ["method=mlcr"]}}
    chain = runner(recipe, tmp_path)
    overrides = chain.training_overrides(chain.stage("mlcr"))
    assert overrides[-1] == (f"init_from=[{(tmp_path / 'face').resolve()}/seed${{seed}},"
                             f"{(tmp_path / 'emotion').resolve()}/seed${{seed}}]")
    with pytest.raises(RecipeError, match="stage 'mlcr' needs stage 'face'"):
        chain.run(["mlcr"])
