"""What every on-disk dataset module shares: AU selection, error policy, index cache, split
manifests, and the assembly of :class:`~affectlab.datasets.base.FaceData`.

A dataset module (``datasets/<name>.py``) subclasses :class:`OnDiskDataset` and fills in three
hooks; everything else — caching, AU selection, image checks, subject-leakage checks, the split
manifest — happens here, once::

    class CKPlus(OnDiskDataset):
        CODED_AUS = (1, 2, 4, ...)            # what the dataset codes
        LAYOUT = "CK+/cohn-kanade-images/..."   # shown when dataset.root is wrong

        def annotation_files(self) -> list[Path]: ...     # their sizes/mtimes key the cache
        def read_index(self, problems) -> DatasetIndex: ...  # parse the layout
        def split(self, index) -> SplitManifest: ...        # the protocol, as sample ids

The index holds every sample with every coded AU (column order ``index.aus``); ``dataset.aus``
selects and orders the label set afterwards. Unknown labels are masks, never values.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from affectlab.datasets.alignment import AlignedImages
from affectlab.datasets.alignment import template as template_by_name
from affectlab.datasets.face_detection import MTCNN, detect_landmarks
from affectlab.datasets.base import (FaceData, FaceImageDataset, LabelTable, DataError,
                                     check_subject_exclusive, ARRAY_FIELDS)
from affectlab.utils import atomic_write, atomic_write_json, save_npz

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "unlabeled")
ON_ERROR = ("raise", "skip")
# ImageNet statistics: the usual normalisation of pretrained backbones on real faces.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def select_aus(coded: tuple[int, ...] | list[int], requested: list[int] | None,
               dataset: str) -> list[int]:
    """``requested`` AU numbers (default: all coded), checked against what ``dataset`` codes."""
    if requested is None:
        return list(coded)
    chosen = [int(a) for a in requested]
    missing = [a for a in chosen if a not in coded]
    if missing:
        raise DataError(f"dataset.aus asks for AU(s) {missing}, which {dataset} does not code; "
                        f"it codes AUs {list(coded)}.")
    if len(set(chosen)) != len(chosen):
        raise DataError(f"dataset.aus lists an AU twice: {chosen}")
    return chosen


class Problems:
    """The ``dataset.on_error`` policy: ``raise`` stops at the first problem with its message;
    ``skip`` records it (the sample is left out), logs a summary and counts it."""

    def __init__(self, policy: str) -> None:
        if policy not in ON_ERROR:
            raise ValueError(f"dataset.on_error={policy!r}: use raise or skip")
        self.policy = policy
        self.messages: list[str] = []

    def report(self, message: str) -> None:
        if self.policy == "raise":
            raise DataError(f"{message} (set dataset.on_error=skip to leave such samples out)")
        self.messages.append(message)

    def summarize(self, dataset: str) -> None:
        if self.messages:
            log.warning("%s: skipped %d problem(s) (dataset.on_error=skip); first: %s", dataset,
                        len(self.messages), self.messages[0])


@dataclass
class DatasetIndex:
    """Every sample of a dataset on disk, with every label the dataset codes.

    Attributes:
        table: a :class:`LabelTable` over all samples (``au`` columns = ``aus``; ``subject``
            indexes ``subject_names``).
        sample_ids: one stable string id per row (the image path relative to the root).
        subject_names: subject identifiers as the dataset writes them (``S005``, ``F001``).
        aus: AU numbers of the ``au`` columns.
        problems: messages of problems skipped while indexing (``on_error=skip``).
    """

    table: LabelTable
    sample_ids: list[str]
    subject_names: list[str]
    aus: list[int]
    problems: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        """``path``.npz (arrays) + ``path``.json (strings), each written atomically."""
        arrays = {name: getattr(self.table, name) for name in ARRAY_FIELDS}
        atomic_write(path.with_suffix(".npz"), lambda tmp: save_npz(tmp, arrays))
        # most datasets name a sample by its image path: the ids are then not stored twice
        # (Aff-Wild2 has millions of frames)
        ids = None if self.sample_ids == self.table.image_paths else self.sample_ids
        atomic_write_json({"root": str(self.table.root), "image_paths": self.table.image_paths,
                           "sample_ids": ids, "subject_names": self.subject_names,
                           "aus": self.aus, "problems": self.problems}, path.with_suffix(".json"))

    @staticmethod
    def load(path: Path) -> "DatasetIndex | None":
        """A saved index, or None when it is missing or unreadable (it is then rebuilt)."""
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            with np.load(path.with_suffix(".npz")) as arrays:
                columns = {name: arrays[name] for name in ARRAY_FIELDS}
            # the two files are written one after the other: a pair from different writes
            # (an interrupted save) has mismatched lengths and is rebuilt, not trusted
            table = LabelTable(root=Path(meta["root"]), image_paths=meta["image_paths"],
                               **columns)
        except (OSError, ValueError, KeyError):
            return None
        ids = meta["sample_ids"] if meta["sample_ids"] is not None else list(table.image_paths)
        return DatasetIndex(table, ids, meta["subject_names"], meta["aus"], meta["problems"])

    def select_aus(self, aus: list[int]) -> "DatasetIndex":
        """The index with ``au`` columns restricted to and ordered as ``aus``."""
        columns = [self.aus.index(a) for a in aus]
        t = self.table
        table = LabelTable(root=t.root, image_paths=t.image_paths,
                           **{name: getattr(t, name) for name in ARRAY_FIELDS
                              if name not in ("au", "au_mask")},
                           au=t.au[:, columns], au_mask=t.au_mask[:, columns])
        return DatasetIndex(table, self.sample_ids, self.subject_names, list(aus), self.problems)


@dataclass
class SplitManifest:
    """A split protocol as data: the sample ids of every split.

    Attributes:
        protocol: what produced it, e.g. ``bp4d/3-fold/fold0`` or ``emotionet/mlcr/run1``.
        ids: split name (``train``, ``val``, ``test``, ``unlabeled``) → sample ids.
    """

    protocol: str
    ids: dict[str, list[str]]

    def checksum(self) -> str:
        """SHA-1 of the protocol and the ids (order-sensitive): equal manifests, equal sums."""
        payload = json.dumps({"protocol": self.protocol, "ids": self.ids}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        atomic_write_json({"protocol": self.protocol, "checksum": self.checksum(),
                           "sizes": {k: len(v) for k, v in self.ids.items()}, "ids": self.ids},
                          path)


def check_relative_folder(key: str, value: str | None) -> None:
    """``dataset.<key>`` must name a folder inside ``dataset.root`` (sample ids are paths
    relative to the root)."""
    if value is None:
        return
    path = Path(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"dataset.{key}={value!r}: give a folder relative to dataset.root "
                         "(sample ids are paths relative to the root)")


def check_split_fractions(train_fraction: float, val_fraction: float) -> None:
    """Shares of a random train / val / test split: both in (0, 1), test gets the rest."""
    if not (0 < train_fraction < 1 and 0 < val_fraction < 1
            and train_fraction + val_fraction < 1):
        raise ValueError(f"dataset.train_fraction={train_fraction}, dataset.val_fraction="
                         f"{val_fraction}: both in (0, 1) with a sum below 1 (test: the rest)")


def subject_split(subjects: list[str], fractions: dict[str, float],
                  seed: int) -> dict[str, list[str]]:
    """Subjects shuffled with ``seed`` and cut into consecutive groups by ``fractions``
    (rounded; the last split takes the rest). Sorted first, so the result does not depend on
    the order the subjects were found in."""
    rng = np.random.default_rng(seed)
    order = sorted(subjects)
    rng.shuffle(order)
    out: dict[str, list[str]] = {}
    start = 0
    names = list(fractions)
    for i, name in enumerate(names):
        stop = len(order) if i == len(names) - 1 else start + round(fractions[name] * len(order))
        out[name] = sorted(order[start:stop])
        start = stop
    return out


# below this share of the aligned side, the kept centre square cuts into the face (MLCR: 224
# of 240 = 0.93); a warning then says which align_size keeps MLCR's share
MIN_KEPT_SHARE = 0.75


class FaceCrops:
    """Face crops shared by the dataset readers (``dataset.crop``): ``none`` resizes the whole
    image; ``align`` aligns each face by five points from the dataset's own landmarks
    (:meth:`landmark_points`); ``detect`` by the five points of the offline face detector
    (:mod:`affectlab.datasets.face_detection`), detected once and cached in ``cache_dir``.
    Aligned faces go through :class:`~affectlab.datasets.alignment.AlignedImages`: warped onto
    ``template`` at ``align_size`` pixels, centre ``image_size`` square kept.

    A class using it calls :meth:`configure_crop` in its constructor and has ``name``,
    ``root``, ``cache_dir`` and ``problems`` (:class:`Problems`).
    """

    # what configure_crop chose: none | align | detect (a dataset with crops of its own, e.g.
    # CelebA's centre or bbox crop, keeps "none" here and crops the base's images itself)
    alignment = "none"
    template = "arcface_112"
    align_size: int | None = None      # None: the image size (the whole aligned face)
    detector: MTCNN | None = None
    name: str
    root: Path
    cache_dir: Path
    problems: Problems

    def landmark_points(self, table: LabelTable) -> np.ndarray:
        """``dataset.crop=align``: the dataset's own landmarks of every sample of ``table`` as
        five points (len(table), 5, 2); NaN where a sample has none, after reporting why to
        ``self.problems`` (such samples are then left out)."""
        raise NotImplementedError(f"{self.name} ships no landmarks: use dataset.crop=detect")

    def face_dataset(self, table: LabelTable, image_size: int | None) -> FaceImageDataset:
        """How the images are read: resized whole (``crop=none``), or aligned by five
        points per face (``crop=align``: the dataset's landmarks; ``crop=detect``: the offline
        detector's). A sample without points is a problem: an error, or left out under
        ``on_error=skip``."""
        if self.alignment == "none":
            return FaceImageDataset(table, image_size=image_size)
        image_size = image_size or getattr(self, "image_size", None)
        if image_size is None:
            raise ValueError(f"dataset.crop={self.alignment} needs an image size to align faces at")
        if self.alignment == "align":
            points = self.landmark_points(table)   # reports why a sample has none
            found = np.isfinite(points).all(axis=(1, 2))
        else:
            points = self.detected_points(table)
            found = np.isfinite(points).all(axis=(1, 2))
            for row in np.flatnonzero(~found):
                self.problems.report(
                    f"no face found in {self.root / table.image_paths[row]} by the face detector "
                    f"({self.detector.settings()}); lower detector.min_face_size or "
                    "detector.thresholds, or use dataset.crop=none")
        keep = np.flatnonzero(found)
        align_size = self.align_size or image_size
        if image_size < MIN_KEPT_SHARE * align_size:
            log.warning("%s: dataset.image_size=%d keeps only the centre %d%% of faces aligned at "
                        "dataset.align_size=%d; to keep the same share of the face as 224 of "
                        "240, set dataset.align_size=%d", self.name, image_size,
                        round(100 * image_size / align_size), align_size,
                        round(image_size * 240 / 224))
        return AlignedImages(table.subset(keep), image_size=image_size, template=self.template,
                             align_size=align_size, points=points[keep])

    def configure_crop(self, crop: str, choices: tuple[str, ...], *, template: str,
                       align_size: int | None, detector: MTCNN | None) -> None:
        """Check and keep the face-crop options (``dataset.crop``, ``template``, ``align_size``,
        ``detector``) of a dataset that supports ``choices`` of none / align / detect."""
        if crop not in choices:
            raise ValueError(f"dataset.crop={crop!r}: use one of {list(choices)} (none: resize "
                             "the image; align: by the dataset's landmarks; detect: by the "
                             "offline face detector's)")
        template_by_name(template)   # fails early, naming the templates, on a typo
        image_size = getattr(self, "image_size", None)
        if crop != "none" and align_size is not None and image_size and align_size < image_size:
            raise ValueError(f"dataset.align_size={align_size} must be ≥ dataset.image_size="
                             f"{image_size} (the centre image_size square is kept)")
        if crop == "detect" and detector is None:
            raise ValueError("dataset.crop=detect needs dataset.detector (configs/detector/)")
        self.crop = self.alignment = crop
        self.template, self.align_size = template, align_size
        self.detector = detector

    def detected_points(self, table: LabelTable) -> np.ndarray:
        """Five points of the largest detected face in each image of ``table`` (NaN: none),
        detected once per image and detector setting and cached in ``cache_dir``."""
        assert self.detector is not None
        key = hashlib.sha1(json.dumps([str(self.root), self.detector.settings()],
                                      sort_keys=True).encode()).hexdigest()[:16]
        return detect_landmarks(self.detector, self.root, table.image_paths,
                                self.cache_dir / f"{self.name}-faces-{key}.npz")



class OnDiskDataset(FaceCrops):
    """Base of the dataset modules that read a published layout (see the module docstring).

    Args:
        name: the dataset's name in run directories and ``metrics.json``.
        root: the dataset as downloaded (relative paths resolve against the working directory).
        aus: AU numbers to use, in this order (None: the class's ``DEFAULT_AUS``).
        image_size: side of the square images fed to the network.
        on_error: ``raise`` (default) or ``skip`` for malformed lines and missing images.
        cache_dir: where parsed indexes are cached (keyed by root and annotation files).
        mean, std: per-channel normalisation (default: ImageNet's).
    """

    CODED_AUS: tuple[int, ...] = ()
    DEFAULT_AUS: tuple[int, ...] | None = None
    LAYOUT: str = ""
    INDEX_VERSION = 1   # bump when a module's parsing changes: old caches are then ignored
    # True where read_index keeps only rows whose image it found by listing their folders, and
    # those folders key the index cache: build() then trusts the index instead of checking
    # every image file a second time (one stat per row: seconds on large or network trees)
    IMAGES_LISTED = False

    def __init__(self, *, name: str, root: str, aus: list[int] | None = None,
                 image_size: int = 112, on_error: str = "raise",
                 cache_dir: str = "data/cache", mean: list[float] | None = None,
                 std: list[float] | None = None) -> None:
        self.name = name
        root_path = Path(root).expanduser()
        self.root = root_path if root_path.is_absolute() else Path.cwd() / root_path
        self.image_size = image_size
        self.problems = Problems(on_error)
        cache = Path(cache_dir).expanduser()
        self.cache_dir = cache if cache.is_absolute() else Path.cwd() / cache
        self.aus = select_aus(self.CODED_AUS, aus if aus is not None else
                              (list(self.DEFAULT_AUS) if self.DEFAULT_AUS else None), name)
        self.mean = tuple(mean) if mean is not None else IMAGENET_MEAN
        self.std = tuple(std) if std is not None else IMAGENET_STD

    # ---------------------------------------------------------------- hooks
    def annotation_files(self) -> list[Path]:
        """The label files (or folders) the index is parsed from; their sizes and mtimes key
        the cache (a folder's mtime changes when files are added or removed)."""
        raise NotImplementedError

    def read_index(self, problems: Problems) -> DatasetIndex:
        """Parse the layout under ``self.root`` into an index (every coded AU)."""
        raise NotImplementedError

    def split(self, index: DatasetIndex) -> SplitManifest:
        """The split protocol as sample ids of ``index``."""
        raise NotImplementedError

    def label_names(self) -> dict[str, list[str]]:
        return {"au": [f"AU{a}" for a in self.aus]}

    def index_options(self) -> dict[str, Any]:
        """Constructor options that change the parsed index (thresholds, image folders); they
        key the cache with the label files, so another value never gets a stale index."""
        return {}

    # -------------------------------------------------------------- provided
    def locate_folder(self, key: str, given: str | None, candidates: tuple[str, ...],
                      holds: Callable[[Path], bool], what: str, example: str = "") -> Path:
        """``root/given`` when the user named it (``dataset.<key>``), else the first of
        ``root/candidates`` for which ``holds(folder)``; a clear error showing where it looked
        (``candidate/example``) and the layout."""
        if given is not None:
            folder = self.root / given
            if not folder.is_dir():
                raise DataError(f"dataset.{key}={given}: {folder} does not exist. Expected "
                                f"layout:\n{self.LAYOUT}")
            return folder
        for candidate in candidates:
            folder = self.root / candidate
            if folder.is_dir() and holds(folder):
                return folder
        tried = ", ".join(f"{self.root / c}/{example}" for c in candidates)
        raise DataError(f"no {what} under dataset.root={self.root} (looked for {tried}). Set "
                        f"dataset.{key}, or lay the data out as:\n{self.LAYOUT}")

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise DataError(f"dataset.root={self.root} does not exist. Point dataset.root at "
                            f"your copy of {self.name}, laid out as:\n{self.LAYOUT}")

    def cache_key(self) -> str:
        stats = []
        for path in sorted(self.annotation_files()):
            info = path.stat()
            stats.append((str(path.relative_to(self.root)), info.st_size, info.st_mtime_ns))
        payload = json.dumps([type(self).__module__, type(self).__qualname__,
                              self.INDEX_VERSION, str(self.root), self.problems.policy, stats,
                              self.index_options()], sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def index(self) -> DatasetIndex:
        """The parsed layout, from the cache when the annotation files are unchanged."""
        self.check_root()
        path = self.cache_dir / f"{self.name}-{self.cache_key()}"
        cached = DatasetIndex.load(path)
        if cached is not None:
            for message in cached.problems:
                self.problems.messages.append(message)
            return cached
        index = self.read_index(self.problems)
        index.problems = list(self.problems.messages)
        try:
            index.save(path)
        except OSError as err:  # a read-only cache is slower, not wrong
            log.warning("cannot cache the %s index in %s (%s)", self.name, self.cache_dir, err)
        return index

    def aligned_index(self) -> DatasetIndex:
        """The index with its AU columns selected and ordered as ``dataset.aus``."""
        index = self.index()
        return index.select_aus(self.aus) if index.aus != self.aus else index

    def build(self) -> FaceData:
        """Index (cached), select AUs, apply the split manifest, check images and subjects."""
        index = self.aligned_index()
        manifest = self.split(index)
        row_of = {sample_id: row for row, sample_id in enumerate(index.sample_ids)}
        tables: dict[str, LabelTable] = {}
        for split_name, ids in manifest.ids.items():
            unknown = [i for i in ids if i not in row_of]
            if unknown:
                raise DataError(f"the {manifest.protocol} split lists {len(unknown)} sample(s) "
                                f"that are not in {self.root}, e.g. {unknown[0]}.")
            rows = np.array([row_of[i] for i in ids], dtype=np.int64)
            rows = rows[[self._image_present(index, r) for r in rows]] if len(rows) else rows
            tables[split_name] = index.table.subset(rows)
        # val and test must share no subject with each other or with what is trained on; the
        # labelled and unlabelled training data may share subjects (CelebA's semi-supervised
        # subset draws both from the official training partition)
        trained_on = [t for k, t in tables.items() if k in ("train", "unlabeled")]
        check_subject_exclusive({"train + unlabeled": LabelTable.concat(trained_on),
                                 **{k: t for k, t in tables.items()
                                    if k not in ("train", "unlabeled")}})
        # reading a split may leave out more samples (faces without landmarks), so the
        # problems are summarised after it
        pool = tables.get("unlabeled")
        splits = {name: self.image_dataset(tables[name], self.image_size)
                  for name in ("train", "val", "test")}
        unlabeled = (self.image_dataset(pool.unlabeled(), self.image_size)
                     if pool is not None and len(pool) else None)
        self.problems.summarize(self.name)
        return FaceData(name=self.name, **splits, unlabeled=unlabeled,
                        label_names=self.label_names(), mean=self.mean, std=self.std,
                        manifest=manifest, skipped=len(self.problems.messages))

    def pool(self, image_size: int | None) -> FaceImageDataset:
        """This dataset as the unlabelled pool of another (``pool=<name>``; e.g. EmotioNet's
        faces for BP4D), labels hidden: its protocol's ``unlabeled`` split when it has one
        (EmotioNet's automatic-set images), else every indexed sample whose image exists."""
        index = self.aligned_index()
        ids = self.split(index).ids.get("unlabeled")
        if ids:
            row_of = {sample_id: row for row, sample_id in enumerate(index.sample_ids)}
            candidates = [row_of[i] for i in ids]
        else:
            candidates = range(len(index.table))
        rows = np.array([r for r in candidates if self._image_present(index, r)], dtype=np.int64)
        pool = self.image_dataset(index.table.subset(rows).unlabeled(), image_size)
        self.problems.summarize(self.name)
        return pool

    def image_dataset(self, table: LabelTable, image_size: int | None) -> FaceImageDataset:
        """How this dataset's images are read (:meth:`FaceCrops.face_dataset`; a dataset with
        other crops, e.g. CelebA's or a face box's, overrides this)."""
        return self.face_dataset(table, image_size)

    def _image_present(self, index: DatasetIndex, row: int) -> bool:
        if self.IMAGES_LISTED:
            return True
        path = self.root / index.table.image_paths[row]
        if path.is_file():
            return True
        self.problems.report(f"image file is missing: {path}")
        return False


__all__ = ["DatasetIndex", "FaceCrops", "OnDiskDataset", "Problems", "SplitManifest", "select_aus",
           "check_relative_folder", "check_split_fractions",
           "subject_split", "IMAGENET_MEAN", "IMAGENET_STD"]
