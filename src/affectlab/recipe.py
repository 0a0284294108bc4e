"""``python -m affectlab.recipe recipe=NAME``: run a chain of stages, each an ordinary run.

A recipe (``configs/recipe/<name>.yaml``) lists stages in order. A training stage is
``python -m affectlab.train -m <overrides> seed=<seeds>``: its seeds go through Hydra's
multirun launcher (so ``launcher=[hydra/launcher=...]`` runs them wherever that launcher
does), each into ``<out>/<stage>/seed<N>/``, an ordinary run directory. A stage may point any
config key at an earlier stage's result (``refs: {method.teacher: teacher}``: the same seed's
run directory of that stage; a list of stages gives a list of directories); ``init_from:
<stage>`` is short for ``refs: {init_from: <stage>}`` (a list gives a two-view method one
start per view). References are checked before any stage runs: every stage named must come
earlier, every key must exist in the stage's composed config. An ensemble stage
evaluates earlier stages' runs together (``python -m affectlab.evaluate``): one ensemble of
every listed run, or (``per_seed: true``) one per seed of the runs of that seed.

Finished stages (every seed's ``metrics.json`` written) are skipped when the recipe is started
again, so an interrupted chain continues where it stopped (a finished run of another
configuration — the recipe or a preset edited since, the synthetic benchmark's
``dataset.generator_version`` bumped — is refused, never silently reused); a
run directory left without ``metrics.json`` (stopped or killed) is moved aside to
``<dir>.incomplete-<n>`` (never deleted) and continued exactly from its ``checkpoints/last.pt``
(``trainer.resume``) into ``<dir>``, or run again from the start when it saved no checkpoint.
At the end ``<out>/summary.md`` and ``summary.csv`` tabulate every stage (mean ± std over
seeds; AU rows with F1 at 0.5, F1 at the validation-tuned thresholds and AP).

Recipe file::

    name: pretrain_finetune_synthetic
    seeds: [0, 1, 2]
    overrides: [experiment=multitask_synthetic]     # every training stage
    stages:
      expr: {overrides: ["method.tasks=[expr]"]}
      au: {overrides: ["method.tasks=[au]"], init_from: expr}
      ensemble: {ensemble: [au]}                    # one ensemble of au's seeds
      # any key: e.g. a student whose frozen teacher is an earlier stage's run
      # student: {overrides: [method=distill], refs: {method.teacher: expr}}
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from affectlab.build import CONFIG_DIR, compose_config
from affectlab.config import ConfigError
from affectlab.engine.checkpoint import CHECKPOINT_DIR
from affectlab.results import per_label_summary, run_differences, stage_summary
from affectlab.utils import atomic_write_text

log = logging.getLogger("affectlab")

STAGE_KEYS = {"overrides", "init_from", "refs", "ensemble", "per_seed"}


def as_list(value: Any) -> list[str] | None:
    """A stage reference or a list of them, as a list (None stays None)."""
    if value is None:
        return None
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


class RecipeError(ConfigError):
    """A recipe that cannot run as written (a stage that refers to one that has not run, ...)."""


@dataclass
class Stage:
    """One stage of a recipe: a training run per seed, or an ensemble evaluation."""

    name: str
    overrides: list[str] = field(default_factory=list)
    refs: dict[str, list[str]] = field(default_factory=dict)   # config key → earlier stages
    ensemble: list[str] | None = None
    per_seed: bool = False

    @property
    def is_ensemble(self) -> bool:
        return self.ensemble is not None

    @property
    def init_from(self) -> list[str] | None:
        return self.refs.get("init_from")

    @property
    def references(self) -> list[str]:
        """Every earlier stage this one needs, in order (no repeats)."""
        named = [s for stages in self.refs.values() for s in stages] + (self.ensemble or [])
        return list(dict.fromkeys(named))


def parse_stages(recipe: DictConfig) -> list[Stage]:
    """The stages of a recipe config, checked: known keys, references to earlier stages."""
    stages: list[Stage] = []
    for name, spec in (recipe.get("stages") or {}).items():
        spec = OmegaConf.to_container(spec, resolve=True) if spec is not None else {}
        unknown = set(spec) - STAGE_KEYS
        if unknown:
            raise RecipeError(f"recipe {recipe.name}: stage '{name}' has unknown keys "
                              f"{sorted(unknown)}; a stage has {sorted(STAGE_KEYS)}")
        refs = {str(key): as_list(value) for key, value in (spec.get("refs") or {}).items()}
        if spec.get("init_from") is not None:
            if "init_from" in refs:
                raise RecipeError(f"recipe {recipe.name}: stage '{name}' names init_from twice "
                                  "(as a key and under refs): keep one")
            refs["init_from"] = as_list(spec["init_from"])
        stage = Stage(name=str(name), overrides=[str(o) for o in spec.get("overrides") or []],
                      refs=refs, ensemble=None if spec.get("ensemble") is None
                      else [str(s) for s in spec["ensemble"]],
                      per_seed=bool(spec.get("per_seed", False)))
        earlier = {s.name for s in stages}
        for ref in stage.references:
            if ref not in earlier:
                raise RecipeError(f"recipe {recipe.name}: stage '{name}' refers to '{ref}', "
                                  f"which is not an earlier stage (earlier: {sorted(earlier)})")
        if stage.is_ensemble and stage.refs:
            raise RecipeError(f"recipe {recipe.name}: stage '{name}' is an ensemble; it cannot "
                              f"refer to runs by config keys ({sorted(stage.refs)})")
        stages.append(stage)
    if not stages:
        raise RecipeError(f"recipe {recipe.get('name')} has no stages")
    return stages


def seed_dir(out: Path, stage: str, seed: int) -> Path:
    return out / stage / f"seed{seed}"


def finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def move_aside(run_dir: Path) -> Path | None:
    """Rename an unfinished run directory to ``<dir>.incomplete-<n>`` (first free n); return
    the checkpoint the run can continue from (its ``last.pt``), or None."""
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.incomplete-{n}")).exists():
        n += 1
    run_dir.rename(target)
    last = target / CHECKPOINT_DIR / "last.pt"
    resumable = last.is_file()
    log.warning("%s has no metrics.json (an interrupted run): moved to %s, %s", run_dir,
                target.name, f"continuing it from {last}" if resumable
                else "running it again (it saved no checkpoint)")
    return last.resolve() if resumable else None


class Runner:
    """Runs the stages of one recipe into ``out`` (see the module docstring)."""

    def __init__(self, recipe: DictConfig, *, out: Path, seeds: list[int],
                 overrides: list[str], launcher: list[str], python: str = sys.executable) -> None:
        self.recipe = recipe
        self.stages = parse_stages(recipe)
        self.out = out
        self.seeds = seeds
        self.overrides = [str(o) for o in recipe.get("overrides") or []] + overrides
        self.launcher = launcher
        self.python = python
        self.check_reference_keys()

    def check_reference_keys(self) -> None:
        """Refuse, before any stage runs, a reference to a config key that the stage's
        composed training config does not have (a typo, or a method without that option)."""
        for stage in self.stages:
            if stage.is_ensemble or not stage.refs:
                continue
            config = compose_config("train", [*self.overrides, *stage.overrides])
            for key in stage.refs:
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(config, parent) if parent else config
                if not isinstance(node, DictConfig) or leaf not in node:
                    raise RecipeError(
                        f"recipe {self.recipe.name}: stage '{stage.name}' refers to config key "
                        f"'{key}', which its configuration does not have (with overrides "
                        f"{stage.overrides}); check the key's spelling, or the method/model it "
                        "belongs to")

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise RecipeError(f"recipe {self.recipe.name} has no stage '{name}'; its stages: "
                          f"{[s.name for s in self.stages]}")

    def require(self, stage: Stage, ref: str, seeds: list[int]) -> None:
        missing = [s for s in seeds if not finished(seed_dir(self.out, ref, s))]
        if missing:
            seeds_text = ",".join(map(str, missing))
            raise RecipeError(f"stage '{stage.name}' needs stage '{ref}', which has not run "
                              f"for seeds {missing} (no {self.out / ref}/seed<N>/metrics.json). "
                              f"Make it first: python -m affectlab.recipe "
                              f"recipe={self.recipe.name} stages=[{ref}] seeds=[{seeds_text}] "
                              f"out={self.out} (or run the recipe without stages=).")

    def run(self, only: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Run every stage (or those in ``only``) in order; return ``{stage: metrics list}``."""
        wanted = [self.stage(n) for n in only] if only else self.stages
        for stage in wanted:
            if stage.is_ensemble:
                self.run_ensemble(stage)
            else:
                self.run_training(stage)
        results = self.collect()
        table, csv = stage_summary(results, title=f"Recipe {self.recipe.name} — {self.out}")
        table += "\n" + per_label_summary(results, "au")
        atomic_write_text(self.out / "summary.md", table)
        atomic_write_text(self.out / "summary.csv", csv)
        log.info("\n%s", table)
        return results

    def training_overrides(self, stage: Stage) -> list[str]:
        """What ``train.py`` runs for ``stage`` (seed and run location aside)."""
        overrides = [*self.overrides, *stage.overrides]
        for key, refs in stage.refs.items():
            sources = [f"{(self.out / ref).resolve()}/seed${{seed}}" for ref in refs]
            overrides.append(f"{key}={sources[0]}" if len(sources) == 1
                             else f"{key}=[{','.join(sources)}]")
        return overrides

    def check_finished(self, stage: Stage, run_dir: Path, seed: int) -> None:
        """Refuse to reuse a finished run of another configuration (other overrides, or a
        preset or default edited since it ran)."""
        changes = run_differences(run_dir, self.training_overrides(stage), seed)
        if changes:
            raise RecipeError(f"{run_dir} is a finished run of another configuration than stage "
                              f"'{stage.name}' gives now ({'; '.join(changes)[:600]}). Use "
                              "another out= (or move that run away).")

    def run_training(self, stage: Stage) -> None:
        todo: list[int] = []
        resumes: dict[int, Path] = {}  # seed -> last.pt of its interrupted run
        for seed in self.seeds:
            run_dir = seed_dir(self.out, stage.name, seed)
            if finished(run_dir):
                self.check_finished(stage, run_dir, seed)
                continue
            if run_dir.exists() and (checkpoint := move_aside(run_dir)) is not None:
                resumes[seed] = checkpoint
            todo.append(seed)
        if not todo:
            log.info("stage %s: finished for seeds %s, skipped", stage.name, self.seeds)
            return
        for ref in stage.references:
            self.require(stage, ref, todo)
        # Fresh seeds in one multirun; each interrupted one continues from its own checkpoint.
        groups = [([s for s in todo if s not in resumes], [])]
        groups += [([s], [f"trainer.resume={checkpoint}"]) for s, checkpoint in resumes.items()]
        for seeds, resume in groups:
            if seeds:
                self.call(stage, [self.python, "-m", "affectlab.train", "--multirun",
                                  *self.training_overrides(stage), *resume, *self.launcher,
                                  f"seed={','.join(map(str, seeds))}",
                                  f"hydra.sweep.dir={self.out / stage.name}",
                                  "hydra.sweep.subdir=seed${seed}"])
        missing = [s for s in todo if not finished(seed_dir(self.out, stage.name, s))]
        if missing:
            raise RecipeError(f"stage '{stage.name}' ended without metrics.json for seeds "
                              f"{missing}: see {self.out / stage.name}/seed<N>/train.log")

    def run_ensemble(self, stage: Stage) -> None:
        groups = ([(seed_dir(self.out, stage.name, s), [s]) for s in self.seeds]
                  if stage.per_seed else [(self.out / stage.name, self.seeds)])
        for out_dir, seeds in groups:
            if finished(out_dir):
                continue
            if out_dir.exists():
                move_aside(out_dir)
            for ref in stage.ensemble or []:
                self.require(stage, ref, seeds)
            members = [str(seed_dir(self.out, ref, s).resolve())
                       for ref in stage.ensemble or [] for s in seeds]
            command = [self.python, "-m", "affectlab.evaluate", f"runs=[{','.join(members)}]",
                       *stage.overrides, f"hydra.run.dir={out_dir}"]
            self.call(stage, command)
            if not finished(out_dir):
                raise RecipeError(f"ensemble stage '{stage.name}' wrote no metrics.json: see "
                                  f"{out_dir}/evaluate.log")

    def call(self, stage: Stage, command: list[str]) -> None:
        log.info("stage %s: %s", stage.name, " ".join(command))
        (self.out / stage.name).mkdir(parents=True, exist_ok=True)
        result = subprocess.run(command, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
        if result.returncode != 0:
            raise RecipeError(f"stage '{stage.name}' failed (exit {result.returncode}); its "
                              f"log is under {self.out / stage.name}. Fix the cause and start "
                              "the recipe again: finished stages are skipped.")

    def collect(self) -> dict[str, list[dict[str, Any]]]:
        """Every finished stage's metrics.json files, in stage order."""
        results: dict[str, list[dict[str, Any]]] = {}
        for stage in self.stages:
            if stage.is_ensemble and not stage.per_seed:
                dirs = {None: self.out / stage.name}
            else:
                dirs = {s: seed_dir(self.out, stage.name, s) for s in self.seeds}
            # a per-seed evaluation's metrics.json has no seed of its own: its folder's
            found = [{**({"seed": s} if s is not None else {}),
                      **json.loads((d / "metrics.json").read_text())}
                     for s, d in dirs.items() if finished(d)]
            if found:
                results[stage.name] = found
        return results


def run_recipe(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """Run ``cfg.recipe`` with the runner's options (``seeds``, ``out``, ``stages``,
    ``overrides``, ``launcher``)."""
    recipe = cfg.recipe
    if recipe is None or "name" not in recipe:
        raise RecipeError("name a recipe: recipe=NAME (configs/recipe/)")
    seeds = [int(s) for s in (cfg.seeds if cfg.seeds is not None else recipe.get("seeds", [0]))]
    out = Path(cfg.out or f"results/{recipe.name}")
    runner = Runner(recipe, out=out, seeds=seeds,
                    overrides=[str(o) for o in cfg.overrides or []],
                    launcher=[str(o) for o in cfg.launcher or []])
    return runner.run([str(s) for s in cfg.stages] if cfg.stages else None)


@hydra.main(config_path=CONFIG_DIR, config_name="recipe", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_recipe(cfg)
    except (ConfigError, ValueError) as err:
        log.error("%s: %s", type(err).__name__, " ".join(str(err).split()))
        sys.exit(2)


if __name__ == "__main__":
    main()
