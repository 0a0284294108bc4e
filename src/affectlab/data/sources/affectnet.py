"""AffectNet (Mollahosseini et al., 2017), manually annotated part, classic release layout.

``dataset=affectnet``: expression (7 ABAW classes) and valence/arousal labels, no AUs. One of the
auxiliary expression / VA sets the multi-task ABAW works add to Aff-Wild2.

Layout (``dataset.root``; the images sit either under ``Manually_Annotated/`` or directly)::

    Manually_Annotated_file_lists/training.csv      (or training.csv at the root)
    Manually_Annotated_file_lists/validation.csv    (or validation.csv at the root)
    Manually_Annotated/Manually_Annotated_Images/<folder>/<file>.jpg
                                              (or Manually_Annotated_Images/<folder>/<file>.jpg)

CSV format (one header line, comma-separated; the landmarks field is ``;``-separated)::

    subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal
    512/4c1e9a7b0d22f3.jpg,40,52,310,310,55.12;160.40;…(136 numbers),1,0.412500,-0.120000

- ``face_x, face_y, face_width, face_height``: the face box in image pixels (``dataset.crop=box``
  crops the square around it; ``none`` resizes the whole image). Whether the released images
  are already loose face crops is not pinned down; the box crop is harmless either way.
- ``facial_landmarks``: 68 points as 136 numbers; not read.
- ``expression``: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt,
  8 None, 9 Uncertain, 10 No-Face. 0..6 are mapped to the Aff-Wild2 order of
  :data:`~affectlab.data.contract.EXPRESSIONS` by :data:`AFFECTNET_TO_EXPRESSION` =
  ``[0, 4, 5, 6, 3, 2, 1]``; 7..10 have no ABAW counterpart and are masked (the sample stays,
  its VA may still be valid). Anything else is reported with file and line.
- ``valence, arousal``: floats in [−1, 1]; ``−2`` marks "no valid VA" (the sentinel is
  *unverified*, see shared/reference/datasets.md §0.3 and §10): such a sample keeps its
  expression and gets ``va_mask = False``. Other values outside [−1, 1] are reported.

Sample ids are ``<list>/<subDirectory_filePath>`` (``training/512/4c1e9a7b0d22f3.jpg``), so the
manifest shows the official partition. AffectNet has no identity information: subjects are −1,
so the leakage check cannot see identities (none is claimed).

Protocol: the official validation set is what the papers report on (its test set is not
public), so it is the **test** split here; a seeded random ``val_fraction`` of the official
training set is carved out as **val** (images, not identities: there are none), the rest is
train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from affectlab.data.contract import EXPRESSIONS, DataError, LabelTable, empty_labels
from affectlab.data.faces.boxes import CROPS, BoxCroppedDataset, boxes_in_index_order
from affectlab.data.sources.on_disk import DatasetIndex, Problems, SplitManifest

LISTS = ("training", "validation")   # the official partitions, in this order
LIST_DIRS = ("Manually_Annotated_file_lists", ".")
IMAGE_DIRS = ("Manually_Annotated/Manually_Annotated_Images", "Manually_Annotated_Images")
HEADER = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
          "facial_landmarks", "expression", "valence", "arousal")
# AffectNet class 0..6 → index in EXPRESSIONS (Aff-Wild2 order); 7..10 have no counterpart.
AFFECTNET_TO_EXPRESSION: tuple[int, ...] = (0, 4, 5, 6, 3, 2, 1)
AFFECTNET_CLASSES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger",
                     "Contempt", "None", "Uncertain", "No-Face")
MASKED_CLASSES = (7, 8, 9, 10)       # contempt, none, uncertain, no-face
VA_SENTINEL = -2.0                   # "no valid VA" (unverified)

LAYOUT = """\
  <root>/Manually_Annotated_file_lists/training.csv     (or <root>/training.csv)
  <root>/Manually_Annotated_file_lists/validation.csv   (or <root>/validation.csv)
  <root>/Manually_Annotated/Manually_Annotated_Images/512/4c1e9a7b0d22f3.jpg
                                     (or <root>/Manually_Annotated_Images/512/...)"""


def _row_fields(line: str) -> list[str]:
    # the columns are comma-separated; the landmarks field uses ';' inside, never ','
    return [f.strip() for f in line.split(",")]


def read_list(path: Path, partition: str, problems: Problems) -> list[dict]:
    """Parse one AffectNet CSV (``training.csv`` / ``validation.csv``).

    Returns one dict per good line, in file order: ``{"id": "<partition>/<path>", "path":
    subDirectory_filePath, "box": (x0, y0, x1, y1), "expr": EXPRESSIONS index or None, "va":
    (valence, arousal) or None}``. A wrong header is a :class:`DataError` (not an AffectNet
    list); a bad line (field count, non-numbers, box without area, class outside 0..10, VA
    outside [−1, 1] and not the −2 sentinel, a path listed twice) is reported with file and
    line and left out.
    """
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = tuple(_row_fields(lines[0].lstrip("\ufeff"))) if lines else ()
    if header != HEADER:
        raise DataError(f"{path}, line 1: expected the header {','.join(HEADER)}, found "
                        f"{(lines[0] if lines else '(empty file)')[:120]!r}. Is this an "
                        "AffectNet file list?")
    out: list[dict] = []
    seen: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = _row_fields(line)
        if len(fields) != len(HEADER):
            problems.report(f"{path}, line {number}: expected {len(HEADER)} comma-separated "
                            f"fields, found {len(fields)}")
            continue
        name = fields[0]
        try:
            x, y, w, h = (float(v) for v in fields[1:5])
            code = float(fields[6])
            valence, arousal = float(fields[7]), float(fields[8])
        except ValueError:
            shown = ",".join(fields[1:5] + fields[6:])
            problems.report(f"{path}, line {number}: {name}: box, expression, valence and "
                            f"arousal must be numbers, found {shown!r}")
            continue
        if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
            problems.report(f"{path}, line {number}: {name}: face box x={x:g} y={y:g} "
                            f"width={w:g} height={h:g} has no area")
            continue
        if code != int(code) or not 0 <= code < len(AFFECTNET_CLASSES):
            problems.report(f"{path}, line {number}: {name}: expression {fields[6]} is outside "
                            f"AffectNet's 0..{len(AFFECTNET_CLASSES) - 1}")
            continue
        va: tuple[float, float] | None = (valence, arousal)
        if VA_SENTINEL in va:
            va = None   # no valid VA (the whole pair: va_mask is per sample)
        else:
            bad = [(k, v) for k, v in (("valence", valence), ("arousal", arousal))
                   if not -1.0 <= v <= 1.0]
            if bad:
                problems.report(f"{path}, line {number}: {name}: {bad[0][0]} {bad[0][1]:g} is "
                                f"outside [-1, 1] (and is not the {VA_SENTINEL:g} sentinel)")
                continue
        if name in seen:
            problems.report(f"{path}, line {number}: {name} is listed a second time")
            continue
        seen.add(name)
        code = int(code)
        out.append({"id": f"{partition}/{name}", "path": name, "box": (x, y, x + w, y + h),
                    "expr": AFFECTNET_TO_EXPRESSION[code] if code < len(AFFECTNET_TO_EXPRESSION)
                    else None, "va": va})
    return out


def read_boxes(path: Path, partition: str) -> dict[str, tuple[float, float, float, float]]:
    """``{sample id: (x0, y0, x1, y1)}`` of every line of a CSV whose box parses (the lines'
    other problems were reported when the index was built)."""
    boxes = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        fields = line.split(",", 5)
        try:
            x, y, w, h = (float(v) for v in fields[1:5])
        except ValueError:
            continue
        boxes[f"{partition}/{fields[0].strip()}"] = (x, y, x + w, y + h)
    return boxes


class AffectNet(BoxCroppedDataset):
    """AffectNet's manually annotated images: expressions (ABAW order) and valence/arousal.

    Args:
        name: the dataset's name in run directories and ``metrics.json``.
        root: the release folder (see the module docstring for the layout).
        image_size: side of the square network input.
        on_error: ``known_gaps`` (default) or ``raise`` stop at bad CSV lines and missing or
            damaged images, ``skip`` leaves them out and counts them (no known gaps declared).
        cache_dir: where the parsed index is cached (keyed by the CSVs' sizes and mtimes).
        mean, std: per-channel normalisation (default ImageNet's).
        val_fraction: share of the official training set carved out (seeded) as val.
        seed: seed of that carve-out (not the training seed).
        crop: ``box`` (square around the CSV's face box) or ``none`` (resize the whole image).
        box_margin: the crop's side is ``max(w, h) · (1 + box_margin)``.
    """

    CODED_AUS: tuple[int, ...] = ()   # expressions and VA only; the au columns have zero width
    LAYOUT = LAYOUT
    INDEX_VERSION = 1

    def __init__(self, *, name: str = "affectnet", root: str, image_size: int = 112,
                 on_error: str = "known_gaps", cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None,
                 val_fraction: float = 0.1, seed: int = 0, crop: str = "box",
                 box_margin: float = 0.0) -> None:
        super().__init__(name=name, root=root, aus=None, image_size=image_size,
                         on_error=on_error, cache_dir=cache_dir, mean=mean, std=std)
        if not 0 < val_fraction < 1:
            raise ValueError(f"dataset.val_fraction={val_fraction}: must be in (0, 1) (the share "
                             "of the official training set held out for validation)")
        self.val_fraction = val_fraction
        self.configure_box_crop(seed=seed, crop=crop, box_margin=box_margin, crops=CROPS)

    # ------------------------------------------------------------------ layout
    def list_file(self, partition: str) -> Path:
        """The CSV of an official partition (``training`` or ``validation``)."""
        return self.locate_path(LIST_DIRS, f"AffectNet {partition}.csv",
                                relative=f"{partition}.csv")

    def image_dir(self) -> str:
        """The image folder relative to the root (the release nests it or not)."""
        return (self.locate_path(IMAGE_DIRS, "AffectNet image folder")
                .relative_to(self.root).as_posix())

    def check_root(self) -> None:
        super().check_root()
        for partition in LISTS:
            self.list_file(partition)
        self.image_dir()

    def annotation_files(self) -> list[Path]:
        return [self.list_file(p) for p in LISTS]

    def index_options(self) -> dict[str, str]:
        # the image folder found on disk is part of every indexed image path
        return {"image_dir": self.image_dir()}

    def label_names(self) -> dict[str, list[str]]:
        return {"expr": list(EXPRESSIONS), "va": ["valence", "arousal"]}

    # ------------------------------------------------------------------- index
    def read_index(self, problems: Problems) -> DatasetIndex:
        images = self.image_dir()
        records = [r for p in LISTS for r in read_list(self.list_file(p), p, problems)]
        labels = empty_labels(len(records))
        labels["expr"][:] = [r["expr"] if r["expr"] is not None else 0 for r in records]
        labels["expr_mask"][:] = [r["expr"] is not None for r in records]
        if records:
            labels["va"][:] = [r["va"] if r["va"] is not None else (0.0, 0.0) for r in records]
        labels["va_mask"][:] = [r["va"] is not None for r in records]
        paths = [f"{images}/{r['path']}" for r in records]
        table = LabelTable(root=self.root, image_paths=paths, **labels)
        return DatasetIndex(table, [r["id"] for r in records], subject_names=[], aus=[])

    def face_boxes(self, index: DatasetIndex) -> np.ndarray:
        boxes: dict[str, tuple[float, float, float, float]] = {}
        for partition in LISTS:
            boxes.update(read_boxes(self.list_file(partition), partition))
        return boxes_in_index_order(index, boxes, "the AffectNet lists")

    # ---------------------------------------------------------------- protocol
    def split(self, index: DatasetIndex) -> SplitManifest:
        """Official validation → test; a seeded ``val_fraction`` of official training → val."""
        training = sorted(i for i in index.sample_ids if i.startswith("training/"))
        test = sorted(i for i in index.sample_ids if i.startswith("validation/"))
        size = round(self.val_fraction * len(training))
        chosen = set(np.random.default_rng(self.seed).choice(len(training), size=size,
                                                             replace=False).tolist())
        ids = {"train": [i for k, i in enumerate(training) if k not in chosen],
               "val": [i for k, i in enumerate(training) if k in chosen], "test": test}
        return SplitManifest(f"affectnet/official-validation-as-test/val{self.val_fraction:g}"
                             f"-seed{self.seed}", ids)


__all__ = ["AffectNet", "AFFECTNET_TO_EXPRESSION", "LAYOUT", "read_list"]
