"""What one call of :meth:`~affectlab.engine.loop.Trainer.fit` works on, what its checkpoints
hold, and restoring it from one (``trainer.resume``)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from affectlab.data.contract import FaceData
from affectlab.engine.checkpoint import CHECKPOINT_FORMAT, class_path, load_method_state
from affectlab.engine.guards import NonFiniteWatch
from affectlab.engine.resume import apply_changes
from affectlab.engine.run_dir import remove_stray_temporaries
from affectlab.engine.run_log import RunLogger
from affectlab.methods.base import Method
from affectlab.utils import rng_state, set_rng_state

log = logging.getLogger("affectlab.trainer")


@dataclass
class Session:
    """What one call of :meth:`Trainer.fit` works on, passed to its helpers as one object."""

    method: Method
    data: FaceData
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ckpt_dir: Path
    config: dict[str, Any] | None
    logger: RunLogger
    watch: NonFiniteWatch
    position: dict[str, Any]      # epoch, batch_in_epoch, global_step, best_*, images, time
    inputs: dict[str, Any]        # the input spec saved with every checkpoint

    def state(self, position: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint at ``position``: everything a resume needs, taken between two steps
        (so it continues exactly), and what rebuilds the method without its data (``spec``,
        ``inputs``)."""
        method = self.method
        return {
            "format": CHECKPOINT_FORMAT,
            "method": method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "augment": self.data.transform.state_dict(),
            "config": self.config,
            "method_class": class_path(method),
            "label_names": method.label_names,
            "thresholds": method.thresholds,
            "spec": method.spec.to_dict() if method.spec is not None else None,
            "inputs": self.inputs,
            **position,
        }


def restore(run: Session, checkpoint: dict[str, Any], path: str,
            changes: dict[str, tuple[Any, Any]], *, is_main: bool) -> dict[str, Any]:
    """Load a resumed ``checkpoint`` (read from ``path``) into the method, optimizer, schedule,
    augmentation and RNGs of ``run``; return the position to continue from.

    The resumed run writes into its own run directory; the interrupted run's ``best.pt`` is
    copied there so that best-checkpoint selection continues where it stopped. Without it
    (deleted, or never written) selection starts anew from here, with a warning. Allowed
    ``changes`` of the optimizer or schedule (``trainer.allow_changes``) take effect now.
    """
    fresh_groups = [{k: v for k, v in g.items() if k != "params"}
                    for g in run.optimizer.param_groups]
    load_method_state(run.method, checkpoint, path)
    run.method.on_weights_loaded(source="resume")
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if changes:
        apply_changes(run.optimizer, run.scheduler, fresh_groups, changes)
    run.data.transform.load_state_dict(checkpoint.get("augment"))
    set_rng_state(checkpoint["rng"])
    source_dir = Path(path).parent
    remove_stray_temporaries(source_dir)
    restored = {k: checkpoint[k] for k in run.position}
    best_source = source_dir / "best.pt"
    if is_main and best_source.is_file():
        run.ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(best_source, run.ckpt_dir / "best.pt")
    elif restored["best_epoch"] is not None:
        log.warning("%s names epoch %s as the best so far, but %s is gone: best-checkpoint "
                    "selection starts anew from this step", path, restored["best_epoch"],
                    best_source)
        restored.update(best_value=None, best_epoch=None)
    log.info("resumed from %s at epoch %d, step %d", path, checkpoint["epoch"],
             checkpoint["global_step"])
    return restored
