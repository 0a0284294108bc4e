"""Any folder of face images as an unlabelled pool (``pool=image_folder pool.root=...``).

The semi-supervised methods learn from faces without labels; the papers draw them from other
datasets (MLCR: EmotioNet images for BP4D; the MLCR reproduction: 2,000 random LFW images for
CK+). A pool is configured apart from the labelled dataset, in the ``pool`` config group, and
replaces the dataset's own unlabelled split::

    python train.py method=mlcr dataset=ckplus dataset.root=/data/CK+ \\
        pool=image_folder pool.root=/data/lfw pool.num_images=2000

Every file with an image extension below ``root`` (recursively, e.g. LFW's
``lfw/<Person_Name>/<Person_Name>_0001.jpg``) is a candidate; ``num_images`` draws a seeded
random subset. The drawn images are checked readable before training (not empty, header parses,
not truncated; cached in ``cache_dir`` by path, size and mtime: see
:func:`~.image_checks.readable_images`). They are resized to the labelled dataset's
``image_size``, or, with ``pool.crop=detect``, aligned by the offline face detector's five points
(detected once, cached in ``cache_dir``). A damaged image or one without a face is an error, or
left out and counted with ``on_error=skip``; a folder has no known gaps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from affectlab.data.contract import DataError, FaceImageDataset, LabelTable, empty_labels
from affectlab.data.faces.detection import MTCNN
from affectlab.data.sources.image_checks import image_check_cache, readable_images
from affectlab.data.sources.on_disk import FaceCrops, Problems, check_folder

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
LAYOUT = """\
  <pool.root>/**/<image>.jpg|png|...     searched recursively, e.g. <pool.root>/<Person_Name>/
                                         <Person_Name>_0001.jpg (LFW)"""


class ImageFolder(FaceCrops):
    """Unlabelled faces from a folder tree.

    Args:
        root: the folder (relative paths resolve against the working directory).
        num_images: draw this many images at random (None: all of them).
        seed: seed of that draw.
        extensions: file name endings counted as images (case-insensitive).
        crop: ``none`` (resize) or ``detect`` (align by the face detector's five points).
        template, align_size: alignment template and side (None: the image size).
        detector: the face detector of ``crop=detect`` (``configs/detector/``).
        on_error: ``known_gaps`` (default; a folder has none, so the same as ``raise``) or
            ``raise`` stop at a damaged image or one in which no face is found (crop=detect);
            ``skip`` leaves them out and counts them.
        cache_dir: where image checks and detections are cached.
    """

    def __init__(self, *, root: str, num_images: int | None = None, seed: int = 0,
                 extensions: list[str] | None = None, crop: str = "none",
                 template: str = "arcface_112", align_size: int | None = None,
                 detector: MTCNN | None = None, on_error: str = "known_gaps",
                 cache_dir: str = "data/cache", name: str = "image_folder") -> None:
        root_path = Path(root).expanduser()
        self.root = root_path if root_path.is_absolute() else Path.cwd() / root_path
        self.name = name
        self.problems = Problems(on_error)
        cache = Path(cache_dir).expanduser()
        self.cache_dir = cache if cache.is_absolute() else Path.cwd() / cache
        self.configure_crop(crop, ("none", "detect"), template=template, align_size=align_size,
                            detector=detector)
        if num_images is not None and num_images < 1:
            raise ValueError(f"pool.num_images={num_images}: must be ≥ 1 (or null for all)")
        self.num_images = num_images
        self.seed = seed
        self.extensions = tuple(e.lower() for e in (extensions or IMAGE_EXTENSIONS))

    def image_paths(self) -> list[str]:
        """Sorted image paths relative to ``root`` (one directory walk)."""
        check_folder(self.root, "pool.root", "face images", LAYOUT)
        found = []
        for folder, _, files in os.walk(self.root):
            relative = Path(folder).relative_to(self.root)
            found += [str(relative / f) for f in files if f.lower().endswith(self.extensions)]
        if not found:
            raise DataError(f"no images found under {self.root} (pool.root): no file ends in "
                            f"{', '.join(self.extensions)} (pool.extensions). Expected layout:\n"
                            f"{LAYOUT}")
        return sorted(found)

    def pool(self, image_size: int | None) -> FaceImageDataset:
        """The pool as a dataset of unlabelled samples (every mask False, ``labeled`` False)."""
        paths = self.image_paths()
        if self.num_images is not None:
            if self.num_images > len(paths):
                raise DataError(f"pool.num_images={self.num_images}, but {self.root} holds only "
                                f"{len(paths)} images; lower it or set it to null.")
            rows = np.random.default_rng(self.seed).choice(len(paths), self.num_images,
                                                           replace=False)
            paths = [paths[i] for i in sorted(rows)]
        ok = readable_images(self.root, paths, self.problems,
                             cache_file=image_check_cache(self.cache_dir, self.name, self.root))
        paths = [p for p, readable in zip(paths, ok) if readable]
        if not paths:
            raise DataError(f"no images found under {self.root} (pool.root) that are readable "
                            f"({self.problems.left_out()}). Expected layout:\n{LAYOUT}")
        table = LabelTable(root=self.root, image_paths=paths, **empty_labels(len(paths)))
        pool = self.face_dataset(table.unlabeled(), image_size)
        self.problems.summarize(self.name)
        return pool


__all__ = ["ImageFolder", "IMAGE_EXTENSIONS", "LAYOUT"]
