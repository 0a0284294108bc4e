"""AFEW-VA (Kossaifi et al., 2017): 600 film clips, ~30,000 frames with valence and arousal.

``dataset=afew_va``: valence/arousal labels only (no AUs, no expressions). Deng et al. (2020)
merge it into Aff-Wild2's VA training set after rescaling the labels to [−1, 1].

Layout (``dataset.root``; the clips are distributed as zip parts ``01`` … ``12``, which unpack
either into one folder or keep a part level)::

    001/001.json  001/00000.png  001/00001.png …     (or 01/001/001.json, 01/001/00000.png …)
    002/002.json  …

A clip folder is one that holds ``<folder name>.json``. The JSON (other top-level keys than
``frames`` are ignored; which ones the release has is unverified)::

    {"frames": {"00000": {"valence": 2, "arousal": -1, "landmarks": [[x, y], … 68 pairs]},
                "00001": {…}}}

- ``valence``, ``arousal``: on AFEW-VA's −10..10 scale (integers in the release); divided by
  :data:`VA_SCALE` = 10 to the [−1, 1] of :mod:`affectlab.data.contract`, as Deng et al. and
  wtomin's code do. Values outside −10..10 or not numbers are reported with file and line.
- ``landmarks``: 68 (x, y) points per frame. ``dataset.crop=landmarks`` (default) crops the
  square around their bounding box, ``box_margin`` wider (the frames are whole film frames);
  a frame without 68 valid points is then reported. ``crop=none`` resizes the whole frame.
- every frame image needs a JSON entry and every entry its frame (``<key>.png`` or ``.jpg``);
  either missing is reported (wtomin's code asserts the two sets are equal).

Sample ids are frame paths relative to the root (``001/00000.png``). AFEW-VA gives no actor
identities; **subjects are clips** (an actor may appear in several clips, so clip-exclusive is
not actor-exclusive). Protocol: no official split; clips are shuffled with ``dataset.seed`` and
cut into train / val / test by ``train_fraction`` / ``val_fraction`` (test: the rest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.data.contract import DataError, LabelTable, empty_labels
from affectlab.data.faces.boxes import BoxCroppedDataset, boxes_in_index_order
from affectlab.data.sources.on_disk import DatasetIndex, Problems, SplitManifest, subject_split

VA_SCALE = 10.0          # AFEW-VA's −10..10 → [−1, 1]
NUM_LANDMARKS = 68
CROPS = ("none", "landmarks")
FRAME_SUFFIXES = (".png", ".jpg")

LAYOUT = """\
  <root>/001/001.json  <root>/001/00000.png  <root>/001/00001.png ...
  <root>/002/002.json  ...                  (or with part folders: <root>/01/001/001.json ...)
     001.json: {"frames": {"00000": {"valence": 2, "arousal": -1, "landmarks": [[x, y], ...]}}}"""


def _line_of(text: str, key: str) -> int:
    """1-based line of the first ``"key"`` in ``text`` (1 when absent, e.g. one-line JSON)."""
    position = text.find(f'"{key}"')
    return text.count("\n", 0, position) + 1 if position >= 0 else 1


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def landmark_box(value: Any) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1, y1)`` bounding box of 68 ``[x, y]`` pairs, or None when malformed."""
    try:
        points = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if points.shape != (NUM_LANDMARKS, 2) or not np.isfinite(points).all():
        return None
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def read_clip(path: Path, problems: Problems,
              need_landmarks: bool) -> tuple[dict[str, dict], set[str]] | None:
    """Parse one clip's JSON.

    Returns ``({frame key: {"va": (valence, arousal) on the −10..10 scale, "box": landmark box
    or None}} of the good frames, every frame key of the file)``, or None when the file is
    unusable (not JSON, no ``frames`` object). Problems are reported with file and line
    (the line of the frame's key; 1 for one-line JSON): invalid JSON, a frame entry that is not
    an object, valence/arousal missing, not numbers or outside −10..10, and (with
    ``need_landmarks``) landmarks that are not 68 finite pairs.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        problems.report(f"{path}, line {err.lineno}: not valid JSON ({err.msg})")
        return None
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, dict):
        problems.report(f"{path}, line 1: expected an object with a 'frames' object "
                        "(frame key → valence, arousal, landmarks)")
        return None
    out: dict[str, dict] = {}
    for key in sorted(frames):
        entry = frames[key]
        where = f"{path}, line {_line_of(text, key)} (frame {key})"
        if not isinstance(entry, dict):
            problems.report(f"{where}: expected an object with valence, arousal, landmarks")
            continue
        values = {k: _number(entry.get(k)) for k in ("valence", "arousal")}
        bad = [k for k, v in values.items() if v is None or not -VA_SCALE <= v <= VA_SCALE]
        if bad:
            shown = entry.get(bad[0], "(missing)")
            problems.report(f"{where}: {bad[0]} {shown!r} is not a number in AFEW-VA's "
                            f"{-VA_SCALE:g}..{VA_SCALE:g}")
            continue
        box = landmark_box(entry.get("landmarks"))
        if need_landmarks and box is None:
            problems.report(f"{where}: landmarks are not {NUM_LANDMARKS} [x, y] pairs "
                            "(dataset.crop=landmarks needs them; crop=none does not)")
            continue
        out[key] = {"va": (values["valence"], values["arousal"]), "box": box}
    return out, set(frames)


class AFEWVA(BoxCroppedDataset):
    """AFEW-VA frames with valence/arousal in [−1, 1] (see the module docstring).

    Args:
        name: the dataset's name in run directories and ``metrics.json``.
        root: the folder holding the clip folders (or the part folders ``01`` … ``12``).
        image_size: side of the square network input.
        on_error: ``known_gaps`` (default) or ``raise`` stop at bad JSON entries and
            unlabelled, missing or damaged frames; ``skip`` leaves them out and counts them
            (no known gaps declared).
        cache_dir: where the parsed index is cached (keyed by the JSON files and clip folders).
        mean, std: per-channel normalisation (default ImageNet's).
        train_fraction, val_fraction: shares of the *clips* in train and val (test: the rest).
        seed: seed of the random clip split (not the training seed).
        crop: ``landmarks`` (square around the frame's 68 points) or ``none`` (whole frame).
        box_margin: the crop's side is ``max(w, h) · (1 + box_margin)`` of the landmark box.
    """

    CODED_AUS: tuple[int, ...] = ()   # valence/arousal only; the au columns have zero width
    LAYOUT = LAYOUT
    INDEX_VERSION = 1

    def __init__(self, *, name: str = "afew_va", root: str, image_size: int = 112,
                 on_error: str = "known_gaps", cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None,
                 train_fraction: float = 0.8, val_fraction: float = 0.1, seed: int = 0,
                 crop: str = "landmarks", box_margin: float = 0.2) -> None:
        super().__init__(name=name, root=root, aus=None, image_size=image_size,
                         on_error=on_error, cache_dir=cache_dir, mean=mean, std=std)
        self.configure_split_and_crop(train_fraction=train_fraction, val_fraction=val_fraction,
                                      seed=seed, crop=crop, box_margin=box_margin, crops=CROPS)

    # ------------------------------------------------------------------ layout
    def clip_files(self) -> list[Path]:
        """``<clip>/<clip>.json`` one or two levels below the root, sorted."""
        found = [p for pattern in ("*/*.json", "*/*/*.json") for p in self.root.glob(pattern)
                 if p.stem == p.parent.name]
        return sorted(found)

    def check_root(self) -> None:
        super().check_root()
        if not self.clip_files():
            raise DataError(f"no AFEW-VA clip under {self.root}: expected clip folders holding "
                            f"<clip>.json and the frames, laid out as:\n{LAYOUT}")

    def annotation_files(self) -> list[Path]:
        files = self.clip_files()
        # the clip folders too: their mtimes change when frames are added or removed
        return files + [p.parent for p in files]

    def index_options(self) -> dict[str, bool]:
        # with the landmark crop, frames without valid landmarks are left out of the index
        return {"need_landmarks": self.crop == "landmarks"}

    def label_names(self) -> dict[str, list[str]]:
        return {"va": ["valence", "arousal"]}

    # ------------------------------------------------------------------- index
    def _clip_frames(self, path: Path, problems: Problems,
                     need_landmarks: bool) -> list[tuple[str, dict]]:
        """(frame path relative to the root, entry) of one clip's labelled frames."""
        parsed = read_clip(path, problems, need_landmarks)
        if parsed is None:
            return []
        frames, keys = parsed
        clip = path.parent
        on_disk = {}
        for name in sorted(os.listdir(clip)):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in FRAME_SUFFIXES:
                on_disk.setdefault(stem, name)
        # a frame whose entry was bad has been reported already: only frames without any entry
        unlabelled = sorted(set(on_disk) - keys)
        for stem in unlabelled:
            problems.report(f"{clip / on_disk[stem]}: frame has no entry in {path}")
        relative = clip.relative_to(self.root).as_posix()
        # an entry without its frame keeps the release's name; the base reports it missing
        return [(f"{relative}/{on_disk.get(key, key + FRAME_SUFFIXES[0])}", entry)
                for key, entry in frames.items()]

    def read_index(self, problems: Problems) -> DatasetIndex:
        need = self.crop == "landmarks"
        paths: list[str] = []
        clips: list[str] = []
        va: list[tuple[float, float]] = []
        for path in self.clip_files():
            clip = path.parent.relative_to(self.root).as_posix()
            for frame, entry in self._clip_frames(path, problems, need):
                paths.append(frame)
                clips.append(clip)
                va.append(entry["va"])
        labels = empty_labels(len(paths))
        names = sorted(set(clips))
        position = {name: k for k, name in enumerate(names)}
        labels["subject"][:] = [position[c] for c in clips]
        if paths:
            labels["va"][:] = np.array(va, dtype=np.float32) / VA_SCALE
        labels["va_mask"][:] = True
        table = LabelTable(root=self.root, image_paths=paths, **labels)
        return DatasetIndex(table, list(paths), names, aus=[])

    def face_boxes(self, index: DatasetIndex) -> np.ndarray:
        boxes: dict[str, tuple[float, float, float, float] | None] = {}
        for path in self.clip_files():
            for frame, entry in self._clip_frames(path, Problems("skip"), True):
                boxes[frame] = entry["box"]
        return boxes_in_index_order(index, boxes, "the clips' JSON files (68 landmarks)")

    # ---------------------------------------------------------------- protocol
    def split(self, index: DatasetIndex) -> SplitManifest:
        """Clips shuffled with ``seed`` and cut by the fractions (clip-exclusive splits)."""
        groups = subject_split(index.subject_names,
                               {"train": self.train_fraction, "val": self.val_fraction,
                                "test": 1.0 - self.train_fraction - self.val_fraction},
                               seed=self.seed)
        split_of = {clip: split for split, members in groups.items() for clip in members}
        ids: dict[str, list[str]] = {split: [] for split in groups}
        for sample_id, subject in zip(index.sample_ids, index.table.subject):
            ids[split_of[index.subject_names[subject]]].append(sample_id)
        return SplitManifest(f"afew_va/random-clips/seed{self.seed}",
                             {k: sorted(v) for k, v in ids.items()})


__all__ = ["AFEWVA", "LAYOUT", "VA_SCALE", "read_clip"]
