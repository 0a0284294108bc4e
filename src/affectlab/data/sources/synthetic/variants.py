"""What the synthetic benchmark's splits can look like besides the default: the pool's labels
revealed for pre-training (``train_split=pool``), one task's labels per labelled face
(``train_labels=one_task``) and a pool whose faces are rendered twice
(``pool_renderings=2``). The generator is in :mod:`.benchmark`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from affectlab.data.contract import FaceImageDataset, LabelTable
from affectlab.data.transforms import pixels_to_float


def alternate_path(path: str, rendering: int = 1) -> str:
    """Path of another rendering of the pool image at ``path`` (``..._000.png`` →
    ``..._000_r1.png``)."""
    stem, suffix = path.rsplit(".", 1)
    return f"{stem}_r{rendering}.{suffix}"


#: labels of the pool ``train_split=pool`` can reveal
POOL_LABELS = ("expr", "va", "au")


def reveal_labels(pool: LabelTable, tasks: Sequence[str]) -> LabelTable:
    """The pool (labels kept, as generated) with only ``tasks``' labels known; every other
    task's mask False. Subject ids stay."""
    hidden = pool.unlabeled()
    for task in tasks:
        setattr(hidden, f"{task}_mask", getattr(pool, f"{task}_mask").copy())
    hidden.labeled[:] = True
    return hidden


class PoolWithRenderings(FaceImageDataset):
    """The unlabelled pool of ``pool_renderings=2``: each sample carries ``image`` and
    ``image_alt``, a second rendering of the same face and AU state under other nuisances
    (an input of the same kind: the transform applies the image rule to it,
    :class:`~affectlab.data.transforms.InputTransform`)."""

    input_keys = ("image", "image_alt")

    def input_shapes(self) -> dict[str, list[int | None]]:
        shape = super().input_shapes()["image"]
        return {"image": shape, "image_alt": list(shape)}

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(row)
        pixels = self.load_pixels(row, alternate_path(self.table.image_paths[row]))
        sample["image_alt"] = pixels_to_float(torch.from_numpy(pixels.copy()).permute(2, 0, 1))
        return sample


#: tasks of which ``train_labels=one_task`` keeps one per labelled face
PARTIAL_TASKS = ("au", "expr", "va")


def one_task_per_face(table: LabelTable, seed: int) -> LabelTable:
    """A copy of ``table`` in which each face keeps the labels of one task only (AU,
    expression or valence/arousal, drawn uniformly and independently per face from ``seed``):
    the partially labelled multi-task data of Aff-Wild2, where most frames carry one task."""
    kept = np.random.default_rng([seed, 0x9A27]).integers(0, len(PARTIAL_TASKS), len(table))
    copy = table.subset(np.arange(len(table)))
    for index, task in enumerate(PARTIAL_TASKS):
        mask = getattr(copy, f"{task}_mask").copy()
        mask[kept != index] = False
        setattr(copy, f"{task}_mask", mask)
    return copy
