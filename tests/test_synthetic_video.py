"""The synthetic benchmark's clip-mode story (video_story.py): AU envelopes, per-frame labels,
smooth valence/arousal, head motion, and a sound track that carries arousal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from affectlab.data.sources.synthetic import story
from affectlab.data.sources.synthetic import video_story as V
from affectlab.data.sources.synthetic.faces import SUPPORTED_AUS

PARAMS = story.GenerationParams(
    seed=0, image_size=64, num_subjects_train=4, images_per_subject_train=1,
    num_subjects_unlabeled=1, images_per_subject_unlabeled=1, num_subjects_val=1,
    images_per_subject_val=1, num_subjects_test=1, images_per_subject_test=1, rotation_deg=10,
    scale_jitter=0.08, shift_jitter=0.05, yaw_jitter=0.5, illumination=0.35, noise_std=0.03,
    clutter=5, occlusion_prob=0.0, label_noise=0.0, spontaneous_au_rate=0.03, blink_rate=0.06,
    intensity_alpha=2, intensity_beta=2, va_noise=0.12, au_effect_scale=1.0)


def a_video(index: int = 0, params: story.GenerationParams = PARAMS, frames: int = 250):
    subject = story.sample_subject(story.rng_for(params, "train", index, 0))
    return subject, V.sample_video(story.rng_for(params, "train", index, 1), subject, params,
                                   frames=frames, fps=25.0)


def test_the_envelope_rises_holds_and_falls():
    times = np.array([0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 2.75, 3.0, 3.5])
    shape = V.envelope(times, start=0.5, end=3.0, onset=0.5, offset=0.5)
    # smoothstep 3x² − 2x³: 0.5 at the middle of each ramp
    assert shape.tolist() == pytest.approx([0, 0, 0.5, 1, 1, 1, 1, 0.5, 0, 0])
    short = V.envelope(np.array([1.0, 1.1, 1.2]), start=1.0, end=1.2, onset=0.5, offset=0.5)
    assert short.tolist() == pytest.approx([0, 1, 0])        # ramps shortened to fit


def test_labels_mark_the_frames_where_an_au_is_shown():
    for index in range(4):
        _, video = a_video(index)
        present = video.au == 1
        assert present.any() and (video.intensity > 0).any()
        assert np.all(video.intensity[present] > 0)                   # never a label on nothing
        assert np.all(video.au[video.intensity == 0] == 0)
        weak = (video.intensity > 0) & ~present                      # onsets and offsets
        assert weak.any()
        # a closed eye hides the lid raise
        closed = video.intensity[:, SUPPORTED_AUS.index(43)] > 0.5
        assert np.all(video.intensity[closed, SUPPORTED_AUS.index(5)] == 0)


def test_an_au_event_has_onset_apex_and_offset_frames():
    _, video = a_video(1)
    column = video.intensity[:, SUPPORTED_AUS.index(25)] if \
        video.intensity[:, SUPPORTED_AUS.index(25)].any() else video.intensity.max(axis=1)
    rising = np.diff(column) > 1e-6
    falling = np.diff(column) < -1e-6
    assert rising.sum() >= 2 and falling.sum() >= 2                   # ramps over several frames


def test_expressions_come_in_episodes_and_va_changes_smoothly():
    _, video = a_video(2)
    changes = np.flatnonzero(np.diff(video.expression))
    assert 1 <= len(changes) <= 10                                     # 10 s of 1–2.5 s episodes
    assert np.min(np.diff(np.concatenate([[-1], changes, [249]]))) >= 25 - 1  # ≥ 1 s each
    steps = np.abs(np.diff(video.va, axis=0))
    assert steps.max() < 0.2                                           # the lag smooths jumps
    assert np.all(np.abs(video.va) <= 1.0)


def test_the_head_moves_slowly_and_the_noise_is_new_every_frame():
    _, video = a_video(0)
    rotation = np.array([n.rotation_deg for n in video.nuisances])
    assert 0.1 < rotation.max() - rotation.min() <= 2 * V.HEAD_MOTION["rotation_deg"] + 1e-9
    assert np.abs(np.diff(rotation)).max() < 0.5                       # degrees per frame
    assert len({n.noise_seed for n in video.nuisances}) > 240
    assert len({n.clutter for n in video.nuisances}) == 1              # one scene per video


def test_occluded_aus_are_unknown_for_the_whole_video():
    params = dataclasses.replace(PARAMS, occlusion_prob=1.0)
    _, video = a_video(0, params)
    unknown = np.all(video.au == story.UNKNOWN, axis=0)
    assert unknown.any() and not unknown.all()
    assert np.all(np.isin(video.au[:, ~unknown], [0, 1]))


def test_the_same_seed_gives_the_same_video():
    _, a = a_video(3)
    _, b = a_video(3)
    assert np.array_equal(a.intensity, b.intensity) and np.array_equal(a.va, b.va)
    assert a.nuisances == b.nuisances


def constant_video(arousal_by_half: tuple[float, float], expression: int = 0) -> V.VideoLabels:
    frames = 100
    va = np.zeros((frames, 2), np.float32)
    va[:50, 1], va[50:, 1] = arousal_by_half
    return V.VideoLabels(intensity=np.zeros((frames, len(SUPPORTED_AUS))),
                         au=np.zeros((frames, len(SUPPORTED_AUS)), np.int64),
                         expression=np.full(frames, expression), va=va, nuisances=())


def dominant_frequency(track: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(track * np.hanning(len(track))))
    return float(np.fft.rfftfreq(len(track), 1 / rate)[spectrum.argmax()])


def test_the_sound_is_louder_and_higher_with_arousal():
    rate = 16000
    track = V.synthesize_audio(np.random.default_rng(0), constant_video((-0.8, 0.8)), fps=25.0,
                               sample_rate=rate)
    assert track.shape == (4 * rate,) and track.dtype == np.float32
    calm, aroused = track[: 2 * rate], track[2 * rate:]
    assert np.sqrt(np.mean(aroused**2)) > 3 * np.sqrt(np.mean(calm**2))
    # the fundamental: F0 · 2^(0.5 · arousal); the syllable modulation spreads it a little
    assert dominant_frequency(calm[8000:], rate) == pytest.approx(
        V.F0_HZ * 2 ** (-0.4), rel=0.05)
    assert dominant_frequency(aroused[8000:], rate) == pytest.approx(
        V.F0_HZ * 2 ** 0.4, rel=0.05)


def test_the_expression_changes_the_timbre_only_weakly():
    rate = 16000
    tracks = {e: V.synthesize_audio(np.random.default_rng(0), constant_video((0.0, 0.0), e),
                                    fps=25.0, sample_rate=rate) for e in (1, 5)}  # anger, sadness

    def high_share(track):
        spectrum = np.abs(np.fft.rfft(track)) ** 2
        return spectrum[np.fft.rfftfreq(len(track), 1 / rate) > 500].sum() / spectrum.sum()

    assert high_share(tracks[1]) > 2 * high_share(tracks[5])             # anger brighter
    loudness = [np.sqrt(np.mean(t**2)) for t in tracks.values()]
    assert max(loudness) / min(loudness) < 1.5                           # same arousal


def harmonic_tilt(track: np.ndarray, rate: int, f0: float) -> float:
    """The slope of −log(amplitude of harmonic k) on log k, k = 1 … 8 (power summed ±20 Hz)."""
    spectrum = np.abs(np.fft.rfft(track)) ** 2
    frequencies = np.fft.rfftfreq(len(track), 1 / rate)
    amplitudes = [np.sqrt(spectrum[np.abs(frequencies - k * f0) < 20].sum()) for k in range(1, 9)]
    return float(-np.polyfit(np.log(np.arange(1, 9)), np.log(amplitudes), 1)[0])


def test_the_timbre_is_the_expressions_tilt_blurred_by_speaker_and_episode(monkeypatch):
    rate, anger, sadness = 16000, 1, 5
    tilt = {e: V.TIMBRE_TILT[V.EXPRESSIONS[e]] for e in (anger, sadness)}

    def measured(expression: int, seed: int) -> float:
        track = V.synthesize_audio(np.random.default_rng(seed), constant_video((0.0, 0.0),
                                   expression), fps=25.0, sample_rate=rate)
        return harmonic_tilt(track, rate, V.F0_HZ)

    speakers = [measured(anger, seed) for seed in range(30)]
    # one speaker: the expression's tilt plus two offsets, sd √(0.4² + 0.3²) = 0.5 over speakers
    assert np.mean(speakers) == pytest.approx(tilt[anger], abs=0.25)
    assert 0.35 < np.std(speakers) < 0.7
    # one speaker (same draws): sadness darker than anger by the tilts' difference
    assert measured(sadness, 3) - measured(anger, 3) == pytest.approx(
        tilt[sadness] - tilt[anger], abs=0.15)
    monkeypatch.setattr(V, "SPEAKER_TILT_SD", 0.0)
    monkeypatch.setattr(V, "EPISODE_TILT_SD", 0.0)
    assert measured(anger, 0) == pytest.approx(tilt[anger], abs=0.1)
    assert measured(sadness, 0) == pytest.approx(tilt[sadness], abs=0.1)
