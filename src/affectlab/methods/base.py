"""The interface between a training method and the shared trainer.

A method is built in two steps, so that a trained one can be rebuilt from its checkpoint
alone (:func:`affectlab.load_run`, no dataset needed)::

    method.build(spec)                       # networks sized from a DataSpec: task and label
                                             # names, input keys and shapes (a checkpoint
                                             # stores it)
    method.fit_statistics(data)              # what needs the training data: label
                                             # frequencies, MLCR's adjacency (kept in buffers,
                                             # so a checkpoint restores them)

``method.setup(data)`` does both (``prepare`` once). Then, all calls made by the trainer::

    method.on_weights_loaded(source=...)     # after init_from or resume loaded weights
    method.on_fit_start(total_steps=...)     # the run's length, before the first step
    for each step:
        losses = method(batch)               # forward() = terms(): {"loss": scalar, **named}
        losses["loss"].backward(); clip; optimizer.step(); scheduler.step()
        method.after_optimizer_step(step)    # e.g. an EMA teacher update
    per evaluation:
        outputs = method.predict(batch)      # {"au": probabilities (N, C), "va": (N, 2), ...}

``batch`` is a sample dict of :mod:`affectlab.data.contract` with its inputs already
transformed by the data (``FaceData.transform``: augmented and normalised), plus
``batch["unlabeled"]`` (a second sample dict drawn from the unlabelled pool) when
``needs_unlabeled`` is True, and ``batch["<key>_views"]`` (k independently augmented copies of
input ``key``) when ``augmented_views`` = k > 1. A method reads a network's inputs through
:func:`model_inputs` (the keys the model declares), never a literal key, so clips, masks and
audio reach it as images do. The trainer logs every entry of the returned dict under
``train/<name>``, so every term a method wants to see is a named entry.

A method never touches devices, precision, optimizers or checkpoints: the trainer owns them.
After training the trainer stores per-label thresholds in ``method.thresholds`` (saved with
the checkpoint), and ``method.label_names`` (set in ``build``) names what each task predicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from affectlab.data.contract import DataSpec, FaceData

Batch = dict[str, Any]
ModelFactory = Callable[[], nn.Module]


class Method(nn.Module):
    """Base class of every training recipe (see the module docstring for the call order)."""

    needs_unlabeled: ClassVar[bool] = False
    # True when some parameters sit idle in some steps (DDP must then look for them).
    has_idle_parameters: ClassVar[bool] = False
    # Independently augmented copies of each training input the method wants; with k > 1 the
    # trainer adds batch["<key>_views"] (k, N, ...) (and the same in batch["unlabeled"]).
    augmented_views: ClassVar[int] = 1
    # How strongly each of the pool batch's views is augmented, as multiples of the data's
    # augmentation ranges (None: 1 each), e.g. (3.0, 1.0) for weak → strong consistency.
    pool_view_strengths: tuple[float, ...] | None = None
    # The terms that learn without labels, each with the module (a state-dict prefix) its
    # gradient must reach, e.g. {"co_regularization": "views"}; the method contract test
    # checks that each is non-zero and moves those weights.
    unsupervised_terms: ClassVar[dict[str, str]] = {}

    # The networks a trained method can predict with, the first being its default (a mean
    # teacher: ("teacher", "student")); empty: one. See use_network.
    networks: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        #: what each predicted task's outputs are, ``{task: label names}`` (set by build)
        self.label_names: dict[str, list[str]] = {}
        #: per-label decision thresholds of the multi-label tasks, ``{task: (C,)}`` (set after
        #: training by the trainer's threshold search; absent: 0.5)
        self.thresholds: dict[str, list[float]] = {}
        #: the DataSpec the networks were built from (saved with every checkpoint)
        self.spec: DataSpec | None = None
        self.is_set_up = False

    @property
    def input_keys(self) -> tuple[str, ...]:
        """The input keys this method's networks read (see :func:`model_inputs`)."""
        keys: list[str] = []
        readers: list[str] = []        # the outermost networks that declare their inputs
        for name, module in self.named_modules():
            if module is self or not hasattr(module, "input_keys") \
                    or any(name.startswith(f"{outer}.") for outer in readers):
                continue               # a network inside another (TSAV's streams) reads its part
            readers.append(name)
            keys += [key for key in module.input_keys if key not in keys]
        return tuple(keys) or ("image",)

    def build(self, spec: DataSpec) -> None:
        """Build the networks that depend on the data's tasks, labels and inputs (heads sized
        by the label set). Called once, before any weights are loaded."""

    def fit_statistics(self, data: FaceData) -> None:
        """Fit what needs the training data itself (label frequencies, co-occurrences); kept
        in buffers, so a checkpoint restores them without the data."""

    def setup(self, data: FaceData) -> None:
        """:meth:`build` from ``data.spec()``, then :meth:`fit_statistics` on ``data``."""
        spec = data.spec()
        check_inputs(self, spec)
        self.build(spec)
        self.spec = spec
        self.fit_statistics(data)
        self.is_set_up = True

    def prepare(self, data: FaceData) -> None:
        """:meth:`setup` once (a method set up before, e.g. to load weights into it, is kept)."""
        if not self.is_set_up:
            self.setup(data)

    def build_from_spec(self, spec: DataSpec) -> None:
        """:meth:`build` from a saved spec, for weights (and statistics) loaded next."""
        self.build(spec)
        self.spec = spec
        self.is_set_up = True

    def on_weights_loaded(self, *, source: str) -> None:
        """Called after weights were loaded into the set-up method: ``source`` is ``init_from``
        (another run's weights for some parts), ``resume`` (this run's own checkpoint, every
        tensor restored) or ``checkpoint`` (a trained run rebuilt to predict). A method that
        keeps a copy of its networks (an EMA or frozen teacher) refreshes it here."""

    def on_fit_start(self, *, total_steps: int) -> None:
        """Called by the trainer before the first step with the run's length in optimizer
        steps (schedules of loss weights check theirs against it)."""

    def terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every loss term of one batch, undetached: the scalar ``loss`` that is
        backpropagated and each named term it is made of."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """:meth:`terms`: the trainer backpropagates ``loss`` and logs the values of all.

        The terms are returned as they are, not detached: under ``torch.compile`` a detached
        output that aliases the loss (a one-task loss λ·L with λ = 1) left the loss without a
        gradient (torch 2.14), and the logger reads detached values anyway."""
        return self.terms(batch)

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Outputs of the deployed network per task, e.g. ``{"au": probs (N, C)}``."""
        raise NotImplementedError

    def use_network(self, name: str) -> None:
        """Predict with network ``name`` of :attr:`networks` from now on (``python -m
        affectlab.evaluate network=student`` on a mean-teacher run)."""
        raise ValueError(f"{type(self).__name__} predicts with one network; network={name!r} "
                         "names none of its own" if not self.networks else
                         f"network={name!r}: {type(self).__name__} predicts with "
                         f"{list(self.networks)}")

    def parts(self) -> dict[str, list[str]]:
        """Named groups of state-dict prefixes, for starting from another run (``init_from``).

        ``backbone`` lists the feature extractors (one, or one per view); a run's backbones
        are loaded into this method's backbones. Default: every top-level module is its own
        part, and ``backbone`` is the module of that name when there is one (or, for a
        backbone naming a ``pretrained_part``, that module inside it: a CNN-RNN's frame CNN).
        """
        names = [name for name, _ in self.named_children()]
        parts = {name: [name] for name in names}
        inner = getattr(getattr(self, "backbone", None), "pretrained_part", None)
        if inner:       # a model wrapping a pretrained network (a CNN-RNN's frame CNN)
            parts["backbone"] = [f"backbone.{inner}"]
        return parts

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer; default: every trainable parameter, one group."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def after_optimizer_step(self, step: int) -> None:
        """Hook after each optimizer step (EMA teachers, schedules of loss weights)."""


def model_inputs(model: nn.Module, batch: Mapping[str, Any], *,
                 views: int | None = None) -> tuple[Any, ...]:
    """The inputs ``model`` reads from ``batch``, in the order of its ``input_keys``
    (default ``("image",)``): what ``model.forward_features(*inputs)`` takes. With ``views``
    = k, input k of each key's augmented copies (``batch["<key>_views"][k]``) instead."""
    keys = getattr(model, "input_keys", ("image",))
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{type(model).__name__} reads inputs {list(keys)}, but the batch has no "
                       f"{missing} (it has {sorted(k for k in batch if k != 'unlabeled')}): "
                       "choose a dataset that provides them, or a model that reads what it has")
    if views is None:
        return tuple(batch[k] for k in keys)
    return tuple(batch[f"{k}_views"][views] if f"{k}_views" in batch else batch[k] for k in keys)


def check_inputs(method: nn.Module, spec: DataSpec) -> None:
    """Refuse, naming both, a method whose models read an input key the data does not carry."""
    wanted = getattr(method, "input_keys", ("image",))
    missing = [k for k in wanted if k not in spec.inputs]
    if missing:
        raise ValueError(f"the model reads input(s) {missing}, which dataset '{spec.name}' does "
                         f"not provide (its samples carry {sorted(spec.inputs)}): choose a model "
                         "that reads those inputs, or a dataset with these")
