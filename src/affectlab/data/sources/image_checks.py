"""Which image files of a dataset can be read, checked once before training and remembered.

A bad image should stop a run before it trains, not when the file is first decoded hours in;
checking every file at every start would cost more than the run's first minutes. So the checks
are the cheap ones (:func:`~affectlab.data.contract.image_file_problem`) and the files found
good are remembered by path, size and mtime (:func:`readable_images`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from affectlab.data.contract import image_file_problem
from affectlab.utils import atomic_write

if TYPE_CHECKING:
    from affectlab.data.sources.on_disk import Problems

log = logging.getLogger(__name__)
# The checks go through the paths in chunks. The work is stats and small reads: where each file
# is slow to reach (a network file system, a cold disk) a thread pool overlaps the waits, but on
# local, cached files the threads only contend for the GIL (3× slower on 2 cores: see
# scripts/benchmark_image_check.py). So the first chunk runs here and times the files; the pool
# takes the rest only when they took LATENCY_BOUND_S or more each.
IMAGE_CHECK_THREADS = 8
IMAGE_CHECK_CHUNK = 256
LATENCY_BOUND_S = 250e-6


def _in_chunks(function: Callable[[list], list], items: list, threads: int) -> list:
    """``function`` over consecutive chunks of ``items``, results concatenated in order; in
    ``threads`` threads when the first chunk shows the work waits on storage (see above)."""
    chunks = [items[i:i + IMAGE_CHECK_CHUNK] for i in range(0, len(items), IMAGE_CHECK_CHUNK)]
    if not chunks:
        return []
    start = time.perf_counter()
    out = list(function(chunks[0]))
    waits = (time.perf_counter() - start) / len(chunks[0]) >= LATENCY_BOUND_S
    if threads <= 1 or len(chunks) <= 2 or not waits:
        return out + [r for chunk in chunks[1:] for r in function(chunk)]
    with ThreadPoolExecutor(min(threads, len(chunks) - 1)) as workers:
        return out + [r for part in workers.map(function, chunks[1:]) for r in part]


def _stat_files(paths: list[str]) -> list[tuple[int, int] | None]:
    """``(size, mtime_ns)`` of each path; None where it is missing or not a regular file."""
    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else None)
    return out


def image_check_key(relative: str, size: int, mtime_ns: int) -> int:
    """64-bit key of one image file's state (its path relative to the root, size, mtime): a
    file rewritten, truncated or replaced gets another key, so it is checked again."""
    digest = hashlib.blake2b(f"{relative}\0{size}\0{mtime_ns}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _load_keys(path: Path | None) -> np.ndarray:
    """The sorted uint64 keys of a check cache (empty when it is missing or unreadable)."""
    if path is None:
        return np.zeros(0, dtype=np.uint64)
    try:
        keys = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return np.zeros(0, dtype=np.uint64)
    return keys if keys.dtype == np.uint64 and keys.ndim == 1 else np.zeros(0, dtype=np.uint64)


def _save_keys(path: str, keys: np.ndarray) -> None:
    with open(path, "wb") as f:   # np.save given a name would append .npy to the temporary
        np.save(f, keys, allow_pickle=False)


def readable_images(root: Path, paths: Sequence[str], problems: Problems, *,
                    cache_file: Path | None, known_gap: Callable[[int], bool] | None = None,
                    threads: int = IMAGE_CHECK_THREADS) -> np.ndarray:
    """(len(paths),) bool: which of the images ``root / paths`` are readable, by the cheap
    checks of :func:`~affectlab.data.contract.image_file_problem` (exists, not empty, header
    parses, not truncated), so that a bad image stops a run before it trains, not when the
    image is first decoded. Every other one is reported to ``problems``: a missing file as a
    known gap where ``known_gap(i)`` says the release lacks it, else as a problem; a damaged
    file as a problem.

    Files found readable are remembered in ``cache_file`` (``.npy``, sorted uint64
    :func:`image_check_key` keys): a later call costs one stat per path (what checking that
    the file exists cost anyway) and reads only files that are new or changed in size or
    mtime. Measured with ``scripts/benchmark_image_check.py``.
    """
    full = [os.path.join(root, p) for p in paths]
    stats = _in_chunks(_stat_files, full, threads)
    ok = np.array([s is not None for s in stats], dtype=bool)
    for i in np.flatnonzero(~ok):
        message = f"image file is missing: {full[i]}"
        if known_gap is not None and known_gap(int(i)):
            problems.known_gap(full[i], message)
        else:
            problems.report(message)
    present = np.flatnonzero(ok)
    keys = np.array([image_check_key(paths[i], *stats[i]) for i in present], dtype=np.uint64)
    cached = _load_keys(cache_file)
    unchecked = ~np.isin(keys, cached)
    todo = present[unchecked].tolist()
    verdicts = _in_chunks(lambda rows: [image_file_problem(Path(full[i]), stats[i][0])
                                        for i in rows], todo, threads)
    damaged = [(i, why) for i, why in zip(todo, verdicts) if why is not None]
    ok[[i for i, _ in damaged]] = False
    fresh = keys[unchecked & ok[present]]
    if cache_file is not None and len(fresh):
        # saved before reporting: under on_error=raise the first damaged file stops the run,
        # and the files checked good must not be read again next time
        merged = np.union1d(cached, fresh)
        try:
            atomic_write(cache_file, lambda tmp: _save_keys(tmp, merged))
        except OSError as err:   # a read-only cache is slower, not wrong
            log.warning("cannot cache the image checks in %s (%s)", cache_file, err)
    for i, why in damaged:
        problems.report(f"image file {full[i]} {why}. Replace the file (download or extract "
                        "it again), or delete it and its label row")
    return ok


def image_check_cache(cache_dir: Path, name: str, root: Path) -> Path:
    """Where the image checks of ``root`` are remembered (:func:`readable_images`)."""
    key = hashlib.sha1(str(root).encode()).hexdigest()[:16]
    return cache_dir / f"{name}-images-{key}.npy"


__all__ = ["IMAGE_CHECK_THREADS", "readable_images", "image_check_key", "image_check_cache"]
