"""``python -m affectlab.evaluate 'runs=[DIR1,DIR2,...]' split=test``: evaluate finished runs.

One run is rebuilt from its directory (:func:`affectlab.load_run`); several make an
:class:`~affectlab.methods.ensemble.Ensemble` (averaged predictions). They are evaluated on a
split of the first run's dataset, or of another dataset config (``dataset=NAME
dataset.root=...``, whose label sets must match the runs'). Per-label thresholds of the
multi-label tasks are searched anew on the validation split of the evaluated data
(``thresholds=search``, default), taken from the runs (``members``), or left at 0.5 (``none``).
``ablate=[audio]`` takes inputs away: each named input key is replaced by zeros after the
evaluation transform (the training mean of a normalised input), in every split evaluated —
how much the runs read from that input (a two-stream model's reliance on one stream).

Writes into Hydra's run directory (``hydra.run.dir=...``; default
``outputs/evaluate/<date>_<time>``): ``metrics.json`` in the training run's layout (``tasks``
with 0.5 metrics, ``thresholds`` and ``tuned``; ``score``), ``.hydra/`` and ``evaluate.log``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from affectlab.build import CONFIG_DIR, build_data
from affectlab.config import ConfigError
from affectlab.data.contract import DataError, FaceData
from affectlab.engine import CheckpointError
from affectlab.engine.evaluation import predict_split, search_thresholds
from affectlab.inference import load_run
from affectlab.methods.base import Method
from affectlab.methods.ensemble import Ensemble, label_set_difference
from affectlab.metrics import evaluate_tasks, overall_score
from affectlab.results import format_task_lines
from affectlab.utils import atomic_write_json, resolve_device

log = logging.getLogger("affectlab")

SPLITS = ("train", "val", "test")
THRESHOLD_SOURCES = ("search", "members", "none")


def evaluation_data(cfg: DictConfig, first_run: Any) -> FaceData:
    """The data to evaluate on: the first run's own, or ``cfg.dataset`` with that run's other
    settings (augmentation is irrelevant: evaluation only normalises)."""
    if cfg.get("dataset") is None:
        return build_data(first_run.config, pack=False)
    merged = OmegaConf.merge(first_run.config, {"pool": None, "preprocessed": None})
    merged.dataset = cfg.dataset
    return build_data(merged)


def check_labels(method: Method, data: FaceData) -> None:
    """Refuse data whose label names of a predicted multi-label or expression task differ."""
    for task, names in method.label_names.items():
        theirs = data.label_names.get(task)
        if task in ("au", "attr", "expr") and theirs:
            difference = label_set_difference({task: names}, {task: list(theirs)})
            if difference:
                raise ValueError(f"dataset '{data.name}' does not fit the runs: {difference}. "
                                 "Evaluate on data with the runs' label set.")


def evaluate(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Evaluate ``cfg.runs`` on ``cfg.split``; write and return ``metrics.json``."""
    runs = [str(r) for r in (cfg.runs if not isinstance(cfg.runs, str) else [cfg.runs])]
    if not runs:
        raise ConfigError("runs=[] is empty: name at least one run directory")
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r}: use one of {SPLITS}")
    if cfg.thresholds not in THRESHOLD_SOURCES:
        raise ConfigError(f"thresholds={cfg.thresholds!r}: use one of {THRESHOLD_SOURCES}")
    if (Path(out_dir) / "metrics.json").exists():
        raise ConfigError(f"{out_dir} already holds an evaluation's metrics.json; refusing to "
                          "overwrite it. Choose another hydra.run.dir.")
    device = resolve_device(cfg.device)
    loaded = [load_run(run, device=str(device), which=cfg.checkpoint) for run in runs]
    if cfg.get("network"):
        for run in loaded:
            run.method.use_network(str(cfg.network))
    method: Method = (loaded[0].method if len(loaded) == 1
                      else Ensemble([r.method for r in loaded], names=runs))
    data = evaluation_data(cfg, loaded[0])
    check_labels(method, data)
    ablated = [str(key) for key in cfg.get("ablate") or []]
    unread = [key for key in ablated if key not in method.input_keys]
    if unread:
        raise ConfigError(f"ablate={ablated}: the runs do not read {unread} (they read "
                          f"{list(method.input_keys)})")

    def prepare(batch: dict) -> dict:
        batch = data.transform({k: v.to(device, non_blocking=True) for k, v in batch.items()},
                               train=False)
        return {**batch, **{key: torch.zeros_like(batch[key]) for key in ablated}}

    def outputs_of(split: str) -> tuple[dict, dict]:
        loader = DataLoader(getattr(data, split), batch_size=cfg.batch_size,
                            num_workers=cfg.num_workers)
        autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16))
                    if device.type == "cuda" else None)
        return predict_split(method, loader, prepare, autocast or contextlib.nullcontext,
                             data.target_keys)

    if cfg.thresholds == "search":
        thresholds = search_thresholds(*outputs_of("val"), cfg.threshold_criterion)
    elif cfg.thresholds == "members":
        thresholds = dict(method.thresholds)
    else:
        thresholds = {}
    outputs, targets = outputs_of(cfg.split)
    tasks = evaluate_tasks(outputs, targets, {**data.label_names, **method.label_names},
                           thresholds)
    metrics = {
        "runs": runs, "members": len(runs), "dataset": data.name, "split": cfg.split,
        "checkpoint": cfg.checkpoint, "network": cfg.get("network"), "tasks": tasks,
        "score": overall_score(tasks),
        "thresholds_from": cfg.thresholds, "ablated": ablated,
        "threshold_criterion": cfg.threshold_criterion if cfg.thresholds == "search" else None,
        "device": str(device),
    }
    atomic_write_json(metrics, Path(out_dir) / "metrics.json")
    what = f"Ensemble of {len(runs)} runs" if len(runs) > 1 else runs[0]
    log.info("\n%s", "\n".join([f"{what} on {data.name} {cfg.split}", *format_task_lines(tasks),
                                f"  score: {metrics['score']:.3f}"]))
    return metrics


@hydra.main(config_path=CONFIG_DIR, config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, ValueError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s: %s", type(err).__name__, " ".join(str(err).split()))
        sys.exit(2)


if __name__ == "__main__":
    main()
