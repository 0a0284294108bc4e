"""What the build-time image check costs (``affectlab.data.sources.image_checks.readable_images``).

Writes ``--count`` small face-sized images (half JPEG, half PNG, ``--size`` px, 1,000 per folder
as in a frame tree) under ``--dir`` (default: a fresh folder in the system temp dir, removed
afterwards; never the repository), then times, on the same list of paths:

- ``exists``: one ``Path.is_file`` per image — what ``build()`` did before the check;
- ``check, no cache``: the full check (stat, header, end marker) of every file: in this
  thread; as ``build()`` runs it (a thread pool only if the first chunk of files is slow to
  reach, ``LATENCY_BOUND_S``); and forced through the thread pool;
- ``check, cached``: the same call again, answered from the cache (one stat and one key per
  file), in this thread and forced through the pool.

The files were just written, so they are in the page cache: a cold disk or a network file
system makes the uncached check slower and the thread pool useful (it overlaps the waits); on
cached local files the pool only contends for the GIL. Prints one line per measurement with
files/s and total seconds::

    python scripts/benchmark_image_check.py --quick              # 2,000 images
    python scripts/benchmark_image_check.py --count 50000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affectlab.data.sources import on_disk as real  # noqa: E402
from affectlab.data.sources.image_checks import IMAGE_CHECK_THREADS, readable_images  # noqa: E402
from affectlab.data.sources.on_disk import Problems  # noqa: E402

PER_FOLDER = 1000


def write_images(root: Path, count: int, size: int, seed: int = 0) -> list[str]:
    """``count`` images ``<folder>/<n>.jpg|png`` under ``root``; their relative paths."""
    rng = np.random.default_rng(seed)
    # a few distinct pictures re-encoded: the encoder's time, not the generator's, dominates
    pictures = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(8)]
    paths = []
    for n in range(count):
        folder = f"v{n // PER_FOLDER:04d}"
        (root / folder).mkdir(exist_ok=True)
        relative = f"{folder}/{n:06d}.{'jpg' if n % 2 == 0 else 'png'}"
        Image.fromarray(pictures[n % len(pictures)]).save(root / relative)
        paths.append(relative)
    return paths


def timed(what: str, count: int, run) -> float:
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    print(f"{what:<42} {count / seconds:>12,.0f} files/s {seconds:>9.2f} s total", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="images to write and check")
    parser.add_argument("--quick", action="store_true", help="2,000 images (a smoke test)")
    parser.add_argument("--size", type=int, default=112, help="side of the images in pixels")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder to write the images into (default: a temporary one)")
    args = parser.parse_args(argv)
    count = 2000 if args.quick else args.count
    base = args.dir if args.dir is not None else Path(tempfile.mkdtemp(prefix="imgcheck-"))
    root, cache = base / "images", base / "cache"
    root.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        paths = write_images(root, count, args.size)
        bytes_on_disk = sum(os.path.getsize(root / p) for p in paths)
        print(f"{count} images ({args.size} px, {bytes_on_disk / count / 1024:.1f} KiB each on "
              f"average) written to {root} in {time.perf_counter() - start:.1f} s; "
              f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}")
        timed("exists (Path.is_file, before)", count,
              lambda: [(root / p).is_file() for p in paths])
        adaptive = real.LATENCY_BOUND_S
        runs = [("1 thread", 1, adaptive), ("as build() runs it", IMAGE_CHECK_THREADS, adaptive),
                (f"{IMAGE_CHECK_THREADS} threads forced", IMAGE_CHECK_THREADS, 0.0)]
        for what, threads, bound in runs:
            shutil.rmtree(cache, ignore_errors=True)
            real.LATENCY_BOUND_S = bound
            timed(f"check, no cache, {what}", count,
                  lambda threads=threads: readable_images(root, paths, Problems("raise"),
                                                          cache_file=cache / "check.npy",
                                                          threads=threads))
        for what, threads, bound in (runs[0], runs[2]):
            real.LATENCY_BOUND_S = bound
            timed(f"check, cached, {what}", count,
                  lambda threads=threads: readable_images(root, paths, Problems("raise"),
                                                          cache_file=cache / "check.npy",
                                                          threads=threads))
        real.LATENCY_BOUND_S = adaptive
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
