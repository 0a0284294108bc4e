"""Face-detection throughput of ``dataset.crop=detect`` (MTCNN), in images/s.

    python scripts/benchmark_face_detection.py [--images 50] [--size 640x490] [--device cpu]
        [--min-face-size 40]

Draws synthetic faces (the benchmark's, 256 px) onto noisy canvases of ``--size`` (width x
height; 640x490 = a CK+ frame, 1040x1392 = a BP4D frame), runs the detector on each once after
one warm-up image, and prints one JSON line: images/s, the share of images with a face, the
device and the settings. Detection runs once per image (results are cached), so this is the cost
of the first epoch or of ``scripts/preprocess.py``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image

from affectlab.data.faces.detection import MTCNN
from affectlab.data.layouts.faces import layout_faces


def canvases(count: int, width: int, height: int, seed: int = 0) -> list[Image.Image]:
    """``count`` frames: grey noise with one synthetic face at ~40 % of the shorter side."""
    rng = np.random.default_rng(seed)
    faces = layout_faces(max(1, count // 2), 2, seed=seed, image_size=256)[:count]
    out = []
    for face in faces:
        frame = rng.normal(110, 25, (height, width, 3)).clip(0, 255).astype(np.uint8)
        canvas = Image.fromarray(frame)
        side = int(0.4 * min(width, height))
        x = int(rng.integers(0, width - side + 1))
        y = int(rng.integers(0, height - side + 1))
        canvas.paste(Image.fromarray(face.image).resize((side, side)), (x, y))
        out.append(canvas)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--size", default="640x490", help="width x height of each frame")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--min-face-size", type=int, default=40)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    frames = canvases(args.images, width, height)
    detector = MTCNN(min_face_size=args.min_face_size, device=args.device)
    detector.detect(frames[0])   # loads the weights, warms up kernels
    start = time.perf_counter()
    found = sum(detector.largest_face(frame) is not None for frame in frames)
    elapsed = time.perf_counter() - start
    print(json.dumps({"images_per_s": round(len(frames) / elapsed, 1),
                      "found_share": round(found / len(frames), 3), "images": len(frames),
                      "size": f"{width}x{height}", "device": str(detector.device),
                      "min_face_size": args.min_face_size}))


if __name__ == "__main__":
    main()
