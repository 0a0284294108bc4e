"""ExpW, Expression in-the-Wild (Zhang et al., 2018): 91,795 faces in web images, 7 expressions.

``dataset=expw``: expression labels (ABAW order), no AUs, no valence/arousal. Deng et al. (2020)
merge it into Aff-Wild2's expression training set.

Layout (``dataset.root``; the archive unpacks with or without the ``image/`` and ``label/``
levels)::

    image/origin/angry_actor_17.jpg …      (or origin/…)
    label/label.lst                        (or label.lst)

``label.lst``: one face per line, space-separated,
``image_name face_id top left right bottom confidence expression``::

    angry_actor_17.jpg 0 31 95 210 146 35.4 0
    happy_student_12.jpg 1 35 210 290 115 48.7 3

Note the unusual box order: ``top left right bottom`` (wtomin's reader stores fields 2..5 as
ymin, xmin, xmax, ymax); the face is ``(x0, y0, x1, y1) = (left, top, right, bottom)``.
``confidence`` is the face detector's score (parsed, not used). ``expression`` 0..6 = angry,
disgust, fear, happy, sad, surprise, neutral, mapped to the Aff-Wild2 order of
:data:`~affectlab.data.contract.EXPRESSIONS` by :data:`EXPW_TO_EXPRESSION` =
``[1, 2, 3, 4, 5, 6, 0]``. One image may hold several faces (``face_id``).

Samples: one per (image, face), id ``<image_name>#<face_id>``, read through
:class:`~affectlab.data.faces.boxes.BoxCropImages` (``dataset.crop=box``: the square around the
box, ``box_margin`` wider); ``crop=none`` would feed the whole photo for every face of it.

Protocol: ExpW has no official split. Images (with all their faces) are shuffled with
``dataset.seed`` and cut into train / val / test by ``train_fraction`` / ``val_fraction`` (test:
the rest); splitting by image keeps the faces of one photo together. Identities are unknown
(subject −1), so the splits cannot be identity-exclusive, and no such claim is made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from affectlab.data.contract import EXPRESSIONS, LabelTable, empty_labels
from affectlab.data.faces.boxes import CROPS, BoxCroppedDataset, boxes_in_index_order
from affectlab.data.sources.on_disk import DatasetIndex, Problems, SplitManifest, subject_split

LABEL_FILES = ("label/label.lst", "label.lst")
IMAGE_DIRS = ("image/origin", "origin")
EXPW_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# ExpW class → index in EXPRESSIONS (Aff-Wild2 order); wtomin's ExpW_to_aff_wild2.
EXPW_TO_EXPRESSION: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 0)
NUM_FIELDS = 8

LAYOUT = """\
  <root>/image/origin/angry_actor_17.jpg ...     (or <root>/origin/...)
  <root>/label/label.lst                         (or <root>/label.lst)
     'image_name face_id top left right bottom confidence expression' per face"""


def read_label_list(path: Path, problems: Problems) -> list[dict]:
    """Parse ``label.lst``.

    Returns one dict per good line, in file order: ``{"id": "<image>#<face_id>", "image":
    image name, "box": (left, top, right, bottom), "confidence": float, "expr": EXPRESSIONS
    index}``. A line with another field count, non-numbers, a box without area (right ≤ left
    or bottom ≤ top), an expression outside 0..6 or a repeated (image, face_id) is reported
    with file and line and left out.
    """
    out: list[dict] = []
    seen: set[str] = set()
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != NUM_FIELDS:
            problems.report(f"{path}, line {number}: expected {NUM_FIELDS} fields 'image_name "
                            f"face_id top left right bottom confidence expression', found "
                            f"{len(fields)}")
            continue
        name = fields[0]
        try:
            face_id = int(fields[1])
            top, left, right, bottom = (float(v) for v in fields[2:6])
            confidence = float(fields[6])
            code = int(fields[7])
        except ValueError:
            problems.report(f"{path}, line {number}: {name}: face id and expression must be "
                            f"integers, the box and confidence numbers; found "
                            f"{' '.join(fields[1:])!r}")
            continue
        if not (np.isfinite([top, left, right, bottom]).all() and right > left
                and bottom > top):
            problems.report(f"{path}, line {number}: {name}: face box top={top:g} left={left:g} "
                            f"right={right:g} bottom={bottom:g} has no area (the order is top "
                            "left right bottom)")
            continue
        if not 0 <= code < len(EXPW_CLASSES):
            problems.report(f"{path}, line {number}: {name}: expression {code} is outside "
                            f"ExpW's 0..{len(EXPW_CLASSES) - 1}")
            continue
        sample_id = f"{name}#{face_id}"
        if sample_id in seen or face_id < 0:
            problems.report(f"{path}, line {number}: {name}: face id {face_id} is "
                            f"{'negative' if face_id < 0 else 'listed a second time'}")
            continue
        seen.add(sample_id)
        out.append({"id": sample_id, "image": name, "box": (left, top, right, bottom),
                    "confidence": confidence, "expr": EXPW_TO_EXPRESSION[code]})
    return out


class ExpW(BoxCroppedDataset):
    """ExpW faces (cropped from their web images) with expression labels in ABAW order.

    Args:
        name: the dataset's name in run directories and ``metrics.json``.
        root: the release folder (see the module docstring for the layout).
        image_size: side of the square network input.
        on_error: ``known_gaps`` (default) or ``raise`` stop at bad label lines and missing or
            damaged images, ``skip`` leaves them out and counts them (no known gaps declared).
        cache_dir: where the parsed index is cached (keyed by label.lst's size and mtime).
        mean, std: per-channel normalisation (default ImageNet's).
        train_fraction, val_fraction: shares of the *images* in train and val (test: the rest).
        seed: seed of the random image split (not the training seed).
        crop: ``box`` (square around the face box) or ``none`` (the whole photo).
        box_margin: the crop's side is ``max(w, h) · (1 + box_margin)``.
    """

    CODED_AUS: tuple[int, ...] = ()   # expressions only; the au columns have zero width
    LAYOUT = LAYOUT
    INDEX_VERSION = 1

    def __init__(self, *, name: str = "expw", root: str, image_size: int = 112,
                 on_error: str = "known_gaps", cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None,
                 train_fraction: float = 0.8, val_fraction: float = 0.1, seed: int = 0,
                 crop: str = "box", box_margin: float = 0.0) -> None:
        super().__init__(name=name, root=root, aus=None, image_size=image_size,
                         on_error=on_error, cache_dir=cache_dir, mean=mean, std=std)
        self.configure_split_and_crop(train_fraction=train_fraction, val_fraction=val_fraction,
                                      seed=seed, crop=crop, box_margin=box_margin, crops=CROPS)

    # ------------------------------------------------------------------ layout
    def label_file(self) -> Path:
        return self.locate_path(LABEL_FILES, "ExpW label file")

    def image_dir(self) -> str:
        """The image folder relative to the root (``image/origin`` or ``origin``)."""
        return (self.locate_path(IMAGE_DIRS, "ExpW image folder")
                .relative_to(self.root).as_posix())

    def check_root(self) -> None:
        super().check_root()
        self.label_file()
        self.image_dir()

    def annotation_files(self) -> list[Path]:
        return [self.label_file()]

    def index_options(self) -> dict[str, str]:
        # the image folder found on disk is part of every indexed image path
        return {"image_dir": self.image_dir()}

    def label_names(self) -> dict[str, list[str]]:
        return {"expr": list(EXPRESSIONS)}

    # ------------------------------------------------------------------- index
    def read_index(self, problems: Problems) -> DatasetIndex:
        images = self.image_dir()
        records = read_label_list(self.label_file(), problems)
        labels = empty_labels(len(records))
        labels["expr"][:] = [r["expr"] for r in records]
        labels["expr_mask"][:] = True
        paths = [f"{images}/{r['image']}" for r in records]
        table = LabelTable(root=self.root, image_paths=paths, **labels)
        return DatasetIndex(table, [r["id"] for r in records], subject_names=[], aus=[])

    def face_boxes(self, index: DatasetIndex) -> np.ndarray:
        # label.lst is re-read (fast: one line per face); its problems were reported already
        boxes = {r["id"]: r["box"] for r in read_label_list(self.label_file(), Problems("skip"))}
        return boxes_in_index_order(index, boxes, str(self.label_file()))

    # ---------------------------------------------------------------- protocol
    def split(self, index: DatasetIndex) -> SplitManifest:
        """Images (all their faces together) shuffled with ``seed`` and cut by the fractions."""
        image_of = [sample_id.rsplit("#", 1)[0] for sample_id in index.sample_ids]
        groups = subject_split(sorted(set(image_of)),
                               {"train": self.train_fraction, "val": self.val_fraction,
                                "test": 1.0 - self.train_fraction - self.val_fraction},
                               seed=self.seed)
        split_of = {image: split for split, members in groups.items() for image in members}
        ids: dict[str, list[str]] = {split: [] for split in groups}
        for sample_id, image in sorted(zip(index.sample_ids, image_of)):
            ids[split_of[image]].append(sample_id)
        return SplitManifest(f"expw/random-images/seed{self.seed}", ids)


__all__ = ["ExpW", "EXPW_TO_EXPRESSION", "LAYOUT", "read_label_list"]
