"""The synthetic benchmark on disk: writing one parameter set's files, reading them back.

On disk (``root/<hash of the generation parameters>/``): ``images/<split>/<subject>_<k>.png``,
``labels.csv`` (``path,split,subject,expression,valence,arousal,AU1,...`` over every supported
AU, values 1/0/999) and ``meta.json`` (parameters, hash, counts, statistics), written last.
Generation goes to a temporary folder that :meth:`~.benchmark.Synthetic.generate` renames into
place when complete. Every image comes from the story (:mod:`.story`); the labels are read
back through the same :class:`~affectlab.data.contract.LabelTable` as every real dataset's.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from affectlab.data.contract import EXPRESSIONS, DataError, LabelTable, empty_labels
from affectlab.data.sources.synthetic import story
from affectlab.data.sources.synthetic.faces import SUPPORTED_AUS
from affectlab.data.sources.synthetic.story import (
    SPLITS,
    UNKNOWN,
    GenerationParams,
    draw_nuisance,
    render,
    rng_for,
    sample_image,
    sample_subject,
)
from affectlab.data.sources.synthetic.variants import alternate_path

LABELS_FILE = "labels.csv"
META_FILE = "meta.json"
CSV_COLUMNS: tuple[str, ...] = ("path", "split", "subject", "expression", "valence", "arousal")


def image_path(split: str, subject_id: int, k: int) -> str:
    """Path of image k of a subject, relative to the dataset folder."""
    return f"images/{split}/{subject_id:05d}_{k:03d}.png"


def _generate_subject(task: tuple[GenerationParams, str, int, int, str]) -> dict[str, Any]:
    """Render and save every image of one subject; return its CSV rows and pixel sums.

    Top-level (not a closure) so that worker processes can run it.
    """
    params, split, subject_index, subject_id, directory = task
    images_per_subject = params.split_sizes()[split][1]
    first_file = 0
    if split == "unlabeled" and params.pool_identities == "shared":
        # pool "subject" i shows labelled subject i mod n (new images of the same face): the
        # pool then carries the labelled identities, as a video's unlabelled frames would
        own = subject_index % params.num_subjects_train
        subject = sample_subject(rng_for(params, "train", own, 0), params.expression_frequencies)
        subject_id = params.first_subject_ids()["train"] + own
        first_file = (subject_index // params.num_subjects_train) * images_per_subject
    else:
        subject = sample_subject(rng_for(params, split, subject_index, 0),
                                 params.expression_frequencies)
    rows = []
    pixel_sum = np.zeros(3)
    pixel_sq = np.zeros(3)
    for k in range(images_per_subject):
        image, labels = sample_image(rng_for(params, split, subject_index, k + 1), subject, params)
        relative = image_path(split, subject_id, first_file + k)
        Image.fromarray(image).save(Path(directory) / relative, format="PNG")
        for rendering in range(1, params.pool_renderings if split == "unlabeled" else 1):
            # the same AU state under a nuisance of its own draw, on the same face or (face
            # "other") a new person's; the first rendering's draws are untouched, so its files
            # equal a one-rendering benchmark's
            other = np.random.default_rng(np.random.SeedSequence(
                params.seed, spawn_key=(SPLITS.index(split), subject_index, k + 1, rendering)))
            shown = (subject if params.pool_rendering_face == "same"
                     else sample_subject(other, params.expression_frequencies))
            again = render(shown, labels, draw_nuisance(other, shown, params), params)
            Image.fromarray(again).save(Path(directory) / alternate_path(relative, rendering),
                                        format="PNG")
        x = image.reshape(-1, 3).astype(np.float64) / 255.0
        pixel_sum += x.sum(0)
        pixel_sq += (x**2).sum(0)
        rows.append([relative, split, str(subject_id), EXPRESSIONS[labels.expression],
                     f"{labels.valence:.4f}", f"{labels.arousal:.4f}",
                     *[str(labels.au_labels[au]) for au in SUPPORTED_AUS]])
    return {"rows": rows, "pixel_sum": pixel_sum, "pixel_sq": pixel_sq,
            "pixels": images_per_subject * params.image_size**2}


def run_tasks(work: Callable[[Any], dict[str, Any]], tasks: list[Any],
              num_workers: int) -> list[dict[str, Any]]:
    """``work`` over ``tasks`` in order, in ``num_workers`` processes (0: here)."""
    if num_workers <= 0:
        return [work(task) for task in tasks]
    # spawn, not fork: the parent may hold torch threads, and fork with threads can deadlock.
    with ProcessPoolExecutor(num_workers,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(work, tasks, chunksize=4))


def write_labels(directory: Path, results: list[dict[str, Any]]) -> None:
    """``labels.csv`` from the generated subjects' (or videos') rows, in order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *[f"AU{au}" for au in SUPPORTED_AUS]])
    for result in results:
        writer.writerows(result["rows"])
    (directory / LABELS_FILE).write_text(buffer.getvalue())


def train_pixel_stats(tasks: list[tuple], results: list[dict[str, Any]]
                      ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the training split's pixels (in [0, 1]), from each
    result's ``pixel_sum``, ``pixel_sq`` and ``pixels``; task[1] is the split."""
    train = [r for task, r in zip(tasks, results) if task[1] == "train"]
    pixels = max(sum(r["pixels"] for r in train), 1)
    mean = sum((r["pixel_sum"] for r in train), np.zeros(3)) / pixels
    var = sum((r["pixel_sq"] for r in train), np.zeros(3)) / pixels - mean**2
    return ([round(float(v), 6) for v in mean],
            [round(float(v), 6) for v in np.sqrt(np.maximum(var, 1e-12))])


def generate_once(root: Path, final: Path, complete: Callable[[], dict[str, Any] | None],
                  write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The meta dict of ``final`` when ``complete()`` finds it whole, else ``write`` it into
    ``root/.tmp-<name>-<pid>-<random>`` and rename that to ``final``: an interrupted
    generation never leaves a folder that is trusted later, and concurrent runs (a sweep)
    cannot corrupt each other (the second to finish uses the first's copy)."""
    meta = complete()
    if meta is not None:
        return meta
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"dataset.root={root} cannot be created ({err.strerror}); set "
                        "dataset.root to a writable folder.") from None
    temporary = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        meta = write(temporary)
        if final.exists() and complete() is None:
            # a folder without a valid meta.json is never trusted: move it away first
            stale = root / f".stale-{final.name}-{uuid.uuid4().hex[:8]}"
            final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            temporary.rename(final)
        except OSError:
            existing = complete()          # another process finished the same dataset first
            if existing is None:
                raise
            meta = existing
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return meta


def generate_dataset(params: GenerationParams, directory: Path,
                     num_workers: int = 0) -> dict[str, Any]:
    """Write images, ``labels.csv`` and (last) ``meta.json`` of ``params`` into ``directory``.

    ``directory`` must not exist yet; callers generate into a temporary folder and rename it.
    Returns the meta dict. ``num_workers`` > 0 renders subjects in that many processes; the
    output is identical either way.
    """
    start = time.perf_counter()
    directory = Path(directory)
    directory.mkdir(parents=True)
    for split in SPLITS:
        (directory / "images" / split).mkdir(parents=True)
    first_ids = params.first_subject_ids()
    tasks = [(params, split, i, first_ids[split] + i, str(directory))
             for split, (subjects, _) in params.split_sizes().items() for i in range(subjects)]
    results = run_tasks(_generate_subject, tasks, num_workers)
    write_labels(directory, results)
    mean, std = train_pixel_stats(tasks, results)
    rows = [row for r in results for row in r["rows"]]
    counts = {split: sum(1 for row in rows if row[1] == split) for split in SPLITS}
    au_values = np.array([[int(v) for v in row[len(CSV_COLUMNS):]] for row in rows]).reshape(
        len(rows), len(SUPPORTED_AUS))
    known = au_values != UNKNOWN
    meta = {
        "generator_version": story.GENERATOR_VERSION,
        "hash": params.digest(),
        "params": asdict(params),
        "supported_aus": list(SUPPORTED_AUS),
        "counts": counts,
        "subjects": {split: n for split, (n, _) in params.split_sizes().items()},
        "expression_counts": {e: sum(1 for row in rows if row[3] == e) for e in EXPRESSIONS},
        "au_positive_rate": {f"AU{au}": round(float((au_values[:, i] == 1).sum()
                                                   / max(known[:, i].sum(), 1)), 4)
                             for i, au in enumerate(SUPPORTED_AUS)},
        "au_unknown_rate": {f"AU{au}": round(float(1 - known[:, i].mean()) if len(rows) else 0.0, 4)
                            for i, au in enumerate(SUPPORTED_AUS)},
        "mean": mean,
        "std": std,
        "generation_seconds": round(time.perf_counter() - start, 2),
        "complete": True,
    }
    # meta.json last: its presence marks the folder as complete.
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def checked_generator_version(option: str, asked: int | None, current: int) -> int:
    """The generator version a dataset config names (None: this code's), refused when this
    code generates another. The config's value is written into every run's resolved config,
    so a recipe refuses to reuse a run made on another version's data (same overrides, other
    data)."""
    if asked is not None and int(asked) != current:
        raise ValueError(f"{option}={asked}: this code generates version {current} (another "
                         f"version is other data): set {option}={current}, or use the affectlab "
                         f"release that generated version {asked}")
    return current


def read_meta(directory: Path, expected_hash: str | None = None) -> dict[str, Any] | None:
    """The meta dict of a complete dataset folder, or None if it is missing, unreadable,
    incomplete, of another generator version or (when given) of another hash."""
    try:
        meta = json.loads((Path(directory) / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("complete") is not True:
        return None
    # read through the module, never copied: one value (which the tests patch)
    if meta.get("generator_version") != story.GENERATOR_VERSION:
        return None
    if expected_hash is not None and meta.get("hash") != expected_hash:
        return None
    if not (Path(directory) / LABELS_FILE).is_file():
        return None
    return meta


# ---------------------------------------------------------------------------------------------
# Reading back, through the same types as every real dataset.


def read_labels_csv(path: Path, aus: Sequence[int]) -> dict[str, LabelTable]:
    """Parse a synthetic ``labels.csv`` into one :class:`LabelTable` per split.

    Image paths are relative to the CSV's folder. AU columns are taken in the order of ``aus``;
    999 becomes mask False. Raises :class:`DataError` naming the file and line of the first
    malformed line.
    """
    path = Path(path)
    aus = list(aus)
    try:
        text = path.read_text()
    except OSError as err:
        raise DataError(f"cannot read the label file {path} ({err}). Delete its folder to "
                        "regenerate the synthetic dataset.") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path} is empty. Delete its folder to regenerate the synthetic dataset.")
    required = [*CSV_COLUMNS, *[f"AU{au}" for au in aus]]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: header lacks column(s) {missing}; found {header}.")
    column = {name: i for i, name in enumerate(header)}
    au_columns = [column[f"AU{au}"] for au in aus]

    rows: dict[str, list[tuple]] = {split: [] for split in SPLITS}
    for record in reader:
        line = reader.line_num

        def fail(why: str, line: int = line) -> DataError:
            return DataError(f"{path}, line {line}: {why}. Fix or delete the line, or delete the "
                             "dataset folder to regenerate it.")

        if not record:
            continue
        if len(record) != len(header):
            raise fail(f"expected {len(header)} fields, found {len(record)}")
        split = record[column["split"]]
        if split not in rows:
            raise fail(f"unknown split '{split}' (expected one of {list(SPLITS)})")
        image = record[column["path"]]
        if not image or os.path.isabs(image):
            raise fail(f"image path '{image}' must be a non-empty relative path")
        try:
            subject = int(record[column["subject"]])
            valence = float(record[column["valence"]])
            arousal = float(record[column["arousal"]])
            au_values = [int(record[i]) for i in au_columns]
        except ValueError as err:
            raise fail(f"not a number ({err})") from None
        if subject < 0:
            raise fail(f"subject id {subject} is negative")
        if not (math.isfinite(valence) and math.isfinite(arousal)
                and -1 <= valence <= 1 and -1 <= arousal <= 1):
            raise fail(f"valence/arousal ({valence}, {arousal}) outside [-1, 1]")
        expression = record[column["expression"]]
        if expression not in EXPRESSIONS:
            raise fail(f"unknown expression '{expression}' (expected one of {list(EXPRESSIONS)})")
        bad = [v for v in au_values if v not in (0, 1, UNKNOWN)]
        if bad:
            raise fail(f"AU values must be 0, 1 or {UNKNOWN}, found {bad}")
        rows[split].append((image, subject, EXPRESSIONS.index(expression), valence, arousal,
                            au_values))

    tables = {}
    for split, split_rows in rows.items():
        labels = empty_labels(len(split_rows), num_aus=len(aus))
        if split_rows:
            au_matrix = np.array([r[5] for r in split_rows], dtype=np.int64).reshape(
                len(split_rows), len(aus))
            labels["subject"][:] = [r[1] for r in split_rows]
            labels["expr"][:] = [r[2] for r in split_rows]
            labels["expr_mask"][:] = True
            labels["va"][:] = [(r[3], r[4]) for r in split_rows]
            labels["va_mask"][:] = True
            labels["au_mask"][:] = au_matrix != UNKNOWN
            labels["au"][:] = np.where(au_matrix == 1, 1.0, 0.0)
        tables[split] = LabelTable(root=path.parent, image_paths=[r[0] for r in split_rows],
                                   **labels)
    return tables

