"""``affectlab-predict INPUT --runs RUN_DIR [RUN_DIR ...] --out FILE.csv``.

Reads an image, a folder (recursively) or a video (:mod:`.media`), cuts each picture's faces
as the runs' training data were cut (:mod:`.faces`), predicts them in batches with one run or
the mean of several (:mod:`.runs`; clip runs read each frame's clip and sound, :mod:`.clips`),
and writes one row per face per frame (:mod:`.table`).
A frame without a face gives a row with ``success`` 0; a file that cannot be read is named,
skipped and counted at the end (the only input given: an error). The table is written to a
temporary file and renamed at the end. Also ``python -m affectlab.predict``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from affectlab.data.audio import AudioError
from affectlab.engine import CheckpointError
from affectlab.predict.clips import ClipMaker
from affectlab.predict.faces import FACE_MODES, FaceCutter, FoundFace
from affectlab.predict.media import (
    Frame,
    InputError,
    UnreadableInput,
    is_video,
    list_inputs,
    read_frames,
)
from affectlab.predict.runs import Predictor, RunsError
from affectlab.predict.table import (
    FRAME_COLUMNS,
    TableWriter,
    prediction_columns,
    prediction_values,
)
from affectlab.utils import resolve_device

log = logging.getLogger("affectlab.predict")


@dataclass
class Summary:
    """What a prediction read and wrote."""

    files: int = 0
    frames: int = 0
    faces: int = 0
    frames_without_face: int = 0
    rows: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)   # one message per unreadable file

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")

    def lines(self) -> list[str]:
        out = [f"{self.frames} frame(s) of {self.files} file(s): {self.faces} face(s), "
               f"{self.frames_without_face} frame(s) without a face; {self.rows} row(s) "
               f"in {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)"]
        if self.skipped:
            out.append(f"{len(self.skipped)} file(s) could not be read and were skipped:")
            out += [f"  {message}" for message in self.skipped]
        return out


class _Batcher:
    """Rows waiting for their faces' predictions, written in input order once predicted."""

    def __init__(self, predictor: Predictor, writer: TableWriter, batch_size: int) -> None:
        self.predictor, self.writer, self.batch_size = predictor, writer, batch_size
        # (frame columns, the face's inputs {key: one sample} or None for a frame without one)
        self.rows: list[tuple[list, dict[str, np.ndarray] | None]] = []
        self.waiting = 0
        self.blank = [None] * (len(writer.columns) - len(FRAME_COLUMNS))

    def add(self, columns: list, inputs: dict[str, np.ndarray] | None) -> None:
        self.rows.append((columns, inputs))
        self.waiting += inputs is not None
        # rows without a face are flushed too: a long video without faces holds no memory
        if self.waiting >= self.batch_size or len(self.rows) >= 4 * self.batch_size:
            self.flush()

    def flush(self) -> None:
        faces = [inputs for _, inputs in self.rows if inputs is not None]
        outputs = (self.predictor({key: np.stack([f[key] for f in faces]) for key in faces[0]})
                   if faces else {})
        k = 0
        for columns, inputs in self.rows:
            if inputs is None:
                self.writer.write(columns + self.blank)
                continue
            self.writer.write(columns + prediction_values(
                outputs, self.predictor.label_names, self.predictor.thresholds, k))
            k += 1
        self.rows, self.waiting = [], 0


def _face_columns(frame: Frame, face_id: int | None, face: FoundFace | None) -> list:
    """The frame columns of one row (:data:`~.table.FRAME_COLUMNS`)."""
    if face is None:
        return [frame.file, frame.frame, None, frame.timestamp, 0.0, 0, None, None, None, None]
    x1, y1, x2, y2 = face.box
    return [frame.file, frame.frame, face_id, frame.timestamp, face.confidence, 1, x1, y1,
            x2 - x1, y2 - y1]


def _image_rows(frame: Frame, cutter: FaceCutter, batcher: _Batcher, summary: Summary) -> None:
    """A row per face of ``frame`` (a row with ``success`` 0 when it has none)."""
    faces = cutter(frame.picture)
    summary.faces += len(faces)
    summary.frames_without_face += not faces
    if not faces:
        batcher.add(_face_columns(frame, None, None), None)
    for face_id, face in enumerate(faces):
        batcher.add(_face_columns(frame, face_id, face),
                    {"image": face.pixels.transpose(2, 0, 1)})


def _clip_rows(frames: Iterable[Frame], cutter: FaceCutter, clips: ClipMaker, every: int,
               batcher: _Batcher, summary: Summary, bar: tqdm) -> None:
    """A row per predicted frame of one video for a clip run: its most confident face's clip
    and sound (:mod:`.clips`); frames between predicted ones only feed the clips."""
    for frame in frames:
        index = frame.frame - 1
        face = None
        if frame.kept or clips.needed(index, every):
            faces = cutter(frame.picture)
            face = faces[0] if faces else None
        clips.add(index, None if face is None else face.pixels.transpose(2, 0, 1))
        if not frame.kept:
            continue
        summary.frames += 1
        summary.faces += face is not None
        summary.frames_without_face += face is None
        batcher.add(_face_columns(frame, None if face is None else 0, face),
                    None if face is None else clips.inputs(index, frame.timestamp))
        bar.update()


def predict(source: str | Path, predictor: Predictor, cutter: FaceCutter, out: str | Path, *,
            every: int = 1, batch_size: int = 64, progress: bool = True) -> Summary:
    """Predict every face of ``source`` into ``out`` (see the module docstring)."""
    if every < 1 or batch_size < 1:
        raise InputError(f"--every {every} and --batch-size {batch_size} must be ≥ 1")
    root, files = list_inputs(source)
    clips = ClipMaker(predictor.clip) if predictor.clip is not None else None
    summary = Summary(files=len(files))
    columns = [*FRAME_COLUMNS, *prediction_columns(predictor.label_names)]
    start = time.perf_counter()
    with TableWriter(out, columns) as writer, \
            tqdm(total=None, unit="frame", disable=not progress, desc="predict") as bar:
        batcher = _Batcher(predictor, writer, batch_size)
        for relative in files:
            try:
                if clips is None:
                    for frame in read_frames(root, relative, every):
                        _image_rows(frame, cutter, batcher, summary)
                        summary.frames += 1
                        bar.update()
                elif not is_video(relative):
                    raise UnreadableInput(f"{root / relative} is an image: a clip run "
                                          "predicts on videos")
                else:
                    clips.start(root / relative)
                    _clip_rows(read_frames(root, relative, every, between=True), cutter,
                               clips, every, batcher, summary, bar)
            except (UnreadableInput, AudioError) as err:
                if len(files) == 1:
                    raise UnreadableInput(str(err)) from None
                log.warning("skipped: %s", err)
                summary.skipped.append(str(err))
        batcher.flush()
        if summary.frames == 0:
            raise InputError(f"nothing under {source} could be read ({len(summary.skipped)} "
                             "file(s) skipped); nothing written")
        summary.rows = writer.rows
        writer.commit()
    summary.seconds = time.perf_counter() - start
    return summary


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="affectlab-predict", description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="an image, a video, or a folder of them (recursive)")
    parser.add_argument("--runs", nargs="+", required=True,
                        help="run directories (several: their predictions averaged)")
    parser.add_argument("--out", required=True, help="FILE.csv, or FILE.jsonl for JSON lines")
    parser.add_argument("--every", type=int, default=1, help="every k-th frame of a video")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per forward pass")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument("--faces", choices=FACE_MODES, default="auto",
                        help="auto: as the runs' crop setting; whole: each picture is a face; "
                             "detect: find faces with MTCNN")
    parser.add_argument("--box-margin", type=float, default=None,
                        help="margin of a detected face's square box (default: the run's)")
    parser.add_argument("--checkpoint", default="best.pt", help="which checkpoint of each run")
    parser.add_argument("--thresholds", default=None,
                        help="an evaluation's metrics.json (or folder) whose per-label "
                             "thresholds to use (default: the runs' stored ones, averaged)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if Path(args.out).exists() and not args.overwrite:
            raise InputError(f"{args.out} exists; refusing to overwrite it (--overwrite "
                             "replaces it)")
        device = str(resolve_device(args.device))
        predictor = Predictor(args.runs, device=device, which=args.checkpoint,
                              thresholds=args.thresholds)
        cutter = FaceCutter(predictor.reading, faces=args.faces, box_margin=args.box_margin,
                            device="cuda" if device.startswith("cuda") else "cpu")
        log.info("%d run(s) on %s; %s", len(predictor.runs), device, cutter.describe())
        summary = predict(args.input, predictor, cutter, args.out, every=args.every,
                          batch_size=args.batch_size,
                          progress=not args.quiet and sys.stderr.isatty())
    except (InputError, UnreadableInput, RunsError, CheckpointError, FileNotFoundError,
            ValueError) as err:
        log.error("affectlab-predict: %s", " ".join(str(err).split()))
        sys.exit(2)
    log.info("\n".join([*summary.lines(), f"written: {args.out}"]))


__all__ = ["predict", "main", "Summary"]
