"""Offline face detection with five landmarks: MTCNN (Zhang et al., 2016), for datasets that ship
neither crops nor landmarks (EmotioNet's web images, LFW, any folder of photos) and as an
alternative to a dataset's own landmarks (``dataset.crop=detect``).

MTCNN is a cascade of three small networks run on an image pyramid:

1. **P-Net** (fully convolutional, 12×12 receptive field, stride 2) scores every window of every
   pyramid level; windows with face probability ≥ ``thresholds[0]`` become candidate boxes,
   refined by the regressed offsets and merged by non-maximum suppression (IoU 0.5 within a
   level, 0.7 across levels).
2. **R-Net** rescores each candidate, resized to 24×24 (keep ≥ ``thresholds[1]``, NMS 0.7).
3. **O-Net** rescores each survivor at 48×48 (keep ≥ ``thresholds[2]``) and regresses five
   landmarks; a final NMS uses intersection over the *smaller* box (0.7).

Pyramid: scales s_k = (12 / min_face_size) · scale_factor^k while min(H, W) · s_k ≥ 12, so the
smallest face found is ``min_face_size`` pixels. Boxes are made square between stages.

Weights: the MTCNN weights converted to PyTorch that the ``facenet-pytorch`` package ships as
``facenet_pytorch/data/{pnet,rnet,onet}.pt`` (MIT licence). ``make`` installs that package without
its dependencies (it pins an old torch); only its three weight files are read, its code is not
imported. ``weights=DIR`` reads the three files from another folder. Nothing is downloaded.

Landmarks come in the template order of :mod:`affectlab.data.faces.alignment` (image-left eye,
image-right eye, nose tip, image-left mouth corner, image-right mouth corner).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn
from torchvision.ops import batched_nms, box_area

from affectlab.data.contract import DataError
from affectlab.utils import atomic_write, save_npz

log = logging.getLogger(__name__)

WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
WEIGHTS_PACKAGE = "facenet_pytorch"


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x1, y1, x2, y2) in pixels, O-Net's face probability
    ``score`` and ``points`` (5, 2) in pixels, template order."""

    box: tuple[float, float, float, float]
    score: float
    points: np.ndarray

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


class _Stage(nn.Module):
    """A conv trunk (conv → PReLU [→ max-pool]) followed, for R-Net and O-Net, by a dense layer;
    heads for the face probability, the box offsets and (O-Net) the landmarks.

    Layer names match the weight files' keys. The dense layers of the converted weights expect
    the feature map flattened in (W, H, C) order (the original models were trained on
    transposed images), hence the permute before flattening.

    Input: (N, 3, H, W) pixels normalised by :func:`_normalize` (P-Net: any size; R-Net 24×24;
    O-Net 48×48). Output: ``score`` face probability, ``offsets`` box regression (4 values in
    units of box side), ``points`` (O-Net: 5 x then 5 y, relative to the box) — per window
    ((N, H', W') and (N, 4, H', W') for P-Net's map of 12×12 windows at stride 2) or per crop
    ((N,), (N, 4), (N, 10)).
    """

    def __init__(self, convs: list[tuple[int, int, int, tuple[int, int] | None]],
                 dense: tuple[int, int] | None, head: str, outputs: dict[str, int]) -> None:
        super().__init__()
        self.trunk = []
        for i, (c_in, c_out, kernel, pool) in enumerate(convs, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, kernel))
            setattr(self, f"prelu{i}", nn.PReLU(c_out))
            if pool is not None:
                setattr(self, f"pool{i}", nn.MaxPool2d(pool[0], pool[1], ceil_mode=True))
            self.trunk.append(i)
        self.dense_index = len(convs) + 1
        if dense is not None:
            setattr(self, f"dense{self.dense_index}", nn.Linear(*dense))
            setattr(self, f"prelu{self.dense_index}", nn.PReLU(dense[1]))
        self.head = head   # "conv4" (P-Net, 1×1 convs) or "dense5" / "dense6"
        for suffix, (_name, width) in enumerate(outputs.items(), start=1):
            features = dense[1] if dense is not None else convs[-1][1]
            layer = (nn.Conv2d(features, width, 1) if dense is None else nn.Linear(features, width))
            setattr(self, f"{head}_{suffix}", layer)
        self.outputs = list(outputs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for i in self.trunk:
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            if hasattr(self, f"pool{i}"):
                x = getattr(self, f"pool{i}")(x)
        if hasattr(self, f"dense{self.dense_index}"):
            dense = getattr(self, f"dense{self.dense_index}")
            activation = getattr(self, f"prelu{self.dense_index}")
            x = activation(dense(x.permute(0, 3, 2, 1).flatten(1)))
        out = {name: getattr(self, f"{self.head}_{k}")(x) for k, name in enumerate(self.outputs, 1)}
        out["score"] = out["score"].softmax(dim=1)[:, 1]
        return out


def _pnet() -> _Stage:
    return _Stage([(3, 10, 3, (2, 2)), (10, 16, 3, None), (16, 32, 3, None)], None, "conv4",
                  {"score": 2, "offsets": 4})


def _rnet() -> _Stage:
    return _Stage([(3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)], (576, 128),
                  "dense5", {"score": 2, "offsets": 4})


def _onet() -> _Stage:
    return _Stage([(3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)),
                   (64, 128, 2, None)], (1152, 256), "dense6",
                  {"score": 2, "offsets": 4, "points": 10})


def default_weights_dir() -> Path | None:
    """``facenet_pytorch/data`` of the installed package (located without importing it)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8-range pixels → the networks' input range: (x − 127.5) / 128."""
    return (pixels - 127.5) * 0.0078125


def _squared(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes (K, 4) grown to squares of side max(w, h) about their centres."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w / 2 - side / 2
    y1 = boxes[:, 1] + h / 2 - side / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _regress(boxes: torch.Tensor, offsets: torch.Tensor, inclusive: bool) -> torch.Tensor:
    """Apply regressed offsets (K, 4), in units of box width/height, to boxes (K, 4).
    ``inclusive`` measures sides as x2 − x1 + 1 (R-Net, O-Net) rather than x2 − x1 (P-Net)."""
    extra = 1.0 if inclusive else 0.0
    w = (boxes[:, 2] - boxes[:, 0] + extra).unsqueeze(1)
    h = (boxes[:, 3] - boxes[:, 1] + extra).unsqueeze(1)
    return boxes + offsets * torch.cat([w, h, w, h], dim=1)


def nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS where overlap = intersection / area of the *smaller* box (MTCNN's last stage):
    indices kept, by decreasing score."""
    order = scores.argsort(descending=True)
    areas = box_area(boxes)
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(int(best))
        top_left = torch.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = torch.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
        overlap = inter / torch.minimum(areas[best], areas[rest]).clamp(min=1e-9)
        order = rest[overlap <= threshold]
    return torch.tensor(keep, dtype=torch.int64)


class MTCNN:
    """The MTCNN detector (see the module docstring).

    Args:
        weights: folder holding ``pnet.pt``, ``rnet.pt``, ``onet.pt`` (None: the installed
            ``facenet-pytorch`` package's). Loaded on first use, so configuring a detector that
            is never used costs nothing.
        min_face_size: smallest face side searched for, in pixels (larger is faster).
        thresholds: face-probability thresholds of P-Net, R-Net and O-Net (the paper's
            0.6, 0.7, 0.7).
        scale_factor: ratio of successive pyramid levels (0.709 ≈ 1/√2 in area).
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        batch_size: crops per R-Net / O-Net forward pass.
    """

    def __init__(self, *, weights: str | None = None, min_face_size: int = 20,
                 thresholds: list[float] | tuple[float, ...] = (0.6, 0.7, 0.7),
                 scale_factor: float = 0.709, device: str = "cpu", batch_size: int = 512) -> None:
        if min_face_size < 12:
            raise ValueError(f"detector.min_face_size={min_face_size}: must be ≥ 12 (P-Net's "
                             "window)")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"detector.thresholds={list(thresholds)}: give three probabilities "
                             "(P-Net, R-Net, O-Net)")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"detector.scale_factor={scale_factor}: must lie in (0, 1)")
        if device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"detector.device={device!r}: use cpu, cuda or auto")
        self.weights = weights
        self.min_face_size = min_face_size
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = scale_factor
        self.device_name = device
        self.batch_size = batch_size
        self._nets: dict[str, _Stage] | None = None

    def settings(self) -> dict[str, object]:
        """What changes the detections (keys detection caches)."""
        return {"detector": "mtcnn", "min_face_size": self.min_face_size,
                "thresholds": list(self.thresholds), "scale_factor": self.scale_factor,
                "weights": str(self.weights_dir())}

    def weights_dir(self) -> Path:
        if self.weights is not None:
            return Path(self.weights).expanduser()
        found = default_weights_dir()
        if found is None:
            raise FileNotFoundError(
                "dataset.crop=detect needs the MTCNN weights: install them with "
                "`pip install --no-deps facenet-pytorch==2.6.0` (make does this), or set "
                "detector.weights to a folder holding pnet.pt, rnet.pt and onet.pt.")
        return found

    @property
    def device(self) -> torch.device:
        if self.device_name == "cuda" and not torch.cuda.is_available():
            raise ValueError("detector.device=cuda but no CUDA device is visible; use "
                             "detector.device=auto or cpu")
        if self.device_name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device_name)

    def nets(self) -> dict[str, _Stage]:
        if self._nets is None:
            folder = self.weights_dir()
            nets = {}
            for name, build in zip(WEIGHT_FILES, (_pnet, _rnet, _onet)):
                path = folder / name
                if not path.is_file():
                    raise FileNotFoundError(
                        f"MTCNN weights {path} are missing: point detector.weights at a folder "
                        "holding pnet.pt, rnet.pt and onet.pt, or reinstall them with "
                        "`pip install --no-deps --force-reinstall facenet-pytorch==2.6.0`.")
                net = build()
                net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                nets[name.split(".")[0]] = net.eval().to(self.device)
            self._nets = nets
        return self._nets

    def __getstate__(self) -> dict[str, object]:
        # DataLoader workers get the settings, not the loaded networks
        return {**self.__dict__, "_nets": None}

    # ------------------------------------------------------------------ detection
    def scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales for an image of this size (see the module docstring)."""
        scale = 12.0 / self.min_face_size
        shortest = min(height, width) * scale
        out = []
        while shortest >= 12:
            out.append(scale)
            scale *= self.scale_factor
            shortest *= self.scale_factor
        return out

    def _crops(self, pixels: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
        """Each box's pixels (clipped to the image; 1-based inclusive corners as the weights
        were trained), resized to size × size with area averaging, normalised."""
        _, height, width = pixels.shape
        corners = boxes.trunc().to(torch.int64).tolist()
        crops = []
        for x1, y1, x2, y2 in corners:
            x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, width), min(y2, height)
            if x2 <= x1 - 1 or y2 <= y1 - 1:
                patch = pixels.new_zeros((3, 1, 1))
            else:
                patch = pixels[:, y1 - 1:y2, x1 - 1:x2]
            crops.append(F.interpolate(patch[None], size=(size, size), mode="area"))
        return _normalize(torch.cat(crops))

    def _run(self, net: _Stage, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = [net(crops[i:i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def detect(self, image: Image.Image) -> list[Face]:
        """Every face in ``image``, most probable first.

        On CUDA, TF32 is switched off for the detector's convolutions and matrix products:
        its rounding moves scores near the thresholds and so the boxes; with full float32 the
        GPU finds what the CPU finds."""
        matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled,
                                            allow_tf32=False):
                return self._detect(image)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = matmul_tf32

    @torch.inference_mode()
    def _detect(self, image: Image.Image) -> list[Face]:
        nets = self.nets()
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        pixels = torch.from_numpy(rgb).permute(2, 0, 1).to(self.device)
        _, height, width = pixels.shape

        # stage 1: P-Net over the pyramid
        candidates = []
        for scale in self.scales(height, width):
            size = (int(height * scale + 1), int(width * scale + 1))
            level = _normalize(F.interpolate(pixels[None], size=size, mode="area"))
            out = nets["pnet"](level)
            score, offsets = out["score"][0], out["offsets"][0]
            ys, xs = torch.nonzero(score >= self.thresholds[0], as_tuple=True)
            if not len(ys):
                continue
            cells = torch.stack([xs, ys], dim=1).to(pixels.dtype)
            top_left = ((2 * cells + 1) / scale).floor()
            bottom_right = ((2 * cells + 12) / scale).floor()
            boxes = torch.cat([top_left, bottom_right], dim=1)
            found = torch.cat([boxes, score[ys, xs, None], offsets[:, ys, xs].T], dim=1)
            keep = batched_nms(found[:, :4], found[:, 4], torch.zeros_like(found[:, 4]), 0.5)
            candidates.append(found[keep])
        if not candidates:
            return []
        found = torch.cat(candidates)
        found = found[batched_nms(found[:, :4], found[:, 4], torch.zeros_like(found[:, 4]), 0.7)]
        boxes = _squared(_regress(found[:, :4], found[:, 5:9], inclusive=False))

        # stage 2: R-Net
        out = self._run(nets["rnet"], self._crops(pixels, boxes, 24))
        passed = out["score"] > self.thresholds[1]
        boxes, scores, offsets = boxes[passed], out["score"][passed], out["offsets"][passed]
        if not len(boxes):
            return []
        keep = batched_nms(boxes, scores, torch.zeros_like(scores), 0.7)
        boxes = _squared(_regress(boxes[keep], offsets[keep], inclusive=True))

        # stage 3: O-Net, with landmarks relative to the box it saw
        out = self._run(nets["onet"], self._crops(pixels, boxes, 48))
        passed = out["score"] > self.thresholds[2]
        boxes, scores = boxes[passed], out["score"][passed]
        offsets, relative = out["offsets"][passed], out["points"][passed]
        if not len(boxes):
            return []
        w = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
        h = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
        points = torch.stack([w * relative[:, :5] + boxes[:, :1] - 1,
                              h * relative[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = _regress(boxes, offsets, inclusive=True)
        keep = nms_min(boxes.cpu(), scores.cpu(), 0.7)
        boxes, scores, points = boxes.cpu()[keep], scores.cpu()[keep], points.cpu()[keep]
        return [Face(tuple(float(v) for v in b), float(s), p.numpy().astype(np.float64))
                for b, s, p in zip(boxes, scores, points)]

    def largest_face(self, image: Image.Image) -> Face | None:
        """The face with the largest box (the subject of a one-person photo), or None."""
        faces = self.detect(image)
        return max(faces, key=lambda f: f.area) if faces else None


def detect_landmarks(detector: MTCNN, root: Path, image_paths: list[str], cache_file: Path,
                     *, save_every: int = 2000) -> np.ndarray:
    """Five points of the largest face in each image, detected once and cached.

    Args:
        detector: the detector; ``detector.settings()`` should be part of ``cache_file``'s name.
        root: the folder the paths are relative to.
        image_paths: images to detect in.
        cache_file: an ``.npz`` of the paths seen so far (``paths``) and their points
            (``points``, (M, 5, 2), NaN where no face was found). Only the images it lacks are
            run; it is rewritten atomically every ``save_every`` new images, so an interrupted
            detection resumes.

    Returns:
        (len(image_paths), 5, 2) float64 points, NaN rows where no face was found.
    """
    known: dict[str, np.ndarray] = {}
    if cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as cached:
                known = dict(zip(cached["paths"].tolist(), cached["points"]))
        except (OSError, ValueError, KeyError) as err:
            log.warning("ignoring the unreadable detection cache %s (%s)", cache_file, err)
    todo = [p for p in dict.fromkeys(image_paths) if p not in known]
    if todo:
        log.info("detecting faces in %d images (%s; cached in %s)", len(todo),
                 detector.settings(), cache_file)
    start, last_save = time.perf_counter(), 0
    for done, path in enumerate(todo, start=1):
        try:
            with Image.open(root / path) as img:
                face = detector.largest_face(img)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            if known:
                _save(cache_file, known)   # what was detected so far is kept
            raise DataError(f"image file is unreadable or truncated: {root / path} ({err}). "
                            "Replace the file, or delete it and its label row.") from None
        known[path] = face.points if face is not None else np.full((5, 2), np.nan)
        if done - last_save >= save_every or done == len(todo):
            _save(cache_file, known)
            last_save = done
            rate = done / max(time.perf_counter() - start, 1e-9)
            log.info("  %d / %d images (%.1f images/s)", done, len(todo), rate)
    if not image_paths:
        return np.zeros((0, 5, 2))
    return np.stack([known[p] for p in image_paths]).astype(np.float64)


def _save(cache_file: Path, known: dict[str, np.ndarray]) -> None:
    arrays = {"paths": np.array(list(known), dtype=str),
              "points": np.stack(list(known.values())).astype(np.float64)}
    atomic_write(cache_file, lambda tmp: save_npz(tmp, arrays))


__all__ = ["MTCNN", "Face", "default_weights_dir", "detect_landmarks", "nms_min"]
