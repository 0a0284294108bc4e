"""DISFA written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.disfa`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.layouts.faces import LayoutFace
from affectlab.data.sources.disfa import (
    CODED_AUS,
    DEFAULT_IMAGE_DIRS,
    LABELS_DIR,
    MAX_INTENSITY,
    SUBJECTS,
    au_file_name,
    frame_image_path,
)


def to_disfa_intensity(value: float) -> int:
    """A synthetic intensity in [0, 1] (0 = absent) as a DISFA code 0–5: present AUs get at
    least 1 (A), so weak ones land below the ≥ 2 threshold and strong ones above it."""
    if value <= 0:
        return 0
    return int(min(MAX_INTENSITY, max(1, round(value * MAX_INTENSITY))))


def write_layout(faces: list[LayoutFace], root: Path, *, cameras: tuple[str, ...] = ("left",),
                 frame_naming: str = "video", image_dir: str | None = None,
                 image_ext: str = "png", short_subject: str | None = "SN010",
                 truncated_au_file: tuple[str, int] | None = None) -> dict[str, dict]:
    """Write synthetic faces as a DISFA tree; return what was written, per sample id.

    Face k of synthetic subject s becomes frame k + 1 of DISFA subject ``SUBJECTS[s]`` (SN001,
    SN002, …, the real ids, in sorted order): its image in the extraction ``frame_naming`` names
    (one per camera in ``cameras``; the right camera sees the face mirrored) and one
    ``frame,intensity`` line in each of the subject's 12 ``SNxxx_auN.txt`` files, the intensity
    being :func:`to_disfa_intensity` of the face's (occluded AUs too: DISFA has no "unknown").

    Args:
        short_subject: this subject gets one frame fewer in every file and folder, as SN010
            (4,844 frames) in the real data: consistent, so not a problem. None: no such subject.
        truncated_au_file: ``(subject, AU)`` whose file lacks its last line — AU files that
            disagree on the frame count, a problem the reader reports.

    Returns:
        ``{sample id: {"subject": "SN001", "frame": 1, "camera": "left", "intensity": {AU: 0-5},
        "aus": {AU: 0/1 at intensity ≥ 2}, "complete": False if a line of it was truncated}}``
        over the 12 coded AUs, for every image written.
    """
    if max((f.subject for f in faces), default=0) >= len(SUBJECTS):
        raise ValueError(f"write_layout: DISFA has {len(SUBJECTS)} subjects")
    image_dir = image_dir if image_dir is not None else DEFAULT_IMAGE_DIRS[frame_naming]
    by_subject: dict[str, list[LayoutFace]] = {}
    for face in sorted(faces, key=lambda f: (f.subject, f.index)):
        by_subject.setdefault(SUBJECTS[face.subject], []).append(face)
    written: dict[str, dict] = {}
    for subject, subject_faces in by_subject.items():
        if subject == short_subject and len(subject_faces) > 1:
            subject_faces = subject_faces[:-1]
        lines: dict[int, list[str]] = {au: [] for au in CODED_AUS}
        for frame, face in enumerate(subject_faces, start=1):
            intensity = {au: to_disfa_intensity(face.labels.intensity.get(au, 0.0))
                         for au in CODED_AUS}
            for au in CODED_AUS:
                lines[au].append(f"{frame},{intensity[au]}\n")
            for camera in cameras:
                relative = frame_image_path(subject, frame, frame_naming=frame_naming,
                                            camera=camera, image_dir=image_dir,
                                            image_ext=image_ext)
                path = root / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = face.image if camera == "left" else face.image[:, ::-1]
                Image.fromarray(np.ascontiguousarray(pixels)).save(path)
                written[relative] = {
                    "subject": subject, "frame": frame, "camera": camera,
                    "intensity": intensity,
                    "aus": {au: int(v >= 2) for au, v in intensity.items()}, "complete": True}
        if truncated_au_file is not None and truncated_au_file[0] == subject:
            au = truncated_au_file[1]
            lines[au] = lines[au][:-1]
            last = len(subject_faces)
            for entry in written.values():
                if entry["subject"] == subject and entry["frame"] == last:
                    entry["complete"] = False
        folder = root / LABELS_DIR / subject
        folder.mkdir(parents=True, exist_ok=True)
        for au in CODED_AUS:
            (folder / au_file_name(subject, au)).write_text("".join(lines[au]))
    return written



__all__ = ["to_disfa_intensity", "write_layout"]
