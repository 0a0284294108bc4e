"""Task heads: per task, the output layer, its activation, its masked loss and its prediction.

Every method that learns several tasks on one feature extractor owns a :class:`TaskHeads`; the
tasks and their options come from config (``method.tasks``, ``method.loss_weights``,
``method.heads``). One head per task:

=============  ===================  ==========================  ==================================
task           outputs (N, ·)       loss (masked)               prediction
=============  ===================  ==========================  ==================================
``au``/``attr``  C logits           BCE, weighting none |        σ(z), (N, C) probabilities
                                    frequency | selective
``expr``       K logits             cross-entropy (optionally    softmax, (N, K)
                                    class-frequency weighted)
``va``         2 (regression) or    MSE of tanh(z) (regression), tanh(z) or the expectation
               2·B logits (bins)    or per-dimension CE over B   Σ_b p_b·c_b of the bin centres,
                                    bins + (1 − CCC) (bins)      (N, 2) in [−1, 1]
``identity``   S logits: W x + b,   cross-entropy over the       softmax over the S training
               or s·cos θ with      training subjects (with      subjects, (N, S) (never a
               ``arcface``          ``arcface``: an angular      margin)
                                    margin on the true class)
=============  ===================  ==========================  ==================================

A head's label names (AU names, expression names, the subject ids of the identity classes)
are kept in :attr:`TaskHeads.label_names`, saved with the method, so that evaluation and
ensembles know what a trained network predicts without the data it was trained on.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from affectlab.data.contract import DataSpec, LabelTable
from affectlab.losses import (
    inverse_frequency_weights,
    masked_bce_with_logits,
    masked_ccc_loss,
    masked_cross_entropy,
    masked_mse,
    selective_learning_weights,
    va_bin_indices,
)

#: Every task a head exists for, in the order heads are built and reported.
HEAD_TASKS: tuple[str, ...] = ("au", "attr", "expr", "va", "identity")
MULTILABEL: tuple[str, ...] = ("au", "attr")


class MultiLabelHead(nn.Module):
    """Linear head over C binary labels (AUs, attributes); masked BCE.

    ``weighting``:

    - ``none``: L = Σ m·BCE / Σ m;
    - ``frequency``: per-label weights w_c ∝ 1 / positive rate of the labelled training split
      (mean 1, :func:`~affectlab.losses.inverse_frequency_weights`);
    - ``selective``: Selective Learning (Hand et al., 2018): per batch and label, negatives
      are under-sampled towards the target positive ratio ``selective_ratio`` (one value, or
      ``"data"``: each label's positive rate in the training split, "the true distribution")
      (:func:`~affectlab.losses.selective_learning_weights`, rule ``ratio``).
    """

    def __init__(self, features: int, num_labels: int, *, weighting: str = "none",
                 selective_ratio: float | str = 0.5, selective_rule: str = "ratio") -> None:
        super().__init__()
        if weighting not in ("none", "frequency", "selective"):
            raise ValueError(f"weighting={weighting!r}: use none, frequency or selective")
        if selective_rule not in ("released", "ratio"):
            raise ValueError(f"selective_rule={selective_rule!r}: use released or ratio")
        if not (selective_ratio == "data" or (isinstance(selective_ratio, (int, float))
                                              and 0.0 < float(selective_ratio) < 1.0)):
            raise ValueError(f"selective_ratio={selective_ratio!r}: a value in (0, 1) or "
                             "'data'")
        self.linear = nn.Linear(features, num_labels)
        self.weighting = weighting
        self.selective_rule = selective_rule
        self._selective_ratio = selective_ratio
        self.register_buffer("label_weights", torch.ones(num_labels))
        self.register_buffer("target_ratio", torch.full((num_labels,), 0.5))

    def fit_statistics(self, targets: torch.Tensor, mask: torch.Tensor) -> None:
        """Label statistics of the training split: (N, C) targets and mask."""
        if self.weighting == "frequency":
            eps = 1.0 / max(int(mask.sum(0).max()), 1)   # no positive: weighted as one positive
            self.label_weights = inverse_frequency_weights(targets, mask, eps=eps)
        if self._selective_ratio == "data":
            rate = (targets * mask).sum(0) / mask.sum(0).clamp_min(1)
            self.target_ratio = rate.clamp(0.01, 0.99).float()
        else:
            self.target_ratio = torch.full_like(self.target_ratio, float(self._selective_ratio))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.weighting == "selective":
            weights = selective_learning_weights(targets, mask, self.target_ratio,
                                                 rule=self.selective_rule)
            return masked_bce_with_logits(logits, targets, mask, weights)
        weights = self.label_weights if self.weighting == "frequency" else None
        return masked_bce_with_logits(logits, targets, mask, weights)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float())


class ClassificationHead(nn.Module):
    """Linear head over K exclusive classes (expressions, identities); masked cross-entropy.

    ``weighting="frequency"`` weights class k by K·(1/n_k) / Σ_j (1/n_j) (counts of the
    training split; classes without a sample get the weight of a class with one).
    """

    def __init__(self, features: int, num_classes: int, *, weighting: str = "none") -> None:
        super().__init__()
        if weighting not in ("none", "frequency"):
            raise ValueError(f"weighting={weighting!r}: use none or frequency")
        self.linear = nn.Linear(features, num_classes)
        self.weighting = weighting
        self.register_buffer("class_weights", torch.ones(num_classes))

    def fit_statistics(self, classes: torch.Tensor, mask: torch.Tensor) -> None:
        if self.weighting == "frequency":
            counts = torch.bincount(classes[mask], minlength=self.class_weights.numel()).float()
            inverse = 1.0 / counts.clamp_min(1.0)
            self.class_weights = inverse * (len(inverse) / inverse.sum())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def loss(self, logits: torch.Tensor, classes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.class_weights if self.weighting == "frequency" else None
        return masked_cross_entropy(logits, classes, mask, weights)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)


class IdentityHead(ClassificationHead):
    """Softmax over the S subjects of the training split (face-recognition pre-training).

    ``subject_ids`` (S,) maps classes to subject ids; a sample whose subject has no class
    (an identity-disjoint split's strangers) is masked out of the loss.

    ``margin``:

    - ``none``: a linear layer, z = W x + b, and cross-entropy;
    - ``arcface``: the additive angular margin of ArcFace (Deng et al., CVPR 2019). With the
      class weights w_j (rows of W, (S, d), no bias) and the features x both L2-normalised,
      cos θ_j = ŵ_j · x̂, and

          forward (every class):     z_j = s · cos θ_j                          (N, S)
          loss (true class y only):  z_y = s · ψ(cos θ_y),   z_j unchanged for j ≠ y
          ψ(c) = cos(θ + m) = c·cos m − √(1 − c²)·sin m      if c > cos(π − m)
                 c − m·sin(π − m) = c − m·sin m              otherwise

      followed by the (masked, optionally class-weighted) cross-entropy. The fallback is
      insightface's published form (th = cos(π − m), mm = sin(π − m)·m): once θ_y + m would
      pass π, cos(θ + m) stops decreasing in θ, so the penalty continues linearly instead.
      Predictions (``forward``/``predict``, no label) use s · cos θ with no margin. The head
      is computed in float32 even under autocast (s · cos θ magnifies bf16 rounding).
      ``scale`` s > 0 (default 64) and ``angular_margin`` m in [0, π/2) radians (default
      0.5) set it; they are errors with ``margin=none``.
    """

    def __init__(self, features: int, num_classes: int, *, weighting: str = "none",
                 margin: str = "none", scale: float | None = None,
                 angular_margin: float | None = None) -> None:
        super().__init__(features, num_classes, weighting=weighting)
        if margin not in ("none", "arcface"):
            raise ValueError(f"margin={margin!r}: use none or arcface")
        if margin == "none":
            for key, value in (("scale", scale), ("angular_margin", angular_margin)):
                if value is not None:
                    raise ValueError(f"{key}={value}: an option of margin=arcface only "
                                     "(margin is none)")
        else:
            scale = 64.0 if scale is None else float(scale)
            angular_margin = 0.5 if angular_margin is None else float(angular_margin)
            if not scale > 0.0:
                raise ValueError(f"scale={scale}: a value > 0")
            if not 0.0 <= angular_margin < math.pi / 2:
                raise ValueError(f"angular_margin={angular_margin}: radians in [0, π/2)")
            self.linear = nn.Linear(features, num_classes, bias=False)
        self.margin = margin
        self.scale = scale
        self.angular_margin = angular_margin
        self.register_buffer("subject_ids", torch.zeros(num_classes, dtype=torch.int64))

    def fit_statistics(self, subjects: torch.Tensor, mask: torch.Tensor) -> None:
        """The training subjects (sorted ids: one class each, as the spec names them) and
        the class weights over them."""
        self.subject_ids = torch.unique(subjects[mask])
        super().fit_statistics(*identity_classes(self.subject_ids, subjects, mask))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, d) features → (N, S) logits: W x + b, or s · cos θ with ``margin=arcface``."""
        if self.margin == "none":
            return self.linear(features)
        with torch.autocast(features.device.type, enabled=False):
            cosine = nn.functional.linear(nn.functional.normalize(features.float(), dim=1),
                                          nn.functional.normalize(self.linear.weight.float(),
                                                                  dim=1))
        return self.scale * cosine

    def apply_margin(self, logits: torch.Tensor, classes: torch.Tensor,
                     known: torch.Tensor) -> torch.Tensor:
        """The training logits: s · ψ(cos θ_y) at each known sample's true class (N, S);
        every other entry (other classes, unknown samples) is ``logits`` unchanged."""
        logits = logits.float()
        if self.margin == "none":
            return logits
        m = self.angular_margin
        index = classes.clamp(0, logits.shape[1] - 1).unsqueeze(1)
        cos_y = (logits.gather(1, index) / self.scale).clamp(-1.0, 1.0)
        # clamp away from 0 so that the gradient of √ stays finite at cos θ = ±1
        sin_y = (1.0 - cos_y * cos_y).clamp_min(1e-12).sqrt()
        threshold, linear_penalty = math.cos(math.pi - m), math.sin(math.pi - m) * m
        psi = torch.where(cos_y > threshold, cos_y * math.cos(m) - sin_y * math.sin(m),
                          cos_y - linear_penalty)
        true_class = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, index, True)
        return torch.where(true_class & known.unsqueeze(1), self.scale * psi, logits)

    def loss(self, logits: torch.Tensor, subjects: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        classes, known = identity_classes(self.subject_ids, subjects, mask)
        return super().loss(self.apply_margin(logits, classes, known), classes, known)


class ValenceArousalHead(nn.Module):
    """Valence and arousal in [−1, 1].

    - ``form="regression"``: 2 outputs, prediction tanh(z), loss masked MSE.
    - ``form="bins"`` (Deng et al., 2020): per dimension B logits over B equal bins of
      [−1, 1] with centres c_b; prediction the expectation ŷ = Σ_b softmax(z)_b c_b; loss per
      dimension CE(z, bin of y) + ``ccc_weight`` · (1 − CCC(ŷ, y)) over the batch's valid
      samples, summed over valence and arousal (their Eq. 3 and L_V + L_A of Eq. 4).
    """

    def __init__(self, features: int, *, form: str = "regression", bins: int = 20,
                 ccc_weight: float = 1.0) -> None:
        super().__init__()
        if form not in ("regression", "bins"):
            raise ValueError(f"form={form!r}: use regression or bins")
        if bins < 2:
            raise ValueError(f"bins={bins}: at least 2")
        self.form = form
        self.bins = bins
        self.ccc_weight = ccc_weight
        self.linear = nn.Linear(features, 2 if form == "regression" else 2 * bins)
        edges = torch.linspace(-1.0, 1.0, bins + 1)
        self.register_buffer("centres", (edges[:-1] + edges[1:]) / 2)

    def fit_statistics(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        """Nothing to learn from the training split."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def _bin_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().view(logits.shape[0], 2, self.bins)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        if self.form == "regression":
            return torch.tanh(logits.float())
        return torch.softmax(self._bin_logits(logits), dim=2) @ self.centres

    def loss(self, logits: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.form == "regression":
            return masked_mse(torch.tanh(logits.float()), values, mask)
        per_dim = self._bin_logits(logits)
        targets = va_bin_indices(values, self.bins)
        loss = sum(masked_cross_entropy(per_dim[:, d], targets[:, d], mask) for d in range(2))
        if self.ccc_weight:
            loss = loss + self.ccc_weight * masked_ccc_loss(self.predict(logits), values, mask)
        return loss


def head_targets(task: str, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, mask) of ``task`` in a batch; identity targets are the subject ids."""
    if task == "identity":
        subject = batch["subject"]
        return subject, subject >= 0
    return batch[task], batch[f"{task}_mask"]


class TaskHeads(nn.Module):
    """One head per task on a shared feature vector, built from the training data.

    Args:
        tasks: the tasks to learn, or None: every task the dataset labels (the spec's tasks).
        loss_weights: λ_t per task (default 1): L = Σ_t λ_t L_t.
        options: per-task head options, e.g. ``{"au": {"weighting": "selective"},
            "va": {"form": "bins"}}`` (keyword arguments of the head classes above).
    """

    def __init__(self, *, tasks: Sequence[str] | None = None,
                 loss_weights: Mapping[str, float] | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        self.requested = None if tasks is None else list(tasks)
        for task in [*(loss_weights or {}), *(options or {})]:
            if task not in HEAD_TASKS:
                raise ValueError(f"unknown task {task!r} in method.loss_weights or method.heads: "
                                 f"tasks are {list(HEAD_TASKS)}")
        if self.requested is not None and not self.requested:
            raise ValueError("method.tasks is empty: name at least one task")
        self.loss_weights = {t: float(w) for t, w in (loss_weights or {}).items()}
        self.options = {t: dict(o) for t, o in (options or {}).items()}
        for task, task_options in self.options.items():
            build_head(task, 1, 1, task_options)    # a bad option fails here, named
        self.heads = nn.ModuleDict()
        self.label_names: dict[str, list[str]] = {}

    @property
    def tasks(self) -> list[str]:
        return list(self.heads)

    def build(self, spec: DataSpec, features: int) -> None:
        """Build a head per task, sized by ``spec``'s label names (identity: one class per
        training subject)."""
        available = [t for t in HEAD_TASKS if t in spec.label_names]
        tasks = self.requested if self.requested is not None else [
            t for t in available if t != "identity"]
        for task in tasks:
            if task not in HEAD_TASKS:
                raise ValueError(f"method.tasks has unknown task {task!r}: dataset '{spec.name}' "
                                 f"labels {available} (tasks with heads: {list(HEAD_TASKS)})")
            if task == "identity" and task not in available:
                raise ValueError(f"method.tasks has 'identity', but dataset '{spec.name}' has no "
                                 "subject ids in its training split: identity pre-training needs "
                                 "a face-recognition set (dataset=msceleb or lfw) or the "
                                 "synthetic pool (dataset.train_split=pool)")
            if task not in available:
                raise ValueError(f"method.tasks has '{task}', but dataset '{spec.name}' labels "
                                 f"{available} in its training split; choose from those")
        for task in tasks:
            names = list(spec.label_names[task])
            head = build_head(task, features, len(names), self.options.get(task, {}))
            if task == "identity":
                head.subject_ids = torch.tensor([int(s) for s in names], dtype=torch.int64)
            self.heads[task] = head
            self.label_names[task] = names
        unknown = set(self.loss_weights) - set(tasks)
        if unknown:
            raise ValueError(f"method.loss_weights names {sorted(unknown)}, which this run does "
                             f"not learn (tasks: {tasks})")

    def fit_statistics(self, table: LabelTable) -> None:
        """Each head's label statistics of the training split (``table``)."""
        for task, head in self.heads.items():
            if task in MULTILABEL:
                head.fit_statistics(torch.from_numpy(getattr(table, task)).float(),
                                    torch.from_numpy(getattr(table, f"{task}_mask")).bool())
            elif task == "expr":
                head.fit_statistics(torch.from_numpy(table.expr), torch.from_numpy(table.expr_mask))
            elif task == "identity":
                subjects = torch.from_numpy(table.subject)
                head.fit_statistics(subjects, subjects >= 0)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, d) features → ``{task: raw outputs (N, ·)}``."""
        return {task: head(features) for task, head in self.heads.items()}

    def losses(self, outputs: Mapping[str, torch.Tensor],
               batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": Σ_t λ_t L_t, task: L_t}`` (the per-task terms unweighted)."""
        terms: dict[str, torch.Tensor] = {}
        for task, head in self.heads.items():
            terms[task] = head.loss(outputs[task], *head_targets(task, batch))
        total = sum(self.loss_weights.get(t, 1.0) * v for t, v in terms.items())
        return {"loss": total, **terms}

    def predict(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {task: head.predict(outputs[task]) for task, head in self.heads.items()}


def build_head(task: str, features: int, outputs: int, options: Mapping[str, Any]) -> nn.Module:
    """The head of ``task`` (``outputs``: labels or classes; ignored for va) with its config
    options; a wrong option is one error naming ``method.heads.<task>.<key>``."""
    head_class = {"au": MultiLabelHead, "attr": MultiLabelHead, "expr": ClassificationHead,
                  "identity": IdentityHead, "va": ValenceArousalHead}[task]
    allowed = [k for k in inspect.signature(head_class.__init__).parameters
               if k not in ("self", "features", "num_labels", "num_classes")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method.heads.{task}.{unknown[0]} is not an option of the {task} head; "
                         f"options: {allowed}")
    try:
        if task == "va":
            return head_class(features, **options)
        return head_class(features, outputs, **options)
    except ValueError as err:
        raise ValueError(f"method.heads.{task}.{err}") from None


def identity_classes(subject_ids: torch.Tensor, subjects: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Subject ids → class indices of an identity head (sorted ``subject_ids``, (S,)); samples
    of subjects the head has no class for are masked out."""
    position = torch.searchsorted(subject_ids, subjects.clamp_min(0))
    position = position.clamp_max(max(subject_ids.numel() - 1, 0))
    known = mask & (subject_ids.numel() > 0) & (subject_ids[position] == subjects)
    return position, known


__all__ = ["TaskHeads", "build_head", "MultiLabelHead", "ClassificationHead", "IdentityHead",
           "ValenceArousalHead",
           "HEAD_TASKS", "MULTILABEL", "identity_classes", "head_targets"]
