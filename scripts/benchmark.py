"""Where a training step's time goes, measured in one process and one run.

    python scripts/benchmark.py [--steps 40] [--warmup 5] [--methods baseline,mlcr]
                                [--out results/benchmark] [--quick] [OVERRIDE ...]

For the configuration the Hydra overrides give (default: ``python train.py``'s model, data,
batch and image size), on the trainer's device and precision:

1. **framework vs bare loop**: the trainer's optimizer step of ``method=baseline
   method.tasks=[au]`` (its autocast, masked loss dict, zero_grad, backward, optimizer,
   schedule, method hook, non-finite watch) against a bare PyTorch loop of the same network
   (a copy of the backbone and AU head), BCE loss and optimizer, on the same prepared
   tensors. Rounds alternate between the two so that drift in the machine's speed hits both
   alike; the ratio is total framework time / total bare time (warm-up steps excluded).
2. **input pipeline vs model**: images/s of the training loader alone (host: reading,
   collating; the packed store by default), of the device transform alone (copy,
   uint8 → float, augmentation, normalisation), and of the model step alone.
3. **methods**: each method's framework step on the same data, model and batch size, with
   the inputs it needs (pool batch, augmented views), as time per step and per face, and
   relative to the baseline.
4. **memory**: peak resident memory of the process (CPU) and peak CUDA memory per phase.

Writes ``benchmark.json`` and ``benchmark.md`` into ``--out`` and prints the table.
Performance targets are checked here, never by timed tests.
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from affectlab.build import CONFIG_DIR, build
from affectlab.data.samplers import InfiniteSampler
from affectlab.engine.guards import NonFiniteWatch
from affectlab.threads import configure_threads, usable_cpus
from affectlab.utils import atomic_write_json, atomic_write_text, seed_everything

QUICK = ["dataset.image_size=32", "dataset.num_subjects_train=4",
         "dataset.images_per_subject_train=8", "dataset.num_subjects_unlabeled=4",
         "dataset.images_per_subject_unlabeled=8", "dataset.num_subjects_val=2",
         "dataset.images_per_subject_val=4", "dataset.num_subjects_test=2",
         "dataset.images_per_subject_test=4", "model.widths=[8,16]", "trainer.batch_size=8"]


def publish(result: dict[str, Any], text: str, out: Path, name: str) -> None:
    """A benchmark's files, ``out/<name>.json`` (the numbers) and ``out/<name>.md`` (the table),
    written atomically; the table is printed."""
    atomic_write_json(result, Path(out) / f"{name}.json")
    atomic_write_text(Path(out) / f"{name}.md", text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_cuda_mb(device: torch.device) -> float | None:
    return (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda" else None)


def rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Setup:
    """One composed configuration, built as ``train.py`` builds it, with prepared batches."""

    def __init__(self, overrides: list[str], num_batches: int) -> None:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            self.cfg = compose("train", overrides=["trainer.progress_bar=false", *overrides])
        configure_threads(self.cfg)      # threads=N, OMP_NUM_THREADS or all usable CPUs
        seed_everything(self.cfg.seed)
        self.data, self.method, self.trainer = build(self.cfg)
        trainer, method, data = self.trainer, self.method, self.data
        method.prepare(data)
        self.model = trainer.place(method)      # device, memory format, compile: as fit does
        self.optimizer = trainer.optimizer_factory(method.param_groups())
        self.scheduler = trainer.schedule.build(self.optimizer, steps_per_epoch=10**6,
                                                total_steps=10**6)
        self.watch = NonFiniteWatch(eager=trainer.device.type != "cuda")
        self.sampler = trainer.sampler_factory(data.train.table, batch_size=trainer.batch_size,
                                               seed=trainer.seed)
        self.loader = trainer.loader(data.train, self.sampler, trainer.batch_size,
                                      persistent=True)
        self.host_batches = self.take(num_batches)
        self.pool_batches = None
        if method.needs_unlabeled:
            pool = trainer.loader(data.unlabeled,
                                   InfiniteSampler(len(data.unlabeled), seed=trainer.seed),
                                   trainer.unlabeled_batch_size)
            batches = iter(pool)
            self.pool_batches = [next(batches) for _ in range(num_batches)]
        self.views = method.augmented_views
        self.prepared = [self.prepare(i) for i in range(num_batches)]

    def take(self, count: int) -> list[dict[str, torch.Tensor]]:
        batches: list[dict[str, torch.Tensor]] = []
        epoch = 0
        while len(batches) < count:
            self.sampler.set_position(epoch)
            for batch in self.loader:
                batches.append(batch)
                if len(batches) == count:
                    break
            epoch += 1
        return batches

    def prepare(self, i: int) -> dict[str, Any]:
        batch = self.trainer.prepare_batch(dict(self.host_batches[i]), self.data, train=True,
                                      views=self.views)
        if self.pool_batches is not None:
            batch["unlabeled"] = self.trainer.prepare_batch(dict(self.pool_batches[i]), self.data,
                                                       train=True, views=self.views)
        return batch

    def faces_per_step(self) -> int:
        batch = self.prepared[0]
        return len(batch["index"]) + (len(batch["unlabeled"]["index"])
                                      if "unlabeled" in batch else 0)

    def framework_steps(self, count: int, start: int = 0) -> float:
        """Seconds for ``count`` trainer steps on the prepared batches."""
        device = self.trainer.device
        sync(device)
        begin = time.perf_counter()
        for k in range(count):
            batch = self.prepared[(start + k) % len(self.prepared)]
            self.trainer.step(self.model, self.method, batch, self.optimizer, self.scheduler,
                               start + k, self.watch)
        self.watch.check()
        sync(device)
        return time.perf_counter() - begin


class Network(torch.nn.Module):
    """Backbone features → AU logits: the whole network of the bare loop."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(images))


class BareLoop:
    """The same backbone and AU head (copies), BCE and optimizer, written by hand."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        network = Network(copy.deepcopy(setup.method.backbone),
                          copy.deepcopy(setup.method.heads.heads["au"]))
        self.optimizer = setup.trainer.optimizer_factory(network.parameters())
        self.forward = torch.compile(network) if setup.trainer.settings.compile else network

    def steps(self, count: int, start: int = 0) -> float:
        device = self.setup.trainer.device
        sync(device)
        begin = time.perf_counter()
        for k in range(count):
            batch = self.setup.prepared[(start + k) % len(self.setup.prepared)]
            with self.setup.trainer.autocast():
                logits = self.forward(batch["image"])
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch["au"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        sync(device)
        return time.perf_counter() - begin


def time_loader(setup: Setup, count: int) -> float:
    """Seconds to draw ``count`` batches from the training loader (host side only)."""
    begin = time.perf_counter()
    setup.take(count)
    return time.perf_counter() - begin


def time_transform(setup: Setup, count: int) -> float:
    """Seconds for ``count`` device transforms (copy, uint8 → float, augment, normalise)."""
    device = setup.trainer.device
    sync(device)
    begin = time.perf_counter()
    for k in range(count):
        setup.trainer.prepare_batch(dict(setup.host_batches[k % len(setup.host_batches)]),
                               setup.data, train=True, views=setup.views)
    sync(device)
    return time.perf_counter() - begin


def measure(overrides: list[str], methods: list[str], steps: int, warmup: int,
            rounds: int) -> dict[str, Any]:
    per_round = max(1, steps // rounds)
    base = Setup([*overrides, "method=baseline", "method.tasks=[au]"], num_batches=8)
    device = base.trainer.device
    batch_size = base.trainer.batch_size
    result: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": cpu_name(),
                    "cpus": usable_cpus(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "settings": {"overrides": overrides, "batch_size": batch_size,
                     "image_size": base.cfg.dataset.get("image_size"),
                     "model": base.cfg.model._target_.rsplit(".", 1)[-1],
                     "precision": base.trainer.precision,
                     "channels_last": base.trainer.settings.channels_last,
                     "compile": base.trainer.settings.compile,
                     "packed": bool(base.cfg.get("packed")),
                     "num_workers": base.trainer.num_workers, "steps": per_round * rounds,
                     "warmup": warmup, "rounds": rounds},
    }
    # 1. framework vs bare loop, alternating rounds after a warm-up of each
    bare = BareLoop(base)
    base.framework_steps(warmup)
    bare.steps(warmup)
    reset_peak(device)
    framework_times, bare_times = [], []
    for r in range(rounds):
        framework_times.append(base.framework_steps(per_round, warmup + r * per_round))
        bare_times.append(bare.steps(per_round, warmup + r * per_round))
    n = per_round * rounds
    framework_s, bare_s = sum(framework_times) / n, sum(bare_times) / n
    result["step"] = {
        "framework_ms": round(framework_s * 1e3, 3), "bare_ms": round(bare_s * 1e3, 3),
        "ratio": round(framework_s / bare_s, 4),
        "ratio_per_round": [round(f / b, 4) for f, b in zip(framework_times, bare_times)],
        "framework_images_per_s": round(batch_size / framework_s, 1),
        "bare_images_per_s": round(batch_size / bare_s, 1),
        "peak_cuda_mb": peak_cuda_mb(device)}
    # 2. input pipeline alone vs model alone
    time_loader(base, 2)
    loader_s = time_loader(base, steps) / steps
    time_transform(base, 2)
    transform_s = time_transform(base, steps) / steps
    result["pipeline"] = {
        "loader_images_per_s": round(batch_size / loader_s, 1),
        "transform_images_per_s": round(batch_size / transform_s, 1),
        "loader_and_transform_images_per_s": round(batch_size / (loader_s + transform_s), 1),
        "model_images_per_s": result["step"]["framework_images_per_s"],
        "loader_over_model": round(framework_s / loader_s, 2),
        "loader_and_transform_over_model": round(framework_s / (loader_s + transform_s), 2)}
    # 3. each method's step on the same data, model and batch size
    result["methods"] = {}
    for name in methods:
        setup = base if name == "baseline" else Setup([*overrides, f"method={name}"], 8)
        setup.framework_steps(warmup)
        reset_peak(device)
        seconds = setup.framework_steps(steps, warmup) / steps
        faces = setup.faces_per_step()
        result["methods"][name] = {"step_ms": round(seconds * 1e3, 3), "faces_per_step": faces,
                                   "ms_per_face": round(seconds * 1e3 / faces, 4),
                                   "peak_cuda_mb": peak_cuda_mb(device)}
    if "baseline" in result["methods"]:
        reference = result["methods"]["baseline"]
        for entry in result["methods"].values():
            entry["step_over_baseline"] = round(entry["step_ms"] / reference["step_ms"], 3)
            entry["per_face_over_baseline"] = round(entry["ms_per_face"]
                                                    / reference["ms_per_face"], 3)
    result["peak_rss_mb"] = rss_mb()
    return result


def markdown(result: dict[str, Any]) -> str:
    m, s, step, pipe = result["machine"], result["settings"], result["step"], result["pipeline"]
    lines = [f"Benchmark on {m['gpu'] or m['processor']} ({m['cpus']} CPUs, "
             f"{m['torch_threads']} torch threads, torch {m['torch']}, device {m['device']}): "
             f"{s['model']}, {s['image_size']} px, batch {s['batch_size']}, {s['precision']}, "
             f"channels_last {s['channels_last']}, compile {s['compile']}, packed "
             f"{s['packed']}, {s['num_workers']} loader workers; {s['steps']} timed steps in "
             f"{s['rounds']} rounds after {s['warmup']} warm-up steps.", "",
             "| what | value |", "| --- | ---: |",
             f"| framework step (baseline, AU head) | {step['framework_ms']:.2f} ms = "
             f"{step['framework_images_per_s']:.0f} images/s |",
             f"| bare PyTorch loop, same network, loss, optimizer, tensors | "
             f"{step['bare_ms']:.2f} ms = {step['bare_images_per_s']:.0f} images/s |",
             f"| framework / bare (per round: {', '.join(map(str, step['ratio_per_round']))}) "
             f"| {step['ratio']:.3f} |",
             f"| training loader alone (host) | {pipe['loader_images_per_s']:.0f} images/s |",
             f"| device transform alone (copy, augment, normalise) | "
             f"{pipe['transform_images_per_s']:.0f} images/s |",
             f"| loader / model throughput | {pipe['loader_over_model']:.2f}× "
             f"(with the transform: {pipe['loader_and_transform_over_model']:.2f}×) |"]
    for name, entry in result["methods"].items():
        relative = (f"; {entry['step_over_baseline']:.2f}× the baseline's step, "
                    f"{entry['per_face_over_baseline']:.2f}× per face"
                    if "step_over_baseline" in entry else "")
        lines.append(f"| method={name}: step ({entry['faces_per_step']} faces) | "
                     f"{entry['step_ms']:.2f} ms{relative} |")
    cuda = step["peak_cuda_mb"]
    lines.append(f"| peak memory | {result['peak_rss_mb']:.0f} MB resident"
                 + (f", {cuda:.0f} MB CUDA (step)" if cuda is not None else "") + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternations of framework and bare loop")
    parser.add_argument("--methods", default="baseline,mlcr")
    parser.add_argument("--out", default="results/benchmark")
    parser.add_argument("--quick", action="store_true",
                        help="tiny data and model, few steps (for tests)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=resnet18")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    steps, warmup, rounds = args.steps, args.warmup, args.rounds
    if args.quick:
        overrides = [*QUICK, *overrides]
        steps, warmup, rounds = 4, 1, 2
    result = measure(overrides, [m for m in args.methods.split(",") if m], steps, warmup,
                     rounds)
    publish(result, markdown(result), Path(args.out), "benchmark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
