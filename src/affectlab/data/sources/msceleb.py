"""MS-Celeb-1M (Guo et al., ECCV 2016) as the cleaned insightface releases distribute it
(MS1MV2 / ``faces_emore``: 85,742 identities, 5,822,653 ArcFace-aligned 112 × 112 faces).
``dataset=msceleb``.

Two layouts are read (``dataset.layout``; ``auto`` takes the record files when present):

``record`` — insightface's MXNet RecordIO, read with the standard library (no ``mxnet``)::

    <root>/train.rec   records; <root>/train.idx  ``key<TAB>byte offset`` per line
    <root>/property    ``num_classes,112,112`` (optional; checked against the identities)
    (<root>/lfw.bin, cfp_fp.bin, agedb_30.bin: verification pairs, not read)

  The binary format, as dmlc-core's ``recordio.h`` / ``recordio.cc`` (the version in
  apache/mxnet) and mxnet's ``python/mxnet/recordio.py`` define it:

  - a record is ``uint32 magic = 0xced7230a``, ``uint32 lrecord``, the data, zero padding to a
    multiple of 4 bytes; ``lrecord`` = cflag << 29 | length. cflag 0 is a whole record; when
    the data holds the magic number at a 4-byte-aligned position the writer cuts it there
    (dropping those 4 bytes) into parts with cflag 1 (first), 2 (middle), 3 (last), and the
    reader joins the parts with the magic number in between. All little-endian.
  - the data starts with mxnet's ``IRHeader``, ``struct 'IfQQ'`` = (uint32 flag, float32
    label, uint64 id, uint64 id2), 24 bytes; when flag > 0, ``flag`` float32 labels follow
    (the header's label is then unused), then the payload (here an encoded JPEG).
  - insightface's convention (its ``arcface_torch/dataset.py`` and the older ``FaceImageIter``
    read it so): record 0 has flag > 0 and labels (first identity key, end identity key);
    image records are keys 1 .. first − 1 with the class label (the label's first value when
    it is an array); identity records (keys first .. end − 1) carry flag 2 and labels
    (a, b): the identity's images are keys a .. b − 1. A file without that header (record 0
    an image, e.g. written by ``im2rec``) is read by every record's label instead (slower).

  The identity of a range is the label of its images (its first and last image are read and
  must agree). Samples get the paths an extraction would give them,
  ``imgs/<label>/<key>.jpg``; the images are decoded from ``train.rec``.

``folder`` — an ``ImageFolder``-style extraction, ``<root>/<images_dir>/<identity>/<image>``:
  ``imgs/<label>/<key>.jpg`` as InsightFace_Pytorch's ``load_mx_rec`` writes it (the same sample
  ids as the record layout, so a split drawn on the records is the same split after extracting
  them), or the original TSV decoded as ``<MID>/<rank>-<faceID>.jpg`` (``images_dir`` = the
  folder holding the ``<MID>`` folders; ``""`` for the root itself). Any image extension.
  (That script decodes with OpenCV and saves with PIL, which may swap red and blue in the
  extracted JPEGs — unverified here; re-extract with a decoder that returns RGB if so.)

The original Microsoft TSVs (``MsCelebV1-Faces-Aligned.tsv``: base64 JPEG in the last column,
withdrawn in 2019) are not read: a root holding only ``.tsv`` files gets an error that says how
to decode them into the folder layout.

Samples carry the identity (``subject``) and no other label; the protocols (``identities``,
``pool``) and the ``pool_images`` draw are those of :mod:`affectlab.data.sources.identity_sets`.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from affectlab.data.contract import DataError, FaceImageDataset, LabelTable
from affectlab.data.sources.identity_sets import IdentityDataset, identity_index
from affectlab.data.sources.image_folder import IMAGE_EXTENSIONS
from affectlab.data.sources.on_disk import DatasetIndex, Problems

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29                       # lrecord = cflag << 29 | length
IR_FORMAT = "<IfQQ"                    # mxnet IRHeader: flag, label, id, id2
IR_SIZE = struct.calcsize(IR_FORMAT)   # 24
FLOAT32_EXACT = 1 << 24                # float32 holds every integer up to here
LAYOUTS: tuple[str, ...] = ("auto", "record", "folder")
PROPERTY_FILE = "property"
LAYOUT = """\
  record (insightface MS1MV2 / faces_emore):
    <root>/train.rec, <root>/train.idx, <root>/property   (dataset.record=train)
  folder (extracted):
    <root>/imgs/<label>/<key>.jpg                          (dataset.images_dir=imgs)
    or the decoded TSV: <root>/<images_dir>/<MID>/<rank>-<faceID>.jpg"""
TSV_HINT = """\
The original MS-Celeb-1M TSVs are not read directly. Decode them into the folder layout first,
one image per row (tab-separated; Freebase MID in column 0, search rank in column 1, FaceID in
column 4, the base64 JPEG in the last column):
    MID, rank, face_id, data = row[0], row[1], row[4], base64.b64decode(row[-1])
    -> <root>/<images_dir>/<MID>/<rank>-<face_id>.jpg
then set dataset.layout=folder and dataset.images_dir to that folder."""


class RecordError(ValueError):
    """A record that does not follow the RecordIO format (bad magic, truncated, bad flags)."""


# ============================================================================= RecordIO
def read_record(handle: BinaryIO, offset: int, limit: int | None = None) -> bytes:
    """The data of the record starting at byte ``offset`` (its parts joined).

    Args:
        handle: the ``.rec`` file, opened in binary mode.
        offset: where the record starts (the ``.idx`` file's offset).
        limit: stop once this many data bytes are read (e.g. only the header); None: all.

    Raises:
        RecordError: no magic number at a part's start, an impossible cflag sequence, or a
            file that ends inside the record.
    """
    handle.seek(offset)
    parts: list[bytes] = []
    size = 0
    first = True
    while True:
        position = handle.tell()
        head = handle.read(8)
        if len(head) < 8:
            raise RecordError(f"the file ends inside the record header at byte {position}")
        magic, lrecord = struct.unpack("<II", head)
        if magic != MAGIC:
            raise RecordError(f"no record starts at byte {position} (magic {magic:#010x}, "
                              f"expected {MAGIC:#010x})")
        cflag, length = lrecord >> LENGTH_BITS, lrecord & ((1 << LENGTH_BITS) - 1)
        # a record is one part (0) or a first part (1), middle parts (2) and a last part (3)
        if (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
            raise RecordError(f"part at byte {position} has cflag {cflag}, which cannot "
                              f"{'start' if first else 'continue'} a record")
        take = length if limit is None else min(length, limit - size)
        data = handle.read(take)
        if len(data) < take:
            raise RecordError(f"the file ends inside the record data at byte {position}")
        parts.append(data)
        size += take
        if limit is not None and size >= limit:
            break
        if cflag in (0, 3):
            break
        # the writer cut the data at a magic number here and dropped it
        parts.append(MAGIC_BYTES)
        size += len(MAGIC_BYTES)
        handle.seek((-length) % 4, os.SEEK_CUR)
        first = False
    return b"".join(parts)


def unpack_record(data: bytes) -> tuple[int, tuple[float, ...], int, bytes]:
    """``(flag, labels, id, payload)`` of a record's data (mxnet ``recordio.unpack``).

    ``labels`` is ``(label,)`` when flag is 0, else the ``flag`` float32 values that follow the
    header. Raises :class:`RecordError` when the data is shorter than the header says.
    """
    if len(data) < IR_SIZE:
        raise RecordError(f"record of {len(data)} bytes is shorter than its {IR_SIZE}-byte header")
    flag, label, record_id, _ = struct.unpack_from(IR_FORMAT, data)
    if flag == 0:
        return 0, (label,), record_id, data[IR_SIZE:]
    end = IR_SIZE + 4 * flag
    if len(data) < end:
        raise RecordError(f"header flag {flag} announces {flag} labels, but the record has "
                          f"{len(data)} bytes")
    return flag, struct.unpack_from(f"<{flag}f", data, IR_SIZE), record_id, data[end:]


def read_header(handle: BinaryIO, offset: int) -> tuple[int, tuple[float, ...]]:
    """``(flag, labels)`` of the record at ``offset``, reading only its header."""
    start = read_record(handle, offset, limit=IR_SIZE)
    if len(start) < IR_SIZE:
        raise RecordError(f"record of {len(start)} bytes is shorter than its {IR_SIZE}-byte "
                          "header")
    flag = struct.unpack_from("<I", start)[0]
    data = read_record(handle, offset, limit=IR_SIZE + 4 * flag) if flag else start
    flag, labels, _, _ = unpack_record(data)
    return flag, labels


def read_idx(path: Path, problems: Problems | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, offsets)``, int64 (N,) each, sorted by key, of a ``.idx`` file
    (``key<TAB>offset`` per line, as ``MXIndexedRecordIO`` writes it).

    A malformed line is reported to ``problems`` with file and line and left out (without
    ``problems``: a :class:`DataError`). A key listed twice keeps its last offset, as mxnet's
    reader does.
    """
    text = path.read_bytes()
    pairs = _parse_idx_fast(text)
    if pairs is None:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                message = (f"{path}, line {number}: expected 'key<TAB>byte offset', got "
                           f"{line.decode(errors='replace').strip()!r}")
                if problems is None:
                    raise DataError(message)
                problems.report(message)
                continue
            rows.append((int(fields[0]), int(fields[1])))
        pairs = np.array(rows, dtype=np.int64).reshape(-1, 2)
    # a stable sort keeps file order among equal keys; the last one wins
    order = np.argsort(pairs[:, 0], kind="stable")
    pairs = pairs[order]
    last = np.ones(len(pairs), dtype=bool)
    last[:-1] = pairs[1:, 0] != pairs[:-1, 0]
    return pairs[last, 0].copy(), pairs[last, 1].copy()


def _parse_idx_fast(text: bytes) -> np.ndarray | None:
    """(N, 2) int64 of a machine-written ``.idx`` (every line exactly ``digits<TAB>digits``,
    newline-terminated), parsed without a Python loop over its millions of lines; None for
    anything else (blank lines, spaces, ``\\r``, bad fields), which the line-by-line parser
    then reads and reports."""
    if not text:
        return np.zeros((0, 2), dtype=np.int64)
    if not text.endswith(b"\n"):
        text += b"\n"
    raw = np.frombuffer(text, dtype=np.uint8)
    separators = raw[(raw == 9) | (raw == 10)]
    digits = (raw >= 48) & (raw <= 57)
    # only digits, tabs and newlines, alternating tab / newline: two fields per line
    if (not (digits | (raw == 9) | (raw == 10)).all() or len(separators) % 2
            or not (separators[0::2] == 9).all() or not (separators[1::2] == 10).all()):
        return None
    try:
        values = np.fromstring(text.decode("ascii"), dtype=np.int64, sep=" ")
    except ValueError:
        return None
    if len(values) != len(separators):   # an empty field (a tab next to a newline)
        return None
    return values.reshape(-1, 2)


@functools.lru_cache(maxsize=4)
def _cached_idx(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    return read_idx(Path(path))


def record_offsets(idx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_idx` of ``idx_path``, parsed once per process while the file is unchanged."""
    info = idx_path.stat()
    return _cached_idx(str(idx_path), info.st_size, info.st_mtime_ns)


def offset_of(keys: np.ndarray, offsets: np.ndarray, key: int) -> int | None:
    """The byte offset of ``key`` (None when the index does not list it)."""
    i = int(np.searchsorted(keys, key))
    return int(offsets[i]) if i < len(keys) and keys[i] == key else None


class RecordImages(FaceImageDataset):
    """Faces decoded from a ``.rec`` file: row r's image path ends in ``<key>.jpg`` and the
    image is record ``key`` (its payload, a JPEG); everything else as
    :class:`~affectlab.data.contract.FaceImageDataset`. The file is opened per read, so the
    dataset is safe to use in DataLoader worker processes."""

    def __init__(self, table: LabelTable, *, image_size: int | None, rec_path: Path,
                 idx_path: Path) -> None:
        super().__init__(table, image_size=image_size)
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)

    def key(self, row: int) -> int:
        return int(Path(self.table.image_paths[row]).stem)

    def load_pixels(self, row: int) -> np.ndarray:
        key = self.key(row)
        try:
            keys, offsets = record_offsets(self.idx_path)
            offset = offset_of(keys, offsets, key)
            with open(self.rec_path, "rb") as handle:
                data = None if offset is None else read_record(handle, offset)
        except OSError as err:
            raise DataError(f"cannot read {self.rec_path} / {self.idx_path} ({err}).") from None
        except RecordError as err:
            data, problem = None, str(err)
        else:
            problem = f"{self.idx_path.name} lists no key {key}"
        try:
            if data is None:
                raise RecordError(problem)
            _, _, _, payload = unpack_record(data)
            with Image.open(io.BytesIO(payload)) as img:
                return np.asarray(self.transform(img.convert("RGB"), row), dtype=np.uint8)
        except (RecordError, UnidentifiedImageError, OSError, SyntaxError) as err:
            raise DataError(f"record {key} of {self.rec_path} is unreadable ({err}). Re-download "
                            "the record files, or extract them (dataset.layout=folder).") from None


# ============================================================================= dataset
def _join(images_dir: str, identity: str, file: str) -> str:
    return f"{identity}/{file}" if images_dir in ("", ".") else f"{images_dir}/{identity}/{file}"


class MSCeleb(IdentityDataset):
    """MS-Celeb-1M faces with their identities (see the module docstring).

    Args (besides :class:`~affectlab.data.sources.identity_sets.IdentityDataset`'s):
        layout: ``auto`` (record files when present, else the folder), ``record`` or
            ``folder``.
        images_dir: folder of the identity folders, relative to the root (``""``: the root);
            for ``record`` the prefix of the sample ids (``imgs/<label>/<key>.jpg``).
        record: stem of the record files (``train``: ``train.rec`` + ``train.idx``).
    """

    PROTOCOLS = ("identities", "pool")
    LAYOUT = LAYOUT
    INDEX_VERSION = 1

    def __init__(self, *, name: str = "msceleb", root: str, image_size: int = 112,
                 on_error: str = "known_gaps", cache_dir: str = "data/cache",
                 mean: list[float] | None = None, std: list[float] | None = None,
                 protocol: str = "identities", layout: str = "auto", images_dir: str = "imgs",
                 record: str = "train", seed: int = 0, train_fraction: float = 0.8,
                 val_fraction: float = 0.1, pool_images: int | None = None) -> None:
        super().__init__(name=name, root=root, image_size=image_size, on_error=on_error,
                         cache_dir=cache_dir, mean=mean, std=std, protocol=protocol, seed=seed,
                         train_fraction=train_fraction, val_fraction=val_fraction,
                         pool_images=pool_images)
        if layout not in LAYOUTS:
            raise ValueError(f"dataset.layout={layout!r}: use one of {list(LAYOUTS)}")
        self.layout = layout
        self.images_dir = images_dir.strip("/")
        self.record = record
        self._resolved: str | None = None

    # ---------------------------------------------------------------- layout
    @property
    def rec_path(self) -> Path:
        return self.root / f"{self.record}.rec"

    @property
    def idx_path(self) -> Path:
        return self.root / f"{self.record}.idx"

    @property
    def images_path(self) -> Path:
        return self.root / self.images_dir if self.images_dir not in ("", ".") else self.root

    def resolved_layout(self) -> str:
        """``record`` or ``folder``: what ``layout`` means for the files under the root
        (decided once per :meth:`check_root`: it is asked for every sample)."""
        if self._resolved is None:
            self._resolved = self._resolve_layout()
        return self._resolved

    def _resolve_layout(self) -> str:
        has_record = self.rec_path.is_file() and self.idx_path.is_file()
        if self.layout == "record" or (self.layout == "auto" and has_record):
            if not has_record:
                raise DataError(f"dataset.layout=record needs {self.rec_path} and "
                                f"{self.idx_path}. Expected layout:\n{LAYOUT}")
            return "record"
        if self.images_path.is_dir():
            return "folder"
        tsv = sorted(p.name for p in self.root.glob("*.tsv"))
        if tsv:
            raise DataError(f"{self.root} holds {', '.join(tsv)} but no record files "
                            f"({self.rec_path.name}, {self.idx_path.name}) and no image folder "
                            f"{self.images_path}.\n{TSV_HINT}")
        wanted = ("record files or " if self.layout == "auto" else "") + "the image folder"
        raise DataError(f"MS-Celeb-1M: {self.root} has neither {wanted} "
                        f"({self.rec_path.name} + {self.idx_path.name}, {self.images_path}) "
                        f"(dataset.layout={self.layout}). Expected layout:\n{LAYOUT}")

    def check_root(self) -> None:
        super().check_root()
        self._resolved = None
        self.resolved_layout()

    def annotation_files(self) -> list[Path]:
        if self.resolved_layout() == "record":
            files = [self.idx_path, self.rec_path]
            if (self.root / PROPERTY_FILE).is_file():
                files.append(self.root / PROPERTY_FILE)
            return files
        # identity folders' mtimes change when images are added or removed
        folder = self.images_path
        return [folder] + [Path(e.path) for e in os.scandir(folder)
                           if e.is_dir() and not e.name.startswith(".")]

    def index_options(self) -> dict[str, Any]:
        return {"layout": self.resolved_layout(), "images_dir": self.images_dir,
                "record": self.record}

    def reads_image_files(self) -> bool:
        # the record layout's images are records of train.rec, checked while indexing
        return self.resolved_layout() == "folder"

    def image_dataset(self, table: LabelTable, image_size: int | None) -> FaceImageDataset:
        if self.resolved_layout() == "folder":
            return super().image_dataset(table, image_size)
        return RecordImages(table, image_size=image_size, rec_path=self.rec_path,
                            idx_path=self.idx_path)

    # ---------------------------------------------------------------- index
    def read_index(self, problems: Problems) -> DatasetIndex:
        if self.resolved_layout() == "record":
            return self._read_records(problems)
        return self._read_folder(problems)

    def _read_folder(self, problems: Problems) -> DatasetIndex:
        """Every image in ``<images_dir>/<identity>/``, identity = the folder name."""
        folder = self.images_path
        paths: list[str] = []
        identities: list[str] = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                for image in sorted(os.scandir(entry.path), key=lambda e: e.name):
                    if (not image.name.startswith(".") and image.is_file()
                            and image.name.lower().endswith(IMAGE_EXTENSIONS)):
                        paths.append(_join(self.images_dir, entry.name, image.name))
                        identities.append(entry.name)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                problems.report(f"{entry.path}: an image outside an identity folder (expected "
                                f"{folder}/<identity>/<image>); its identity is unknown")
        return identity_index(self.root, paths, identities)

    def _read_records(self, problems: Problems) -> DatasetIndex:
        """Images and identities of ``<record>.rec`` (see the module docstring)."""
        keys, offsets = read_idx(self.idx_path, problems)
        paths: list[str] = []
        identities: list[str] = []
        with open(self.rec_path, "rb") as handle:

            def header(key: int, what: str) -> tuple[int, tuple[float, ...]] | None:
                offset = offset_of(keys, offsets, key)
                if offset is None:
                    problems.report(f"{self.idx_path}: no key {key} ({what})")
                    return None
                try:
                    return read_header(handle, offset)
                except RecordError as err:
                    problems.report(f"{self.rec_path}: record {key} ({what}, at byte {offset} "
                                    f"per {self.idx_path.name}): {err}")
                    return None

            def identity_of(label: float, key: int) -> str | None:
                if label != int(label) or label < 0:
                    problems.report(f"{self.rec_path}: record {key} has label {label:g}, not "
                                    "a class number")
                    return None
                return str(int(label))

            offset0 = offset_of(keys, offsets, 0)
            if offset0 is None:
                raise DataError(f"{self.idx_path} lists no record 0 (the header record, or the "
                                "first image); is it the index of this .rec file?")
            try:
                flag0, labels0 = read_header(handle, offset0)
            except RecordError as err:
                raise DataError(f"{self.rec_path}: record 0 is unreadable ({err}); is "
                                f"{self.idx_path.name} the index of this file?") from None
            if flag0 >= 2:
                first, end = int(labels0[0]), int(labels0[1])
                ranges = self._identity_ranges(first, end, header, problems)
                self._check_property(len(ranges), problems)
                for a, b, key in ranges:
                    head = header(a, f"first image of identity record {key}")
                    tail = header(b - 1, f"last image of identity record {key}")
                    if head is None or tail is None:
                        continue
                    if head[1][0] != tail[1][0]:
                        problems.report(f"{self.rec_path}: identity record {key} spans images "
                                        f"{a}..{b - 1}, whose labels differ ({head[1][0]:g}, "
                                        f"{tail[1][0]:g})")
                        continue
                    identity = identity_of(head[1][0], a)
                    if identity is None:
                        continue
                    wanted = np.arange(a, b)
                    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
                    listed = keys[at] == wanted
                    if not listed.all():
                        problems.report(f"{self.idx_path}: no key {wanted[~listed][0]} "
                                        f"({int((~listed).sum())} of the images {a}..{b - 1} "
                                        f"of identity record {key} are not listed)")
                    for k in wanted[listed].tolist():
                        paths.append(_join(self.images_dir, identity, f"{k}.jpg"))
                        identities.append(identity)
            else:
                # no header record: every listed record is an image, labelled in its header
                for key in keys.tolist():
                    head = header(key, "an image")
                    if head is None:
                        continue
                    identity = identity_of(head[1][0], key)
                    if identity is not None:
                        paths.append(_join(self.images_dir, identity, f"{key}.jpg"))
                        identities.append(identity)
                self._check_property(len(set(identities)), problems)
        return identity_index(self.root, paths, identities)

    def _identity_ranges(self, first: int, end: int,
                         header: Callable[[int, str], tuple[int, tuple[float, ...]] | None],
                         problems: Problems) -> list[tuple[int, int, int]]:
        """``(a, b, key)`` of the identity records ``first .. end − 1``: image keys a .. b − 1,
        inside 1 .. first − 1 and not overlapping another identity's."""
        if not 1 <= first <= end:
            raise DataError(f"{self.rec_path}: record 0 declares identity records {first}.."
                            f"{end - 1}, which is not a range after the images.")
        if end > FLOAT32_EXACT:
            # keys are stored as float32 labels: above 2^24 they are rounded, and files that
            # big (e.g. Glint360K) use a float64 header variant this reader does not know
            raise DataError(f"{self.rec_path}: record 0 declares keys up to {end - 1}, beyond "
                            f"float32's exact integers ({FLOAT32_EXACT:,}); such record files "
                            "are not read here: extract them (dataset.layout=folder).")
        covered = np.zeros(first, dtype=bool)
        ranges = []
        for key in range(first, end):
            head = header(key, "an identity record")
            if head is None:
                continue
            flag, labels = head
            if flag < 2:
                problems.report(f"{self.rec_path}: identity record {key} has flag {flag}; "
                                "expected 2 labels (first image, end image)")
                continue
            a, b = int(labels[0]), int(labels[1])
            if not 1 <= a <= b <= first:
                problems.report(f"{self.rec_path}: identity record {key} spans images "
                                f"{a}..{b - 1}, outside the image keys 1..{first - 1}")
                continue
            if covered[a:b].any():
                problems.report(f"{self.rec_path}: identity record {key} spans images "
                                f"{a}..{b - 1}, which overlap another identity's")
                continue
            covered[a:b] = True
            if b > a:   # an identity without images adds nothing
                ranges.append((a, b, key))
        return ranges

    def _check_property(self, num_identities: int, problems: Problems) -> None:
        """``property`` (``num_classes,height,width``) against the identities found."""
        path = self.root / PROPERTY_FILE
        if not path.is_file():
            return
        text = path.read_text().strip()
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            problems.report(f"{path}, line 1: expected 'num_classes,height,width', got {text!r}")
        elif int(fields[0]) != num_identities:
            problems.report(f"{path}, line 1: declares {fields[0]} identities, the records "
                            f"hold {num_identities}")


__all__ = ["LAYOUT", "MSCeleb", "RecordError", "RecordImages", "read_header", "read_idx",
           "read_record", "record_offsets", "unpack_record"]
