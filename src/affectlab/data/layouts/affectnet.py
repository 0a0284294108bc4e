"""AffectNet written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.affectnet`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.layouts.faces import LayoutFace
from affectlab.data.sources.affectnet import (
    AFFECTNET_TO_EXPRESSION,
    HEADER,
    IMAGE_DIRS,
    LIST_DIRS,
    LISTS,
    MASKED_CLASSES,
    VA_SENTINEL,
)

EXPRESSION_TO_AFFECTNET = {e: code for code, e in enumerate(AFFECTNET_TO_EXPRESSION)}


def _landmarks(box: tuple[int, int, int, int]) -> str:
    """68 points on an ellipse inside the box, as the release writes them (``;``-separated)."""
    x, y, w, h = box
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([x + w / 2 + 0.4 * w * np.cos(angles),
                       y + h / 2 + 0.45 * h * np.sin(angles)], 1)
    return ";".join(f"{v:.2f}" for v in points.ravel())


def write_layout(faces: list[LayoutFace], root: Path, *, validation_every: int = 4,
                 special_every: int = 5, nested: bool = True, lists_dir: str = LIST_DIRS[0],
                 seed: int = 0) -> dict[str, dict]:
    """Write synthetic faces as an AffectNet release; return what was written, per sample id.

    Every ``validation_every``-th face goes to ``validation.csv``, the rest to
    ``training.csv``. Each face is pasted at a random place on a larger noisy canvas (JPEG,
    quality 95) whose box the CSV gives, under a numbered folder with a hex file name. The
    expression is the face's, in AffectNet's codes; every ``special_every``-th face gets
    instead one of the classes without an ABAW counterpart, cycling 7 Contempt, 8 None,
    9 Uncertain, 10 No-Face; 9 and 10 get the VA sentinel −2, the others the face's VA
    (6 decimals, as the release). ``nested``: images under
    ``Manually_Annotated/Manually_Annotated_Images`` (else ``Manually_Annotated_Images``);
    ``lists_dir``: folder of the CSVs (``.``: the root).

    Returns:
        ``{sample id: {"partition": "training" | "validation", "face": position in faces,
        "code": AffectNet class, "expression": EXPRESSIONS index or None, "va": (valence,
        arousal) as written or None, "box": (x, y, w, h)}}``.
    """
    root = Path(root)
    images = root / IMAGE_DIRS[0 if nested else 1]
    rows: dict[str, list[str]] = {p: [] for p in LISTS}
    written: dict[str, dict] = {}
    specials = 0
    for i, face in enumerate(faces):
        partition = LISTS[1] if i % validation_every == validation_every - 1 else LISTS[0]
        folder = str(1 + (face.subject * 7 + face.index) % 13)
        digest = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest()[:30]
        relative = f"{folder}/{digest}.jpg"
        size = face.image.shape[0]
        rng = np.random.default_rng([seed, i])
        width, height = (size + int(rng.integers(size // 4, size)) for _ in range(2))
        x, y = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
        canvas = rng.integers(40, 215, (height, width, 3)).astype(np.uint8)
        canvas[y:y + size, x:x + size] = face.image
        (images / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvas).save(images / relative, quality=95)
        code = EXPRESSION_TO_AFFECTNET[face.labels.expression]
        if i % special_every == special_every - 1:
            code = MASKED_CLASSES[specials % len(MASKED_CLASSES)]
            specials += 1
        va: tuple[float, float] | None = (round(face.labels.valence, 6),
                                          round(face.labels.arousal, 6))
        if code in (9, 10):
            va = None
        shown = va if va is not None else (VA_SENTINEL, VA_SENTINEL)
        box = (x, y, size, size)
        rows[partition].append(f"{relative},{x},{y},{size},{size},{_landmarks(box)},{code},"
                               f"{shown[0]:.6f},{shown[1]:.6f}")
        written[f"{partition}/{relative}"] = {
            "partition": partition, "face": i, "code": code,
            "expression": AFFECTNET_TO_EXPRESSION[code] if code < 7 else None, "va": va,
            "box": box}
    (root / lists_dir).mkdir(parents=True, exist_ok=True)
    for partition, lines in rows.items():
        (root / lists_dir / f"{partition}.csv").write_text(
            ",".join(HEADER) + "\n" + "".join(line + "\n" for line in lines))
    return written



__all__ = ["EXPRESSION_TO_AFFECTNET", "write_layout"]
