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

from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

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
