"""Write a dataset's face crops at training resolution once, for ``preprocessed=<out>``::

    python scripts/preprocess.py --out data/preprocessed/ckplus224 \\
        dataset=ckplus dataset.root=/data/CK+
    python train.py preprocessed=data/preprocessed/ckplus224 dataset=ckplus dataset.root=/data/CK+

The arguments after ``--out`` are the Hydra overrides of the training run (dataset, pool,
experiment); the crops are exactly what training computes from the raw images
(``affectlab.data.preprocess``), so both paths train on the same pixels. An interrupted run
is resumed: existing crops are kept, the manifest is written last. ``--workers N`` decodes,
crops and writes in N processes (same files).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from affectlab.build import CONFIG_DIR, build_data
from affectlab.data.contract import DataError
from affectlab.data.preprocess import write_crops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the crops")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that decode, crop and write (0: this one)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (dataset=..., ...)")
    args = parser.parse_args(argv)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=args.overrides)
    start = time.perf_counter()
    try:
        manifest = write_crops(build_data(cfg, crops=False, pack=False), args.out,
                               workers=args.workers)
    except DataError as err:
        sys.exit(f"preprocess: {err}")
    print(f"{manifest['files']} crops of {manifest['dataset']} at {manifest['image_size']} px in "
          f"{args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
