"""Teacher → student distillation from partial labels (Deng, Chen & Shi, ABAW 2020).

Algorithm 1 of the paper in two ordinary runs: stage 1 trains a teacher on the partial ground
truth (``method=baseline`` with ``loss_weights: {au: 8}`` and VA as bins: their Eq. 4); stage 2
(this method) trains a student — the baseline's network, from its own start — on the ground
truth where a sample has it and on the frozen teacher's outputs everywhere (their Eq. 7). The
students of one teacher are then averaged (``python -m affectlab.evaluate runs=[...]``).
``recipe=distill_synthetic`` chains the three.

Per task τ with head output z (student z_s, teacher z_t), for a batch of N samples:

    L   = Σ_τ κ_τ L_τ                                     (κ_τ = ``loss_weights``, default 1)
    L_τ = λ · f_τ · G_τ  +  D_τ
    G_τ = the head's masked ground-truth loss (mean over the samples, or entries, labelled
          for τ); f_τ = their share of the batch's N (or N·C) entries
    D_τ = Σ_n w_n d_τ(z_s,n, z_t,n) / N,   w_n = 1 − λ where n is labelled for τ, else 1

i.e. the paper's per-sample loss λ L_i + (1 − λ) L_i^d + Σ_{j≠i} L_j^d averaged over the batch
(the released code's per-task batches give the same weights). λ = ``gt_weight`` (0.6). Per task
d_τ is (losses.py):

- ``expr``: KL(softmax(z_t/T) ‖ softmax(z_s/T)), T = ``temperature`` (1.5);
- ``va`` with bins: the same KL per dimension over its B bins, summed over valence and arousal;
  with a regression head: the squared distance of the predictions;
- ``au``/``attr``: the binary KL(σ(z_t) ‖ σ(z_s)) — the released code's BCE against σ(z_t)
  less the teacher's entropy: the same gradient, and 0 when student and teacher agree;

times T² on the KL terms with ``temperature_squared`` (Hinton et al.; the released code has
none). The teacher's AU weight 8 is not carried over (the released code's student weights
every task 1); ``loss_weights`` sets κ_τ if wanted.

The teacher is a trained run (its directory or checkpoint, ``teacher``), loaded without its
data, frozen, in evaluation mode, and never part of this method's state: a student's
checkpoint holds the student only, and a trained student is rebuilt and predicts without its
teacher. It must learn every task the student learns, with the same label names and output
sizes, and read the same inputs normalised the same way (refused otherwise, naming both).
``teacher_outputs``: ``online`` runs the teacher on each training batch (the student's
augmented input); ``cached`` runs it once per training sample on the un-augmented input before
the first step (rebuilt the same way after a resume) and reads the stored outputs by sample.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from affectlab.data.contract import FaceData
from affectlab.losses import (
    binary_distillation_kl,
    distillation_kl,
    weighted_squared_distance,
)
from affectlab.methods.base import Batch, ModelFactory
from affectlab.methods.baseline import Baseline
from affectlab.methods.heads import MULTILABEL, head_targets

log = logging.getLogger(__name__)

TEACHER_OUTPUTS = ("online", "cached")


class Distill(Baseline):
    """A student learning from ground truth and a frozen teacher (see the module docstring).

    Args:
        model: factory of the student's backbone.
        teacher: the teacher's run directory or checkpoint file (``method.teacher``).
        tasks, loss_weights, heads: the student's tasks, κ_τ and head options, as
            :class:`~affectlab.methods.baseline.Baseline`.
        gt_weight: λ in [0, 1], the ground truth's share where a label exists.
        temperature: T > 0 of the softmax distillation terms.
        temperature_squared: multiply those terms by T².
        teacher_outputs: ``online`` or ``cached``.
        name: the method's name in run directories.
    """

    unsupervised_terms = {"distill": "backbone"}

    def __init__(self, *, model: ModelFactory, teacher: str | None = None,
                 tasks: list[str] | None = None, loss_weights: dict[str, float] | None = None,
                 heads: dict[str, dict] | None = None, gt_weight: float = 0.6,
                 temperature: float = 1.5, temperature_squared: bool = False,
                 teacher_outputs: str = "online", name: str = "distill") -> None:
        super().__init__(model=model, tasks=tasks, loss_weights=loss_weights, heads=heads,
                         name=name)
        if not 0.0 <= gt_weight <= 1.0:
            raise ValueError(f"method.gt_weight={gt_weight}: λ, the ground truth's share where "
                             "a label exists, in [0, 1] (paper: 0.6)")
        if not temperature > 0.0:
            raise ValueError(f"method.temperature={temperature}: T > 0 (paper: 1.5)")
        if teacher_outputs not in TEACHER_OUTPUTS:
            raise ValueError(f"method.teacher_outputs={teacher_outputs!r}: use "
                             f"{' or '.join(TEACHER_OUTPUTS)}")
        self.teacher_source = None if teacher is None else str(teacher)
        self.gt_weight, self.temperature = float(gt_weight), float(temperature)
        self.temperature_squared = bool(temperature_squared)
        self.teacher_outputs = teacher_outputs
        # The frozen teacher is held outside the module tree: not trained, not saved, not
        # wrapped by DDP; _apply moves it with the student.
        self._teacher: nn.Module | None = None
        self._cache: dict[str, torch.Tensor] = {}
        self._cache_data: FaceData | None = None

    # ---------------------------------------------------------------- teacher
    def fit_statistics(self, data: FaceData) -> None:
        super().fit_statistics(data)
        self.attach_teacher(load_teacher(self.teacher_source), data)
        self._cache, self._cache_data = {}, data if self.teacher_outputs == "cached" else None

    def attach_teacher(self, teacher: Any, data: FaceData | None = None) -> None:
        """Use ``teacher`` (a :class:`~affectlab.inference.LoadedRun`) after checking that it
        fits this student: every task with the same label names and output size, and (given
        ``data``) the same inputs, normalised the same way."""
        check_teacher(self, teacher, data)
        method = teacher.method
        method.requires_grad_(False)
        method.eval()
        device = next(self.parameters()).device
        # object.__setattr__: nn.Module's would register it as a submodule (saved, trained)
        object.__setattr__(self, "_teacher", method.to(device))

    @property
    def teacher(self) -> nn.Module:
        if self._teacher is None:
            raise RuntimeError("the distillation teacher is not loaded: it is loaded with the "
                               "training data (Method.setup); a student rebuilt from its "
                               "checkpoint predicts without it")
        return self._teacher

    def _apply(self, fn: Any, recurse: bool = True) -> Distill:
        super()._apply(fn, recurse)
        if self._teacher is not None:
            self._teacher._apply(fn, recurse)
        for task, values in self._cache.items():
            self._cache[task] = fn(values)
        return self

    def train(self, mode: bool = True) -> Distill:
        super().train(mode)
        if self._teacher is not None:
            self._teacher.eval()        # the teacher only ever predicts
        return self

    def on_fit_start(self, *, total_steps: int) -> None:
        if self.teacher_outputs == "cached" and self._cache_data is not None:
            self._cache = self.cache_teacher_outputs(self._cache_data)

    @torch.no_grad()
    def cache_teacher_outputs(self, data: FaceData, batch_size: int = 256
                              ) -> dict[str, torch.Tensor]:
        """The teacher's raw outputs on every training sample, un-augmented, ``{task: (N, ·)}``
        on this method's device, row i for the sample of index i (for windows of frames: the
        frame of index i)."""
        started = time.perf_counter()
        device = next(self.parameters()).device
        loader = torch.utils.data.DataLoader(data.train, batch_size=batch_size, shuffle=False)
        rows: dict[str, list[torch.Tensor]] = {}
        indices: list[torch.Tensor] = []
        for batch in loader:
            batch = data.transform({k: v.to(device) for k, v in batch.items()}, train=False)
            indices.append(batch["index"])
            for task, values in self.teacher.outputs(batch).items():
                rows.setdefault(task, []).append(values.float())
        index = torch.cat(indices)         # a sample's (or a window's frames') rows
        cache = {}
        for task, values in rows.items():
            stacked = torch.cat(values)
            cache[task] = stacked.new_zeros((int(index.max()) + 1, *stacked.shape[1:]))
            cache[task][index] = stacked
        log.info("teacher outputs cached for %d training samples in %.1f s", len(data.train),
                 time.perf_counter() - started)
        return cache

    @torch.no_grad()
    def teacher_logits(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The teacher's raw outputs for ``batch`` (``{task: (N, ·)}``): stored ones by sample
        index (``cached``, in training) or computed now."""
        if self._cache and self.training:
            index = batch["index"].to(next(iter(self._cache.values())).device)
            return {task: values[index] for task, values in self._cache.items()}
        return {task: values.float() for task, values in self.teacher.outputs(batch).items()}

    # ------------------------------------------------------------------ terms
    def terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        student = self.outputs(batch)
        teacher = self.teacher_logits(batch)
        terms: dict[str, torch.Tensor] = {}
        total = distilled = student[self.heads.tasks[0]].new_zeros((), dtype=torch.float32)
        for task, head in self.heads.heads.items():
            targets, known = head_targets(task, batch)
            known = known.bool()
            ground_truth = head.loss(student[task], targets, known)
            terms[task] = ground_truth
            term = self.gt_weight * known.float().mean() * ground_truth
            if task != "identity":
                weights = torch.where(known, 1.0 - self.gt_weight, 1.0)
                distill = self.distillation(task, student[task], teacher[task], weights)
                terms[f"distill_{task}"] = distill
                distilled = distilled + distill
                term = term + distill
            total = total + self.heads.loss_weights.get(task, 1.0) * term
        terms["distill"] = distilled
        terms["loss"] = total
        return terms

    def distillation(self, task: str, student: torch.Tensor, teacher: torch.Tensor,
                     weights: torch.Tensor) -> torch.Tensor:
        """D_τ of one task (see the module docstring); ``weights`` (N,) or (N, C)."""
        if task in MULTILABEL:
            return binary_distillation_kl(student, teacher, weights)
        head = self.heads.heads[task]
        if task == "va" and head.form == "regression":
            return weighted_squared_distance(head.predict(student), head.predict(teacher),
                                             weights)
        if task == "va":           # (N, 2B) → (N, 2, B): a softmax per dimension
            student = student.view(student.shape[0], 2, head.bins)
            teacher = teacher.view(teacher.shape[0], 2, head.bins)
        return distillation_kl(student, teacher, weights, temperature=self.temperature,
                               squared=self.temperature_squared)


def load_teacher(source: str | None) -> Any:
    """The teacher run of ``method.teacher``, loaded from its checkpoint alone; a missing one
    is one message saying how to make it."""
    from affectlab.engine.checkpoint import CheckpointError
    from affectlab.inference import load_run

    make = ("train it first: python train.py method=baseline 'method.loss_weights={au: 8.0}' "
            "method.heads.va.form=bins <the student's dataset options>, or run the recipe's "
            "teacher stage: python -m affectlab.recipe recipe=distill_synthetic "
            "stages=[teacher]")
    if source is None:
        raise ValueError(f"method=distill needs a teacher: method.teacher=<its run directory>; "
                         f"{make}")
    if not Path(source).exists():
        raise ValueError(f"method.teacher={source}: no such run directory or checkpoint; {make}")
    try:
        return load_run(source)
    except CheckpointError as err:
        raise ValueError(f"method.teacher={source}: {err}") from None


def check_teacher(student: Distill, teacher: Any, data: FaceData | None) -> None:
    """Refuse, naming both sides, a teacher that cannot teach ``student``."""
    method, where = teacher.method, f"method.teacher={teacher.run_dir}"
    if not callable(getattr(method, "outputs", None)):
        raise ValueError(f"{where} is a {type(method).__name__} run, which gives no raw task "
                         "outputs to distil; use a baseline, mean-teacher or distill run")
    for task in student.heads.tasks:
        if task == "identity":
            continue
        if task not in method.label_names:
            raise ValueError(f"{where} learned {sorted(method.label_names)}, not '{task}', "
                             f"which the student learns; train the teacher on every task of "
                             f"the student (method.tasks), or leave '{task}' out of the student")
        if list(method.label_names[task]) != list(student.label_names[task]):
            raise ValueError(f"{where} names its '{task}' labels {method.label_names[task]}, "
                             f"the student's data {student.label_names[task]}: the label spaces "
                             "must be the same, in the same order")
        ours = student.heads.heads[task].linear.out_features
        theirs = method.heads.heads[task].linear.out_features if hasattr(method, "heads") \
            else ours
        if ours != theirs:
            raise ValueError(f"{where}: its '{task}' head has {theirs} outputs, the student's "
                             f"{ours} — give the student the teacher's head options (e.g. "
                             f"method.heads.va.form and bins as the teacher's)")
    if data is None:
        return
    inputs = teacher.inputs
    missing = [k for k in (inputs.get("keys") or {}) if k not in data.input_keys]
    if missing:
        raise ValueError(f"{where} reads inputs {missing}, which dataset '{data.name}' does not "
                         f"provide (it has {list(data.input_keys)})")
    theirs_norm = (list(inputs["mean"]), list(inputs["std"]))
    ours_norm = (list(data.mean), list(data.std))
    if [[round(v, 6) for v in x] for x in theirs_norm] != \
            [[round(float(v), 6) for v in x] for x in ours_norm]:
        raise ValueError(f"{where} was trained on inputs normalised with mean/std "
                         f"{theirs_norm}, the student's data uses {ours_norm}: the teacher "
                         "would see other inputs than it learned on; use the same dataset "
                         "normalisation for both")
    rules = getattr(data, "rules", None)
    ours_rules = rules.to_dict() if hasattr(rules, "to_dict") else None
    if inputs.get("rules") != ours_rules:
        raise ValueError(f"{where} was trained with other clip/spectrogram settings "
                         f"({inputs.get('rules')}) than the student's data ({ours_rules}); "
                         "use the same dataset.clip and dataset.audio options for both")


__all__ = ["Distill", "load_teacher", "check_teacher", "TEACHER_OUTPUTS"]
