"""Which weights a run keeps: the best validation epoch (``best.pt``) and, for them, per-label
decision thresholds searched on validation.

The trainer predicts; :class:`BestSelection` decides. Under torchrun every process predicts
its shard and gets the gathered split, the main process selects and writes, and the chosen
weights are sent from it to the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from affectlab.engine import distributed
from affectlab.engine.checkpoint import load_checkpoint
from affectlab.engine.evaluation import search_thresholds
from affectlab.engine.session import Session
from affectlab.metrics import flatten_metrics, overall_score
from affectlab.utils import atomic_torch_save

log = logging.getLogger("affectlab.trainer")

Predictions = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


class BestSelection:
    """Keeps ``best.pt`` on the monitored validation value and searches thresholds for it.

    Args:
        monitor: the flattened validation metric selected on (``trainer.monitor``, e.g.
            ``val/score``).
        mode: ``max`` or ``min``.
        threshold_criterion: ``f1``/... (:func:`affectlab.metrics.best_thresholds`), or
            ``none`` to keep 0.5.
        is_main: whether this process writes (rank 0).
        world_size: torchrun processes.
    """

    def __init__(self, *, monitor: str, mode: str, threshold_criterion: str, is_main: bool,
                 world_size: int) -> None:
        self.monitor, self.mode = monitor, mode
        self.threshold_criterion = threshold_criterion
        self.is_main, self.world_size = is_main, world_size

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` improves on ``best`` (NaN never does; anything beats none)."""
        if best is None or math.isnan(best):
            return not math.isnan(value)
        return value > best if self.mode == "max" else value < best

    def record(self, run: Session, epoch: int, task_metrics: dict[str, Any]) -> None:
        """Log one validation (``task_metrics``: :func:`affectlab.metrics.evaluate_tasks` on
        the validation split), write ``best.pt`` when the monitored value improved, then
        ``last.pt``; main process only.

        Order matters: ``best.pt`` first, so a ``last.pt`` never names a best epoch whose
        checkpoint was not yet written (an interrupt between the two leaves a ``last.pt`` one
        validation older, which replays to the same point)."""
        if not self.is_main:
            return
        position, monitor = run.position, self.monitor
        unscored = sorted(set(run.method.label_names) - set(task_metrics))
        if unscored and position["best_epoch"] is None:      # said once, at the first validation
            log.warning("no validation targets for %s (e.g. identities the validation split does "
                        "not share): not in val/score; their test metrics are skipped too%s",
                        unscored, "" if task_metrics else
                        ". Nothing is left to select on: best.pt follows the latest epoch")
        metrics = {**flatten_metrics(task_metrics, "val"), "val/score": overall_score(task_metrics)}
        if monitor not in metrics and task_metrics:
            raise KeyError(f"trainer.monitor={monitor!r} is not among the validation "
                           f"metrics: {sorted(k for k in metrics if k.count('/') <= 2)}")
        value = metrics.get(monitor, math.nan)
        run.logger.record(metrics, position["global_step"])
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
        # without any validation signal (identity pre-training on identity-disjoint splits)
        # the latest weights are the best there is
        if self.better(value, position["best_value"]) or not task_metrics:
            position.update(best_value=value if task_metrics else None, best_epoch=epoch + 1)
            atomic_torch_save(run.state(position), run.ckpt_dir / "best.pt")
        atomic_torch_save(run.state(position), run.ckpt_dir / "last.pt")
        log.info("epoch %d  step %d  %s = %.4f  (best %.4f at epoch %s)", epoch + 1,
                 position["global_step"], monitor, value,
                 math.nan if position["best_value"] is None else position["best_value"],
                 position["best_epoch"])

    def use_best(self, run: Session, predict_validation: Callable[[], Predictions]) -> None:
        """Load ``best.pt``'s weights into ``run.method`` (sent to every process under
        torchrun) and search per-label thresholds for them on validation; stored in
        ``best.pt`` and on the method. ``predict_validation``: predictions and targets of
        the whole validation split by the method as it is now (collective under torchrun:
        every process gets the same, so all find the same thresholds)."""
        best_path = run.ckpt_dir / "best.pt"
        best = load_checkpoint(best_path) if self.is_main else None
        if best is not None:
            run.method.load_state_dict(best["method"])
        if self.world_size > 1:
            distributed.broadcast_module(run.method)
        if self.threshold_criterion == "none":
            return
        outputs, targets = predict_validation()
        run.method.thresholds = search_thresholds(outputs, targets, self.threshold_criterion)
        if run.method.thresholds and best is not None:
            best["thresholds"] = run.method.thresholds
            atomic_torch_save(best, best_path)
            rounded = {t: [round(v, 2) for v in thr] for t, thr in run.method.thresholds.items()}
            log.info("per-label thresholds (%s on validation): %s", self.threshold_criterion,
                     rounded)
