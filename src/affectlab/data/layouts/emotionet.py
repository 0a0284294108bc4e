"""EmotioNet written from synthetic faces in the release's real on-disk layout, for
tests, fixtures and demos; the reader is :mod:`affectlab.data.sources.emotionet`."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from affectlab.data.layouts.faces import LayoutFace
from affectlab.data.sources.emotionet import (
    AUTOMATIC,
    CHALLENGE_2020_AUS,
    CODED_AUS,
    MANUAL,
    image_name,
)
from affectlab.data.sources.synthetic.story import UNKNOWN


def face_url(face: LayoutFace, *, host: str = "example.invalid") -> str:
    """The URL a synthetic face is published under, named like EmotioNet's images."""
    return f"http://{host}/emotionet/N_{face.subject + 1:010d}_{face.index + 1:05d}.jpg"


def write_layout(faces: list[LayoutFace], root: Path, *,
                 products: tuple[str, ...] = (MANUAL, AUTOMATIC), manual_share: float = 0.6,
                 missing_every: int = 6, automatic_files: int = 2, manual_format: str = "csv",
                 manual_aus: tuple[int, ...] = CHALLENGE_2020_AUS, image_dir: str = "images",
                 image_naming: str = "basename", automatic_dir: str = "") -> dict[str, dict]:
    """Write synthetic faces as an EmotioNet download; return what was written, per sample id.

    - The first ``manual_share`` of ``faces`` are the manual set: ``EmotioNet_FACS_aws_2020_24600``
      ``.csv`` (or ``.xlsx``, needs openpyxl) with header ``URL,URL orig,'AU 1',…`` over
      ``manual_aus``, URL cells quoted (``'http://…'``, every third with a trailing ``'`` only).
    - Every face (manual ones too, as in the real automatic set) is a row of the automatic files
      ``dataFile_1001.txt`` … (``automatic_files`` of them, in ``automatic_dir``): tab-separated,
      URL, original URL, AU1 … AU60. Its labels are the face's, except AU 1 flipped on every
      fourth face (the algorithm's mistakes), so the two products differ.
    - Values: the face's annotated labels (1 / 0 / 999 where occluded); AUs the synthetic faces
      do not render are 0.
    - Images: JPEGs named as the URL's file name under ``image_dir`` (or host/path folders with
      ``image_naming=url_path``), except every ``missing_every``-th face (0: none), whose URL is
      dead: its rows exist, its image does not.

    Returns:
        ``{sample id: {"product": "manual" | "automatic", "url", "image": path relative to root,
        "present": bool, "file": annotation file relative to root, "line": 1-based line,
        "aus": {AU: 1 / 0 / 999 for every AU column written}}}``; sample ids as the loader
        makes them (``manual:images/N_….jpg``).
    """
    root.mkdir(parents=True, exist_ok=True)
    num_manual = round(manual_share * len(faces))
    written: dict[str, dict] = {}
    present: list[bool] = []
    images: list[str] = []
    for k, face in enumerate(faces):
        relative = f"{image_dir}/{image_name(face_url(face), image_naming)}"
        images.append(relative)
        present.append(not (missing_every and k % missing_every == missing_every - 1))
        if present[-1]:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(face.image).save(root / relative, format="JPEG", quality=90)

    def labels(face: LayoutFace, aus: tuple[int, ...]) -> dict[int, int]:
        return {au: int(face.labels.au_labels.get(au, 0)) for au in aus}

    if MANUAL in products:
        name = "EmotioNet_FACS_aws_2020_24600." + manual_format
        header = ["URL", "URL orig", *[f"'AU {a}'" for a in manual_aus]]
        table = [header]
        for k, face in enumerate(faces[:num_manual]):
            url = face_url(face)
            cell = f"{url}'" if k % 3 == 2 else f"'{url}'"
            values = labels(face, manual_aus)
            table.append([cell, f"'http://example.invalid/orig/{k}.jpg'",
                          *[str(values[a]) for a in manual_aus]])
            written[f"{MANUAL}:{images[k]}"] = {
                "product": MANUAL, "url": url, "image": images[k], "present": present[k],
                "file": name, "line": k + 2, "aus": values}
        if manual_format == "csv":
            (root / name).write_text("".join(",".join(row) + "\n" for row in table))
        elif manual_format == "xlsx":
            import openpyxl

            workbook = openpyxl.Workbook()
            sheet = workbook.active
            for row in table:
                sheet.append([int(c) if c.isdigit() else c for c in row])
            workbook.save(root / name)
        else:
            raise ValueError(f"manual_format={manual_format!r}: csv or xlsx")
    if AUTOMATIC in products:
        folder = root / automatic_dir
        folder.mkdir(parents=True, exist_ok=True)
        per_file = -(-len(faces) // max(1, automatic_files))
        for f in range(max(1, automatic_files)):
            name = f"dataFile_{1001 + f}.txt"
            lines = []
            for line, k in enumerate(range(f * per_file, min(len(faces), (f + 1) * per_file)), 1):
                face = faces[k]
                values = labels(face, CODED_AUS)
                if k % 4 == 0 and values[1] != UNKNOWN:
                    values[1] = 1 - values[1]
                lines.append("\t".join([face_url(face), f"http://example.invalid/orig/{k}.jpg",
                                        *[str(values[a]) for a in CODED_AUS]]) + "\n")
                written[f"{AUTOMATIC}:{images[k]}"] = {
                    "product": AUTOMATIC, "url": face_url(face), "image": images[k],
                    "present": present[k], "file": str(Path(automatic_dir) / name),
                    "line": line, "aus": values}
            (folder / name).write_text("".join(lines))
    return written



__all__ = ["face_url", "write_layout"]
