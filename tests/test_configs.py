"""Every option of every config group composes, and instantiates into its class."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra.utils import instantiate

from affectlab.config import check_config, instantiate_checked

from .conftest import CONFIG_DIR, TEST_DEVICE, compose_config

GROUPS = ["method", "dataset", "model", "optim", "augment", "trainer"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in GROUPS + ["experiment"]:
        assert options(group), f"configs/{group}/ is empty"


def combinations() -> list[tuple[str, ...]]:
    """Every pair of options of the groups whose options depend on each other (method ×
    dataset, dataset × model, method × model: method_dataset files, image sizes per model),
    the third at its default-like choice, and every option of the other groups once. Pairs,
    not the whole product: the product grows with every new option of each group (4 methods ×
    12 datasets × 8 models took 4 of the suite's 13 CPU minutes), while what can clash is a
    pair."""
    methods, datasets, models = options("method"), options("dataset"), options("model")
    fixed = ("adam", "default", "default")
    coupled = ([(m, d, "small_cnn", *fixed) for m in methods for d in datasets]
               + [("baseline", d, m, *fixed) for d in datasets for m in models]
               + [(me, "synthetic", mo, *fixed) for me in methods for mo in models])
    single = [("mlcr", "synthetic", "small_cnn", *rest) for rest in
              itertools.product(options("optim"), options("augment"), options("trainer"))]
    return sorted(set(coupled + single))


@pytest.mark.parametrize("combo", combinations(), ids=lambda combo: ",".join(combo))
def test_every_combination_composes(tmp_path, combo):
    cfg = compose_config(tmp_path, [f"{g}={o}" for g, o in zip(GROUPS, combo)])
    for group in ("method", "dataset", "model", "augment", "trainer"):
        check_config(cfg[group], group)
    check_config(cfg.optim.optimizer, "optim.optimizer")
    check_config(cfg.optim.scheduler, "optim.scheduler")


@pytest.mark.parametrize("pool", options("pool"))
def test_every_pool_composes_and_type_checks(tmp_path, pool):
    cfg = compose_config(tmp_path, [f"pool={pool}"])
    check_config(cfg.pool, "pool")


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(tmp_path, experiment):
    cfg = compose_config(tmp_path, [f"experiment={experiment}"])
    assert cfg.run_name


@pytest.mark.parametrize("method", options("method"))
@pytest.mark.parametrize("experiment", ["ssl_synthetic", "ssl_multitask_synthetic"])
def test_semi_supervised_presets_take_every_method(tmp_path, experiment, method):
    """The semi-supervised presets compare methods on one budget: each method's config must
    accept the keys they set (method.tasks)."""
    cfg = compose_config(tmp_path, [f"experiment={experiment}", f"method={method}"])
    check_config(cfg.method, "method")


@pytest.mark.parametrize("model", options("model"))
def test_every_model_instantiates(tmp_path, model):
    cfg = compose_config(tmp_path, [f"model={model}"])
    net = instantiate_checked(cfg.model, "model")
    assert net.num_features > 0


@pytest.mark.parametrize("optim", options("optim"))
def test_every_optimizer_and_schedule_instantiates(tmp_path, optim):
    import torch

    cfg = compose_config(tmp_path, [f"optim={optim}"])
    optimizer = instantiate(cfg.optim.optimizer, _partial_=True)(
        [torch.nn.Parameter(torch.zeros(1))])
    schedule = instantiate(cfg.optim.scheduler)
    schedule.build(optimizer, steps_per_epoch=2, total_steps=4)


def test_public_keys_exist(tmp_path):
    cfg = compose_config(tmp_path)
    for key in ("seed", "dataset.root", "trainer.max_epochs", "trainer.max_steps",
                "trainer.batch_size", "trainer.num_workers", "trainer.device", "trainer.resume"):
        node = cfg
        for part in key.split("."):
            assert part in node, f"public config key {key} is missing"
            node = node[part]
    assert cfg.trainer.device == TEST_DEVICE  # overridden by the tiny fixture
    assert compose_config(tmp_path, ["trainer.device=auto"]).trainer.device == "auto"


def test_defaults_are_the_documented_ones(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train")
    assert cfg.dataset.name == "synthetic" and cfg.trainer.device == "auto"
    assert cfg.seed == 0 and cfg.trainer.resume is None and cfg.trainer.max_steps is None
    # the default job is MLCR with its synthetic-benchmark settings (method_dataset/)
    assert cfg.method.name == "mlcr" and cfg.method.supervised_reduction == "sum"
    assert cfg.method.lambda_mv == 400 and cfg.method.lambda_cr == 100
    # 60 epochs, GCN for the last third: the default job fits ≤ 10 min on slow 2-core CPUs;
    # the tables' preset keeps 100 epochs with the GCN from step 600 (and a baseline row there
    # gets no MLCR key)
    assert cfg.trainer.max_epochs == 60 and cfg.method.step_two_start == 360
    assert cfg.trainer.channels_last is True and cfg.packed is True
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        tables = compose("train", overrides=["experiment=mlcr_synthetic"])
        baseline_row = compose("train", overrides=["experiment=mlcr_synthetic", "method=baseline"])
    assert tables.trainer.max_epochs == 100 and tables.method.step_two_start == 600
    assert baseline_row.trainer.max_epochs == 100 and "step_two_start" not in baseline_row.method


def test_method_dataset_settings_apply_only_to_their_pair(tmp_path):
    # loaded for method=mlcr dataset=synthetic only; other methods keep their own defaults
    assert compose_config(tmp_path, ["method=mlcr"]).method.supervised_reduction == "sum"
    baseline = compose_config(tmp_path, ["method=baseline"])
    assert "supervised_reduction" not in baseline.method and baseline.trainer.max_epochs == 2
    # the command line still wins over them
    cfg = compose_config(tmp_path, ["method=mlcr", "method.supervised_reduction=mean"])
    assert cfg.method.supervised_reduction == "mean"
    for path in (Path(CONFIG_DIR) / "method_dataset").glob("*.yaml"):
        method, dataset = path.stem.split("_", 1)
        assert (Path(CONFIG_DIR) / "method" / f"{method}.yaml").is_file(), path
        assert (Path(CONFIG_DIR) / "dataset" / f"{dataset}.yaml").is_file(), path


def test_console_script_points_at_the_hydra_entry_point():
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("affectlab-train") == "affectlab.train:main"


@pytest.mark.parametrize("sampler", options("sampler"))
def test_every_sampler_composes_and_builds_on_the_training_split(tmp_path, sampler):
    from affectlab.build import build_data

    cfg = compose_config(tmp_path, [f"sampler={sampler}", "method.tasks=[au,expr]"])
    check_config(cfg.sampler, "sampler")
    factory = instantiate_checked(cfg.sampler, "sampler")
    made = factory(build_data(cfg).train.table, batch_size=4, seed=0)
    made.set_position(0)
    assert len(list(made)) == made.batches_per_epoch() * 4 > 0
