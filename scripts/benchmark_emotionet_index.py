"""How long does indexing a full-size EmotioNet take? Cold (parse + save) and cached (load).

    python scripts/benchmark_emotionet_index.py [--rows 950000] [--files 19]
        [--manual-rows 24600] [--images none|empty] [--dir DIR]

Writes a generated automatically-annotated set of ``--rows`` rows (tab-separated, URL, original
URL, AU1 … AU60 with values 0 / 1 / 999, spread over ``--files`` ``dataFile_*.txt``) and, with
``--manual-rows`` > 0, a manual CSV (quoted ``'AU n'`` headers, quoted URLs) over the first of
those images, then times :meth:`EmotioNet.index` twice per configuration, each with a fresh
cache folder:

- ``automatic``: every row labelled from the TSVs (the slowest path: all AU columns parsed);
- ``manual+pool``: the MLCR default, manual CSV labelled, the TSVs read for the pool's image names.

Images are not rendered. ``--images none`` (default) indexes with ``check_images=False``, which
keeps every row without listing the image folder; ``--images empty`` writes one tiny JPEG (the
same bytes every time) for 90 % of the rows (the other 10 %: dead URLs, known gaps) and indexes
with the listing and ``on_error=skip`` — the real situation, but creating ~860k files takes a
while.

Measured on the development machine (2-core CPU, other jobs running; 950,000 automatic rows
in 19 files, 24,600 manual rows)::

    | annotations | check_images | rows indexed | left out | cold s | cached s | build s |
    | automatic   | False        | 950000       | 0        | 1.87   | 0.17     | —       |
    | manual+pool | False        | 950000       | 0        | 1.21   | 0.17     | —       |
    | automatic   | True (empty) | 854804       | 95196    | 2.94   | 0.27     | 4.13    |
    | manual+pool | True (empty) | 854804       | 2422     | 1.90   | 0.20     | 0.89    |

(The build seconds above predate the build-time image check, which reads every split image
once and then remembers it: ``scripts/benchmark_image_check.py`` measures that.)

The generated tree goes to a temporary folder (removed afterwards) unless ``--dir`` is given.
Prints a Markdown table of seconds, rows indexed, rows left out (problems skipped and known gaps)
and cache size; with ``--images empty`` also the seconds of a whole ``build()`` from the cached
index (the split, and the base class's check of every split image).
"""

from __future__ import annotations

import argparse
import io
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.sources.emotionet import AUTOMATIC_AU_COLUMNS, CHALLENGE_2020_AUS, EmotioNet

MISSING_SHARE = 0.1      # share of dead URLs with --images empty


def url(i: int) -> str:
    return f"http://example.invalid/emotionet/N_{i // 50 + 1:010d}_{i % 50 + 1:05d}.jpg"


def write_tree(root: Path, rows: int, files: int, manual_rows: int, images: str,
               seed: int = 0) -> None:
    """The generated download under ``root`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    tokens = np.array(["0", "1", "999"])
    per_file = -(-rows // files)
    for f in range(files):
        start, stop = f * per_file, min(rows, (f + 1) * per_file)
        if start >= stop:
            break
        codes = tokens[rng.choice(3, size=(stop - start, AUTOMATIC_AU_COLUMNS),
                                  p=[0.8, 0.15, 0.05])]
        with open(root / f"dataFile_{1001 + f}.txt", "w") as out:
            for i, values in zip(range(start, stop), codes):
                out.write(f"{url(i)}\thttp://example.invalid/orig/{i}.jpg\t"
                          + "\t".join(values) + "\n")
    if manual_rows:
        header = ["URL", "URL orig", *[f"'AU {a}'" for a in CHALLENGE_2020_AUS]]
        codes = tokens[rng.choice(3, size=(manual_rows, len(CHALLENGE_2020_AUS)),
                                  p=[0.8, 0.15, 0.05])]
        with open(root / "EmotioNet_FACS_aws_2020_24600.csv", "w") as out:
            out.write(",".join(header) + "\n")
            for i, values in enumerate(codes):
                out.write(f"'{url(i)}','http://example.invalid/orig/{i}.jpg',"
                          + ",".join(values) + "\n")
    image_dir = root / "images"
    image_dir.mkdir()
    if images == "empty":
        # a readable image: build() checks every split image (an empty file is a damaged one)
        encoded = io.BytesIO()
        Image.new("RGB", (8, 8), (128, 128, 128)).save(encoded, format="JPEG")
        dead = rng.random(rows) < MISSING_SHARE
        for i in np.flatnonzero(~dead):
            (image_dir / url(int(i)).rsplit("/", 1)[1]).write_bytes(encoded.getvalue())


def time_index(root: Path, cache: Path, images: str, annotations: str) -> dict[str, float]:
    """Cold and cached :meth:`EmotioNet.index` seconds, rows indexed, cache megabytes."""
    shutil.rmtree(cache, ignore_errors=True)

    def make() -> EmotioNet:
        return EmotioNet(root=str(root), cache_dir=str(cache), annotations=annotations,
                         check_images=images == "empty", on_error="skip")

    start = time.perf_counter()
    index = make().index()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    cached = make().index()
    warm = time.perf_counter() - start
    assert cached.sample_ids == index.sample_ids
    size = sum(p.stat().st_size for p in cache.iterdir()) / 2**20
    build = float("nan")
    if images == "empty":   # without image files every split row would be a missing image
        start = time.perf_counter()
        make().build()      # cached index + split + the base's per-row check of split images
        build = time.perf_counter() - start
    return {"cold_s": cold, "cached_s": warm, "build_s": build, "rows": len(index.sample_ids),
            "problems": len(index.problems) + len(index.known_gaps), "cache_mb": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=950_000)
    parser.add_argument("--files", type=int, default=19)
    parser.add_argument("--manual-rows", type=int, default=24_600)
    parser.add_argument("--images", choices=("none", "empty"), default="none")
    parser.add_argument("--dir", type=Path, default=None, help="keep the generated tree here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = args.dir or Path(tempfile.mkdtemp(prefix="emotionet-bench-"))
    root = base / "EmotioNet"
    try:
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        start = time.perf_counter()
        write_tree(root, args.rows, args.files, args.manual_rows, args.images)
        print(f"generated {args.rows} automatic rows, {args.manual_rows} manual rows, images="
              f"{args.images} in {time.perf_counter() - start:.1f} s")
        configs = ["automatic"] + (["manual"] if args.manual_rows else [])
        print("| annotations | check_images | rows indexed | left out | cold s | cached s "
              "| build s | cache MB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for mode in configs:
            r = time_index(root, base / "cache", args.images, mode)
            label = "manual+pool" if mode == "manual" else mode
            print(f"| {label} | {args.images == 'empty'} | {r['rows']} | {r['problems']} | "
                  f"{r['cold_s']:.2f} | {r['cached_s']:.2f} | {r['build_s']:.2f} | "
                  f"{r['cache_mb']:.0f} |", flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
