"""LFW written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.lfw`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from affectlab.data.sources.lfw import (
    DEV_TEST_FILE,
    DEV_TRAIN_FILE,
    IMAGE_FOLDERS,
    NAMES_FILE,
    PEOPLE_FILE,
    image_id,
)

if TYPE_CHECKING:   # the writer only reads these objects
    from affectlab.data.layouts.faces import LayoutFace


# Invented names in LFW's style: First_Last, with hyphens and multi-part names.
_FIRST = ("Ada", "Jean-Luc", "Maria_Jose", "Li", "Tomasz", "Aisha", "Pedro", "Yuki", "Olu",
          "Grete", "Rafael", "Noor")
_LAST = ("Okafor", "Van_der_Berg", "Al-Rashid", "Lindqvist", "Nakamura", "Oyelaran",
         "Castellanos", "Whitcombe")


def person_name(subject: int) -> str:
    """The invented LFW-style name of synthetic subject ``subject`` (unique below 96)."""
    if subject >= len(_FIRST) * len(_LAST):
        raise ValueError(f"write_layout: at most {len(_FIRST) * len(_LAST)} subjects")
    return f"{_FIRST[subject % len(_FIRST)]}_{_LAST[subject // len(_FIRST)]}"


def _people_lines(people: list[tuple[str, int]]) -> list[str]:
    return [str(len(people))] + [f"{name}\t{count}" for name, count in people]


def write_layout(faces: list[LayoutFace], root: Path, *, images: str = "lfw",
                 canvas: float = 2.0, dev_test_every: int = 3,
                 num_folds: int = 2) -> dict[str, Any]:
    """Write synthetic faces as an LFW release under ``root``; return what was written.

    Each subject becomes a person (:func:`person_name`), its faces ``<Person>_0001.jpg`` … in
    face order, each centred on a noisy square canvas ``canvas`` times the face's side (LFW's
    faces fill the middle of a larger photo), JPEG quality 95. List files, tab-separated as
    released: ``lfw-names.txt`` (alphabetical), ``peopleDevTrain.txt`` / ``peopleDevTest.txt``
    (every ``dev_test_every``-th person, alphabetically, in DevTest) and ``people.txt`` with
    ``num_folds`` folds (people dealt round-robin).

    Returns:
        ``{"images": {sample id: person}, "dev_train": [people], "dev_test": [people],
        "folds": [[people of fold 0], ...]}``.
    """
    if images not in IMAGE_FOLDERS:
        raise ValueError(f"write_layout: unknown image folder {images!r}")
    written: dict[str, str] = {}
    counts: dict[str, int] = {}
    for face in faces:
        person = person_name(face.subject)
        counts[person] = counts.get(person, 0) + 1
        sample = image_id(images, person, counts[person])
        size = face.image.shape[0]
        side = max(size, round(size * canvas))
        rng = np.random.default_rng([face.subject, face.index, 3])
        photo = rng.integers(40, 220, (side, side, 3)).astype(np.uint8)
        top = (side - size) // 2
        photo[top:top + size, top:top + size] = face.image
        target = Path(root) / sample
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(target, quality=95)
        written[sample] = person
    people = sorted(counts.items())
    dev_test = [p for k, p in enumerate(people) if k % dev_test_every == 0]
    dev_train = [p for k, p in enumerate(people) if k % dev_test_every != 0]
    folds = [people[k::num_folds] for k in range(num_folds)]
    root = Path(root)
    (root / NAMES_FILE).write_text("".join(f"{n}\t{c}\n" for n, c in people))
    (root / DEV_TRAIN_FILE).write_text("\n".join(_people_lines(dev_train)) + "\n")
    (root / DEV_TEST_FILE).write_text("\n".join(_people_lines(dev_test)) + "\n")
    lines = [str(num_folds)]
    for fold in folds:
        lines += _people_lines(fold)
    (root / PEOPLE_FILE).write_text("\n".join(lines) + "\n")
    return {"images": written, "dev_train": [n for n, _ in dev_train],
            "dev_test": [n for n, _ in dev_test], "folds": [[n for n, _ in f] for f in folds]}



__all__ = ["person_name", "write_layout"]
