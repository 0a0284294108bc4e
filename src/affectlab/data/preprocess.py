"""Face crops written once at training resolution, and read back instead of the raw frames.

Decoding a 640×490 CK+ frame or a 1040×1392 BP4D frame, cropping or aligning it and resizing it
costs more than the small network that trains on it. ``scripts/preprocess.py`` runs every
split's images through the dataset's own reading path once (:meth:`FaceImageDataset.transform`:
crop / alignment and resize) and writes the results as lossless PNGs with a manifest;
``python train.py preprocessed=<folder>`` then reads those crops. Both paths give the same
pixels: the crops *are* what the raw path computes.

Folder layout::

    <out>/manifest.json                  dataset, image size, split checksum, file count
    <out>/crops/<split>/<image path>.png one per sample (the split's relative image path; per
                                         split, so a pool from another dataset whose paths
                                         equal the dataset's never shares a crop)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import DataLoader, Dataset

from affectlab.data.contract import ARRAY_FIELDS, DataError, FaceData, FaceImageDataset, LabelTable
from affectlab.data.packed import reading_settings
from affectlab.utils import atomic_write, atomic_write_json

MANIFEST = "manifest.json"
CROPS = "crops"
LAYOUT_VERSION = 2   # 2: crops/<split>/<path>.png (1 had no split folder)
SPLITS = ("train", "val", "test", "unlabeled")


def crop_path(split: str, image_path: str) -> str:
    """Where the crop of ``image_path`` (relative to its split's root) goes."""
    return f"{CROPS}/{split}/{image_path}.png"


def _splits(data: FaceData) -> dict[str, FaceImageDataset]:
    return {name: getattr(data, name) for name in SPLITS if getattr(data, name) is not None}


def _fingerprint(data: FaceData) -> str:
    """SHA-1 of every split's image paths and reading settings: which samples the crops were
    written for, and how (another crop, template or detector gives other pixels)."""
    digest = hashlib.sha1()
    for name, dataset in _splits(data).items():
        digest.update(name.encode())
        digest.update("\n".join(dataset.table.image_paths).encode())
        digest.update(reading_settings(dataset).encode())
    return digest.hexdigest()


class _CropWriter(Dataset):
    """Writes one sample's crop per item (so DataLoader workers share the writing); returns 1."""

    def __init__(self, jobs: list[tuple[FaceImageDataset, int, Path]]) -> None:
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, item: int) -> int:
        dataset, row, target = self.jobs[item]
        image = Image.fromarray(dataset.load_pixels(row))
        atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
        return 1


def write_crops(data: FaceData, out: Path, workers: int = 0) -> dict[str, Any]:
    """Write every sample's training-resolution image under ``out``; return the manifest.

    Files that already exist are kept (an interrupted run resumes); the manifest is written
    last, so a folder without one is never used for training. ``workers`` > 0 decodes, crops
    and writes in that many processes (the files are the same).
    """
    out = Path(out)
    jobs, count = [], 0
    for split, dataset in _splits(data).items():
        for row in range(len(dataset)):
            target = out / crop_path(split, dataset.table.image_paths[row])
            if not target.is_file():
                jobs.append((dataset, row, target))
            count += 1
    if jobs:
        # batch_size=None: one item at a time, nothing collated
        for _ in DataLoader(_CropWriter(jobs), batch_size=None, num_workers=workers):
            pass
    manifest = {"layout": LAYOUT_VERSION, "dataset": data.name,
                "image_size": data.train.image_size,
                "samples": _fingerprint(data), "files": count,
                "split_protocol": data.manifest.protocol if data.manifest is not None else None}
    atomic_write_json(manifest, out / MANIFEST)
    return manifest


def use_crops(data: FaceData, folder: str | Path) -> FaceData:
    """``data`` with every split reading the crops in ``folder`` (written by :func:`write_crops`
    for the same dataset, samples and image size; anything else is refused with what to do)."""
    folder = Path(folder).expanduser().resolve()
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        raise DataError(f"preprocessed={folder} has no readable {MANIFEST}: run "
                        f"scripts/preprocess.py with the same dataset options and out={folder} "
                        "first (an interrupted run is resumed).") from None
    if manifest.get("layout") != LAYOUT_VERSION:
        raise DataError(f"{manifest_path} was written by an older affectlab (another folder "
                        "layout): re-run scripts/preprocess.py with this run's options into a new "
                        "folder.")
    expected = {"dataset": data.name, "image_size": data.train.image_size,
                "samples": _fingerprint(data)}
    for key, value in expected.items():
        if manifest.get(key) != value:
            what = ("other samples (another split or dataset options)" if key == "samples"
                    else f"another {key} ({manifest.get(key)!r} there, {value!r} now)")
            raise DataError(f"{manifest_path} was written for {what}: re-run "
                            "scripts/preprocess.py with this run's dataset options into a new "
                            "folder.")
    for name, dataset in _splits(data).items():
        table = dataset.table
        crops = LabelTable(root=folder,
                           image_paths=[crop_path(name, p) for p in table.image_paths],
                           **{k: getattr(table, k) for k in ARRAY_FIELDS})
        # plain reading: the crops are already cropped, aligned and at size
        setattr(data, name, FaceImageDataset(crops, image_size=dataset.image_size))
    return data


__all__ = ["write_crops", "use_crops", "crop_path"]
