"""What a TSAV training step costs, and whether channels-last-3d or ``torch.compile`` help a 3-D
network: clips/s of forward + backward + Adam on random clips and spectrograms.

    python scripts/benchmark_clip_step.py [--arch r2plus1d_18] [--size 112] [--batch 16]
                                          [--steps 20] [--warmup 5] [--out DIR] [--quick]

One process, the device the trainer would pick (CUDA when present; bf16 autocast there, as
``trainer.precision=bf16``), TSAV's inputs at TSAV's geometry by default (8 frames of 4 channels
at 112 px, a (1, 64, 1001) log-mel window), four variants of the same step:

- ``eager``: the layout PyTorch gives (clips (N, C, T, H, W) contiguous);
- ``channels_last_3d``: Conv3d weights and their inputs in NDHWC order
  (``torch.channels_last_3d``: the trainer's ``channels_last_3d``);
- ``compile`` and ``compile_channels_last_3d``: the model under ``torch.compile``.

Each variant is timed after ``--warmup`` untimed steps (compilation happens there). Writes
``clip_step.json`` into ``--out`` (when given) and prints it. ``--quick``: the small arch at
32 px, batch 4, 2 steps, eager and channels-last only (a CPU check of the script itself).
Benchmarks live here, not in timed tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from affectlab.engine.loop import channels_last_3d_layout
from affectlab.models.tsav import TSAV
from affectlab.utils import atomic_write_json

VARIANTS = ("eager", "channels_last_3d", "compile", "compile_channels_last_3d")


class StepModel(torch.nn.Module):
    """TSAV and a linear head: (clip, audio) → (N, outputs) logits."""

    def __init__(self, tsav: TSAV, outputs: int) -> None:
        super().__init__()
        self.tsav, self.head = tsav, torch.nn.Linear(tsav.num_features, outputs)

    def forward(self, clip: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.head(self.tsav(clip, audio))


def time_variant(variant: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    tsav = TSAV(arch=args.arch, small_widths=[16, 32, 64, 128])
    model = StepModel(tsav, outputs=12 + 7 + 2).to(device)
    if variant.endswith("channels_last_3d"):
        channels_last_3d_layout(model)
    step_model = torch.compile(model) if variant.startswith("compile") else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    clips = torch.randn(args.batch, args.frames, 4, args.size, args.size, device=device)
    audio = torch.randn(args.batch, 1, 64, args.audio_frames, device=device)
    targets = torch.rand(args.batch, 21, device=device).round()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with autocast:
            loss = F.binary_cross_entropy_with_logits(step_model(clips, audio).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"clips_per_s": round(args.steps * args.batch / seconds, 2),
            "step_ms": round(1000 * seconds / args.steps, 1), "warmup_s": round(warmup_s, 1),
            "peak_cuda_mb": (round(torch.cuda.max_memory_allocated() / 2**20)
                             if device.type == "cuda" else None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="r2plus1d_18", choices=("r2plus1d_18", "small"))
    parser.add_argument("--size", type=int, default=112, help="frame size in pixels")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--audio-frames", type=int, default=1001,
                        help="spectrogram frames per window (TSAV: 10 s at 10 ms hops)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=None, help="folder for clip_step.json")
    parser.add_argument("--quick", action="store_true",
                        help="small arch, 32 px, batch 4, 2 steps, no compile (a CPU check)")
    args = parser.parse_args(argv)
    if args.quick:
        args.arch, args.size, args.batch, args.steps, args.warmup = "small", 32, 4, 2, 1
        args.audio_frames, args.variants = 101, "eager,channels_last_3d"
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose among {', '.join(VARIANTS)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result: dict[str, Any] = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "precision": "bf16" if device.type == "cuda" else "fp32",
        "settings": {"arch": args.arch, "batch": args.batch, "frames": args.frames,
                     "size": args.size, "audio_frames": args.audio_frames,
                     "steps": args.steps, "warmup": args.warmup},
        "variants": {}}
    for variant in variants:
        try:
            result["variants"][variant] = time_variant(variant, args, device)
        except Exception as error:     # one failed variant (e.g. a compile error) is recorded
            result["variants"][variant] = {"error": f"{type(error).__name__}: {error}"[:500]}
    eager = result["variants"].get("eager", {}).get("clips_per_s")
    for entry in result["variants"].values():
        if eager and "clips_per_s" in entry:
            entry["speed_vs_eager"] = round(entry["clips_per_s"] / eager, 3)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(result, Path(args.out) / "clip_step.json")
    print(json.dumps(result))
    return 0 if all("error" not in v for v in result["variants"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
