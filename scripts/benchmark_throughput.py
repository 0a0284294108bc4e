"""Training throughput of the full pipeline (loader, augmentation, step) in images/s.

    python scripts/benchmark_throughput.py [--steps 200] [OVERRIDE ...]

Runs the real trainer for ``--steps`` optimizer steps on the given config overrides (default:
the ``python train.py`` defaults) in a temporary run directory and prints one JSON line with the
measured throughput, the device and the settings. Benchmarks live here, not in timed tests.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from affectlab.build import CONFIG_DIR
from affectlab.threads import configure_threads
from affectlab.train import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=resnet18")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"trainer.max_steps={args.steps}",
                                          "trainer.progress_bar=false", *args.overrides])
    configure_threads(cfg)          # as train.py does: threads=N, OMP_NUM_THREADS or all CPUs
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = run(cfg, Path(run_dir))
    print(json.dumps({
        "throughput_images_per_s": metrics["throughput_images_per_s"],
        "train_time_s": metrics["train_time_s"], "steps": metrics["steps"],
        "device": metrics["device"], "threads": torch.get_num_threads(),
        "overrides": args.overrides,
        "batch_size": cfg.trainer.batch_size, "image_size": cfg.dataset.get("image_size"),
    }))


if __name__ == "__main__":
    main()
