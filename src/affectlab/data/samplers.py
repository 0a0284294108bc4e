"""Deterministic, resumable index samplers.

Each sampler is a pure function of (seed, position): resuming at a given epoch/step replays
exactly the indices an uninterrupted run would have drawn, with no sampler state to save.
Under torchrun each rank takes every ``world_size``-th index of the same permutation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from affectlab.data.contract import LabelTable
from affectlab.losses import va_bin_indices


def _permutation(n: int, seed: int, cycle: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + cycle)
    return torch.randperm(n, generator=generator)


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch, optionally starting part-way (for mid-epoch resume).

    Subclasses change what an epoch holds (:meth:`epoch_indices`, :meth:`epoch_length`): the
    sharding, the resume position and the dropped last batch stay here, so every sampler is a
    pure function of (seed, epoch, position) and shards the same way under torchrun.

    Args:
        num_samples: dataset length.
        batch_size: per-rank batch size; incomplete final batches are dropped.
        seed: base seed; epoch e uses permutation(seed, e).
        rank, world_size: data-parallel sharding.
    """

    def __init__(self, num_samples: int, *, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def epoch_length(self) -> int:
        """Indices drawn per epoch (over all ranks)."""
        return self.num_samples

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """The dataset rows of epoch ``epoch``, in order (over all ranks)."""
        return _permutation(self.num_samples, self.seed, epoch)

    def summary(self) -> dict[str, Any]:
        """What the sampler did to the label distribution, for the run's log (default: nothing)."""
        return {}

    def batches_per_epoch(self) -> int:
        return self.epoch_length() // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """Next iteration yields epoch ``epoch`` from batch ``start_batch`` on."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_indices(self.epoch)
        per_rank = order[self.rank::self.world_size][: self.batches_per_epoch() * self.batch_size]
        yield from per_rank[self.start_batch * self.batch_size:].tolist()


def _task_labels(table: LabelTable, task: str) -> tuple[np.ndarray, np.ndarray]:
    if task not in ("au", "attr", "expr"):
        raise ValueError(f"sampler.task={task!r}: balance au, attr (multi-label) or expr")
    values, mask = getattr(table, task), getattr(table, f"{task}_mask")
    if not mask.any():
        raise ValueError(f"sampler.task={task}: the training split has no '{task}' labels; "
                         "balance a task the dataset labels")
    return values, mask


def imbalance_ratios(labels: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Charte et al. (2015)'s imbalance measures of a multi-label set.

        IRLbl(c) = max_j n_j / n_c,     MeanIR = mean_c IRLbl(c)

    with n_c the positives of label c among its valid entries. Labels without a positive are
    left out (IRLbl undefined: NaN in the returned array; not counted in MeanIR).

    Args: labels (N, C) in {0, 1}; mask (N, C) bool. Returns (IRLbl (C,), MeanIR).
    """
    positives = ((labels > 0.5) & mask).sum(0).astype(np.float64)
    present = positives > 0
    irlbl = np.full(labels.shape[1], np.nan)
    if present.any():
        irlbl[present] = positives[present].max() / positives[present]
    mean_ir = float(np.nanmean(irlbl)) if present.any() else 1.0
    return irlbl, mean_ir


def ml_ros_clones(labels: np.ndarray, mask: np.ndarray, *, percentage: float,
                  rng: np.random.Generator) -> np.ndarray:
    """ML-ROS (Charte et al., 2015): rows to clone so that minority labels gain positives.

    MeanIR is measured once on the original set; the minority labels are those with
    IRLbl > MeanIR, each with its bag of positive rows. Round-robin over the bags, one random
    row of the bag is cloned (every label of the clone counts again, the majority's too) and a
    bag leaves once its label's IRLbl, re-measured on the enlarged set, is ≤ MeanIR, until
    ⌊N · percentage / 100⌋ clones are made or no bag is left.

    Args: labels (N, C) in {0, 1}; mask (N, C) bool; percentage: the clone budget in % of N;
    rng: the draw. Returns int64 (K,) rows of the clones (each also stays once as original).
    """
    positive = (labels > 0.5) & mask
    counts = positive.sum(0).astype(np.float64)
    irlbl, mean_ir = imbalance_ratios(labels, mask)
    bags = {c: np.flatnonzero(positive[:, c]) for c in range(labels.shape[1])
            if counts[c] > 0 and irlbl[c] > mean_ir}
    budget = int(len(labels) * percentage / 100)
    clones: list[int] = []
    while budget > 0 and bags:
        for c in list(bags):
            row = int(rng.choice(bags[c]))
            clones.append(row)
            counts += positive[row]
            budget -= 1
            if counts[counts > 0].max() / counts[c] <= mean_ir:
                del bags[c]
            if budget == 0:
                break
    return np.asarray(clones, dtype=np.int64)


class MLROSSampler(EpochSampler):
    """Epochs over the training split enlarged by ML-ROS clones (:func:`ml_ros_clones`).

    The clones are drawn once per run from ``seed``; an epoch is a permutation of the
    N + K rows (originals and clones), so every original sample is still seen once per epoch
    and minority-label samples more often. IRLbl and MeanIR before and after are in
    :meth:`summary` (logged and written to ``run_info.json``).

    Args:
        table: the training split's labels.
        task: the multi-label task to balance (``au`` or ``attr``).
        percentage: clone budget in % of the training split (Charte et al. try 10–25).
    """

    def __init__(self, table: LabelTable, *, task: str = "au", percentage: float = 25.0,
                 batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if task == "expr":
            raise ValueError("sampler=ml_ros balances a multi-label task (au, attr); use "
                             "sampler=class_balanced for expressions")
        if not percentage > 0:
            raise ValueError(f"sampler.percentage={percentage}: must be > 0")
        super().__init__(len(table), batch_size=batch_size, seed=seed, rank=rank,
                         world_size=world_size)
        labels, mask = _task_labels(table, task)
        self.task = task
        self.clones = ml_ros_clones(labels, mask, percentage=percentage,
                                    rng=np.random.default_rng([seed, 2]))
        self.rows = torch.from_numpy(np.concatenate([np.arange(len(table)), self.clones]))
        before = imbalance_ratios(labels, mask)
        rows = self.rows.numpy()
        after = imbalance_ratios(labels[rows], mask[rows])
        self._summary = {
            "sampler": "ml_ros", "task": task, "percentage": percentage,
            "clones": int(len(self.clones)), "mean_ir_before": round(before[1], 4),
            "mean_ir_after": round(after[1], 4),
            "irlbl_before": [None if np.isnan(v) else round(float(v), 4) for v in before[0]],
            "irlbl_after": [None if np.isnan(v) else round(float(v), 4) for v in after[0]],
        }

    def epoch_length(self) -> int:
        return len(self.rows)

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        return self.rows[_permutation(len(self.rows), self.seed, epoch)]

    def summary(self) -> dict[str, Any]:
        return dict(self._summary)


def balancing_weights(table: LabelTable, task: str) -> np.ndarray:
    """Per-sample weights that equalise a task's labels in a weighted draw, (N,) float64.

    - ``expr``: w_n = 1 / n_{y_n} (every class drawn equally often);
    - ``au`` / ``attr``: w_n = max over the labels present in sample n of 1 / n_c; a sample
      with no present label gets 1 / (number of such samples).

    Samples without a label for ``task`` (unknown expression, every label masked) keep the
    mean weight of the others, so a multi-task set keeps its share of them.
    """
    values, mask = _task_labels(table, task)
    weights = np.zeros(len(table))
    if task == "expr":
        counts = np.bincount(values[mask], minlength=int(values[mask].max()) + 1)
        weights[mask] = 1.0 / counts[values[mask]]
        labelled = mask
    else:
        present = (values > 0.5) & mask
        counts = present.sum(0)
        inverse = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
        weights = (present * inverse).max(1)
        labelled = mask.any(1)
        none = labelled & ~present.any(1)
        if none.any():
            weights[none] = 1.0 / none.sum()
    if (~labelled).any():
        weights[~labelled] = weights[labelled].mean()
    return weights


class WeightedSampler(EpochSampler):
    """Epochs of N draws with replacement, sample n drawn with probability ∝ w_n
    (:func:`balancing_weights` of ``task``). ``sampler=weighted`` balances AUs,
    ``sampler=class_balanced`` expressions (every class equally often, Deng et al.)."""

    def __init__(self, table: LabelTable, *, task: str = "au", batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__(len(table), batch_size=batch_size, seed=seed, rank=rank,
                         world_size=world_size)
        self.task = task
        self.weights = torch.from_numpy(balancing_weights(table, task))

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 104_729)
        return torch.multinomial(self.weights, self.num_samples, replacement=True,
                                 generator=generator)

    def summary(self) -> dict[str, Any]:
        return {"sampler": "weighted", "task": self.task}


#: what :class:`PerTaskSampler` can do to each task's share, the first being the default
TASK_BALANCING = {"au": ("ml_ros", "none"), "attr": ("ml_ros", "none"),
                  "expr": ("classes", "none"), "va": ("bins", "none")}


def va_cell_weights(values: np.ndarray, bins: int) -> np.ndarray:
    """Per-sample weights 1 / n_cell over the B × B cells of (valence, arousal) in [−1, 1]²
    (B equal bins a dimension; the released code of Deng et al. balances VA so): every
    occupied cell drawn equally often. values (N, 2) → (N,)."""
    index = va_bin_indices(torch.from_numpy(np.asarray(values, dtype=np.float32)), bins).numpy()
    cells = index[:, 0] * bins + index[:, 1]          # the heads' bins (losses.va_bin_indices)
    counts = np.bincount(cells, minlength=bins * bins)
    return 1.0 / counts[cells]


class PerTaskSampler(EpochSampler):
    """Batches made of each task's labelled samples in fixed proportions, each task balanced in
    its own way (Deng et al., 2020: ML-ROS for AUs, every expression class and every VA bin
    equally likely).

    Every batch of B samples (B · world_size under torchrun, then sharded) holds round(p_τ B)
    samples labelled for task τ (largest remainders make the counts sum to B), drawn from τ's
    own stream:

    - ``ml_ros`` (au/attr): permutations of τ's labelled rows plus ML-ROS clones
      (:func:`ml_ros_clones` on those rows, ``percentage`` of them);
    - ``classes`` (expr): draws with replacement, P(n) ∝ 1 / n_{y_n} (every class equally);
    - ``bins`` (va): draws with replacement, P(n) ∝ 1 / n_cell of its (valence, arousal) cell
      of ``va_bins`` × ``va_bins`` (:func:`va_cell_weights`);
    - ``none``: permutations of τ's labelled rows.

    A sample labelled for several tasks belongs to each of their streams. An epoch has
    ⌊N / B⌋ batches (N: the training split), as the uniform sampler's. Deterministic in (seed,
    epoch): a resume replays the same batches.

    Args:
        table: the training split's labels.
        proportions: p_τ per task (normalised to sum 1), e.g. ``{au: 0.5, expr: 0.25, va:
            0.25}``; None: equal shares of the tasks the split labels.
        balance: per task ``none`` or its rule above (default: the rule).
        percentage: ML-ROS clone budget, % of the task's labelled rows.
        va_bins: bins per dimension of the VA cells.
    """

    def __init__(self, table: LabelTable, *, proportions: dict[str, float] | None = None,
                 balance: dict[str, str] | None = None, percentage: float = 25.0,
                 va_bins: int = 20, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__(len(table), batch_size=batch_size, seed=seed, rank=rank,
                         world_size=world_size)
        labelled = {task: _labelled_rows(table, task) for task in TASK_BALANCING}
        labelled = {task: rows for task, rows in labelled.items() if rows.size}
        shares = dict(proportions) if proportions else {task: 1.0 for task in labelled}
        for task, share in shares.items():
            if task not in TASK_BALANCING:
                raise ValueError(f"sampler.proportions.{task}: tasks are {list(TASK_BALANCING)}")
            if task not in labelled:
                raise ValueError(f"sampler.proportions.{task}: the training split has no "
                                 f"'{task}' labels (it labels {sorted(labelled)})")
            if not float(share) >= 0:
                raise ValueError(f"sampler.proportions.{task}={share}: a share ≥ 0")
        total = sum(float(v) for v in shares.values())
        if not total > 0:
            raise ValueError("sampler.proportions: every share is 0; give one task a share")
        self.proportions = {task: float(v) / total for task, v in shares.items() if v}
        rules = {task: TASK_BALANCING[task][0] for task in self.proportions}
        for task, rule in dict(balance or {}).items():
            if task not in TASK_BALANCING or rule not in TASK_BALANCING[task]:
                raise ValueError(f"sampler.balance.{task}={rule!r}: per task "
                                 f"{ {t: list(r) for t, r in TASK_BALANCING.items()} }")
            if task in rules:
                rules[task] = rule
        if not percentage > 0:
            raise ValueError(f"sampler.percentage={percentage}: must be > 0")
        if va_bins < 1:
            raise ValueError(f"sampler.va_bins={va_bins}: at least 1")
        self.rules = rules
        self.streams: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._summary: dict[str, Any] = {"sampler": "per_task",
                                         "proportions": dict(self.proportions),
                                         "balance": dict(rules)}
        for k, (task, rule) in enumerate(rules.items()):
            rows = labelled[task]
            weights = None
            if rule == "ml_ros":
                values, mask = getattr(table, task)[rows], getattr(table, f"{task}_mask")[rows]
                clones = ml_ros_clones(values, mask, percentage=percentage,
                                       rng=np.random.default_rng([seed, 3, k]))
                rows = np.concatenate([rows, rows[clones]])
                self._summary[f"{task}_clones"] = int(len(clones))
            elif rule == "classes":
                counts = np.bincount(table.expr[rows])
                weights = torch.from_numpy(1.0 / counts[table.expr[rows]])
            elif rule == "bins":
                weights = torch.from_numpy(va_cell_weights(table.va[rows], va_bins))
            self.streams[task] = (torch.from_numpy(rows.astype(np.int64)), weights)

    def batch_counts(self, size: int) -> dict[str, int]:
        """Samples of each task in a batch of ``size``: round(p_τ size), largest remainders
        first so that they sum to ``size``."""
        exact = {task: p * size for task, p in self.proportions.items()}
        counts = {task: int(np.floor(v)) for task, v in exact.items()}
        by_remainder = sorted(exact, key=lambda t: (counts[t] - exact[t], t))
        for task in by_remainder[: size - sum(counts.values())]:
            counts[task] += 1
        return counts

    def _stream(self, k: int, task: str, epoch: int, length: int) -> torch.Tensor:
        rows, weights = self.streams[task]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 101 + k + 7)
        if weights is not None:
            return rows[torch.multinomial(weights, length, replacement=True,
                                          generator=generator)]
        cycles = -(-length // len(rows))
        order = torch.cat([torch.randperm(len(rows), generator=generator)
                           for _ in range(cycles)])
        return rows[order[:length]]

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        size = self.batch_size * self.world_size
        batches = self.num_samples // size
        counts = self.batch_counts(size)
        parts = {task: self._stream(k, task, epoch, counts[task] * batches).view(batches, -1)
                 for k, task in enumerate(counts) if counts[task]}
        order = torch.cat([torch.cat([parts[t][b] for t in parts]) for b in range(batches)]) \
            if batches else torch.zeros(0, dtype=torch.int64)
        # within each batch the tasks are interleaved at random, so that every rank's shard
        # holds each task's share
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 31)
        shuffled = order.view(batches, size)[:, torch.randperm(size, generator=generator)] \
            if batches else order
        return shuffled.reshape(-1)

    def summary(self) -> dict[str, Any]:
        return dict(self._summary)


def _labelled_rows(table: LabelTable, task: str) -> np.ndarray:
    """Rows of the split that carry a label of ``task`` (any of a multi-label task's)."""
    mask = getattr(table, f"{task}_mask")
    present = mask.any(1) if mask.ndim == 2 else mask
    return np.flatnonzero(present)


def uniform_epochs(table: LabelTable, *, batch_size: int, seed: int, rank: int = 0,
                   world_size: int = 1) -> EpochSampler:
    """``sampler=epoch`` (default): a permutation of the training split per epoch."""
    return EpochSampler(len(table), batch_size=batch_size, seed=seed, rank=rank,
                        world_size=world_size)


class InfiniteSampler(Sampler[int]):
    """Endless stream over successive permutations, starting at stream position ``start``.

    Used for the unlabelled pool, which is cycled alongside the labelled epochs: the pool batch
    at global step s is positions [s·B, (s+1)·B) of this stream.
    """

    def __init__(self, num_samples: int, *, seed: int, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if num_samples < 1:
            raise ValueError("InfiniteSampler needs a non-empty dataset")
        self.num_samples = num_samples
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        per_cycle = len(range(self.rank, self.num_samples, self.world_size))
        cycle, offset = divmod(self.start, per_cycle)
        while True:
            order = _permutation(self.num_samples, self.seed + 7919,
                                 cycle)[self.rank::self.world_size]
            yield from order[offset:].tolist()
            cycle, offset = cycle + 1, 0
