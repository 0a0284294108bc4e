"""What a semi-supervised term does to predictions where there are no labels, logged with the
loss terms at every logged step: the quantities that show a collapse to "absent" as it
happens (consistency on imbalanced multi-label data can pull every prediction towards the
majority answer while the loss goes down).

For a multi-label task with C labels, over the entries where the unlabelled term applies:

    <task>_disagreement     mean |p_a − p_b| between the two predictions the term compares
                            (student and teacher, or two views)
    <task>_pool_rate        mean over labels of the positive rate 1[p_b ≥ 0.5]
    <task>_rate_to_prior    mean over labels of (positive rate / positive rate of the labelled
                            training split): 1 where the pool looks like the labels, ≪ 1 when
                            predictions collapse to "absent"
    <task>_pool_rate/<label>  the positive rate of each label
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def label_prior(targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(C,) positive rate of each label over its known entries ((N, C) targets and mask),
    at least 1e-3 (a label without positives would divide by zero)."""
    mask = mask.float()
    return ((targets.float() * mask).sum(0) / mask.sum(0).clamp_min(1.0)).clamp_min(1e-3)


@torch.no_grad()
def pool_diagnostics(task: str, probs_a: torch.Tensor, probs_b: torch.Tensor,
                     selected: torch.Tensor, prior: torch.Tensor,
                     label_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The diagnostics of the module docstring. probs_a, probs_b (N, C) probabilities
    (``probs_b``: the target side, e.g. the teacher), selected (N, C) bool, prior (C,)."""
    weight = selected.float()
    disagreement = ((probs_a.float() - probs_b.float()).abs() * weight).sum() / weight.sum(
    ).clamp_min(1.0)
    rate = ((probs_b.float() >= 0.5).float() * weight).sum(0) / weight.sum(0).clamp_min(1.0)
    out = {f"{task}_disagreement": disagreement, f"{task}_pool_rate": rate.mean(),
           f"{task}_rate_to_prior": (rate / prior.to(rate)).mean()}
    for name, value in zip(label_names, rate):
        out[f"{task}_pool_rate/{name}"] = value
    return out
