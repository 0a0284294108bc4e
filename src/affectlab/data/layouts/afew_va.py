"""AFEW-VA clips written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.afew_va`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.layouts.faces import LayoutFace
from affectlab.data.sources.afew_va import NUM_LANDMARKS, VA_SCALE


def _points(x: int, y: int, size: int) -> list[list[float]]:
    """68 points on the ellipse inscribed in the face square: their box is the square."""
    angles = np.linspace(0, 2 * np.pi, NUM_LANDMARKS, endpoint=False)
    return [[round(x + size / 2 * (1 + np.cos(t)), 3), round(y + size / 2 * (1 + np.sin(t)), 3)]
            for t in angles]


def write_layout(faces: list[LayoutFace], root: Path, *, frames_per_clip: int = 4,
                 clips_per_part: int | None = None, seed: int = 0) -> dict[str, dict]:
    """Write synthetic faces as AFEW-VA clips; return what was written, per sample id.

    Each subject's faces are cut into clips of ``frames_per_clip`` consecutive frames (clips
    numbered ``001``, ``002`` … across subjects; with ``clips_per_part``, grouped into part
    folders ``01``, ``02`` …). A frame is the face pasted at a random place on a larger noisy
    canvas (PNG ``00000.png`` …); its JSON entry has valence and arousal as the release's
    integers (the face's value × 10, rounded) and 68 landmarks whose bounding box is the face
    square. The JSON holds an extra top-level key and one frame per line.

    Returns:
        ``{frame path: {"clip": clip path, "face": position in faces, "key": frame key,
        "raw": (valence, arousal) integers as written, "va": raw / 10, "box": (x0, y0, x1,
        y1)}}``.
    """
    root = Path(root)
    written: dict[str, dict] = {}
    by_subject: dict[int, list[int]] = {}
    for i, face in enumerate(faces):
        by_subject.setdefault(face.subject, []).append(i)
    clip_number = 0
    for subject in sorted(by_subject):
        members = by_subject[subject]
        for start in range(0, len(members), frames_per_clip):
            clip_number += 1
            name = f"{clip_number:03d}"
            relative = (f"{(clip_number - 1) // clips_per_part + 1:02d}/{name}"
                        if clips_per_part else name)
            folder = root / relative
            folder.mkdir(parents=True, exist_ok=True)
            entries = []
            for k, i in enumerate(members[start:start + frames_per_clip]):
                face = faces[i]
                size = face.image.shape[0]
                rng = np.random.default_rng([seed, i])
                width, height = (size + int(rng.integers(size // 4, size)) for _ in range(2))
                x = int(rng.integers(0, width - size + 1))
                y = int(rng.integers(0, height - size + 1))
                canvas = rng.integers(40, 215, (height, width, 3)).astype(np.uint8)
                canvas[y:y + size, x:x + size] = face.image
                key = f"{k:05d}"
                Image.fromarray(canvas).save(folder / f"{key}.png")
                raw = tuple(int(np.clip(round(v * VA_SCALE), -VA_SCALE, VA_SCALE))
                            for v in (face.labels.valence, face.labels.arousal))
                entry = {"valence": raw[0], "arousal": raw[1], "landmarks": _points(x, y, size)}
                entries.append(f'  "{key}": {json.dumps(entry)}')
                written[f"{relative}/{key}.png"] = {
                    "clip": relative, "face": i, "key": key, "raw": raw,
                    "va": (raw[0] / VA_SCALE, raw[1] / VA_SCALE), "box": (x, y, x + size, y + size)}
            (folder / f"{name}.json").write_text(
                f'{{"actor": "actor_{subject}", "frames": {{\n' + ",\n".join(entries) + "\n}}\n")
    return written



__all__ = ["write_layout"]
