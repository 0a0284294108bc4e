"""What every on-disk dataset module shares: AU selection, error policy, index cache, split
manifests, and the assembly of :class:`~affectlab.data.contract.FaceData`.

A dataset module (``data/sources/<name>.py``) subclasses :class:`OnDiskDataset` and fills in three
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

from affectlab.data.contract import (
    ARRAY_FIELDS,
    DataError,
    FaceData,
    FaceImageDataset,
    LabelTable,
    check_subject_exclusive,
)
from affectlab.data.faces.alignment import AlignedImages
from affectlab.data.faces.alignment import template as template_by_name
from affectlab.data.faces.detection import MTCNN, detect_landmarks
from affectlab.data.sources.image_checks import image_check_cache, readable_images
from affectlab.utils import atomic_write, atomic_write_json, save_npz

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "unlabeled")
# dataset.on_error: known_gaps (default) leaves out what the release is known to lack and stops
# at any other problem; raise stops at both; skip leaves both out
ON_ERROR = ("known_gaps", "raise", "skip")
# Bump when what every index stores changes (read by every module's cache key): old caches are
# then rebuilt. 2: known gaps (Aff-Wild2's, BP4D's, EmotioNet's) are stored apart from skipped
# problems.
INDEX_FORMAT = 2
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
    """The ``dataset.on_error`` policy.

    Two kinds of trouble reach it. A *problem* (:meth:`report`: a malformed label line, a
    damaged image, a file that should be there and is not) stops the run with its message
    under ``known_gaps`` (the default) and ``raise``; ``skip`` records it (the sample is left
    out), logs a summary and counts it. A *known gap* (:meth:`known_gap`: a labelled frame the
    release itself ships no image for — only what a dataset module declares so, e.g. Aff-Wild2's
    frames without a face crop) is left out and counted under ``known_gaps`` and ``skip``, and
    stops the run under ``raise``. Known gaps are counted apart from skipped problems
    (``FaceData.known_gaps`` / ``FaceData.skipped``).
    """

    def __init__(self, policy: str = "known_gaps") -> None:
        if policy not in ON_ERROR:
            raise ValueError(f"dataset.on_error={policy!r}: use known_gaps (leave out only what "
                             "the release is known to lack), raise or skip")
        self.policy = policy
        self.messages: list[str] = []   # problems skipped
        self.gaps: list[str] = []       # files of the known gaps left out

    @property
    def skips(self) -> bool:
        """Whether problems are left out (``skip``) rather than raised."""
        return self.policy == "skip"

    def report(self, message: str) -> None:
        if not self.skips:
            raise DataError(f"{message} (set dataset.on_error=skip to leave such samples out)")
        self.messages.append(message)

    def known_gap(self, path: str | Path, message: str) -> None:
        """A labelled sample whose image ``path`` the release is known to lack (``message``
        says which and why): left out and counted, or an error under ``raise``."""
        if self.policy == "raise":
            raise DataError(f"{message} (a known gap of the release: dataset.on_error="
                            "known_gaps, the default, leaves such frames out and counts them)")
        self.gaps.append(str(path))

    def summarize(self, dataset: str) -> None:
        if self.gaps:
            log.warning("%s: left out %d annotated frames without an image (known gap of the "
                        "release; dataset.on_error=raise makes them errors); first: %s", dataset,
                        len(self.gaps), self.gaps[0])
        if self.messages:
            log.warning("%s: skipped %d problem(s) (dataset.on_error=skip); first: %s", dataset,
                        len(self.messages), self.messages[0])

    def left_out(self) -> str:
        """What was left out so far, for an error message (empty when nothing)."""
        parts = []
        if self.gaps:
            parts.append(f"{len(self.gaps)} known gap(s) of the release left out, first: "
                         f"{self.gaps[0]}")
        if self.messages:
            parts.append(f"{len(self.messages)} problem(s) skipped, first: {self.messages[0]}")
        return "; ".join(parts)


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
        known_gaps: image paths of the known gaps left out while indexing (see
            :meth:`Problems.known_gap`).
    """

    table: LabelTable
    sample_ids: list[str]
    subject_names: list[str]
    aus: list[int]
    problems: list[str] = field(default_factory=list)
    known_gaps: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        """``path``.npz (arrays) + ``path``.json (strings), each written atomically."""
        arrays = {name: getattr(self.table, name) for name in ARRAY_FIELDS}
        atomic_write(path.with_suffix(".npz"), lambda tmp: save_npz(tmp, arrays))
        # most datasets name a sample by its image path: the ids are then not stored twice
        # (Aff-Wild2 has millions of frames)
        ids = None if self.sample_ids == self.table.image_paths else self.sample_ids
        atomic_write_json({"root": str(self.table.root), "image_paths": self.table.image_paths,
                           "sample_ids": ids, "subject_names": self.subject_names,
                           "aus": self.aus, "problems": self.problems,
                           "known_gaps": self.known_gaps}, path.with_suffix(".json"))

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
        return DatasetIndex(table, ids, meta["subject_names"], meta["aus"], meta["problems"],
                            meta.get("known_gaps", []))

    def select_aus(self, aus: list[int]) -> "DatasetIndex":
        """The index with ``au`` columns restricted to and ordered as ``aus``."""
        columns = [self.aus.index(a) for a in aus]
        t = self.table
        table = LabelTable(root=t.root, image_paths=t.image_paths,
                           **{name: getattr(t, name) for name in ARRAY_FIELDS
                              if name not in ("au", "au_mask")},
                           au=t.au[:, columns], au_mask=t.au_mask[:, columns])
        return DatasetIndex(table, self.sample_ids, self.subject_names, list(aus), self.problems,
                            self.known_gaps)


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


def check_folder(path: Path, key: str, what: str, layout: str = "") -> None:
    """``key`` (e.g. ``dataset.root``) must name an existing folder: otherwise a
    :class:`DataError` saying whether it does not exist or is a file (an archive, or one of the
    dataset's files, given instead of the folder), what belongs there (``what``, e.g. "your
    copy of bp4d") and, with ``layout``, how it is laid out."""
    if path.is_dir():
        return
    shown = f", laid out as:\n{layout}" if layout else "."
    if path.exists():
        raise DataError(f"{key}={path} is a file, not a directory: point it at the folder of "
                        f"{what} (unpacked, if it came as an archive){shown}")
    raise DataError(f"{key}={path} does not exist. Point {key} at the folder of {what}{shown}")


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
    (:mod:`affectlab.data.faces.detection`), detected once and cached in ``cache_dir``.
    Aligned faces go through :class:`~affectlab.data.faces.alignment.AlignedImages`: warped onto
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
        on_error: what a problem (malformed line, damaged or missing image) and a known gap of
            the release (a labelled frame it ships no image for) do (:class:`Problems`):
            ``known_gaps`` (default) leaves the gaps out and stops at a problem, ``raise``
            stops at both, ``skip`` leaves both out; each is counted.
        cache_dir: where parsed indexes and image checks are cached (keyed by root and
            annotation files; by path, size and mtime).
        mean, std: per-channel normalisation (default: ImageNet's).
    """

    CODED_AUS: tuple[int, ...] = ()
    DEFAULT_AUS: tuple[int, ...] | None = None
    LAYOUT: str = ""
    INDEX_VERSION = 1   # bump when a module's parsing changes: old caches are then ignored

    def __init__(self, *, name: str, root: str, aus: list[int] | None = None,
                 image_size: int = 112, on_error: str = "known_gaps",
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

    def missing_image_is_known_gap(self, index: DatasetIndex, row: int) -> bool:
        """Whether row ``row`` of ``index``, found without its image file when the splits are
        built, is a known gap of the release (:meth:`Problems.known_gap`) rather than a
        problem. Default: never — a module says so only where the release documents such
        gaps (modules that find them while indexing report them there)."""
        return False

    def reads_image_files(self) -> bool:
        """Whether the samples' ``image_paths`` are files under the root, which :meth:`build`
        then checks (False for images inside a container file, e.g. MS-Celeb's records)."""
        return True

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

    def locate_path(self, candidates: tuple[str, ...], what: str, *, relative: str = "",
                    folders_only: bool = False,
                    hint: str = "Point dataset.root at the release, laid out as:") -> Path:
        """The first ``root/candidate/relative`` that exists (that is a folder, with
        ``folders_only``), for a file or folder whose place differs between copies of a release
        and that no ``dataset.<key>`` names (unlike :meth:`locate_folder`); else a
        :class:`DataError`: ``<what> not found: expected <every path tried>. <hint>`` and the
        layout."""
        for candidate in candidates:
            path = self.root / candidate / relative
            if path.is_dir() if folders_only else path.exists():
                return path
        expected = " or ".join(str(self.root / c / relative) for c in candidates)
        raise DataError(f"{what} not found: expected {expected}. {hint}\n{self.LAYOUT}")

    def check_root(self) -> None:
        check_folder(self.root, "dataset.root", f"your copy of {self.name}", self.LAYOUT)

    def cache_key(self) -> str:
        stats = []
        for path in sorted(self.annotation_files()):
            info = path.stat()
            stats.append((str(path.relative_to(self.root)), info.st_size, info.st_mtime_ns))
        payload = json.dumps([type(self).__module__, type(self).__qualname__, INDEX_FORMAT,
                              self.INDEX_VERSION, str(self.root), self.problems.policy, stats,
                              self.index_options()], sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def index(self) -> DatasetIndex:
        """The parsed layout, from the cache when the annotation files are unchanged."""
        self.check_root()
        path = self.cache_dir / f"{self.name}-{self.cache_key()}"
        index = DatasetIndex.load(path)
        if index is not None:
            self.problems.messages.extend(index.problems)
            self.problems.gaps.extend(index.known_gaps)
        else:
            index = self.read_index(self.problems)
            index.problems = list(self.problems.messages)
            index.known_gaps = list(self.problems.gaps)
            try:
                index.save(path)
            except OSError as err:  # a read-only cache is slower, not wrong
                log.warning("cannot cache the %s index in %s (%s)", self.name, self.cache_dir,
                            err)
        if not len(index.table):
            # said here, with what was left out, rather than as a protocol's or the trainer's
            # complaint about too few subjects or samples later
            raise self.no_images(f"{self.name} indexed no sample")
        return index

    def no_images(self, what: str) -> DataError:
        """The error of an empty dataset or split: ``no images found under <root>`` (``what``
        says where), what was left out on the way, and the expected layout."""
        left_out = self.problems.left_out()
        return DataError(f"no images found under {self.root}: {what}"
                         f"{f' ({left_out})' if left_out else ''}. Expected layout:\n"
                         f"{self.LAYOUT}")

    def aligned_index(self) -> DatasetIndex:
        """The index with its AU columns selected and ordered as ``dataset.aus``."""
        index = self.index()
        return index.select_aus(self.aus) if index.aus != self.aus else index

    def build(self) -> FaceData:
        """Index (cached), select AUs, apply the split manifest, check every image of every
        split (:meth:`readable_rows`) and the subjects."""
        index = self.aligned_index()
        manifest = self.split(index)
        row_of = {sample_id: row for row, sample_id in enumerate(index.sample_ids)}
        listed: dict[str, np.ndarray] = {}
        for split_name, ids in manifest.ids.items():
            unknown = [i for i in ids if i not in row_of]
            if unknown:
                raise DataError(f"the {manifest.protocol} split lists {len(unknown)} sample(s) "
                                f"that are not in {self.root}, e.g. {unknown[0]}.")
            listed[split_name] = np.array([row_of[i] for i in ids], dtype=np.int64)
        # one check over every split: one pass of the thread pool, one cache update
        every = np.concatenate([np.zeros(0, dtype=np.int64), *listed.values()])
        readable = set(self.readable_rows(index, every).tolist())
        tables: dict[str, LabelTable] = {}
        for split_name, rows in listed.items():
            kept = np.array([r for r in rows if r in readable], dtype=np.int64)
            if not len(kept) and split_name != "unlabeled":
                raise self.no_images(f"the {split_name} split of {manifest.protocol} has no "
                                     f"sample with a readable image of the {len(rows)} listed")
            tables[split_name] = index.table.subset(kept)
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
                        manifest=manifest, skipped=len(self.problems.messages),
                        known_gaps=len(self.problems.gaps))

    def pool(self, image_size: int | None) -> FaceImageDataset:
        """This dataset as the unlabelled pool of another (``pool=<name>``; e.g. EmotioNet's
        faces for BP4D), labels hidden: its protocol's ``unlabeled`` split when it has one
        (EmotioNet's automatic-set images), else every indexed sample; images checked as in
        :meth:`build`."""
        index = self.aligned_index()
        ids = self.split(index).ids.get("unlabeled")
        if ids:
            row_of = {sample_id: row for row, sample_id in enumerate(index.sample_ids)}
            candidates = np.array([row_of[i] for i in ids], dtype=np.int64)
        else:
            candidates = np.arange(len(index.table), dtype=np.int64)
        rows = self.readable_rows(index, candidates)
        if not len(rows):
            raise self.no_images(f"{self.name} as a pool has no sample with a readable image "
                                 f"of the {len(candidates)} candidate(s)")
        pool = self.image_dataset(index.table.subset(rows).unlabeled(), image_size)
        self.problems.summarize(self.name)
        return pool

    def image_dataset(self, table: LabelTable, image_size: int | None) -> FaceImageDataset:
        """How this dataset's images are read (:meth:`FaceCrops.face_dataset`; a dataset with
        other crops, e.g. CelebA's or a face box's, overrides this)."""
        return self.face_dataset(table, image_size)

    def readable_rows(self, index: DatasetIndex, rows: np.ndarray) -> np.ndarray:
        """The rows of ``index`` among ``rows`` whose image is readable (cheap checks, cached
        by path, size and mtime: :func:`~.image_checks.readable_images`); the others are reported
        to ``self.problems`` (a missing image as a known gap where
        :meth:`missing_image_is_known_gap`). Unchecked where images are not files."""
        if not len(rows) or not self.reads_image_files():
            return rows
        ok = readable_images(
            self.root, [index.table.image_paths[r] for r in rows], self.problems,
            cache_file=image_check_cache(self.cache_dir, self.name, self.root),
            known_gap=lambda i: self.missing_image_is_known_gap(index, int(rows[i])))
        return rows[ok]


__all__ = ["DatasetIndex", "FaceCrops", "OnDiskDataset", "Problems", "SplitManifest", "select_aus",
           "check_folder", "check_relative_folder", "check_split_fractions", "subject_split",
           "IMAGENET_MEAN", "IMAGENET_STD", "ON_ERROR", "INDEX_FORMAT"]
