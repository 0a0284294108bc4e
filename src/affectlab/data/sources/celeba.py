"""CelebA (Liu et al., ICCV 2015): 202,599 faces of 10,177 identities with 40 binary attributes.

``dataset=celeba``. The loader reads the official release in torchvision's layout (:data:`LAYOUT`)
and exposes the 40 attributes as the ``attr`` task (``method.tasks=[attr]``); CelebA codes no
AUs, so the ``au`` columns have zero width.

Files (all space-delimited; ``split()`` on whitespace, never on one space, because values are
padded with several spaces; ``\\r\\n`` line ends are accepted):

==================================  ============================================================
``list_attr_celeba.txt``            line 1 the image count, line 2 the 40 attribute names (no
                                    ``image_id``), then ``000001.jpg -1  1 -1 …`` (40 values in
                                    {1, −1}; 1 → present, −1 → absent)
``list_eval_partition.txt``         ``000001.jpg 0``: 0 train, 1 val, 2 test (no header)
``identity_CelebA.txt``             ``000001.jpg 2880``: identity 1..10,177 (no header); optional,
                                    the subjects of the leakage checks (else subject −1)
``list_landmarks_align_celeba.txt`` count, 10 names, ``000001.jpg 69 109 106 113 …``: five
                                    points (eyes, nose, mouth corners) in the aligned images
``list_landmarks_celeba.txt``       the same in the in-the-wild images (``img_celeba``)
``list_bbox_celeba.txt``            count, ``image_id x_1 y_1 width height``, rows; coordinates
                                    of the in-the-wild images, *not* of ``img_align_celeba``
==================================  ============================================================

Protocols (``dataset.protocol``):

- ``official``: the partition file's 0 / 1 / 2 as train / val / test (162,770 / 19,867 /
  19,962 images, identity-disjoint by construction of the release).
- ``semi_supervised``: the MLCR extension to facial attributes (Niu et al. 2019, poster section
  "Extension to Facial Attributes Analysis"; the numbers come from the reproduction, Chi et al.
  2021 §4: "we randomly select 30,000 labeled images and 100,000 unlabeled images as a training
  set, and 10,000 labeled images … as a test set"). Neither paper says which images the random
  draw may take, whether it respects the official partition or identities, or what the
  validation set is. This module draws, with ``dataset.seed``:

  * labelled train (``num_labeled``) and the unlabelled pool (``num_unlabeled``) from the
    official training partition 0. ``unlabeled_identities=shared`` (default) draws images
    uniformly, the literal reading of "randomly select", so the two share identities (both are
    training data; the base's leakage check allows that); ``disjoint`` draws whole identities
    for each, so no identity is both labelled and unlabelled;
  * test (``num_test``) uniformly from the official test partition 2;
  * val from the official validation partition 1: all of it, or ``num_val`` images.

  Using the partitions keeps val and test identity-disjoint from everything trained on, which a
  draw from all 202,599 images would not.

Sample ids (and image paths) are the image path relative to the ``celeba/`` folder, e.g.
``img_align_celeba/000001.jpg``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from affectlab.data.contract import DataError, FaceData, FaceImageDataset, LabelTable, empty_labels
from affectlab.data.faces.alignment import TEMPLATES
from affectlab.data.sources.on_disk import DatasetIndex, OnDiskDataset, Problems, SplitManifest

log = logging.getLogger(__name__)

# The 40 attributes in the file's column order (never sort them: the order is the label order).
ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
LANDMARK_NAMES: tuple[str, ...] = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y",
                                   "nose_x", "nose_y", "leftmouth_x", "leftmouth_y",
                                   "rightmouth_x", "rightmouth_y")
BBOX_NAMES: tuple[str, ...] = ("x_1", "y_1", "width", "height")

FOLDER = "celeba"   # torchvision's base_folder
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
LANDMARKS_ALIGN_FILE = "list_landmarks_align_celeba.txt"
LANDMARKS_WILD_FILE = "list_landmarks_celeba.txt"
BBOX_FILE = "list_bbox_celeba.txt"

# Image folders of the release → file extension on disk. The annotation files always name
# ``NNNNNN.jpg``; the PNG variant has the same stems with ``.png``.
IMAGE_FOLDERS: dict[str, str] = {"img_align_celeba": ".jpg", "img_align_celeba_png": ".png",
                                 "img_celeba": ".jpg"}
WILD_FOLDER = "img_celeba"
PROTOCOLS = ("official", "semi_supervised")
PARTITION_NAMES = {0: "train", 1: "val", 2: "test"}
CROPS = ("none", "center", "bbox", "align")
UNLABELED_IDENTITIES = ("shared", "disjoint")
ALIGNED_SIZE = (178, 218)   # width, height of the released aligned crops

LAYOUT = f"""\
<dataset.root>/          (the celeba/ folder itself, or the folder that holds it)
└── celeba/
    ├── img_align_celeba/000001.jpg … 202599.jpg   aligned 178×218 crops (dataset.images)
    ├── img_celeba/000001.jpg …                    in-the-wild originals, optional
    ├── {ATTR_FILE:<32}  count line, 40 names, '000001.jpg -1  1 -1 …'
    ├── {PARTITION_FILE:<32}  '000001.jpg 0' (0 train, 1 val, 2 test)
    ├── {IDENTITY_FILE:<32}  '000001.jpg 2880', optional (subjects)
    ├── {LANDMARKS_ALIGN_FILE:<32}  five points, for dataset.crop=align
    ├── {LANDMARKS_WILD_FILE:<32}  five points in img_celeba, for dataset.crop=align
    └── {BBOX_FILE:<32}  img_celeba boxes, for dataset.crop=bbox"""


# ============================================================================ parsing helpers
def _lines(path: Path) -> list[str]:
    """The file's lines without line ends (``\\n`` or ``\\r\\n``)."""
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _count_and_header(path: Path, lines: list[str], expected: Sequence[str],
                      what: str) -> tuple[int, list[str]]:
    """Check the count line (line 1) and the header (line 2) of a CelebA table file.

    Returns the declared count and the header names (a leading ``image_id`` removed: the bbox
    file has it, the others do not). A wrong count *line* or header is a file-level error (the
    file is not a CelebA table at all), not a skippable row problem.
    """
    if len(lines) < 2:
        raise DataError(f"{path} has {len(lines)} line(s): expected a count line, a header line "
                        f"of {what} and one line per image.")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path.name}, line 1: expected the image count (e.g. 202599), found "
                        f"{lines[0].strip()[:60]!r}. Is {path} the original text release?"
                        ) from None
    header = lines[1].split()   # strip() included: some copies end the header with a space
    if header[:1] == ["image_id"]:
        header = header[1:]
    if sorted(header) != sorted(expected):
        unknown = [h for h in header if h not in expected]
        missing = [e for e in expected if e not in header]
        raise DataError(f"{path.name}, line 2: expected the header {what} ({len(expected)} "
                        f"names), found {len(header)} names; unknown {unknown[:5]}, missing "
                        f"{missing[:5]}.")
    return declared, header


def _data_lines(lines: list[str], first: int) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) of the non-blank lines from index ``first`` on."""
    out = []
    for i in range(first, len(lines)):
        fields = lines[i].split()
        if fields:
            out.append((i + 1, fields))
    return out


def read_attributes(path: Path, problems: Problems) -> tuple[dict[str, np.ndarray], set[str]]:
    """Parse ``list_attr_celeba.txt``.

    Returns ``({image name: (40,) uint8 in {0, 1}, in ATTRIBUTES order}, names seen)``, where
    names seen also holds the images of rows that were reported as bad (so that the
    cross-file check does not report them a second time). Rows are 1 / −1; anything else, a
    wrong field count, a duplicate name, and a count line that disagrees with the number of rows
    are reported to ``problems`` with the file name and line number.
    """
    lines = _lines(path)
    declared, header = _count_and_header(path, lines, ATTRIBUTES, "of the 40 attribute names")
    order = [header.index(a) for a in ATTRIBUTES]   # file columns → canonical order
    rows = _data_lines(lines, 2)
    if declared != len(rows):
        problems.report(f"{path.name}, line 1: the count line says {declared} images but the "
                        f"file lists {len(rows)}")
    values: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    for number, fields in rows:
        name = fields[0]
        seen.add(name)
        if len(fields) != len(ATTRIBUTES) + 1:
            problems.report(f"{path.name}, line {number}: expected an image name and "
                            f"{len(ATTRIBUTES)} values, found {len(fields)} fields")
            continue
        raw = fields[1:]
        bad = [(header[i], v) for i, v in enumerate(raw) if v not in ("1", "-1")]
        if bad:
            attribute, value = bad[0]
            problems.report(f"{path.name}, line {number}: {name}: {attribute}={value!r}, "
                            "expected 1 (present) or -1 (absent)")
            continue
        if name in values:
            problems.report(f"{path.name}, line {number}: {name} is listed a second time")
            continue
        present = np.array([v == "1" for v in raw], dtype=np.uint8)
        values[name] = present[order]
    return values, seen


def read_name_table(path: Path, problems: Problems, allowed: Sequence[int] | None = None,
                    ) -> tuple[dict[str, int], set[str]]:
    """Parse a header-less ``<image> <integer>`` file (partition or identity).

    Returns ``({image name: value}, names seen)``; ``allowed`` restricts the values (the
    partition file's 0 / 1 / 2). Bad lines are reported with file name and line number.
    """
    lines = _lines(path)
    out: dict[str, int] = {}
    seen: set[str] = set()
    expected = ("0|1|2" if allowed is not None else "integer")
    for number, fields in _data_lines(lines, 0):
        seen.add(fields[0])
        value: int | None = None
        if len(fields) == 2:
            try:
                value = int(fields[1])
            except ValueError:
                value = None
        if value is None or (allowed is not None and value not in allowed) or value < 0:
            problems.report(f"{path.name}, line {number}: expected '<image> <{expected}>', "
                            f"found {' '.join(fields)[:80]!r}")
            continue
        if fields[0] in out:
            problems.report(f"{path.name}, line {number}: {fields[0]} is listed a second time")
            continue
        out[fields[0]] = value
    return out, seen


def read_geometry(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Parse a landmark or bbox file (count line, header, ``<image> v1 v2 …``).

    Returns {image name: float64 (len(names),)}. Used only when ``dataset.crop`` needs it;
    a bad line is a :class:`DataError` (file and line), since the image cannot be cropped.
    """
    lines = _lines(path)
    _count_and_header(path, lines, names, " ".join(names))
    out: dict[str, np.ndarray] = {}
    for number, fields in _data_lines(lines, 2):
        try:
            if len(fields) != len(names) + 1:
                raise ValueError
            out[fields[0]] = np.array([float(v) for v in fields[1:]], dtype=np.float64)
        except ValueError:
            raise DataError(f"{path.name}, line {number}: expected an image name and "
                            f"{len(names)} numbers, found {' '.join(fields)[:80]!r}") from None
    return out


# ============================================================================ image loading
class CelebAImages(FaceImageDataset):
    """:class:`FaceImageDataset` with CelebA's crops applied before the resize.

    Args:
        table: the split's labels.
        image_size: output side (square).
        crop: ``center`` (largest centred square: 178×178 of the 178×218 aligned crops, the
            usual attribute-recognition recipe) or ``bbox`` (square of side max(w, h) centred
            on the in-the-wild box; outside the image is black). ``align`` is the shared
            five-point alignment (:class:`~affectlab.data.sources.on_disk.FaceCrops`).
        geometry: {image file name ``NNNNNN.jpg``: (4,) box}; for bbox.
    """

    def __init__(self, table: LabelTable, *, image_size: int, crop: str,
                 geometry: dict[str, np.ndarray] | None = None) -> None:
        super().__init__(table, image_size=image_size)
        self.crop = crop
        self.geometry = geometry or {}

    def _geometry(self, row: int) -> np.ndarray:
        # the annotation files always name the .jpg, also for the PNG folder
        return self.geometry[Path(self.table.image_paths[row]).stem + ".jpg"]

    def transform(self, img: Image.Image, row: int) -> Image.Image:
        """Crop one RGB image and bring it to ``image_size`` × ``image_size``."""
        size = self.image_size
        if self.crop == "center":
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side))
        elif self.crop == "bbox":
            x, y, w, h = self._geometry(row)
            side = max(w, h)
            left, top = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
            img = img.crop((left, top, left + round(side), top + round(side)))
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return img


# ============================================================================ the dataset
class CelebA(OnDiskDataset):
    """CelebA's 40 attributes, official or MLCR semi-supervised protocol (see module docstring).

    Args:
        name: the dataset's name in run directories and ``metrics.json``.
        root: the ``celeba/`` folder or its parent (torchvision's ``root``).
        image_size: side of the square images fed to the network.
        on_error: ``known_gaps`` (default) or ``raise`` stop at bad rows and missing or
            damaged images, ``skip`` leaves them out and counts them (CelebA declares no known
            gaps).
        cache_dir: where the parsed index is cached.
        mean, std: per-channel normalisation (default ImageNet's).
        protocol: ``official`` or ``semi_supervised``.
        images: image folder: ``img_align_celeba`` (aligned 178×218 JPEGs),
            ``img_align_celeba_png`` or ``img_celeba`` (in-the-wild originals).
        crop: ``none`` (resize the whole image, squashing 178×218), ``center``, ``bbox``
            (``img_celeba`` only) or ``align`` (see :class:`CelebAImages`).
        template: alignment template for ``crop=align``.
        num_labeled, num_unlabeled, num_test: semi-supervised subset sizes (paper: 30,000 /
            100,000 / 10,000); ignored by ``official``.
        num_val: semi-supervised validation size drawn from partition 1 (None: all of it).
        seed: seed of the semi-supervised draw (independent of the training seed).
        unlabeled_identities: ``shared`` (labelled and unlabelled images drawn uniformly from
            partition 0) or ``disjoint`` (drawn as whole identities, none in both).
    """

    CODED_AUS: tuple[int, ...] = ()   # attributes only; the au columns have zero width
    LAYOUT = LAYOUT
    INDEX_VERSION = 1

    def __init__(self, *, name: str = "celeba", root: str, image_size: int = 112,
                 on_error: str = "known_gaps", cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None,
                 protocol: str = "official", images: str = "img_align_celeba",
                 crop: str = "center", template: str = "arcface_112",
                 num_labeled: int = 30000, num_unlabeled: int = 100000,
                 num_val: int | None = None, num_test: int = 10000, seed: int = 0,
                 unlabeled_identities: str = "shared") -> None:
        super().__init__(name=name, root=root, aus=None, image_size=image_size,
                         on_error=on_error, cache_dir=cache_dir, mean=mean, std=std)
        if protocol not in PROTOCOLS:
            raise ValueError(f"dataset.protocol={protocol!r}: use one of {list(PROTOCOLS)}")
        if images not in IMAGE_FOLDERS:
            raise ValueError(f"dataset.images={images!r}: use one of {list(IMAGE_FOLDERS)}")
        if crop not in CROPS:
            raise ValueError(f"dataset.crop={crop!r}: use one of {list(CROPS)}")
        if crop == "bbox" and images != WILD_FOLDER:
            raise ValueError(f"dataset.crop=bbox needs dataset.images={WILD_FOLDER}: the boxes of "
                             f"{BBOX_FILE} are in the in-the-wild images, not in {images}")
        if crop == "align" and template not in TEMPLATES:
            raise ValueError(f"dataset.template={template!r}: use one of {sorted(TEMPLATES)}")
        if crop == "align":   # by the five landmarks of the list files (landmark_points)
            self.configure_crop(crop, ("align",), template=template, align_size=None,
                                detector=None)
        if image_size < 1:
            raise ValueError(f"dataset.image_size={image_size}: must be positive")
        for key, value, least in (("seed", seed, 0), ("num_labeled", num_labeled, 1),
                                  ("num_unlabeled", num_unlabeled, 0),
                                  ("num_test", num_test, 1),
                                  ("num_val", 1 if num_val is None else num_val, 1)):
            if value < least:
                raise ValueError(f"dataset.{key}={value}: must be at least {least}")
        if unlabeled_identities not in UNLABELED_IDENTITIES:
            raise ValueError(f"dataset.unlabeled_identities={unlabeled_identities!r}: use one "
                             f"of {list(UNLABELED_IDENTITIES)}")
        if crop == "center" and images == WILD_FOLDER:
            log.warning("dataset.crop=center on the in-the-wild %s images keeps the middle of "
                        "the photo, not the face; use dataset.crop=align or bbox", WILD_FOLDER)
        self.given_root = self.root
        self.protocol = protocol
        self.images = images
        self.crop = crop
        self.template = template
        self.num_labeled = num_labeled
        self.num_unlabeled = num_unlabeled
        self.num_val = num_val
        self.num_test = num_test
        self.seed = seed
        self.unlabeled_identities = unlabeled_identities
        self.root = self._resolve_root()

    # ---------------------------------------------------------------- layout
    def _resolve_root(self) -> Path:
        """``dataset.root`` itself when it holds the label files, else its ``celeba/``."""
        given = self.given_root
        if not (given / ATTR_FILE).exists() and (given / FOLDER).is_dir():
            return given / FOLDER
        return given

    def _geometry_file(self) -> str | None:
        if self.crop == "bbox":
            return BBOX_FILE
        if self.crop == "align":
            return LANDMARKS_WILD_FILE if self.images == WILD_FOLDER else LANDMARKS_ALIGN_FILE
        return None

    def check_root(self) -> None:
        """The root exists, holds the required label files and the chosen image folder."""
        self.root = self._resolve_root()
        super().check_root()
        required = [ATTR_FILE, PARTITION_FILE]
        if self._geometry_file():
            required.append(self._geometry_file())
        for file in required:
            if not (self.root / file).is_file():
                raise DataError(f"annotation file {file} is missing from {self.root} "
                                f"(dataset.root={self.given_root}). Expected layout:\n{LAYOUT}")
        if not (self.root / self.images).is_dir():
            present = [f for f in IMAGE_FOLDERS if (self.root / f).is_dir()]
            raise DataError(f"image folder {self.root / self.images} is missing "
                            f"(dataset.images={self.images}); image folders present: {present}. "
                            f"Unzip the images there or choose another dataset.images. "
                            f"Expected layout:\n{LAYOUT}")

    def annotation_files(self) -> list[Path]:
        files = [self.root / ATTR_FILE, self.root / PARTITION_FILE]
        if (self.root / IDENTITY_FILE).is_file():
            files.append(self.root / IDENTITY_FILE)
        return files

    def index_options(self) -> dict[str, object]:
        # the image folder changes the indexed image paths
        return {"images": self.images}

    def label_names(self) -> dict[str, list[str]]:
        return {"attr": list(ATTRIBUTES)}

    # ---------------------------------------------------------------- index
    def read_index(self, problems: Problems) -> DatasetIndex:
        """Attributes, partitions and identities → one row per image listed consistently.

        An image in the attribute file but not the partition file (or the reverse), or missing
        from a present identity file, is reported and left out.
        """
        attrs, attr_seen = read_attributes(self.root / ATTR_FILE, problems)
        partitions, partition_seen = read_name_table(self.root / PARTITION_FILE, problems,
                                                     allowed=(0, 1, 2))
        identity_path = self.root / IDENTITY_FILE
        identities: dict[str, int] | None = None
        if identity_path.is_file():
            identities, identity_seen = read_name_table(identity_path, problems)
        else:
            identity_seen = set()
            log.warning("%s: %s is absent: subjects are unknown (-1), so splits cannot be "
                        "checked for identity leakage", self.name, IDENTITY_FILE)
        names = []
        for image in attrs:   # file order
            if image not in partition_seen:
                problems.report(f"{image} is listed in {ATTR_FILE} but not in {PARTITION_FILE}")
            elif image not in partitions:
                continue   # its partition line was bad and already reported
            elif identities is not None and image not in identities:
                if image not in identity_seen:
                    problems.report(f"{image} is listed in {ATTR_FILE} but not in "
                                    f"{IDENTITY_FILE}")
            else:
                names.append(image)
        for image in partitions:
            if image not in attr_seen:
                problems.report(f"{image} is listed in {PARTITION_FILE} but not in {ATTR_FILE}")

        labels = empty_labels(len(names), num_attrs=len(ATTRIBUTES))
        if names:
            labels["attr"][:] = np.stack([attrs[n] for n in names]).astype(np.float32)
        labels["attr_mask"][:] = True
        subject_names: list[str] = []
        if identities is not None:
            ids = sorted({identities[n] for n in names})
            subject_names = [str(i) for i in ids]
            position = {identity: k for k, identity in enumerate(ids)}
            labels["subject"][:] = [position[identities[n]] for n in names]
        paths = [self.image_path(n) for n in names]
        table = LabelTable(root=self.root, image_paths=paths, **labels)
        return DatasetIndex(table, sample_ids=list(paths), subject_names=subject_names, aus=[])

    def image_path(self, image: str) -> str:
        """``000001.jpg`` (as the annotation files name it) → ``<images>/000001.<ext>``."""
        return f"{self.images}/{Path(image).stem}{IMAGE_FOLDERS[self.images]}"

    # ---------------------------------------------------------------- split
    def _partitions(self, index: DatasetIndex) -> np.ndarray:
        """(N,) official partition of every index row.

        :class:`DatasetIndex` has no column for it, so the partition file is read again (its
        problems were reported when the index was built; the cache key covers the file).
        """
        partitions, _ = read_name_table(self.root / PARTITION_FILE, Problems("skip"),
                                        allowed=(0, 1, 2))
        return np.array([partitions.get(Path(p).stem + ".jpg", -1)
                         for p in index.table.image_paths], dtype=np.int64)

    def split(self, index: DatasetIndex) -> SplitManifest:
        """The protocol's splits as sorted sample ids (``unlabeled`` for semi_supervised)."""
        partition = self._partitions(index)
        ids = np.array(index.sample_ids, dtype=object)
        rows = {p: np.flatnonzero(partition == p) for p in PARTITION_NAMES}
        protocol = f"celeba/{self.protocol}"
        if self.protocol == "official":
            return SplitManifest(protocol, {PARTITION_NAMES[p]: sorted(ids[r])
                                            for p, r in rows.items()})

        # one generator per split, so changing one size does not change another split's draw
        def rng(k: int) -> np.random.Generator:
            return np.random.default_rng([self.seed, k])

        train_rows = rows[0]
        wanted = self.num_labeled + self.num_unlabeled
        if wanted > len(train_rows):
            raise DataError(
                f"dataset.protocol=semi_supervised asks for dataset.num_labeled="
                f"{self.num_labeled} + dataset.num_unlabeled={self.num_unlabeled} = {wanted} "
                f"images from the official training partition (0), which holds "
                f"{len(train_rows)} images in {self.root}. Lower the sizes.")
        if self.unlabeled_identities == "shared":
            order = train_rows[np.argsort(ids[train_rows])]   # independent of file order
            order = order[rng(0).permutation(len(order))]
            labeled, unlabeled = order[:self.num_labeled], order[self.num_labeled:wanted]
        else:
            labeled, unlabeled = self._draw_identities(index, train_rows, rng(0))
        out = {"train": sorted(ids[labeled]), "unlabeled": sorted(ids[unlabeled])}
        for name, part, size, k in (("val", 1, self.num_val, 1), ("test", 2, self.num_test, 2)):
            available = rows[part]
            if size is None:
                out[name] = sorted(ids[available])
                continue
            if size > len(available):
                raise DataError(f"dataset.num_{name}={size} asks for more images than the "
                                f"official {name} partition ({part}) holds: {len(available)} "
                                f"in {self.root}. Lower dataset.num_{name}.")
            candidates = sorted(ids[available])
            chosen = rng(k).choice(len(candidates), size=size, replace=False)
            out[name] = sorted(candidates[i] for i in chosen)
        return SplitManifest(protocol, out)

    def _draw_identities(self, index: DatasetIndex, rows: np.ndarray,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Labelled and unlabelled rows as whole identities of ``rows`` (shuffled with ``rng``).

        Identities fill the labelled set, then the pool; the identity that overshoots a size is
        cut and its remaining images are dropped (they go to neither side). Images without an
        identity (no identity file) count as identities of one image.
        """
        subject = index.table.subject[rows]
        key = np.where(subject >= 0, subject, -1 - rows)
        # groups and their images in sample-id order, so the draw ignores the file order
        groups: dict[int, list[int]] = {}
        for r, k in sorted(zip(rows.tolist(), key.tolist()),
                           key=lambda rk: index.sample_ids[rk[0]]):
            groups.setdefault(k, []).append(r)
        keys = sorted(groups)
        taken: list[list[int]] = [[], []]
        sizes = (self.num_labeled, self.num_unlabeled)
        side = 0
        for k in (keys[i] for i in rng.permutation(len(keys))):
            while side < 2 and len(taken[side]) >= sizes[side]:
                side += 1
            if side == 2:
                break
            taken[side].extend(groups[k][:sizes[side] - len(taken[side])])
        if len(taken[0]) < sizes[0] or len(taken[1]) < sizes[1]:
            raise DataError(
                f"dataset.unlabeled_identities=disjoint: the {len(rows)} images of the official "
                f"training partition cannot give dataset.num_labeled={sizes[0]} and "
                f"dataset.num_unlabeled={sizes[1]} images from disjoint identities (the "
                f"identity cut at each size loses its remaining images; got {len(taken[0])} + "
                f"{len(taken[1])}). Lower the sizes or use unlabeled_identities=shared.")
        return np.array(taken[0], dtype=np.int64), np.array(taken[1], dtype=np.int64)

    # ---------------------------------------------------------------- build
    def landmark_points(self, table: LabelTable) -> np.ndarray:
        """``crop=align``: the five points of each image from the landmark list file."""
        path = self.root / self._geometry_file()
        geometry = read_geometry(path, LANDMARK_NAMES)
        # the annotation files always name the .jpg, also for the PNG folder
        names = [Path(p).stem + ".jpg" for p in table.image_paths]
        missing = [name for name in names if name not in geometry]
        if missing and not self.problems.skips:
            raise DataError(f"{path.name} has no line for {len(missing)} image(s) of the "
                            f"splits, e.g. {missing[0]}; dataset.crop=align needs one for every "
                            "image (or dataset.on_error=skip leaves them out).")
        points = np.full((len(table), 5, 2), np.nan)
        for row, name in enumerate(names):
            if name in geometry:
                points[row] = geometry[name].reshape(5, 2)
            else:
                self.problems.report(f"{path.name} has no line for {name}; dataset.crop=align "
                                     "needs one for every image")
        return points

    def _cropped(self, splits: list[FaceImageDataset | None],
                 image_size: int) -> list[FaceImageDataset | None]:
        """``splits`` read through :class:`CelebAImages` at ``image_size`` (unchanged for
        ``crop=none``, and for ``align``, which the base's reading already applied)."""
        if self.crop in ("none", "align"):
            return splits
        geometry = None
        if self._geometry_file():
            path = self.root / self._geometry_file()
            geometry = read_geometry(path, BBOX_NAMES)
            missing = [name for split in splits if split is not None
                       for name in (Path(p).stem + ".jpg" for p in split.table.image_paths)
                       if name not in geometry]
            if missing:
                raise DataError(f"{path.name} has no line for {len(missing)} image(s) of the "
                                f"splits, e.g. {missing[0]}; dataset.crop={self.crop} needs one "
                                "for every image.")
        return [None if split is None else
                CelebAImages(split.table, image_size=image_size, crop=self.crop,
                             geometry=geometry) for split in splits]

    def build(self) -> FaceData:
        """The base's build, with the images read through :class:`CelebAImages` when cropping."""
        data = super().build()
        data.train, data.val, data.test, data.unlabeled = self._cropped(
            [data.train, data.val, data.test, data.unlabeled], self.image_size)
        return data

    def pool(self, image_size: int | None) -> FaceImageDataset:
        """The base's pool (labels hidden), cropped like the splits."""
        # a crop always resizes, so a pool asked for at its own size gets dataset.image_size
        return self._cropped([super().pool(image_size)],
                             image_size if image_size is not None else self.image_size)[0]


__all__ = ["ATTRIBUTES", "CelebA", "CelebAImages", "LAYOUT", "read_attributes", "read_geometry",
           "read_name_table"]
