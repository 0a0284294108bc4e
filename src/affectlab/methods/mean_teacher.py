"""Mean teacher (Tarvainen & Valpola, 2017) for any model and task set, as the multi-task mean
teacher of Wang & Wang (ABAW 2021) uses it, and its pseudo-labelling control.

The student is the baseline's network (backbone → one head per task). The teacher is a copy
whose weights follow the student's as an exponential moving average after every optimizer
step; it receives no gradient. Student and teacher see differently perturbed copies of the
same batch (the data's transform draws two augmentations, ``augmented_views = 2``; student
view 0, teacher view 1; ``student_strength`` > 1 augments the student's pool view more
strongly, FixMatch's weak → strong; ``input_noise`` adds Gaussian noise to each; with
``teacher_view=rendering`` the teacher sees another rendering of each pool face). Per task,
consistency is asked for wherever that task's label is missing: on every unlabelled pool
sample, and on labelled samples for the tasks (or the AUs) they lack.

    L = L_s + w(t) · L_c
    L_s = Σ_τ λ_τ L_τ(student(x₀), y)                        on the known labels (as Baseline)
    L_c = Σ_τ κ_τ C_τ(student(x₀), teacher(x₁))              on the missing labels
    w(t) = λ_c · exp(−5 (1 − min(t, T)/T)²)     (Laine & Aila's ramp over T steps; λ_c if T = 0)
    θ′_t = η_t θ′_{t−1} + (1 − η_t) θ_t,   η_t = min(1 − 1/(t + 1), η)

with t the optimizer steps taken so far (the first update, t = 1, averages with η = ½; the
EMA is never reset). Per task C_τ (``consistency`` options):

- ``au``/``attr``: ``mse`` — mean over missing entries of (σ(z_s) − σ(z_t))²; ``bce`` —
  BCE(z_s, σ(z_t)) (the released code's choice);
- ``expr``: ``hard`` — cross-entropy to the teacher's arg-max class (the paper's hard label);
  ``kl`` — KL(softmax(z_t) ‖ softmax(z_s));
- ``va``: ``ccc`` — 1 − CCC between the student's and the teacher's predictions, per
  dimension (the paper); ``mse``.

**Pseudo-labelling** (``targets: hard``, ``configs/method/pseudo_label.yaml``): the teacher's
confident predictions become hard targets for the student — an AU is a positive target where
the teacher's probability is ≥ ``confidence``, a negative one where it is ≤ 1 − ``confidence``,
and no target in between; ``pseudo_rule: prior`` instead thresholds each label at the
quantile of the batch's teacher probabilities that makes its positive rate the labelled
training split's (so targets cannot collapse to "absent"); an expression is a target where
the teacher's top class has probability ≥ ``confidence``; valence/arousal targets are the
teacher's predictions. The multi-label targets are learned with BCE.

**Teacher buffers** (BatchNorm running statistics), ``buffers``: ``ema`` averages them as the
weights (integer counters are copied); ``copy`` copies the student's after every step. The
teacher always runs in evaluation mode (it normalises with its running statistics, and its
forward pass changes nothing), so its targets do not depend on the batch's composition.

**Diagnostics** logged with the loss terms (every multi-label task, where consistency
applies; :mod:`affectlab.methods.diagnostics`): student–teacher disagreement, the teacher's
positive rate per label and its ratio to the labelled prior.

Evaluation, thresholds and ``best.pt`` selection use the teacher (``evaluate_with``, the
paper's choice) or the student. Checkpoints hold both networks and the step.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from affectlab.data.contract import DataSpec, FaceData
from affectlab.data.transforms import ALTERNATE
from affectlab.losses import (
    masked_bce_with_logits,
    masked_ccc_loss,
    masked_cross_entropy,
    masked_kl_divergence,
    masked_mse,
    masked_sigmoid_mse,
)
from affectlab.methods.base import Batch, Method, ModelFactory, model_inputs
from affectlab.methods.baseline import _plain
from affectlab.methods.diagnostics import label_prior, pool_diagnostics
from affectlab.methods.heads import MULTILABEL, TaskHeads, head_targets

#: consistency forms per task, the first being the default
CONSISTENCY_FORMS = {"au": ("mse", "bce"), "attr": ("mse", "bce"), "expr": ("hard", "kl"),
                     "va": ("ccc", "mse")}


class MeanTeacher(Method):
    """Student and EMA teacher over one backbone + task heads (see the module docstring).

    Args:
        model: factory of the backbone (``forward_features``, ``num_features``).
        tasks, loss_weights, heads: the supervised part, as :class:`~affectlab.methods.
            baseline.Baseline` (λ_τ = ``loss_weights``).
        ema_decay: η in (0, 1).
        buffers: ``ema`` or ``copy`` (teacher BatchNorm statistics).
        consistency_weight: the ramp's final weight (λ_c ≥ 0).
        consistency_rampup_steps: T (0: full weight from the first step); at most the run's
            length.
        consistency: per-task form, e.g. ``{au: mse, expr: hard, va: ccc}`` (missing: default).
        consistency_task_weights: κ_τ per task (default 1; the released code: expr 3).
        consistency_on: ``missing`` (the paper: unlabelled samples and missing labels) or
            ``all`` (Tarvainen & Valpola: every sample, labelled ones too).
        unlabeled: draw a batch of the unlabelled pool with every labelled batch; false: only
            the labelled samples' missing labels get consistency.
        input_noise: std of Gaussian noise added to each view's normalised input (≥ 0).
        student_strength: the student's pool view is augmented with the data's ranges times
            this (FixMatch's weak → strong with > 1; 1: both views alike), in (0, 5].
        teacher_view: ``augmented`` (the teacher's pool input is a second augmentation of the
            student's) or ``rendering`` (a second rendering of the same pool face, ``<key>_alt``:
            the synthetic benchmark's ``dataset.pool_renderings=2``).
        targets: ``soft`` (mean teacher) or ``hard`` (pseudo-labelling).
        confidence: pseudo-labels' confidence in (0.5, 1).
        pseudo_rule: ``confidence`` or ``prior`` (multi-label thresholds matching the labelled
            positive rate).
        align_to_prior: distribution alignment of the multi-label targets (ReMixMatch's, per
            label): the teacher's probabilities shifted in logit space so that their running
            mean on the pool is the labelled prior (:meth:`_aligned`).
        alignment_momentum: the running mean's decay per step, in [0, 1).
        evaluate_with: ``teacher`` or ``student``.
        name: the method's name in run directories.
    """

    augmented_views = 2
    unsupervised_terms = {"consistency": "backbone"}
    networks = ("teacher", "student")

    def __init__(self, *, model: ModelFactory, tasks: list[str] | None = None,
                 loss_weights: dict[str, float] | None = None,
                 heads: dict[str, dict] | None = None, ema_decay: float = 0.99,
                 buffers: str = "ema", consistency_weight: float = 1.0,
                 consistency_rampup_steps: int = 0, consistency: dict[str, str] | None = None,
                 consistency_task_weights: dict[str, float] | None = None,
                 consistency_on: str = "missing", unlabeled: bool = True,
                 input_noise: float = 0.0, student_strength: float = 1.0,
                 teacher_view: str = "augmented",
                 targets: str = "soft", confidence: float = 0.9,
                 pseudo_rule: str = "confidence", align_to_prior: bool = False,
                 alignment_momentum: float = 0.99, evaluate_with: str = "teacher",
                 name: str = "mean_teacher") -> None:
        super().__init__()
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"method.ema_decay={ema_decay}: the teacher's averaging rate η "
                             "must lie in (0, 1) (0.99 in the paper)")
        choices = {"buffers": (buffers, ("ema", "copy")),
                   "consistency_on": (consistency_on, ("missing", "all")),
                   "teacher_view": (teacher_view, ("augmented", "rendering")),
                   "targets": (targets, ("soft", "hard")),
                   "pseudo_rule": (pseudo_rule, ("confidence", "prior")),
                   "evaluate_with": (evaluate_with, ("teacher", "student"))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"method.{key}={value!r}: use {' or '.join(allowed)}")
        if not consistency_weight >= 0.0:
            raise ValueError(f"method.consistency_weight={consistency_weight}: must be ≥ 0")
        if isinstance(consistency_rampup_steps, bool) or not (
                isinstance(consistency_rampup_steps, int) and consistency_rampup_steps >= 0):
            raise ValueError(f"method.consistency_rampup_steps={consistency_rampup_steps!r}: "
                             "optimizer steps, an integer ≥ 0")
        if not 0.0 <= input_noise <= 1.0:
            raise ValueError(f"method.input_noise={input_noise}: the std of Gaussian noise on "
                             "normalised inputs, in [0, 1]")
        if not 0.0 < student_strength <= 5.0:
            raise ValueError(f"method.student_strength={student_strength}: how many times the "
                             "data's augmentation ranges the student's pool view gets, in "
                             "(0, 5] (1: as the teacher's)")
        if not 0.0 <= alignment_momentum < 1.0:
            raise ValueError(f"method.alignment_momentum={alignment_momentum}: the running "
                             "mean's decay per step, in [0, 1)")
        if not 0.5 < confidence < 1.0:
            raise ValueError(f"method.confidence={confidence}: pseudo-labels' confidence, in "
                             "(0.5, 1)")
        forms = {t: f[0] for t, f in CONSISTENCY_FORMS.items()}
        for task, form in dict(consistency or {}).items():
            if task not in CONSISTENCY_FORMS or form not in CONSISTENCY_FORMS[task]:
                allowed = {t: list(f) for t, f in CONSISTENCY_FORMS.items()}
                raise ValueError(f"method.consistency.{task}={form!r}: forms are {allowed}")
            forms[task] = form
        self.name = name
        self.ema_decay, self.buffers = float(ema_decay), buffers
        self.consistency_weight = float(consistency_weight)
        self.rampup_steps = int(consistency_rampup_steps)
        self.forms = forms
        self.task_weights = {str(t): float(w) for t, w in (consistency_task_weights or {}).items()}
        self.consistency_on, self.input_noise = consistency_on, float(input_noise)
        self.teacher_view = teacher_view
        if student_strength != 1.0:     # the student's pool view (0) stronger than the teacher's
            self.pool_view_strengths = (float(student_strength), 1.0)
        self.targets, self.confidence, self.pseudo_rule = targets, float(confidence), pseudo_rule
        self.align_to_prior, self.alignment_momentum = bool(align_to_prior), alignment_momentum
        self.evaluate_with = evaluate_with
        self.needs_unlabeled = bool(unlabeled)
        self.unlabeled = bool(unlabeled)
        self.backbone = model()
        self.heads = TaskHeads(tasks=tasks, loss_weights=loss_weights, options=_plain(heads))
        self.teacher = nn.ModuleDict()
        # optimizer steps taken (t): the EMA warm-up and the ramp read it; saved, so a resume
        # continues both exactly
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    # ---------------------------------------------------------------- building
    def build(self, spec: DataSpec) -> None:
        self.heads.build(spec, self.backbone.num_features)
        self.label_names = dict(self.heads.label_names)
        unknown = set(self.task_weights) - set(self.heads.tasks)
        if unknown:
            raise ValueError(f"method.consistency_task_weights names {sorted(unknown)}, which "
                             f"this run does not learn (tasks: {self.heads.tasks})")
        for task in self.heads.tasks:
            if task in MULTILABEL:   # the labelled split's positive rates (diagnostics, prior);
                # fitted on every fit, so not saved
                self.register_buffer(f"prior_{task}", torch.full((len(self.label_names[task]),),
                                                                 0.5), persistent=False)
                if self.align_to_prior:   # running mean of the teacher's targets (saved)
                    self.register_buffer(f"target_rate_{task}", torch.full(
                        (len(self.label_names[task]),), -1.0))
        self.teacher = nn.ModuleDict({"backbone": copy.deepcopy(self.backbone),
                                      "heads": copy.deepcopy(self.heads)})
        self.teacher.requires_grad_(False)
        self.teacher.eval()

    def fit_statistics(self, data: FaceData) -> None:
        table = data.train.table
        self.heads.fit_statistics(table)
        for task in self.heads.tasks:
            if task in MULTILABEL:
                setattr(self, f"prior_{task}", label_prior(
                    torch.from_numpy(getattr(table, task)),
                    torch.from_numpy(getattr(table, f"{task}_mask"))))
        if not self.unlabeled and self.consistency_on == "missing" and not _any_missing(
                table, self.heads.tasks):
            raise ValueError(
                f"method {self.name}: nothing for the consistency term to use — "
                "method.unlabeled=false and every training face of dataset "
                f"'{data.name}' carries every label of {self.heads.tasks}. Set "
                "method.unlabeled=true (with a dataset that has an unlabelled pool), or "
                "method.consistency_on=all")
        self.copy_student_to_teacher()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        # the first runs of this method saved the label priors, which are now refitted on
        # every fit and not saved: their checkpoints still load
        for key in [k for k in state_dict if k.startswith(f"{prefix}prior_")]:
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def on_weights_loaded(self, *, source: str) -> None:
        """After ``init_from`` the teacher starts from the loaded student; after a resume (or
        a rebuilt run) it is the checkpoint's own and stays."""
        if source == "init_from":
            self.copy_student_to_teacher()

    def on_fit_start(self, *, total_steps: int) -> None:
        if self.rampup_steps > total_steps:
            raise ValueError(f"method.consistency_rampup_steps={self.rampup_steps} is longer "
                             f"than the run ({total_steps} optimizer steps): the consistency "
                             "weight would never reach its value. Shorten the ramp or train "
                             "longer")

    def train(self, mode: bool = True) -> MeanTeacher:
        super().train(mode)
        self.teacher.eval()     # the teacher only ever predicts (see the module docstring)
        return self

    # -------------------------------------------------------------------- EMA
    def ema_rate(self, t: int) -> float:
        """η_t = min(1 − 1/(t + 1), η) after t optimizer steps."""
        return min(1.0 - 1.0 / (t + 1), self.ema_decay)

    @torch.no_grad()
    def copy_student_to_teacher(self) -> None:
        for name, module in (("backbone", self.backbone), ("heads", self.heads)):
            self.teacher[name].load_state_dict(module.state_dict())

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """θ′ ← η_t θ′ + (1 − η_t) θ with t = ``step`` + 1 optimizer steps taken."""
        self.step.fill_(step + 1)
        rate = self.ema_rate(step + 1)
        teacher = list(self.teacher["backbone"].parameters()) + list(
            self.teacher["heads"].parameters())
        student = list(self.backbone.parameters()) + list(self.heads.parameters())
        torch._foreach_lerp_(teacher, student, 1.0 - rate)
        teacher_buffers = list(self.teacher["backbone"].buffers()) + list(
            self.teacher["heads"].buffers())
        student_buffers = list(self.backbone.buffers()) + list(self.heads.buffers())
        for t_buffer, s_buffer in zip(teacher_buffers, student_buffers, strict=True):
            if self.buffers == "ema" and t_buffer.is_floating_point():
                t_buffer.lerp_(s_buffer, 1.0 - rate)
            else:
                t_buffer.copy_(s_buffer)

    def ramp(self) -> float:
        """w(t) = λ_c exp(−5 (1 − min(t, T)/T)²) after t steps (λ_c when T = 0)."""
        if self.rampup_steps == 0:
            return self.consistency_weight
        phase = 1.0 - min(int(self.step), self.rampup_steps) / self.rampup_steps
        return self.consistency_weight * math.exp(-5.0 * phase * phase)

    # ------------------------------------------------------------------ terms
    def _inputs(self, batch: Batch, view: int) -> tuple[torch.Tensor, ...]:
        """The backbone's inputs of view ``view``: the labelled batch, then the pool's (for
        the teacher, view 1, with ``teacher_view=rendering``: the pool's other rendering)."""
        parts = [model_inputs(self.backbone, batch, views=view)]
        if "unlabeled" in batch:
            pool = batch["unlabeled"]
            if view == 1 and self.teacher_view == "rendering":
                pool = self._other_rendering(pool)
            parts.append(model_inputs(self.backbone, pool, views=view))
        inputs = tuple(torch.cat(values) if len(values) > 1 else values[0]
                       for values in zip(*parts))
        if self.input_noise and self.training:
            inputs = tuple(x + self.input_noise * torch.randn_like(x) if x.is_floating_point()
                           else x for x in inputs)
        return inputs

    def _other_rendering(self, samples: Batch) -> Batch:
        """``samples`` with each input ``k`` (and its views) replaced by ``k_alt``."""
        keys = getattr(self.backbone, "input_keys", ("image",))
        missing = [f"{k}{ALTERNATE}" for k in keys if f"{k}{ALTERNATE}" not in samples]
        if missing:
            raise KeyError(f"method.teacher_view=rendering needs the pool's other renderings "
                           f"{missing}, which these samples lack: use dataset.pool_renderings=2 "
                           "(synthetic benchmark), or teacher_view=augmented")
        swapped = dict(samples)
        for key in keys:
            for suffix in ("", "_views"):
                if f"{key}{ALTERNATE}{suffix}" in samples:
                    swapped[f"{key}{suffix}"] = samples[f"{key}{ALTERNATE}{suffix}"]
        return swapped

    def terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        labelled = len(batch["index"])
        student = self.heads(self.backbone.forward_features(*self._inputs(batch, 0)))
        with torch.no_grad():
            teacher = self.teacher["heads"](
                self.teacher["backbone"].forward_features(*self._inputs(batch, 1)))
        supervised = self.heads.losses({t: v[:labelled] for t, v in student.items()}, batch)
        terms: dict[str, torch.Tensor] = dict(supervised)
        consistency = student[self.heads.tasks[0]].new_zeros(())
        for task in self.heads.tasks:
            if task == "identity":
                continue
            selected = self._consistency_mask(task, batch, labelled)
            term = self._consistency(task, student[task], teacher[task].float(), selected)
            terms[f"consistency_{task}"] = term
            consistency = consistency + self.task_weights.get(task, 1.0) * term
            if task in MULTILABEL:
                terms.update(pool_diagnostics(
                    task, torch.sigmoid(student[task].detach()), torch.sigmoid(teacher[task]),
                    selected, getattr(self, f"prior_{task}"), self.label_names[task]))
        weight = self.ramp()
        terms["consistency"] = consistency
        terms["consistency_weight"] = consistency.new_tensor(weight)
        terms["loss"] = supervised["loss"] + weight * consistency
        return terms

    def _consistency_mask(self, task: str, batch: Batch, labelled: int) -> torch.Tensor:
        """Where ``task`` gets consistency: (N_l + N_u, C) for multi-label tasks, else
        (N_l + N_u,), True on missing labels (every pool sample), or everywhere with
        ``consistency_on=all``."""
        _, known = head_targets(task, batch)
        missing = ~known.bool()
        if "unlabeled" in batch:
            pool = batch["unlabeled"][f"{task}_mask"]
            missing = torch.cat([missing, torch.ones_like(pool, dtype=torch.bool)])
        if self.consistency_on == "all":
            missing = torch.ones_like(missing)
        return missing

    def _consistency(self, task: str, student: torch.Tensor, teacher: torch.Tensor,
                     selected: torch.Tensor) -> torch.Tensor:
        """C_τ over the ``selected`` entries (see the module docstring)."""
        head = self.heads.heads[task]
        if task in MULTILABEL:
            probs = torch.sigmoid(teacher)
            if self.align_to_prior:
                probs = self._aligned(task, teacher, probs, selected)
            if self.targets == "hard":
                hard, confident = self._pseudo_labels(task, probs)
                return masked_bce_with_logits(student, hard, selected & confident)
            if self.forms[task] == "bce":
                return masked_bce_with_logits(student, probs, selected)
            return masked_sigmoid_mse(student, probs, selected)
        if task == "expr":
            probs = torch.softmax(teacher, dim=1)
            if self.targets == "hard":
                top, classes = probs.max(1)
                return masked_cross_entropy(student, classes, selected & (top >= self.confidence))
            if self.forms[task] == "kl":
                return masked_kl_divergence(student, probs, selected)
            return masked_cross_entropy(student, probs.argmax(1), selected)
        predicted, target = head.predict(student), head.predict(teacher)   # va
        if self.forms[task] == "ccc":
            return masked_ccc_loss(predicted, target, selected)
        return masked_mse(predicted, target, selected)

    def _aligned(self, task: str, logits: torch.Tensor, probs: torch.Tensor,
                 selected: torch.Tensor) -> torch.Tensor:
        """Distribution alignment (ReMixMatch's, per label in logit space): the teacher's
        targets shifted so that their running mean rate m_c becomes the labelled prior π_c,

            q̃ = σ(z_t + logit π_c − logit m_c),   m_c ← μ m_c + (1 − μ) mean(σ(z_t) | selected)

        (μ = ``alignment_momentum``; m starts at the first batch's rate; updated in training
        only). Targets cannot then collapse to "absent" on the pool as a whole."""
        rate = getattr(self, f"target_rate_{task}")
        if self.training:
            with torch.no_grad():
                weight = selected.float()
                batch = (probs.detach() * weight).sum(0) / weight.sum(0).clamp_min(1.0)
                seen = weight.sum(0) > 0
                fresh = torch.where(rate < 0, batch, self.alignment_momentum * rate
                                    + (1.0 - self.alignment_momentum) * batch)
                rate.copy_(torch.where(seen, fresh, rate))
        prior = getattr(self, f"prior_{task}").to(probs)
        known = (rate >= 0).to(probs)
        current = rate.clamp(1e-4, 1 - 1e-4).to(probs)
        shift = (torch.logit(prior.clamp(1e-4, 1 - 1e-4)) - torch.logit(current)) * known
        return torch.sigmoid(logits + shift)

    def _pseudo_labels(self, task: str, probs: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard multi-label targets (N, C) and where they are confident enough to use."""
        if self.pseudo_rule == "prior":
            prior = getattr(self, f"prior_{task}").to(probs)
            # per label, the teacher probability above which the batch's share is the prior
            thresholds = torch.stack([torch.quantile(probs[:, c], 1.0 - float(prior[c]))
                                      for c in range(probs.shape[1])])
            return (probs >= thresholds).float(), torch.ones_like(probs, dtype=torch.bool)
        positive = probs >= self.confidence
        return positive.float(), positive | (probs <= 1.0 - self.confidence)

    # ------------------------------------------------------------- prediction
    def outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``{task: raw head outputs (N, ·)}`` of the network that predicts (``evaluate_with``):
        what a distillation student learns from."""
        if self.evaluate_with == "teacher":
            backbone, heads = self.teacher["backbone"], self.teacher["heads"]
        else:
            backbone, heads = self.backbone, self.heads
        return heads(backbone.forward_features(*model_inputs(backbone, batch)))

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        network = self.teacher["heads"] if self.evaluate_with == "teacher" else self.heads
        return network.predict(self.outputs(batch))

    def use_network(self, name: str) -> None:
        if name not in self.networks:
            super().use_network(name)
        self.evaluate_with = name

    def parts(self) -> dict[str, list[str]]:
        """``backbone`` and ``heads`` are the student's (what ``init_from`` loads into, and
        what another run takes from this one); the teacher follows them."""
        return {"backbone": ["backbone"], "heads": ["heads"], "teacher": ["teacher"]}


def _any_missing(table: Any, tasks: list[str]) -> bool:
    """Whether some training face lacks a label of one of ``tasks``."""
    for task in tasks:
        if task == "identity":
            continue
        mask = getattr(table, f"{task}_mask", None)
        if mask is not None and not mask.all():
            return True
    return False
