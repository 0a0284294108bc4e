"""MLCR: multi-label co-regularization for semi-supervised AU recognition (Niu et al., 2019).

Two views (two backbones of one family, initialised differently), each with per-label linear
classifiers, learn from labelled and unlabelled faces together:

    L = ½ (L_v1 + L_v2) + λ_mv · L_mv + λ_cr · L_cr

- L_vi: masked, weighted BCE of view i on the labelled samples
  (:func:`affectlab.losses.masked_bce_with_logits`),
- L_mv: mean |cos| between the two views' per-label classifier vectors
  (:func:`affectlab.losses.multi_view_loss`), pushing the views to be conditionally independent,
- L_cr: the views' per-label Jensen–Shannon divergence on labelled and unlabelled samples
  (:func:`affectlab.losses.co_regularization_loss`), making them agree,

and an AU-relation GCN (:class:`AURelationGCN`), shared by both views, rewrites each view's
classifier vectors from the label dependencies of the labelled training set
(:func:`dependency_adjacency`). See :class:`MLCR` for every choice where the paper and the
released code differ.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from affectlab.data.contract import DataSpec, FaceData
from affectlab.losses import (
    co_regularization_loss,
    inverse_frequency_weights,
    masked_bce_with_logits,
    multi_view_loss,
    selective_learning_weights,
)
from affectlab.methods.base import Batch, Method, ModelFactory, model_inputs
from affectlab.methods.diagnostics import label_prior, pool_diagnostics

log = logging.getLogger(__name__)


def dependency_adjacency(labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The AU-relation adjacency Â of MLCR, from label co-occurrence statistics.

        P_dep[i, j] = ½ ( P(L_i = 1 | L_j = 1) + P(L_i = 0 | L_j = 0) )
        Â[i, j]     = | (P_dep[i, j] − 0.5) · 2 |

    Each conditional probability is counted over the rows where both L_i and L_j are known.
    Â[i, j] is 1 when label i is fully determined by label j (equal or opposite), 0 when it
    is independent of it; it is not symmetric. The diagonal is 1. An entry whose conditional
    cannot be counted (no row with L_j = 1, or none with L_j = 0, among the rows where both
    are known) carries no evidence and is 0 off the diagonal.

    Args:
        labels: (N, C) labels in {0, 1} (any real dtype; > 0.5 is positive).
        mask: optional (N, C) bool, False where a label is unknown.

    Returns:
        (C, C) float32 tensor Â (un-normalised; :func:`normalize_adjacency` prepares it for
        propagation).
    """
    if labels.dim() != 2:
        raise ValueError(f"dependency_adjacency expects (N, C) labels, got {tuple(labels.shape)}")
    known = (torch.ones_like(labels, dtype=torch.bool) if mask is None else mask.bool())
    known = known.double()
    positive = (labels > 0.5).double() * known
    negative = (labels <= 0.5).double() * known
    # [i, j]: counts over rows where label i is known and label j has the given value.
    both_positive = positive.T @ positive
    given_positive = known.T @ positive
    both_negative = negative.T @ negative
    given_negative = known.T @ negative
    defined = (given_positive > 0) & (given_negative > 0)
    p_pos = both_positive / given_positive.clamp_min(1.0)
    p_neg = both_negative / given_negative.clamp_min(1.0)
    p_dep = 0.5 * (p_pos + p_neg)
    adjacency = torch.where(defined, ((p_dep - 0.5) * 2).abs(), torch.zeros_like(p_dep))
    adjacency.fill_diagonal_(1.0)
    return adjacency.float()


def normalize_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    """D^−½ Âᵀ D^−½ with D = diag(row sums of Â): the released code's ``gen_adj``.

    Note the transpose: for the asymmetric Â, node i aggregates node j with weight
    Â[j, i] / sqrt(d_i d_j). Every row sum of Â is ≥ 1 (its diagonal is 1), so D is invertible.
    """
    inv_sqrt = adjacency.sum(1).clamp_min(1e-12).rsqrt()
    return inv_sqrt[:, None] * adjacency.T * inv_sqrt[None, :]


class AURelationGCN(nn.Module):
    """Two graph convolutions over the C label nodes that rewrite classifier vectors.

        G(W) = Â_n · act(Â_n · W · H0) · H1
        W^t  = W + G(W)   (residual=True, default)      or      W^t = G(W)   (the paper's form)

    with node features W = [w_j | b_j] (C × F, F = d + 1: a view's classifier weights and
    bias) and Â_n = :func:`normalize_adjacency` (Â).

    Initialisation (``init``):

    - ``identity`` (default): H0 = I (F × hidden, rectangular identity) and H1 = 0 when
      residual, so W^t = W exactly at the switch and the step-one classifiers are kept; the
      GCN then learns a relation-driven correction (H1 gets gradients at once, H0 as soon as
      H1 ≠ 0). In the paper's non-residual form H1 = I, so W^t = Â_n act(Â_n W): the
      step-one classifiers smoothed along the relation graph, not a random rewrite.
    - ``random``: both uniform(±1/sqrt(out features)), as the released ``GraphConvolution``;
      the output at the switch is then unrelated to the step-one classifiers.

    Args:
        adjacency: (C, C) un-normalised Â (:func:`dependency_adjacency`).
        features: F, the length of a node's feature vector.
        hidden: width of the first layer's output (default F, as released: 513 → 513 → 513).
        activation: ``leaky_relu`` (released, slope ``negative_slope``) or ``relu`` (poster).
        negative_slope: slope of the leaky ReLU (released: 0.2).
        residual: see above.
        init: ``identity`` or ``random``, see above.
    """

    def __init__(self, adjacency: torch.Tensor, features: int, *, hidden: int | None = None,
                 activation: str = "leaky_relu", negative_slope: float = 0.2,
                 residual: bool = True, init: str = "identity") -> None:
        super().__init__()
        if activation not in ("leaky_relu", "relu"):
            raise ValueError(f"method.gcn_activation={activation!r}: use leaky_relu or relu")
        if init not in ("identity", "random"):
            raise ValueError(f"method.gcn_init={init!r}: use identity or random")
        hidden = hidden or features
        self.activation = activation
        self.negative_slope = negative_slope
        self.residual = residual
        self.register_buffer("adjacency", normalize_adjacency(adjacency.float()))
        if init == "identity":
            h0 = torch.eye(features, hidden)
            h1 = torch.zeros(hidden, features) if residual else torch.eye(hidden, features)
        else:
            h0 = torch.empty(features, hidden).uniform_(-hidden ** -0.5, hidden ** -0.5)
            h1 = torch.empty(hidden, features).uniform_(-features ** -0.5, features ** -0.5)
        self.h0 = nn.Parameter(h0)
        self.h1 = nn.Parameter(h1)

    def set_adjacency(self, adjacency: torch.Tensor) -> None:
        """Use the un-normalised (C, C) Â (:func:`dependency_adjacency`) from now on."""
        self.adjacency = normalize_adjacency(adjacency.float()).to(self.adjacency)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        """(C, F) classifier vectors → (C, F) classifier vectors."""
        hidden = self.adjacency @ (weights @ self.h0)
        if self.activation == "relu":
            hidden = F.relu(hidden)
        else:
            hidden = F.leaky_relu(hidden, self.negative_slope)
        out = self.adjacency @ (hidden @ self.h1)
        return weights + out if self.residual else out


def _single_task(tasks: list[str] | None) -> str:
    """The one multi-label task MLCR learns (``method.tasks``; None: ``au``)."""
    chosen = list(tasks) if tasks is not None else ["au"]
    if len(chosen) != 1 or chosen[0] not in ("au", "attr"):
        raise ValueError(f"method.tasks={chosen}: MLCR learns one multi-label task, "
                         "method.tasks=[au] or method.tasks=[attr]")
    return chosen[0]


class MLCR(Method):
    """Multi-label co-regularization (Niu, Han, Shan & Chen, NeurIPS 2019).

    Per view i ∈ {1, 2}: backbone f_i → features (N, d); classifier vectors V_i (C × (d+1)),
    logits z_i = f_i · V_i[:, :d]ᵀ + V_i[:, d], probabilities p_i = σ(z_i). V_i is the view's
    linear classifier [w | b] in step one and GCN([w | b]) in step two (when ``gcn``).

        L = ½ (L_v1 + L_v2) + λ_mv · L_mv(V_1, V_2) + λ_cr · L_cr(p_1, p_2)

    Prediction: (p_1 + p_2) / 2. ``forward`` returns ``loss`` and, detached, ``supervised``
    (½ Σ L_vi), ``multi_view`` (L_mv) and ``co_regularization`` (L_cr), unweighted.

    Two-step schedule (paper; reproduction §2.2) in one run: for the first
    ``step_two_start`` optimizer steps the views train without the GCN (logits from the raw
    classifiers); from then on the GCN is on and its input W^0 is each view's step-one
    classifier. The step count is part of the method's state (``get_extra_state``), so a
    resumed run and the best checkpoint know which step they are in. ``lambda_cr_step_two``
    (the reproduction raised λ_cr to 500 for CK+) replaces λ_cr from ``step_two_start`` on,
    with or without the GCN.

    Choices where the paper, the released code (nxsEdson/MLCR) and the reproduction differ;
    each is a flag, the default serves the method's aim:

    - ``gcn_input="live"`` (default): the GCN input is the views' live classifier parameters,
      so they keep learning through the GCN and L_mv acts on the vectors that produce the
      logits. ``"frozen"`` detaches it, which equals the released snapshot of the classifiers
      at the switch (parameters without a gradient are skipped by the optimizer, so they stay
      at their switch values). The released code's L_mv on the raw classifiers, which no
      longer drive the logits after the switch, is not reproduced: L_mv always uses V_i.
    - ``gcn_residual=True`` (default) with ``gcn_init="identity"``: V_i = W + G(W) with
      G's last layer zero at the switch, so turning the GCN on does not destroy the step-one
      classifiers (see :class:`AURelationGCN`). ``gcn_residual=False`` is the paper's
      W^t = Â act(Â W H0) H1; ``gcn_init="random"`` is the released initialisation.
    - Adjacency: Â from the labelled training split (:func:`dependency_adjacency`), normalised
      as D^−½ Âᵀ D^−½ with D the row sums of Â (released ``gen_adj``); the poster's ReLU vs
      the released LeakyReLU(0.2) is ``gcn_activation`` (default: released).
    - ``absolute=True`` (default, released; the aim is orthogonal views): L_mv uses |cos|;
      ``False`` is the signed formula printed in the paper, which rewards opposite classifiers.
      ``include_bias=True`` (released) appends the bias to the compared vectors.
    - L_cr is the exact per-entry JS divergence (clamp 1e-6, ``cr_eps``), averaged over samples
      and labels; the released code's |·|, ε-shifted entropies and differing element subsets
      (and its crash, the only branch computing L_cr) are not reproduced.
    - Supervised weighting ``supervised_weighting``: ``frequency`` (paper's a_c: inverse
      positive rate of the labelled split, mean 1; a label with no positive is weighted like
      one with a single positive), ``selective`` (the released Selective-Learning form:
      negatives under-sampled per batch and label towards ``selective_ratio``, positives never
      up-weighted; ``selective_rule`` picks the released count or an exact ratio, see
      :func:`affectlab.losses.selective_learning_weights`) or ``none``.
    - ``supervised_reduction="mean"`` (paper: (1/C) Σ_c, mean over valid entries); ``"sum"``
      is the released scale (sum over labels, mean over labelled samples), C times larger,
      which changes how much λ_mv and λ_cr weigh against L_v.
    - ``unlabeled=False`` trains on labelled batches only (``needs_unlabeled`` is False, the
      trainer sends no pool batch, and any pool batch present is ignored): L_cr then runs on
      the labelled samples only, as in the reproduction's notebook.
    - The two views are built by two calls of ``model``; the global RNG has moved between
      them, so randomly initialised views differ. Views loaded from the same pretrained
      weights start identical (a warning is logged); their classifiers still differ.
    - Labelled and unlabelled images go through each backbone in one batch (batch-norm
      statistics over both).
    - ``view_augmentation``: ``shared`` (paper, released code) feeds both views the same
      augmented image; ``independent`` gives each view its own random augmentation of it, so
      L_cr also asks the views to agree across input perturbations — a further source of view
      difference in the spirit of the method's conditionally independent views (the trainer
      draws the copies, ``augmented_views = 2``). Prediction is unaffected (no augmentation).
    - ``lambda_cr_rampup_steps``: λ_cr grows as exp(−5 (1 − t/T)²) over the first T steps
      (0, default: constant, as published), so early agreement of untrained views is not
      rewarded at full weight.

    Under ``torchrun``, parameters unused in a step (the GCN in step one) need
    ``find_unused_parameters`` in DDP.

    Args:
        model: factory returning a backbone with ``forward_features`` and ``num_features``;
            called twice (one per view).
        tasks: the task list every method takes (``method.tasks``); MLCR learns one
            multi-label task: ``[au]`` (default) or ``[attr]``. (Configs saved before this
            key carry ``task: au``: :data:`affectlab.config.RENAMED_KEYS` reads them.)
        name: the method's name in run directories and ``metrics.json``.
        lambda_mv, lambda_cr: weights of L_mv and L_cr (paper: 400, 100); 0 removes the term.
        lambda_cr_step_two: λ_cr from ``step_two_start`` on (None: keep ``lambda_cr``).
        gcn: use the AU-relation GCN in step two.
        unlabeled: train on the unlabelled pool too (L_cr on its batches).
        step_two_start: optimizer steps of step one (0: GCN from the first step).
        view_augmentation: ``shared`` | ``independent``, see above.
        lambda_cr_rampup_steps: ramp-up length T of λ_cr in optimizer steps (0: none).
        supervised_weighting: ``frequency`` | ``selective`` | ``none``.
        supervised_reduction: ``mean`` | ``sum``.
        selective_ratio: target positive ratio a_c of selective learning, one value or one
            per label (released EmotioNet: [0.2, 0.3, 0.2, 0.2, 0.5, 0.2, 0.5, 0.2, 0.1, 0.5,
            0.2, 0.3]).
        selective_rule: ``released`` | ``ratio``.
        absolute, include_bias: L_mv variants, see above.
        gcn_hidden, gcn_activation, gcn_negative_slope, gcn_residual, gcn_init: the GCN, see
            :class:`AURelationGCN`.
        gcn_input: ``live`` | ``frozen``, see above.
        cr_eps: probability clamp of the entropies in L_cr.
    """

    # The GCN is idle until step two starts, so DDP must tolerate unused parameters.
    has_idle_parameters = True
    # L_mv compares the two views' classifiers; L_cr their predictions on every sample
    unsupervised_terms = {"multi_view": "heads", "co_regularization": "views"}

    def __init__(self, *, model: ModelFactory, tasks: list[str] | None = None, name: str = "mlcr",
                 lambda_mv: float = 400.0, lambda_cr: float = 100.0,
                 lambda_cr_step_two: float | None = None, gcn: bool = True,
                 unlabeled: bool = True, step_two_start: int = 0,
                 view_augmentation: str = "shared", lambda_cr_rampup_steps: int = 0,
                 supervised_weighting: str = "frequency", supervised_reduction: str = "mean",
                 selective_ratio: float | list[float] = 0.5, selective_rule: str = "released",
                 absolute: bool = True, include_bias: bool = True, gcn_hidden: int | None = None,
                 gcn_activation: str = "leaky_relu", gcn_negative_slope: float = 0.2,
                 gcn_residual: bool = True, gcn_init: str = "identity", gcn_input: str = "live",
                 cr_eps: float = 1e-6) -> None:
        super().__init__()
        choices = {"supervised_weighting": (supervised_weighting,
                                            ("frequency", "selective", "none")),
                   "supervised_reduction": (supervised_reduction, ("mean", "sum")),
                   "selective_rule": (selective_rule, ("released", "ratio")),
                   "gcn_activation": (gcn_activation, ("leaky_relu", "relu")),
                   "gcn_init": (gcn_init, ("identity", "random")),
                   "gcn_input": (gcn_input, ("live", "frozen")),
                   "view_augmentation": (view_augmentation, ("shared", "independent"))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"method.{key}={value!r}: use {' or '.join(allowed)}")
        if step_two_start < 0:
            raise ValueError(f"method.step_two_start={step_two_start}: must be ≥ 0")
        if lambda_cr_rampup_steps < 0:
            raise ValueError(f"method.lambda_cr_rampup_steps={lambda_cr_rampup_steps}: must be ≥ 0")
        ratios = ([selective_ratio] if isinstance(selective_ratio, (int, float))
                  else list(selective_ratio))
        if not all(0.0 < float(r) < 1.0 for r in ratios):
            raise ValueError(f"method.selective_ratio={selective_ratio!r}: ratios must lie in "
                             "(0, 1)")
        if gcn_hidden is not None and gcn_hidden < 1:
            raise ValueError(f"method.gcn_hidden={gcn_hidden}: must be ≥ 1 (or null)")
        self.task = _single_task(tasks)
        self.name = name
        self.lambda_mv = float(lambda_mv)
        self.lambda_cr = float(lambda_cr)
        self.lambda_cr_step_two = None if lambda_cr_step_two is None else float(lambda_cr_step_two)
        self.use_gcn = gcn
        self.needs_unlabeled = unlabeled  # read by the trainer (an instance value here)
        self.unlabeled = unlabeled
        self.step_two_start = step_two_start
        self.view_augmentation = view_augmentation
        # read by the trainer: one independently augmented copy of each image per view
        self.augmented_views = 2 if view_augmentation == "independent" else 1
        self.lambda_cr_rampup_steps = lambda_cr_rampup_steps
        self.supervised_weighting = supervised_weighting
        self.supervised_reduction = supervised_reduction
        self.selective_rule = selective_rule
        self._selective_ratio = [float(r) for r in ratios]
        self.absolute = absolute
        self.include_bias = include_bias
        self.gcn_options: dict[str, Any] = dict(hidden=gcn_hidden, activation=gcn_activation,
                                                negative_slope=gcn_negative_slope,
                                                residual=gcn_residual, init=gcn_init)
        self.gcn_input = gcn_input
        self.cr_eps = cr_eps

        self.views = nn.ModuleList([model(), model()])
        if all(torch.equal(a, b) for a, b in zip(self.views[0].state_dict().values(),
                                                 self.views[1].state_dict().values())):
            log.warning("MLCR: the two views start with identical weights (e.g. the same "
                        "pretrained checkpoint); only their classifiers differ at the start.")
        self.heads = nn.ModuleList()
        self.gcn: AURelationGCN | None = None
        self.register_buffer("label_weights", torch.ones(0))
        self.register_buffer("selective_ratio", torch.ones(0))
        self.register_buffer("adjacency", torch.zeros(0, 0))
        # positive rate per label of the labelled split, for the logged pool diagnostics;
        # fitted on every fit, so not saved (older checkpoints load unchanged)
        self.register_buffer("label_prior", torch.ones(0), persistent=False)
        self.steps_done = 0

    # ------------------------------------------------------------------ setup
    def build(self, spec: DataSpec) -> None:
        if not spec.label_names.get(self.task):
            raise ValueError(f"dataset '{spec.name}' has no '{self.task}' labels in its training "
                             f"split (it has {sorted(spec.label_names)}); set method.tasks to "
                             "[au] or [attr], whichever it has")
        num_labels = len(spec.label_names[self.task])
        self.label_names = {self.task: list(spec.label_names[self.task])}
        features = self.views[0].num_features
        self.heads = nn.ModuleList([nn.Linear(features, num_labels) for _ in range(2)])
        ratios = self._selective_ratio
        if len(ratios) == 1:
            ratios = ratios * num_labels
        if len(ratios) != num_labels:
            raise ValueError(f"method.selective_ratio has {len(ratios)} values but the task "
                             f"'{self.task}' has {num_labels} labels")
        self.selective_ratio = torch.tensor(ratios)
        self.label_weights = torch.ones(num_labels)
        self.label_prior = torch.full((num_labels,), 0.5)
        # Â is fitted from the training split (fit_statistics) or restored from a checkpoint
        self.adjacency = torch.eye(num_labels)
        if self.use_gcn:
            self.gcn = AURelationGCN(self.adjacency, features + 1, **self.gcn_options)

    def fit_statistics(self, data: FaceData) -> None:
        """Label weights and the AU-relation adjacency Â of the labelled training split."""
        table = data.train.table
        targets = torch.from_numpy(getattr(table, self.task)).float()
        mask = torch.from_numpy(getattr(table, f"{self.task}_mask")).bool()
        if self.supervised_weighting == "frequency":
            # a label without positives is weighted like one with a single positive
            eps = 1.0 / max(int(mask.sum(0).max()), 1)
            self.label_weights = inverse_frequency_weights(targets, mask, eps=eps)
        self.adjacency = dependency_adjacency(targets, mask)
        self.label_prior = label_prior(targets, mask)
        if self.gcn is not None:
            self.gcn.set_adjacency(self.adjacency)

    # ------------------------------------------------------------- step state
    def get_extra_state(self) -> torch.Tensor:
        """The optimizer steps taken so far (checkpointed: step one vs step two)."""
        return torch.tensor(self.steps_done, dtype=torch.int64)

    def set_extra_state(self, state: Any) -> None:
        self.steps_done = int(state)

    def after_optimizer_step(self, step: int) -> None:
        self.steps_done = step + 1

    @property
    def in_step_two(self) -> bool:
        """True once ``step_two_start`` optimizer steps have been taken."""
        return self.steps_done >= self.step_two_start

    @property
    def gcn_active(self) -> bool:
        return self.gcn is not None and self.in_step_two

    @property
    def current_lambda_cr(self) -> float:
        """λ_cr now: ``lambda_cr_step_two`` in step two (if set), times the ramp-up factor

            exp(−5 (1 − t / T)²) for t < T = ``lambda_cr_rampup_steps``, 1 afterwards

        (t: optimizer steps taken; the sigmoid-shaped ramp of Laine & Aila, 2017).
        """
        value = self.lambda_cr
        if self.in_step_two and self.lambda_cr_step_two is not None:
            value = self.lambda_cr_step_two
        if self.steps_done < self.lambda_cr_rampup_steps:
            progress = self.steps_done / self.lambda_cr_rampup_steps
            value *= math.exp(-5.0 * (1.0 - progress) ** 2)
        return value

    # --------------------------------------------------------------- networks
    def classifier_vectors(self) -> list[torch.Tensor]:
        """Per view, the (C, d+1) vectors [w | b] that produce the logits now."""
        raw = [torch.cat([head.weight, head.bias[:, None]], dim=1) for head in self.heads]
        if not self.gcn_active:
            return raw
        if self.gcn_input == "frozen":
            raw = [v.detach() for v in raw]
        return [self.gcn(v) for v in raw]

    def view_logits(self, inputs: torch.Tensor | Sequence[tuple[torch.Tensor, ...]],
                    vectors: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Per view (N, C) logits.

        ``inputs``: per view, the tuple of inputs its backbone reads (:func:`model_inputs`)
        or one image tensor (N, 3, H, W); or one image tensor seen by both views;
        ``vectors``: from :meth:`classifier_vectors` (default: computed here).
        """
        vectors = self.classifier_vectors() if vectors is None else vectors
        if isinstance(inputs, torch.Tensor):
            inputs = [(inputs,), (inputs,)]
        out = []
        for backbone, v, view_inputs in zip(self.views, vectors, inputs):
            if isinstance(view_inputs, torch.Tensor):
                view_inputs = (view_inputs,)
            feats = backbone.forward_features(*view_inputs)
            out.append(F.linear(feats, v[:, :-1].to(feats.dtype), v[:, -1].to(feats.dtype)))
        return out

    # ------------------------------------------------------------------ losses
    def supervised_loss(self, logits: torch.Tensor, targets: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
        """L_v of one view on labelled samples: (N, C) logits, targets, mask → scalar."""
        if self.supervised_weighting == "selective":
            weights = selective_learning_weights(targets, mask, self.selective_ratio,
                                                 rule=self.selective_rule)
            # (N, C) weights broadcast like (C,) ones; dropped negatives still count in the
            # denominator (Σ valid), as the released code divides by the batch size.
            loss = masked_bce_with_logits(logits, targets, mask, weights)
        else:
            loss = masked_bce_with_logits(logits, targets, mask, self.label_weights)
        if self.supervised_reduction == "sum":
            loss = loss * mask.float().sum().clamp_min(1.0) / max(logits.shape[0], 1)
        return loss

    def terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Undetached ``supervised``, ``multi_view``, ``co_regularization`` and ``loss``."""
        num_labeled = batch[self.task].shape[0]
        inputs = self._view_inputs(batch)
        if self.unlabeled:
            if "unlabeled" not in batch:
                raise KeyError("MLCR with method.unlabeled=true needs batch['unlabeled'] (the "
                               "trainer provides it when needs_unlabeled is True)")
            pool = self._view_inputs(batch["unlabeled"])
            # labelled and pool samples through each backbone in one batch
            inputs = [tuple(torch.cat([mine, extra]) for mine, extra in zip(own, other))
                      for own, other in zip(inputs, pool)]
        vectors = self.classifier_vectors()
        logits = self.view_logits(inputs, vectors)

        targets, mask = batch[self.task], batch[f"{self.task}_mask"]
        supervised = 0.5 * sum(self.supervised_loss(z[:num_labeled], targets, mask)
                               for z in logits)
        compared = vectors if self.include_bias else [v[:, :-1] for v in vectors]
        multi_view = multi_view_loss(compared[0], compared[1], absolute=self.absolute)
        probs = [torch.sigmoid(z.float()) for z in logits]
        co_regularization = co_regularization_loss(probs[0], probs[1], eps=self.cr_eps)

        loss = supervised
        if self.lambda_mv != 0:
            loss = loss + self.lambda_mv * multi_view
        lambda_cr = self.current_lambda_cr
        if lambda_cr != 0:
            loss = loss + lambda_cr * co_regularization
        # the entries L_cr regularises without labels: the pool's (else the labelled ones')
        unlabelled = slice(num_labeled, None) if self.unlabeled else slice(None)
        diagnostics = pool_diagnostics(
            self.task, probs[0][unlabelled].detach(), probs[1][unlabelled].detach(),
            torch.ones_like(probs[0][unlabelled], dtype=torch.bool), self.label_prior,
            self.label_names[self.task])
        return {"loss": loss, "supervised": supervised, "multi_view": multi_view,
                "co_regularization": co_regularization, **diagnostics}

    def _view_inputs(self, samples: Batch) -> list[tuple[torch.Tensor, ...]]:
        """The inputs each view sees: the same batch, or its own augmented copy."""
        if self.view_augmentation == "shared":
            return [model_inputs(view, samples) for view in self.views]
        keys = [f"{k}_views" for k in getattr(self.views[0], "input_keys", ("image",))]
        if not all(k in samples for k in keys):
            raise KeyError(f"MLCR with method.view_augmentation=independent needs batch{keys} "
                           "(the trainer provides them when augmented_views is 2)")
        return [model_inputs(view, samples, views=k) for k, view in enumerate(self.views)]

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        inputs = [model_inputs(view, batch) for view in self.views]
        probs = [torch.sigmoid(z.float()) for z in self.view_logits(inputs)]
        return {self.task: (probs[0] + probs[1]) / 2}

    def parts(self) -> dict[str, list[str]]:
        """``backbone``: both views (a one-backbone run initialises each of them)."""
        return {"backbone": ["views.0", "views.1"], "heads": ["heads"], "gcn": ["gcn"]}


__all__ = ["MLCR", "AURelationGCN", "dependency_adjacency", "normalize_adjacency"]
