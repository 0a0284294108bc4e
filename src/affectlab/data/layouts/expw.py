"""ExpW written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.expw`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.layouts.faces import LayoutFace
from affectlab.data.sources.expw import EXPW_CLASSES, EXPW_TO_EXPRESSION, IMAGE_DIRS, LABEL_FILES

EXPRESSION_TO_EXPW = {e: code for code, e in enumerate(EXPW_TO_EXPRESSION)}
_WORDS = ("actor", "student", "family", "crowd", "wedding", "player", "baby", "teacher")


def write_layout(faces: list[LayoutFace], root: Path, *,
                 faces_per_image: tuple[int, ...] = (1, 2, 3), nested: bool = True,
                 seed: int = 0) -> dict[str, dict]:
    """Write synthetic faces as an ExpW release; return what was written, per sample id.

    Consecutive faces share one web image, ``faces_per_image`` cycling (1, 2, 3 faces …). The
    image is a noisy canvas with the faces side by side at different heights (so that reading
    the box fields in the wrong order finds no face); it is named like ExpW's
    (``<class of its first face>_<word>_<n>.jpg``, JPEG quality 95). ``label.lst`` gets one
    line per face, ``name face_id top left right bottom confidence expression``, the
    expression in ExpW's codes. ``nested``: ``image/origin`` + ``label/label.lst`` (else
    ``origin`` + ``label.lst`` at the root).

    Returns:
        ``{"<image>#<face_id>": {"image": name, "face": position in faces, "code": ExpW
        class, "expression": EXPRESSIONS index, "box": (left, top, right, bottom)}}``.
    """
    root = Path(root)
    image_dir = root / IMAGE_DIRS[0 if nested else 1]
    label_file = root / LABEL_FILES[0 if nested else 1]
    image_dir.mkdir(parents=True, exist_ok=True)
    label_file.parent.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict] = {}
    lines: list[str] = []
    start, group = 0, 0
    while start < len(faces):
        members = faces[start:start + faces_per_image[group % len(faces_per_image)]]
        size = members[0].image.shape[0]
        gap = size // 3
        rng = np.random.default_rng([seed, group])
        width = gap + len(members) * (size + gap)
        height = 2 * size
        canvas = rng.integers(40, 215, (height, width, 3)).astype(np.uint8)
        first = EXPW_CLASSES[EXPRESSION_TO_EXPW[members[0].labels.expression]]
        name = f"{first}_{_WORDS[group % len(_WORDS)]}_{group + 1}.jpg"
        for face_id, face in enumerate(members):
            left = gap + face_id * (size + gap)
            top = int(rng.integers(0, height - size + 1))
            canvas[top:top + size, left:left + size] = face.image
            code = EXPRESSION_TO_EXPW[face.labels.expression]
            box = (left, top, left + size, top + size)
            lines.append(f"{name} {face_id} {top} {left} {left + size} {top + size} "
                         f"{rng.uniform(20, 60):.1f} {code}\n")
            written[f"{name}#{face_id}"] = {"image": name, "face": start + face_id, "code": code,
                                           "expression": face.labels.expression, "box": box}
        Image.fromarray(canvas).save(image_dir / name, quality=95)
        start += len(members)
        group += 1
    label_file.write_text("".join(lines))
    return written



__all__ = ["EXPRESSION_TO_EXPW", "write_layout"]
