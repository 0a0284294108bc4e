"""What the recipe-backed table scripts share (``scripts/tsav_tables.py``,
``scripts/distill_tables.py``): a paper's table is the recipe ``<prefix>_<dataset>``
(``configs/recipe/``), run through :class:`affectlab.recipe.Runner` (finished stages reused),
with one command line — ``[OVERRIDE ...] --dataset --seeds --stages --runs --out --data-root``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from affectlab.build import CONFIG_DIR
from affectlab.recipe import Runner

RECIPES = Path(CONFIG_DIR) / "recipe"


class TableError(RuntimeError):
    """A table that cannot be made as asked, with the reason."""


def table_arguments(description: str, argv: list[str] | None = None, *,
                    tables: list[int] | None = None, default: int | None = None
                    ) -> argparse.Namespace:
    """The table scripts' command line (Hydra overrides after the options apply to every
    training stage); ``tables``: the numbers a script makes (``--table``, default
    ``default``)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if tables:
        parser.add_argument("--table", type=int, choices=tables, default=default,
                            help="which of the paper's tables")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every training stage")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="default: the recipe's")
    parser.add_argument("--stages", nargs="+", default=None,
                        help="run only these stages of the recipe (default: all)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="where the recipe's runs go (default results/<recipe>)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the table goes (default: --runs)")
    parser.add_argument("--data-root", default=None, help="dataset.root of every stage")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: the table of the runs that have finished (each "
                             "row says over how many seeds)")
    return parser.parse_intermixed_args(argv)


def table_recipe(prefix: str, dataset: str, table: str) -> DictConfig:
    """The recipe ``<prefix>_<dataset>`` of ``table`` (e.g. "Table 2"), or a message naming
    the datasets that have one."""
    path = RECIPES / f"{prefix}_{dataset}.yaml"
    if not path.is_file():
        known = sorted(p.stem[len(prefix) + 1:] for p in RECIPES.glob(f"{prefix}_*.yaml"))
        raise TableError(f"{table} on dataset {dataset}: there is no recipe {path.name} "
                         f"(datasets with one: {known})")
    return OmegaConf.load(path)


def run_table_recipe(recipe: DictConfig, args: argparse.Namespace
                     ) -> tuple[dict[str, list[dict[str, Any]]], list[int], Path]:
    """Run ``recipe`` as the command line asks (its ``--stages`` only, ``--seeds``, overrides
    and ``--data-root``) into ``--runs`` — or, with ``--finished-only``, nothing: gather what
    has finished; return every finished stage's results, the seeds and the runs folder."""
    if args.stages:
        unknown = sorted(set(args.stages) - set(recipe.stages))
        if unknown:
            raise TableError(f"--stages {unknown}: not stages of {recipe.name} "
                             f"({sorted(recipe.stages)})")
        recipe.stages = {k: v for k, v in recipe.stages.items() if k in args.stages}
    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"dataset.root={args.data_root}")
    seeds = args.seeds or [int(s) for s in recipe.seeds]
    runs = args.runs or Path("results") / recipe.name
    runner = Runner(recipe, out=runs.resolve(), seeds=seeds, overrides=overrides, launcher=[])
    everything = runner.collect() if args.finished_only else runner.run()
    return everything, seeds, runs


__all__ = ["TableError", "table_arguments", "table_recipe", "run_table_recipe", "RECIPES"]
