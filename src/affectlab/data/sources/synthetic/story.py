"""The synthetic benchmark's generative story: who is shown, with which labels, how.

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
5. **Image**: :func:`~affectlab.data.sources.synthetic.drawing.render_face` with random pose,
   illumination, noise, clutter and, with probability ``occlusion_prob``, an occluder.
6. **Annotation**: AUs whose region the occluder covers are unknown (999 in the CSV, mask False).
   Known AU labels are flipped with annotator noise: a present AU is missed with probability
   ``label_noise``; an absent AU is marked with probability label_noise · r / (1 − r), where r
   is the AU's population rate, so noise does not change the positive rates.

All splits are drawn from the same story with disjoint subjects. Every random number of subject
i of split s comes from ``SeedSequence(seed, spawn_key=(s, i, k))`` (k = 0 identity,
k = 1.. images), so the output is byte-identical for any number of workers, and a smaller
config reproduces the first subjects/images of a larger one.

:class:`GenerationParams` holds every number of the story; its digest names the folder the
files go to (:mod:`.files`), and :class:`~.benchmark.Synthetic` reads them back.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from affectlab.data.contract import EXPRESSIONS
from affectlab.data.sources.synthetic.drawing import render_face
from affectlab.data.sources.synthetic.faces import (
    SUPPORTED_AUS,
    FaceParams,
    occluded_aus,
    random_face,
    random_nuisance,
)

# Bump when the story or the renderer changes what a given parameter set produces: every cached
# dataset then gets a new hash and is regenerated.
GENERATOR_VERSION = 1

SPLITS: tuple[str, ...] = ("train", "unlabeled", "val", "test")
UNKNOWN = 999          # EmotioNet's sentinel for "not coded / not visible"

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

