"""The columns ``affectlab-predict`` writes, and the writer that never leaves half a file.

One row per face per frame (a frame without a face: one row with ``success`` 0 and empty
predictions). Columns, in order (OpenFace 2's ``FeatureExtraction`` names where the meaning
is the same; see docs/predict.md):

=======================================  ==================================================
``file``                                 the input file, relative to the input folder
``frame``                                1-based frame number (OpenFace's); 1 for an image
``face_id``                              0-based rank of the face in its frame by detector
                                         confidence (not tracked across frames)
``timestamp``                            seconds from the video's start (OpenFace's)
``confidence``                           the face detector's probability (1 for a whole
                                         picture taken as the face)
``success``                              1 when a face was found and predicted on, else 0
``face_x``, ``face_y``,                  the face box in the frame's pixels (top-left corner,
``face_width``, ``face_height``          size); py-feat's FaceRect columns
``AU01_c`` …                             AU occurrence, 0/1, at the run's stored per-label
                                         threshold (OpenFace's ``_c``)
``AU01_p`` …                             AU probability (OpenFace has no such column; its
                                         ``_r`` is an intensity, which no run here predicts)
``expr_<name>`` …, ``expression``        expression probabilities, and the most probable
``valence``, ``arousal``                 in [−1, 1]
``attr_<name>_c``, ``attr_<name>_p``     facial attributes, as the AUs
=======================================  ==================================================

AU columns are named by FACS number (``AU1``, ``au01`` and ``1`` all give ``AU01``); a label
without one keeps its name. The writer writes to a temporary file beside the output and
renames it when everything is written: a stopped run leaves no half-written table.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import numpy as np

from affectlab.data.merge import facs_number
from affectlab.utils import default_file_mode

FRAME_COLUMNS = ("file", "frame", "face_id", "timestamp", "confidence", "success",
                 "face_x", "face_y", "face_width", "face_height")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", str(name)).strip("_") or "label"


def au_column(name: str) -> str:
    """``AU01`` for a label with a FACS number, else the label's name made safe."""
    number = facs_number(name)
    return f"AU{number:02d}" if number is not None else _safe(name)


def prediction_columns(label_names: Mapping[str, Sequence[str]]) -> list[str]:
    """The prediction columns of a run that learned ``label_names`` (identity classes are
    not written: they are the training subjects)."""
    columns: list[str] = []
    if "au" in label_names:
        names = [au_column(n) for n in label_names["au"]]
        columns += [f"{n}_c" for n in names] + [f"{n}_p" for n in names]
    if "expr" in label_names:
        columns += [f"expr_{_safe(n)}" for n in label_names["expr"]] + ["expression"]
    if "va" in label_names:
        columns += ["valence", "arousal"]
    if "attr" in label_names:
        names = [f"attr_{_safe(n)}" for n in label_names["attr"]]
        columns += [f"{n}_c" for n in names] + [f"{n}_p" for n in names]
    return columns


def prediction_values(outputs: Mapping[str, np.ndarray], label_names: Mapping[str, Sequence[str]],
                      thresholds: Mapping[str, Sequence[float]], row: int) -> list[Any]:
    """One face's prediction columns (:func:`prediction_columns` order) from the batch
    ``outputs`` (``{task: (N, C)}``) at ``row``."""
    values: list[Any] = []
    for task in ("au", "expr", "va", "attr"):
        if task not in label_names:
            continue
        scores = outputs[task][row]
        if task in ("au", "attr"):
            cut = np.asarray(thresholds.get(task, [0.5] * len(scores)))
            values += [int(s >= t) for s, t in zip(scores, cut)] + [float(s) for s in scores]
        elif task == "expr":
            values += [float(s) for s in scores] + [label_names["expr"][int(np.argmax(scores))]]
        else:
            values += [float(scores[0]), float(scores[1])]
    return values


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


class TableWriter:
    """Rows into ``path`` (CSV, or JSON lines for ``.jsonl``), written to a temporary file in
    the same folder and renamed over ``path`` by :meth:`commit`; closed without a commit
    (an error, an interrupt) the temporary file is removed."""

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"--out {self.path}: name a .csv or a .jsonl file")
        self.columns = list(columns)
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial",
                                        dir=self.path.parent)
        self.file: TextIO = os.fdopen(fd, "w", newline="", encoding="utf-8")
        if self.format == "csv":
            self.csv = csv.writer(self.file)
            self.csv.writerow(self.columns)

    def write(self, values: Sequence[Any]) -> None:
        if self.format == "csv":
            self.csv.writerow([_text(v) for v in values])
        else:
            record = {c: (None if isinstance(v, float) and math.isnan(v) else v)
                      for c, v in zip(self.columns, values)}
            self.file.write(json.dumps(record) + "\n")
        self.rows += 1

    def commit(self) -> None:
        """Everything written: flush, and rename the temporary file to ``path``."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.chmod(self.tmp, default_file_mode())     # not mkstemp's 0600
        os.replace(self.tmp, self.path)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if not self.file.closed:
            self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


__all__ = ["FRAME_COLUMNS", "TableWriter", "au_column", "prediction_columns",
           "prediction_values"]
