"""BP4D written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.bp4d`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.faces.alignment import IBUG68_TO_49, template_landmarks68
from affectlab.data.layouts.faces import LayoutFace
from affectlab.data.sources.bp4d import PARTS, SUBJECTS, UNKNOWN
from affectlab.data.sources.synthetic.story import UNKNOWN as LAYOUT_UNKNOWN


def default_subjects(n: int) -> list[str]:
    """``n`` real BP4D subject ids, taken round-robin from part1, part2, part3 (so that a small
    tree still has subjects in every part); all 41 for ``n = 41``."""
    order = [part[i] for i in range(max(map(len, PARTS))) for part in PARTS if i < len(part)]
    if not 0 <= n <= len(order):
        raise ValueError(f"BP4D has {len(order)} subjects; cannot name {n}")
    return order[:n]


def first_frame(subject: str, task: int) -> int:
    """A deterministic mid-sequence first frame in [100, 3000): some below 1000, so that the
    zero padding of the names matters (F001/T1 → 2440 as in the real release)."""
    s = SUBJECTS.index(subject) if subject in SUBJECTS else sum(map(ord, subject))
    return 100 + (2340 + 389 * s + 151 * (task - 1)) % 2900


def write_layout(faces: list[LayoutFace], root: Path, *, subjects: list[str] | None = None,
                 tasks_per_subject: int = 1, image_dir: str = "BP4D-training",
                 au_occ_dir: str = "AUCoding/AU_OCC", image_format: str = "jpg",
                 pad_width: int = 4, header_aus: Sequence[int] = tuple(range(1, 29)),
                 rows_without_image: int = 0, features_dir: str | None = "2DFeatures",
                 frames_without_landmarks: int = 0) -> None:
    """Write synthetic faces as a BP4D tree under ``root`` (see the module doc for the layout).

    Faces are grouped by ``face.subject`` (sorted; the i-th identity becomes ``subjects[i]``,
    default :func:`default_subjects`), and each subject's faces, in ``face.index`` order, are
    cut into ``tasks_per_subject`` consecutive tasks T1..Tn. A sequence's frames are numbered
    from :func:`first_frame` on; images go to ``image_dir/<subject>/<task>/<frame>.<format>``
    with the frame number zero-padded to ``pad_width`` digits (0: no padding).

    Each ``au_occ_dir/<subject>_<task>.csv`` has the integer header ``0,<header_aus...>`` and
    one row per face: its annotated label (1 / 0) for every AU the synthetic faces render, 9
    where the face's label is unknown (LayoutFace's 999: occluded) and for every AU the faces
    do not render (e.g. 14 and 24 of the BP4D 12). The first ``rows_without_image`` sequences
    get one extra row (the next frame number, labels all 0) whose image is not written, like
    BP4D's frames lost to tracking failures.

    With ``features_dir`` each sequence also gets ``<features_dir>/<subject>_<task>.mat`` as
    the release has it (MATLAB v7.3 / HDF5, ``fit/pred`` one cell per video frame from 1,
    empty before the coded segment): the 49 points whose eye centres, nose tip and mouth
    corners sit on the MLCR-240 template scaled to the frame, 1-based. The first
    ``frames_without_landmarks`` coded frames of the first sequence get an empty cell.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format={image_format!r}: use jpg or png")
    if tasks_per_subject < 1:
        raise ValueError(f"tasks_per_subject={tasks_per_subject} must be >= 1")
    identities = sorted({f.subject for f in faces})
    names = list(subjects) if subjects is not None else default_subjects(len(identities))
    if len(names) < len(identities):
        raise ValueError(f"{len(identities)} face identities but only {len(names)} subject names")
    root = Path(root)
    (root / au_occ_dir).mkdir(parents=True, exist_ok=True)
    written_sequences = 0
    for identity, subject in zip(identities, names):
        own = sorted((f for f in faces if f.subject == identity), key=lambda f: f.index)
        per_task = -(-len(own) // tasks_per_subject)   # ceil: the last task may be shorter
        for t in range(tasks_per_subject):
            chunk = own[t * per_task:(t + 1) * per_task]
            if not chunk:
                continue
            task = f"T{t + 1}"
            folder = root / image_dir / subject / task
            folder.mkdir(parents=True, exist_ok=True)
            start = first_frame(subject, t + 1)
            lines = [",".join(["0", *map(str, header_aus)])]
            for k, face in enumerate(chunk):
                frame = start + k
                image = Image.fromarray(face.image)
                image.save(folder / f"{frame:0{pad_width}d}.{image_format}",
                           **({"quality": 95} if image_format == "jpg" else {}))
                codes = []
                for au in header_aus:
                    label = face.labels.au_labels.get(au)
                    codes.append(UNKNOWN if label is None or label == LAYOUT_UNKNOWN
                                 else int(label))
                lines.append(",".join(map(str, [frame, *codes])))
            if written_sequences < rows_without_image:
                lines.append(",".join(map(str, [start + len(chunk), *[0] * len(header_aus)])))
            if features_dir is not None:
                tracked = [start + k for k in range(len(chunk))]
                if written_sequences == 0:
                    tracked = tracked[frames_without_landmarks:]
                marks = template_landmarks68(chunk[0].image.shape[0])[list(IBUG68_TO_49)]
                write_2d_features(root / features_dir / f"{subject}_{task}.mat",
                                  {frame: marks for frame in tracked}, start + len(chunk) - 1)
            written_sequences += 1
            (root / au_occ_dir / f"{subject}_{task}.csv").write_text("\n".join(lines) + "\n")


def write_2d_features(path: Path, landmarks: dict[int, np.ndarray], num_frames: int) -> None:
    """Write a 2DFeatures ``.mat`` as MATLAB v7.3 stores it (HDF5): struct ``fit`` with the
    cell array ``pred`` (one object reference per frame 1..``num_frames``) into ``#refs#``;
    frame k's cell is its (49, 2) 0-based ``landmarks[k]`` as a 1-based 2 × 49 dataset (MATLAB's
    column-major 49 × 2), or MATLAB's empty matrix where ``landmarks`` has no entry."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as mat:
        refs = mat.create_group("#refs#")
        fit = mat.create_group("fit")
        fit.attrs["MATLAB_class"] = np.bytes_("struct")
        pred = fit.create_dataset("pred", (num_frames, 1), dtype=h5py.ref_dtype)
        pred.attrs["MATLAB_class"] = np.bytes_("cell")
        # one empty matrix serves every untracked frame (MATLAB writes one each; same reading)
        empty = refs.create_dataset("empty", data=np.zeros(2, dtype=np.uint64))
        empty.attrs["MATLAB_class"] = np.bytes_("double")
        empty.attrs["MATLAB_empty"] = np.uint8(1)
        cells = np.full((num_frames, 1), empty.ref, dtype=h5py.ref_dtype)
        for frame, marks in landmarks.items():
            cell = refs.create_dataset(f"f{frame}", data=(np.asarray(marks) + 1.0).T)
            cell.attrs["MATLAB_class"] = np.bytes_("double")
            cells[frame - 1, 0] = cell.ref
        pred[...] = cells



__all__ = ["default_subjects", "first_frame", "write_2d_features", "write_layout"]
