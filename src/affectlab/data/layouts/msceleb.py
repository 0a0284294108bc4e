"""MS-Celeb-1M written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.msceleb`."""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image

from affectlab.data.sources.msceleb import (
    IR_FORMAT,
    LENGTH_BITS,
    MAGIC,
    MAGIC_BYTES,
    PROPERTY_FILE,
    _join,
)

if TYPE_CHECKING:   # the writer only reads these objects
    from affectlab.data.layouts.faces import LayoutFace


def pack_record(payload: bytes, label: float | Sequence[float], record_id: int = 0) -> bytes:
    """Record data as mxnet's ``recordio.pack`` builds it: a number label gives flag 0, a
    sequence of n labels gives flag n, the labels after the header and a header label of 0."""
    if isinstance(label, (int, float)):
        return struct.pack(IR_FORMAT, 0, float(label), record_id, 0) + payload
    values = [float(v) for v in label]
    return (struct.pack(IR_FORMAT, len(values), 0.0, record_id, 0)
            + struct.pack(f"<{len(values)}f", *values) + payload)


def write_record(handle: BinaryIO, data: bytes) -> None:
    """Append one record as dmlc's ``RecordIOWriter::WriteRecord`` does: cut at every
    4-byte-aligned magic number (cflag 1, 2, …, 3), then pad the data to 4 bytes."""
    if len(data) >= 1 << LENGTH_BITS:
        raise ValueError(f"a record holds less than 2^{LENGTH_BITS} bytes, got {len(data)}")
    start = 0
    search = 0
    while True:
        cut = data.find(MAGIC_BYTES, search)
        if cut < 0 or cut + 4 > len(data):
            break
        if cut % 4:
            search = cut + 1    # only aligned occurrences are cut
            continue
        handle.write(struct.pack("<II", MAGIC, ((1 if start == 0 else 2) << LENGTH_BITS)
                                 | (cut - start)))
        handle.write(data[start:cut])
        start = search = cut + 4
    handle.write(struct.pack("<II", MAGIC, ((3 if start else 0) << LENGTH_BITS)
                             | (len(data) - start)))
    handle.write(data[start:])
    handle.write(b"\0" * ((-len(data)) % 4))


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_layout(faces: list[LayoutFace], root: Path, *, layout: str = "record",
                 images_dir: str = "imgs", record: str = "train", header: bool = True,
                 magic_every: int = 3, naming: str = "labels") -> dict[str, str]:
    """Write synthetic faces as an MS-Celeb-1M release under ``root``; return what was written.

    Faces are grouped by subject (subjects numbered 0 .. K − 1 in sorted order = the class
    labels) and keyed 1 .. N in that order, as insightface's files are. JPEG quality 95; the
    same bytes in both layouts.

    - ``layout="record"``: ``<record>.rec`` / ``.idx`` / ``property``; with ``header``, record 0
      holds (N + 1, N + 1 + K) and keys N + 1 .. N + K the identity ranges (insightface's
      files); without it, the images only (``im2rec``-style). Every second image stores its
      label as a 1-element array (flag 1) rather than a number (flag 0), and every
      ``magic_every``-th image's data carries the magic number at an aligned position after
      the JPEG (decoders ignore bytes after its end), so its record is written in parts.
    - ``layout="folder"``: ``<images_dir>/<label>/<key>.jpg`` (``naming="labels"``, an
      extraction of the records: the same sample ids) or ``<MID>/<rank>-<faceID>.jpg``
      (``naming="tsv"``, the decoded original TSV; MIDs invented).

    Returns:
        ``{sample id: identity name}`` (the label as text, or the MID).
    """
    if layout not in ("record", "folder"):
        raise ValueError(f"write_layout: layout must be record or folder, got {layout!r}")
    if naming not in ("labels", "tsv") or (naming == "tsv" and layout == "record"):
        raise ValueError(f"write_layout: naming={naming!r} (tsv only with layout=folder)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ordered = sorted(faces, key=lambda f: (f.subject, f.index))
    label_of = {s: k for k, s in enumerate(sorted({f.subject for f in faces}))}
    written: dict[str, str] = {}
    if layout == "folder":
        for key, face in enumerate(ordered, start=1):
            if naming == "labels":
                identity, file = str(label_of[face.subject]), f"{key}.jpg"
            else:
                identity = f"m.0{7919 * (face.subject + 1) % 65536:04x}"
                file = f"{face.index + 1}-FaceId-0.jpg"
            sample = _join(images_dir, identity, file)
            (root / sample).parent.mkdir(parents=True, exist_ok=True)
            (root / sample).write_bytes(_jpeg(face.image))
            written[sample] = identity
        return written
    n, k = len(ordered), len(label_of)
    ranges: dict[int, list[int]] = {}
    with open(root / f"{record}.rec", "wb") as rec, open(root / f"{record}.idx", "w") as idx:

        def put(key: int, data: bytes) -> None:
            idx.write(f"{key}\t{rec.tell()}\n")
            write_record(rec, data)

        if header:
            put(0, pack_record(b"", [n + 1, n + 1 + k]))
        for key, face in enumerate(ordered, start=1):
            label = label_of[face.subject]
            data = pack_record(_jpeg(face.image), [label] if key % 2 == 0 else label, key)
            if magic_every and key % magic_every == 0:
                data += b"\0" * ((-len(data)) % 4) + MAGIC_BYTES + b"tail"
            put(key, data)
            ranges.setdefault(label, []).append(key)
            written[_join(images_dir, str(label), f"{key}.jpg")] = str(label)
        if header:
            for label in range(k):
                put(n + 1 + label, pack_record(b"", [ranges[label][0], ranges[label][-1] + 1]))
    height, width = ordered[0].image.shape[:2] if ordered else (112, 112)
    (root / PROPERTY_FILE).write_text(f"{k},{height},{width}\n")
    return written



__all__ = ["pack_record", "write_layout", "write_record"]
