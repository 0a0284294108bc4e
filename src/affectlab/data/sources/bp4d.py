"""BP4D-Spontaneous: AU occurrence on video frames of 41 subjects, with the 3-fold protocol.

On disk (``dataset.root``; reference: ``shared/reference/datasets.md`` §2)::

    BP4D/
    ├── BP4D-training/F001/T1/2440.jpg …   frames, one folder per subject and task (T1–T8),
    │                                      named by the frame number, zero-padded (the width
    │                                      is whatever the files use: 4 digits in the release,
    │                                      none in ME-GraphAU's crops)
    ├── AUCoding/AU_OCC/F001_T1.csv …      one AU occurrence file per subject and task
    └── 2DFeatures/F001_T1.mat …           49 tracked landmarks per frame (dataset.crop=align)

The image folder may also be ``img/`` (ME-GraphAU's crops) or the root itself (JAA-Net's
``BP4D/F001/T1/0643.jpg``); the AU files may sit directly in ``AUCoding/``. Both are found
automatically or named by ``dataset.image_dir`` / ``dataset.au_occ_dir``.

AU occurrence CSV: comma-separated, one header row of integers. Column ``0`` holds the frame
number, every other column is named by its AU number. Values: ``1`` present, ``0`` absent,
``9`` unknown / not coded (→ mask False, never a label). Frame numbers start mid-video (only
a ~20 s segment of every task is coded), e.g. F001/T1 starts at 2440::

    0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24
    2440,0,0,9,0,9,1,1,9,9,1,9,1,9,0,0,9,0,9,9,0,9,0,0,0
    2441,0,0,9,0,9,1,1,9,9,1,9,1,9,0,0,9,1,9,9,0,9,0,0,9

Protocol: the subject-exclusive 3-fold cross-validation of DRML / EAC-Net / JAA-Net /
ME-GraphAU, with the exact part lists of ME-GraphAU's ``tool/BP4D_image_label_process.py``
(:data:`PARTS`). ``fold=k`` (0-based) is the papers' "fold k+1":

======  =============  ===================  ======================
fold    papers' name   tested on            trained on (minus val)
======  =============  ===================  ======================
0       fold1          part3 (13 subjects)  part1 + part2 (28)
1       fold2          part2 (14 subjects)  part1 + part3 (27)
2       fold3          part1 (14 subjects)  part2 + part3 (27)
======  =============  ===================  ======================

Face crops (``dataset.crop``): ``none`` resizes the 1040×1392 frame (use it on pre-cropped
faces such as ME-GraphAU's ``img/``); ``align`` aligns each frame by its five points from the
release's tracked landmarks, ``2DFeatures/<subject>_<task>.mat``; ``detect`` by the offline
detector's (:mod:`affectlab.data.faces.detection`). The ``.mat`` files are MATLAB v7.3
(HDF5): ``fit/pred`` is a cell array with one entry per video frame (entry k−1 ↔ frame k, as
EAC-Net's ``get_bp4d_2dfeat.py`` reads them), each a 49 × 2 matrix of 1-based pixel
coordinates (x column, y column), empty where tracking failed. The 49 points are the 68-point
iBUG mark-up without the jaw line and the inner mouth corners
(:data:`~affectlab.data.faces.alignment.IBUG68_TO_49`).

The papers have no validation split; here ``val_subjects`` training subjects (drawn with
``seed``, the same for every fold's training pool) are held out for model selection, so the
test part is never looked at before testing.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from pathlib import Path

import numpy as np

from affectlab.data.contract import DataError, LabelTable, empty_labels
from affectlab.data.faces.alignment import five_points_from_49
from affectlab.data.faces.detection import MTCNN
from affectlab.data.sources.on_disk import (
    DatasetIndex,
    OnDiskDataset,
    Problems,
    SplitManifest,
    check_relative_folder,
    subject_split,
)

log = logging.getLogger(__name__)

# The 12 AUs of every BP4D benchmark (DRML, EAC-Net, JAA-Net, ME-GraphAU; column order of
# ME-GraphAU's ``usecols``).
BP4D_12_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)

# The three subject parts of the protocol, in the order of ME-GraphAU's BP4D_Sequence_split
# (also the order subjects appear in JAA-Net's BP4D_part{1,2,3}_path.txt).
PART1: tuple[str, ...] = ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012",
                          "M001", "F016", "M014", "F023", "M008")
PART2: tuple[str, ...] = ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013",
                          "M016", "F020", "F011", "M013", "M005")
PART3: tuple[str, ...] = ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004",
                          "F021", "F017", "M015", "F014")
PARTS: tuple[tuple[str, ...], ...] = (PART1, PART2, PART3)
# fold (0-based) -> index into PARTS of the tested part: fold1 of the papers tests part3,
# fold2 part2, fold3 part1.
TEST_PART: dict[int, int] = {0: 2, 1: 1, 2: 0}
SUBJECTS: tuple[str, ...] = tuple(sorted(PART1 + PART2 + PART3))   # 41: F001–F023, M001–M018

UNKNOWN = 9                         # the AU_OCC sentinel for "not coded / unknown"
FRAME_COLUMN = "0"                  # header name of the frame-number column
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Where releases and preprocessing repos put the frames and the AU files, tried in this order
# (relative to the root; "." = subject folders directly under the root).
IMAGE_DIR_CANDIDATES: tuple[str, ...] = ("BP4D-training", "img", ".")
AU_OCC_DIR_CANDIDATES: tuple[str, ...] = ("AUCoding/AU_OCC", "AUCoding", "AU_OCC")

SUBJECT_PATTERN = re.compile(r"^[FM]\d{3}$")
OCC_FILE_PATTERN = re.compile(r"^([FM]\d{3})_(T\d+)\.csv$")

LAYOUT = """\
BP4D/                                  <- dataset.root
├── BP4D-training/                     <- frames (or img/, or the subject folders right under
│   │                                     the root; dataset.image_dir names another folder)
│   └── F001/T1/2440.jpg …             <subject>/<task>/<frame number, zero-padded>.jpg|png
└── AUCoding/AU_OCC/                   <- AU occurrence (or AUCoding/; dataset.au_occ_dir)
    └── F001_T1.csv … M018_T8.csv      header "0,1,2,3,…" (0 = frame, then AU numbers);
                                       values 1 present, 0 absent, 9 unknown
Subjects of the 3-fold protocol: F001–F023, M001–M018 (see affectlab.data.sources.bp4d.PARTS)."""


class BP4D(OnDiskDataset):
    """BP4D AU occurrence with the subject-exclusive 3-fold protocol (see the module doc).

    Args:
        name: the dataset's name in run directories and ``metrics.json``.
        root: the dataset as downloaded (relative paths resolve against the working directory).
        aus: AU numbers to use, in this order (None: the 12 of the benchmarks,
            :data:`BP4D_12_AUS`); any subset of ``CODED_AUS``.
        image_size: side of the square images fed to the network (frames are resized).
        fold: 0, 1 or 2 = the papers' fold1, fold2, fold3: test on part3, part2, part1
            respectively and train on the other two parts.
        val_subjects: how many training subjects are held out as the (subject-exclusive)
            validation split; at least 1 (the trainer selects its best checkpoint on it).
        seed: seed of the draw of the validation subjects (fixed per config, not the run's
            seed, so every training seed sees the same split).
        image_dir: folder of the ``<subject>/<task>/<frame>.jpg`` frames, relative to the root
            (None: the first of :data:`IMAGE_DIR_CANDIDATES` that holds subject folders).
        au_occ_dir: folder of the ``<subject>_<task>.csv`` AU occurrence files, relative to
            the root (None: the first of :data:`AU_OCC_DIR_CANDIDATES` that holds such files).
        crop: ``none`` (resize the frame), ``align`` (by the 2DFeatures landmarks) or
            ``detect`` (by the face detector's five points).
        template, align_size: alignment template and the side it is aligned at (the centre
            ``image_size`` square is kept).
        features_dir: folder of the ``<subject>_<task>.mat`` landmark files, under the root.
        detector: the face detector of ``crop=detect`` (``configs/detector/``).
        on_error: ``known_gaps`` (default) leaves out coded frames the release has no image
            of (a known gap, counted) and stops at every other problem; ``raise`` stops at
            both; ``skip`` leaves both out. Problems: malformed lines, values outside
            {0, 1, 9}, a missing sequence folder, damaged images, frames without landmarks
            (``crop=align``) and subjects of the protocol that are missing.
        cache_dir: where parsed indexes are cached (keyed by root, AU files and frame folders).
        mean, std: per-channel normalisation (default: ImageNet's).
    """

    # The AU_OCC files have a column for (at least) every AU number from 1 up (§2.2), but
    # outside the 12 benchmark AUs the columns are mostly 9 (not coded), and how far the
    # numbering goes is unverified (§10.1): only the 12 are coded with 0/1 in every sequence,
    # so they are the AUs this module promises (and requires in every file's header).
    CODED_AUS: tuple[int, ...] = BP4D_12_AUS
    DEFAULT_AUS: tuple[int, ...] | None = BP4D_12_AUS
    LAYOUT: str = LAYOUT

    def __init__(self, *, name: str = "bp4d", root: str = "data/BP4D",
                 aus: list[int] | None = None, image_size: int = 224, fold: int = 0,
                 val_subjects: int = 3, seed: int = 0, image_dir: str | None = None,
                 au_occ_dir: str | None = None, crop: str = "none",
                 template: str = "mlcr_240", align_size: int = 240,
                 features_dir: str = "2DFeatures", detector: MTCNN | None = None,
                 on_error: str = "known_gaps", cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None) -> None:
        if fold not in TEST_PART:
            raise ValueError(f"dataset.fold={fold}: use 0, 1 or 2 (the papers' fold1, fold2, "
                             "fold3: test on part3, part2, part1)")
        train_pool = sum(len(PARTS[p]) for p in range(3) if p != TEST_PART[fold])
        if not 1 <= val_subjects < train_pool:
            raise ValueError(f"dataset.val_subjects={val_subjects}: fold {fold} trains on "
                             f"{train_pool} subjects; hold out between 1 and {train_pool - 1} "
                             "of them for validation")
        if image_size < 16:
            raise ValueError(f"dataset.image_size={image_size} is too small; use >= 16")
        check_relative_folder("image_dir", image_dir)
        check_relative_folder("au_occ_dir", au_occ_dir)
        check_relative_folder("features_dir", features_dir)
        super().__init__(name=name, root=root, aus=aus, image_size=image_size,
                         on_error=on_error, cache_dir=cache_dir, mean=mean, std=std)
        self.configure_crop(crop, ("none", "align", "detect"), template=template,
                            align_size=align_size, detector=detector)
        self.features_dir = features_dir
        self.fold = fold
        self.val_subjects = val_subjects
        self.seed = seed
        self._image_dir = image_dir
        self._au_occ_dir = au_occ_dir

    # ------------------------------------------------------------- locations
    def au_occ_folder(self) -> Path:
        """The folder of the AU occurrence CSVs (given, or the first candidate holding some)."""
        return self.locate_folder(
            "au_occ_dir", self._au_occ_dir, AU_OCC_DIR_CANDIDATES,
            lambda folder: any(OCC_FILE_PATTERN.match(p.name) for p in folder.iterdir()),
            "BP4D AU occurrence files", example="F001_T1.csv")

    def image_folder(self) -> Path:
        """The folder holding ``<subject>/<task>/`` frame folders (given, or detected)."""
        return self.locate_folder(
            "image_dir", self._image_dir, IMAGE_DIR_CANDIDATES,
            lambda folder: any(p.is_dir() and SUBJECT_PATTERN.match(p.name)
                               for p in folder.iterdir()),
            "BP4D frame folders", example="F001/T1/")

    def occ_files(self) -> list[tuple[str, str, Path]]:
        """``(subject, task, csv path)`` of every AU occurrence file, by subject then task."""
        found = []
        for path in self.au_occ_folder().iterdir():
            match = OCC_FILE_PATTERN.match(path.name)
            if match and path.is_file():
                found.append((match.group(1), match.group(2), path))
        return sorted(found, key=lambda f: (f[0], int(f[1][1:])))

    # ---------------------------------------------------------------- hooks
    def annotation_files(self) -> list[Path]:
        """The AU CSVs, plus the image folder and the subject and sequence folders under it.

        The folders are in the cache key too (a directory's mtime changes when an entry is
        added or removed), because which rows have an image is decided while indexing.
        """
        images = self.image_folder()
        files: list[Path] = [images]
        folders: set[Path] = set()
        for subject, task, path in self.occ_files():
            files.append(path)
            for folder in (images / subject, images / subject / task):
                if folder not in folders and folder.is_dir():
                    folders.add(folder)
                    files.append(folder)
        return files

    def read_index(self, problems: Problems) -> DatasetIndex:
        """Parse every AU_OCC CSV; one sample per row whose frame has an image.

        AU columns are selected by header name (position ≠ AU number). Every problem — a
        header that is not integers or lacks a coded AU, a malformed row, a value outside
        {0, 1, 9}, a repeated frame, a sequence without its frame folder — goes through
        ``problems`` as ``<file>, line <n>: ...``; under ``on_error=skip`` the row (for header
        problems, the file) is left out. A coded frame without an image in its sequence's
        folder (BP4D's tracking failures, datasets.md §2.7) is a known gap of the release.
        """
        images = self.image_folder()
        aus = list(self.CODED_AUS)
        paths: list[str] = []
        subjects: list[str] = []
        au_rows: list[list[int]] = []
        for subject, task, csv_path in self.occ_files():
            sequence = images / subject / task
            frame_files = _frame_files(sequence)
            relative_dir = sequence.relative_to(self.root).as_posix()
            has_folder = sequence.is_dir()
            for line, frame, values in _read_occ_csv(csv_path, aus, problems):
                name = frame_files.get(frame)
                if name is None and has_folder:
                    # BP4D codes frames it has no image of (tracking failures): a known gap
                    problems.known_gap(
                        sequence / _frame_name(frame, frame_files),
                        f"{csv_path}, line {line}: frame {frame} has no image ({sequence} has "
                        "no image of that frame; frames are named by the zero-padded frame "
                        "number, e.g. 2440.jpg)")
                    continue
                if name is None:
                    problems.report(f"{csv_path}, line {line}: frame {frame} has no image (the "
                                    f"folder {sequence} does not exist)")
                    continue
                paths.append(f"{relative_dir}/{name}")
                subjects.append(subject)
                au_rows.append(values)

        subject_names = sorted(set(subjects))
        number = {s: i for i, s in enumerate(subject_names)}
        labels = empty_labels(len(paths), num_aus=len(aus))
        if paths:
            codes = np.array(au_rows, dtype=np.int64).reshape(len(paths), len(aus))
            labels["au"][:] = (codes == 1).astype(np.float32)
            labels["au_mask"][:] = codes != UNKNOWN
            labels["subject"][:] = [number[s] for s in subjects]
        table = LabelTable(root=self.root, image_paths=paths, **labels)
        return DatasetIndex(table, list(paths), subject_names, aus)

    def landmark_points(self, table: LabelTable) -> np.ndarray:
        """Five points per frame from ``2DFeatures/<subject>_<task>.mat`` (see the module doc):
        each sequence's file is opened once; a missing file, a frame beyond its ``fit/pred``
        or an empty entry (tracking failed) is reported and leaves that frame's points NaN."""
        import h5py  # only this crop reads HDF5

        points = np.full((len(table), 5, 2), np.nan)
        by_sequence: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for row, image_path in enumerate(table.image_paths):
            parts = Path(image_path).parts
            by_sequence.setdefault((parts[-3], parts[-2]), []).append(
                (row, int(Path(parts[-1]).stem)))
        for (subject, task), frames in by_sequence.items():
            path = self.root / self.features_dir / f"{subject}_{task}.mat"
            try:
                with h5py.File(path, "r") as mat:
                    entries = np.asarray(mat["fit"]["pred"]).ravel()
                    for row, frame in frames:
                        if not 1 <= frame <= len(entries):
                            self.problems.report(
                                f"{path}: fit/pred has {len(entries)} entries, none for frame "
                                f"{frame} ({self.root / table.image_paths[row]})")
                            continue
                        marks = np.asarray(mat[entries[frame - 1]], dtype=np.float64)
                        if marks.size != 98:
                            self.problems.report(
                                f"{path}: no landmarks for frame {frame} (fit/pred entry "
                                f"{frame} holds {marks.size} values, 49 × 2 expected; tracking "
                                "failed there)")
                            continue
                        # MATLAB's 49 × 2 is stored as 2 × 49 (x row, y row), 1-based
                        points[row] = five_points_from_49(marks.reshape(2, 49).T - 1.0)
            except (OSError, KeyError, ValueError) as err:
                for row, _ in frames:
                    self.problems.report(
                        f"cannot read the landmarks of {self.root / table.image_paths[row]} "
                        f"from {path} ({err}); dataset.crop=align needs BP4D's 2DFeatures/"
                        "<subject>_<task>.mat (dataset.features_dir), or use crop=detect")
                continue
        return points

    def split(self, index: DatasetIndex) -> SplitManifest:
        """The 3-fold protocol: test part by :data:`TEST_PART`, the other two parts train,
        ``val_subjects`` of the training subjects (``seed``) validate. Ids in index order."""
        present = set(index.subject_names)
        missing = {f"part{p + 1}": [s for s in PARTS[p] if s not in present] for p in range(3)}
        missing = {part: names for part, names in missing.items() if names}
        if missing:
            listed = "; ".join(f"{part}: {', '.join(names)}" for part, names in missing.items())
            self.problems.report(
                f"the BP4D 3-fold protocol (dataset.fold={self.fold}) needs every subject of "
                f"its parts, but these have no samples ({listed}): no AU occurrence file "
                f"<subject>_T<n>.csv in {self.au_occ_folder()}, or every row was left out")
        stray = sorted(present - set(SUBJECTS))
        if stray:
            log.warning("bp4d: subject(s) %s are in no part of the 3-fold protocol; left out",
                        ", ".join(stray))

        test_part = TEST_PART[self.fold]
        test = [s for s in PARTS[test_part] if s in present]
        pool = [s for p in range(3) if p != test_part for s in PARTS[p] if s in present]
        if len(pool) <= self.val_subjects or not test:
            raise DataError(f"BP4D fold {self.fold}: {len(pool)} training and {len(test)} test "
                            f"subject(s) are on disk under {self.root}; the fold needs more than "
                            f"dataset.val_subjects={self.val_subjects} training subjects and at "
                            "least one test subject")
        chosen = subject_split(pool, {"val": self.val_subjects / len(pool),
                                      "train": 1 - self.val_subjects / len(pool)}, self.seed)
        role = {s: "train" for s in chosen["train"]}
        role.update({s: "val" for s in chosen["val"]})
        role.update({s: "test" for s in test})
        ids: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for sample_id, subject in zip(index.sample_ids, index.table.subject):
            split = role.get(index.subject_names[subject])
            if split is not None:
                ids[split].append(sample_id)
        return SplitManifest(protocol=f"bp4d/3-fold/fold{self.fold}", ids=ids)


# ------------------------------------------------------------------------------------------
# Parsing helpers.


def _frame_files(folder: Path) -> dict[int, str]:
    """Frame number → file name of the images in one sequence folder ({} if it is missing).

    Names are matched by their integer value, so the zero-padding width is whatever this
    sequence's files use (4 digits in the release, 5 in some copies, none in ME-GraphAU's crops).
    """
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return {}
    frames: dict[int, str] = {}
    for name in entries:
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in IMAGE_SUFFIXES and stem.isdigit():
            frames.setdefault(int(stem), name)   # sorted: "0643.jpg" wins over "643.jpg"
    return frames


def _frame_name(frame: int, frame_files: dict[int, str]) -> str:
    """The file name ``frame`` would have in a sequence holding ``frame_files`` (their padding
    width and suffix; ``<frame>.jpg`` when it holds none)."""
    stem, suffix = os.path.splitext(next(iter(frame_files.values()), ".jpg"))
    return f"{frame:0{len(stem)}d}{suffix}"


def _read_occ_csv(path: Path, aus: list[int],
                  problems: Problems) -> list[tuple[int, int, list[int]]]:
    """``(line number, frame number, [code per AU in aus])`` of every valid row of one AU_OCC
    CSV (line 1 = the header).

    Codes are 0, 1 or :data:`UNKNOWN`. Problems are reported through ``problems``; a header
    problem leaves the whole file out (it is reported once).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        problems.report(f"{path}, line 1: cannot be read ({err})")
        return []
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        problems.report(f"{path}, line 1: the file is empty (expected a header row "
                        "'0,1,2,…' and one row per coded frame)")
        return []
    names = [cell.strip() for cell in header]
    if not all(re.fullmatch(r"\d+", n) for n in names):
        problems.report(f"{path}, line 1: the header must be integers (0 = frame number, then "
                        f"AU numbers), found {','.join(header)[:80]!r}")
        return []
    numbers = [int(n) for n in names]
    if len(set(numbers)) != len(numbers):
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        problems.report(f"{path}, line 1: the header names column(s) {repeated} twice")
        return []
    if int(FRAME_COLUMN) not in numbers:
        problems.report(f"{path}, line 1: the header has no frame-number column '0'")
        return []
    lacking = [a for a in aus if a not in numbers]
    if lacking:
        problems.report(f"{path}, line 1: the header has no column for AU(s) {lacking}; "
                        f"it names {numbers}")
        return []
    frame_column = numbers.index(int(FRAME_COLUMN))
    au_columns = [numbers.index(a) for a in aus]

    out = []
    seen: dict[int, int] = {}
    for line, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue                      # blank (e.g. trailing) lines carry nothing
        if len(row) != len(numbers):
            problems.report(f"{path}, line {line}: expected {len(numbers)} comma-separated "
                            f"values (one per header column), found {len(row)}")
            continue
        try:
            frame = int(row[frame_column])
            values = [int(row[c]) for c in au_columns]
        except ValueError:
            problems.report(f"{path}, line {line}: not an integer in {','.join(row)[:80]!r}")
            continue
        if frame < 0:
            problems.report(f"{path}, line {line}: negative frame number {frame}")
            continue
        bad = [(a, v) for a, v in zip(aus, values) if v not in (0, 1, UNKNOWN)]
        if bad:
            shown = ", ".join(f"AU{a}={v}" for a, v in bad)
            problems.report(f"{path}, line {line}: AU values must be 1 (present), 0 (absent) "
                            f"or 9 (unknown), found {shown}")
            continue
        if frame in seen:
            problems.report(f"{path}, line {line}: frame {frame} is coded twice (also on line "
                            f"{seen[frame]})")
            continue
        seen[frame] = line
        out.append((line, frame, values))
    return out


__all__ = ["BP4D", "BP4D_12_AUS", "PARTS", "PART1", "PART2", "PART3", "TEST_PART", "SUBJECTS",
           "LAYOUT"]
