"""What a CNN-RNN training step spends in its frozen CNN: the upper bound of a feature cache.

    python scripts/benchmark_cnn_rnn.py [--steps 10] [--warmup 2] [--out results/benchmark_cnn_rnn]
                                        [OVERRIDE ...]

For the CNN-RNN the Hydra overrides give (default: Table 3's, ``recipe=distill_sequences_
synthetic``: the synthetic clips read a frame a clip, windows of 32 frames, batch 8, the small
CNN frozen), on the trainer's device: the time of one training step computed on the fly
(the frozen CNN's forward on every frame of every window, the GRUs and heads forward and
backward, the optimizer) and of the CNN's forward alone on the same windows. Features cached
once per frame would remove the second from the first at most (a cache lookup is not free), so
the ratio bounds what caching can save. Writes ``benchmark_cnn_rnn.json`` and ``.md`` into
``--out``. Performance is measured here, never by timed tests.
"""

from __future__ import annotations

import argparse
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

TABLE_3 = ["experiment=tsav_synthetic", "dataset.train_labels=one_task", "dataset.audio=null",
           "method=baseline", "method.heads.va.form=bins", "model=cnn_rnn",
           "dataset.clip.length=1", "dataset.clip.mask=false",
           "sequence={length: 32, stride: 16}", "trainer.batch_size=8"]


def measure(overrides: list[str], steps: int, warmup: int) -> dict[str, Any]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*TABLE_3, *overrides])
    configure_threads(cfg)
    seed_everything(0)
    data, method = build_data(cfg, pack=False), build_method(cfg)
    device = resolve_device(cfg.trainer.device)
    method.prepare(data)
    method.to(device).train()
    loader = torch.utils.data.DataLoader(data.train, batch_size=int(cfg.trainer.batch_size),
                                         shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    prepared = []
    for raw in loader:
        prepared.append({k: v.to(device) for k, v in raw.items()})
        if len(prepared) == steps + warmup:
            break
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    cnn = method.backbone.cnn
    step_s, cnn_s = [], []
    for k, raw in enumerate(prepared):
        batch = data.transform(dict(raw), train=True)
        sync(device)
        started = time.perf_counter()
        loss = method(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        middle = time.perf_counter()
        with torch.no_grad():
            cnn.forward_features(batch["clip"].flatten(0, 1))
        sync(device)
        if k >= warmup:
            step_s.append(middle - started)
            cnn_s.append(time.perf_counter() - middle)
    step, frozen = sum(step_s) / len(step_s), sum(cnn_s) / len(cnn_s)
    shape = list(prepared[0]["clip"].shape)
    return {"machine": {"cpu": cpu_name(), "cpus": usable_cpus(),
                        "threads": torch.get_num_threads(), "device": str(device),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda"
                        else None, "torch": torch.__version__},
            "overrides": overrides, "steps": steps, "warmup": warmup, "batch_shape": shape,
            "step_ms": 1000 * step, "cnn_forward_ms": 1000 * frozen,
            "cnn_share": frozen / step}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    return "\n".join([
        f"CNN-RNN training step on the fly — {m['device']} ({m['cpu']}, {m['threads']} "
        f"thread(s){', ' + m['gpu'] if m['gpu'] else ''}), windows {result['batch_shape']}, "
        f"{result['steps']} steps", "",
        "| | ms |", "|---|---|",
        f"| training step, features on the fly | {result['step_ms']:.1f} |",
        f"| of which could be cached: the frozen CNN's forward | {result['cnn_forward_ms']:.1f} |",
        "", f"A per-frame feature cache would save at most {100 * result['cnn_share']:.0f} % of "
        "a step.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/benchmark_cnn_rnn"))
    args = parser.parse_args(argv)
    result = measure(args.overrides, args.steps, args.warmup)
    publish(result, markdown(result), args.out, "benchmark_cnn_rnn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
