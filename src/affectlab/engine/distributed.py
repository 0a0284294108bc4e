"""What the processes of a torchrun job agree on: sharded evaluation gathered back, the main
process's view of its files, stop requests, the best weights."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def start_process_group(device: torch.device) -> None:
    """The torchrun job's default process group (NCCL on CUDA, else gloo), this process's GPU
    selected; ``dist.destroy_process_group()`` ends it, its threads joined.

    ``torch.distributed.nn`` is imported before the group exists, on purpose: it binds
    ``group=group.WORLD`` as default arguments when it is imported, and DDP's constructor
    imports it (through torch._dynamo). Imported after ``init_process_group``, it holds the
    default group for good, ``destroy_process_group()`` cannot destroy it, and the group's gloo
    worker threads still run when the interpreter finalizes. A worker late in dropping its last
    collective (descheduled on a loaded machine) then frees tensors Python created, must take
    the GIL for that, and is ended by the finalizing interpreter inside a noexcept destructor:
    "terminate called without an active exception", SIGABRT, in one run of many. Destroyed for
    real, the group joins its threads with the GIL released, before Python shuts down."""
    importlib.import_module("torch.distributed.nn")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)


def shard_rows(num_rows: int, rank: int, world_size: int) -> list[int] | None:
    """This process's strided rows of a split (rank, rank + W, ...); None in one process."""
    return None if world_size == 1 else list(range(rank, num_rows, world_size))


def main_says(flag: bool, device: torch.device, world_size: int) -> bool:
    """The main process's ``flag``, on every process (what it sees of its own files)."""
    if world_size == 1:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def largest(value: int, device: torch.device) -> int:
    """The largest ``value`` over the processes (e.g. a signal number, 0 for none)."""
    flag = torch.tensor([value], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def broadcast_module(module: torch.nn.Module) -> None:
    """Every parameter and buffer of ``module`` from the main process, in place."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def gather_shards(shards: tuple[dict[str, np.ndarray], ...], num_rows: int,
                  world_size: int) -> tuple[dict[str, np.ndarray], ...]:
    """Every process's strided shard (rows rank, rank + W, ...) of some row-stacked arrays
    gathered into the whole arrays in row order, on every process: ``shards`` is this
    process's tuple of ``{name: (rows, ·) array}``; returns the same tuple over all
    ``num_rows`` rows. Collective (``all_gather_object``: gloo and NCCL)."""
    parts: list[Any] = [None] * world_size
    dist.all_gather_object(parts, shards)
    whole = []
    for position in range(len(shards)):
        merged = {}
        for name, value in parts[0][position].items():   # rank 0 holds row 0: never empty
            full = np.empty((num_rows, *value.shape[1:]), dtype=value.dtype)
            for rank, part in enumerate(parts):
                if rank < num_rows:                       # a rank past the last row has none
                    full[rank::world_size] = part[position][name]
            merged[name] = full
        whole.append(merged)
    return tuple(whole)
