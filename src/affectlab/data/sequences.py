"""Windows of consecutive labelled frames of one video: the input of a CNN-RNN (Deng et al.,
2020: 32 frames, a frozen CNN's features through a GRU per task, a prediction per frame).

``sequence: {length: 32, stride: 16}`` (a top-level key of the training config) turns every
split of a clip dataset read one frame a clip (``dataset.clip.length=1``: Aff-Wild2's frames,
the synthetic clips' labelled frames) into windows:

- a video's labelled frames in time order are cut into windows of ``length`` consecutive
  samples, one starting every ``stride`` samples; the **last window ends at the video's last
  frame** (it starts earlier and overlaps its neighbour more), so every frame is in a window
  and no window runs past its video;
- a video with fewer than ``length`` labelled frames gives one window **padded at its end by
  repeating its last frame**; the padded positions carry ``frame_valid`` False and no label
  (every mask False), so they add nothing to a loss or a metric;
- a window's row in a split's table (its length for the sampler, label statistics, balancing
  samplers) is its first frame;
- a frame the release lacks (no face found) is not a sample, so a window steps over it: its
  samples are consecutive *labelled* frames.

A window sample holds ``clip`` (T, C, H, W) — the T frames, so every clip transform applies —
its labels stacked (T, ·), ``index`` (T,) the frames' rows in the frame split and
``frame_valid`` (T,). The data transform flattens the labels to (N·T, ·) on the device
(:class:`~affectlab.data.transforms.InputTransform` ``flatten``), so methods and heads see
one row per frame, as from images. **Evaluation** predicts every window and averages the
predictions of each frame over the windows that hold it (the mean of the probabilities,
expectations or regressed values; padded positions left out), then scores each frame once
(:func:`~affectlab.engine.evaluation.average_by_index`).

**Cached frame features** (``sequence.features_from=<a trained frame CNN run>``): a frozen
CNN's features do not change, so each frame's are computed once — the run's backbone on the
frame, un-augmented and normalised as that run was trained — and stored per split in
``packed_dir`` (``features-<key>.npy``, keyed by the run's checkpoint and the split's frames;
built on first use, atomically, one builder at a time). Windows then carry ``features``
(T, d) instead of ``clip``, and a CNN-RNN without its own CNN (``model.cnn=null``) reads them:
the CNN's forward pass, nearly all of a CNN-RNN step on the fly, is paid once per frame.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectlab.data.clips import FaceClipDataset
from affectlab.data.contract import TARGET_KEYS, DataError, FaceData, FaceImageDataset
from affectlab.data.packed import pack_key
from affectlab.utils import atomic_write

log = logging.getLogger("affectlab")

#: per-frame keys a window sample stacks and the transform flattens to one row per frame
FRAME_KEYS: tuple[str, ...] = tuple(dict.fromkeys((*TARGET_KEYS, "subject", "labeled", "index",
                                                   "frame_valid")))


def sequence_windows(count: int, length: int, stride: int) -> list[np.ndarray]:
    """Positions 0..count−1 of one video's samples cut into windows (see the module
    docstring): ``length`` positions each, one every ``stride``, the last ending at count − 1;
    fewer than ``length`` samples: one window padded with the last position. Returns (length,)
    int arrays."""
    if length < 1 or stride < 1:
        raise ValueError(f"sequence length={length}, stride={stride}: both must be ≥ 1")
    if count < 1:
        return []
    if count <= length:
        return [np.minimum(np.arange(length), count - 1)]
    starts = list(range(0, count - length + 1, stride))
    if starts[-1] != count - length:
        starts.append(count - length)
    return [start + np.arange(length) for start in starts]


class SequenceDataset(FaceImageDataset):
    """Windows of a clip split read one frame a clip (see the module docstring).

    Args:
        frames: the split, a :class:`~affectlab.data.clips.FaceClipDataset` with clips of one
            frame (its rows are the labelled frames, ``video_of_row`` / ``frame_of_row`` say
            where they are).
        length, stride: T and the step between window starts, in labelled frames.
    """

    target_keys = (*TARGET_KEYS, "index", "frame_valid")
    input_keys: tuple[str, ...] = ("clip",)
    frame_keys = FRAME_KEYS

    def __init__(self, frames: FaceClipDataset, *, length: int, stride: int,
                 features: np.ndarray | None = None) -> None:
        check_frames(frames)
        super().__init__(frames.table, image_size=frames.image_size)
        self.frames, self.length, self.stride = frames, int(length), int(stride)
        rows: list[np.ndarray] = []
        valid: list[np.ndarray] = []
        for video in np.unique(frames.video_of_row):
            members = np.flatnonzero(frames.video_of_row == video)
            members = members[np.argsort(frames.frame_of_row[members], kind="stable")]
            for window in sequence_windows(len(members), self.length, self.stride):
                rows.append(members[window])
                valid.append(np.arange(self.length) < len(members))
        self.windows = np.array(rows, dtype=np.int64).reshape(-1, self.length)
        self.valid = np.array(valid, dtype=bool).reshape(-1, self.length)
        # one row per window for what reads a split's table (its length, label statistics,
        # balancing samplers): the window's first frame
        self.table = frames.table.subset(self.windows[:, 0])
        # (frames, d) cached features of every frame: windows then carry them, not pixels
        self.features = features
        if features is not None:
            if len(features) != len(frames):
                raise DataError(f"{len(features)} cached frame features for {len(frames)} "
                                "frames: delete the features file and let it be rebuilt")
            self.input_keys = ("features",)

    def __len__(self) -> int:
        return len(self.windows)

    def input_shapes(self) -> dict[str, list[int | None]]:
        if self.features is not None:
            return {"features": [self.length, int(self.features.shape[1])]}
        _, channels, height, width = self.frames.input_shapes()["clip"]
        return {"clip": [self.length, channels, height, width]}

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        rows = self.windows[item]
        if self.features is not None:       # labels only: the pixels are not read
            samples = [self.frames.labels(int(row)) for row in rows]
            out: dict[str, Any] = {"features": torch.from_numpy(
                np.ascontiguousarray(self.features[rows], dtype=np.float32))}
        else:
            samples = [self.frames[int(row)] for row in rows]
            out = {"clip": torch.cat([s["clip"] for s in samples])}
        for key in samples[0]:
            if key != "clip":
                out[key] = torch.stack([s[key] for s in samples])
        valid = torch.from_numpy(self.valid[item])
        out["frame_valid"] = valid
        for key in ("au_mask", "expr_mask", "va_mask", "attr_mask"):
            mask = out[key]
            out[key] = mask & (valid.view(-1, *([1] * (mask.dim() - 1))))
        out["labeled"] = out["labeled"] & valid
        return out


def as_sequences(data: FaceData, *, length: int, stride: int | None = None,
                 features_from: str | None = None, folder: str | Path = "data/cache/packed"
                 ) -> FaceData:
    """``data`` with its train, val and test splits as windows (:class:`SequenceDataset`);
    ``stride`` None: length // 2 (the released code's); ``features_from``: a trained frame
    CNN's run, whose backbone's features of every frame are cached in ``folder`` and read
    instead of the pixels (:func:`frame_features`). The unlabelled pool is left out (a CNN-RNN
    learns from labelled windows)."""
    stride = stride or max(length // 2, 1)
    for split in ("train", "val", "test"):
        frames = getattr(data, split)
        features = None
        if features_from is not None:
            check_frames(frames)
            features = frame_features(frames, features_from, folder=Path(folder),
                                      name=f"{data.name}-{split}")
        setattr(data, split, SequenceDataset(frames, length=length, stride=stride,
                                             features=features))
    data.unlabeled = None
    data.transform = data.input_transform(None)
    return data


def check_frames(frames: Any) -> None:
    if not isinstance(frames, FaceClipDataset) or frames.settings.length != 1:
        raise DataError("sequence=... needs a clip dataset read one frame a clip: set "
                        "dataset.clip={length: 1, mask: false} (and dataset.audio=null), "
                        "so that each window's frames are the labelled frames themselves")


def frame_features(frames: FaceClipDataset, run: str, *, folder: Path, name: str,
                   batch_size: int = 256) -> np.ndarray:
    """(frames, d) float32 features of every frame of a split by the backbone of the trained
    frame CNN ``run`` (its checkpoint's weights, evaluation mode, its normalisation; frames
    un-augmented), from ``folder/features-<name>-<key>.npy`` when it exists, else computed and
    stored there (atomically, one builder at a time)."""
    from affectlab.engine.checkpoint import checkpoint_of
    from affectlab.inference import load_run

    checkpoint = checkpoint_of(run)
    digest = hashlib.sha1(f"features1\n{pack_key(frames)}\n".encode())
    with open(checkpoint, "rb") as handle:
        digest.update(hashlib.sha1(handle.read()).digest())
    path = Path(folder) / f"features-{name}-{digest.hexdigest()[:16]}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            started = time.perf_counter()
            loaded = load_run(checkpoint)
            backbone = loaded.method.backbone.eval()
            if tuple(getattr(backbone, "input_keys", ("image",))) != ("image",):
                raise DataError(f"sequence.features_from={run} is a run of a model reading "
                                f"{list(backbone.input_keys)}: give a frame CNN's run "
                                "(an image model, e.g. dataset.inputs=frame model=small_cnn)")
            parts = []
            loader = torch.utils.data.DataLoader(frames, batch_size=batch_size)
            with torch.inference_mode():
                for batch in loader:
                    images = batch["clip"][:, 0, :3]          # (N, 3, H, W) uint8, one frame
                    images = loaded.transform({"image": images}, train=False)["image"]
                    parts.append(backbone.forward_features(images).float().numpy())
            features = np.concatenate(parts)

            def write(target: str) -> None:
                with open(target, "wb") as handle:       # a handle: np.save adds no suffix
                    np.save(handle, features, allow_pickle=False)

            atomic_write(path, write)
            log.info("frame features of %s by %s: %d frames × %d in %.1f s, cached in %s", name,
                     run, *features.shape, time.perf_counter() - started, path)
        return np.load(path, mmap_mode="r", allow_pickle=False)


__all__ = ["SequenceDataset", "as_sequences", "sequence_windows", "frame_features",
           "FRAME_KEYS"]
