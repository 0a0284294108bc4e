"""EmotioNet (Benitez-Quiroz et al., 2016), read from its two annotation products and the images
you downloaded from their URLs.

EmotioNet distributes URLs, not images. Layout (``dataset.root``)::

    images/N_0000000001_00002.jpg …          the images you downloaded; file name = the last path
                                             component of the URL (``image_naming=basename``), or
                                             images/<host>/<path> as ``wget -x`` saves them
                                             (``image_naming=url_path``); ``image_dir`` renames
                                             the folder
    EmotioNet_FACS_aws_2020_24600.csv        the manually annotated set (~24,600 rows); also read:
                                             EmotioNet_FACS_aws_2020_24600.xlsx, EmotioNet_FACS.csv,
                                             EmotioNet_FACS_aws_without_passw.xlsx (first found;
                                             ``manual_file`` names another)
    dataFile_1001.txt …                      the automatically annotated set (~950,000 rows over
                                             many files), in the root or one folder deeper as
                                             unpacked (emotioNet_challenge_files*/dataFile_*.txt);
                                             ``automatic_files`` is a glob for elsewhere

File formats (see ``shared/reference/datasets.md`` §4, beside the repository):

- Automatic files: tab-separated, no header, 62 fields per row: ``URL``, ``original URL``, then
  AU1 … AU60 by position (0-based field 1 + i holds AU i).
- Manual file: comma-separated with a header ``URL,URL orig,'AU 1','AU 2',…``: the AU headers
  carry single quotes and a space, URL cells stray quotes (``'http://…jpg'``, or a trailing
  ``'`` only). Headers and URLs are read with quotes and spaces stripped; AU columns are found
  by header name, so their order and set do not matter (the exact set in the 24,600 file is
  unverified). XLSX workbooks are read only if ``openpyxl`` is importable (every sheet with a
  ``URL`` header column); otherwise export the sheet to CSV.
- Values: 1 present, 0 absent, **999 unknown** (not coded / occluded) → mask False. Anything
  else is a problem (``dataset.on_error``). Only the selected AUs' columns are read and checked.

Samples and ids: one sample per (annotation product, image). Sample ids are
``manual:images/N_….jpg`` and ``automatic:images/N_….jpg`` (the image path relative to the root,
prefixed by the product, since the manual images are also in the automatic set). A repeated
image within one product keeps its first row. EmotioNet has no subject ids: every sample has
subject −1, so the framework cannot check that splits are subject-exclusive (nor could the
published protocols: the same person may appear in several images).

Missing images: dead URLs are the common case (MLCR could download 20,722 of the ~24,600 manual
images; datasets.md §4.3: "loaders must skip missing images rather than fail"). A labelled row
whose image is not on disk is a *known gap* of the release
(:meth:`~affectlab.data.sources.on_disk.Problems.known_gap`): the default
``on_error=known_gaps`` and ``skip`` leave it out and count it, ``on_error=raise`` stops with
its file and line. The
automatic set used only as the unlabelled pool is different: one downloads a part of its 950k
images, so its rows without an image are simply not candidates (logged, not counted). Existence
is checked from one listing of the image folder (not one stat per row); ``check_images=False``
skips it (benchmarks, or a download known to be complete); ``build()`` checks every image of the
splits in any case (readable, not truncated), a missing one being a known gap there too.

Protocol ``mlcr`` (Niu et al., NeurIPS 2019, README of the released code and the poster): the
labelled images are the manually annotated ones that could be downloaded; 15,000 of them, drawn
at random, are the labelled training set and *all the others* are the test set; results are
averaged over three random draws (``run`` = 0, 1, 2 seeds them). The unlabelled pool is 50,000
images of the automatically annotated set (``unlabel_num = 50000`` in the released ``main.py``).
The sources leave open, and this module decides:

- how the 50,000 are chosen: at random among the automatic-set images on disk, with the run's
  seed (an independent stream, so ``num_unlabeled`` does not change the labelled split);
- overlap: images of the manual set (test images included) are never in the pool, so that no
  test image is trained on, even without its labels;
- validation: MLCR had none; this framework selects checkpoints on one, so ``num_val`` images
  are carved from the ``num_labeled`` training images (train = ``num_labeled - num_val``);
- order: labelled images are sorted by sample id before the seeded shuffle, so a split depends
  on the set of images, not on the row order of the files.

``annotations=automatic`` (or ``auto`` with no manual file) runs the same protocol on the
automatic labels (protocol name ``emotionet/mlcr-automatic/run<k>``): ``num_labeled`` random images
for train + val, then ``num_unlabeled`` of the remaining ones as the pool, the rest (or
``num_test`` of them) as test. These labels come from an algorithm, not from FACS coders.

Workarounds of the base class (:class:`~affectlab.data.sources.on_disk.OnDiskDataset`):

- The index holds the *selected* AUs only, not all 60 coded ones (950k rows × 60 AUs would make
  a 285 MB cache and parse 5× more columns); ``aus`` is therefore part of the cache key.
- :meth:`EmotioNet.cache_key` is computed here: it adds :meth:`EmotioNet.index_options` (AUs,
  annotation mode, image folder and name mapping, the image folders' modification times, since
  images added or removed change which rows exist) and keys files by absolute path, as the image
  folder may lie outside the root.
- ``build()`` of the base checks every split image (one stat each, cached reads); this
  module's own existence check (while indexing) uses one listing, so that rows of dead URLs
  are out of the index and of the protocol's draws.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from affectlab.data.contract import DataError, LabelTable, empty_labels
from affectlab.data.faces.detection import MTCNN
from affectlab.data.sources.on_disk import (
    INDEX_FORMAT,
    DatasetIndex,
    OnDiskDataset,
    Problems,
    SplitManifest,
)
from affectlab.data.sources.synthetic.story import UNKNOWN

log = logging.getLogger(__name__)

MANUAL_NAMES = ("EmotioNet_FACS_aws_2020_24600.csv", "EmotioNet_FACS_aws_2020_24600.xlsx",
                "EmotioNet_FACS.csv", "EmotioNet_FACS_aws_without_passw.xlsx")
# The root, then the folder the challenge archive unpacks to. A pattern is never "*/…": that
# would list the image folder (950k entries) every time the cache key is computed.
AUTOMATIC_GLOBS = ("dataFile_*.txt", "emotioNet_challenge_files*/dataFile_*.txt")
AUTOMATIC_AU_COLUMNS = 60            # AU1 … AU60, by position
AUTOMATIC_FIELDS = 2 + AUTOMATIC_AU_COLUMNS
CODED_AUS: tuple[int, ...] = tuple(range(1, AUTOMATIC_AU_COLUMNS + 1))
# The 2018 challenge's 12 AUs, which MLCR uses.
MLCR_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43)
# The 2020 challenge's 23 AUs: what the manual file codes at least (the fixture's columns).
CHALLENGE_2020_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 10, 12, 15, 17, 18, 20, 24, 25, 26, 28,
                                       43, 51, 52, 53, 54, 55, 56)
VALUES = {"0": 0, "1": 1, "999": UNKNOWN}
ANNOTATIONS = ("auto", "manual", "automatic")
PROTOCOLS = ("mlcr",)
IMAGE_NAMINGS = ("basename", "url_path")
MANUAL, AUTOMATIC = "manual", "automatic"
AU_HEADER = re.compile(r"^AU(\d+)$", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

LAYOUT = """\
  <root>/images/N_0000000001_00002.jpg ...         downloaded images, named as the URL's last
                                                   path component (dataset.image_dir, image_naming)
  <root>/EmotioNet_FACS_aws_2020_24600.csv         manual annotations (or .xlsx, EmotioNet_FACS.csv,
                                                   EmotioNet_FACS_aws_without_passw.xlsx)
  <root>/dataFile_1001.txt ...                     automatic annotations, tab-separated, no header
                                                   (or emotioNet_challenge_files*/dataFile_*.txt)
  dataset.annotations=auto uses the manual file when present (automatic files: unlabelled pool),
  else the automatic files."""


def strip_quotes(text: str) -> str:
    """``text`` without surrounding whitespace and stray ``'``/``"`` (EmotioNet's URL cells)."""
    return text.strip().strip("'\"").strip()


def image_name(url: str, naming: str = "basename") -> str:
    """The local file name of an image URL, relative to the image folder ("" if none).

    ``basename``: the last path component (``http://host/a/N_1_2.jpg`` → ``N_1_2.jpg``);
    ``url_path``: host and path as ``wget -x`` saves them (``host/a/N_1_2.jpg``). Quotes, the
    query string and the fragment are dropped; percent-escapes are kept as they are.
    """
    url = strip_quotes(url).split("?", 1)[0].split("#", 1)[0]
    if naming == "basename":
        return url.rstrip("/").rsplit("/", 1)[-1]
    return SCHEME.sub("", url).strip("/")


def parse_value(token: str) -> int | None:
    """1, 0 or 999 from a label cell (``1``, ``1.0`` as spreadsheets export it); None otherwise."""
    token = strip_quotes(token)
    value = VALUES.get(token)
    if value is not None:
        return value
    try:
        number = float(token)
    except ValueError:
        return None
    return int(number) if number in (0.0, 1.0, float(UNKNOWN)) else None


def header_au(cell: str) -> int | None:
    """AU number of a manual-file header cell (``'AU 12'`` → 12), None for other columns."""
    match = AU_HEADER.match(strip_quotes(cell).replace(" ", "").replace("'", "").replace('"', ""))
    return int(match.group(1)) if match else None


class _Rows:
    """Rows of one product, as parsed: relative image paths and AU codes (n, k) int32."""

    def __init__(self, num_aus: int) -> None:
        self.paths: list[str] = []
        self.codes: list[np.ndarray] = []       # blocks of (m, k) int32: 0 / 1 / 999
        self.num_aus = num_aus

    def code_array(self) -> np.ndarray:
        if not self.codes:
            return np.zeros((0, self.num_aus), dtype=np.int32)
        return np.concatenate(self.codes).astype(np.int32, copy=False)


class EmotioNet(OnDiskDataset):
    """EmotioNet images with AU occurrence labels (see the module docstring for the layout).

    Args (besides :class:`~affectlab.data.sources.on_disk.OnDiskDataset`'s):
        annotations: ``manual`` (the FACS-coded set; the automatic files, if present, give the
            unlabelled pool), ``automatic`` (the algorithm's labels for everything), or ``auto``
            (manual when a manual file is in the root or ``manual_file`` is set, else
            automatic).
        protocol: ``mlcr`` (the only one so far).
        run: the seeded repetition (MLCR averaged 3: runs 0, 1, 2).
        num_labeled: labelled training images, validation included (MLCR: 15,000).
        num_val: validation images carved from the ``num_labeled`` (MLCR had no validation).
        num_test: test images (None: all the labelled images left, MLCR's rule).
        num_unlabeled: images of the automatic set in the unlabelled pool (MLCR: 50,000; 0: none).
        image_dir: folder of the downloaded images, relative to the root (or absolute).
        image_naming: ``basename`` (the URL's file name) or ``url_path`` (host/path, ``wget -x``).
        manual_file: the manual annotation file relative to the root (None: the first of
            :data:`MANUAL_NAMES` present).
        automatic_files: glob of the automatic files relative to the root (None:
            :data:`AUTOMATIC_GLOBS`).
        check_images: list the image folder while indexing and leave out rows without an image.
        crop, template, align_size, detector: face crops, ``none`` or ``detect`` (see
            :class:`~affectlab.data.sources.on_disk.FaceCrops`).
    """

    CODED_AUS = CODED_AUS
    DEFAULT_AUS = MLCR_AUS
    LAYOUT = LAYOUT
    INDEX_VERSION = 1

    def __init__(self, *, name: str = "emotionet", root: str, aus: list[int] | None = None,
                 image_size: int = 224, on_error: str = "known_gaps",
                 cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None,
                 annotations: str = "auto", protocol: str = "mlcr", run: int = 0,
                 num_labeled: int = 15000, num_val: int = 1000, num_test: int | None = None,
                 num_unlabeled: int = 50000, image_dir: str = "images",
                 image_naming: str = "basename", manual_file: str | None = None,
                 automatic_files: str | None = None, check_images: bool = True,
                 crop: str = "none", template: str = "mlcr_240", align_size: int | None = 240,
                 detector: MTCNN | None = None) -> None:
        super().__init__(name=name, root=root, aus=aus, image_size=image_size, on_error=on_error,
                         cache_dir=cache_dir, mean=mean, std=std)
        self.configure_crop(crop, ("none", "detect"), template=template, align_size=align_size,
                            detector=detector)
        if annotations not in ANNOTATIONS:
            raise ValueError(f"dataset.annotations={annotations!r}: use one of {list(ANNOTATIONS)}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"dataset.protocol={protocol!r}: use one of {list(PROTOCOLS)}")
        if image_naming not in IMAGE_NAMINGS:
            raise ValueError(f"dataset.image_naming={image_naming!r}: use one of "
                             f"{list(IMAGE_NAMINGS)}")
        if run < 0:
            raise ValueError(f"dataset.run={run}: must be ≥ 0")
        if not 1 <= num_val < num_labeled:
            raise ValueError(f"dataset.num_val={num_val}, dataset.num_labeled={num_labeled}: "
                             "need 1 ≤ num_val < num_labeled (train = num_labeled − num_val)")
        if num_test is not None and num_test < 1:
            raise ValueError(f"dataset.num_test={num_test}: must be ≥ 1, or null for the rest")
        if num_unlabeled < 0:
            raise ValueError(f"dataset.num_unlabeled={num_unlabeled}: must be ≥ 0")
        self.annotations = annotations
        self.protocol = protocol
        self.run = run
        self.num_labeled = num_labeled
        self.num_val = num_val
        self.num_test = num_test
        self.num_unlabeled = num_unlabeled
        image_path = Path(image_dir).expanduser()
        self.image_dir = image_path if image_path.is_absolute() else self.root / image_path
        self.image_naming = image_naming
        self.manual_file = manual_file
        self.automatic_files = automatic_files
        self.check_images = check_images

    # ------------------------------------------------------------------ layout
    def _manual_path(self) -> Path | None:
        if self.manual_file is not None:
            path = self.root / self.manual_file
            return path if path.is_file() else None
        return next((self.root / n for n in MANUAL_NAMES if (self.root / n).is_file()), None)

    def _automatic_paths(self) -> list[Path]:
        patterns = (self.automatic_files,) if self.automatic_files else AUTOMATIC_GLOBS
        found = {p for pattern in patterns for p in self.root.glob(pattern) if p.is_file()}
        return sorted(found)

    def labelled_product(self) -> str:
        """``manual`` or ``automatic``: where the labelled splits come from (resolves ``auto``)."""
        if self.annotations != "auto":
            return self.annotations
        # a manual file named in the config is wanted: missing, it is an error, not a fallback
        if self.manual_file is not None or self._manual_path() is not None:
            return MANUAL
        if self._automatic_paths():
            return AUTOMATIC
        raise DataError(f"no EmotioNet annotation file in {self.root}: expected a manual file "
                        f"({', '.join(MANUAL_NAMES)}) or automatic files "
                        f"({' or '.join(AUTOMATIC_GLOBS)}). The layout is:\n{LAYOUT}")

    def _sources(self) -> tuple[str, Path | None, list[Path]]:
        """(labelled product, manual file or None, automatic files), checked to exist."""
        product = self.labelled_product()
        automatic = self._automatic_paths()
        if product == MANUAL:
            manual = self._manual_path()
            if manual is None:
                expected = (self.root / self.manual_file if self.manual_file
                            else " or ".join(str(self.root / n) for n in MANUAL_NAMES))
                raise DataError(f"EmotioNet manual annotation file not found: expected {expected}."
                                f" The layout is:\n{LAYOUT}")
            # the automatic set matters only as the source of the unlabelled pool
            return product, manual, automatic if self.num_unlabeled > 0 else []
        if not automatic:
            patterns = (self.automatic_files,) if self.automatic_files else AUTOMATIC_GLOBS
            raise DataError(f"EmotioNet automatic annotation files not found: expected "
                            f"{' or '.join(str(self.root / p) for p in patterns)}. "
                            f"The layout is:\n{LAYOUT}")
        return product, None, automatic

    def annotation_files(self) -> list[Path]:
        _, manual, automatic = self._sources()
        return ([manual] if manual is not None else []) + automatic

    def missing_image_is_known_gap(self, index: DatasetIndex, row: int) -> bool:
        # every EmotioNet image is a URL to download, and dead URLs are the rule (module doc)
        return True

    def index_options(self) -> dict[str, Any]:
        """What the index depends on besides the annotation files: the selected AUs (the index
        holds only those), the annotation mode, the image folder and name mapping, and — when
        images are checked — the folders' modification times (images added or removed)."""
        folders = []
        if self.check_images:
            for folder in self._image_folders():
                try:
                    folders.append((str(folder), folder.stat().st_mtime_ns))
                except OSError:
                    folders.append((str(folder), None))
        return {"aus": list(self.aus), "labelled": self.labelled_product(),
                "pool": self.num_unlabeled > 0, "image_dir": str(self.image_dir),
                "image_naming": self.image_naming, "check_images": self.check_images,
                "folders": folders}

    def cache_key(self) -> str:
        """The base's key (class, version, root, policy, annotation files' sizes and mtimes)
        plus :meth:`index_options`. Computed here rather than by the base class because the
        image folder may lie outside the root (the base keys files by their path relative to
        it). XLSX reading (with openpyxl installed) is not covered by the test suite, which
        runs without openpyxl."""
        stats = []
        for path in sorted(self.annotation_files()):
            info = path.stat()
            stats.append((str(path), info.st_size, info.st_mtime_ns))
        payload = json.dumps([type(self).__module__, type(self).__qualname__, INDEX_FORMAT,
                              self.INDEX_VERSION, str(self.root), self.problems.policy, stats,
                              self.index_options()], sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def _image_folders(self) -> list[Path]:
        """Folders whose listing decides which images exist: the image folder, and with
        ``url_path`` naming every folder below it (files sit in host/path sub-folders)."""
        if self.image_naming == "basename" or not self.image_dir.is_dir():
            return [self.image_dir]
        return [Path(d) for d, _, _ in os.walk(self.image_dir)]

    # ---------------------------------------------------------------- parsing
    def read_index(self, problems: Problems) -> DatasetIndex:
        product, manual, automatic = self._sources()
        listing = _Listing(self.image_dir, self.image_naming) if self.check_images else None
        image_prefix = self._image_prefix()
        if product == MANUAL:
            labelled, manual_images = self._read_manual(manual, problems, listing,
                                                        image_prefix)
            pool = self._read_pool(automatic, listing, image_prefix, exclude=manual_images)
        else:
            labelled = self._read_automatic(automatic, problems, listing, image_prefix)
            pool = _Rows(len(self.aus))
        return self._index(product, labelled, pool)

    def _image_prefix(self) -> str:
        """Image paths are stored relative to the root when the folder is inside it."""
        try:
            return self.image_dir.relative_to(self.root).as_posix() + "/"
        except ValueError:
            return self.image_dir.as_posix() + "/"

    def _read_manual(self, path: Path, problems: Problems, listing: "_Listing | None",
                     prefix: str) -> tuple[_Rows, set[str]]:
        """The manual CSV/XLSX → rows with the selected AUs' codes (first row per image), and
        the image paths of every row naming one (kept or not: none may enter the pool)."""
        rows = _Rows(len(self.aus))
        seen: set[str] = set()
        named: set[str] = set()
        duplicates = 0
        records = _manual_records(path)
        header_location, header = next(records, ("", None))
        if header is None:
            raise DataError(f"{path} is empty: expected a header URL,URL orig,'AU 1',… and one "
                            "row per image")
        url_column = next((i for i, c in enumerate(header)
                           if strip_quotes(c).replace(" ", "").lower() == "url"), None)
        au_columns = {au: i for i, c in enumerate(header) if (au := header_au(c)) is not None}
        if url_column is None:
            raise DataError(f"{header_location}: the header {header[:4]}… has no URL column; "
                            "expected URL,URL orig,'AU 1','AU 2',… (EmotioNet's manual file)")
        missing = [a for a in self.aus if a not in au_columns]
        if missing:
            raise DataError(f"dataset.aus asks for AU(s) {missing}, which {path.name} has no "
                            f"column for; its AU columns are {sorted(au_columns)}.")
        columns = [au_columns[a] for a in self.aus]
        width = len(header)
        codes: list[list[int]] = []
        for location, fields in records:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != width:
                problems.report(f"{location}: expected {width} comma-separated fields (as in the "
                                f"header), got {len(fields)}")
                continue
            url = fields[url_column]
            name = image_name(url, self.image_naming)
            if not name:
                problems.report(f"{location}: no image file name in the URL cell {url!r}")
                continue
            named.add(prefix + name)
            values = self._values(fields, columns, location, problems)
            if values is None:
                continue
            relative = prefix + name
            if relative in seen:
                duplicates += 1
                continue
            seen.add(relative)
            if listing is not None and not listing.has(name):
                problems.known_gap(self.image_dir / name,
                                   f"{location}: image file is missing: {self.image_dir / name} "
                                   f"(URL {strip_quotes(url)}: a dead URL, or not downloaded)")
                continue
            rows.paths.append(relative)
            codes.append(values)
        rows.codes.append(np.array(codes, dtype=np.int32).reshape(len(codes), len(self.aus)))
        if duplicates:
            log.info("%s: %d repeated image(s) ignored (first row kept)", path.name, duplicates)
        return rows, named

    def _values(self, fields: list[str], columns: list[int], location: str,
                problems: Problems) -> list[int] | None:
        values = []
        for au, column in zip(self.aus, columns):
            value = parse_value(fields[column])
            if value is None:
                problems.report(f"{location}: AU {au} has value {fields[column].strip()!r}; "
                                "EmotioNet codes 1 (present), 0 (absent), 999 (unknown)")
                return None
            values.append(value)
        return values

    def _read_automatic(self, paths: list[Path], problems: Problems,
                        listing: "_Listing | None", prefix: str) -> _Rows:
        """The automatic TSVs → rows with the selected AUs' codes (first row per image).

        Fast path per file: one pass for the URLs and field counts, ``np.loadtxt`` (C) for the
        selected AU columns, a vectorised value check. A file failing any of these is parsed
        again line by line, which reports every bad line with its number.
        """
        rows = _Rows(len(self.aus))
        seen: set[str] = set()
        duplicates = 0
        for path in paths:
            parsed = self._automatic_fast(path)
            if parsed is None:
                parsed = self._automatic_slow(path, problems)
            line_numbers, urls, codes = parsed
            names = [image_name(u, self.image_naming) for u in urls]
            keep = np.ones(len(names), dtype=bool)
            for i, name in enumerate(names):
                relative = prefix + name
                if not name:
                    problems.report(f"{path}, line {line_numbers[i]}: no image file name in the "
                                    f"URL {urls[i]!r}")
                    keep[i] = False
                elif relative in seen:
                    duplicates += 1
                    keep[i] = False
                elif listing is not None and not listing.has(name):
                    seen.add(relative)
                    problems.known_gap(self.image_dir / name,
                                       f"{path}, line {line_numbers[i]}: image file is missing: "
                                       f"{self.image_dir / name} (URL {strip_quotes(urls[i])}: "
                                       "a dead URL, or not downloaded)")
                    keep[i] = False
                else:
                    seen.add(relative)
                    rows.paths.append(relative)
            rows.codes.append(codes[keep])
        if duplicates:
            log.info("automatic files: %d repeated image(s) ignored (first row kept)", duplicates)
        return rows

    def _automatic_fast(self, path: Path) -> tuple[list[int], list[str], np.ndarray] | None:
        line_numbers: list[int] = []
        urls: list[str] = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                # np.loadtxt below ignores surplus columns: the field count is checked here
                if line.count("\t") != AUTOMATIC_FIELDS - 1:
                    return None
                urls.append(line.split("\t", 1)[0])
                line_numbers.append(number)
        if not urls:
            return [], [], np.zeros((0, len(self.aus)), dtype=np.int32)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                codes = np.loadtxt(path, delimiter="\t", usecols=[1 + a for a in self.aus],
                                   dtype=np.int32, comments=None, encoding="utf-8", ndmin=2)
        except ValueError:
            return None
        if len(codes) != len(urls) or not np.isin(codes, (0, 1, UNKNOWN)).all():
            return None
        return line_numbers, urls, codes

    def _automatic_slow(self, path: Path,
                        problems: Problems) -> tuple[list[int], list[str], np.ndarray]:
        line_numbers: list[int] = []
        urls: list[str] = []
        codes: list[list[int]] = []
        columns = [1 + a for a in self.aus]
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                fields = line.rstrip("\r\n").split("\t")
                location = f"{path}, line {number}"
                if len(fields) != AUTOMATIC_FIELDS:
                    problems.report(f"{location}: expected {AUTOMATIC_FIELDS} tab-separated "
                                    f"fields (URL, original URL, AU1 … AU{AUTOMATIC_AU_COLUMNS}),"
                                    f" got {len(fields)}")
                    continue
                values = self._values(fields, columns, location, problems)
                if values is None:
                    continue
                line_numbers.append(number)
                urls.append(fields[0])
                codes.append(values)
        return line_numbers, urls, np.array(codes, dtype=np.int32).reshape(len(codes),
                                                                             len(self.aus))

    def _read_pool(self, paths: list[Path], listing: "_Listing | None", prefix: str,
                   exclude: set[str]) -> _Rows:
        """Images of the automatic files that are on disk and not in the manual set. Only the
        URLs are read: the pool's labels are hidden from methods anyway."""
        rows = _Rows(len(self.aus))
        seen = set(exclude)
        absent = 0
        for path in paths:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        continue
                    name = image_name(line.split("\t", 1)[0], self.image_naming)
                    relative = prefix + name
                    if not name or relative in seen:
                        continue
                    if listing is not None and not listing.has(name):
                        absent += 1
                        continue
                    seen.add(relative)
                    rows.paths.append(relative)
        if paths:
            log.info("EmotioNet automatic set: %d image(s) on disk outside the manual set (pool "
                     "candidates), %d not downloaded", len(rows.paths), absent)
        return rows

    def _index(self, product: str, labelled: _Rows, pool: _Rows) -> DatasetIndex:
        codes = labelled.code_array()
        n_labelled, n_pool = len(labelled.paths), len(pool.paths)
        n = n_labelled + n_pool
        labels = empty_labels(n, num_aus=len(self.aus))
        labels["au"][:n_labelled] = codes == 1
        labels["au_mask"][:n_labelled] = codes != UNKNOWN
        # pool rows (manual mode): labels not read, i.e. unknown; the base hides them anyway
        paths = labelled.paths + pool.paths
        ids = ([f"{product}:{p}" for p in labelled.paths]
               + [f"{AUTOMATIC}:{p}" for p in pool.paths])
        table = LabelTable(root=self.root, image_paths=paths, **labels)
        return DatasetIndex(table, ids, [], list(self.aus))

    # ---------------------------------------------------------------- protocol
    def split(self, index: DatasetIndex) -> SplitManifest:
        """The MLCR protocol as sample ids (see the module docstring)."""
        product = self.labelled_product()
        prefix = f"{product}:"
        labelled = [i for i, sid in enumerate(index.sample_ids) if sid.startswith(prefix)]
        pool = ([i for i, sid in enumerate(index.sample_ids) if sid.startswith(f"{AUTOMATIC}:")]
                if product == MANUAL else [])
        # sorted by id before shuffling: the split depends on the images, not on row order
        labelled.sort(key=index.sample_ids.__getitem__)
        pool.sort(key=index.sample_ids.__getitem__)
        n = len(labelled)
        needed = self.num_labeled + (self.num_test or 1)
        if n < needed:
            raise DataError(
                f"EmotioNet ({product} annotations) has {n} labelled image(s) on disk; "
                f"dataset.num_labeled={self.num_labeled} for train + val and "
                f"{self.num_test or 'at least 1'} for test need {needed}. Lower "
                f"dataset.num_labeled (MLCR: 15,000 of the 20,722 it could download).")
        order = np.random.default_rng([self.run, 0]).permutation(n)
        chosen = np.asarray(labelled, dtype=np.int64)[order]
        val, train = chosen[:self.num_val], chosen[self.num_val:self.num_labeled]
        rest = chosen[self.num_labeled:]
        if product == MANUAL:
            test = rest[:self.num_test] if self.num_test is not None else rest
            candidates = np.asarray(pool, dtype=np.int64)
            picked = np.random.default_rng([self.run, 1]).permutation(len(candidates))
            unlabeled = candidates[picked[:self.num_unlabeled]]
        else:
            # one shuffle of the automatic images: train + val, then the pool, then test
            room = max(0, len(rest) - (self.num_test or 1))
            unlabeled = rest[:min(self.num_unlabeled, room)]
            test = rest[len(unlabeled):]
            test = test[:self.num_test] if self.num_test is not None else test
        if len(unlabeled) < self.num_unlabeled:
            log.warning("EmotioNet: dataset.num_unlabeled=%d, but only %d automatic-set image(s) "
                        "outside the labelled splits are on disk: the pool has %d%s",
                        self.num_unlabeled, len(unlabeled), len(unlabeled),
                        "" if len(unlabeled) else " (methods needing one, e.g. MLCR, will refuse)")
        ids = {name: [index.sample_ids[i] for i in np.sort(rows)]
               for name, rows in (("train", train), ("val", val), ("test", test),
                                  ("unlabeled", unlabeled))}
        variant = "mlcr" if product == MANUAL else "mlcr-automatic"
        return SplitManifest(protocol=f"emotionet/{variant}/run{self.run}", ids=ids)


class _Listing:
    """Which images exist, from one directory listing per folder (not one stat per row)."""

    def __init__(self, image_dir: Path, naming: str) -> None:
        self.image_dir = image_dir
        self.naming = naming
        self.folders: dict[str, set[str]] = {}

    def _names(self, folder: str) -> set[str]:
        names = self.folders.get(folder)
        if names is None:
            try:
                names = set(os.listdir(self.image_dir / folder if folder else self.image_dir))
            except OSError:   # no such folder: none of its images were downloaded
                names = set()
            self.folders[folder] = names
        return names

    def has(self, name: str) -> bool:
        """Whether ``name`` (relative to the image folder) is on disk."""
        if self.naming == "basename":
            return name in self._names("")
        folder, _, base = name.rpartition("/")
        return base in self._names(folder)


def _manual_records(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(``"<file>, line <n>"``, fields) of a manual file, header first: CSV via :mod:`csv`,
    XLSX via openpyxl (every sheet with a header; locations then name sheet and row)."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        yield from _xlsx_records(path)
        return
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        for fields in reader:
            yield f"{path}, line {reader.line_num}", fields


def _xlsx_records(path: Path) -> Iterator[tuple[str, list[str]]]:
    try:
        import openpyxl
    except ImportError:
        raise DataError(f"{path} is an Excel workbook and openpyxl is not installed. Export the "
                        f"sheet to CSV (e.g. as {path.with_suffix('.csv').name} in the same "
                        "folder, which is then read instead), or install openpyxl.") from None
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        header_seen = False
        for sheet in workbook.worksheets:
            for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
                fields = ["" if c is None else str(c) for c in cells]
                while fields and not fields[-1]:   # read-only sheets pad rows with empty cells
                    fields.pop()
                if number == 1:
                    # one header for the whole workbook; a sheet without a URL column is skipped
                    if not any(strip_quotes(c).replace(" ", "").lower() == "url" for c in fields):
                        break
                    if header_seen:
                        continue
                    header_seen = True
                yield f"{path}, sheet {sheet.title!r}, line {number}", fields
    finally:
        workbook.close()


__all__ = ["EmotioNet", "image_name", "parse_value", "MLCR_AUS", "CHALLENGE_2020_AUS",
           "MANUAL_NAMES", "AUTOMATIC_GLOBS"]
