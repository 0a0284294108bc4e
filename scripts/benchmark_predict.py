"""How fast ``affectlab-predict`` reads faces, and whether its memory grows with a video.

    python scripts/benchmark_predict.py [--run RUN_DIR] [--images 512] [--frames 150]
        [--batch-size 64] [--out results/benchmark_predict]

Without ``--run`` a run of the framework's AU/expression/VA network at 112 px is made first
(``model=resnet18 dataset.image_size=112``, two training steps on a tiny synthetic benchmark:
prediction speed depends on the network, not on how long it trained). Then, each in a fresh
process (so that peak memory is the measurement's own):

1. **aligned faces**: a folder of ``--images`` 112-px synthetic faces, each picture one face
   (``--faces whole``: no detection), batches of ``--batch-size``;
2. **video with detection**: an MP4 of ``--frames`` 640×360 frames, a real face (scikit-image's
   astronaut photograph) moving across a textured background, every frame through MTCNN, the
   face cut as a box crop and predicted;
3. **a 4× longer video**: the same at 4 × ``--frames``: the peak resident memory against
   row 2's says whether memory grows with the video's length.

Frames per second (end to end: decoding, detection, cropping, the network, the CSV), the
resident memory once the run is loaded and its peak while predicting (``VmHWM``, reset after
loading) per row; the CPU threads are those of the environment
(``OMP_NUM_THREADS``). Writes ``benchmark_predict.json`` and ``.md`` into ``--out``.
Performance is measured here, never by timed tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import cpu_name, publish  # noqa: E402

# what published tools report, for scale (other pipelines: they also run landmarks, pose,
# gaze, identity; other machines): frames/s, end to end
PUBLISHED = [
    ("py-feat 0.7.0 Detectorv1 (retinaface + landmarks + XGB AUs + ResMaskNet + ArcFace)",
     "arm64 CPU, 1 thread, batch 1, 472-frame video", 5.7,
     "py-feat.org/benchmarks, report 2026-05-04-f44ccb1"),
    ("py-feat 0.7.0 Detectorv1 (same)", "RTX PRO 6000 Blackwell, batch 16, 472-frame video",
     87.1, "py-feat.org/benchmarks, report 2026-05-14-c716340"),
    ("LibreFace (MediaPipe alignment + AU model)", "CPU, batch 16, 72-frame video", 3.9,
     "py-feat/benchmarks dataset, competitors/libreface_speed.json"),
    ("LibreFace (same)", "RTX 3090, batch 16", 4.5,
     "py-feat/benchmarks dataset, competitors/libreface_speed.json"),
]


def make_run(folder: Path) -> Path:
    """A two-step run of ResNet-18 at 112 px on a tiny synthetic benchmark."""
    from hydra import compose, initialize_config_dir

    from affectlab.build import CONFIG_DIR
    from affectlab.train import run

    tiny = ["dataset.num_subjects_train=4", "dataset.images_per_subject_train=8",
            "dataset.num_subjects_unlabeled=2", "dataset.images_per_subject_unlabeled=4",
            "dataset.num_subjects_val=2", "dataset.images_per_subject_val=4",
            "dataset.num_subjects_test=2", "dataset.images_per_subject_test=4"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[
            "method=baseline", "model=resnet18", "model.pretrained=none",
            "dataset.image_size=112", f"dataset.root={folder / 'synthetic'}", *tiny,
            "trainer.max_steps=2", "trainer.batch_size=8", "trainer.progress_bar=false"])
    run(cfg, folder / "run")
    return folder / "run"


def write_faces(folder: Path, count: int, run_dir: Path) -> Path:
    """``count`` 112-px faces (the run's synthetic benchmark's, repeated) as PNG files."""
    sources = sorted((run_dir.parent / "synthetic").rglob("*.png"))
    out = folder / "faces"
    out.mkdir()
    for k in range(count):
        with Image.open(sources[k % len(sources)]) as image:
            image.convert("RGB").resize((112, 112)).save(out / f"face{k:05d}.png")
    return out


def write_video(path: Path, frames: int) -> Path:
    """640×360 frames at 25 fps: the astronaut's face (192 px) gliding over a texture."""
    import av
    from skimage import data

    face = Image.fromarray(data.astronaut()).crop((130, 20, 330, 250)).resize((168, 192))
    rng = np.random.default_rng(0)
    background = (rng.random((360, 640, 3)) * 60 + 90).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for k in range(frames):
            canvas = Image.fromarray(background)
            canvas.paste(face, (int(40 + 400 * (k % 100) / 100), 80))
            for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def measure(source: str, run_dir: str, faces: str, batch_size: int) -> dict[str, Any]:
    """One prediction in this process: frames/s and peak resident memory."""
    from affectlab.predict import predict
    from affectlab.predict.faces import FaceCutter
    from affectlab.predict.runs import Predictor

    predictor = Predictor([run_dir], device="cpu")
    cutter = FaceCutter(predictor.reading, faces=faces, device="cpu")
    loaded = memory_mb("VmRSS")
    reset_peak_memory()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = predict(source, predictor, cutter, Path(tmp) / "out.csv",
                          batch_size=batch_size, progress=False)
        seconds = time.perf_counter() - start
    return {"frames": summary.frames, "faces": summary.faces, "seconds": seconds,
            "frames_per_s": summary.frames / seconds, "loaded_rss_mb": loaded,
            "peak_rss_mb": memory_mb("VmHWM")}


def memory_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak since the last reset) in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_memory() -> None:
    """Start ``VmHWM`` again from the resident memory now (Linux ≥ 4.0), so the peak is the
    prediction's, not the imports' and the loading's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def in_fresh_process(source: Path, run_dir: Path, faces: str, batch_size: int) -> dict[str, Any]:
    result = subprocess.run([sys.executable, __file__, "--measure", str(source), "--run",
                             str(run_dir), "--faces", faces, "--batch-size", str(batch_size)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[tuple[str, dict[str, Any]]], meta: dict[str, Any]) -> str:
    lines = [f"# affectlab-predict throughput ({meta['machine']}, {meta['threads']} CPU "
             f"thread(s), torch {meta['torch']})", "",
             f"Run: {meta['model']}; batches of {meta['batch_size']} faces. End to end: "
             "decoding, face finding and cutting, the network, the CSV.", "",
             "| input | frames | faces | s | frames/s | RSS loaded (MB) | peak RSS predicting "
             "(MB) |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['frames']} | {r['faces']} | {r['seconds']:.1f} | "
                     f"{r['frames_per_s']:.1f} | {r['loaded_rss_mb']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    lines += ["", "Published, for scale (other pipelines: landmarks, pose, gaze, identity "
              "too; other machines):", "", "| tool | setting | frames/s | source |",
              "|---|---|---|---|"]
    lines += [f"| {tool} | {setting} | {fps} | {source} |" for tool, setting, fps, source
              in PUBLISHED]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("results/benchmark_predict"))
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--faces", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, str(args.run), args.faces, args.batch_size)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_dir = args.run or make_run(folder)
        faces = write_faces(folder, args.images, run_dir)
        short = write_video(folder / "short.mp4", args.frames)
        long = write_video(folder / "long.mp4", 4 * args.frames)
        rows = [(f"folder of {args.images} 112-px faces (no detection)",
                 in_fresh_process(faces, run_dir, "whole", args.batch_size)),
                (f"video 640×360, {args.frames} frames, MTCNN on every frame",
                 in_fresh_process(short, run_dir, "detect", args.batch_size)),
                (f"video 640×360, {4 * args.frames} frames, MTCNN on every frame",
                 in_fresh_process(long, run_dir, "detect", args.batch_size))]
        model = ("ResNet-18 at 112 px (AU, expression, VA heads)" if args.run is None
                 else str(args.run))
    meta = {"machine": f"{cpu_name()}, {platform.machine()}",
            "threads": os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads())),
            "torch": torch.__version__, "model": model, "batch_size": args.batch_size}
    publish({"meta": meta, "rows": dict(rows), "published": PUBLISHED},
            table(rows, meta), args.out, "benchmark_predict")


if __name__ == "__main__":
    main()
