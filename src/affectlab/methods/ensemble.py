"""An ensemble of trained runs: their predictions averaged, task by task.

    p_t(x) = (1/M) Σ_m p_t^m(x)

for probabilities (AUs, attributes, expressions, identities) and for the valence/arousal
predictions (regression outputs or bin expectations) alike. Members must predict the same
tasks over the same labels; an ensemble of runs that differ is refused, naming the difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from affectlab.methods.base import Batch, Method


def label_set_difference(first: dict[str, list[str]], other: dict[str, list[str]]) -> str | None:
    """A description of how two ``{task: label names}`` differ, or None when they are equal."""
    if set(first) != set(other):
        return f"tasks {sorted(first)} vs {sorted(other)}"
    for task in first:
        if list(first[task]) != list(other[task]):
            only_a = [n for n in first[task] if n not in other[task]]
            only_b = [n for n in other[task] if n not in first[task]]
            detail = (f"only in the first: {only_a[:8]}, only in the other: {only_b[:8]}"
                      if only_a or only_b else "same labels in another order")
            return f"'{task}' labels differ ({detail})"
    return None


class Ensemble(Method):
    """The mean of ``members``' predictions (each a trained, set-up method).

    ``thresholds``: the element-wise mean of the members' stored per-label thresholds where
    every member has them (an evaluation may search new ones for the ensemble instead).

    Args:
        members: trained methods; ``names`` (e.g. run directories) name them in errors.
    """

    def __init__(self, members: Sequence[Method], names: Sequence[str] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        names = list(names or [f"member {k}" for k in range(len(members))])
        for member, name in zip(members[1:], names[1:]):
            difference = label_set_difference(members[0].label_names, member.label_names)
            if difference:
                raise ValueError(f"cannot ensemble {names[0]} and {name}: {difference}. An "
                                 "ensemble averages the same outputs; use runs trained on one "
                                 "label set.")
        self.members = nn.ModuleList(members)
        self.label_names = dict(members[0].label_names)
        self.thresholds = {
            task: torch.tensor([m.thresholds[task] for m in members]).mean(0).tolist()
            for task in members[0].thresholds if all(task in m.thresholds for m in members)}
        self.is_set_up = True

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        outputs = [member.predict(batch) for member in self.members]
        return {task: torch.stack([o[task].float() for o in outputs]).mean(0)
                for task in outputs[0]}
