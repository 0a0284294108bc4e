"""Building a run from its config: composing the packaged configs, the data, the method, the
trainer. Every entry point (train, evaluate, recipe, inference, the scripts) builds through
here.

The Hydra configs ship inside the package (``affectlab/configs``; ``configs/`` at the
repository root links to them), so an installed ``affectlab-train`` finds them from any
directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from affectlab.config import instantiate_checked
from affectlab.data.contract import DataSpec, FaceData
from affectlab.data.packed import use_packed
from affectlab.data.preprocess import use_crops
from affectlab.data.sequences import as_sequences
from affectlab.engine import Trainer
from affectlab.methods.base import Method

#: The packaged Hydra configs.
CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")


def compose_config(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python train.py <overrides>`` (or evaluate/recipe: ``config_name``) would
    run, composed from the packaged configs; inside a Hydra app of this project its own
    (already initialised) config search path is used."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def build_data(cfg: DictConfig, *, crops: bool = True, pack: bool = True) -> FaceData:
    """The dataset of a composed config, with its pool (``pool``), its input transform
    (``augment``), when ``crops`` and ``preprocessed`` is set reading the crops written by
    ``scripts/preprocess.py``, and when ``pack`` and ``packed`` is set reading every split from
    its packed uint8 array in ``packed_dir`` (built there on first use)."""
    data = instantiate_checked(cfg.dataset, "dataset").build()
    if cfg.get("pool") is not None:
        # an unlabelled pool from elsewhere replaces the dataset's own (configs/pool/)
        data.unlabeled = instantiate_checked(cfg.pool, "pool").pool(
            image_size=data.train.image_size)
    if crops and cfg.get("preprocessed"):
        data = use_crops(data, cfg.preprocessed)
    if pack and cfg.get("packed"):
        data = use_packed(data, cfg.packed_dir)
    if cfg.get("sequence"):
        data = as_sequences(data, **dict(cfg.sequence), folder=cfg.packed_dir)
    augment = instantiate_checked(cfg.augment, "augment") if cfg.get("augment") else None
    data.transform = data.input_transform(augment)
    return data


def build_method(cfg: DictConfig, spec: DataSpec | None = None) -> Method:
    """The method of a composed config. Without ``spec`` its data-sized networks are built
    later, from the training data (``Method.prepare``); with a ``spec`` (a checkpoint's) they
    are built now, ready for the checkpoint's weights."""
    model_factory = instantiate_checked(cfg.model, "model", _partial_=True)
    method = instantiate_checked(cfg.method, "method", model=model_factory)
    if spec is not None:
        method.build_from_spec(spec)
    return method


def build_trainer(cfg: DictConfig) -> Trainer:
    """The trainer of a composed config: its settings (``trainer``), optimizer, schedule and
    sampler."""
    sampler = cfg.get("sampler")
    return Trainer(
        instantiate_checked(cfg.trainer, "trainer"), seed=run_seed(cfg),
        optimizer=instantiate_checked(cfg.optim.optimizer, "optim.optimizer", _partial_=True),
        scheduler=instantiate_checked(cfg.optim.scheduler, "optim.scheduler"),
        sampler=instantiate_checked(sampler, "sampler") if sampler is not None else None)


def run_seed(cfg: DictConfig) -> int:
    """The seed a run draws with: ``seed + 1000 · seed_offset`` (``seed_offset`` gives runs of
    one seed their own draws, e.g. the students of one teacher)."""
    offset = cfg.get("seed_offset") or 0
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"seed_offset={offset!r}: an integer ≥ 0")
    return int(cfg.seed) + 1000 * offset


def build(cfg: DictConfig) -> tuple[FaceData, Method, Trainer]:
    """Data, method (networks not yet sized) and trainer of a composed training config."""
    return build_data(cfg), build_method(cfg), build_trainer(cfg)


__all__ = ["CONFIG_DIR", "compose_config", "build_data", "build_method", "build_trainer",
           "build", "run_seed"]
