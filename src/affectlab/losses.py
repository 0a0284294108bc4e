"""Loss functions, pure and shape-documented. Methods combine them with their own weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                           label_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy averaged over the valid entries of a multi-label batch.

        L = Σ_{n,c} m_nc · w_c · BCE(z_nc, y_nc) / Σ_{n,c} m_nc

    Args:
        logits: (N, C) raw scores z.
        targets: (N, C) labels y in {0, 1}.
        mask: (N, C) bool, False for unknown labels (they contribute nothing).
        label_weights: optional (C,) per-label weights w_c (1 when None).

    Returns:
        Scalar loss; 0 (with a gradient path) when the batch has no valid entry.
    """
    per_entry = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    if label_weights is not None:
        per_entry = per_entry * label_weights.to(per_entry)
    mask = mask.to(per_entry.dtype)
    return (per_entry * mask).sum() / mask.sum().clamp_min(1.0)


def inverse_frequency_weights(targets: torch.Tensor, mask: torch.Tensor,
                              eps: float = 1e-6) -> torch.Tensor:
    """Per-label weights that grow as a label gets rarer, normalised to mean 1.

        r_c = Σ_n m_nc y_nc / Σ_n m_nc,    w_c ∝ 1 / r_c,    mean_c w_c = 1

    This is the a_c weighting of the MLCR supervised loss (frequencies from the labelled
    training set). Args: targets (N, C) in {0, 1}, mask (N, C) bool. Returns (C,).
    """
    mask = mask.float()
    rate = (targets.float() * mask).sum(0) / mask.sum(0).clamp_min(1.0)
    weights = 1.0 / rate.clamp_min(eps)
    return weights * (len(weights) / weights.sum())


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the samples whose label is valid. logits (N, K), targets (N,), mask (N,)."""
    per_sample = F.cross_entropy(logits.float(), targets.clamp_min(0), reduction="none")
    mask = mask.to(per_sample.dtype)
    return (per_sample * mask).sum() / mask.sum().clamp_min(1.0)
