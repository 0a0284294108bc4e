"""Decoded faces packed once into one uint8 array file per split, then read without decoding.

Decoding a PNG or JPEG, cropping and resizing it costs milliseconds per image and core; a
GPU trains faster than a few cores can decode. So every split's images are run once through
the dataset's own reading path (:meth:`FaceImageDataset.load_pixels`: crop, alignment,
resize) and stored as one ``.npy`` file of shape (N, 3, H, W), uint8, which training maps into
memory (``numpy.load(mmap_mode="r")``: a slice per sample, no decoding, the page cache shares
it between loader workers and parallel runs). Samples carry the uint8 pixels; the conversion
to float happens on the device (:func:`~affectlab.data.transforms.pixels_to_float`, the same
``x / 255`` as the decoding path, so both give the same values — tested).

The store is a cache built on first use (``packed: true``, the default) under ``packed_dir``,
one file per split named by the dataset and a key of what it holds: the split's root, image
paths, image size and reading settings (crop, template, detector points — those that key
``scripts/preprocess.py``'s crops), so another split, size or crop gets another file. Building
is atomic (rows go into ``<file>.partial``, renamed when complete), resumable (the rows done are
recorded every chunk; an interrupted build continues there) and safe under parallel runs (a
lock file: the first run builds, the others wait and then read). Files are plain ``.npy``
arrays read with ``allow_pickle=False``: loading one never executes code.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from affectlab.data.clips import FaceClipDataset
from affectlab.data.contract import DataError, FaceData, FaceImageDataset, LabelTable
from affectlab.threads import usable_cpus
from affectlab.utils import atomic_write_json

log = logging.getLogger("affectlab")

PACK_VERSION = 1
SPLITS = ("train", "val", "test", "unlabeled")
CHUNK_ROWS = 1024        # rows between progress records of a build (and its flushes)


def reading_settings(dataset: FaceImageDataset) -> str:
    """How a split turns files into pixels: its reader class and every setting it holds
    (crop, template, margins; arrays such as detected points by their hash)."""
    settings = []
    for key, value in sorted(vars(dataset).items()):
        if isinstance(value, np.ndarray):
            settings.append((key, hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()))
        elif isinstance(value, (int, float, str, tuple, type(None))):
            settings.append((key, repr(value)))
    return f"{type(dataset).__name__}{settings}"


def pack_key(dataset: FaceImageDataset) -> str:
    """SHA-1 of what a split's pack holds: root, image paths, reading settings (image size
    among them) and the store's version."""
    digest = hashlib.sha1(f"pack{PACK_VERSION}\n{Path(dataset.table.root).resolve()}\n".encode())
    digest.update("\n".join(dataset.table.image_paths).encode())
    digest.update(reading_settings(dataset).encode())
    return digest.hexdigest()


def pack_path(folder: Path, dataset_name: str, split: str, dataset: FaceImageDataset) -> Path:
    return Path(folder) / f"{dataset_name}-{split}-{pack_key(dataset)[:16]}.npy"


class PackedImages(FaceImageDataset):
    """A split whose images come from a packed ``.npy`` file (see the module doc); labels and
    every other sample field as :class:`FaceImageDataset`. ``image`` is uint8 (3, H, W).

    The file is mapped lazily, per process, so the dataset is safe to send to DataLoader
    workers (each maps the file itself; the pages are shared)."""

    def __init__(self, table: LabelTable, *, image_size: int, path: Path) -> None:
        super().__init__(table, image_size=image_size)
        self.path = Path(path)
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = open_pack(self.path, (len(self.table), 3, self.image_size,
                                                 self.image_size))
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}    # workers map the file themselves

    def load_pixels(self, row: int) -> np.ndarray:
        return np.ascontiguousarray(self.array[row].transpose(1, 2, 0))

    def sample_image(self, row: int) -> torch.Tensor:
        """uint8 (3, H, W): converted to float on the device, by the batch transform."""
        return torch.from_numpy(np.array(self.array[row]))


def open_pack(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Map a finished pack read-only, checking that it holds ``shape`` uint8 pixels."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"packed images {path} are unreadable ({err}): delete the file; the "
                        "next run packs the split again.") from None
    if array.dtype != np.uint8 or tuple(array.shape) != tuple(shape):
        raise DataError(f"packed images {path} hold {array.dtype} {tuple(array.shape)}, "
                        f"expected uint8 {tuple(shape)}: delete the file; the next run packs "
                        "the split again.")
    return array


class _Rows(Dataset):
    """(row, CHW uint8 pixels) of a decoding dataset, so DataLoader workers share a build."""

    def __init__(self, dataset: Any, rows: range) -> None:
        self.dataset, self.rows = dataset, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int) -> tuple[int, np.ndarray]:
        row = self.rows[item]
        return row, self.dataset.load_pixels(row).transpose(2, 0, 1)


def _as_is(item: Any) -> Any:
    return item       # rows stay numpy arrays (no tensor conversion on the way)


def build_pack(dataset: Any, path: Path, *, workers: int = 0) -> Path:
    """Decode every image of ``dataset`` once into ``path`` (see the module doc): atomic,
    resumable, one builder at a time. Returns ``path``. ``dataset``: anything with
    ``image_size``, ``len`` and ``load_pixels(row) -> (H, W, C)`` uint8 (C: its ``channels``,
    default 3) — a split's images, or the frames of its clips (:class:`ClipFrames`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = dataset.image_size
    shape = (len(dataset), getattr(dataset, "channels", 3), size, size)
    partial = path.with_name(path.name + ".partial")
    progress = path.with_name(path.name + ".progress.json")
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # parallel runs: one builds, the others wait here
        if path.is_file():
            return path
        done = 0
        if partial.is_file() and progress.is_file():
            try:
                done = int(json.loads(progress.read_text())["rows_done"])
                array = np.lib.format.open_memmap(partial, mode="r+")
                if array.dtype != np.uint8 or tuple(array.shape) != shape:
                    raise ValueError("another shape")
            except (OSError, ValueError, KeyError):
                done = 0
        if done == 0:
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        else:
            log.info("packing %s: continuing an interrupted build at row %d of %d", path.name,
                     done, shape[0])
        start = time.perf_counter()
        # its own generator: a build must not move the global RNG (the run's initial
        # weights would then depend on whether the pack existed already)
        rows = DataLoader(_Rows(dataset, range(done, shape[0])), batch_size=None,
                          num_workers=workers, collate_fn=_as_is, generator=torch.Generator())
        for row, pixels in rows:
            array[row] = pixels
            if (row + 1) % CHUNK_ROWS == 0:
                array.flush()
                atomic_write_json({"rows_done": row + 1}, progress)
        array.flush()
        del array
        os.replace(partial, path)
        progress.unlink(missing_ok=True)
        log.info("packed %d images of %d px into %s (%.1f s, %.0f MB)", shape[0] - done, size,
                 path, time.perf_counter() - start, path.stat().st_size / 1e6)
    return path


# ---------------------------------------------------------------------------------------------
# Clips: every frame of a split's videos once, however many clips show it.


class ClipFrames:
    """The frames of a clip split's videos as rows to pack: video v's frame f is row
    ``offsets[v] + f`` (a frame the release lacks: a zero row, never read), its pixels
    :meth:`~affectlab.data.clips.FaceClipDataset.frame_pixels`' — RGB and the mask channel,
    so the mask is drawn once too."""

    def __init__(self, clips: FaceClipDataset) -> None:
        self.clips = clips
        self.image_size, self.channels = clips.image_size, clips.channels
        counts = [len(video.frames) for video in clips.videos]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def load_pixels(self, row: int) -> np.ndarray:
        video = int(np.searchsorted(self.offsets, row, side="right") - 1)
        frame = row - int(self.offsets[video])
        if self.clips.videos[video].frames[frame] is None:
            return np.zeros((self.image_size, self.image_size, self.channels), dtype=np.uint8)
        return self.clips.frame_pixels(video, frame)

    def key(self) -> str:
        """SHA-1 of what the pack holds: root, every frame's path, size, channels, landmarks."""
        digest = hashlib.sha1(f"clipframes{PACK_VERSION}\n{Path(self.clips.table.root).resolve()}"
                              f"\n{self.image_size}\n{self.channels}\n".encode())
        for video in self.clips.videos:
            digest.update("\n".join(str(f) for f in video.frames).encode())
            if self.channels == 4 and video.landmarks is not None:
                digest.update(np.ascontiguousarray(video.landmarks).tobytes())
        return digest.hexdigest()


class PackedClips(FaceClipDataset):
    """A clip split reading its frames from a packed file of :class:`ClipFrames` (sound, labels
    and everything else as :class:`~affectlab.data.clips.FaceClipDataset`)."""

    def __init__(self, source: FaceClipDataset, *, path: Path) -> None:
        super().__init__(source.table, videos=source.videos, video_of_row=source.video_of_row,
                         frame_of_row=source.frame_of_row, settings=source.settings,
                         image_size=source.image_size)
        self.path = Path(path)
        self.offsets = ClipFrames(source).offsets
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = open_pack(self.path, (int(self.offsets[-1]), self.channels,
                                                 self.image_size, self.image_size))
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}    # workers map the file themselves

    def frame_pixels(self, video_index: int, frame: int) -> np.ndarray:
        return np.ascontiguousarray(
            self.array[int(self.offsets[video_index]) + frame].transpose(1, 2, 0))


def decode_workers() -> int:
    """Processes that decode a build: the CPUs this process may use, at most 8."""
    return min(8, usable_cpus())


#: The input keys the store can pack: (3, S, S) uint8 images (and clips, frame by frame:
#: :class:`PackedClips`). A split whose samples carry other inputs keeps reading them its own
#: way.
PACKABLE_KEYS: tuple[str, ...] = ("image",)


def use_packed(data: FaceData, folder: str | Path, *, workers: int | None = None) -> FaceData:
    """``data`` with every split reading its packed images from ``folder`` (built there first
    when missing; a clip split packs its videos' frames, :class:`PackedClips`). A split
    without a fixed image size (``dataset.image_size=null``: images keep their sizes), or whose
    samples carry inputs other than :data:`PACKABLE_KEYS`, cannot be packed and keeps
    decoding, said once in the log."""
    folder = Path(folder).expanduser()
    workers = decode_workers() if workers is None else workers
    for split in SPLITS:
        dataset = getattr(data, split)
        if dataset is None or isinstance(dataset, (PackedImages, PackedClips)):
            continue
        if dataset.image_size is None:
            log.info("%s/%s keeps decoding its images: packing needs one image size "
                     "(dataset.image_size)", data.name, split)
            continue
        if isinstance(dataset, FaceClipDataset):
            frames = ClipFrames(dataset)
            path = build_pack(frames, Path(folder) / f"{data.name}-{split}-clips-"
                                                     f"{frames.key()[:16]}.npy", workers=workers)
            setattr(data, split, PackedClips(dataset, path=path))
            continue
        others = [k for k in dataset.input_keys if k not in PACKABLE_KEYS]
        if others:
            log.info("%s/%s is read as it is: the packed store holds %s, its samples also carry "
                     "%s", data.name, split, list(PACKABLE_KEYS), others)
            continue
        path = build_pack(dataset, pack_path(folder, data.name, split, dataset), workers=workers)
        setattr(data, split, PackedImages(dataset.table, image_size=dataset.image_size,
                                          path=path))
    return data


__all__ = ["PackedImages", "PackedClips", "ClipFrames", "PACKABLE_KEYS", "build_pack",
           "use_packed", "pack_path", "pack_key", "reading_settings"]
