"""CelebA written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.celeba`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from affectlab.data.faces.alignment import template
from affectlab.data.sources.celeba import (
    ALIGNED_SIZE,
    ATTR_FILE,
    ATTRIBUTES,
    BBOX_FILE,
    BBOX_NAMES,
    FOLDER,
    IDENTITY_FILE,
    IMAGE_FOLDERS,
    LANDMARK_NAMES,
    LANDMARKS_ALIGN_FILE,
    LANDMARKS_WILD_FILE,
    PARTITION_FILE,
    WILD_FOLDER,
)

if TYPE_CHECKING:   # the writer only reads these objects
    from affectlab.data.layouts.faces import LayoutFace


# Rough CelebA positive rates (from memory, unverified; floored at 0.1 so that tiny fixtures
# have positives). Only the attributes the renderer does not draw use them.
_RATES: dict[str, float] = {
    "5_o_Clock_Shadow": 0.25, "Attractive": 0.5, "Bags_Under_Eyes": 0.2, "Bald": 0.1,
    "Bangs": 0.15, "Big_Lips": 0.24, "Big_Nose": 0.23, "Black_Hair": 0.24, "Blond_Hair": 0.15,
    "Blurry": 0.1, "Brown_Hair": 0.2, "Bushy_Eyebrows": 0.14, "Chubby": 0.1, "Double_Chin": 0.1,
    "Goatee": 0.15, "Gray_Hair": 0.1, "Heavy_Makeup": 0.6, "Male": 0.42, "Mustache": 0.1,
    "Oval_Face": 0.28, "Pale_Skin": 0.1, "Pointy_Nose": 0.28, "Receding_Hairline": 0.1,
    "Rosy_Cheeks": 0.1, "Sideburns": 0.1, "Straight_Hair": 0.21, "Wavy_Hair": 0.32,
    "Wearing_Earrings": 0.19, "Wearing_Hat": 0.1, "Wearing_Lipstick": 0.75,
    "Wearing_Necklace": 0.12, "Wearing_Necktie": 0.1, "Young": 0.77,
}
# drawn per image (accessories, blur); the other random attributes are per identity
_PER_IMAGE = ("Blurry", "Wearing_Earrings", "Wearing_Hat", "Wearing_Necklace", "Wearing_Necktie")
_PARTITION_OF_SUBJECT = (0, 0, 0, 1, 2)   # subject % 5 → partition: 60 / 20 / 20 % of identities


def synthetic_attributes(face: LayoutFace, seed: int = 0) -> np.ndarray:
    """The 40 attributes of a synthetic face, (40,) int8 in {1, −1}, ATTRIBUTES order.

    Drawn from what the renderer shows, so a model can learn them: Eyeglasses ← ``glasses``,
    Smiling ← AU12, Mouth_Slightly_Open ← AU25 or AU26, High_Cheekbones ← AU6, Narrow_Eyes ←
    AU7 or AU43, Arched_Eyebrows ← AU1 or AU2 (intensity > 0). The rest come from a generator
    seeded by (seed, subject) — constant per identity — or by (seed, subject, index) for
    accessories and blur, at the rates of ``_RATES``, with CelebA's couplings: beards and
    stubble only on Male, No_Beard = no Goatee/Mustache/5_o_Clock_Shadow, no lipstick or heavy
    make-up on Male.
    """
    intensity = face.labels.intensity
    shown = {
        "Eyeglasses": face.glasses,
        "Smiling": intensity.get(12, 0) > 0,
        "Mouth_Slightly_Open": intensity.get(25, 0) > 0 or intensity.get(26, 0) > 0,
        "High_Cheekbones": intensity.get(6, 0) > 0,
        "Narrow_Eyes": intensity.get(7, 0) > 0 or intensity.get(43, 0) > 0,
        "Arched_Eyebrows": intensity.get(1, 0) > 0 or intensity.get(2, 0) > 0,
    }
    identity_draw = np.random.default_rng([seed, face.subject]).random(len(ATTRIBUTES))
    image_draw = np.random.default_rng([seed, face.subject, face.index + 1]).random(len(ATTRIBUTES))
    values = {}
    for i, attribute in enumerate(ATTRIBUTES):
        if attribute in shown:
            values[attribute] = bool(shown[attribute])
        elif attribute != "No_Beard":
            draw = image_draw if attribute in _PER_IMAGE else identity_draw
            values[attribute] = bool(draw[i] < _RATES[attribute])
    male = values["Male"]
    for attribute in ("Goatee", "Mustache", "5_o_Clock_Shadow", "Sideburns"):
        values[attribute] &= male
    for attribute in ("Wearing_Lipstick", "Heavy_Makeup"):
        values[attribute] &= not male
    values["No_Beard"] = not (values["Goatee"] or values["Mustache"]
                              or values["5_o_Clock_Shadow"])
    return np.array([1 if values[a] else -1 for a in ATTRIBUTES], dtype=np.int8)


@dataclass
class LayoutRecord:
    """Where and how one synthetic face is written by :func:`write_layout`.

    Attributes:
        face: position of the face in the ``faces`` list.
        image: file name, ``NNNNNN.jpg`` (1-based, six digits).
        partition: 0 train / 1 val / 2 test (by subject: identity-disjoint).
        identity: CelebA-style identity number (1..10,177), one per subject.
        attributes: (40,) int8 in {1, −1} (:func:`synthetic_attributes`).
        aligned_size: (width, height) of the aligned image (face centred on a 178:218 canvas).
        aligned_landmarks: (5, 2) int points in the aligned image.
        wild_size: (width, height) of the in-the-wild image.
        bbox: (4,) int x_1, y_1, width, height of the face in the in-the-wild image.
        wild_landmarks: (5, 2) int points in the in-the-wild image.
    """

    face: int
    image: str
    partition: int
    identity: int
    attributes: np.ndarray
    aligned_size: tuple[int, int]
    aligned_landmarks: np.ndarray
    wild_size: tuple[int, int]
    bbox: np.ndarray
    wild_landmarks: np.ndarray


def layout_records(faces: Sequence[LayoutFace], seed: int = 0) -> list[LayoutRecord]:
    """The records :func:`write_layout` writes, in file order (deterministic in ``seed``).

    Files are numbered partition by partition (train first, as in the release), identities
    interleaved within a partition. The five points are the ArcFace template placed on the
    face's square, not measured on the rendered face.
    """
    order = sorted(range(len(faces)), key=lambda i: (
        _PARTITION_OF_SUBJECT[faces[i].subject % 5], faces[i].index, faces[i].subject))
    records = []
    for number, i in enumerate(order, start=1):
        face = faces[i]
        size = face.image.shape[1]
        points = template("arcface_112", size).array
        aligned_w, aligned_h = size, round(size * ALIGNED_SIZE[1] / ALIGNED_SIZE[0])
        top = (aligned_h - size) // 2
        rng = np.random.default_rng([seed, face.subject, face.index + 1, 7])
        wild_w, wild_h = (2 * size + int(rng.integers(0, size // 2 + 1)) for _ in range(2))
        x, y = int(rng.integers(0, wild_w - size + 1)), int(rng.integers(0, wild_h - size + 1))
        records.append(LayoutRecord(
            face=i, image=f"{number:06d}.jpg",
            partition=_PARTITION_OF_SUBJECT[face.subject % 5],
            # 7919 and 10,177 are coprime: distinct subjects get distinct identities
            identity=1 + (face.subject * 7919 + 1206) % 10177,
            attributes=synthetic_attributes(face, seed),
            aligned_size=(aligned_w, aligned_h),
            aligned_landmarks=np.rint(points + [0, top]).astype(np.int64),
            wild_size=(wild_w, wild_h),
            bbox=np.array([x, y, size, size], dtype=np.int64),
            wild_landmarks=np.rint(points + [x, y]).astype(np.int64)))
    return records


def _table_text(count: int, header: Sequence[str], rows: list[tuple[str, Sequence[int]]],
                widths: Sequence[int], header_suffix: str = "") -> str:
    """A CelebA table file: count line, header, ``name`` + right-aligned values."""
    lines = [str(count), " ".join(header) + header_suffix]
    for name, values in rows:
        lines.append(name + " " + " ".join(f"{int(v):>{w}}" for v, w in zip(values, widths)))
    return "\n".join(lines) + "\n"


def write_layout(faces: list[LayoutFace], root: Path, *, seed: int = 0,
                 images: Sequence[str] = ("img_align_celeba",)) -> None:
    """Write ``faces`` as a CelebA release under ``root/celeba/`` (torchvision layout).

    Writes the image folders named in ``images`` (``img_align_celeba``: the face centred on a
    canvas of the aligned crops' 178:218 aspect, edges repeated; ``img_celeba``: the face at a
    random place on a larger noisy canvas; ``img_align_celeba_png``: the aligned images as PNG),
    and all six text files with the release's shapes: count line and header where the release
    has them (the attribute header with a trailing space), values right-aligned with several
    spaces between them, ``image_id`` only in the bbox header. Files and labels come from
    :func:`layout_records`; JPEG quality 95.
    """
    folder = Path(root) / FOLDER
    for name in images:
        if name not in IMAGE_FOLDERS:
            raise ValueError(f"write_layout: unknown image folder {name!r}")
        (folder / name).mkdir(parents=True, exist_ok=True)
    records = layout_records(faces, seed)
    for record in records:
        face = faces[record.face].image
        size = face.shape[1]
        (w, h), top = record.aligned_size, (record.aligned_size[1] - size) // 2
        aligned = np.pad(face, ((top, h - size - top), (0, w - size), (0, 0)), mode="edge")
        for name in images:
            stem = Path(record.image).stem
            if name == WILD_FOLDER:
                rng = np.random.default_rng([seed, record.face, 11])
                ww, wh = record.wild_size
                canvas = rng.integers(60, 200, (wh, ww, 3)).astype(np.uint8)
                x, y = record.bbox[:2]
                canvas[y:y + size, x:x + size] = face
                Image.fromarray(canvas).save(folder / name / f"{stem}.jpg", quality=95)
            elif name == "img_align_celeba_png":
                Image.fromarray(aligned).save(folder / name / f"{stem}.png")
            else:
                Image.fromarray(aligned).save(folder / name / f"{stem}.jpg", quality=95)
    n = len(records)
    (folder / ATTR_FILE).write_text(_table_text(
        n, ATTRIBUTES, [(r.image, r.attributes) for r in records], [2] * len(ATTRIBUTES),
        header_suffix=" "))
    (folder / PARTITION_FILE).write_text("".join(f"{r.image} {r.partition}\n" for r in records))
    (folder / IDENTITY_FILE).write_text("".join(f"{r.image} {r.identity}\n" for r in records))
    (folder / BBOX_FILE).write_text(_table_text(
        n, ("image_id",) + BBOX_NAMES, [(r.image, r.bbox) for r in records], [5, 4, 4, 4]))
    (folder / LANDMARKS_ALIGN_FILE).write_text(_table_text(
        n, LANDMARK_NAMES, [(r.image, r.aligned_landmarks.ravel()) for r in records], [4] * 10))
    (folder / LANDMARKS_WILD_FILE).write_text(_table_text(
        n, LANDMARK_NAMES, [(r.image, r.wild_landmarks.ravel()) for r in records], [5] * 10))



__all__ = ["LayoutRecord", "layout_records", "synthetic_attributes", "write_layout"]
