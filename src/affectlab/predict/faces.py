"""Finding and cutting the faces of a new picture the way a run's training data cut them.

A run stores its dataset's reading settings (``crop``, ``template``, ``align_size``,
``box_margin``, ``image_size``, ``detector``; :data:`~affectlab.engine.checkpoint.READING_KEYS`).
They decide how a picture becomes the network's input here, through the same functions the
datasets use (:func:`~affectlab.data.faces.alignment.aligned_crop`,
:func:`~affectlab.data.faces.boxes.box_crop`):

=================================  ========================================================
the run's ``dataset.crop``         a face of a new picture
=================================  ========================================================
``align``, ``detect``              every face MTCNN finds, aligned by its five points to the
                                   run's ``template`` at ``align_size``, centre ``image_size``
``box``, ``landmarks``, ``bbox``   every face MTCNN finds, the square around its box with the
                                   run's ``box_margin`` (the training boxes came from the
                                   dataset's files; the detector's box stands in for them)
``none``, ``center``               the whole picture is one face (the run learnt from
                                   pre-cropped faces), resized (``center``: its centre square)
=================================  ========================================================

``faces="detect"`` detects faces for a run of pre-cropped faces too (square box crops with the
run's ``box_margin``, or :data:`DEFAULT_BOX_MARGIN`); ``faces="whole"`` takes every picture as
one face whatever the run's crop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from affectlab.build import CONFIG_DIR
from affectlab.data.faces.alignment import aligned_crop
from affectlab.data.faces.boxes import box_crop
from affectlab.data.faces.detection import MTCNN

ALIGNED_CROPS = ("align", "detect")
BOX_CROPS = ("box", "landmarks", "bbox")
WHOLE_CROPS = ("none", "center")
FACE_MODES = ("auto", "whole", "detect")
DEFAULT_BOX_MARGIN = 0.2   # a detected box grown by a fifth: the hair line and chin inside


def detector_defaults() -> dict[str, Any]:
    """The packaged detector config (``configs/detector/mtcnn.yaml``) as keyword arguments."""
    return OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "detector" / "mtcnn.yaml"))


@dataclass(frozen=True)
class FoundFace:
    """One face of a picture, ready for the network.

    Attributes:
        box: (x1, y1, x2, y2) in the picture's pixels (the whole picture for ``whole``).
        confidence: the detector's face probability (1.0 for a whole picture).
        pixels: uint8 (image_size, image_size, 3), RGB.
    """

    box: tuple[float, float, float, float]
    confidence: float
    pixels: np.ndarray


class FaceCutter:
    """Turns a picture into the faces a run reads (see the module docstring).

    Args:
        reading: the run's reading settings (``LoadedRun.inputs["dataset"]``).
        faces: ``auto`` (the run's crop decides), ``whole`` or ``detect``.
        box_margin: overrides the run's ``box_margin`` for box crops.
        device: where the detector runs (``cpu``, ``cuda``, ``auto``).
    """

    def __init__(self, reading: Mapping[str, Any], *, faces: str = "auto",
                 box_margin: float | None = None, device: str = "auto") -> None:
        if faces not in FACE_MODES:
            raise ValueError(f"faces={faces!r}: use one of {list(FACE_MODES)}")
        self.image_size = int(reading.get("image_size") or 0)
        if self.image_size < 1:
            raise ValueError(f"the run's dataset.image_size is {reading.get('image_size')!r}: "
                             "predict needs the side the network was trained at")
        self.crop = str(reading.get("crop") or "none")
        known = ALIGNED_CROPS + BOX_CROPS + WHOLE_CROPS
        if self.crop not in known:
            raise ValueError(f"the run's dataset.crop={self.crop!r} is not one predict knows "
                             f"({list(known)}); use faces=whole or faces=detect")
        self.mode = faces if faces != "auto" else ("whole" if self.crop in WHOLE_CROPS
                                                     else "detect")
        self.aligned = self.mode == "detect" and self.crop in ALIGNED_CROPS
        self.template = str(reading.get("template") or "arcface_112")
        self.align_size = int(reading.get("align_size") or self.image_size)
        margin = reading.get("box_margin") if box_margin is None else box_margin
        self.box_margin = float(DEFAULT_BOX_MARGIN if margin is None else margin)
        self.detector = None
        if self.mode == "detect":
            # a run trained without the detector gets the packaged detector config's settings
            settings = dict(reading.get("detector") or detector_defaults())
            settings = {k: v for k, v in settings.items() if not k.startswith("_")}
            settings["device"] = device
            self.detector = MTCNN(**settings)

    def describe(self) -> str:
        """One line for the log: how faces are found and cut."""
        if self.mode == "whole":
            return (f"each picture is one face (the run's crop={self.crop}), resized to "
                    f"{self.image_size} px")
        cut = (f"aligned to {self.template} at {self.align_size} px, centre {self.image_size}"
               if self.aligned else f"square box with margin {self.box_margin}, resized to "
               f"{self.image_size} px")
        return f"faces found by MTCNN (min_face_size {self.detector.min_face_size}), {cut}"

    def __call__(self, picture: Image.Image) -> list[FoundFace]:
        """The faces of ``picture`` (RGB), the detector's most probable first; [] when a
        detector finds none."""
        if self.mode == "whole":
            width, height = picture.size
            whole = picture
            if self.crop == "center":
                side = min(width, height)
                left, top = (width - side) // 2, (height - side) // 2
                whole = picture.crop((left, top, left + side, top + side))
            whole = whole.resize((self.image_size, self.image_size), Image.BILINEAR)
            return [FoundFace((0.0, 0.0, float(width), float(height)), 1.0,
                              np.asarray(whole, dtype=np.uint8))]
        found = []
        for face in self.detector.detect(picture):
            cut = (aligned_crop(picture, face.points, self.template, self.align_size,
                                self.image_size) if self.aligned
                   else box_crop(picture, face.box, self.box_margin, self.image_size))
            found.append(FoundFace(face.box, face.score, np.asarray(cut, dtype=np.uint8)))
        return found


__all__ = ["FaceCutter", "FoundFace", "FACE_MODES"]
