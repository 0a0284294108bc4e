"""Five-point similarity alignment of faces to a template (one module for training and tools).

A face is aligned by the similarity transform (rotation, uniform scale, translation; no
reflection, no shear) that maps its five landmarks — image-left eye, image-right eye, nose tip,
image-left mouth corner, image-right mouth corner — closest, in least squares, onto a template's
five points (Umeyama, 1991), and by warping the image with it.

Templates (:data:`TEMPLATES`), in pixels of their own output size:

- ``arcface_112``: the insightface / ArcFace 112×112 template (Aff-Wild2's organiser crops and
  face-recognition backbones use 112×112 crops).
- ``seetaface_256``: the SeetaFace mean shape for 256×256 crops, the alignment MLCR used.
- ``mlcr_240``: the SeetaFace template scaled to 240×240, the crop size of the MLCR
  reproduction on CK+ (training takes random 224 crops of it, testing the centre 224). The
  reproduction does not say whether its 240 crop is a rescaled or a cropped 256 face; this
  module rescales (the whole aligned face is kept).

"Left" means the image's left (the subject's right), as in the templates; a horizontally
flipped face therefore has its left/right points swapped (:func:`flip_landmarks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from affectlab.data.contract import FaceImageDataset, LabelTable


@dataclass(frozen=True)
class Template:
    """Five target points (5, 2) in pixels of a ``size`` × ``size`` output image."""

    points: tuple[tuple[float, float], ...]
    size: int

    def scaled_to(self, size: int) -> "Template":
        """The same template for a ``size`` × ``size`` output."""
        factor = size / self.size
        return Template(tuple((x * factor, y * factor) for x, y in self.points), size)

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.points, dtype=np.float64)


_SEETAFACE_256 = Template(((89.3095, 72.9025), (169.3095, 72.9025), (127.8949, 127.0441),
                           (96.8796, 184.8907), (159.1065, 184.7601)), 256)

TEMPLATES: dict[str, Template] = {
    "arcface_112": Template(((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
                             (41.5493, 92.3655), (70.7299, 92.2041)), 112),
    "seetaface_256": _SEETAFACE_256,
    "mlcr_240": _SEETAFACE_256.scaled_to(240),
}

# 0-based indices in the 68-point iBUG mark-up (CK+ landmarks, dlib, FAN).
IBUG68_LEFT_EYE = tuple(range(36, 42))    # image-left eye (the subject's right)
IBUG68_RIGHT_EYE = tuple(range(42, 48))
IBUG68_NOSE_TIP = 30
IBUG68_MOUTH_LEFT = 48
IBUG68_MOUTH_RIGHT = 54


def template(name: str, size: int | None = None) -> Template:
    """A template by name (:data:`TEMPLATES`), optionally rescaled to ``size`` pixels."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown alignment template {name!r}: use one of {sorted(TEMPLATES)}")
    chosen = TEMPLATES[name]
    return chosen if size is None or size == chosen.size else chosen.scaled_to(size)


# The 49-point mark-up of BP4D's 2DFeatures (IntraFace-style): the 68 iBUG points without the
# 17 jaw points and the two inner mouth corners (iBUG 60, 64); entry k = iBUG point number.
IBUG68_TO_49 = tuple(i for i in range(17, 68) if i not in (60, 64))


def _five_points(landmarks: np.ndarray, count: int, row_of: Callable[[int], int]) -> np.ndarray:
    """(count, 2) landmarks → (5, 2) in the template order: eye centres (means of the six eye
    points), nose tip, mouth corners; ``row_of`` maps an iBUG-68 point number to its row."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (count, 2):
        raise ValueError(f"expected ({count}, 2) landmarks, got {landmarks.shape}")
    return np.stack([landmarks[[row_of(i) for i in IBUG68_LEFT_EYE]].mean(0),
                     landmarks[[row_of(i) for i in IBUG68_RIGHT_EYE]].mean(0),
                     landmarks[row_of(IBUG68_NOSE_TIP)], landmarks[row_of(IBUG68_MOUTH_LEFT)],
                     landmarks[row_of(IBUG68_MOUTH_RIGHT)]])


def five_points_from_68(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG landmarks (CK+, dlib, FAN) → (5, 2) template-order points."""
    return _five_points(landmarks, 68, lambda point: point)


def five_points_from_49(landmarks: np.ndarray) -> np.ndarray:
    """(49, 2) landmarks in :data:`IBUG68_TO_49` order (BP4D's 2DFeatures) → (5, 2)."""
    return _five_points(landmarks, 49, IBUG68_TO_49.index)


def template_landmarks68(side: int, template_name: str = "mlcr_240") -> np.ndarray:
    """68 points for a ``side``-pixel synthetic face: the eye, nose-tip and mouth-corner points
    sit on the template's five (scaled to ``side``), the rest on an ellipse; so
    :func:`five_points_from_68` gives the template and alignment keeps the face in place.
    For fixture trees of datasets that ship landmarks."""
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([side / 2 + side / 3 * np.cos(angles),
                       side / 2 + side / 3 * np.sin(angles)], 1)
    five = template(template_name, side).array
    points[list(IBUG68_LEFT_EYE)], points[list(IBUG68_RIGHT_EYE)] = five[0], five[1]
    points[IBUG68_NOSE_TIP], points[IBUG68_MOUTH_LEFT] = five[2], five[3]
    points[IBUG68_MOUTH_RIGHT] = five[4]
    return points


def flip_landmarks(points: np.ndarray, width: int) -> np.ndarray:
    """Five points of a face mirrored in an image ``width`` pixels wide: x → width − 1 − x, and
    left/right eyes and mouth corners swapped so the order stays the template's."""
    points = np.asarray(points, dtype=np.float64).copy()
    points[:, 0] = width - 1 - points[:, 0]
    return points[[1, 0, 2, 4, 3]]


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform taking ``source`` points onto ``target`` points.

    Umeyama (1991): with centred point sets X (source) and Y (target), Σ = Yᵀ X / K and its SVD
    U S Vᵀ, the rotation is R = U D Vᵀ (D = diag(1, sign det(U Vᵀ)) excludes reflections),
    the scale s = tr(S D) / (mean squared norm of X), and t = ȳ − s R x̄.

    Args:
        source: (K, 2) points, K ≥ 2, not all equal.
        target: (K, 2) points.

    Returns:
        (2, 3) float64 matrix M = [s R | t]: target ≈ M @ [x, y, 1].
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"similarity_transform needs two (K, 2) point sets with K ≥ 2, got "
                         f"{source.shape} and {target.shape}")
    source_mean, target_mean = source.mean(0), target.mean(0)
    x, y = source - source_mean, target - target_mean
    variance = (x ** 2).sum() / len(x)
    if variance == 0:
        raise ValueError("similarity_transform: the source points are all equal")
    u, s, vt = np.linalg.svd(y.T @ x / len(x))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / variance
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image: Image.Image, points: np.ndarray, template_name: str = "arcface_112",
               size: int | None = None) -> Image.Image:
    """Warp ``image`` so that its five ``points`` land on the template's (bilinear; black border).

    Args:
        image: the source image (any PIL mode; converted to RGB).
        points: (5, 2) landmarks in pixels of ``image``, template order.
        template_name: a key of :data:`TEMPLATES`.
        size: output side (default: the template's own size; the template is rescaled).

    Returns:
        The aligned RGB image, ``size`` × ``size``.
    """
    chosen = template(template_name, size)
    forward = np.vstack([similarity_transform(np.asarray(points), chosen.array), [0, 0, 1]])
    # PIL maps every output pixel back into the input, so it takes the inverse transform.
    inverse = np.linalg.inv(forward)[:2].ravel()
    return image.convert("RGB").transform((chosen.size, chosen.size), Image.Transform.AFFINE,
                                          data=tuple(inverse), resample=Image.Resampling.BILINEAR,
                                          fillcolor=(0, 0, 0))


def aligned_crop(image: Image.Image, points: np.ndarray, template_name: str, align_size: int,
                 image_size: int) -> Image.Image:
    """The face of ``image`` whose five ``points`` are given, as a network reads it: aligned
    to ``template_name`` at ``align_size`` pixels, then the centre ``image_size`` square
    (what :class:`AlignedImages` returns for a sample, and ``affectlab-predict`` for a
    detected face)."""
    aligned = align_face(image, points, template_name, size=align_size)
    margin = (align_size - image_size) // 2
    return aligned.crop((margin, margin, margin + image_size, margin + image_size))


class AlignedImages(FaceImageDataset):
    """A split whose faces are aligned by five points per sample before they reach the network.

    Each image is warped so that its points land on ``template`` at ``align_size`` pixels, then
    the centre ``image_size`` square is kept (MLCR: align at 240, train/test on 224; with
    ``align_size == image_size`` the whole aligned face is used).

    Args:
        table: the split.
        image_size: side of the images returned.
        template: a key of :data:`TEMPLATES`.
        align_size: side the face is aligned at (≥ ``image_size``).
        points: (len(table), 5, 2) landmarks in pixels of each image, template order — the
            dataset's own (``dataset.crop=align``) or a detector's (``dataset.crop=detect``).
    """

    def __init__(self, table: LabelTable, *, image_size: int, template: str, align_size: int,
                 points: np.ndarray) -> None:
        super().__init__(table, image_size=image_size)
        if points.shape != (len(table), 5, 2):
            raise ValueError(f"AlignedImages needs ({len(table)}, 5, 2) points, got {points.shape}")
        if align_size < image_size:
            raise ValueError(f"dataset.align_size={align_size} must be ≥ dataset.image_size="
                             f"{image_size} (the centre image_size square is kept)")
        self.template = template
        self.align_size = align_size
        self.points = np.asarray(points, dtype=np.float64)

    def transform(self, img: Image.Image, row: int) -> Image.Image:
        return aligned_crop(img, self.points[row], self.template, self.align_size,
                            self.image_size)


__all__ = ["AlignedImages", "TEMPLATES", "Template", "align_face", "aligned_crop",
           "five_points_from_49", "five_points_from_68", "template_landmarks68", "IBUG68_TO_49",
           "flip_landmarks", "similarity_transform", "template"]
