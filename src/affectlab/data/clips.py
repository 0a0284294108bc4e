"""Clips as an input: which frames a clip shows, and the landmark mask drawn as its fourth
channel (the visual stream's input of the two-stream aural-visual model, TSAV).

**Frames** (TSAV: l = 8, d = 6). The clip of the labelled frame t is causal: it ends at t,

    t − (l − 1)·d, …, t − 2d, t − d, t

so a model never sees the future of the frame it labels (TSAV's choice; a centred window is
an option of :func:`clip_frames`, ``anchor="centre"``). A position falls before the video's
first frame, past its last, or on a frame the release lacks (no face found there, a frame
dropped): the **rule** decides what it shows —

- ``black`` (TSAV's): a black frame with an empty mask channel;
- ``repeat``: the nearest frame of the clip that exists, towards the labelled frame first
  (the clip never shows a frame from outside its own window).

The labelled frame itself always exists (a dataset drops labelled frames without a face before
clips are cut), so ``repeat`` always finds one. A clip longer than its video is no error: the
positions before the first frame follow the rule.

**Mask** (TSAV's fourth channel): the 68 facial landmarks (the iBUG / Multi-PIE scheme) drawn
as one-pixel polylines on black, one grey level per facial part — TSAV's levels, in the order of
the scheme's index ranges: outer lips 48–59 (closed) 255, brow 17–21 223, brow 22–26 191,
eye 36–41 (closed) 159, eye 42–47 (closed) 127, nose bridge 27–30 63, jaw 0–16 31.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw

from affectlab.data.audio import LogMel, read_wav
from affectlab.data.contract import FaceImageDataset, LabelTable
from affectlab.data.transforms import ClipRule, SpectrogramRule

#: (first, last index, closed, grey level) of each drawn part of the 68-point scheme
MASK_PARTS: tuple[tuple[int, int, bool, int], ...] = (
    (48, 59, True, 255),    # outer lips
    (17, 21, False, 223),   # brow
    (22, 26, False, 191),   # brow
    (36, 41, True, 159),    # eye
    (42, 47, True, 127),    # eye
    (27, 30, False, 63),    # nose bridge
    (0, 16, False, 31),     # jaw
)

MissingRule = Literal["black", "repeat"]
MISSING_RULES: tuple[str, ...] = ("black", "repeat")


def clip_frames(frame: int, available: np.ndarray, *, length: int, dilation: int,
                rule: MissingRule = "black",
                anchor: Literal["end", "centre"] = "end") -> np.ndarray:
    """The frames a clip shows, as indices into its video (−1: a black frame).

    Args:
        frame: the labelled frame t (must exist: ``available[frame]``).
        available: (F,) bool over the video's frames, False where the release has none.
        length: l, frames per clip. dilation: d, frames between two of the clip's frames.
        rule: what a missing or out-of-video position shows (module docstring).
        anchor: ``end`` — the clip ends at t (TSAV's); ``centre`` — t is its middle frame
            (position l // 2).

    Returns:
        (l,) int64 frame indices in time order; −1 marks a black frame (rule ``black``).
    """
    if length < 1 or dilation < 1:
        raise ValueError(f"clip length={length}, dilation={dilation}: both must be ≥ 1")
    if rule not in MISSING_RULES:
        raise ValueError(f"clip rule={rule!r}: one of {', '.join(MISSING_RULES)}")
    if not 0 <= frame < len(available) or not available[frame]:
        raise ValueError(f"labelled frame {frame} is missing from its video "
                         f"({len(available)} frames): clips are cut around existing frames")
    first = frame - (length - 1) * dilation if anchor == "end" else frame - length // 2 * dilation
    wanted = first + dilation * np.arange(length)
    inside = (wanted >= 0) & (wanted < len(available))
    exists = inside.copy()
    exists[inside] = available[wanted[inside]]
    if rule == "black":
        return np.where(exists, wanted, -1).astype(np.int64)
    # repeat: each missing position shows the nearest existing one, ties towards t
    centre = int(np.flatnonzero(wanted == frame)[0])
    present = np.flatnonzero(exists)
    shown = wanted.copy()
    for position in np.flatnonzero(~exists):
        nearest = min(present, key=lambda j: (abs(int(j) - position), abs(int(j) - centre)))
        shown[position] = wanted[nearest]
    return shown.astype(np.int64)


def landmark_mask(landmarks: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(68, 2) landmarks (x, y in pixels of the face crop) → (H, W) uint8 mask: the parts of
    :data:`MASK_PARTS` as one-pixel polylines at their grey levels, the rest 0. Landmarks
    with a non-finite coordinate are skipped (a part with fewer than two left is not drawn)."""
    height, width = (size, size) if isinstance(size, int) else size
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"landmarks of shape {points.shape}: the mask needs the 68-point "
                         "scheme, (68, 2)")
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    # drawn from the last part to the first, so where two parts cross the first one's level
    # (the lips, the most informative) is on top
    for first, last, closed, level in reversed(MASK_PARTS):
        part = points[first:last + 1]
        part = part[np.isfinite(part).all(axis=1)]
        if len(part) < 2:
            continue
        line = [tuple(p) for p in part]
        if closed:
            line.append(line[0])
        draw.line(line, fill=level, width=1)
    return np.asarray(canvas, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# A dataset of clips around labelled frames.


@dataclass(frozen=True, eq=False)      # eq=False: landmark arrays do not compare as a bool
class Video:
    """One video of a clip dataset, as its files give it.

    Attributes:
        frames: F frame image paths relative to the dataset's root, None where the release has
            no frame (no face found, a frame dropped).
        fps: frames per second (the labelled frame's time is frame / fps).
        landmarks: (F, 68, 2) float landmarks in pixels of the frame images (NaN where
            unknown), or None (the mask channel then stays empty).
        audio: the video's WAV file relative to the root, or None (a video without sound: its
            spectrograms are silence).
        frame_size: side of the frame images in pixels (what ``landmarks`` refer to).
    """

    frames: tuple[str | None, ...]
    fps: float
    landmarks: np.ndarray | None = None
    audio: str | None = None
    frame_size: int | None = None

    @property
    def available(self) -> np.ndarray:
        return np.array([f is not None for f in self.frames], dtype=bool)


@dataclass(frozen=True)
class ClipSettings:
    """How clips and their sound are cut (``dataset.clip`` in the configs).

    Attributes:
        length, dilation, rule, anchor: :func:`clip_frames`'s (TSAV: 8, 6, black, end).
        mask: add the landmark-mask channel (4 channels per frame) or not (3).
        audio: the log-mel settings of the sound (:class:`~affectlab.data.audio.LogMel`), or
            None for clips without an ``audio`` input.
    """

    length: int = 8
    dilation: int = 6
    rule: MissingRule = "black"
    anchor: Literal["end", "centre"] = "end"
    mask: bool = True
    audio: LogMel | None = None

    def __post_init__(self) -> None:
        if self.rule not in MISSING_RULES:
            raise ValueError(f"dataset.clip.rule={self.rule!r}: one of "
                             f"{', '.join(MISSING_RULES)}")
        if self.length < 1 or self.dilation < 1:
            raise ValueError(f"dataset.clip.length={self.length}, dilation={self.dilation}: "
                             "both must be ≥ 1")

    @classmethod
    def from_config(cls, clip: Mapping[str, Any], audio: Mapping[str, Any] | None,
                    sample_rate: int | None = None) -> "ClipSettings":
        """The settings of a config's ``dataset.clip`` and ``dataset.audio`` (``sample_rate``:
        the dataset's own, where its audio settings name none)."""
        logmel = None
        if audio is not None:
            audio = dict(audio)
            if sample_rate is not None:
                audio.setdefault("sample_rate", int(sample_rate))
            logmel = LogMel(**audio)
        return cls(**dict(clip), audio=logmel)


def read_landmarks(path: Path, frames: int) -> np.ndarray:
    """(frames, 68, 2) landmarks of one video's frames, NaN where a frame has none, from a
    NumPy file (``.npy``, (F, 68, 2), row k for frame k + 1) or OpenFace 2's FeatureExtraction
    CSV (``.csv``; run on the crop folder, so the points are in crop pixels: columns ``frame``
    (1-based), ``success``, ``x_0`` … ``x_67``, ``y_0`` … ``y_67``; rows with success 0 are
    left NaN). Raises ValueError naming the file when it is not one of these."""
    out = np.full((frames, 68, 2), np.nan, dtype=np.float32)
    if path.suffix == ".npy":
        points = np.load(path)
        if points.ndim != 3 or points.shape[1:] != (68, 2):
            raise ValueError(f"{path}: landmarks of shape {points.shape}; expected (F, 68, 2)")
        count = min(frames, len(points))
        out[:count] = points[:count]
        return out
    import csv

    with open(path, newline="") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = [name.strip() for name in next(reader, [])]
        column = {name: i for i, name in enumerate(header)}
        wanted = ["frame", *(f"x_{i}" for i in range(68)), *(f"y_{i}" for i in range(68))]
        missing = [name for name in wanted if name not in column]
        if missing:
            raise ValueError(f"{path}: not an OpenFace landmark CSV (no columns {missing[:3]} "
                             "...); write .npy files of shape (F, 68, 2) instead")
        xs = [column[f"x_{i}"] for i in range(68)]
        ys = [column[f"y_{i}"] for i in range(68)]
        for line, record in enumerate(reader, 2):
            try:
                frame = int(float(record[column["frame"]]))
                if "success" in column and float(record[column["success"]]) == 0:
                    continue
                point = np.array([[float(record[x]), float(record[y])] for x, y in zip(xs, ys)])
            except (ValueError, IndexError) as error:
                raise ValueError(f"{path}, line {line}: {error}") from None
            if 1 <= frame <= frames:
                out[frame - 1] = point
    return out


class FaceClipDataset(FaceImageDataset):
    """Samples of labelled frames, each with the clip around it and the sound of its window.

    Sample keys: the face sample's labels (:mod:`affectlab.data.contract`, without
    ``image``), ``clip`` uint8 (T, C, H, W) — T = ``settings.length`` frames in time order,
    C = 4 (RGB and the landmark mask, :func:`landmark_mask`) or 3 — and, with
    ``settings.audio``, ``audio`` float32 (1, n_mels, frames): the log-mel spectrogram of the
    window centred on the labelled frame (silence where it passes the track's ends, and for a
    video without sound). Each video's spectrogram is computed once per process and windows
    are cut from it (:meth:`~affectlab.data.audio.LogMel.cut`).

    Args:
        table: one row per labelled frame; ``image_paths`` are the labelled frames' files.
        videos: the dataset's videos. video_of_row, frame_of_row: (N,) video index and frame
            index of each row.
        settings: :class:`ClipSettings`. image_size: side the frames are resized to.
    """

    def __init__(self, table: LabelTable, *, videos: list[Video], video_of_row: np.ndarray,
                 frame_of_row: np.ndarray, settings: ClipSettings, image_size: int) -> None:
        super().__init__(table, image_size=image_size)
        self.videos, self.settings = videos, settings
        self.video_of_row = np.asarray(video_of_row, dtype=np.int64)
        self.frame_of_row = np.asarray(frame_of_row, dtype=np.int64)
        if len(self.video_of_row) != len(table) or len(self.frame_of_row) != len(table):
            raise ValueError(f"{len(table)} rows, but {len(self.video_of_row)} video and "
                             f"{len(self.frame_of_row)} frame indices")
        self.input_keys = ("clip", "audio") if settings.audio is not None else ("clip",)
        self._tracks: dict[int, torch.Tensor] = {}

    def input_shapes(self) -> dict[str, list[int | None]]:
        channels = 4 if self.settings.mask else 3
        shapes: dict[str, list[int | None]] = {
            "clip": [self.settings.length, channels, self.image_size, self.image_size]}
        if self.settings.audio is not None:
            shapes["audio"] = self.settings.audio.shape
        return shapes

    def frames_of(self, row: int) -> np.ndarray:
        """The frame indices of row's clip (−1: black), by :func:`clip_frames`."""
        video = self.videos[self.video_of_row[row]]
        s = self.settings
        return clip_frames(int(self.frame_of_row[row]), video.available, length=s.length,
                           dilation=s.dilation, rule=s.rule, anchor=s.anchor)

    @property
    def channels(self) -> int:
        return 4 if self.settings.mask else 3

    def frame_pixels(self, video_index: int, frame: int) -> np.ndarray:
        """uint8 (H, W, C) of one existing frame: its RGB resized to ``image_size`` and, with
        the mask, the landmark mask drawn from its landmarks (empty where it has none)."""
        video = self.videos[video_index]
        size = self.image_size
        pixels = np.zeros((size, size, self.channels), dtype=np.uint8)
        # the row only picks a sample's own crop, which the frames of a video do not have
        pixels[:, :, :3] = self.load_pixels(0, video.frames[frame])
        if self.settings.mask and video.landmarks is not None:
            scale = size / float(video.frame_size or size)
            points = video.landmarks[frame]
            if np.isfinite(points).any():
                pixels[:, :, 3] = landmark_mask((points + 0.5) * scale - 0.5, size)
        return pixels

    def load_clip(self, row: int) -> torch.Tensor:
        """uint8 (T, C, H, W): the clip's frames (black where :meth:`frames_of` says −1)."""
        video_index = int(self.video_of_row[row])
        size = self.image_size
        clip = np.zeros((self.settings.length, size, size, self.channels), dtype=np.uint8)
        for position, frame in enumerate(self.frames_of(row)):
            if frame >= 0:
                clip[position] = self.frame_pixels(video_index, int(frame))
        return torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous()

    def track(self, video_index: int) -> torch.Tensor:
        """The video's whole spectrogram in dB (computed once per process)."""
        if video_index not in self._tracks:
            video, logmel = self.videos[video_index], self.settings.audio
            if video.audio is None:
                frames = len(video.frames) / video.fps
                waveform = torch.zeros(max(round(frames * logmel.sample_rate), 1))
            else:
                waveform = read_wav(Path(self.table.root) / video.audio,
                                    sample_rate=logmel.sample_rate)
            self._tracks[video_index] = logmel.track(waveform)
        return self._tracks[video_index]

    def load_audio(self, row: int) -> torch.Tensor:
        """float32 (1, n_mels, frames): the window centred on row's frame."""
        video_index = int(self.video_of_row[row])
        centre = self.frame_of_row[row] / self.videos[video_index].fps
        return self.settings.audio.cut(self.track(video_index), float(centre))

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        sample = self.labels(row)
        sample["clip"] = self.load_clip(row)
        if self.settings.audio is not None:
            sample["audio"] = self.load_audio(row)
        return sample


def spectrogram_stats(train: FaceImageDataset, max_samples: int = 512) -> tuple[float, float]:
    """Mean and std of the training samples' spectrogram values (at most ``max_samples``
    samples, evenly spaced): the sound's normalisation. (0, 1) without sound."""
    if not isinstance(train, FaceClipDataset) or train.settings.audio is None or not len(train):
        return 0.0, 1.0
    rows = np.unique(np.linspace(0, len(train) - 1, min(len(train), max_samples)).astype(int))
    values = torch.cat([train.load_audio(int(row)).flatten() for row in rows])
    return float(values.mean()), float(values.std().clamp_min(1e-6))


@dataclass(frozen=True)
class ClipRules:
    """``FaceData.rules`` of a clip dataset: clips normalised by the images' ``mean``/``std``
    and augmented clip by clip, spectrograms by the training split's ``audio_mean`` and
    ``audio_std``. Its numbers go into every checkpoint's input spec (:meth:`to_dict`), so a
    run loaded without its data transforms clips and sound as it trained on them."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    audio_mean: float = 0.0
    audio_std: float = 1.0

    def __call__(self, augment: Any) -> dict[str, Any]:
        return {"clip": ClipRule(mean=self.mean, std=self.std, augment=augment),
                "audio": SpectrogramRule(mean=self.audio_mean, std=self.audio_std)}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "clips", "mean": list(self.mean), "std": list(self.std),
                "audio_mean": self.audio_mean, "audio_std": self.audio_std}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ClipRules":
        return cls(mean=tuple(values["mean"]), std=tuple(values["std"]),
                   audio_mean=float(values["audio_mean"]), audio_std=float(values["audio_std"]))


def clip_rules(train: FaceImageDataset, mean: tuple[float, ...],
               std: tuple[float, ...]) -> ClipRules:
    """The :class:`ClipRules` of a clip dataset whose training split is ``train``."""
    audio_mean, audio_std = spectrogram_stats(train)
    return ClipRules(mean=tuple(mean), std=tuple(std), audio_mean=audio_mean,
                     audio_std=audio_std)
