"""CK+ (Extended Cohn-Kanade; Lucey et al., 2010), read from the published archives, unpacked.

Layout (``dataset.root``; the label archives unpack either flat or one level deeper)::

    cohn-kanade-images/S005/001/S005_001_00000001.png … S005_001_00000011.png
    FACS/S005/001/S005_001_00000011_facs.txt          or  FACS_labels/FACS/S005/001/...
    Emotion/S005/001/S005_001_00000011_emotion.txt    or  Emotion_labels/Emotion/S005/001/...
    Landmarks/S005/001/S005_001_00000001_landmarks.txt …  (68 points per frame; crop=align)

Label files are MATLAB ``save -ascii`` text: numbers in scientific notation, each preceded by
three spaces. A FACS file (one per sequence, for its last = peak frame) has one ``AU intensity``
line per coded AU; intensity 1–5 = A–E and **0 = present, intensity not coded**; an AU not
listed is absent. An emotion file (327 of the 593 sequences) holds one code 0–7 (neutral, anger,
contempt, disgust, fear, happy, sadness, surprise); no file means no expression label — never
neutral.

Samples: the labelled peak frame of every sequence (``peak_frames`` = k takes the last k frames,
all with the sequence's labels, as some works do). Expressions are mapped to the Aff-Wild2 order
of :data:`affectlab.data.contract.EXPRESSIONS`; contempt has no counterpart there and is masked.

Protocol: CK+ has no official AU split. The MLCR reproduction used random subject splits, three
runs averaged; ``dataset.run`` = 0, 1, 2 seeds the shuffle of subjects, which are then cut into
train / val / test by ``train_fraction`` and ``val_fraction`` (the reproduction's fractions are
not given; defaults 0.7 / 0.1 / 0.2). Splits are subject-exclusive.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from affectlab.data.contract import EXPRESSIONS, LabelTable, empty_labels
from affectlab.data.faces.alignment import five_points_from_68
from affectlab.data.faces.detection import MTCNN
from affectlab.data.sources.on_disk import (
    DatasetIndex,
    OnDiskDataset,
    Problems,
    SplitManifest,
    check_split_fractions,
    subject_split,
)

IMAGES_DIR = "cohn-kanade-images"
FACS_DIRS = ("FACS", "FACS_labels/FACS")
EMOTION_DIRS = ("Emotion", "Emotion_labels/Emotion")
LANDMARKS_DIR = "Landmarks"

# FACS action units CK+ codes (its README's list; codes 50+ such as 50 speech or 62–64 gaze
# and head movements are FACS codes too, but not facial actions: they are read and dropped).
CODED_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21,
                              22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 34, 38, 39, 43, 44, 45)
MAX_FACS_CODE = 99
MAX_INTENSITY = 5
# CK+ emotion code → index in EXPRESSIONS (Aff-Wild2 order); None: contempt, no counterpart.
CK_TO_EXPRESSION: tuple[int | None, ...] = (0, 1, None, 2, 3, 4, 5, 6)
CK_EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")

FRAME_NAME = re.compile(r"^(S\d+)_(\d+)_(\d{8})\.png$")
LAYOUT = """\
  <root>/cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png
  <root>/FACS/S005/001/S005_001_00000011_facs.txt          (or FACS_labels/FACS/...)
  <root>/Emotion/S005/001/S005_001_00000011_emotion.txt    (or Emotion_labels/Emotion/...)"""


def parse_numbers(path: Path, problems: Problems, columns: int) -> list[list[float]] | None:
    """Rows of a CK+ label file (``columns`` numbers per non-blank line); None when a line is
    malformed (reported with its file and line number). The whole file is then unusable, not
    just the line: a FACS file lists the AUs present, so a dropped line would turn its AU into
    a known absence."""
    rows = []
    malformed = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            values = []
        if len(values) != columns:
            problems.report(f"{path}, line {number}: expected {columns} number(s), got "
                            f"{line.strip()!r}; the sequence is left out")
            malformed = True
            continue
        rows.append(values)
    return None if malformed else rows


class CKPlus(OnDiskDataset):
    """CK+ peak frames with AU occurrence and expression labels (see the module docstring).

    Args (besides :class:`~affectlab.data.sources.on_disk.OnDiskDataset`'s):
        run: 0, 1, 2, … seeds the random subject split (the reproduction averaged 3 runs).
        train_fraction, val_fraction: shares of the subjects in train and val (test: the rest).
        peak_frames: the last k frames of each sequence carry its labels (1: the peak only).
        min_intensity: an AU counts as present from this intensity code on (0: every listed AU,
            the data's meaning). With a threshold ≥ 2, a listed AU with intensity 0 (present,
            intensity not coded) is unknown (masked), since it may lie below the threshold.
        crop: ``none`` (resize the whole frame), ``align`` (by the frame's 68 landmarks, whose
            eye centres, nose tip and mouth corners land on ``template``: the MLCR
            reproduction's "align to 240 × 240, test on the centre 224") or ``detect`` (by the
            offline detector's five points).
        template, align_size: alignment template and the side it is aligned at; the centre
            ``image_size`` square is kept.
        detector: the face detector for ``crop=detect`` (``configs/detector/``).
    """

    CODED_AUS = CODED_AUS
    DEFAULT_AUS = (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43)   # the MLCR reproduction's 12
    LAYOUT = LAYOUT

    def __init__(self, *, name: str = "ckplus", root: str, aus: list[int] | None = None,
                 image_size: int = 224, on_error: str = "known_gaps",
                 cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None, run: int = 0,
                 train_fraction: float = 0.7, val_fraction: float = 0.1, peak_frames: int = 1,
                 min_intensity: int = 0, crop: str = "none", template: str = "mlcr_240",
                 align_size: int = 240, detector: MTCNN | None = None) -> None:
        super().__init__(name=name, root=root, aus=aus, image_size=image_size, on_error=on_error,
                         cache_dir=cache_dir, mean=mean, std=std)
        if run < 0:
            raise ValueError(f"dataset.run={run}: must be ≥ 0")
        check_split_fractions(train_fraction, val_fraction)
        if peak_frames < 1:
            raise ValueError(f"dataset.peak_frames={peak_frames}: must be ≥ 1")
        if not 0 <= min_intensity <= MAX_INTENSITY:
            raise ValueError(f"dataset.min_intensity={min_intensity}: use 0..{MAX_INTENSITY}")
        self.configure_crop(crop, ("none", "align", "detect"), template=template,
                            align_size=align_size, detector=detector)
        self.run = run
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.peak_frames = peak_frames
        self.min_intensity = min_intensity

    def landmark_points(self, table: LabelTable) -> np.ndarray:
        """Five points from each frame's ``Landmarks/…_landmarks.txt`` (68 ``x y`` lines)."""
        points = np.full((len(table), 5, 2), np.nan)
        for row, image_path in enumerate(table.image_paths):
            relative = Path(image_path).relative_to(IMAGES_DIR)
            path = self.root / LANDMARKS_DIR / relative.parent / f"{relative.stem}_landmarks.txt"
            try:
                marks = np.array([[float(v) for v in line.split()]
                                  for line in path.read_text().splitlines() if line.strip()])
            except (OSError, ValueError) as err:
                self.problems.report(f"cannot read the landmarks {path} ({err}); dataset.crop="
                                     "align needs CK+'s Landmarks/ folder (or use crop=detect "
                                     "or crop=none)")
                continue
            if marks.shape != (68, 2):
                self.problems.report(f"{path}: expected 68 lines of 'x y', found {marks.shape}")
                continue
            points[row] = five_points_from_68(marks)
        return points

    def index_options(self) -> dict[str, int]:
        # both change the parsed labels (which frames, which AUs count as present)
        return {"peak_frames": self.peak_frames, "min_intensity": self.min_intensity}

    # ------------------------------------------------------------------ layout
    def _find_dir(self, candidates: tuple[str, ...], what: str) -> Path:
        return self.locate_path(candidates, f"CK+ {what} folder", folders_only=True,
                                hint="The layout is:")

    def annotation_files(self) -> list[Path]:
        facs = self._find_dir(FACS_DIRS, "FACS label")
        files = sorted(facs.glob("S*/*/*_facs.txt"))
        emotion = next((self.root / d for d in EMOTION_DIRS if (self.root / d).is_dir()), None)
        if emotion is not None:
            files += sorted(emotion.glob("S*/*/*_emotion.txt"))
        # the cache also depends on which frames exist (peak frames are found on disk)
        return files + [p for p in (self.root / IMAGES_DIR).glob("S*/*") if p.is_dir()]

    def read_index(self, problems: Problems) -> DatasetIndex:
        images = self._find_dir((IMAGES_DIR,), "image")
        facs_dir = self._find_dir(FACS_DIRS, "FACS label")
        emotion_dir = next((self.root / d for d in EMOTION_DIRS if (self.root / d).is_dir()), None)
        paths: list[str] = []
        subjects: list[str] = []
        au_rows: list[np.ndarray] = []
        mask_rows: list[np.ndarray] = []
        expressions: list[int | None] = []
        coded = list(self.CODED_AUS)
        for sequence in sorted(p for p in images.glob("S*/*") if p.is_dir()):
            subject, number = sequence.parent.name, sequence.name
            frames = sorted(p.name for p in sequence.iterdir() if FRAME_NAME.match(p.name))
            facs_files = sorted((facs_dir / subject / number).glob("*_facs.txt"))
            if not facs_files:
                problems.report(f"{facs_dir / subject / number}: no FACS file for sequence "
                                f"{subject}/{number} (CK+ codes every sequence's peak frame)")
                continue
            facs_file = facs_files[-1]
            peak = facs_file.name[:-len("_facs.txt")] + ".png"
            if peak not in frames:
                problems.report(f"{facs_file}: its peak frame {sequence / peak} is missing")
                continue
            labels = self._au_labels(facs_file, problems, coded)
            if labels is None:
                continue
            expression = self._expression(emotion_dir, subject, number, problems)
            if expression is False:
                continue
            peak_index = frames.index(peak)
            for frame in frames[max(0, peak_index - self.peak_frames + 1):peak_index + 1]:
                paths.append(f"{IMAGES_DIR}/{subject}/{number}/{frame}")
                subjects.append(subject)
                au_rows.append(labels[0])
                mask_rows.append(labels[1])
                expressions.append(expression)
        return self._index(paths, subjects, au_rows, mask_rows, expressions, coded)

    def _au_labels(self, path: Path, problems: Problems,
                   coded: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
        rows = parse_numbers(path, problems, columns=2)
        if rows is None:
            return None
        au = np.zeros(len(coded), dtype=np.float32)
        mask = np.ones(len(coded), dtype=bool)   # an AU not listed is absent: known
        for code, intensity in rows:
            if code != int(code) or not 1 <= code <= MAX_FACS_CODE:
                problems.report(f"{path}: AU code {code:g} is not a FACS number 1..{MAX_FACS_CODE}")
                return None
            if intensity != int(intensity) or not 0 <= intensity <= MAX_INTENSITY:
                problems.report(f"{path}: AU {int(code)} has intensity {intensity:g}, outside "
                                f"CK+'s 0 (present, not coded) .. {MAX_INTENSITY}")
                return None
            if int(code) not in coded:
                continue
            column = coded.index(int(code))
            if self.min_intensity <= 1 or intensity >= self.min_intensity:
                au[column] = 1.0
            elif intensity == 0:
                mask[column] = False   # present at an uncoded intensity: maybe below it
        return au, mask

    def _expression(self, emotion_dir: Path | None, subject: str, number: str,
                    problems: Problems) -> int | None | bool:
        """Expression index, None (no label / contempt), or False (a reported problem)."""
        if emotion_dir is None:
            return None
        files = sorted((emotion_dir / subject / number).glob("*_emotion.txt"))
        if not files:
            return None
        rows = parse_numbers(files[-1], problems, columns=1)
        if rows is None:
            return False
        if not rows:
            problems.report(f"{files[-1]}: the emotion file is empty (expected one code 0..7)")
            return False
        code = rows[0][0]
        if code != int(code) or not 0 <= code < len(CK_TO_EXPRESSION):
            problems.report(f"{files[-1]}: emotion code {code:g} is outside CK+'s 0..7")
            return False
        return CK_TO_EXPRESSION[int(code)]

    def _index(self, paths: list[str], subjects: list[str], au_rows: list[np.ndarray],
               mask_rows: list[np.ndarray], expressions: list[int | None],
               coded: list[int]) -> DatasetIndex:
        n = len(paths)
        labels = empty_labels(n, num_aus=len(coded))
        names = sorted(set(subjects))
        labels["subject"] = np.array([names.index(s) for s in subjects], dtype=np.int64)
        if n:
            labels["au"] = np.stack(au_rows)
            labels["au_mask"] = np.stack(mask_rows)
        labels["expr"] = np.array([e if e is not None else 0 for e in expressions], dtype=np.int64)
        labels["expr_mask"] = np.array([e is not None for e in expressions], dtype=bool)
        table = LabelTable(root=self.root, image_paths=paths, **labels)
        return DatasetIndex(table, list(paths), names, coded)

    # ---------------------------------------------------------------- protocol
    def split(self, index: DatasetIndex) -> SplitManifest:
        groups = subject_split(index.subject_names,
                               {"train": self.train_fraction, "val": self.val_fraction,
                                "test": 1.0 - self.train_fraction - self.val_fraction},
                               seed=self.run)
        subject_of = [index.subject_names[s] for s in index.table.subject]
        ids = {split: [sid for sid, subject in zip(index.sample_ids, subject_of)
                       if subject in set(members)] for split, members in groups.items()}
        return SplitManifest(protocol=f"ckplus/random-subjects/run{self.run}", ids=ids)

    def label_names(self) -> dict[str, list[str]]:
        return {"au": [f"AU{a}" for a in self.aus], "expr": list(EXPRESSIONS)}


__all__ = ["CKPlus", "CK_TO_EXPRESSION"]
