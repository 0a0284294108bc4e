"""data/audio.py: the log-mel spectrogram against librosa's, a tone in its mel band, windows at
a track's edges, windows cut from a whole track's spectrogram, WAV files in and out."""

from __future__ import annotations

import wave

import librosa
import numpy as np
import pytest
import torch

from affectlab.data.audio import AudioError, LogMel, read_wav, silence_like, write_wav

RATE = 8000
# TSAV's proportions at a lower rate (fast tests): 20 ms windows, 10 ms hops, 2 s windows
SMALL = dict(sample_rate=RATE, window_s=2.0, n_mels=32, n_fft=256, win_length=160,
             hop_length=80)


def tone(frequency: float, seconds: float, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_the_spectrogram_is_librosas_on_the_same_signal():
    logmel = LogMel(**SMALL)
    rng = np.random.default_rng(0)
    signal = (tone(440, 2.0) + 0.05 * rng.standard_normal(2 * RATE)).astype(np.float32)
    ours = logmel(torch.from_numpy(signal))
    power = librosa.feature.melspectrogram(
        y=signal, sr=RATE, n_fft=256, win_length=160, hop_length=80, n_mels=32, htk=True,
        norm=None, center=True, pad_mode="constant", power=2.0)
    reference = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=80.0)
    assert ours.shape == (1, 32, 201) == (1, *reference.shape)
    assert logmel.shape == [1, 32, 201]
    assert np.abs(ours[0].numpy() - reference).max() < 1e-3     # dB


def test_tsav_defaults_give_1001_frames_of_64_bands():
    assert LogMel().shape == [1, 64, 1001]


def test_a_tone_has_its_energy_in_the_band_around_its_frequency():
    logmel = LogMel(**SMALL)
    for frequency in (300.0, 1000.0, 2500.0):
        spec = logmel(torch.from_numpy(tone(frequency, 2.0)))[0]
        band = int(spec.mean(dim=1).argmax())
        # band m spans the mel points m .. m + 2, centred on point m + 1
        points = librosa.mel_frequencies(n_mels=32 + 2, fmin=0.0, fmax=RATE / 2, htk=True)
        assert points[band] < frequency < points[band + 2], (frequency, band)


def test_the_floor_is_80_db_below_each_windows_peak():
    logmel = LogMel(**SMALL)
    signal = np.concatenate([tone(1000, 1.0), np.zeros(RATE, np.float32)])  # sound, silence
    spec = logmel(torch.from_numpy(signal))
    assert float(spec.max() - spec.min()) == pytest.approx(80.0)
    assert float((spec == spec.min()).float().mean()) > 0.3        # the silence sits on it


def test_a_window_past_the_tracks_ends_is_zero_padded():
    logmel = LogMel(**SMALL)
    track = torch.arange(1, 3 * RATE + 1, dtype=torch.float32)      # 3 s, no zero inside
    start = logmel.window(track, 0.25)                   # covers −0.75 s … 1.25 s
    assert start.shape == (2 * RATE,)
    assert torch.all(start[:6000] == 0) and start[6000] == 1
    end = logmel.window(track, 2.5)                      # covers 1.5 s … 3.5 s
    assert end[RATE + RATE // 2 - 1] == track[-1] and torch.all(end[RATE + RATE // 2:] == 0)
    assert torch.all(logmel.window(track, 10.0) == 0)    # wholly past the end: silence


def test_windows_cut_from_the_tracks_spectrogram_match_windows_computed_alone():
    logmel = LogMel(**SMALL)
    rng = np.random.default_rng(1)
    track = torch.from_numpy((0.1 * rng.standard_normal(5 * RATE)).astype(np.float32))
    whole = logmel.track(track)
    edge = 2      # frames within half an FFT of a window's ends see real audio instead of zeros
    for centre in (0.5, 2.0, 4.7):                       # at the start, inside, past the end
        alone = logmel(logmel.window(track, centre))
        cut = logmel.cut(whole, centre)
        assert cut.shape == alone.shape
        first = logmel.start(centre) // 80
        inside = [j for j in range(edge, cut.shape[-1] - edge)
                  if edge <= first + j < whole.shape[-1] - edge]
        assert torch.allclose(cut[..., inside], alone[..., inside], atol=1e-3)


def test_wav_round_trip_mono_and_stereo(tmp_path):
    signal = tone(440, 0.5)
    write_wav(tmp_path / "a.wav", signal, RATE)
    back = read_wav(tmp_path / "a.wav", sample_rate=RATE)
    assert back.dtype == torch.float32 and back.shape == (RATE // 2,)
    assert torch.allclose(back, torch.from_numpy(signal), atol=1 / 32767)
    with wave.open(str(tmp_path / "stereo.wav"), "wb") as handle:   # left = signal, right = 0
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        pcm = np.stack([np.round(signal * 32767), np.zeros_like(signal)], 1).astype("<i2")
        handle.writeframes(pcm.tobytes())
    assert torch.allclose(read_wav(tmp_path / "stereo.wav"), back / 2, atol=1 / 32767)


def test_bad_audio_files_are_named_with_the_fix(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: no such audio file"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(AudioError, match="bad.wav: not a PCM WAV file"):
        read_wav(tmp_path / "bad.wav")
    write_wav(tmp_path / "a.wav", tone(440, 0.1), RATE)
    with pytest.raises(AudioError, match="a.wav: 8000 Hz, the run reads 44100 Hz"):
        read_wav(tmp_path / "a.wav", sample_rate=44100)


def test_a_video_without_sound_is_silence_of_its_length():
    assert torch.all(silence_like(1.5, RATE) == 0) and silence_like(1.5, RATE).shape == (12000,)


@pytest.mark.parametrize("bad", [dict(win_length=512), dict(hop_length=0), dict(n_mels=0)])
def test_settings_out_of_range_are_refused(bad):
    with pytest.raises(ValueError):
        LogMel(**{**SMALL, **bad})


# ----------------------------------------------------------------- extracting videos' sound
def write_video(path, *, seconds: float = 2.0, fps: int = 25, tone_hz: float | None = 440.0,
                rate: int = 16000) -> None:
    """A small MPEG-4 video (grey frames) with, unless ``tone_hz`` is None, an AAC sine."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=rate) if tone_hz is not None else None
        if sound is not None:
            sound.layout = "mono"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 4 * i, np.uint8),
                                               format="rgb24")
            out.mux(video.encode(frame))
        if sound is not None:
            signal = tone(tone_hz, seconds, rate)[None, :]
            for start in range(0, signal.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(
                    signal[:, start:start + 1024]), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = rate, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode())
        out.mux(video.encode())


def run_extract(args):
    import subprocess
    import sys

    from .conftest import REPO
    return subprocess.run([sys.executable, str(REPO / "scripts/extract_audio.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_extracting_the_sound_of_a_folder_of_videos(tmp_path):
    videos = tmp_path / "videos"
    (videos / "batch1").mkdir(parents=True)
    write_video(videos / "batch1" / "10-60-1280x720.mp4")
    write_video(videos / "silent.mp4", tone_hz=None)
    (videos / "broken.avi").write_bytes(b"\x00" * 100)
    result = run_extract([videos, tmp_path / "audio", "--sample-rate", RATE])
    assert result.returncode == 1, result.stderr                    # one video skipped
    assert "broken.avi: cannot be decoded" in result.stderr
    assert "3 video(s)" not in result.stdout and "2 video(s)" in result.stdout
    sound = read_wav(tmp_path / "audio/10-60-1280x720.wav", sample_rate=RATE)
    assert abs(len(sound) / RATE - 2.0) < 0.1
    spectrum = np.abs(np.fft.rfft(sound.numpy()))
    assert abs(np.fft.rfftfreq(len(sound), 1 / RATE)[spectrum.argmax()] - 440) < 5
    assert not (tmp_path / "audio/silent.wav").exists()
    index = (tmp_path / "audio/videos.csv").read_text().splitlines()
    assert index[0] == "video,fps,seconds,has_audio"
    rows = {line.split(",")[0]: line.split(",") for line in index[1:]}
    assert rows["10-60-1280x720"][1] == "25" and rows["10-60-1280x720"][3] == "1"
    assert rows["silent"][3] == "0"
    again = run_extract([videos, tmp_path / "audio", "--sample-rate", RATE])   # kept, not redone
    assert "10-60-1280x720.mp4: kept" in again.stdout


def test_extracting_from_a_folder_without_videos_says_so(tmp_path):
    result = run_extract([tmp_path, tmp_path / "audio"])
    assert result.returncode == 2 and "no video" in result.stderr
