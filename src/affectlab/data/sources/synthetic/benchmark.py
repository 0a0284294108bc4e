"""The embedded synthetic benchmark: faces with known AUs, expressions and valence/arousal.

Generative story (one draw per subject, then one per image):

1. **Subject**: an identity (:func:`~affectlab.data.sources.synthetic.faces.random_face`: face
   shape, colours, feature placement and a resting face), an *expressivity*
   e ~ U(EXPRESSIVITY_RANGE) that scales the subject's AU intensities, and a personal expression
   distribution
   π_s ~ Dirichlet(SUBJECT_EXPRESSION_CONCENTRATION · π) around the population's π
   (:data:`EXPRESSION_FREQUENCIES`: neutral and happiness common, fear and disgust rare).
2. **Expression** c ~ Categorical(π_s), in :data:`~affectlab.data.contract.EXPRESSIONS` order.
3. **AUs** (EMFACS-style prototypes, :data:`AU_PROTOTYPES`): AU a is present with probability
   1 − (1 − p_proto(c, a)) (1 − p_spont(a)), where p_spont is ``spontaneous_au_rate``
   (``blink_rate`` for AU43, so eye closure is mostly a blink). AU43 hides AU5 (a closed eye
   shows no lid raise). A present AU's intensity is min(1, e · Beta(α, β)), times
   SPONTANEOUS_INTENSITY_SCALE when it is not part of the prototype, and at least
   MIN_INTENSITY: weak AUs are present in the label but barely visible, like FACS A-level codes.
4. **Valence/arousal**: (v, a) = μ(c) · (0.5 + s) + N(0, va_noise²) clipped to [-1, 1], where
   μ(c) is :data:`VA_MEANS` and s is the mean intensity of the present prototype AUs.
5. **Image**: :func:`~affectlab.data.sources.synthetic.faces.render_face` with random pose,
   illumination, noise, clutter and, with probability ``occlusion_prob``, an occluder.
6. **Annotation**: AUs whose region the occluder covers are unknown (999 in the CSV, mask False).
   Known AU labels are flipped with annotator noise: a present AU is missed with probability
   ``label_noise``; an absent AU is marked with probability label_noise · r / (1 − r), where r
   is the AU's population rate, so noise does not change the positive rates.

All splits are drawn from the same story with disjoint subjects. Every random number of subject
i of split s comes from ``SeedSequence(seed, spawn_key=(s, i, k))`` (k = 0 identity,
k = 1.. images), so the output is byte-identical for any number of workers, and a smaller
config reproduces the first subjects/images of a larger one.

On disk (``root/<hash of the generation parameters>/``): ``images/<split>/<subject>_<k>.png``,
``labels.csv`` (``path,split,subject,expression,valence,arousal,AU1,...`` over every supported
AU, values 1/0/999) and ``meta.json`` (parameters, hash, counts, statistics), written last.
Generation goes to a temporary folder that is renamed into place when complete.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from affectlab.data.contract import (
    EXPRESSIONS,
    DataError,
    FaceData,
    FaceImageDataset,
    LabelTable,
    check_subject_exclusive,
    empty_labels,
)
from affectlab.data.sources.synthetic.faces import (
    SUPPORTED_AUS,
    FaceParams,
    occluded_aus,
    random_face,
    random_nuisance,
    render_face,
)
from affectlab.data.sources.synthetic.variants import (
    POOL_LABELS,
    PoolWithRenderings,
    alternate_path,
    one_task_per_face,
    reveal_labels,
)

# Bump when the story or the renderer changes what a given parameter set produces: every cached
# dataset then gets a new hash and is regenerated.
GENERATOR_VERSION = 1

SPLITS: tuple[str, ...] = ("train", "unlabeled", "val", "test")
DEFAULT_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43)
UNKNOWN = 999          # EmotioNet's sentinel for "not coded / not visible"
LABELS_FILE = "labels.csv"
META_FILE = "meta.json"
CSV_COLUMNS: tuple[str, ...] = ("path", "split", "subject", "expression", "valence", "arousal")

# Population expression frequencies (sum to 1), in EXPRESSIONS order.
EXPRESSION_FREQUENCIES: dict[str, float] = {
    "neutral": 0.30, "anger": 0.08, "disgust": 0.05, "fear": 0.04,
    "happiness": 0.27, "sadness": 0.12, "surprise": 0.14,
}
# P(AU present | expression) from the EMFACS prototypes; AUs not listed are spontaneous only.
AU_PROTOTYPES: dict[str, dict[int, float]] = {
    "neutral": {},
    "anger": {4: 0.90, 5: 0.55, 7: 0.70, 17: 0.50, 23: 0.60},
    "disgust": {9: 0.85, 10: 0.70, 17: 0.50, 4: 0.50, 15: 0.30, 25: 0.30},
    "fear": {1: 0.85, 2: 0.70, 4: 0.75, 5: 0.80, 20: 0.80, 25: 0.70, 26: 0.50},
    "happiness": {6: 0.75, 12: 0.95, 25: 0.55, 26: 0.15},
    "sadness": {1: 0.85, 4: 0.75, 15: 0.70, 17: 0.55},
    "surprise": {1: 0.90, 2: 0.90, 5: 0.75, 25: 0.70, 26: 0.80},
}
# Mean (valence, arousal) per expression at mean prototype intensity 0.5.
VA_MEANS: dict[str, tuple[float, float]] = {
    "neutral": (0.0, -0.20), "anger": (-0.60, 0.60), "disgust": (-0.55, 0.25),
    "fear": (-0.60, 0.70), "happiness": (0.65, 0.30), "sadness": (-0.55, -0.45),
    "surprise": (0.10, 0.70),
}
SUBJECT_EXPRESSION_CONCENTRATION = 30.0   # Dirichlet concentration of a subject's π_s
EXPRESSIVITY_RANGE = (0.7, 1.3)           # per-subject intensity multiplier
SPONTANEOUS_INTENSITY_SCALE = 0.7         # spontaneous AUs are weaker than prototype AUs
MIN_INTENSITY = 0.05


@dataclass(frozen=True)
class GenerationParams:
    """Every parameter that changes the generated files (and so the dataset hash)."""

    seed: int
    image_size: int
    num_subjects_train: int
    images_per_subject_train: int
    num_subjects_unlabeled: int
    images_per_subject_unlabeled: int
    num_subjects_val: int
    images_per_subject_val: int
    num_subjects_test: int
    images_per_subject_test: int
    rotation_deg: float
    scale_jitter: float
    shift_jitter: float
    yaw_jitter: float
    illumination: float
    noise_std: float
    clutter: int
    occlusion_prob: float
    label_noise: float
    spontaneous_au_rate: float
    blink_rate: float
    intensity_alpha: float
    intensity_beta: float
    va_noise: float
    au_effect_scale: float
    pool_identities: str = "new"    # new | shared: the pool's faces are the labelled subjects'
    # population expression frequencies in EXPRESSIONS order (None: EXPRESSION_FREQUENCIES)
    expression_frequencies: tuple[float, ...] | None = None
    # renderings of each pool face: 2 adds a second one (same face, same AU state and labels,
    # new pose, lighting, clutter, occluder and noise), read as the pool's ``image_alt``
    pool_renderings: int = 1
    # the face of that second rendering: same (the pool face's person) | other (a new person
    # drawn for it, showing the same AU state): a view that changes the identity too
    pool_rendering_face: str = "same"

    def split_sizes(self) -> dict[str, tuple[int, int]]:
        """``{split: (subjects, images per subject)}``."""
        return {split: (getattr(self, f"num_subjects_{split}"),
                        getattr(self, f"images_per_subject_{split}")) for split in SPLITS}

    def first_subject_ids(self) -> dict[str, int]:
        """Subject ids are consecutive across splits: train first, then unlabeled, val, test."""
        first, start = {}, 0
        for split, (subjects, _) in self.split_sizes().items():
            first[split] = start
            start += subjects
        return first

    def digest(self) -> str:
        """12 hex digits of SHA-256 over the parameters and GENERATOR_VERSION (the defaults
        ``pool_identities="new"``, ``pool_renderings=1`` and ``pool_rendering_face="same"``
        are left out, so benchmarks made before them keep their hash)."""
        fields = asdict(self)
        if fields["pool_identities"] == "new":
            del fields["pool_identities"]
        if fields["pool_renderings"] == 1:
            del fields["pool_renderings"]
        if fields["pool_rendering_face"] == "same":
            del fields["pool_rendering_face"]
        if fields["expression_frequencies"] is None:
            del fields["expression_frequencies"]
        else:
            fields["expression_frequencies"] = list(fields["expression_frequencies"])
        payload = json.dumps({"generator_version": GENERATOR_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# The story.


@dataclass(frozen=True)
class Subject:
    """One identity: its face, its expressivity and its personal expression distribution."""

    face: FaceParams
    expressivity: float
    expression_probs: np.ndarray  # (7,), EXPRESSIONS order


@dataclass(frozen=True)
class ImageLabels:
    """What the story drew for one image, and what the annotator wrote down.

    ``intensity`` covers every supported AU (0 = absent); ``au_labels`` maps every supported AU
    to 1, 0 or UNKNOWN after occlusion and label noise.
    """

    expression: int
    intensity: dict[int, float]
    valence: float
    arousal: float
    au_labels: dict[int, int]


def _expression_vector(frequencies: tuple[float, ...] | None = None) -> np.ndarray:
    """Population expression frequencies in EXPRESSIONS order (default: the benchmark's)."""
    if frequencies is not None:
        return np.asarray(frequencies, dtype=np.float64)
    return np.array([EXPRESSION_FREQUENCIES[e] for e in EXPRESSIONS], dtype=np.float64)


@functools.lru_cache(maxsize=None)
def _prototype_matrix() -> np.ndarray:
    """(7, num supported AUs) matrix of P(AU present | expression) from the prototypes."""
    matrix = np.zeros((len(EXPRESSIONS), len(SUPPORTED_AUS)))
    for e, expression in enumerate(EXPRESSIONS):
        for au, p in AU_PROTOTYPES[expression].items():
            matrix[e, SUPPORTED_AUS.index(au)] = p
    return matrix


def spontaneous_rates(params: GenerationParams) -> np.ndarray:
    """(num supported AUs,) per-image probability of each AU outside the prototypes."""
    rates = np.full(len(SUPPORTED_AUS), params.spontaneous_au_rate)
    rates[SUPPORTED_AUS.index(43)] = params.blink_rate
    return rates


@functools.lru_cache(maxsize=64)
def au_base_rates(params: GenerationParams) -> dict[int, float]:
    """Population rate r(a) = Σ_c π(c) [1 − (1 − p_proto(c, a))(1 − p_spont(a))] of each AU,
    before occlusion and label noise (AU43 hiding AU5 is ignored: it is a small correction)."""
    present = 1 - (1 - _prototype_matrix()) * (1 - spontaneous_rates(params))[None, :]
    rates = _expression_vector(params.expression_frequencies) @ present
    return {au: float(r) for au, r in zip(SUPPORTED_AUS, rates)}


def sample_subject(rng: np.random.Generator,
                   frequencies: tuple[float, ...] | None = None) -> Subject:
    """Draw an identity, its expressivity and its expression distribution (around the
    population ``frequencies``, default the benchmark's)."""
    face = random_face(rng)
    expressivity = float(rng.uniform(*EXPRESSIVITY_RANGE))
    probs = rng.dirichlet(SUBJECT_EXPRESSION_CONCENTRATION * _expression_vector(frequencies))
    return Subject(face=face, expressivity=expressivity, expression_probs=probs)


def sample_labels(rng: np.random.Generator, subject: Subject, params: GenerationParams,
                  hidden_aus: frozenset[int] | None = None) -> ImageLabels:
    """Draw expression, AU intensities and valence/arousal of one image (steps 2–4 of the
    story), then annotate: AUs in ``hidden_aus`` become UNKNOWN, the rest get label noise."""
    num_aus = len(SUPPORTED_AUS)
    expression = int(rng.choice(len(EXPRESSIONS), p=subject.expression_probs))
    proto = _prototype_matrix()[expression]
    from_prototype = rng.random(num_aus) < proto
    spontaneous = rng.random(num_aus) < spontaneous_rates(params)
    present = from_prototype | spontaneous
    if present[SUPPORTED_AUS.index(43)]:
        present[SUPPORTED_AUS.index(5)] = False
    strength = (rng.beta(params.intensity_alpha, params.intensity_beta, num_aus)
                * subject.expressivity)
    strength = np.where(from_prototype, strength, strength * SPONTANEOUS_INTENSITY_SCALE)
    intensity = np.where(present, np.clip(strength, MIN_INTENSITY, 1.0), 0.0)

    prototype_present = present & from_prototype
    drive = float(intensity[prototype_present].mean()) if prototype_present.any() else 0.0
    mean_v, mean_a = VA_MEANS[EXPRESSIONS[expression]]
    va = np.array([mean_v, mean_a]) * (0.5 + drive) + rng.normal(0.0, params.va_noise, 2)
    va = np.clip(va, -1.0, 1.0)

    base = au_base_rates(params)
    rates = np.array([base[au] for au in SUPPORTED_AUS])
    false_positive = params.label_noise * rates / np.maximum(1 - rates, 1e-6)
    flip_draw = rng.random(num_aus)
    flipped = np.where(present, flip_draw < params.label_noise, flip_draw < false_positive)
    observed = present ^ flipped
    hidden = hidden_aus or frozenset()
    labels = {au: (UNKNOWN if au in hidden else int(observed[i]))
              for i, au in enumerate(SUPPORTED_AUS)}
    return ImageLabels(
        expression=expression,
        intensity={au: float(intensity[i]) for i, au in enumerate(SUPPORTED_AUS)},
        valence=float(va[0]), arousal=float(va[1]), au_labels=labels,
    )


def draw_nuisance(rng: np.random.Generator, subject: Subject, params: GenerationParams) -> Any:
    """Pose, lighting, clutter, occluder and noise of one image of ``subject``."""
    return random_nuisance(
        rng, subject.face, rotation_deg=params.rotation_deg, scale_jitter=params.scale_jitter,
        shift_jitter=params.shift_jitter, yaw_jitter=params.yaw_jitter,
        illumination=params.illumination, noise_std=params.noise_std, clutter=params.clutter,
        occlusion_prob=params.occlusion_prob)


def sample_image(rng: np.random.Generator, subject: Subject,
                 params: GenerationParams) -> tuple[np.ndarray, ImageLabels]:
    """One image of ``subject``: nuisances first (they decide which AUs are hidden), then the
    labels, then the rendering. Returns the uint8 (H, W, 3) image and its labels."""
    nuisance = draw_nuisance(rng, subject, params)
    labels = sample_labels(rng, subject, params, occluded_aus(subject.face, nuisance.occluder))
    return render(subject, labels, nuisance, params), labels


def render(subject: Subject, labels: ImageLabels, nuisance: Any,
           params: GenerationParams) -> np.ndarray:
    """The uint8 (H, W, 3) image of ``subject`` showing ``labels``' AU intensities."""
    active = {au: v for au, v in labels.intensity.items() if v > 0}
    return render_face(subject.face, active, nuisance, params.image_size,
                       effect_scale=params.au_effect_scale)


def rng_for(params: GenerationParams, split: str, subject_index: int,
            k: int) -> np.random.Generator:
    """The generator of subject ``subject_index`` of ``split``: k = 0 draws the subject,
    k = 1 + j draws its image j."""
    sequence = np.random.SeedSequence(params.seed,
                                      spawn_key=(SPLITS.index(split), subject_index, k))
    return np.random.default_rng(sequence)


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
    if num_workers > 0:
        # spawn, not fork: the parent may hold torch threads, and fork with threads can deadlock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(num_workers, mp_context=context) as pool:
            results = list(pool.map(_generate_subject, tasks, chunksize=4))
    else:
        results = [_generate_subject(task) for task in tasks]

    header = [*CSV_COLUMNS, *[f"AU{au}" for au in SUPPORTED_AUS]]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for result in results:
        writer.writerows(result["rows"])
    (directory / LABELS_FILE).write_text(buffer.getvalue())

    train = [r for task, r in zip(tasks, results) if task[1] == "train"]
    pixels = max(sum(r["pixels"] for r in train), 1)
    mean = sum((r["pixel_sum"] for r in train), np.zeros(3)) / pixels
    var = sum((r["pixel_sq"] for r in train), np.zeros(3)) / pixels - mean**2
    rows = [row for r in results for row in r["rows"]]
    counts = {split: sum(1 for row in rows if row[1] == split) for split in SPLITS}
    au_values = np.array([[int(v) for v in row[len(CSV_COLUMNS):]] for row in rows]).reshape(
        len(rows), len(SUPPORTED_AUS))
    known = au_values != UNKNOWN
    meta = {
        "generator_version": GENERATOR_VERSION,
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
        "mean": [round(float(v), 6) for v in mean],
        "std": [round(float(v), 6) for v in np.sqrt(np.maximum(var, 1e-12))],
        "generation_seconds": round(time.perf_counter() - start, 2),
        "complete": True,
    }
    # meta.json last: its presence marks the folder as complete.
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def read_meta(directory: Path, expected_hash: str | None = None) -> dict[str, Any] | None:
    """The meta dict of a complete dataset folder, or None if it is missing, unreadable,
    incomplete, of another generator version or (when given) of another hash."""
    try:
        meta = json.loads((Path(directory) / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("complete") is not True:
        return None
    if meta.get("generator_version") != GENERATOR_VERSION:
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


# ---------------------------------------------------------------------------------------------
# The dataset.


class Synthetic:
    """The synthetic face benchmark (see the module doc for the generative story).

    Args:
        name: dataset name in logs and results.
        root: folder holding one subfolder per parameter hash; relative paths are resolved
            against the current working directory at construction.
        seed: seed of the whole generation.
        image_size: side of the square images in pixels.
        aus: AU numbers exposed as labels, in this order (a subset of ``SUPPORTED_AUS``);
            rendering always uses every supported AU, so this does not change the images.
        num_subjects_<split>, images_per_subject_<split>: sizes of the labelled training set,
            the unlabelled pool, validation and test (subject-exclusive).
        rotation_deg, scale_jitter, shift_jitter, yaw_jitter: pose nuisances (uniform ranges:
            degrees, relative scale, fraction of the image side, yaw in [-1, 1]).
        illumination: strength of the illumination gradient and gain jitter.
        noise_std: pixel noise std (intensities in [0, 1]).
        clutter: maximum number of background shapes.
        occlusion_prob: probability of an occluder; AUs it covers become unknown.
        label_noise: probability that the annotator misses a present AU (false positives are
            balanced so that AU rates do not change).
        spontaneous_au_rate: per-image probability of each AU outside the expression prototype.
        blink_rate: per-image probability of AU43 (eyes closed) outside the prototypes.
        intensity_alpha, intensity_beta: Beta distribution of AU intensities (before the
            subject's expressivity).
        va_noise: std of the Gaussian noise on valence and arousal.
        au_effect_scale: multiplies every rendered AU displacement (difficulty: < 1 subtler).
        oracle: if True, the unlabelled pool keeps its labels and joins ``train`` (the upper
            bound of semi-supervised methods); ``unlabeled`` is then None.
        train_split: ``train`` (default) or ``pool``: train on the pool's faces instead of the
            labelled set (pre-training stages: another, larger set of other people, as
            MS-Celeb-1M or AffectNet are to EmotioNet); ``unlabeled`` is then None and val /
            test are unchanged.
        pool_labels: with ``train_split=pool``, the pool's labels revealed (``expr``, ``va``,
            ``au``; the subject ids always are, for identity pre-training); the others stay
            unknown.
        train_labels: ``all`` (default) or ``one_task``: each labelled training face keeps
            the labels of one task (AU, expression or valence/arousal, drawn per face), as
            most Aff-Wild2 frames do (:func:`one_task_per_face`).
        pool_renderings: 1 (default) or 2: each pool face is rendered a second time (same
            face and AU state, new pose, lighting, clutter, occluder and noise), read as the
            pool samples' ``image_alt`` (:class:`PoolWithRenderings`): a perturbation that
            changes exactly the generator's nuisances.
        pool_rendering_face: ``same`` (default) or ``other``: the second rendering shows the
            pool face's AU state on the face of a new person drawn for it (its own identity,
            same AU intensities): a perturbation that changes the identity too, which no
            augmentation of a real image can.
        pool_identities: ``new`` (default: the pool's subjects are people seen nowhere else) or
            ``shared`` (pool subject i is labelled subject i mod num_subjects_train, in new
            images: the pool carries the labelled identities, like unlabelled frames of the
            labelled videos).
        num_workers: processes for the one-off generation (0: in this process).

    ``aus``, ``oracle``, ``train_split``, ``pool_labels``, ``train_labels``, ``name``,
    ``root`` and ``num_workers`` do not change the generated files; every other argument does
    and is part of the folder's hash.
    """

    def __init__(
        self,
        *,
        name: str = "synthetic",
        root: str = "data/synthetic",
        seed: int = 0,
        image_size: int = 64,
        aus: list[int] | tuple[int, ...] = DEFAULT_AUS,
        num_subjects_train: int = 40,
        images_per_subject_train: int = 15,
        num_subjects_unlabeled: int = 200,
        images_per_subject_unlabeled: int = 40,
        num_subjects_val: int = 40,
        images_per_subject_val: int = 25,
        num_subjects_test: int = 80,
        images_per_subject_test: int = 25,
        rotation_deg: float = 10.0,
        scale_jitter: float = 0.08,
        shift_jitter: float = 0.05,
        yaw_jitter: float = 0.5,
        illumination: float = 0.35,
        noise_std: float = 0.03,
        clutter: int = 5,
        occlusion_prob: float = 0.15,
        label_noise: float = 0.03,
        spontaneous_au_rate: float = 0.03,
        blink_rate: float = 0.06,
        intensity_alpha: float = 2.0,
        intensity_beta: float = 2.0,
        va_noise: float = 0.12,
        au_effect_scale: float = 1.0,
        pool_identities: str = "new",
        expression_frequencies: list[float] | None = None,
        oracle: bool = False,
        train_split: str = "train",
        pool_labels: list[str] | tuple[str, ...] = ("expr",),
        train_labels: str = "all",
        pool_renderings: int = 1,
        pool_rendering_face: str = "same",
        num_workers: int = 0,
    ) -> None:
        self.name = name
        root_path = Path(root).expanduser()
        self.root = root_path if root_path.is_absolute() else Path.cwd() / root_path
        self.aus = [int(a) for a in aus]
        unknown = [a for a in self.aus if a not in SUPPORTED_AUS]
        if unknown:
            raise ValueError(f"dataset.aus contains unsupported AU(s) {unknown}; the synthetic "
                             f"benchmark supports AUs {list(SUPPORTED_AUS)}")
        if len(set(self.aus)) != len(self.aus):
            raise ValueError(f"dataset.aus lists an AU twice: {self.aus}")
        self.oracle = bool(oracle)
        if train_split not in ("train", "pool"):
            raise ValueError(f"dataset.train_split={train_split!r}: use train (the labelled "
                             "set) or pool (the pool's faces, for pre-training)")
        unknown_labels = sorted(set(pool_labels) - set(POOL_LABELS))
        if unknown_labels:
            raise ValueError(f"dataset.pool_labels={list(pool_labels)}: {unknown_labels} not "
                             f"among {list(POOL_LABELS)} (subject ids are always revealed)")
        if train_split == "pool" and oracle:
            raise ValueError("dataset.train_split=pool and dataset.oracle=true exclude each "
                             "other: the oracle adds the labelled pool to the labelled set")
        if train_labels not in ("all", "one_task"):
            raise ValueError(f"dataset.train_labels={train_labels!r}: use all (every labelled "
                             "face carries AU, expression and valence/arousal labels) or "
                             "one_task (each carries one of them)")
        self.train_labels = train_labels
        self.train_split = train_split
        self.pool_labels = tuple(pool_labels)
        self.num_workers = int(num_workers)
        self.params = GenerationParams(
            seed=int(seed), image_size=int(image_size),
            num_subjects_train=int(num_subjects_train),
            images_per_subject_train=int(images_per_subject_train),
            num_subjects_unlabeled=int(num_subjects_unlabeled),
            images_per_subject_unlabeled=int(images_per_subject_unlabeled),
            num_subjects_val=int(num_subjects_val),
            images_per_subject_val=int(images_per_subject_val),
            num_subjects_test=int(num_subjects_test),
            images_per_subject_test=int(images_per_subject_test),
            rotation_deg=float(rotation_deg), scale_jitter=float(scale_jitter),
            shift_jitter=float(shift_jitter), yaw_jitter=float(yaw_jitter),
            illumination=float(illumination), noise_std=float(noise_std), clutter=int(clutter),
            occlusion_prob=float(occlusion_prob), label_noise=float(label_noise),
            spontaneous_au_rate=float(spontaneous_au_rate), blink_rate=float(blink_rate),
            intensity_alpha=float(intensity_alpha), intensity_beta=float(intensity_beta),
            va_noise=float(va_noise), au_effect_scale=float(au_effect_scale),
            pool_identities=str(pool_identities), pool_renderings=int(pool_renderings),
            pool_rendering_face=str(pool_rendering_face),
            expression_frequencies=(None if expression_frequencies is None
                                    else tuple(float(f) for f in expression_frequencies)),
        )
        self._validate()

    def _validate(self) -> None:
        p = self.params
        if p.image_size < 16:
            raise ValueError(f"dataset.image_size={p.image_size} is too small; use >= 16")
        for split, (subjects, images) in p.split_sizes().items():
            if subjects < 0 or images < 0:
                raise ValueError(f"dataset sizes of '{split}' must be >= 0, got {subjects} x "
                                 f"{images}")
            if split != "unlabeled" and subjects * images == 0:
                raise ValueError(f"dataset split '{split}' is empty ({subjects} subjects x "
                                 f"{images} images); it needs at least one image")
        for key in ("occlusion_prob", "label_noise", "spontaneous_au_rate", "blink_rate"):
            value = getattr(p, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"dataset.{key}={value} must be a probability in [0, 1]")
        for key in ("scale_jitter", "shift_jitter", "yaw_jitter", "illumination", "noise_std",
                    "va_noise", "au_effect_scale", "rotation_deg", "clutter"):
            if getattr(p, key) < 0:
                raise ValueError(f"dataset.{key}={getattr(p, key)} must be >= 0")
        if p.scale_jitter >= 1:
            raise ValueError(f"dataset.scale_jitter={p.scale_jitter} must be < 1")
        freqs = p.expression_frequencies
        if freqs is not None and (len(freqs) != len(EXPRESSIONS) or min(freqs) <= 0
                                  or abs(sum(freqs) - 1.0) > 1e-6):
            raise ValueError(f"dataset.expression_frequencies={list(freqs)}: give "
                             f"{len(EXPRESSIONS)} positive frequencies summing to 1, in the "
                             f"order {list(EXPRESSIONS)}")
        if p.intensity_alpha <= 0 or p.intensity_beta <= 0:
            raise ValueError("dataset.intensity_alpha and intensity_beta must be > 0")
        if p.pool_renderings not in (1, 2):
            raise ValueError(f"dataset.pool_renderings={p.pool_renderings}: 1 (one image per pool "
                             "face) or 2 (a second rendering of each, read as image_alt)")
        if p.pool_rendering_face not in ("same", "other"):
            raise ValueError(f"dataset.pool_rendering_face={p.pool_rendering_face!r}: use same "
                             "(the pool face's person) or other (a new person, same AU state)")
        if p.pool_rendering_face == "other" and p.pool_renderings == 1:
            raise ValueError("dataset.pool_rendering_face=other changes the pool's second "
                             "rendering, which dataset.pool_renderings=1 does not make: set "
                             "dataset.pool_renderings=2")
        if p.pool_identities not in ("new", "shared"):
            raise ValueError(f"dataset.pool_identities={p.pool_identities!r}: use new or shared")

    @property
    def dataset_dir(self) -> Path:
        """``root/<hash>``: where this parameter set's files live."""
        return self.root / self.params.digest()

    def generate(self) -> dict[str, Any]:
        """Generate the files unless a complete copy exists; return its meta dict.

        Generation writes into ``root/.tmp-<hash>-<pid>-<random>`` and renames it to
        ``root/<hash>`` when complete, so an interrupted run never leaves a folder that is
        trusted later, and concurrent runs (a sweep) cannot corrupt each other.
        """
        final = self.dataset_dir
        digest = self.params.digest()
        meta = read_meta(final, digest)
        if meta is not None:
            return meta
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"dataset.root={self.root} cannot be created ({err.strerror}); set "
                            "dataset.root to a writable folder.") from None
        temporary = self.root / f".tmp-{digest}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            meta = generate_dataset(self.params, temporary, self.num_workers)
            if final.exists() and read_meta(final, digest) is None:
                # A folder without a valid meta.json is never trusted: move it away first.
                stale = self.root / f".stale-{digest}-{uuid.uuid4().hex[:8]}"
                final.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            try:
                temporary.rename(final)
            except OSError:
                # Another process finished the same dataset first; use its copy.
                existing = read_meta(final, digest)
                if existing is None:
                    raise
                meta = existing
        finally:
            if temporary.exists():
                shutil.rmtree(temporary, ignore_errors=True)
        return meta

    def check_images(self, tables: dict[str, LabelTable]) -> None:
        """Every image of every split readable
        (:func:`~affectlab.data.sources.on_disk.readable_images`: cheap checks, cached by path,
        size and mtime), so a damaged file stops the run before it trains rather than when the
        test split is first read."""
        from affectlab.data.sources.on_disk import Problems, readable_images

        table = LabelTable.concat(list(tables.values()))
        paths = list(table.image_paths)
        if self.params.pool_renderings > 1:
            paths += [alternate_path(path) for path in tables["unlabeled"].image_paths]
        try:
            readable_images(table.root, paths, Problems("raise"),
                            cache_file=self.dataset_dir / "images_checked.npy")
        except DataError as err:
            message = str(err).split(" (set dataset.on_error")[0]
            raise DataError(f"{message}. The synthetic benchmark is generated: delete "
                            f"{self.dataset_dir} to regenerate it.") from None

    def build(self) -> FaceData:
        """Generate if needed, then read the labels and images back like a real dataset.

        ``mean``/``std`` are the per-channel statistics of the labelled training images (also
        in oracle mode), computed once during generation and stored in ``meta.json``.
        """
        meta = self.generate()
        tables = read_labels_csv(self.dataset_dir / LABELS_FILE, self.aus)
        # train and pool may share subjects (pool_identities=shared); val and test never do
        check_subject_exclusive({"train + unlabeled": LabelTable.concat(
            [tables["train"], tables["unlabeled"]]), "val": tables["val"], "test": tables["test"]})
        expected = meta["counts"]
        for split, table in tables.items():
            if len(table) != expected.get(split):
                raise DataError(f"{self.dataset_dir / LABELS_FILE} has {len(table)} '{split}' rows "
                                f"but meta.json says {expected.get(split)}; delete "
                                f"{self.dataset_dir} to regenerate it.")
        self.check_images(tables)
        size = self.params.image_size
        train, pool = tables["train"], tables["unlabeled"]
        if self.oracle:
            train = LabelTable.concat([train, pool])
            unlabeled = None
        elif self.train_split == "pool":
            train, unlabeled = reveal_labels(pool, self.pool_labels), None
        else:
            pool_class = (FaceImageDataset if self.params.pool_renderings == 1
                          else PoolWithRenderings)
            unlabeled = pool_class(pool.unlabeled(), image_size=size) if len(pool) else None
        if self.train_labels == "one_task":
            train = one_task_per_face(train, self.params.seed)
        return FaceData(
            name=self.name,
            train=FaceImageDataset(train, image_size=size),
            val=FaceImageDataset(tables["val"], image_size=size),
            test=FaceImageDataset(tables["test"], image_size=size),
            unlabeled=unlabeled,
            label_names={"au": [f"AU{au}" for au in self.aus], "expr": list(EXPRESSIONS),
                         "va": ["valence", "arousal"]},
            mean=tuple(float(v) for v in meta["mean"]),
            std=tuple(float(v) for v in meta["std"]),
        )
