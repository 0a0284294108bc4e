"""A trained run, loaded from its checkpoint alone, ready to predict.

    from affectlab import load_run
    run = load_run("outputs/mlcr_synthetic/2026-12-06_10-00-00")
    outputs = run.predict({"image": images})     # (N, 3, H, W) float in [0, 1] or uint8
    # {"au": (N, C) probabilities}; run.method.thresholds: per-label decision thresholds

The checkpoint holds what rebuilds the method without its dataset (format 2): the config it
was trained with, the spec its networks were built from (task and label names, input shapes)
and the input spec (input keys and shapes, the normalisation actually used, the dataset's
reading settings). A checkpoint of an older format lacks the spec: it is rebuilt through its
saved config and data as before, with a warning, and :func:`add_spec` re-saves it with one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from affectlab.build import build_data, build_method
from affectlab.config import upgrade_config
from affectlab.data.clips import ClipRules
from affectlab.data.contract import DataSpec, FaceData
from affectlab.data.transforms import InputTransform
from affectlab.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_of,
    input_spec,
    load_checkpoint,
    load_method_state,
)
from affectlab.methods.base import Method
from affectlab.utils import atomic_torch_save

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    """A trained method rebuilt from a checkpoint, in eval mode.

    Attributes:
        run_dir: the run directory (the checkpoint's folder's parent).
        config: the resolved config the run was trained with.
        method: the method, weights, statistics and thresholds loaded.
        inputs: the input spec (keys and shapes, mean/std, the dataset's reading settings).
        transform: the evaluation transform of those inputs (uint8 → [0, 1], normalisation).
        data: the run's own data, when asked for (``load_run(..., data=True)``) or when an
            older checkpoint needed it; else None.
    """

    run_dir: Path
    config: DictConfig
    method: Method
    inputs: dict[str, Any]
    transform: InputTransform
    data: FaceData | None = None

    @torch.inference_mode()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predictions of every task the method learned for raw inputs (images in [0, 1] or
        uint8, on any device): moved to the method's device, normalised as in training."""
        device = next(self.method.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        return self.method.predict(self.transform(batch, train=False))


def run_config(run_dir: str | Path) -> DictConfig:
    """The resolved config a run was trained with (``config_resolved.yaml``)."""
    path = Path(run_dir) / "config_resolved.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} has no config_resolved.yaml: it is not a run "
                              "directory of affectlab.")
    return OmegaConf.create(upgrade_config(OmegaConf.to_container(OmegaConf.load(path))))


def load_run(run_dir: str | Path, *, device: str = "cpu", which: str = "best.pt",
             data: bool = False) -> LoadedRun:
    """Rebuild a trained method from a run directory (its ``checkpoints/<which>``) or a
    checkpoint file, in eval mode on ``device``: from the checkpoint alone — its config, spec
    and weights; the dataset root may be gone. ``data``: also build the run's data (to
    evaluate on it)."""
    path = checkpoint_of(run_dir, which)
    checkpoint = load_checkpoint(path)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if checkpoint.get("config") is None:
        raise CheckpointError(f"{path} holds no config: it cannot be rebuilt. Use a checkpoint "
                              "written by affectlab's trainer.")
    cfg = OmegaConf.create(upgrade_config(checkpoint["config"]))
    run_data = build_data(cfg, pack=False) if data else None
    if checkpoint.get("spec") is not None:
        method = build_method(cfg, spec=DataSpec.from_dict(checkpoint["spec"]))
        inputs = checkpoint["inputs"]
    else:
        log.warning("%s is an older checkpoint without the spec of its networks: rebuilt "
                    "through its saved config and data (dataset.root=%s). Re-save it with "
                    "affectlab.inference.add_spec(%r) to load it without data.", path,
                    cfg.dataset.get("root"), str(path))
        run_data = run_data or data_for_old_checkpoint(cfg, path)
        method = build_method(cfg)
        method.prepare(run_data)
        inputs = input_spec(run_data, OmegaConf.to_container(cfg, resolve=True))
    load_method_state(method, checkpoint, path)
    method.on_weights_loaded(source="checkpoint")
    method.to(torch.device(device)).eval()
    transform = input_transform(inputs)
    return LoadedRun(run_dir=run_dir, config=cfg, method=method, inputs=inputs,
                     transform=transform, data=run_data)


def input_transform(inputs: dict[str, Any]) -> InputTransform:
    """The evaluation transform a checkpoint's input spec describes: images normalised by its
    mean/std, clips and spectrograms by its ``rules`` (clip datasets)."""
    rules = inputs.get("rules")
    extra = None
    if rules and rules.get("kind") == "clips":
        extra = ClipRules.from_dict(rules)(None)
    return InputTransform(mean=tuple(inputs["mean"]), std=tuple(inputs["std"]), rules=extra)


def data_for_old_checkpoint(cfg: DictConfig, path: Path) -> FaceData:
    """The run's data, needed to size an older checkpoint's networks; one message when it is
    not there."""
    try:
        return build_data(cfg, pack=False)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} has no spec (an older checkpoint format) and its data cannot be read "
            f"({type(err).__name__}: {' '.join(str(err).split())[:300]}): without either its "
            "networks cannot be sized. Restore the dataset, or re-save the checkpoint where "
            f"the data is, with affectlab.inference.add_spec('{path}').") from None


def add_spec(source: str | Path, which: str = "best.pt") -> Path:
    """Re-save an older checkpoint (a run directory's ``checkpoints/<which>`` or a file) with
    the spec and input spec of the current format, read from its data once; returns its
    path. Everything else in it is unchanged."""
    path = checkpoint_of(source, which)
    checkpoint = load_checkpoint(path)
    if checkpoint.get("spec") is not None:
        return path
    loaded = load_run(path, data=True)
    checkpoint.update(format=CHECKPOINT_FORMAT, spec=loaded.method.spec.to_dict(),
                      inputs=loaded.inputs)
    atomic_torch_save(checkpoint, path)
    log.info("%s re-saved with its spec: it now loads without its data", path)
    return path


__all__ = ["LoadedRun", "load_run", "run_config", "add_spec"]
