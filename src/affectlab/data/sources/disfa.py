"""DISFA (Denver Intensity of Spontaneous Facial Action; Mavadati et al., 2013), read from the
distributed label folder plus frames extracted from its videos.

Layout (``dataset.root``)::

    ActionUnit_Labels/SN001/SN001_au1.txt, SN001_au2.txt, …, SN001_au26.txt   (12 per subject)
    images/LeftVideoSN001_comp/LeftVideoSN001_comp_0001.png …   (frame_naming=video, the default)
    img/SN001/0.png …                                           (frame_naming=index)
    Videos_LeftCamera/LeftVideoSN001_comp.avi, Videos_RightCamera/RightVideoSN001_comp.avi
                                                                (not read: extract frames first)

DISFA ships videos, not images, so the image folder is whatever the frame extraction wrote.
Two extractions are in use and both are read:

* ``video`` — ffmpeg over each video (LibreFace's ``extract_frames_DISFA.py``):
  ``ffmpeg -i LeftVideoSN001_comp.avi images/LeftVideoSN001_comp/LeftVideoSN001_comp_%04d.png``.
  ffmpeg numbers frames from 1, so image ``_0001`` is label frame 1. Both cameras can live side
  by side; ``camera`` (left, the usual choice, or right) picks one. Left and right frames are
  two views of the same moment: a run uses one camera, never both in different splits.
* ``index`` — the folder ME-GraphAU / JAA-Net read: ``img/SN001/0.png`` (JAA-Net: ``.jpg``),
  named by the 0-based line index, i.e. label frame f ↔ image ``f - 1``. The path has no camera:
  the folder holds the frames of whichever camera was extracted into it.

Label files: no header, one line per frame, ``frame,intensity`` — the 1-based frame number and
the FACS intensity 0 (absent) … 5 (E). ``os.listdir`` returns them as au1, au12, au15, au17,
au2, … (lexicographic), so each file is opened by the name built from its AU number, never by
its listing position (LibreFace's ``create_csv.py`` mislabelled columns that way). Occurrence =
intensity ≥ ``occurrence_threshold``: 2 for the 8-AU detection benchmark (ME-GraphAU, JAA-Net),
1 in OpenGraphAU and AU R-CNN; results are not comparable across thresholds. DISFA codes every
AU in every frame, so no label is unknown (every mask is True).

Frames: 4,845 per subject, SN010 4,844 — a subject whose 12 files agree on a shorter count is
normal. A sample is kept only when all 12 AU files give it a valid line; problems are reported
through ``dataset.on_error`` (``known_gaps``, the default, and ``raise``: stop with the message;
``skip``: leave out, count):

* a missing AU file → the subject is left out (one report);
* a malformed line, a repeated frame number or an intensity outside 0–5 → that frame is left
  out (one report naming file and line);
* AU files that disagree on their frames (one file a line short) → the frames not in every file
  are left out (one report per subject, naming each file's frame count);
* a label frame whose image is missing → left out (reported at build time, not cached, so
  extracting the missing frames later needs no cache clearing). Extracted videos can hold one
  frame more or less than the labels (datasets.md §3.5): the frames are aligned by number, extra
  images ignored, and a subject's *last* label frame without an image is a known gap of the
  release (left out and counted by default, an error under ``on_error=raise``); any other
  missing frame is a problem.

Protocol: the 3-fold subject-exclusive split of ME-GraphAU (``tool/DISFA_image_label_process.py``;
same subjects in LibreFace and JAA-Net), parts :data:`PARTS`. ``fold`` = 0, 1, 2 is the papers'
fold1, fold2, fold3: **fold 0 tests part3, fold 1 tests part2, fold 2 tests part1**; training
uses the other two parts. The papers have no validation set; ``val_subjects`` subjects of the
training parts (drawn with ``seed``) are held out for it, so ``train`` is 18 − val_subjects
subjects. Manifest protocol: ``disfa/3-fold/fold{fold}``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from affectlab.data.contract import DataError, LabelTable, empty_labels
from affectlab.data.faces.detection import MTCNN
from affectlab.data.sources.on_disk import (
    DatasetIndex,
    OnDiskDataset,
    Problems,
    SplitManifest,
    subject_split,
)

LABELS_DIR = "ActionUnit_Labels"
# the 12 AUs DISFA codes (intensity 0–5 in every frame), in AU order
CODED_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
# the 8 of the occurrence-detection benchmark (DRML, JAA-Net, ME-GraphAU): the other 4 are rare
DETECTION_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
MAX_INTENSITY = 5

# The 3-fold split, exactly as ME-GraphAU lists it (order kept: it is the list order of the
# published per-fold files). fold k (0-based) tests PARTS[2 - k].
PARTS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)
SUBJECTS: tuple[str, ...] = tuple(sorted(s for part in PARTS for s in part))   # the 27
CAMERAS = ("left", "right")
FRAME_NAMINGS = ("video", "index")
DEFAULT_IMAGE_DIRS = {"video": "images", "index": "img"}

SUBJECT_NAME = re.compile(r"^SN\d{3}$")
LAYOUT = """\
  <root>/ActionUnit_Labels/SN001/SN001_au1.txt ... SN001_au26.txt   (12 files per subject,
        AUs 1 2 4 5 6 9 12 15 17 20 25 26; one "frame,intensity" line per frame)
  <root>/images/LeftVideoSN001_comp/LeftVideoSN001_comp_0001.png ...  (frames extracted with
        ffmpeg -i Videos_LeftCamera/LeftVideoSN001_comp.avi .../LeftVideoSN001_comp_%04d.png;
        dataset.camera=right: RightVideoSN001_comp)
  or, with dataset.frame_naming=index: <root>/img/SN001/0.png ...  (frame f -> image f-1)"""


def au_file_name(subject: str, au: int) -> str:
    """``SN001_au12.txt``: the label file of ``au``, built from its number (never listed)."""
    return f"{subject}_au{au}.txt"


def video_name(subject: str, camera: str) -> str:
    """``LeftVideoSN001_comp``: the stem of a subject's video of ``camera`` (left / right)."""
    return f"{camera.capitalize()}Video{subject}_comp"


def frame_image_path(subject: str, frame: int, *, frame_naming: str, camera: str,
                     image_dir: str, image_ext: str) -> str:
    """Image path (relative to the root) of label frame ``frame`` (1-based) of ``subject``."""
    if frame_naming == "video":
        video = video_name(subject, camera)
        return f"{image_dir}/{video}/{video}_{frame:04d}.{image_ext}"   # ffmpeg's %04d, from 1
    return f"{image_dir}/{subject}/{frame - 1}.{image_ext}"             # 0-based line index


class AUFile:
    """One parsed ``SNxxx_auN.txt``.

    Attributes:
        intensity: frame number → intensity 0–5, for the valid lines.
        frames: frame numbers of every line whose frame field parsed (valid or not).
        unnumbered: count of lines whose frame number could not be read at all.
        lines: count of non-blank lines.
    """

    def __init__(self, path: Path, problems: Problems) -> None:
        self.intensity: dict[int, int] = {}
        self.frames: set[int] = set()
        self.unnumbered = 0
        self.lines = 0
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.strip()
            if not text:
                continue
            self.lines += 1
            fields = [f.strip() for f in text.split(",")]
            frame = _integer(fields[0])
            if frame is None or frame < 1:
                self.unnumbered += 1
                problems.report(f"{path}, line {number}: expected 'frame,intensity' (a frame "
                                f"number ≥ 1 and an integer 0..{MAX_INTENSITY}), got {text!r}")
                continue
            if frame in self.frames:
                problems.report(f"{path}, line {number}: frame {frame} appears twice")
                continue
            self.frames.add(frame)
            value = _integer(fields[1]) if len(fields) == 2 else None
            if value is None:
                problems.report(f"{path}, line {number}: expected 'frame,intensity' (a frame "
                                f"number ≥ 1 and an integer 0..{MAX_INTENSITY}), got {text!r}")
                continue
            if not 0 <= value <= MAX_INTENSITY:
                problems.report(f"{path}, line {number}: intensity {value} is outside DISFA's "
                                f"0..{MAX_INTENSITY}")
                continue
            self.intensity[frame] = value


def _integer(text: str) -> int | None:
    """``text`` as an int (``3``, ``+3``), or None; ``3.0`` is not an intensity DISFA writes."""
    try:
        return int(text)
    except ValueError:
        return None


class DISFA(OnDiskDataset):
    """DISFA video frames with AU occurrence labels (see the module docstring).

    Args (besides :class:`~affectlab.data.sources.on_disk.OnDiskDataset`'s):
        fold: 0, 1, 2 = the papers' fold1, fold2, fold3; tests part3, part2, part1 of
            :data:`PARTS` respectively and trains on the other two parts.
        val_subjects: subjects of the training parts held out as the validation split
            (1..17; the papers use none, the trainer needs one).
        seed: seeds the draw of the validation subjects (independent of the training seed, so
            every training seed sees the same split).
        occurrence_threshold: intensity from which an AU counts as present (1..5; 2 is the
            detection benchmark's convention).
        camera: ``left`` or ``right``: whose frames (``frame_naming=video``).
        frame_naming: ``video`` (ffmpeg: ``images/LeftVideoSN001_comp/LeftVideoSN001_comp_0001
            .png``, 1-based) or ``index`` (ME-GraphAU: ``img/SN001/0.png``, 0-based).
        image_dir: the folder of extracted frames under the root (None: ``images`` for video
            naming, ``img`` for index naming).
        image_ext: frame file extension (``png``; JAA-Net's frames are ``jpg``).
        crop, template, align_size, detector: face crops, ``none`` or ``detect`` (see
            :class:`~affectlab.data.sources.on_disk.FaceCrops`).

    DISFA's ``Landmark_Points/`` (66 points per frame, ``.mat``) are not read: their file
    layout could not be pinned down (reference datasets.md §3.1), so faces are aligned by the
    detector (``crop=detect``) instead.
    """

    CODED_AUS = CODED_AUS
    DEFAULT_AUS = DETECTION_AUS
    LAYOUT = LAYOUT

    def __init__(self, *, name: str = "disfa", root: str, aus: list[int] | None = None,
                 image_size: int = 224, on_error: str = "known_gaps",
                 cache_dir: str = "data/cache", mean: list[float] | None = None,
                 std: list[float] | None = None, fold: int = 0,
                 val_subjects: int = 3, seed: int = 0, occurrence_threshold: int = 2,
                 camera: str = "left", frame_naming: str = "video",
                 image_dir: str | None = None, image_ext: str = "png", crop: str = "none",
                 template: str = "mlcr_240", align_size: int | None = 240,
                 detector: MTCNN | None = None) -> None:
        super().__init__(name=name, root=root, aus=aus, image_size=image_size, on_error=on_error,
                         cache_dir=cache_dir, mean=mean, std=std)
        self.configure_crop(crop, ("none", "detect"), template=template, align_size=align_size,
                            detector=detector)
        if fold not in (0, 1, 2):
            raise ValueError(f"dataset.fold={fold}: use 0, 1 or 2 (the papers' fold1..fold3)")
        train_subjects = len(SUBJECTS) - len(PARTS[0])
        if not 1 <= val_subjects < train_subjects:
            raise ValueError(f"dataset.val_subjects={val_subjects}: use 1..{train_subjects - 1} "
                             f"(taken from the {train_subjects} training subjects)")
        if not 1 <= occurrence_threshold <= MAX_INTENSITY:
            raise ValueError(f"dataset.occurrence_threshold={occurrence_threshold}: use "
                             f"1..{MAX_INTENSITY} (2: the detection benchmark's)")
        if camera not in CAMERAS:
            raise ValueError(f"dataset.camera={camera!r}: use left or right")
        if frame_naming not in FRAME_NAMINGS:
            raise ValueError(f"dataset.frame_naming={frame_naming!r}: use video "
                             f"(LeftVideoSN001_comp_0001.png) or index (SN001/0.png)")
        image_ext = image_ext.lstrip(".")
        if not image_ext:
            raise ValueError("dataset.image_ext is empty: use png or jpg")
        self.fold = fold
        self.val_subjects = val_subjects
        self.seed = seed
        self.occurrence_threshold = occurrence_threshold
        self.camera = camera
        self.frame_naming = frame_naming
        self.image_dir = (image_dir if image_dir is not None
                          else DEFAULT_IMAGE_DIRS[frame_naming]).strip("/")
        self.image_ext = image_ext

    # ------------------------------------------------------------------ layout
    def _labels_dir(self) -> Path:
        labels = self.root / LABELS_DIR
        if not labels.is_dir():
            raise DataError(f"DISFA label folder not found: expected {labels}. The layout is:\n"
                            f"{LAYOUT}")
        return labels

    def annotation_files(self) -> list[Path]:
        return sorted(self._labels_dir().glob("SN*/SN*_au*.txt"))

    def index_options(self) -> dict[str, object]:
        # the threshold and the image naming change the parsed labels and paths
        return {"occurrence_threshold": self.occurrence_threshold,
                "frame_naming": self.frame_naming, "camera": self.camera,
                "image_dir": self.image_dir, "image_ext": self.image_ext}

    def missing_image_is_known_gap(self, index: DatasetIndex, row: int) -> bool:
        """A subject's last label frame: the labels can run one frame past the frames the
        video gives (datasets.md §3.5). Rows are by subject, then frame (:meth:`read_index`)."""
        subject = index.table.subject
        return row + 1 == len(subject) or subject[row + 1] != subject[row]

    def image_path(self, subject: str, frame: int) -> str:
        """Relative image path of label frame ``frame`` (1-based) of ``subject``."""
        return frame_image_path(subject, frame, frame_naming=self.frame_naming,
                                camera=self.camera, image_dir=self.image_dir,
                                image_ext=self.image_ext)

    def read_index(self, problems: Problems) -> DatasetIndex:
        labels_dir = self._labels_dir()
        subjects = sorted(p.name for p in labels_dir.iterdir()
                          if p.is_dir() and SUBJECT_NAME.match(p.name))
        if not subjects:
            raise DataError(f"{labels_dir} holds no subject folders (SN001, SN002, ...). The "
                            f"layout is:\n{LAYOUT}")
        coded = list(self.CODED_AUS)
        paths: list[str] = []
        subject_of: list[str] = []
        blocks: list[np.ndarray] = []
        for subject in subjects:
            frames, intensity = self._read_subject(labels_dir / subject, subject, problems)
            if not frames:
                continue
            paths += [self.image_path(subject, f) for f in frames]
            subject_of += [subject] * len(frames)
            blocks.append(intensity)
        n = len(paths)
        labels = empty_labels(n, num_aus=len(coded))
        names = sorted(set(subject_of))
        number = {s: i for i, s in enumerate(names)}
        labels["subject"] = np.array([number[s] for s in subject_of], dtype=np.int64)
        if n:
            labels["au"] = (np.concatenate(blocks) >= self.occurrence_threshold).astype(np.float32)
            labels["au_mask"][:] = True          # DISFA codes every AU in every frame
        table = LabelTable(root=self.root, image_paths=paths, **labels)
        return DatasetIndex(table, list(paths), names, coded)

    def _read_subject(self, folder: Path, subject: str,
                      problems: Problems) -> tuple[list[int], np.ndarray]:
        """Frames (sorted) with a valid line in all 12 AU files, and their (F, 12) intensities
        in :data:`CODED_AUS` order; ``([], empty)`` when the subject is left out."""
        empty = np.zeros((0, len(self.CODED_AUS)), dtype=np.int64)
        missing = [au_file_name(subject, au) for au in self.CODED_AUS
                   if not (folder / au_file_name(subject, au)).is_file()]
        if missing:
            problems.report(f"{folder}: AU label file(s) {', '.join(missing)} missing (DISFA "
                            f"codes AUs {list(self.CODED_AUS)}, one {subject}_au<N>.txt each); "
                            f"subject {subject} left out")
            return [], empty
        files = {au: AUFile(folder / au_file_name(subject, au), problems)
                 for au in self.CODED_AUS}
        # Files whose frame numbers all parsed must list the same frames; a file with an
        # unreadable frame number is already reported, and its gap is not a second problem.
        comparable = {au: f.frames for au, f in files.items() if not f.unnumbered}
        if comparable and len({frozenset(s) for s in comparable.values()}) > 1:
            everywhere = set.intersection(*comparable.values())
            stray = sorted(set.union(*comparable.values()) - everywhere)
            counts: dict[int, list[str]] = {}
            for au, frames in comparable.items():
                counts.setdefault(len(frames), []).append(au_file_name(subject, au))
            detail = "; ".join(f"{', '.join(names)}: {count} frames"
                               for count, names in sorted(counts.items()))
            shown = ", ".join(map(str, stray[:5])) + (", ..." if len(stray) > 5 else "")
            problems.report(f"{folder}: the AU label files of {subject} disagree on the frame "
                            f"count ({detail}); frame(s) {shown} not in every file are left out")
        frames = sorted(set.intersection(*(set(f.intensity) for f in files.values())))
        if not frames:
            return [], empty
        intensity = np.array([[files[au].intensity[f] for au in self.CODED_AUS] for f in frames],
                             dtype=np.int64)
        return frames, intensity

    # ---------------------------------------------------------------- protocol
    def split(self, index: DatasetIndex) -> SplitManifest:
        protocol = f"disfa/3-fold/fold{self.fold}"
        test_part = 2 - self.fold          # fold1 (fold=0) tests part3, ..., fold3 tests part1
        train_parts = [p for p in range(3) if p != test_part]
        labels_dir = self._labels_dir()
        missing = {f"part{p + 1}": [s for s in PARTS[p] if not (labels_dir / s).is_dir()]
                   for p in range(3)}
        missing = {part: subjects for part, subjects in missing.items() if subjects}
        if missing:
            listed = "; ".join(f"{part}: {' '.join(s)}" for part, s in missing.items())
            raise DataError(f"the {protocol} split needs all 27 DISFA subjects, but {labels_dir} "
                            f"lacks {listed}. Copy the complete ActionUnit_Labels folder.")
        train_subjects = [s for p in train_parts for s in PARTS[p]]
        # an exact count of subjects: the fractions of subject_split round to it
        fraction = self.val_subjects / len(train_subjects)
        groups = subject_split(train_subjects, {"val": fraction, "train": 1.0 - fraction},
                               seed=self.seed)
        groups["test"] = sorted(PARTS[test_part])
        subject_of = [index.subject_names[s] for s in index.table.subject]
        ids = {}
        for split in ("train", "val", "test"):
            members = set(groups[split])
            ids[split] = [sid for sid, subject in zip(index.sample_ids, subject_of)
                          if subject in members]
        return SplitManifest(protocol=protocol, ids=ids)


__all__ = ["DISFA", "PARTS", "SUBJECTS", "CODED_AUS", "DETECTION_AUS", "au_file_name",
           "frame_image_path"]
