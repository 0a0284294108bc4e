"""Face-box crops for datasets whose label files give a box per face (AffectNet, ExpW, AFEW-VA).

:class:`~affectlab.data.contract.LabelTable` has no geometry column and the index cache stores
only the label arrays, so a dataset that crops keeps its boxes beside the table:
:class:`BoxCroppedDataset` lets the base build the splits, then re-reads the boxes from the label
files (:meth:`BoxCroppedDataset.face_boxes`, one per index row), recovers which index rows each
split's table holds (:func:`rows_behind`: the manifest's ids with missing images left out) and
reads every split through :class:`BoxCropImages`, whose ``transform`` does the crop.

Boxes are ``(x0, y0, x1, y1)`` float pixels of the original image (x right, y down; x1, y1
exclusive). The crop is the square of side ``max(w, h) · (1 + margin)`` centred on the box, so
faces are never squashed; what lies outside the image is black (PIL's crop), as in CelebA's
``bbox`` crop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from affectlab.data.contract import DataError, FaceData, FaceImageDataset, LabelTable
from affectlab.data.sources.on_disk import DatasetIndex, OnDiskDataset, check_split_fractions

CROPS = ("none", "box")


def square_box(box: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """The integer square ``(left, top, right, bottom)`` around ``box`` = (x0, y0, x1, y1):
    side ``max(w, h) · (1 + margin)``, same centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    left = round((x0 + x1) / 2 - side / 2)
    top = round((y0 + y1) / 2 - side / 2)
    size = max(1, round(side))
    return left, top, left + size, top + size


def box_crop(image: Image.Image, box: Sequence[float], margin: float,
             image_size: int) -> Image.Image:
    """``image`` cropped to the square around ``box`` (:func:`square_box`; outside the image
    black), resized to ``image_size`` (what :class:`BoxCropImages` returns for a sample, and
    ``affectlab-predict`` for a detected face)."""
    image = image.crop(square_box(box, margin))
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.BILINEAR)
    return image


class BoxCropImages(FaceImageDataset):
    """:class:`FaceImageDataset` that crops every image to its face box before the resize.

    Args:
        table: the split's labels (N rows).
        image_size: output side (square); a crop always resizes.
        boxes: float (N, 4) ``(x0, y0, x1, y1)`` per table row, in original-image pixels.
        margin: the square crop's side is ``max(w, h) · (1 + margin)`` (0: the box's long side).
    """

    def __init__(self, table: LabelTable, *, image_size: int, boxes: np.ndarray,
                 margin: float = 0.0) -> None:
        super().__init__(table, image_size=image_size)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(table):
            raise ValueError(f"BoxCropImages: {len(boxes)} boxes for {len(table)} rows")
        self.boxes = boxes
        self.margin = margin

    def transform(self, img: Image.Image, row: int) -> Image.Image:
        return box_crop(img, self.boxes[row], self.margin, self.image_size)


def rows_behind(table: LabelTable, index: DatasetIndex, candidates: Sequence[int]) -> np.ndarray:
    """The rows of ``index`` that ``table`` holds, in table order.

    ``table`` must be ``index.table.subset(candidates)`` with some candidates left out — what
    :meth:`OnDiskDataset.build` and ``pool`` produce, leaving out rows whose image file is
    missing. A missing file drops every row of that image, so matching image paths greedily in
    candidate order is exact, also when several rows (faces) share one image.

    Returns: int64 (len(table),) index rows.
    """
    paths = table.image_paths
    all_paths = index.table.image_paths
    out: list[int] = []
    for row in candidates:
        if len(out) < len(paths) and all_paths[row] == paths[len(out)]:
            out.append(int(row))
    if len(out) != len(paths):
        # only possible if files appeared or vanished while the splits were built
        raise DataError(f"the image files under {index.table.root} changed while the splits "
                        "were built; run again.")
    return np.array(out, dtype=np.int64)


def check_crop(crop: str, margin: float, crops: Sequence[str] = CROPS) -> None:
    """ValueError naming the config keys for an unknown ``dataset.crop`` or a negative margin."""
    if crop not in crops:
        raise ValueError(f"dataset.crop={crop!r}: use one of {list(crops)}")
    if not margin >= 0:
        raise ValueError(f"dataset.box_margin={margin}: must be ≥ 0")


def boxes_in_index_order(index: DatasetIndex, boxes: Mapping[str, Sequence[float] | None],
                         source: str) -> np.ndarray:
    """float (len(index.table), 4) boxes of ``index``'s samples, looked up in ``boxes`` (re-read
    from ``source``); a sample it no longer boxes is a :class:`DataError` (the label files
    changed after the index was built)."""
    missing = [i for i in index.sample_ids if boxes.get(i) is None]
    if missing:
        raise DataError(f"{source} gives no face box for {len(missing)} indexed sample(s), e.g. "
                        f"{missing[0]}: it changed after the index was built; run again (the "
                        "index is then rebuilt).")
    return np.array([boxes[i] for i in index.sample_ids], dtype=np.float64).reshape(-1, 4)


class BoxCroppedDataset(OnDiskDataset):
    """An :class:`OnDiskDataset` whose splits (and pool) are read through :class:`BoxCropImages`.

    A subclass sets ``self.crop`` (``"none"`` leaves the images as the base reads them) and
    ``self.box_margin`` in its constructor and implements :meth:`face_boxes`. The parsed index
    is kept after its first use, so that :meth:`build` can look the boxes up without loading
    (and counting the skipped problems of) the cached index a second time.
    """

    crop: str = "none"
    box_margin: float = 0.0

    def configure_box_crop(self, *, seed: int, crop: str, box_margin: float,
                           crops: tuple[str, ...]) -> None:
        """Check and keep the split seed and the crop options."""
        if seed < 0:
            raise ValueError(f"dataset.seed={seed}: must be ≥ 0")
        if self.image_size < 1:
            raise ValueError(f"dataset.image_size={self.image_size}: must be positive")
        check_crop(crop, box_margin, crops)
        self.seed = seed
        self.crop = crop
        self.box_margin = box_margin

    def configure_split_and_crop(self, *, train_fraction: float, val_fraction: float,
                                 seed: int, crop: str, box_margin: float,
                                 crops: tuple[str, ...]) -> None:
        """Check and keep the options of a seeded random split and of the crop."""
        check_split_fractions(train_fraction, val_fraction)
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.configure_box_crop(seed=seed, crop=crop, box_margin=box_margin, crops=crops)

    def face_boxes(self, index: DatasetIndex) -> np.ndarray:
        """float (len(index.table), 4) ``(x0, y0, x1, y1)`` of every index row, re-read from
        the label files (raise :class:`DataError`, naming the file, where one is missing)."""
        raise NotImplementedError

    def aligned_index(self) -> DatasetIndex:
        """The base's index, parsed (or loaded) once per dataset object."""
        if getattr(self, "_kept_index", None) is None:
            self._kept_index = super().aligned_index()
        return self._kept_index

    def _cropped(self, dataset: FaceImageDataset, index: DatasetIndex, boxes: np.ndarray,
                 candidates: Sequence[int], image_size: int) -> BoxCropImages:
        rows = rows_behind(dataset.table, index, candidates)
        return BoxCropImages(dataset.table, image_size=image_size, boxes=boxes[rows],
                             margin=self.box_margin)

    def build(self) -> FaceData:
        """The base's build, with every split read through :class:`BoxCropImages`."""
        data = super().build()
        if self.crop == "none":
            return data
        index = self.aligned_index()
        boxes = self.face_boxes(index)
        row_of = {sample_id: row for row, sample_id in enumerate(index.sample_ids)}
        for split in ("train", "val", "test", "unlabeled"):
            dataset = getattr(data, split)
            if dataset is not None:
                candidates = [row_of[i] for i in data.manifest.ids[split]]
                setattr(data, split, self._cropped(dataset, index, boxes, candidates,
                                                   self.image_size))
        return data

    def pool(self, image_size: int | None) -> FaceImageDataset:
        """The base's pool (every indexed sample whose image exists, labels hidden), cropped;
        a crop always resizes, so ``image_size=None`` gives ``dataset.image_size``."""
        dataset = super().pool(image_size)
        if self.crop == "none":
            return dataset
        index = self.aligned_index()
        ids = self.split(index).ids.get("unlabeled")
        row_of = {sample_id: row for row, sample_id in enumerate(index.sample_ids)}
        candidates = [row_of[i] for i in ids] if ids else range(len(index.table))
        return self._cropped(dataset, index, self.face_boxes(index), candidates,
                             image_size if image_size is not None else self.image_size)


__all__ = ["boxes_in_index_order", "box_crop", "BoxCropImages", "BoxCroppedDataset", "CROPS",
           "check_crop", "rows_behind", "square_box"]
