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

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.contract import EXPRESSIONS, DataError, LabelTable, empty_labels
from affectlab.data.faces.boxes import CROPS, BoxCroppedDataset, boxes_in_index_order
from affectlab.data.sources.on_disk import DatasetIndex, Problems, SplitManifest
from affectlab.data.sources.synthetic.benchmark import LayoutFace

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
    def _find(self, candidates: tuple[str, ...], relative: str, what: str) -> Path:
        for candidate in candidates:
            path = self.root / candidate / relative
            if path.exists():
                return path
        expected = " or ".join(str(self.root / c / relative) for c in candidates)
        raise DataError(f"AffectNet {what} not found: expected {expected}. Point dataset.root at "
                        f"the release, laid out as:\n{LAYOUT}")

    def list_file(self, partition: str) -> Path:
        """The CSV of an official partition (``training`` or ``validation``)."""
        return self._find(LIST_DIRS, f"{partition}.csv", f"{partition}.csv")

    def image_dir(self) -> str:
        """The image folder relative to the root (the release nests it or not)."""
        return self._find(IMAGE_DIRS, "", "image folder").relative_to(self.root).as_posix()

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


# --------------------------------------------------------------------------- fixture writer
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


__all__ = ["AffectNet", "AFFECTNET_TO_EXPRESSION", "LAYOUT", "read_list", "write_layout"]
