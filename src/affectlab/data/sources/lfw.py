"""LFW (Labeled Faces in the Wild; Huang et al., 2007): 13,233 images of 5,749 people, as
released on its site (and as torchvision's ``LFWPeople`` reads it). ``dataset=lfw``.

Layout (``dataset.root``: the folder holding the image folder and the list files; torchvision's
``lfw-py/`` below it, or the image folder itself, are found too)::

    lfw/<Person_Name>/<Person_Name>_0001.jpg …    250 × 250 JPEGs, numbered from 0001
    lfw_funneled/…, lfw-deepfunneled/…            the aligned variants, same names
    lfw-names.txt        ``name<TAB>count`` per person (optional; checked against the disk)
    peopleDevTrain.txt   View 1: a count line, then ``name<TAB>count`` lines (4,038 people)
    peopleDevTest.txt    View 1 test, same format (1,711 people; both counts from memory)
    people.txt           View 2: line 1 = number of folds (10); per fold a count line, then
                         ``name<TAB>count`` lines
    (pairs*.txt: verification pairs; not read)

A listed ``name count`` stands for the images ``name/name_0001.jpg`` … ``name_<count>.jpg``
(torchvision's path rule ``f"{identity}_{int(no):04d}.jpg"``). Values are split on whitespace,
so ``\\r\\n`` line ends and spaces instead of tabs are accepted.

The index is what is on disk: every ``<images>/<Person>/<Person>_NNNN.jpg``; a ``.jpg`` in a
person folder that does not follow the naming is a problem (reported with its path). When
``lfw-names.txt`` is present, a person it lists with more images than are on disk is reported
(file and line): a partial extraction is not silently smaller.

Samples carry the identity (``subject`` = the person) and no other label; see
:mod:`affectlab.data.sources.identity_sets` for the shared protocols ``identities`` and ``pool``
(``pool_images``: the MLCR reproduction's 2,000 random LFW images as the unlabelled set of
CK+). LFW adds its official people splits:

- ``view1``: train = ``peopleDevTrain.txt``'s people minus a seeded ``val_fraction`` of them
  (val), test = ``peopleDevTest.txt``'s people.
- ``view2``: test = fold ``fold`` (0-based) of ``people.txt``; train = the other folds' people,
  minus a seeded ``val_fraction`` of them (val). (That the folds are people-disjoint is how LFW
  describes View 2 — unverified here; an overlap is refused by the leakage check.)

Only the images a list names are used by ``view1`` / ``view2``; a listed image missing on disk
is a problem reported with the list file and line (``on_error=skip`` leaves it out). Sample ids
(and image paths) are relative to the root: ``lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from PIL import Image

from affectlab.data.contract import DataError, FaceImageDataset, LabelTable
from affectlab.data.faces.detection import MTCNN
from affectlab.data.sources.identity_sets import IdentityDataset, identity_index
from affectlab.data.sources.on_disk import DatasetIndex, Problems, check_folder, subject_split

IMAGE_FOLDERS: tuple[str, ...] = ("lfw", "lfw_funneled", "lfw-deepfunneled")
TORCHVISION_FOLDER = "lfw-py"
NAMES_FILE = "lfw-names.txt"
DEV_TRAIN_FILE = "peopleDevTrain.txt"
DEV_TEST_FILE = "peopleDevTest.txt"
PEOPLE_FILE = "people.txt"
PROTOCOLS: tuple[str, ...] = ("identities", "view1", "view2", "pool")
# <Person_Name>_0001.jpg: the person's folder name, an underscore, a number of ≥ 4 digits
IMAGE_NAME = re.compile(r"^(?P<person>.+)_(?P<number>\d{4,})\.jpg$")
LAYOUT = """\
  <root>/lfw/<Person_Name>/<Person_Name>_0001.jpg ...   (or lfw_funneled/, lfw-deepfunneled/;
                                                          <root>/lfw-py/lfw/... also found)
  <root>/lfw-names.txt                                  (optional: name<TAB>count)
  <root>/peopleDevTrain.txt, peopleDevTest.txt          (protocol=view1)
  <root>/people.txt                                     (protocol=view2)"""


def image_id(images: str, person: str, number: int) -> str:
    """Sample id of image ``number`` (1-based) of ``person``: ``lfw/P/P_0001.jpg``."""
    return f"{images}/{person}/{person}_{number:04d}.jpg"


def read_people(path: Path, problems: Problems, *, folds: bool) -> list[list[tuple[str, int, int]]]:
    """Parse an LFW people list into folds of ``(name, count, line number)``.

    Args:
        path: ``peopleDevTrain.txt`` / ``peopleDevTest.txt`` (``folds=False``: a count line,
            then that many ``name count`` lines) or ``people.txt`` (``folds=True``: line 1 the
            number of folds, then per fold a count line and its ``name count`` lines).
        problems: a malformed ``name count`` line (not two fields, count not a positive
            integer) is reported with file and line and left out.

    Returns:
        One list per fold (one for the View 1 files) of ``(name, count, line)``.

    Raises:
        DataError: a malformed count line or a file shorter than its counts declare (the
            structure is lost, so these are never skipped).
    """
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()   # a trailing blank line is not a record

    def count_at(number: int, what: str) -> int:
        if number > len(lines):
            raise DataError(f"{path}, line {number}: the file ends, but {what} was expected "
                            "(a count line). Re-download the list file.")
        tokens = lines[number - 1].split()
        if len(tokens) != 1 or not tokens[0].isdigit():
            raise DataError(f"{path}, line {number}: expected {what} (one integer), got "
                            f"{lines[number - 1].strip()!r}")
        return int(tokens[0])

    line = 1
    num_folds = 1
    if folds:
        num_folds = count_at(1, "the number of folds")
        line = 2
    out: list[list[tuple[str, int, int]]] = []
    for fold in range(num_folds):
        size = count_at(line, f"the number of people of fold {fold}" if folds
                        else "the number of people")
        if line + size > len(lines):
            raise DataError(f"{path}, line {line}: declares {size} people, but the file ends "
                            f"after {len(lines) - line} more line(s). Re-download the list file.")
        people = []
        for number in range(line + 1, line + size + 1):
            tokens = lines[number - 1].split()
            if len(tokens) != 2 or not tokens[1].isdigit() or int(tokens[1]) < 1:
                problems.report(f"{path}, line {number}: expected 'name<TAB>number of images', "
                                f"got {lines[number - 1].strip()!r}")
                continue
            people.append((tokens[0], int(tokens[1]), number))
        out.append(people)
        line += size + 1
    if line <= len(lines):
        problems.report(f"{path}, line {line}: {len(lines) - line + 1} line(s) after the last "
                        "declared person are ignored")
    return out


class CenterCropped(FaceImageDataset):
    """LFW images cut to their centre ``crop`` × ``crop`` square before the resize: the face of a
    250 × 250 LFW image fills roughly its middle 100–150 pixels, the rest is background."""

    def __init__(self, table: LabelTable, *, image_size: int | None, crop: int) -> None:
        super().__init__(table, image_size=image_size)
        self.crop = crop

    def transform(self, img: Image.Image, row: int) -> Image.Image:
        width, height = img.size
        side = min(self.crop, width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return super().transform(img.crop((left, top, left + side, top + side)), row)


class LFW(IdentityDataset):
    """LFW faces with their identities (see the module docstring).

    Args (besides :class:`~affectlab.data.sources.identity_sets.IdentityDataset`'s):
        images: ``lfw`` (original), ``lfw_funneled`` or ``lfw-deepfunneled``.
        fold: ``protocol=view2``: the test fold, 0-based (``people.txt`` has 10).
        center_crop: keep the centre square of this side before resizing (None: the whole
            image; LFW images are 250 × 250 with the face in the middle).
        crop, template, align_size, detector: face crops, ``none`` or ``detect`` (see
            :class:`~affectlab.data.sources.on_disk.FaceCrops`).
    """

    PROTOCOLS = PROTOCOLS
    LAYOUT = LAYOUT
    INDEX_VERSION = 1

    def __init__(self, *, name: str = "lfw", root: str, image_size: int = 112,
                 on_error: str = "known_gaps", cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None,
                 protocol: str = "identities", images: str = "lfw", seed: int = 0,
                 train_fraction: float = 0.7, val_fraction: float = 0.1, fold: int = 0,
                 pool_images: int | None = None, center_crop: int | None = None,
                 crop: str = "none", template: str = "arcface_112",
                 align_size: int | None = None, detector: MTCNN | None = None) -> None:
        super().__init__(name=name, root=root, image_size=image_size, on_error=on_error,
                         cache_dir=cache_dir, mean=mean, std=std, protocol=protocol, seed=seed,
                         train_fraction=train_fraction, val_fraction=val_fraction,
                         pool_images=pool_images)
        if images not in IMAGE_FOLDERS:
            raise ValueError(f"dataset.images={images!r}: use one of {list(IMAGE_FOLDERS)}")
        if fold < 0:
            raise ValueError(f"dataset.fold={fold}: must be ≥ 0")
        self.configure_crop(crop, ("none", "detect"), template=template, align_size=align_size,
                            detector=detector)
        if center_crop is not None and crop != "none":
            raise ValueError("dataset.center_crop and dataset.crop=detect exclude each other: "
                             "the detector finds the face in the whole image")
        if center_crop is not None and center_crop < 1:
            raise ValueError(f"dataset.center_crop={center_crop}: must be ≥ 1 (or null)")
        self.images = images
        self.fold = fold
        self.center_crop = center_crop
        self.given_root = self.root
        self.root = self._resolve_root()

    # ---------------------------------------------------------------- layout
    def _resolve_root(self) -> Path:
        """The folder holding ``<images>/``: ``root``, its ``lfw-py/`` (torchvision), or the
        parent when ``root`` is the image folder itself."""
        given = self.given_root
        for candidate in (given, given / TORCHVISION_FOLDER):
            if (candidate / self.images).is_dir():
                return candidate
        if given.name == self.images and given.is_dir():
            return given.parent
        return given

    def check_root(self) -> None:
        self.root = self._resolve_root()
        check_folder(self.given_root, "dataset.root", f"your copy of {self.name}", LAYOUT)
        if not (self.root / self.images).is_dir():
            present = [f for f in IMAGE_FOLDERS
                       if (self.root / f).is_dir() or self.given_root.name == f]
            hint = (f"; image folders present: {present} (set dataset.images)" if present
                    else "")
            raise DataError(f"LFW image folder {self.root / self.images} is missing "
                            f"(dataset.root={self.given_root}, dataset.images={self.images})"
                            f"{hint}. Expected layout:\n{LAYOUT}")

    def list_file(self, name: str) -> Path | None:
        """A list file next to the image folder (or inside it), None when absent."""
        for folder in (self.root, self.root / self.images):
            if (folder / name).is_file():
                return folder / name
        return None

    def annotation_files(self) -> list[Path]:
        # the person folders' mtimes change when images are added or removed; lfw-names.txt is
        # read by read_index (the protocol lists are read by split, never cached)
        folder = self.root / self.images
        files = [folder] + [Path(e.path) for e in os.scandir(folder) if e.is_dir()]
        names = self.list_file(NAMES_FILE)
        return files + ([names] if names is not None else [])

    def index_options(self) -> dict[str, Any]:
        return {"images": self.images}   # another variant: other image paths

    def image_dataset(self, table: LabelTable, image_size: int | None) -> FaceImageDataset:
        if self.center_crop is None:
            return super().image_dataset(table, image_size)
        return CenterCropped(table, image_size=image_size, crop=self.center_crop)

    # ---------------------------------------------------------------- index
    def read_index(self, problems: Problems) -> DatasetIndex:
        """Every ``<images>/<Person>/<Person>_NNNN.jpg`` on disk, identity = the folder name."""
        folder = self.root / self.images
        paths: list[str] = []
        people: list[str] = []
        on_disk: dict[str, int] = {}
        for person_dir in sorted((e for e in os.scandir(folder) if e.is_dir()),
                                 key=lambda e: e.name):
            person = person_dir.name
            for entry in sorted(os.scandir(person_dir.path), key=lambda e: e.name):
                # hidden files (.DS_Store) and non-JPEG files are not images of the release
                if entry.name.startswith(".") or not entry.name.lower().endswith(".jpg"):
                    continue
                match = IMAGE_NAME.match(entry.name)
                if match is None or match["person"] != person:
                    problems.report(f"{entry.path}: not named {person}_NNNN.jpg, as LFW names "
                                    f"the images of {person}/")
                    continue
                paths.append(f"{self.images}/{person}/{entry.name}")
                people.append(person)
                on_disk[person] = on_disk.get(person, 0) + 1
        names_file = self.list_file(NAMES_FILE)
        if names_file is not None:
            self._check_names(names_file, set(paths), problems)
        return identity_index(self.root, paths, people)

    def _check_names(self, path: Path, indexed: set[str], problems: Problems) -> None:
        """``lfw-names.txt`` (``name count`` per line, no header): every listed image on disk."""
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 2 or not tokens[1].isdigit():
                problems.report(f"{path}, line {number}: expected 'name<TAB>number of images', "
                                f"got {line.strip()!r}")
                continue
            person, count = tokens[0], int(tokens[1])
            missing = [image_id(self.images, person, k) for k in range(1, count + 1)
                       if image_id(self.images, person, k) not in indexed]
            if missing:
                problems.report(f"{path}, line {number}: {person} has {count} image(s) listed, "
                                f"{len(missing)} of them missing, e.g. {self.root / missing[0]}")

    # ---------------------------------------------------------------- protocol
    def _people_file(self, name: str) -> Path:
        path = self.list_file(name)
        if path is None:
            raise DataError(f"dataset.protocol={self.protocol} needs {name} in {self.root} (the "
                            f"LFW site's list files, also what torchvision downloads into "
                            f"lfw-py/). Expected layout:\n{LAYOUT}")
        return path

    def _listed_ids(self, path: Path, people: list[tuple[str, int, int]],
                    indexed: set[str]) -> dict[str, list[str]]:
        """Listed people → their listed sample ids on disk; a missing one is reported."""
        out: dict[str, list[str]] = {}
        for person, count, number in people:
            ids = [image_id(self.images, person, k) for k in range(1, count + 1)]
            present = [i for i in ids if i in indexed]
            if len(present) < len(ids):
                missing = next(i for i in ids if i not in indexed)
                self.problems.report(f"{path}, line {number}: {person} is listed with {count} "
                                     f"image(s); {len(ids) - len(present)} of them are missing, "
                                     f"e.g. {self.root / missing}")
            if present:
                out.setdefault(person, []).extend(present)
        return out

    def _with_val(self, train: dict[str, list[str]], test: dict[str, list[str]],
                  protocol: str) -> tuple[str, dict[str, list[str]]]:
        """A seeded ``val_fraction`` of the train people held out as val."""
        groups = subject_split(list(train), {"val": self.val_fraction,
                                             "train": 1.0 - self.val_fraction}, seed=self.seed)
        # sets: a person listed twice (a malformed list) must not duplicate its images
        ids = {"train": sorted({i for p in groups["train"] for i in train[p]}),
               "val": sorted({i for p in groups["val"] for i in train[p]}),
               "test": sorted({i for ids in test.values() for i in ids})}
        return f"{protocol}/seed{self.seed}", ids

    def protocol_ids(self, index: DatasetIndex) -> tuple[str, dict[str, list[str]]]:
        if self.protocol == "identities":
            return super().protocol_ids(index)
        indexed = set(index.sample_ids)
        if self.protocol == "view1":
            lists = []
            for name in (DEV_TRAIN_FILE, DEV_TEST_FILE):
                path = self._people_file(name)
                lists.append(self._listed_ids(path, read_people(path, self.problems,
                                                                folds=False)[0], indexed))
            return self._with_val(lists[0], lists[1], f"{self.name}/view1")
        path = self._people_file(PEOPLE_FILE)
        folds = read_people(path, self.problems, folds=True)
        if self.fold >= len(folds):
            raise DataError(f"dataset.fold={self.fold}, but {path} has {len(folds)} folds "
                            f"(0..{len(folds) - 1}).")
        train: dict[str, list[str]] = {}
        for k, fold in enumerate(folds):
            if k != self.fold:
                for person, ids in self._listed_ids(path, fold, indexed).items():
                    train.setdefault(person, []).extend(ids)
        test = self._listed_ids(path, folds[self.fold], indexed)
        return self._with_val(train, test, f"{self.name}/view2/fold{self.fold}")


__all__ = ["CenterCropped", "IMAGE_FOLDERS", "LAYOUT", "LFW", "PROTOCOLS", "image_id",
           "read_people"]
