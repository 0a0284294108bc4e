"""Aff-Wild2 as released for the ABAW challenges of 2020 (1st) and 2021 (2nd): per-frame AU
occurrence, expression and valence/arousal labels of in-the-wild videos, read from the
organisers' annotation files and cropped-aligned frames (reference: ``datasets.md`` §6).

Layout (``dataset.root``)::

    cropped_aligned/<video>/00001.jpg, 00002.jpg, …     organiser crops, 1-based frame numbers
    cropped_aligned/<video>_left/, <video>_right/        two people in one video: one per side
    annotations/AU_Set/Training_Set/<video>.txt          ABAW 2020: 8 AUs, folder Training_Set
    annotations/AU_Set/Train_Set/<video>.txt             ABAW 2021: 12 AUs, folder Train_Set
    annotations/AU_Set/Validation_Set/<video>.txt        (both releases)
    annotations/EXPR_Set/{Training_Set|Train_Set, Validation_Set}/<video>.txt
    annotations/VA_Set/{Training_Set|Train_Set, Validation_Set}/<video>.txt

Some archives unpack to ``annotations/annotations/…``; that, and ``AU_Set/`` … directly in the
root, are found too (``annotation_dir`` names another folder). ``image_dir`` renames
``cropped_aligned``.

Annotation files (one per video or video side and task; line 1 is a header, line k + 1 holds
frame k, i.e. the crop ``k:05d.jpg``)::

    AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26      AU: 1 / 0, -1 = not annotated
    0,0,0,1,1,1,1,0,0,0,1,0
    -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1

    Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise       EXPR: class 0..6, -1 = none
    4

    valence,arousal                                             VA: floats in [-1, 1], -5 = none
    0.415,0.262

The header decides the columns: AUs are found by name (``AU12``), expressions are mapped by
class name onto :data:`~affectlab.data.contract.EXPRESSIONS` (the Aff-Wild2 order, so usually the
identity) and valence/arousal by name. The sentinels (AU −1, EXPR −1, VA −5) become masks, never
labels; an AU −1 masks that AU only (the real files write whole −1 lines), a −5 in either VA
value masks the frame's VA. Any other value (an AU 2, an expression 7 — ABAW 2022's "Other" —,
a valence of 1.3), a line with the wrong number of fields, or a header that does not name the
release's AUs is a problem (``dataset.on_error``): ``known_gaps`` (the default) and ``raise``
stop with ``<file>, line <n>``; ``skip`` masks that line's labels of that task (for a bad header:
the file's) — never turning them into negatives — and counts it.

Samples: one per (official set, video side, frame) that has at least one label of the tasks read
(``tasks``: any of ``au``, ``expr``, ``va``). A frame gets every label it has in these tasks and
masks elsewhere — the multi-task ABAW works train on this union. Frames whose lines are all
sentinels are not samples. ``cropped_aligned`` leaves out frames in which no face was detected,
so the real data has labelled frames without a crop in nearly every video (§6.3): each is a
*known gap* of the release (:meth:`~affectlab.data.sources.on_disk.Problems.known_gap`), left out
and counted under the default ``on_error=known_gaps`` (``FaceData.known_gaps``), an error under
``on_error=raise``. A missing crop folder is a problem (an error unless ``on_error=skip``) for
the whole video side: the release has one for every video. Crops without a label line
(organisers' ±1 frames) are ignored.

Sample ids are ``train:cropped_aligned/<video>/00001.jpg`` and ``validation:…`` (the official set
the labels come from, then the image path relative to the root), so that a frame listed in one
task's training set and another task's validation set stays two rows with their own labels.

Subjects: Aff-Wild2 has no identity labels. The subject of a sample is its video: the file name
without ``_left``/``_right``, so the two people of one video are one subject (they share the
scene and interact; splitting them across train and test would leak). The same person may
appear in several videos (YouTube channels); nothing in the release says which, so "subject-
exclusive" here means video-exclusive — as in the official split, which is by video.

Protocol ``affwild2/<release>/official``: the challenge's test labels are not public, so the
common practice (and this module's) is to report on the official **validation** set: it is the
``test`` split here, with every frame of every task read. The framework selects checkpoints on a
``val`` split, which is carved from the official **training** videos: ``val_videos`` videos (a
``_left``/``_right`` pair counts once), or else ``val_fraction`` of them (at least one), drawn
with ``seed``; the other training videos are ``train``. A video (subject) in both official sets —
within a task, or across tasks (a pitfall of ABAW 2021, §6.5) — is leakage: ``overlap=raise``
(default) stops with a DataError naming the files; ``overlap=exclude_from_train`` leaves its
training-set frames out, so the official validation set stays complete.

Releases: ``release=auto`` takes the release from the training folders' name (``Training_Set``:
``abaw2020``, ``Train_Set``: ``abaw2021``); an explicit release expects its own name. The release
fixes the AU columns (:data:`RELEASE_AUS`, also ``dataset.aus``'s default): every AU file's
header must name them all.

Official metrics (§6.4) are computed from these labels by :func:`affectlab.metrics.evaluate_tasks`
(``abaw`` keys: AU 0.5·F1 + 0.5·acc, EXPR 0.67·F1 + 0.33·acc, VA mean CCC) for the tasks a method
predicts.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from affectlab.data.audio import read_video_index
from affectlab.data.clips import ClipSettings, FaceClipDataset, Video, clip_rules, read_landmarks
from affectlab.data.contract import (
    EXPRESSIONS,
    DataError,
    FaceData,
    FaceImageDataset,
    LabelTable,
    empty_labels,
)
from affectlab.data.sources.on_disk import (
    DatasetIndex,
    OnDiskDataset,
    Problems,
    SplitManifest,
    check_relative_folder,
    select_aus,
    subject_split,
)

log = logging.getLogger(__name__)

RELEASES: tuple[str, ...] = ("abaw2020", "abaw2021")
# AU columns per release (§0.1): ABAW 2020's 8 ([TNT] header), ABAW 2021's 12 ([CW] header).
RELEASE_AUS: dict[str, tuple[int, ...]] = {
    "abaw2020": (1, 2, 4, 6, 12, 15, 20, 25),
    "abaw2021": (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26),
}
ALL_AUS: tuple[int, ...] = tuple(sorted(set().union(*RELEASE_AUS.values())))
# The training set's folder name is what tells the releases apart on disk (§6.1).
TRAIN_FOLDERS: dict[str, str] = {"abaw2020": "Training_Set", "abaw2021": "Train_Set"}
VALIDATION_FOLDER = "Validation_Set"
TASKS: tuple[str, ...] = ("au", "expr", "va")
TASK_FOLDERS: dict[str, str] = {"au": "AU_Set", "expr": "EXPR_Set", "va": "VA_Set"}
# Official sets, as sample-id prefixes: the folder the labels come from.
OFFICIAL: dict[str, str] = {"train": "train", "validation": "validation"}
ANNOTATION_DIR_CANDIDATES: tuple[str, ...] = ("annotations", "annotations/annotations", "")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
SIDES: tuple[str, ...] = ("_left", "_right")
OVERLAP: tuple[str, ...] = ("raise", "exclude_from_train")
AU_UNKNOWN, EXPR_UNKNOWN, VA_UNKNOWN = -1, -1, -5
EXPR_HEADER: tuple[str, ...] = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness",
                                "Surprise")
VA_HEADER: tuple[str, ...] = ("valence", "arousal")
AU_NAME = re.compile(r"^AU\s*(\d+)$", re.IGNORECASE)

LAYOUT = """\
  <root>/cropped_aligned/<video>/00001.jpg ...         crops; frame k = label line k+1 (after
                                                       the header); <video>_left/, <video>_right/
                                                       for two people in one video
  ABAW 2021 (12 AUs):
  <root>/annotations/AU_Set/Train_Set/<video>.txt      header AU1,AU2,AU4,AU6,AU7,AU10,AU12,...
  <root>/annotations/AU_Set/Validation_Set/<video>.txt
  <root>/annotations/EXPR_Set/{Train_Set,Validation_Set}/<video>.txt
  <root>/annotations/VA_Set/{Train_Set,Validation_Set}/<video>.txt
  ABAW 2020 (8 AUs): the same with Training_Set instead of Train_Set
  (annotations/annotations/... is found too; dataset.tasks picks the sets that are read)"""


def video_of(name: str) -> str:
    """The video of an annotation file / crop folder name: ``<video>_left`` and
    ``<video>_right`` (two people in one video) → ``<video>``; other names are their own video."""
    for side in SIDES:
        if name.endswith(side) and len(name) > len(side):
            return name[:-len(side)]
    return name


def _frame_images(folder: Path) -> dict[int, str] | None:
    """Frame number → file name of the crops in one folder (``00001.jpg`` → 1), from one
    listing; None if the folder does not exist. The first of several files of a frame wins."""
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return None
    frames: dict[int, str] = {}
    for name in entries:
        stem, suffix = os.path.splitext(name)
        if stem.isdigit() and suffix.lower() in IMAGE_SUFFIXES:
            frames.setdefault(int(stem), name)
    return frames


def _read_lines(path: Path, problems: Problems,
                expected: str) -> tuple[list[str], list[str]] | None:
    """Header cells and frame lines of an annotation file (blank lines at the end dropped);
    None, after a report, if it cannot be read or is empty."""
    try:
        lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as err:
        problems.report(f"{path}: cannot be read ({err})")
        return None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        problems.report(f"{path}: the file is empty; expected a header line ({expected}) and one "
                        "line per frame")
        return None
    return [cell.strip() for cell in lines[0].split(",")], lines[1:]


def _parse_numbers(path: Path, body: list[str], width: int, expected: str,
                   problems: Problems) -> tuple[np.ndarray, np.ndarray]:
    """Frame lines as (n, width) float64 and (n,) bool ``ok`` (False: the line was reported).

    Fast path: one ``np.array`` conversion of every line; if it fails (a ragged or non-numeric
    line), the lines are parsed one by one and each bad one is reported as
    ``<file>, line <n>`` (line 1 is the header).
    """
    try:
        values = np.array([line.split(",") for line in body], dtype=np.float64)
        if len(body) and (values.ndim != 2 or values.shape[1] != width):
            raise ValueError
        return values.reshape(len(body), width), np.ones(len(body), dtype=bool)
    except ValueError:
        pass
    values = np.zeros((len(body), width), dtype=np.float64)
    ok = np.zeros(len(body), dtype=bool)
    for row, line in enumerate(body):
        try:
            numbers = [float(t) for t in line.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) != width:
            problems.report(f"{path}, line {row + 2}: expected {width} comma-separated "
                            f"number(s) ({expected}), got {line.strip()!r}")
            continue
        values[row] = numbers
        ok[row] = True
    return values, ok


class _Labels:
    """Per-frame labels of one video side in one official set, merged over tasks.

    Arrays grow to the longest file; ``source[task]`` is the file and ``lines`` its frame count.
    """

    def __init__(self, num_aus: int) -> None:
        self.num_aus = num_aus
        self.n = 0
        self.au = np.zeros((0, num_aus), dtype=np.float32)
        self.au_mask = np.zeros((0, num_aus), dtype=bool)
        self.expr = np.zeros(0, dtype=np.int64)
        self.expr_mask = np.zeros(0, dtype=bool)
        self.va = np.zeros((0, 2), dtype=np.float32)
        self.va_mask = np.zeros(0, dtype=bool)
        self.source: dict[str, Path] = {}

    def grow(self, n: int) -> None:
        if n <= self.n:
            return
        extra = n - self.n
        self.au = np.concatenate([self.au, np.zeros((extra, self.num_aus), np.float32)])
        self.au_mask = np.concatenate([self.au_mask, np.zeros((extra, self.num_aus), bool)])
        self.expr = np.concatenate([self.expr, np.zeros(extra, np.int64)])
        self.expr_mask = np.concatenate([self.expr_mask, np.zeros(extra, bool)])
        self.va = np.concatenate([self.va, np.zeros((extra, 2), np.float32)])
        self.va_mask = np.concatenate([self.va_mask, np.zeros(extra, bool)])
        self.n = n

    def task_masks(self) -> dict[str, np.ndarray]:
        """(n,) bool per task: the frame has a label of that task."""
        return {"au": self.au_mask.any(1), "expr": self.expr_mask, "va": self.va_mask}


class AffWild2(OnDiskDataset):
    """Aff-Wild2 frames (ABAW 2020 / 2021) with AU, expression and VA labels (see the module
    docstring for layout, formats and protocol).

    Args (besides :class:`~affectlab.data.sources.on_disk.OnDiskDataset`'s; ``aus`` defaults to the
    release's AUs):
        release: ``abaw2020`` (8 AUs, ``Training_Set``), ``abaw2021`` (12 AUs, ``Train_Set``) or
            ``auto`` (from the training folders' name, at the first :meth:`index`; until
            then ``aus`` and ``CODED_AUS`` span both releases).
        tasks: annotation sets read, any of ``au``, ``expr``, ``va`` (None: all three). A frame
            gets every label it has in them; its other labels are masked.
        image_dir: folder of the ``<video>/00001.jpg`` crops, relative to the root.
        annotation_dir: folder holding ``AU_Set/`` … relative to the root (None: the first of
            ``annotations``, ``annotations/annotations`` and the root that holds one).
        val_fraction: share of the official training videos held out as ``val`` (≥ 1 video).
        val_videos: number of training videos held out as ``val`` (overrides val_fraction).
        seed: seed of the draw of the ``val`` videos (fixed per config, not the run's seed).
        overlap: what a video in both official sets does: ``raise`` or ``exclude_from_train``.
    """

    CODED_AUS: tuple[int, ...] = ALL_AUS      # until the release is known; then RELEASE_AUS
    DEFAULT_AUS: tuple[int, ...] | None = None
    LAYOUT: str = LAYOUT
    INDEX_VERSION = 1

    def __init__(self, *, name: str = "affwild2", root: str = "data/Aff-Wild2",
                 aus: list[int] | None = None, image_size: int = 112,
                 on_error: str = "known_gaps",
                 cache_dir: str = "data/cache", mean: list[float] | None = None,
                 std: list[float] | None = None, release: str = "auto",
                 tasks: list[str] | None = None, image_dir: str = "cropped_aligned",
                 annotation_dir: str | None = None, val_fraction: float = 0.1,
                 val_videos: int | None = None, seed: int = 0, overlap: str = "raise",
                 clip: dict[str, Any] | None = None, audio: dict[str, Any] | None = None,
                 audio_dir: str = "audio", landmarks_dir: str | None = None,
                 fps: float = 30.0) -> None:
        if release not in (*RELEASES, "auto"):
            raise ValueError(f"dataset.release={release!r}: use abaw2020, abaw2021 or auto")
        chosen = list(TASKS) if tasks is None else [str(t) for t in tasks]
        unknown = [t for t in chosen if t not in TASKS]
        if unknown or not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(f"dataset.tasks={chosen}: a non-empty list of distinct tasks among "
                             f"{list(TASKS)}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"dataset.val_fraction={val_fraction}: must be in (0, 1)")
        if val_videos is not None and val_videos < 1:
            raise ValueError(f"dataset.val_videos={val_videos}: must be ≥ 1 (or null: use "
                             "val_fraction)")
        if overlap not in OVERLAP:
            raise ValueError(f"dataset.overlap={overlap!r}: use one of {list(OVERLAP)}")
        check_relative_folder("image_dir", image_dir)
        check_relative_folder("annotation_dir", annotation_dir)
        check_relative_folder("audio_dir", audio_dir)
        check_relative_folder("landmarks_dir", landmarks_dir)
        if audio is not None and clip is None:
            raise ValueError("dataset.audio is read with clips: set dataset.clip too (or "
                             "dataset.audio=null for frames alone)")
        if fps <= 0:
            raise ValueError(f"dataset.fps={fps}: must be > 0")
        self.clip_settings = None if clip is None else ClipSettings.from_config(clip, audio)
        self.audio_dir, self.landmarks_dir, self.fps = audio_dir, landmarks_dir, float(fps)
        super().__init__(name=name, root=root, aus=aus, image_size=image_size, on_error=on_error,
                         cache_dir=cache_dir, mean=mean, std=std)
        self.requested_aus = aus
        self.release = release
        self.tasks = [t for t in TASKS if t in chosen]   # canonical order: one cache key
        self.image_dir = Path(image_dir).as_posix()
        self.annotation_dir = annotation_dir
        self.val_fraction = val_fraction
        self.val_videos = val_videos
        self.seed = seed
        self.overlap = overlap
        if release != "auto":
            self._set_release(release)

    # --------------------------------------------------------------- release
    def _set_release(self, release: str) -> None:
        """Fix the release: its AUs become the coded ones and ``dataset.aus``'s default."""
        self.release = release
        self.CODED_AUS = RELEASE_AUS[release]
        self.DEFAULT_AUS = RELEASE_AUS[release]
        requested = (self.requested_aus if self.requested_aus is not None
                     else list(RELEASE_AUS[release]))
        self.aus = select_aus(self.CODED_AUS, requested, f"Aff-Wild2 ({release})")

    def resolve_release(self) -> str:
        """The release (``auto``: from the training folders' name; DataError if both names or
        neither are there for the tasks read)."""
        if self.release != "auto":
            return self.release
        annotations = self.annotation_folder()
        task_folders = [self.task_folder(t) for t in self.tasks]
        found = {release: [f / folder for f in task_folders if (f / folder).is_dir()]
                 for release, folder in TRAIN_FOLDERS.items()}
        present = [release for release, folders in found.items() if folders]
        if len(present) == 2:
            raise DataError(f"both ABAW 2020 ({found['abaw2020'][0]}) and ABAW 2021 "
                            f"({found['abaw2021'][0]}) training folders are under "
                            f"{annotations}: keep one release per root, or set dataset.release="
                            "abaw2020 or abaw2021")
        if not present:
            raise DataError(self._missing_train_folder(annotations, self.tasks[0]))
        self._set_release(present[0])
        return present[0]

    def _missing_train_folder(self, annotations: Path, task: str) -> str:
        task_folder = annotations / TASK_FOLDERS[task]
        wanted = ([TRAIN_FOLDERS[self.release]] if self.release != "auto"
                  else list(TRAIN_FOLDERS.values()))
        tried = " or ".join(str(task_folder / w) for w in wanted)
        message = (f"no Aff-Wild2 training folder {tried} (ABAW 2020: Training_Set, ABAW 2021: "
                   "Train_Set).")
        other = [r for r, f in TRAIN_FOLDERS.items() if (task_folder / f).is_dir()]
        if self.release != "auto" and other:
            message += (f" {task_folder / TRAIN_FOLDERS[other[0]]} is there: that is {other[0]}'s "
                        f"layout; set dataset.release={other[0]} or auto.")
        return f"{message} The layout is:\n{LAYOUT}"

    def index(self) -> DatasetIndex:
        """The base's cached index, after ``release=auto`` is resolved from the folders (the
        release decides the AU columns, the cache key and the protocol name)."""
        self.check_root()
        self.resolve_release()
        return super().index()

    # --------------------------------------------------------------- layout
    def annotation_folder(self) -> Path:
        """The folder holding ``AU_Set/``, ``EXPR_Set/``, ``VA_Set/`` (given, or detected)."""
        return self.locate_folder(
            "annotation_dir", self.annotation_dir, ANNOTATION_DIR_CANDIDATES,
            lambda folder: any((folder / TASK_FOLDERS[t]).is_dir() for t in TASKS),
            "Aff-Wild2 annotation folder", example="AU_Set")

    def task_folder(self, task: str) -> Path:
        """``AU_Set``, ``EXPR_Set`` or ``VA_Set`` of ``task``; DataError if it is missing."""
        folder = self.annotation_folder() / TASK_FOLDERS[task]
        if not folder.is_dir():
            rest = [t for t in self.tasks if t != task]
            hint = (f"download the {TASK_FOLDERS[task]} annotations, or read the others only "
                    f"(dataset.tasks=[{', '.join(rest)}])" if rest else
                    f"download the {TASK_FOLDERS[task]} annotations, or set dataset.tasks to the "
                    "sets you have")
            raise DataError(f"dataset.tasks includes {task!r}, but the annotation folder {folder} "
                            f"does not exist: {hint}. The layout is:\n{LAYOUT}")
        return folder

    def set_folders(self) -> dict[tuple[str, str], Path]:
        """``(task, official set) → folder`` for the tasks read; DataError naming a missing one."""
        annotations = self.annotation_folder()
        release = self.resolve_release()
        folders: dict[tuple[str, str], Path] = {}
        for task in self.tasks:
            task_folder = self.task_folder(task)
            train = task_folder / TRAIN_FOLDERS[release]
            if not train.is_dir():
                raise DataError(self._missing_train_folder(annotations, task))
            validation = task_folder / VALIDATION_FOLDER
            if not validation.is_dir():
                raise DataError(f"the official validation folder {validation} does not exist "
                                "(it is the test split of this module's protocol). The layout "
                                f"is:\n{LAYOUT}")
            folders[(task, "train")] = train
            folders[(task, "validation")] = validation
        return folders

    def annotation_sets(self) -> dict[tuple[str, str], dict[str, Path]]:
        """``(task, official set) → {video side name: annotation file}`` (``*.txt`` only)."""
        return {key: {p.stem: p for p in sorted(folder.glob("*.txt")) if p.is_file()}
                for key, folder in self.set_folders().items()}

    # ---------------------------------------------------------------- hooks
    def annotation_files(self) -> list[Path]:
        """The annotation files and their folders, the crop folder and every crop folder they
        name: which labelled frames have a crop is decided while indexing, so a crop folder's
        mtime (it changes when files are added or removed) keys the cache too."""
        sets = self.annotation_sets()
        files: list[Path] = list(self.set_folders().values())
        names: set[str] = set()
        for by_name in sets.values():
            files.extend(by_name.values())
            names.update(by_name)
        images = self.root / self.image_dir
        if images.is_dir():
            files.append(images)
            files.extend(images / n for n in sorted(names) if (images / n).is_dir())
        return files

    def index_options(self) -> dict[str, Any]:
        # the release fixes the AU columns; tasks and folders decide which frames are samples
        return {"release": self.release, "tasks": list(self.tasks), "image_dir": self.image_dir,
                "annotation_dir": str(self.annotation_folder().relative_to(self.root))}

    def label_names(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = {}
        if "au" in self.tasks:
            names["au"] = [f"AU{a}" for a in self.aus]
        if "expr" in self.tasks:
            names["expr"] = list(EXPRESSIONS)
        if "va" in self.tasks:
            names["va"] = list(VA_HEADER)
        return names

    # --------------------------------------------------------------- parsing
    def read_index(self, problems: Problems) -> DatasetIndex:
        """Parse every annotation file of the tasks read and merge them per frame; one sample
        per labelled frame with a crop (see the module docstring for what is a problem)."""
        release = self.resolve_release()
        coded = list(RELEASE_AUS[release])
        merged: dict[tuple[str, str], _Labels] = {}
        for (task, official), by_name in self.annotation_sets().items():
            for name, path in by_name.items():
                labels = merged.setdefault((official, name), _Labels(len(coded)))
                reader = {"au": self._read_au, "expr": self._read_expr, "va": self._read_va}[task]
                reader(path, labels, coded, problems)

        image_root = self.root / self.image_dir
        listings: dict[str, dict[int, str] | None] = {}
        paths: list[str] = []
        ids: list[str] = []
        subjects: list[str] = []
        blocks: dict[str, list[np.ndarray]] = {k: [] for k in
                                               ("au", "au_mask", "expr", "expr_mask", "va",
                                                "va_mask")}
        for (official, name) in sorted(merged, key=lambda k: (k[1], k[0])):
            labels = merged[(official, name)]
            by_task = labels.task_masks()
            labelled = by_task["au"] | by_task["expr"] | by_task["va"]
            rows = np.flatnonzero(labelled)
            if not len(rows):
                continue
            if name not in listings:
                listings[name] = _frame_images(image_root / name)
            images = listings[name]
            if images is None:
                first = next(labels.source[t] for t in TASKS if t in labels.source)
                problems.report(f"{first}: the crop folder {image_root / name} does not exist "
                                f"({len(rows)} labelled frame(s) of {name} left out)")
                continue
            keep = np.array([int(r) + 1 in images for r in rows], dtype=bool)
            for r in rows[~keep]:
                task = next(t for t in TASKS if t in labels.source and by_task[t][r])
                crop = image_root / name / f"{r + 1:05d}.jpg"
                problems.known_gap(
                    crop, f"{labels.source[task]}, line {r + 2}: frame {r + 1} is labelled but "
                          f"its crop {crop} is missing (no face detected: Aff-Wild2's crops "
                          "leave such frames out)")
            rows = rows[keep]
            relative = [f"{self.image_dir}/{name}/{images[int(r) + 1]}" for r in rows]
            paths.extend(relative)
            ids.extend(f"{OFFICIAL[official]}:{p}" for p in relative)
            subjects.extend([video_of(name)] * len(rows))
            for key in blocks:
                blocks[key].append(getattr(labels, key)[rows])

        n = len(paths)
        subject_names = sorted(set(subjects))
        number = {s: i for i, s in enumerate(subject_names)}
        columns = empty_labels(n, num_aus=len(coded))
        if n:
            for key, parts in blocks.items():
                columns[key] = np.concatenate(parts)
            columns["subject"] = np.array([number[s] for s in subjects], dtype=np.int64)
        table = LabelTable(root=self.root, image_paths=paths, **columns)
        return DatasetIndex(table, ids, subject_names, coded)

    def _read_au(self, path: Path, labels: _Labels, coded: list[int], problems: Problems) -> None:
        """An AU file into ``labels`` (columns = ``coded``, found by header name)."""
        expected = ",".join(f"AU{a}" for a in coded)
        parsed = _read_lines(path, problems, expected)
        if parsed is None:
            return
        cells, body = parsed
        numbers = [AU_NAME.match(c) for c in cells]
        if not all(numbers):
            problems.report(f"{path}, line 1: expected a header naming the AUs ({expected}), got "
                            f"{','.join(cells)!r}")
            return
        header = [int(m.group(1)) for m in numbers]
        missing = [a for a in coded if a not in header]
        if missing or len(set(header)) != len(header):
            # a file of the other release is the likely cause: say so
            other = [r for r, aus in RELEASE_AUS.items()
                     if r != self.release and set(aus) <= set(header)]
            hint = f"; its AUs are {other[0]}'s: set dataset.release={other[0]} or auto" \
                if other else ""
            what = (f"lacks AU(s) {missing} of {self.release} ({expected})" if missing
                    else "names an AU twice")
            problems.report(f"{path}, line 1: the header {','.join(cells)!r} {what}{hint}")
            return
        table, ok = _parse_numbers(path, body, len(cells), ",".join(cells), problems)
        values = table[:, [header.index(a) for a in coded]]
        valid = np.isin(values, (0.0, 1.0, float(AU_UNKNOWN)))
        for row in np.flatnonzero(ok & ~valid.all(1)):
            column = int(np.flatnonzero(~valid[row])[0])
            problems.report(f"{path}, line {row + 2}: AU{coded[column]} = "
                            f"{values[row, column]:g} is outside Aff-Wild2's AU codes 1 "
                            f"(present), 0 (absent), {AU_UNKNOWN} (not annotated)")
        good = ok & valid.all(1)
        n = len(values)
        labels.grow(n)
        labels.source["au"] = path
        labels.au[:n] = good[:, None] & (values == 1.0)
        labels.au_mask[:n] = good[:, None] & (values != AU_UNKNOWN)

    def _read_expr(self, path: Path, labels: _Labels, coded: list[int],
                   problems: Problems) -> None:
        """An EXPR file into ``labels``: one class per line, numbered as the header's names."""
        parsed = _read_lines(path, problems, ",".join(EXPR_HEADER))
        if parsed is None:
            return
        cells, body = parsed
        names = [c.lower() for c in cells]
        if sorted(names) != sorted(e.lower() for e in EXPRESSIONS):
            hint = (" (8 classes with Other: ABAW 2022 and later, which this module does not "
                    "read)" if "other" in names else "")
            problems.report(f"{path}, line 1: expected the header {','.join(EXPR_HEADER)}, got "
                            f"{','.join(cells)!r}{hint}")
            return
        classes = len(EXPRESSIONS)
        table, ok = _parse_numbers(path, body, 1, f"one class 0..{classes - 1}, {EXPR_UNKNOWN} = "
                                   "not annotated", problems)
        codes = table[:, 0]
        valid = (codes == np.round(codes)) & (((codes >= 0) & (codes < classes))
                                              | (codes == EXPR_UNKNOWN))
        for row in np.flatnonzero(ok & ~valid):
            hint = " (7 = Other is ABAW 2022's class)" if codes[row] == classes else ""
            problems.report(f"{path}, line {row + 2}: expression {codes[row]:g} is outside "
                            f"0..{classes - 1} ({EXPR_UNKNOWN} = not annotated){hint}")
        good = ok & valid & (codes != EXPR_UNKNOWN)
        # class k of the file is the header's k-th name: map it onto EXPRESSIONS
        to_index = np.array([EXPRESSIONS.index(n) for n in names], dtype=np.int64)
        n = len(codes)
        labels.grow(n)
        labels.source["expr"] = path
        labels.expr[:n] = np.where(good, to_index[np.where(good, codes, 0).astype(np.int64)], 0)
        labels.expr_mask[:n] = good

    def _read_va(self, path: Path, labels: _Labels, coded: list[int], problems: Problems) -> None:
        """A VA file into ``labels`` (columns found by name)."""
        parsed = _read_lines(path, problems, ",".join(VA_HEADER))
        if parsed is None:
            return
        cells, body = parsed
        names = [c.lower() for c in cells]
        if sorted(names) != sorted(VA_HEADER):
            problems.report(f"{path}, line 1: expected the header {','.join(VA_HEADER)}, got "
                            f"{','.join(cells)!r}")
            return
        table, ok = _parse_numbers(path, body, 2, ",".join(cells), problems)
        values = table[:, [names.index(n) for n in VA_HEADER]]
        unknown = values == VA_UNKNOWN
        valid = ((values >= -1.0) & (values <= 1.0)) | unknown
        for row in np.flatnonzero(ok & ~valid.all(1)):
            column = int(np.flatnonzero(~valid[row])[0])
            problems.report(f"{path}, line {row + 2}: {VA_HEADER[column]} = "
                            f"{values[row, column]:g} is outside [-1, 1] ({VA_UNKNOWN} = not "
                            "annotated)")
        # a -5 in either value: the frame's VA is unknown (one mask per frame)
        good = ok & valid.all(1) & ~unknown.any(1)
        n = len(values)
        labels.grow(n)
        labels.source["va"] = path
        labels.va[:n] = np.where(good[:, None], values, 0.0).astype(np.float32)
        labels.va_mask[:n] = good

    # ---------------------------------------------------------------- protocol
    def split(self, index: DatasetIndex) -> SplitManifest:
        """Official validation set → ``test``; official training videos → ``train`` and a
        seeded, video-exclusive ``val`` (see the module docstring). Ids in index order."""
        release = self.resolve_release()
        official = [sid.split(":", 1)[0] for sid in index.sample_ids]
        subject_of = [index.subject_names[s] for s in index.table.subject]
        in_train = {s for o, s in zip(official, subject_of) if o == OFFICIAL["train"]}
        in_test = {s for o, s in zip(official, subject_of) if o == OFFICIAL["validation"]}
        both = sorted(in_train & in_test)
        if both:
            files = self._files_of(both)
            shown = "; ".join(f"{video}: {', '.join(files[video])}" for video in both[:5])
            if self.overlap == "raise":
                raise DataError(
                    f"{len(both)} Aff-Wild2 video(s) are in both the official training and "
                    f"validation sets ({shown}{' …' if len(both) > 5 else ''}). Training on them "
                    "would leak into the test split (the official validation set). Read fewer "
                    "tasks (dataset.tasks), or set dataset.overlap=exclude_from_train to leave "
                    "their training-set frames out.")
            log.warning("affwild2: %d video(s) in both official sets; their training-set frames "
                        "are left out (dataset.overlap=exclude_from_train): %s", len(both), shown)
        pool = sorted(in_train - set(both))
        if not in_test:
            raise DataError(f"no labelled frame with a crop in the official validation set "
                            f"({VALIDATION_FOLDER}) under {self.root}: it is the test split")
        wanted = (self.val_videos if self.val_videos is not None
                  else max(1, round(self.val_fraction * len(pool))))
        if len(pool) <= wanted:
            raise DataError(f"Aff-Wild2: {len(pool)} training video(s) with labelled frames; "
                            f"holding out {wanted} for validation (dataset.val_videos / "
                            "val_fraction) needs more")
        chosen = subject_split(pool, {"val": wanted / len(pool),
                                      "train": 1 - wanted / len(pool)}, self.seed)
        role = {s: "train" for s in chosen["train"]}
        role.update({s: "val" for s in chosen["val"]})
        ids: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        val_rows: list[int] = []
        for row, (sample_id, o, subject) in enumerate(zip(index.sample_ids, official,
                                                         subject_of)):
            if o == OFFICIAL["validation"]:
                ids["test"].append(sample_id)
            elif subject in role:
                ids[role[subject]].append(sample_id)
                if role[subject] == "val":
                    val_rows.append(row)
        self._warn_missing_tasks(index, np.array(val_rows, dtype=np.int64))
        return SplitManifest(protocol=f"affwild2/{release}/official", ids=ids)

    def _files_of(self, videos: list[str]) -> dict[str, list[str]]:
        """Annotation files (relative to the root) of each video, both sides, both sets."""
        out: dict[str, list[str]] = {v: [] for v in videos}
        for by_name in self.annotation_sets().values():
            for name, path in by_name.items():
                if video_of(name) in out:
                    out[video_of(name)].append(path.relative_to(self.root).as_posix())
        return {v: sorted(files) for v, files in out.items()}

    # --------------------------------------------------------------- clips
    def image_dataset(self, table: LabelTable, image_size: int | None) -> FaceImageDataset:
        """Frames as images, or with ``dataset.clip`` the clip around each labelled frame
        (:meth:`clip_dataset`)."""
        if self.clip_settings is None:
            return super().image_dataset(table, image_size)
        return self.clip_dataset(table, image_size or 112)

    def clip_dataset(self, table: LabelTable, image_size: int) -> FaceClipDataset:
        """Clips of a split's labelled frames. A video side's frames are its crop folder's
        ``00001.jpg`` … (frame k ↔ label line k); frames without a crop are missing (the clip's
        ``rule`` decides what they show). Landmarks for the mask channel come from
        ``landmarks_dir/<side>.npy`` or ``.csv`` (OpenFace, run on the crop folder; the release
        ships none): a side without a file gets an empty mask channel — set
        ``dataset.clip.mask=false`` and ``model.mask=false`` when no landmarks exist. The sound
        is ``audio_dir/<video>.wav`` (``scripts/extract_audio.py``; both sides of a two-person
        video share it), its frame rate from ``audio_dir/videos.csv`` (``dataset.fps``,
        default 30, for a video not listed); a video without a WAV is silent."""
        sides = [Path(p).parent.as_posix() for p in table.image_paths]
        numbers = [int(Path(p).stem) for p in table.image_paths]
        audio_dir = self.root / self.audio_dir
        sounds = read_video_index(audio_dir)
        order = list(dict.fromkeys(sides))
        last = {side: 0 for side in order}
        for side, number in zip(sides, numbers):
            last[side] = max(last[side], number)
        videos = []
        for side in order:
            listing = _frame_images(self.root / side) or {}
            count = max([last[side], *listing])
            name = Path(side).name
            video = video_of(name)
            landmarks = None
            if self.landmarks_dir is not None:
                for suffix in (".npy", ".csv"):
                    path = self.root / self.landmarks_dir / f"{name}{suffix}"
                    if path.is_file():
                        try:
                            landmarks = read_landmarks(path, count)
                        except ValueError as error:
                            raise DataError(str(error)) from None
                        break
            wav = audio_dir / f"{video}.wav"
            videos.append(Video(
                frames=tuple(f"{side}/{listing[k]}" if k in listing else None
                             for k in range(1, count + 1)),
                fps=sounds[video].fps if video in sounds and sounds[video].fps > 0 else self.fps,
                landmarks=landmarks, frame_size=self._crop_size(side, listing),
                audio=wav.relative_to(self.root).as_posix() if wav.is_file() else None))
        index = {side: i for i, side in enumerate(order)}
        return FaceClipDataset(table, videos=videos,
                               video_of_row=np.array([index[s] for s in sides], dtype=np.int64),
                               frame_of_row=np.array(numbers, dtype=np.int64) - 1,
                               settings=self.clip_settings, image_size=image_size)

    def _crop_size(self, side: str, listing: dict[int, str]) -> int | None:
        """Side of a crop folder's images (what its landmarks refer to), from its first."""
        if not listing:
            return None
        with Image.open(self.root / side / listing[min(listing)]) as image:
            return int(image.size[0])

    def build(self) -> FaceData:
        data = super().build()
        if self.clip_settings is not None:
            data.rules = clip_rules(data.train, data.mean, data.std)
            data.transform = data.input_transform(None)
        return data

    def _warn_missing_tasks(self, index: DatasetIndex, rows: np.ndarray) -> None:
        """Checkpoints are selected on val (index ``rows``): say so if it has no label of a task
        read, since a monitor on that task would then be missing."""
        t = index.table
        present = {"au": t.au_mask[rows].any(), "expr": t.expr_mask[rows].any(),
                   "va": t.va_mask[rows].any()}
        missing = [task for task in self.tasks if not present[task]]
        if missing:
            log.warning("affwild2: the val split (%d frames, seed %d) has no %s label; a monitor "
                        "on it will be missing: change dataset.seed or dataset.val_videos",
                        len(rows), self.seed, "/".join(missing))


__all__ = ["AffWild2", "video_of", "RELEASES", "RELEASE_AUS", "TRAIN_FOLDERS", "TASK_FOLDERS",
           "LAYOUT"]
