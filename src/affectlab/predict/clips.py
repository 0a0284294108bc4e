"""Clips and their sound for clip runs (TSAV), cut from a video while it is read.

A clip run learnt, for a labelled frame t, from the clip of l frames d apart ending at t and
the log-mel window of the sound centred on t (its ``dataset.clip`` and ``dataset.audio``;
:mod:`affectlab.data.clips`). Here every frame a prediction is asked for gets the same:

- **frames**: the faces of the frames before it, each frame's most confident face cut as
  :class:`~affectlab.predict.faces.FaceCutter` cuts it, kept for the last (l − 1)·d + 1
  frames only (memory does not grow with the video); the positions by
  :func:`~affectlab.data.clips.clip_frames` with the run's rule — a frame without a face is a
  missing frame (``black``: a black frame; ``repeat``: the nearest face of the clip);
- **sound**: the video's first audio track, decoded once with PyAV, mixed to mono at the run's
  sample rate (:func:`~affectlab.data.audio.extract_audio`; silence for a video without one),
  its spectrogram computed once and each window cut by :meth:`LogMel.cut
  <affectlab.data.audio.LogMel.cut>` at the frame's timestamp, as in training.

Served: clips that end at their frame (``anchor: end``: a video streams) without the
landmark-mask channel (``mask: false``: 68 landmarks a frame, which no detector here gives).
A frame that has no face itself gets a ``success`` 0 row, as for images.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectlab.data.audio import extract_audio, read_wav
from affectlab.data.clips import ClipSettings, clip_frames


class ClipError(ValueError):
    """A clip run that predict cannot serve, with the reason."""


def clip_settings(dataset: Mapping[str, Any], name: str) -> ClipSettings:
    """The clip settings of a run's dataset config, checked servable."""
    if dataset.get("clip") is None:
        raise ClipError(f"{name} reads clips but its dataset config has no clip settings")
    settings = ClipSettings.from_config(dataset["clip"], dataset.get("audio"),
                                        dataset.get("sample_rate"))
    if settings.mask:
        raise ClipError(f"{name} reads clips with the landmark-mask channel "
                        "(dataset.clip.mask=true): it needs 68 landmarks a frame, which no "
                        "detector here gives; a run trained with dataset.clip.mask=false "
                        "can be served")
    if settings.anchor != "end":
        raise ClipError(f"{name} reads clips centred on their frame (dataset.clip.anchor="
                        f"{settings.anchor}): predict serves clips that end at their frame")
    return settings


class ClipMaker:
    """The clip (and sound window) of each frame of one video at a time.

    Args:
        settings: the run's clip settings (:func:`clip_settings`).
    """

    def __init__(self, settings: ClipSettings) -> None:
        self.settings = settings
        self.span = (settings.length - 1) * settings.dilation + 1
        self.faces: dict[int, np.ndarray] = {}     # 0-based frame → (3, S, S) uint8
        self.track: torch.Tensor | None = None

    def start(self, video: Path) -> None:
        """Forget the previous video; read this one's sound (when the run hears)."""
        self.faces.clear()
        self.track = None
        logmel = self.settings.audio
        if logmel is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "sound.wav"
            sound = extract_audio(video, wav, sample_rate=logmel.sample_rate)
            waveform = (read_wav(wav, sample_rate=logmel.sample_rate) if sound.has_audio
                        else torch.zeros(max(round(sound.seconds * logmel.sample_rate), 1)))
        self.track = logmel.track(waveform)

    def needed(self, index: int, every: int) -> bool:
        """Whether frame ``index`` (0-based) shows in the clip of a frame that is predicted
        (every ``every``-th from the first)."""
        return any((index + j * self.settings.dilation) % every == 0
                   for j in range(self.settings.length))

    def add(self, index: int, face: np.ndarray | None) -> None:
        """Frame ``index``'s face, (3, S, S) uint8, or None (no face: a missing frame)."""
        if face is not None:
            self.faces[index] = face
        for old in [k for k in self.faces if k <= index - self.span]:
            del self.faces[old]

    def inputs(self, index: int, timestamp: float) -> dict[str, np.ndarray]:
        """``{"clip": (T, 3, S, S) uint8[, "audio": (1, n_mels, frames) float32]}`` of frame
        ``index``, which must have a face."""
        s = self.settings
        first = max(index - self.span + 1, 0)
        available = np.array([k in self.faces for k in range(first, index + 1)])
        positions = clip_frames(index - first, available, length=s.length,
                                dilation=s.dilation, rule=s.rule, anchor="end")
        face = self.faces[index]
        clip = np.zeros((s.length, *face.shape), dtype=np.uint8)
        for k, position in enumerate(positions):
            if position >= 0:
                clip[k] = self.faces[first + int(position)]
        out = {"clip": clip}
        if self.track is not None:
            out["audio"] = s.audio.cut(self.track, float(timestamp)).numpy()
        return out


__all__ = ["ClipMaker", "ClipError", "clip_settings"]
