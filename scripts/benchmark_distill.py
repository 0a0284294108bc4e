"""Teacher outputs online or cached: what a distillation step costs each way.

    python scripts/benchmark_distill.py --teacher results/distill_synthetic/teacher/seed0
        [--steps 30] [--warmup 3] [--out results/benchmark_distill] [OVERRIDE ...]

For the student the Hydra overrides give (default: ``experiment=ssl_multitask_synthetic
method=distill``, the recipe's), on the trainer's device: the time of one training step
(forward of student and teacher, the loss, backward, optimizer) with ``teacher_outputs=online``
and with ``cached``, alternated round by round so that drift in the machine's speed hits both
alike, and the one-off time of filling the cache (the teacher over every training face, before
the first step). Reports the step times, their ratio and the number of steps after which the
cache has paid for itself. Writes ``benchmark_distill.json`` and ``.md`` into ``--out``.
Performance is measured here, never by timed tests.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

from affectlab.build import CONFIG_DIR, build_data, build_method
from affectlab.threads import configure_threads, usable_cpus
from affectlab.utils import resolve_device, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import cpu_name, publish, sync  # noqa: E402


def student(overrides: list[str], teacher: Path, outputs: str) -> tuple[Any, Any, Any]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=ssl_multitask_synthetic", "method=distill",
                                          f"method.teacher={teacher}",
                                          f"method.teacher_outputs={outputs}", *overrides])
    configure_threads(cfg)          # threads=N, OMP_NUM_THREADS or all usable CPUs
    seed_everything(0)
    data, method = build_data(cfg), build_method(cfg)
    device = resolve_device(cfg.trainer.device)
    method.prepare(data)
    method.to(device).train()
    return cfg, data, method


def batches(cfg: Any, data: Any, device: torch.device, count: int) -> list[dict[str, Any]]:
    loader = torch.utils.data.DataLoader(data.train, batch_size=int(cfg.trainer.batch_size),
                                         shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    out: list[dict[str, Any]] = []
    while len(out) < count:
        for batch in loader:
            out.append({k: v.to(device) for k, v in batch.items()})
            if len(out) == count:
                break
    return out


def measure(overrides: list[str], teacher: Path, steps: int, warmup: int) -> dict[str, Any]:
    setups = {name: student(overrides, teacher, name) for name in ("online", "cached")}
    cfg, data, _ = setups["online"]
    device = next(setups["online"][2].parameters()).device
    started = time.perf_counter()
    setups["cached"][2].on_fit_start(total_steps=steps)
    sync(device)
    cache_s = time.perf_counter() - started
    prepared = batches(cfg, data, device, steps + warmup)
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4)
                  for name, (_, _, m) in setups.items()}
    times: dict[str, list[float]] = {"online": [], "cached": []}
    for k, raw in enumerate(prepared):
        for name in (("online", "cached") if k % 2 == 0 else ("cached", "online")):
            method = setups[name][2]
            batch = data.transform(dict(raw), train=True)
            sync(device)
            started = time.perf_counter()
            loss = method(batch)["loss"]
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            sync(device)
            if k >= warmup:
                times[name].append(time.perf_counter() - started)
    online, cached = (sum(times[n]) / len(times[n]) for n in ("online", "cached"))
    saved = online - cached
    return {
        "machine": {"cpu": cpu_name(), "cpus": usable_cpus(), "threads": torch.get_num_threads(),
                    "device": str(device), "python": platform.python_version(),
                    "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "overrides": overrides, "teacher": str(teacher), "steps": steps, "warmup": warmup,
        "batch_size": int(cfg.trainer.batch_size), "training_faces": len(data.train),
        "step_ms": {"online": 1000 * online, "cached": 1000 * cached},
        "online_over_cached": online / cached,
        "cache_fill_s": cache_s,
        "break_even_steps": (cache_s / saved) if saved > 0 else None,
    }


def markdown(result: dict[str, Any]) -> str:
    m, step = result["machine"], result["step_ms"]
    even = result["break_even_steps"]
    return "\n".join([
        f"Distillation step, teacher outputs online vs cached — {m['device']} ({m['cpu']}, "
        f"{m['threads']} thread(s){', ' + m['gpu'] if m['gpu'] else ''}), batch "
        f"{result['batch_size']}, {result['training_faces']} training faces, {result['steps']} "
        "steps each (alternated)", "",
        "| teacher outputs | ms / step | one-off |", "|---|---|---|",
        f"| online (the teacher on every batch) | {step['online']:.1f} | – |",
        f"| cached (the teacher once per face) | {step['cached']:.1f} | "
        f"{result['cache_fill_s']:.2f} s to fill |", "",
        f"online / cached: {result['online_over_cached']:.2f}×; the cache pays for itself after "
        + (f"{even:.0f} steps" if even is not None else "never (no step saved)") + ".", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--teacher", type=Path, required=True,
                        help="a trained teacher run (e.g. the recipe's teacher/seed0)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/benchmark_distill"))
    args = parser.parse_args(argv)
    result = measure(args.overrides, args.teacher, args.steps, args.warmup)
    publish(result, markdown(result), args.out, "benchmark_distill")
    return 0


if __name__ == "__main__":
    sys.exit(main())
