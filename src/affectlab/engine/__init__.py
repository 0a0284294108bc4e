"""The shared trainer: the loop (:mod:`.loop`) and what it leans on — settings, stop requests
and the non-finite watch (:mod:`.guards`), run directories (:mod:`.run_dir`), checkpoints
(:mod:`.checkpoint`), resume checks (:mod:`.resume`), logging (:mod:`.run_log`), agreement
between torchrun processes (:mod:`.distributed`), prediction over splits (:mod:`.evaluation`)
and the best weights with their thresholds (:mod:`.selection`)."""

from affectlab.engine.checkpoint import CheckpointError
from affectlab.engine.guards import DivergenceError, TrainingInterrupted
from affectlab.engine.loop import Trainer
from affectlab.engine.run_dir import RunDirectoryError
from affectlab.engine.settings import TrainerSettings

__all__ = ["Trainer", "TrainerSettings", "CheckpointError", "RunDirectoryError",
           "DivergenceError", "TrainingInterrupted"]
