"""CK+ written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.ckplus`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.faces.alignment import template_landmarks68
from affectlab.data.layouts.faces import LayoutFace
from affectlab.data.sources.ckplus import CK_TO_EXPRESSION, IMAGES_DIR, LANDMARKS_DIR, MAX_INTENSITY

# Subject folders as CK+ names them: three digits, not contiguous, a few odd ones.
SUBJECT_NAMES = tuple(f"S{n:03d}" for n in (5, 10, 11, 14, 22, 26, 32, 34, 37, 42, 44, 46, 50,
                                            52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
                                            65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77,
                                            78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90,
                                            91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 501, 502,
                                            503, 504, 505, 506, 895, 999))
EXPRESSION_TO_CK = {e: ck for ck, e in enumerate(CK_TO_EXPRESSION) if e is not None}


def _ascii(values: list[float]) -> str:
    """One line as MATLAB's ``save -ascii`` writes it: 3 spaces before each number."""
    return "".join(f"   {v:.7e}" for v in values) + "\n"


def write_layout(faces: list[LayoutFace], root: Path, *, frames_per_sequence: int = 3,
                 facs_dir: str = "FACS", emotion_dir: str = "Emotion",
                 emotion_every: int = 2) -> dict[str, dict]:
    """Write synthetic faces as a CK+ tree; return what was written, per peak-frame sample id.

    Each face becomes one sequence of its subject (``frames_per_sequence`` frames, the face
    as the last, peak frame, earlier frames the same face dimmed towards neutral grey), with a
    FACS file (present AUs with intensity codes 1–5 from the face's intensity, every third
    one written as 0 = "not coded") and, for every ``emotion_every``-th sequence of a subject,
    an emotion file. Occluded AUs (LayoutFace label 999) are written by their true intensity:
    CK+ has no "unknown". ``facs_dir``/``emotion_dir``: ``FACS`` or ``FACS_labels/FACS``, etc.

    Returns:
        ``{sample id: {"subject": "S005", "aus": {AU: 0/1 for every synthetic AU},
        "expression": EXPRESSIONS index or None}}`` for the peak frames.
    """
    if len({f.subject for f in faces}) > len(SUBJECT_NAMES):
        raise ValueError(f"write_layout: at most {len(SUBJECT_NAMES)} subjects")
    written: dict[str, dict] = {}
    sequences: dict[int, int] = {}
    for face in faces:
        subject = SUBJECT_NAMES[face.subject]
        sequences[face.subject] = sequences.get(face.subject, 0) + 1
        number = f"{sequences[face.subject]:03d}"
        folder = root / IMAGES_DIR / subject / number
        folder.mkdir(parents=True, exist_ok=True)
        for frame in range(1, frames_per_sequence + 1):
            weight = frame / frames_per_sequence
            image = face.image.astype(np.float32) * weight + 128.0 * (1 - weight)
            stem = f"{subject}_{number}_{frame:08d}"
            Image.fromarray(image.astype(np.uint8)).convert("L").save(folder / f"{stem}.png")
            landmarks = root / LANDMARKS_DIR / subject / number / f"{stem}_landmarks.txt"
            landmarks.parent.mkdir(parents=True, exist_ok=True)
            landmarks.write_text("".join(_ascii(list(p))
                                         for p in template_landmarks68(face.image.shape[0])))
        peak = f"{subject}_{number}_{frames_per_sequence:08d}"
        present = {au: v > 0 for au, v in face.labels.intensity.items()}
        lines = []
        for k, au in enumerate(sorted(a for a, on in present.items() if on)):
            code = 0 if k % 3 == 2 else max(1, min(MAX_INTENSITY,
                                                   round(face.labels.intensity[au] * 5)))
            lines.append(_ascii([au, code]))
        facs = root / facs_dir / subject / number / f"{peak}_facs.txt"
        facs.parent.mkdir(parents=True, exist_ok=True)
        facs.write_text("".join(lines))
        expression = None
        if (sequences[face.subject] - 1) % emotion_every == 0:
            expression = face.labels.expression
            emotion = root / emotion_dir / subject / number / f"{peak}_emotion.txt"
            emotion.parent.mkdir(parents=True, exist_ok=True)
            emotion.write_text(_ascii([EXPRESSION_TO_CK[expression]]))
        written[f"{IMAGES_DIR}/{subject}/{number}/{peak}.png"] = {
            "subject": subject, "aus": {au: int(on) for au, on in present.items()},
            "expression": expression}
    return written



__all__ = ["EXPRESSION_TO_CK", "SUBJECT_NAMES", "write_layout"]
