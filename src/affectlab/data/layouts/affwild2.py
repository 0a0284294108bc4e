"""Aff-Wild2 written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.affwild2`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.layouts.faces import LayoutFace
from affectlab.data.sources.affwild2 import (
    AU_UNKNOWN,
    EXPR_HEADER,
    EXPR_UNKNOWN,
    OFFICIAL,
    RELEASE_AUS,
    RELEASES,
    TASK_FOLDERS,
    TASKS,
    TRAIN_FOLDERS,
    VA_HEADER,
    VA_UNKNOWN,
    VALIDATION_FOLDER,
    video_of,
)
from affectlab.data.sources.synthetic.story import UNKNOWN as LAYOUT_UNKNOWN

# Video names shaped like Aff-Wild2's (<id>-<fps>-<width>x<height>, plain numbers, videoN), some
# ending in "-1" (which is part of the name, not a side).
VIDEO_NAMES: tuple[str, ...] = (
    "1-30-1280x720", "10-60-1280x720", "102", "107-30-640x480", "117-25-1920x1080",
    "12-24-1920x1080", "121-24-1920x1080", "122-60-1920x1080-1", "13-30-1920x1080",
    "135-24-1920x1080", "video10-1", "video2", "video45", "video59", "2-30-640x360",
    "20-24-1920x1080", "24-30-1920x1080-1", "26-60-1280x720", "video74", "video94",
    "28-30-1280x720-2", "30-30-1920x1080", "video49", "46-30-484x360")


def write_layout(faces: list[LayoutFace], root: Path, *, release: str = "abaw2021",
                 tasks: Sequence[str] = TASKS, validation_share: float = 0.34,
                 paired: bool = True, image_dir: str = "cropped_aligned",
                 annotation_dir: str = "annotations", blank_every: int = 2,
                 labelled_without_image: int = 0, extra_image: bool = True) -> dict[str, dict]:
    """Write synthetic faces as an Aff-Wild2 tree of ``release``; return what was written.

    Subjects are videos and a subject's faces (in ``face.index`` order) are its frames 1..n.
    The last ``validation_share`` of the subjects (at least one) are the official validation
    set, the others the training set (``Training_Set`` for abaw2020, ``Train_Set`` for
    abaw2021). With ``paired``, the first two subjects of each set share one video, as
    ``<video>_left`` and ``<video>_right``.

    Annotation files (``annotation_dir/<Task>_Set/<set>/<name>.txt``, for ``tasks``), with the
    header line of §6.2 and line k + 1 for frame k:

    - AU: the release's AUs; a face's label 1 / 0, −1 where it is unknown (occluded; LayoutFace's
      999) and 0 for AU24, which the synthetic faces do not render (the image shows none).
    - EXPR: the face's expression (EXPRESSIONS = Aff-Wild2 order); VA: ``{:.3f},{:.3f}``.
    - Sentinel lines: AU all −1 at frames 2, 5, 8, …; EXPR −1 at frames 3, 7, …; VA −5,−5 at
      frames 1, 6, ….
    - Coverage: every side has an AU file, except the last validation side when the validation
      set has two or more; the 2nd training side has no EXPR file and the 3rd no VA file.

    Crops: ``image_dir/<name>/00001.jpg`` …, except frame 4 of every ``blank_every``-th side
    (0: none), whose lines are all sentinels and whose crop is missing (no face detected: not a
    problem), and frame 1 of the first ``labelled_without_image`` training sides, which is
    labelled but has no crop (a known gap for the loader). With ``extra_image`` the first side
    has one crop more than label lines (ignored).

    Returns:
        ``{sample id: record}`` for every frame line written, sample ids as the loader makes
        them (``train:cropped_aligned/<name>/00001.jpg``). A record: ``{"name", "video"
        (subject: name without _left/_right), "set" ("train" | "validation"), "frame",
        "image" (bool: crop written), "au": {AU: 1 / 0 / None (−1)} or None (no AU file),
        "expr": class or None, "va": (valence, arousal) as written or None, "files": {task:
        file relative to root}}``.
    """
    if release not in RELEASES:
        raise ValueError(f"release={release!r}: use one of {list(RELEASES)}")
    identities = sorted({f.subject for f in faces})
    n_subjects = len(identities)
    n_validation = max(1, round(validation_share * n_subjects))
    if n_subjects - n_validation < 1:
        raise ValueError(f"{n_subjects} subject(s): too few for a training and a validation set")
    if n_subjects > len(VIDEO_NAMES):
        raise ValueError(f"write_layout: at most {len(VIDEO_NAMES)} subjects")
    # names: one video per subject, the first two of each set paired into one video's sides
    names: dict[int, tuple[str, str]] = {}
    video_number = 0
    for official, members in (("train", identities[:n_subjects - n_validation]),
                              ("validation", identities[n_subjects - n_validation:])):
        k = 0
        while k < len(members):
            video = VIDEO_NAMES[video_number]
            video_number += 1
            if paired and k == 0 and len(members) >= 3 - (official == "validation"):
                names[members[0]] = (f"{video}_left", official)
                names[members[1]] = (f"{video}_right", official)
                k += 2
            else:
                names[members[k]] = (video, official)
                k += 1
    sides = {official: [names[i][0] for i in identities if names[i][1] == official]
             for official in ("train", "validation")}
    train_folder = TRAIN_FOLDERS[release]
    folder_of = {"train": train_folder, "validation": VALIDATION_FOLDER}
    coded = RELEASE_AUS[release]
    written: dict[str, dict] = {}
    for order, identity in enumerate(identities):
        name, official = names[identity]
        position = sides[official].index(name)
        own = sorted((f for f in faces if f.subject == identity), key=lambda f: f.index)
        has = {"au": not (official == "validation" and len(sides["validation"]) >= 2
                          and position == len(sides["validation"]) - 1),
               "expr": not (official == "train" and position == 1),
               "va": not (official == "train" and position == 2)}
        has = {t: has[t] and t in tasks for t in TASKS}
        lines: dict[str, list[str]] = {"au": [",".join(f"AU{a}" for a in coded)],
                                       "expr": [",".join(EXPR_HEADER)],
                                       "va": [",".join(VA_HEADER)]}
        crops = root / image_dir / name
        crops.mkdir(parents=True, exist_ok=True)
        for k, face in enumerate(own, start=1):
            blank = bool(blank_every) and order % blank_every == 0 and k == 4
            missing = (official == "train" and position < labelled_without_image and k == 1)
            au: dict[int, int | None] | None = None
            if has["au"]:
                if blank or k % 3 == 2:
                    au = {a: None for a in coded}
                else:
                    au = {}
                    for a in coded:
                        label = face.labels.au_labels.get(a, 0)   # AU24: not rendered → absent
                        au[a] = None if label == LAYOUT_UNKNOWN else int(label)
                lines["au"].append(",".join(str(AU_UNKNOWN if au[a] is None else au[a])
                                            for a in coded))
            expr = None
            if has["expr"]:
                expr = None if blank or k % 4 == 3 else int(face.labels.expression)
                lines["expr"].append(str(EXPR_UNKNOWN if expr is None else expr))
            va = None
            if has["va"]:
                if blank or k % 5 == 1:
                    lines["va"].append(f"{VA_UNKNOWN},{VA_UNKNOWN}")
                else:
                    text = (f"{np.clip(face.labels.valence, -1, 1):.3f}",
                            f"{np.clip(face.labels.arousal, -1, 1):.3f}")
                    va = (float(text[0]), float(text[1]))
                    lines["va"].append(",".join(text))
            image = not (blank or missing)
            if image:
                Image.fromarray(face.image).save(crops / f"{k:05d}.jpg", quality=95)
            relative = f"{image_dir}/{name}/{k:05d}.jpg"
            written[f"{OFFICIAL[official]}:{relative}"] = {
                "name": name, "video": video_of(name), "set": official, "frame": k,
                "image": image, "au": au, "expr": expr, "va": va,
                "files": {t: f"{annotation_dir}/{TASK_FOLDERS[t]}/{folder_of[official]}/"
                             f"{name}.txt" for t in TASKS if has[t]}}
        if extra_image and order == 0 and own:
            Image.fromarray(own[-1].image).save(crops / f"{len(own) + 1:05d}.jpg", quality=95)
        for task in TASKS:
            if not has[task]:
                continue
            path = root / annotation_dir / TASK_FOLDERS[task] / folder_of[official] / f"{name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines[task]) + "\n")
    # every task's set folders exist, as in the release (even if a set has no file here)
    for task in tasks:
        for official in ("train", "validation"):
            (root / annotation_dir / TASK_FOLDERS[task] / folder_of[official]).mkdir(
                parents=True, exist_ok=True)
    return written



__all__ = ["VIDEO_NAMES", "write_layout"]
