"""The synthetic benchmark's clip mode: the generative story of a video with sound.

One person per video (:func:`~.story.sample_subject`: face, expressivity, expression
distribution), ``frames`` frames at ``fps``:

1. **Episodes.** The video is a sequence of expression episodes, each of duration
   U(EPISODE_SECONDS) and expression c ~ π_s (the person's distribution).
2. **AU events.** In each episode every AU fires as in the image story (its prototype
   probability p_proto(c, a), or ``spontaneous_au_rate``) with a peak intensity
   min(1, e · Beta(α, β)) (× SPONTANEOUS_INTENSITY_SCALE outside the prototype, at least
   MIN_INTENSITY). Its intensity over time is an onset–apex–offset envelope: a rise of
   U(ONSET_SECONDS) from the episode's start, the apex, a fall of U(OFFSET_SECONDS) that ends
   with the episode — smoothstep ramps, so AUs have dynamics a clip can see and one frame
   cannot (the onset of a weak AU looks like its offset). Blinks (AU43) are their own events:
   ``blinks_per_second`` (0.3: 18 a minute, a person's rate at rest), BLINK_SECONDS long,
   independent of the episodes; a closed eye hides AU5 (as in the images).
3. **Labels per frame.** An AU is present at a frame while its envelope is at least
   PRESENT_FRACTION of its peak (a coder marks an event from a visible onset to the matching
   point of the offset); an annotator misses a whole event with probability ``label_noise``.
   The expression is the episode's. Valence/arousal follow the episode's target
   μ(c) · (0.5 + s) + N(0, va_noise²) (the image story's) through a first-order lag of time
   constant VA_LAG_SECONDS, so they change smoothly.
4. **Nuisances.** One draw per video (:func:`~.story.draw_nuisance`: background, lighting,
   occluder, pose), then a slow head motion over the frames: rotation, yaw and shift oscillate
   around the drawn pose (amplitudes HEAD_MOTION, frequencies U(HEAD_MOTION_HZ)); the pixel
   noise is drawn anew per frame. AUs under the occluder are unknown for the whole video.
5. **Sound** at ``sample_rate``: a voiced source whose loudness and pitch follow arousal —
   RMS level LEVEL_RANGE and fundamental F0_HZ · 2^(F0_OCTAVES · arousal) — with
   harmonics whose spectral tilt is the expression's (:data:`TIMBRE_TILT`) plus the speaker's
   own offset N(0, SPEAKER_TILT_SD²) and an offset per episode N(0, EPISODE_TILT_SD²), a
   syllable-rate amplitude modulation, and background noise. So audio carries arousal strongly,
   the expression weakly (through the tilt, blurred by the speaker and the episode, and through
   arousal), and the AUs not at all. Without the offsets (clip generator version 2) the tilt
   gave the expression away: TSAV with sound reached 90 % expression accuracy (docs/clips.md).

Every random number of video i of split s comes from ``SeedSequence(seed, spawn_key=(s, i,
k))`` (:func:`~.story.rng_for`): k = 0 the person, 1 the video's story, 2 its sound.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from affectlab.data.contract import EXPRESSIONS
from affectlab.data.sources.synthetic.faces import SUPPORTED_AUS, Nuisance, occluded_aus
from affectlab.data.sources.synthetic.story import (
    MIN_INTENSITY,
    SPONTANEOUS_INTENSITY_SCALE,
    UNKNOWN,
    VA_MEANS,
    GenerationParams,
    Subject,
    _prototype_matrix,
    draw_nuisance,
    spontaneous_rates,
)

EPISODE_SECONDS = (0.8, 2.0)
ONSET_SECONDS = (0.15, 0.5)
OFFSET_SECONDS = (0.2, 0.6)
BLINK_SECONDS = 0.16
PRESENT_FRACTION = 0.2
VA_LAG_SECONDS = 0.4
HEAD_MOTION = {"rotation_deg": 3.0, "yaw": 0.12, "shift": 0.01}
HEAD_MOTION_HZ = (0.1, 0.4)
F0_HZ = 140.0
F0_OCTAVES = 0.5                  # arousal −1 … 1 → 99 … 198 Hz
LEVEL_RANGE = (0.01, 0.15)        # RMS level of the voice at arousal −1 … 1, linear between
HARMONICS = 10
SYLLABLE_HZ = 4.0
AUDIO_NOISE = 0.004
#: spectral tilt of the voice's harmonics per expression (amplitude of harmonic k ∝ k^−tilt)
TIMBRE_TILT: dict[str, float] = {
    "neutral": 1.6, "anger": 0.9, "disgust": 1.3, "fear": 1.1, "happiness": 1.0,
    "sadness": 2.2, "surprise": 1.2,
}
SPEAKER_TILT_SD = 0.4            # a speaker's own timbre: about the spread of TIMBRE_TILT
EPISODE_TILT_SD = 0.3            # the same expression sounds different from episode to episode
MIN_TILT = 0.3


@dataclass(frozen=True)
class VideoLabels:
    """What the story drew for one video, per frame (F frames, A = SUPPORTED_AUS).

    Attributes:
        intensity: (F, A) float AU intensities (0 absent).
        au: (F, A) int labels 1 / 0 / UNKNOWN (occluded) as the annotator wrote them.
        expression: (F,) int expression index.
        va: (F, 2) float valence, arousal.
        nuisances: F per-frame :class:`~.faces.Nuisance`.
    """

    intensity: np.ndarray
    au: np.ndarray
    expression: np.ndarray
    va: np.ndarray
    nuisances: tuple[Nuisance, ...]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def envelope(times: np.ndarray, start: float, end: float, onset: float,
             offset: float) -> np.ndarray:
    """Onset–apex–offset envelope in [0, 1] at ``times`` (seconds): 0 before ``start``, a
    smoothstep rise over ``onset`` seconds, 1 at the apex, a smoothstep fall over ``offset``
    seconds ending at ``end``, 0 after (rise and fall shortened to fit a short event)."""
    length = max(end - start, 1e-6)
    onset, offset = min(onset, length / 2), min(offset, length / 2)
    rise = _smoothstep((times - start) / max(onset, 1e-6))
    fall = _smoothstep((end - times) / max(offset, 1e-6))
    return np.where((times >= start) & (times <= end), np.minimum(rise, fall), 0.0)


def sample_video(rng: np.random.Generator, subject: Subject, params: GenerationParams, *,
                 frames: int, fps: float, blinks_per_second: float = 0.3) -> VideoLabels:
    """Steps 1–4 of the story for one video of ``subject`` (``params``: the image story's
    knobs — label noise, spontaneous AUs, intensities, VA noise, nuisance ranges)."""
    times = np.arange(frames) / fps
    duration = frames / fps
    num_aus = len(SUPPORTED_AUS)
    intensity = np.zeros((frames, num_aus))
    coded = np.zeros((frames, num_aus), dtype=bool)
    expression = np.zeros(frames, dtype=np.int64)
    va_target = np.zeros((frames, 2))

    def add_event(a: int, peak: float, start: float, end: float) -> None:
        shape = envelope(times, start, end, float(rng.uniform(*ONSET_SECONDS)),
                         float(rng.uniform(*OFFSET_SECONDS)))
        intensity[:, a] = np.maximum(intensity[:, a], peak * shape)
        if rng.random() >= params.label_noise:           # the annotator saw the event
            coded[:, a] |= shape >= PRESENT_FRACTION

    start = 0.0
    while start < duration:
        end = min(start + float(rng.uniform(*EPISODE_SECONDS)), duration)
        c = int(rng.choice(len(EXPRESSIONS), p=subject.expression_probs))
        proto = _prototype_matrix()[c]
        from_prototype = rng.random(num_aus) < proto
        present = from_prototype | (rng.random(num_aus) < spontaneous_rates(params))
        present[SUPPORTED_AUS.index(43)] = False         # blinks are events of their own
        strength = rng.beta(params.intensity_alpha, params.intensity_beta, num_aus) \
            * subject.expressivity
        strength = np.where(from_prototype, strength, strength * SPONTANEOUS_INTENSITY_SCALE)
        peaks = np.clip(strength, MIN_INTENSITY, 1.0)
        for a in np.flatnonzero(present):
            add_event(int(a), float(peaks[a]), start, end)
        drive = float(peaks[present & from_prototype].mean()) if (present & from_prototype).any() \
            else 0.0
        mean_v, mean_a = VA_MEANS[EXPRESSIONS[c]]
        target = np.array([mean_v, mean_a]) * (0.5 + drive) + rng.normal(0, params.va_noise, 2)
        inside = (times >= start) & (times < end)
        expression[inside] = c
        va_target[inside] = np.clip(target, -1.0, 1.0)
        start = end
    blink = SUPPORTED_AUS.index(43)
    for moment in np.sort(rng.uniform(0, duration, rng.poisson(blinks_per_second * duration))):
        add_event(blink, 1.0, float(moment), float(moment) + BLINK_SECONDS)
    closed = intensity[:, blink] > 0.5                   # a closed eye shows no lid raise
    intensity[closed, SUPPORTED_AUS.index(5)] = 0.0
    coded[closed, SUPPORTED_AUS.index(5)] = False

    va = np.empty_like(va_target)                         # first-order lag towards the target
    keep = math.exp(-1.0 / (fps * VA_LAG_SECONDS))
    va[0] = va_target[0]
    for f in range(1, frames):
        va[f] = keep * va[f - 1] + (1 - keep) * va_target[f]

    base = draw_nuisance(rng, subject, params)
    phases = rng.uniform(0, 2 * math.pi, 4)
    rates = rng.uniform(*HEAD_MOTION_HZ, 4)
    seeds = rng.integers(2**31, size=frames)
    wave = [np.sin(2 * math.pi * rates[k] * times + phases[k]) for k in range(4)]
    nuisances = tuple(dataclasses.replace(
        base,
        rotation_deg=base.rotation_deg + HEAD_MOTION["rotation_deg"] * wave[0][f],
        yaw=float(np.clip(base.yaw + HEAD_MOTION["yaw"] * wave[1][f], -1, 1)),
        shift=(base.shift[0] + HEAD_MOTION["shift"] * wave[2][f],
               base.shift[1] + HEAD_MOTION["shift"] * wave[3][f]),
        noise_seed=int(seeds[f])) for f in range(frames))

    labels = coded.astype(np.int64)
    for au in occluded_aus(subject.face, base.occluder):
        labels[:, SUPPORTED_AUS.index(au)] = UNKNOWN
    return VideoLabels(intensity=intensity, au=labels, expression=expression,
                       va=va.astype(np.float32), nuisances=nuisances)


def synthesize_audio(rng: np.random.Generator, video: VideoLabels, *, fps: float,
                     sample_rate: int) -> np.ndarray:
    """Step 5: the (S,) float32 sound track of ``video`` in [−1, 1], S = frames / fps ·
    sample_rate. The harmonics' tilt at a frame is max(MIN_TILT, TIMBRE_TILT[c] + o_speaker +
    o_episode), o_speaker ~ N(0, SPEAKER_TILT_SD²) once per video, o_episode ~
    N(0, EPISODE_TILT_SD²) per run of frames with one expression."""
    frames = len(video.expression)
    episode_of_frame = np.concatenate([[0], np.cumsum(np.diff(video.expression) != 0)])
    frame_tilts = (np.array([TIMBRE_TILT[e] for e in EXPRESSIONS])[video.expression]
                   + rng.normal(0, SPEAKER_TILT_SD)
                   + rng.normal(0, EPISODE_TILT_SD, episode_of_frame[-1] + 1)[episode_of_frame])
    frame_tilts = np.maximum(frame_tilts, MIN_TILT)
    samples = int(round(frames / fps * sample_rate))
    t = np.arange(samples) / sample_rate
    frame_of = np.minimum((t * fps).astype(np.int64), frames - 1)
    arousal = np.interp(t, np.arange(frames) / fps, video.va[:, 1].astype(np.float64))
    f0 = F0_HZ * 2.0 ** (F0_OCTAVES * arousal)
    phase = 2 * math.pi * np.cumsum(f0) / sample_rate + rng.uniform(0, 2 * math.pi)
    tilts = frame_tilts[frame_of]
    voice = np.zeros(samples)
    for k in range(1, HARMONICS + 1):
        below_nyquist = k * f0 < sample_rate / 2
        voice += below_nyquist * k ** (-tilts) * np.sin(k * phase)
    voice /= np.sqrt(np.mean(voice**2)) + 1e-9           # unit RMS: the timbre keeps the level
    low, high = LEVEL_RANGE
    loudness = low + (high - low) * (arousal + 1) / 2
    syllables = 0.6 + 0.4 * np.abs(np.sin(math.pi * SYLLABLE_HZ * t + rng.uniform(0, math.pi)))
    track = loudness * syllables * voice + rng.normal(0, AUDIO_NOISE, samples)
    return np.clip(track, -1.0, 1.0).astype(np.float32)
