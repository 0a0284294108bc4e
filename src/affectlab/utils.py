"""Seeding, RNG state capture, atomic file writes and device selection."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from affectlab.config import ConfigError


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state a training step may consume, for checkpoints."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    # plain values and tensors only: checkpoints are read with torch.load(weights_only=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file here (0666 less the umask); mkstemp gives 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then rename it over ``path``: readers see
    the old file or the new one, never half of one; a failed write leaves no temporary behind.
    The temporary name ends in ``.tmp`` (writers that pick a format by suffix must name it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_file_mode())   # mkstemp's 0600 → what open() would have given
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to exactly ``path`` (given a name, numpy would append ``.npz``)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same directory, then rename over ``path``."""
    atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented JSON atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    atomic_write(Path(path), write)


def resolve_device(device: str) -> torch.device:
    """``auto`` → the local CUDA device when present, else CPU; ``cuda`` → the local CUDA device.

    Under torchrun the local device is ``cuda:LOCAL_RANK`` (one GPU per process). A device
    that is not there (no CUDA, more processes than GPUs, ``cuda:N`` past the last GPU) is a
    :class:`~affectlab.config.ConfigError` saying what to do.
    """
    if device == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={device} but no CUDA device is visible; use "
                          "trainer.device=auto or trainer.device=cpu.")
    if device in ("auto", "cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"process {local_rank} of this node has no GPU: {torch.cuda.device_count()} "
                "visible. Start at most that many processes per node (torchrun "
                "--nproc_per_node), or use trainer.device=cpu.")
        return torch.device("cuda", local_rank)
    chosen = torch.device(device)
    if chosen.type == "cuda" and chosen.index is not None \
            and chosen.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={device}: only {torch.cuda.device_count()} GPU(s) "
                          "visible (cuda:0 …); use trainer.device=auto.")
    return chosen
