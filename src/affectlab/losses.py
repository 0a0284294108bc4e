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
    per_entry = F.binary_cross_entropy_with_logits(logits.float(), targets.float(),
                                                   reduction="none")
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


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                         class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the samples whose label is valid:

        L = Σ_n m_n · w_{y_n} · CE(z_n, y_n) / Σ_n m_n

    logits (N, K), targets (N,) class indices, mask (N,) bool, class_weights optional (K,)
    (1 when None). 0 (with a gradient path) when no sample is valid.
    """
    targets = targets.clamp(0, logits.shape[1] - 1)
    per_sample = F.cross_entropy(logits.float(), targets, reduction="none")
    if class_weights is not None:
        per_sample = per_sample * class_weights.to(per_sample)[targets]
    mask = mask.to(per_sample.dtype)
    return (per_sample * mask).sum() / mask.sum().clamp_min(1.0)


def va_bin_indices(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Index of the equal-width bin of [−1, 1] holding each value: ⌊(v + 1) / 2 · B⌋, with
    v = 1 in the last bin. values (N, D) → int64 (N, D) in [0, B)."""
    index = torch.floor((values.float().clamp(-1.0, 1.0) + 1.0) / 2.0 * bins).long()
    return index.clamp_max(bins - 1)


def masked_ccc_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_d (1 − CCC_d) over the valid samples, per column d of (N, D) predictions:

        CCC = 2 s_xy / (s_x² + s_y² + (μ_x − μ_y)²)   (population moments, as in metrics.ccc)

    mask (N,) bool. A batch with fewer than two valid samples gives 0 (with a gradient path):
    the CCC of one sample is undefined.
    """
    weight = mask.to(torch.float32)[:, None]
    count = weight.sum()
    if count < 2:
        return (pred.float() * 0.0).sum()
    x, y = pred.float(), target.float()
    mx = (x * weight).sum(0) / count
    my = (y * weight).sum(0) / count
    dx, dy = (x - mx) * weight, (y - my) * weight
    vx, vy = (dx * dx).sum(0) / count, (dy * dy).sum(0) / count
    cov = (dx * dy).sum(0) / count
    ccc = 2.0 * cov / (vx + vy + (mx - my) ** 2).clamp_min(1e-8)
    return (1.0 - ccc).sum()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid samples: Σ_n m_n ‖pred_n − target_n‖² / (D Σ_n m_n).

    pred, target (N, D) (valence/arousal: D = 2), mask (N,) bool.
    """
    per_sample = (pred.float() - target.float()).pow(2).mean(1)
    mask = mask.to(per_sample.dtype)
    return (per_sample * mask).sum() / mask.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- MLCR (Niu et al. 2019)
def multi_view_loss(w1: torch.Tensor, w2: torch.Tensor, absolute: bool = True,
                    eps: float = 1e-8) -> torch.Tensor:
    """Mean cosine similarity between the per-label classifier vectors of two views.

        L_mv = (1/C) Σ_j |cos(W_1j, W_2j)|,    cos(a, b) = aᵀb / (‖a‖ ‖b‖)

    Minimising it pushes each label's two classifiers towards orthogonality, i.e. the two
    views towards conditionally independent features (MLCR's multi-view loss).

    Args:
        w1, w2: (C, d) classifier vectors of view 1 and view 2, one row per label (append the
            bias as a last column to include it).
        absolute: True (default, the released code and the method's aim: orthogonal views)
            averages |cos|, so identical and opposite vectors both cost 1; False gives the
            signed formula as printed in the paper, which is minimised by opposite vectors (−1).
        eps: guards the norms of all-zero rows.

    Returns:
        Scalar in [0, 1] (absolute) or [−1, 1] (signed).
    """
    if w1.shape != w2.shape or w1.dim() != 2:
        raise ValueError(f"multi_view_loss expects two (C, d) tensors, got {tuple(w1.shape)} and "
                         f"{tuple(w2.shape)}")
    cos = F.cosine_similarity(w1.float(), w2.float(), dim=1, eps=eps)
    return (cos.abs() if absolute else cos).mean()


def binary_entropy(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """H(p) = −(p log p + (1 − p) log(1 − p)) in nats, elementwise.

    ``p`` is clamped to [eps, 1 − eps] first, so probabilities of exactly 0 or 1 (a saturated
    float32 sigmoid) give a finite value and a finite (zero) gradient instead of NaN.
    """
    p = p.float().clamp(eps, 1.0 - eps)
    return -(p * p.log() + (1.0 - p) * torch.log1p(-p))


def co_regularization_loss(p1: torch.Tensor, p2: torch.Tensor, mask: torch.Tensor | None = None,
                           eps: float = 1e-6) -> torch.Tensor:
    """Jensen–Shannon divergence between two views' per-label Bernoulli predictions.

        L_cr = (1/C) Σ_j mean_n [ H((p_1nj + p_2nj)/2) − (H(p_1nj) + H(p_2nj))/2 ]

    with the binary entropy H in nats (:func:`binary_entropy`; probabilities are clamped to
    [eps, 1 − eps], eps = 1e-6 by default). Each entry lies in [0, ln 2] because H is concave,
    so no absolute value is needed: it is 0 exactly when the two views agree. Labels are not
    used, so labelled and unlabelled samples count alike.

    Args:
        p1, p2: (N, C) probabilities of view 1 and view 2.
        mask: optional (N, C) bool; only True entries count and the result is their mean
            (equal to the formula above when the mask is None or selects whole rows).
        eps: clamp of the probabilities.

    Returns:
        Scalar; 0 (with a gradient path) when no entry is selected.
    """
    if p1.shape != p2.shape:
        raise ValueError(f"co_regularization_loss expects equal shapes, got {tuple(p1.shape)} and "
                         f"{tuple(p2.shape)}")
    p1, p2 = p1.float(), p2.float()
    divergence = (binary_entropy((p1 + p2) / 2, eps)
                  - (binary_entropy(p1, eps) + binary_entropy(p2, eps)) / 2)
    if mask is None:
        return divergence.mean()
    mask = mask.to(divergence.dtype)
    return (divergence * mask).sum() / mask.sum().clamp_min(1.0)


def selective_learning_weights(targets: torch.Tensor, mask: torch.Tensor,
                               target_ratio: torch.Tensor, rule: str = "released",
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-entry 0/1 weights of Selective Learning: negatives under-sampled, per batch and label.

    For each label c of the batch, with n_c valid entries of which P_c are positive and
    N_c negative, and target positive ratio a_c: when P_c < n_c · a_c (positives
    under-represented) only K_c randomly chosen negatives keep weight 1, the others get 0;
    otherwise every valid entry keeps weight 1. Positives are never up-weighted (the
    released code clips their weight at ``boundary = 1``).

    - ``rule="released"`` (MLCR's ``BCE_sigmoid_negtive_bias_all``): K_c = ceil(n_c · a_c),
      i.e. as many negatives as the target number of positives.
    - ``rule="ratio"``: K_c = ceil(max(P_c, 1) · (1 − a_c) / a_c), so the kept entries have
      positive ratio ≈ a_c (a batch without positives keeps as many negatives as one positive
      would balance).

    K_c never exceeds N_c. Args: targets (N, C) in {0, 1}; mask (N, C) bool (False: unknown,
    weight 0); target_ratio (C,) in (0, 1); generator: optional RNG for the random choice
    (default: the global RNG of ``targets``' device). Returns (N, C) float weights in {0, 1}.
    """
    if rule not in ("released", "ratio"):
        raise ValueError(f"selective rule {rule!r}: use released or ratio")
    valid = mask.bool()
    positive = valid & (targets > 0.5)
    negative = valid & ~(targets > 0.5)
    n_valid = valid.sum(0).float()
    n_pos = positive.sum(0).float()
    n_neg = negative.sum(0).float()
    ratio = target_ratio.to(device=targets.device, dtype=torch.float32)
    under = n_pos < n_valid * ratio
    if rule == "released":
        keep = torch.ceil(n_valid * ratio)
    else:
        keep = torch.ceil(n_pos.clamp_min(1.0) * (1.0 - ratio) / ratio)
    keep = torch.where(under, torch.minimum(keep, n_neg), n_neg)
    # A random rank among the negatives of each column; non-negatives sort last.
    noise = torch.rand(targets.shape, generator=generator, device=targets.device)
    noise = torch.where(negative, noise, torch.full_like(noise, 2.0))
    rank = noise.argsort(dim=0).argsort(dim=0)
    kept_negative = negative & (rank < keep.unsqueeze(0))
    return (positive | kept_negative).float()


# ------------------------------------------------------- consistency (mean teacher, pseudo-labels)
def masked_sigmoid_mse(logits: torch.Tensor, target_probs: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
    """Squared distance between the student's and the target's label probabilities, averaged
    over the selected entries (Tarvainen & Valpola's consistency, per label):

        L = Σ_{n,c} m_nc (σ(z_nc) − q_nc)² / Σ_{n,c} m_nc

    logits z (N, C), target_probs q (N, C) in [0, 1] (no gradient is taken through them),
    mask (N, C) bool. 0 (with a gradient path) when no entry is selected."""
    per_entry = (torch.sigmoid(logits.float()) - target_probs.float()).pow(2)
    mask = mask.to(per_entry.dtype)
    return (per_entry * mask).sum() / mask.sum().clamp_min(1.0)


def masked_kl_divergence(logits: torch.Tensor, target_probs: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ softmax(z)) = Σ_k q_k (log q_k − log p_k), averaged over the selected samples.

    logits z (N, K), target_probs q (N, K) (rows sum to 1), mask (N,) bool."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    q = target_probs.float()
    per_sample = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(1)
    mask = mask.to(per_sample.dtype)
    return (per_sample * mask).sum() / mask.sum().clamp_min(1.0)


# ------------------------------------------------------------ distillation (Deng et al., 2020)
def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    weights: torch.Tensor, *, temperature: float = 1.0,
                    squared: bool = False) -> torch.Tensor:
    """Knowledge distillation of a softmax output at temperature T (Hinton et al., 2015; Deng
    et al.'s Eq. 5), weighted per sample and averaged over the batch:

        D = s · Σ_n w_n Σ_g KL(softmax(z_t,ng / T) ‖ softmax(z_s,ng / T)) / N,   s = T² or 1

    Args:
        student_logits, teacher_logits: (N, K) logits, or (N, G, K): G softmax groups (the
            valence and arousal bins), whose KLs are summed.
        weights: (N,) per-sample weights w_n (0: the sample adds nothing).
        temperature: T > 0.
        squared: multiply by T² (keeps the gradient's scale as T changes; the released code
            of Deng et al. does not).

    Returns:
        Scalar ≥ 0; 0 exactly where the student's logits equal the teacher's.
    """
    t = float(temperature)
    log_q = torch.log_softmax(teacher_logits.float() / t, dim=-1)
    log_p = torch.log_softmax(student_logits.float() / t, dim=-1)
    per_group = (log_q.exp() * (log_q - log_p)).sum(-1)
    per_sample = per_group.sum(-1) if per_group.dim() == 2 else per_group
    loss = (per_sample * weights.to(per_sample)).sum() / max(per_sample.shape[0], 1)
    return loss * (t * t) if squared else loss


def binary_distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """Distillation of independent sigmoid outputs (AUs; Deng et al.'s Eq. 6), weighted per
    entry and averaged over the N·C entries:

        D = Σ_{n,c} w_nc KL(Bern(q_nc) ‖ Bern(p_nc)) / (N C),   q = σ(z_t), p = σ(z_s)
        KL(Bern(q) ‖ Bern(p)) = q (log q − log p) + (1 − q)(log(1 − q) − log(1 − p))
                              = BCE(z_s, q) − H(q)

    i.e. the released code's BCE against the teacher's sigmoid minus the teacher's entropy, a
    constant: the same gradient, and 0 where the student equals the teacher. Computed from
    log-sigmoids, finite for any logits. logits (N, C); weights (N, C)."""
    zs, zt = student_logits.float(), teacher_logits.float()
    q = torch.sigmoid(zt)
    per_entry = (q * (F.logsigmoid(zt) - F.logsigmoid(zs))
                 + (1.0 - q) * (F.logsigmoid(-zt) - F.logsigmoid(-zs)))
    return (per_entry * weights.to(per_entry)).sum() / max(per_entry.numel(), 1)


def weighted_squared_distance(student: torch.Tensor, teacher: torch.Tensor,
                              weights: torch.Tensor) -> torch.Tensor:
    """Σ_n w_n ‖ŷ_s,n − ŷ_t,n‖² / (D N): distillation of regressed outputs (valence/arousal
    with a regression head), (N, D) predictions, (N,) weights."""
    per_sample = (student.float() - teacher.float()).pow(2).mean(1)
    return (per_sample * weights.to(per_sample)).sum() / max(per_sample.shape[0], 1)
