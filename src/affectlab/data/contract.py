"""The data contract every dataset module fulfils.

A dataset module (``datasets/<name>.py``) parses its on-disk layout into :class:`LabelTable`
objects, one per split, and returns them as :class:`FaceData`. Everything downstream (the
trainer, the methods, the metrics) sees only these two types and the sample dict below, so a
new dataset touches one module and one config file.

Sample dict (one face; the default collate stacks them into a batch with a leading N axis):

=============  ==================  ============================================================
key            dtype, shape        meaning
=============  ==================  ============================================================
``image``      float32 (3, H, W)   RGB in [0, 1] — or uint8 (3, H, W) in [0, 255] from the packed
                                   store, converted on the device; normalisation and
                                   augmentation happen on the batch (see
                                   :mod:`affectlab.data.transforms`)
``au``         float32 (C,)        AU occurrence, 1 present / 0 absent
``au_mask``    bool (C,)           False where the AU label is unknown (occluded, not coded)
``expr``       int64 ()            expression index in :data:`EXPRESSIONS` order
``expr_mask``  bool ()             False where no expression label exists
``va``         float32 (2,)        valence, arousal in [-1, 1]
``va_mask``    bool ()             False where no valence/arousal label exists
``attr``       float32 (A,)        facial attributes (CelebA's 40), 1 / 0
``attr_mask``  bool (A,)           False where the attribute is unknown
``subject``    int64 ()            identity id (-1 when unknown)
``labeled``    bool ()             False for samples of an unlabelled pool: every mask is False
``index``      int64 ()            row of the sample in its split
=============  ==================  ============================================================

Tasks a dataset does not provide are present with zero width (C = 0 or A = 0) or all-False
masks, so every batch has the same keys and methods read only the tasks they need.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from affectlab.data.transforms import InputTransform, pixels_to_float

# Aff-Wild2 / ABAW order, the one label order for expressions across datasets.
EXPRESSIONS: tuple[str, ...] = (
    "neutral",
    "anger",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
)

TASKS: tuple[str, ...] = ("au", "expr", "va", "attr")

#: The label fields of a face sample dict, gathered over a split for evaluation (a dataset
#: whose samples carry other targets names them in its ``target_keys``).
TARGET_KEYS: tuple[str, ...] = ("au", "au_mask", "expr", "expr_mask", "va", "va_mask", "attr",
                                "attr_mask", "subject")
#: The input a face image dataset's samples carry; other datasets name theirs in ``input_keys``
#: (``clip``, ``mask``, ``audio``, ``sequence``, ...).
IMAGE_KEYS: tuple[str, ...] = ("image",)


@dataclass
class DataSpec:
    """What a method needs to build its networks, without the data: a checkpoint holds it.

    Attributes:
        name: the dataset's name (for messages).
        label_names: ``{task: label names}`` of every task the training split labels; the
            identity task's names are the training subjects' ids (as strings).
        inputs: ``{input key: shape of one sample}``, e.g. ``{"image": [3, 64, 64]}``
            (None for a side that varies).
    """

    name: str
    label_names: dict[str, list[str]]
    inputs: dict[str, list[int | None]]

    @property
    def tasks(self) -> list[str]:
        return list(self.label_names)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label_names": {k: list(v) for k, v in self.label_names.items()},
                "inputs": {k: list(v) for k, v in self.inputs.items()}}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DataSpec":
        return cls(name=str(values["name"]),
                   label_names={k: [str(n) for n in v] for k, v in values["label_names"].items()},
                   inputs={k: list(v) for k, v in values["inputs"].items()})


class DataError(RuntimeError):
    """A problem with the data on disk, with a message that names the file and the fix."""


@dataclass
class LabelTable:
    """Labels of one split, as numpy arrays with one row per sample.

    Attributes:
        root: directory that ``image_paths`` are relative to.
        image_paths: N relative image paths.
        subject: (N,) int64 identity ids, -1 when unknown.
        labeled: (N,) bool; False marks unlabelled-pool samples.
        au, au_mask: (N, C) float32 occurrence and bool validity.
        expr, expr_mask: (N,) int64 class index and bool validity.
        va, va_mask: (N, 2) float32 valence/arousal and (N,) bool validity.
        attr, attr_mask: (N, A) float32 attributes and bool validity.
    """

    root: Path
    image_paths: list[str]
    subject: np.ndarray
    labeled: np.ndarray
    au: np.ndarray
    au_mask: np.ndarray
    expr: np.ndarray
    expr_mask: np.ndarray
    va: np.ndarray
    va_mask: np.ndarray
    attr: np.ndarray
    attr_mask: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.image_paths)
        for name in ("subject", "labeled", "au", "au_mask", "expr", "expr_mask", "va", "va_mask",
                     "attr", "attr_mask"):
            value = getattr(self, name)
            if len(value) != n:
                raise ValueError(f"LabelTable.{name} has {len(value)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.image_paths)

    def subset(self, rows: np.ndarray) -> "LabelTable":
        """The table restricted to ``rows`` (an index or boolean array)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return LabelTable(
            root=self.root,
            image_paths=[self.image_paths[i] for i in rows],
            **{name: getattr(self, name)[rows] for name in ARRAY_FIELDS},
        )

    def unlabeled(self) -> "LabelTable":
        """A copy with every label hidden: what an unlabelled pool looks like to a method."""
        hidden = {name: getattr(self, name).copy() for name in ARRAY_FIELDS}
        for name in ("au_mask", "expr_mask", "va_mask", "attr_mask", "labeled"):
            hidden[name][:] = False
        return LabelTable(root=self.root, image_paths=list(self.image_paths), **hidden)

    @staticmethod
    def concat(tables: list["LabelTable"]) -> "LabelTable":
        """Rows of several tables with the same root, in order."""
        roots = {t.root for t in tables}
        if len(roots) != 1:
            raise ValueError("cannot concatenate tables with different roots: "
                             f"{sorted(map(str, roots))}")
        return LabelTable(
            root=tables[0].root,
            image_paths=[p for t in tables for p in t.image_paths],
            **{name: np.concatenate([getattr(t, name) for t in tables]) for name in ARRAY_FIELDS},
        )

    def label_statistics(self) -> dict[str, Any]:
        """Positive rate per AU / attribute over valid entries, expression counts, sizes."""
        stats: dict[str, Any] = {"num_samples": len(self), "num_labeled": int(self.labeled.sum()),
                                 "num_subjects": int(len(np.unique(self.subject)))}
        for task in ("au", "attr"):
            values, mask = getattr(self, task), getattr(self, f"{task}_mask")
            if values.shape[1]:
                valid = mask.sum(0)
                stats[f"{task}_positive_rate"] = (
                    (values * mask).sum(0) / np.maximum(valid, 1)).round(4).tolist()
                stats[f"{task}_unknown_rate"] = (1 - valid / max(len(self), 1)).round(4).tolist()
        if self.expr_mask.any():
            stats["expr_counts"] = np.bincount(self.expr[self.expr_mask],
                                               minlength=len(EXPRESSIONS)).tolist()
        return stats


ARRAY_FIELDS = ("subject", "labeled", "au", "au_mask", "expr", "expr_mask", "va", "va_mask",
                 "attr", "attr_mask")


@dataclass
class FaceData:
    """The splits of one dataset plus the names of its labels.

    ``unlabeled`` is None when the dataset has no unlabelled pool; methods that need one say so
    (``Method.needs_unlabeled``) and the trainer refuses to start without it.
    """

    name: str
    train: "FaceImageDataset"
    val: "FaceImageDataset"
    test: "FaceImageDataset"
    unlabeled: "FaceImageDataset | None" = None
    label_names: dict[str, list[str]] = field(default_factory=dict)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # the split protocol as sample ids (affectlab.data.sources.on_disk.SplitManifest), saved
    # into the run directory; None for datasets whose splits are fixed by their files (synthetic)
    manifest: Any = None
    skipped: int = 0          # problems skipped under dataset.on_error=skip (a line, a sample
                              # or a file left out each)
    known_gaps: int = 0       # labelled samples left out because the release has no image for
                              # them (e.g. Aff-Wild2's frames without a face crop, BP4D's coded
                              # frames without an image; datasets.real.Problems.known_gap)
    # what happens to a batch on the device before a method sees it (augmentation,
    # normalisation, k views; datasets.transforms.InputTransform); default: normalise only
    transform: Any = None
    # the transform rules of inputs other than ``image`` (clips, spectrograms), given the run's
    # augmentation (a BatchAugment or None): ``rules(augment) -> {input key: rule}``
    rules: Any = None

    def __post_init__(self) -> None:
        if self.transform is None:
            self.transform = self.input_transform(None)

    def input_transform(self, augment: Any) -> InputTransform:
        """The batch transform of these inputs with the augmentation ``augment`` (None: none):
        the image rule from ``mean``/``std``, the other inputs' rules from ``rules``."""
        return InputTransform(mean=self.mean, std=self.std, augment=augment,
                              rules=self.rules(augment) if self.rules is not None else None,
                              flatten=tuple(getattr(self.train, "frame_keys", ())))

    @property
    def tasks(self) -> list[str]:
        """Tasks with at least one labelled entry in the training split."""
        table = self.train.table
        present = []
        for task in TASKS:
            mask = getattr(table, f"{task}_mask")
            if mask.size and mask.any():
                present.append(task)
        return present

    @property
    def input_keys(self) -> tuple[str, ...]:
        """The input keys the samples carry (the training split's)."""
        return tuple(self.train.input_keys)

    @property
    def target_keys(self) -> tuple[str, ...]:
        """The label keys gathered over a split for evaluation (the training split's)."""
        return tuple(self.train.target_keys)

    def spec(self) -> DataSpec:
        """What a method is built from (:class:`DataSpec`): the label names of every task the
        training split labels — identity too, named by the training subjects' ids, when
        subjects are known — and the shape of each input."""
        table = self.train.table
        names: dict[str, list[str]] = {}
        for task in self.tasks:
            values = getattr(table, task)
            default = ([str(i) for i in range(values.shape[1])] if task in ("au", "attr")
                       else list(EXPRESSIONS) if task == "expr" else ["valence", "arousal"])
            names[task] = [str(n) for n in (self.label_names.get(task) or default)]
        subjects = np.unique(table.subject[table.subject >= 0])
        if subjects.size:
            names["identity"] = [str(int(s)) for s in subjects]
        return DataSpec(name=self.name, label_names=names, inputs=self.train.input_shapes())

    def summary(self) -> dict[str, Any]:
        """Sizes and label statistics of every split, for the log and ``metrics.json``."""
        out = {}
        for split in ("train", "unlabeled", "val", "test"):
            ds = getattr(self, split)
            if ds is not None:
                out[split] = ds.table.label_statistics()
        return out


class FaceImageDataset(Dataset):
    """Reads the images of a :class:`LabelTable` and returns sample dicts (see module doc).

    ``input_keys`` and ``target_keys`` say which entries of a sample are inputs (what models
    read) and which are targets (gathered for evaluation); a dataset of other inputs (clips,
    audio) declares its own, and the trainer handles whatever they name.

    Args:
        table: the split's labels and relative image paths.
        image_size: side length images are resized to (square), or None to keep their size.
    """

    input_keys: tuple[str, ...] = IMAGE_KEYS
    target_keys: tuple[str, ...] = TARGET_KEYS

    def __init__(self, table: LabelTable, *, image_size: int | None) -> None:
        self.table = table
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.table)

    def input_shapes(self) -> dict[str, list[int | None]]:
        """``{input key: shape of one sample}``: (3, S, S) images, S = ``image_size``."""
        return {"image": [3, self.image_size, self.image_size]}

    def transform(self, img: Image.Image, row: int) -> Image.Image:
        """Bring one RGB image to the network's input size (a dataset with crops, e.g. CelebA,
        overrides this; ``row`` lets it look up the sample's box or landmarks)."""
        if self.image_size is not None and img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
        return img

    def load_pixels(self, row: int, relative: str | None = None) -> np.ndarray:
        """The RGB image of ``row`` as uint8 (H, W, 3), after :meth:`transform`: what the
        packed store (:mod:`affectlab.data.packed`) keeps. ``relative``: another file of the
        sample (default its image path)."""
        path = Path(self.table.root) / (relative or self.table.image_paths[row])
        try:
            with Image.open(path) as img:
                return np.asarray(self.transform(img.convert("RGB"), row), dtype=np.uint8)
        except FileNotFoundError:
            raise DataError(f"image file is missing: {path}. Restore it, or regenerate/re-download "
                            "the dataset into dataset.root.") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DataError(f"image file is unreadable or truncated: {path} ({err}). Replace the "
                            "file, or delete it and its label row.") from None

    def load_image(self, row: int) -> torch.Tensor:
        """The RGB image of ``row`` as float32 (3, H, W) in [0, 1] (:func:`pixels_to_float`)."""
        return pixels_to_float(torch.from_numpy(self.load_pixels(row).copy()).permute(2, 0, 1))

    def sample_image(self, row: int) -> torch.Tensor:
        """A sample's ``image``: here the float image; the packed store's uint8 pixels."""
        return self.load_image(row)

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        return {"image": self.sample_image(row), **self.labels(row)}

    def labels(self, row: int) -> dict[str, torch.Tensor]:
        """Every key of row's sample but its inputs: labels, masks, subject, index."""
        t = self.table
        return {
            "au": torch.from_numpy(t.au[row]),
            "au_mask": torch.from_numpy(t.au_mask[row]),
            "expr": torch.tensor(t.expr[row], dtype=torch.int64),
            "expr_mask": torch.tensor(bool(t.expr_mask[row])),
            "va": torch.from_numpy(t.va[row]),
            "va_mask": torch.tensor(bool(t.va_mask[row])),
            "attr": torch.from_numpy(t.attr[row]),
            "attr_mask": torch.from_numpy(t.attr_mask[row]),
            "subject": torch.tensor(t.subject[row], dtype=torch.int64),
            "labeled": torch.tensor(bool(t.labeled[row])),
            "index": torch.tensor(row, dtype=torch.int64),
        }


# How much of a file's end is read to find its format's end marker (room for padding).
TAIL_BYTES = 1024
# Bytes some writers append after an image's end marker (NUL padding, a newline).
PADDING = b"\x00\r\n"
# format (PIL's name) → the bytes a complete file ends with, and how to say so
END_MARKERS: dict[str, tuple[bytes, str]] = {
    "JPEG": (b"\xff\xd9", "the EOI marker FF D9"),
    "PNG": (b"IEND\xaeB`\x82", "the IEND chunk"),   # chunk type + its fixed CRC
}


def image_file_problem(path: Path, size: int | None = None) -> str | None:
    """Why ``path`` cannot be read as an image, or None: cheap checks, no decoding.

    In order: the file exists and is a regular file, is not empty, its header parses
    (``PIL.Image.open`` is lazy: it reads the header only), and it is not truncated — a JPEG
    ends with the EOI marker ``FF D9`` and a PNG with its ``IEND`` chunk, after any trailing
    NUL / newline padding is stripped; other formats get the header check only. A file that
    fails the end check is decoded once before it is called truncated, since some cameras and
    tools append data after the end marker (the decoder then proves it readable). Cost: one
    stat (skipped when ``size`` is given), the header and the last :data:`TAIL_BYTES` bytes.

    Returns:
        A phrase completing "image file <path> ...", e.g. ``"is empty (0 bytes)"``.
    """
    if size is None:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return "is missing"
        except OSError as err:
            return f"cannot be read ({err.strerror})"
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file"
        size = info.st_size
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with open(path, "rb") as handle:
            with Image.open(handle) as img:
                kind = img.format
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read().rstrip(PADDING)
    except FileNotFoundError:
        return "is missing"
    except UnidentifiedImageError:
        return f"is not an image: its {size} bytes start with no format PIL reads"
    except (OSError, SyntaxError, ValueError) as err:
        return f"is damaged or truncated: PIL cannot parse its header ({err})"
    end, described = END_MARKERS.get(kind, (b"", ""))
    if tail.endswith(end):
        return None
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, SyntaxError, ValueError) as err:
        return f"is truncated: a {kind} file ends with {described}, this one does not ({err})"
    return None


def empty_labels(n: int, *, num_aus: int = 0, num_attrs: int = 0) -> dict[str, np.ndarray]:
    """All-unknown label arrays for ``n`` samples; dataset modules fill in what they have."""
    return {
        "subject": np.full(n, -1, dtype=np.int64),
        "labeled": np.ones(n, dtype=bool),
        "au": np.zeros((n, num_aus), dtype=np.float32),
        "au_mask": np.zeros((n, num_aus), dtype=bool),
        "expr": np.zeros(n, dtype=np.int64),
        "expr_mask": np.zeros(n, dtype=bool),
        "va": np.zeros((n, 2), dtype=np.float32),
        "va_mask": np.zeros(n, dtype=bool),
        "attr": np.zeros((n, num_attrs), dtype=np.float32),
        "attr_mask": np.zeros((n, num_attrs), dtype=bool),
    }


def check_subject_exclusive(splits: dict[str, LabelTable]) -> None:
    """Raise :class:`DataError` if a subject id (>= 0) appears in two splits."""
    seen: dict[int, str] = {}
    for split, table in splits.items():
        for subject in np.unique(table.subject):
            if subject < 0:
                continue
            if subject in seen and seen[subject] != split:
                raise DataError(f"subject {subject} appears in both the '{seen[subject]}' and the "
                                f"'{split}' split: splits must be subject-exclusive.")
            seen[int(subject)] = split
