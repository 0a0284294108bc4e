"""How long does indexing a full-size BP4D take? Cold (parse every AU_OCC CSV + save the cache),
cached (load), and a whole ``build()`` (split, image checks) from the cache::

    python scripts/benchmark_bp4d_index.py [--frames-per-task 450] [--dir DIR]

Writes the 41 subjects × 8 tasks of the BP4D layout with ``--frames-per-task`` coded frames each
(450 → 147,600 rows, the size of the real release's ~146,847): AU_OCC CSVs with the integer
header ``0,1,…,28`` and empty image files named by zero-padded frame number (images are not
rendered; only their existence is checked). The tree goes to a temporary folder (removed
afterwards) unless ``--dir`` is given.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from affectlab.data.layouts.bp4d import first_frame
from affectlab.data.sources.bp4d import BP4D, SUBJECTS

TASKS = 8
HEADER = list(range(0, 29))


def write_tree(root: Path, frames_per_task: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    occ = root / "AUCoding" / "AU_OCC"
    occ.mkdir(parents=True)
    rows = 0
    for subject in SUBJECTS:
        for task in range(1, TASKS + 1):
            start = first_frame(subject, task)
            frames = np.arange(start, start + frames_per_task)
            values = rng.choice([0, 1, 9], p=[0.7, 0.25, 0.05], size=(len(frames), 28))
            table = np.column_stack([frames, values])
            np.savetxt(occ / f"{subject}_T{task}.csv", table, fmt="%d", delimiter=",",
                       header=",".join(map(str, HEADER)), comments="")
            folder = root / "BP4D-training" / subject / f"T{task}"
            folder.mkdir(parents=True)
            for frame in frames:
                (folder / f"{frame:04d}.jpg").touch()
            rows += len(frames)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames-per-task", type=int, default=450)
    parser.add_argument("--dir", type=Path, default=None, help="keep the tree here")
    args = parser.parse_args(argv)
    base = args.dir or Path(tempfile.mkdtemp(prefix="bp4d-bench-"))
    try:
        start = time.perf_counter()
        rows = write_tree(base / "BP4D", args.frames_per_task)
        print(f"generated {rows} rows in {time.perf_counter() - start:.1f} s")

        def dataset() -> BP4D:
            return BP4D(root=str(base / "BP4D"), cache_dir=str(base / "cache"))

        times = {}
        for label in ("cold", "cached"):
            start = time.perf_counter()
            index = dataset().index()
            times[label] = time.perf_counter() - start
        start = time.perf_counter()
        data = dataset().build()
        times["build"] = time.perf_counter() - start
        print(f"| rows indexed | cold index s | cached index s | build from cache s |\n"
              f"|---|---|---|---|\n| {len(index.table)} | {times['cold']:.2f} | "
              f"{times['cached']:.2f} | {times['build']:.2f} |")
        print(f"splits: train {len(data.train)}, val {len(data.val)}, test {len(data.test)}")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
