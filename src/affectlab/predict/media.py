"""The pictures ``affectlab-predict`` reads: an image, a folder of images and videos, a video.

A folder is searched recursively; a file counts by its extension (:data:`IMAGE_EXTENSIONS`,
:data:`VIDEO_EXTENSIONS`, case-insensitive), in sorted order. A video is decoded with PyAV
one frame at a time (memory does not grow with its length); ``every=k`` keeps frames 1,
1 + k, 1 + 2k, … (every frame is still decoded: most codecs need the frames between).

Frames are numbered from 1 as OpenFace numbers them; an image is frame 1 at time 0.
A file that cannot be read raises :class:`UnreadableInput` naming it, the caller decides
whether that ends the run (one file given) or skips the file (a folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from affectlab.data.sources.image_folder import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".flv")


class InputError(ValueError):
    """An input that cannot be predicted on at all (missing, empty folder, unknown kind)."""


class UnreadableInput(RuntimeError):
    """One file that cannot be decoded, with the reason."""


@dataclass
class Frame:
    """One picture to predict on.

    Attributes:
        file: the file it comes from, relative to the input folder (its name for one file).
        frame: 1-based frame number (1 for an image).
        timestamp: seconds from the start of the video (0 for an image).
        picture: the RGB image.
    """

    file: str
    frame: int
    timestamp: float
    picture: Image.Image
    kept: bool = True      # False: a frame between two predicted ones (read for clips only)


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def list_inputs(path: str | Path) -> tuple[Path, list[Path]]:
    """``(root, files)``: the image and video files ``path`` names (itself, or those below
    it), each relative to ``root``."""
    path = Path(path).expanduser()
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    if not path.exists():
        raise InputError(f"{path} does not exist: give an image, a video or a folder of them")
    if path.is_file():
        if path.suffix.lower() not in known:
            raise InputError(f"{path}: '{path.suffix}' is neither an image nor a video "
                             f"extension predict reads ({', '.join(known)})")
        return path.parent, [Path(path.name)]
    found = []
    for folder, _, names in os.walk(path):
        relative = Path(folder).relative_to(path)
        found += [relative / n for n in names if n.lower().endswith(known)]
    if not found:
        raise InputError(f"{path} holds no image or video (searched recursively for "
                         f"{', '.join(known)})")
    return path, sorted(found)


def read_image(root: Path, relative: Path) -> Iterator[Frame]:
    try:
        with Image.open(root / relative) as image:
            picture = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UnreadableInput(f"{root / relative} is not a readable image ({err})") from None
    yield Frame(str(relative), 1, 0.0, picture)


def read_video(root: Path, relative: Path, every: int = 1,
               between: bool = False) -> Iterator[Frame]:
    """The frames of a video, streamed (see the module docstring); ``between``: also the
    frames between two kept ones, with ``kept`` False (a clip run's clips show them)."""
    import av  # only videos need PyAV

    path = root / relative
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise UnreadableInput(f"{path} cannot be opened as a video ({err})") from None
    with container:
        if not container.streams.video:
            raise UnreadableInput(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        number = 0
        try:
            for decoded in container.decode(stream):
                number += 1
                kept = (number - 1) % every == 0
                if not kept and not between:
                    continue
                timestamp = (float(decoded.time) if decoded.time is not None
                             else (number - 1) / rate if rate else float("nan"))
                yield Frame(str(relative), number, timestamp, decoded.to_image().convert("RGB"),
                            kept)
        except av.FFmpegError as err:
            raise UnreadableInput(f"{path}: decoding stopped after frame {number} ({err})"
                                  ) from None
        if number == 0:
            raise UnreadableInput(f"{path} holds no decodable frame")


def read_frames(root: Path, relative: Path, every: int = 1,
                between: bool = False) -> Iterator[Frame]:
    """The frames of one input file: an image's one, a video's every ``every``-th (with
    ``between``, every frame, those between marked not ``kept``)."""
    if is_video(relative):
        return read_video(root, relative, every, between)
    return read_image(root, relative)


__all__ = ["Frame", "InputError", "UnreadableInput", "is_video", "list_inputs", "read_frames",
           "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS"]
