"""Deterministic, resumable index samplers.

Each sampler is a pure function of (seed, position): resuming at a given epoch/step replays
exactly the indices an uninterrupted run would have drawn, with no sampler state to save.
Under torchrun each rank takes every ``world_size``-th index of the same permutation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def _permutation(n: int, seed: int, cycle: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + cycle)
    return torch.randperm(n, generator=generator)


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch, optionally starting part-way (for mid-epoch resume).

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

    def batches_per_epoch(self) -> int:
        return self.num_samples // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """Next iteration yields epoch ``epoch`` from batch ``start_batch`` on."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        order = _permutation(self.num_samples, self.seed, self.epoch)
        per_rank = order[self.rank::self.world_size][: self.batches_per_epoch() * self.batch_size]
        yield from per_rank[self.start_batch * self.batch_size:].tolist()


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
            order = _permutation(self.num_samples, self.seed + 7919, cycle)[self.rank::self.world_size]
            yield from order[offset:].tolist()
            cycle, offset = cycle + 1, 0
