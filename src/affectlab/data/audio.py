"""Audio as an input: WAV files in and out, and the log-mel spectrogram of the window around
a frame (the audio stream's input of the two-stream aural-visual model, TSAV).

TSAV's settings (Kuhnke et al. 2020, ``../shared/reference/prior_implementations.md`` §4), the
defaults of :class:`LogMel`: mono audio at 44.1 kHz; for the frame at time t the window
[t − 5 s, t + 5 s]; a power spectrogram with a 20 ms Hann window (882 samples) inside a
1,024-point FFT, hop 10 ms (441 samples), mapped to 64 mel bands (HTK mel scale, no band
normalisation: what torchaudio's ``MelSpectrogram`` gave TSAV); then decibels with an 80 dB
floor below the window's peak:

    S[m, k] = Σ_f M[m, f] |STFT(x)[f, k]|²,      D = 10 log10(max(S, 1e-10)),
    D ← max(D, max(D) − 80)

giving (1, 64, 1001) per window (1,001 frames: the 10 s of samples / hop, + 1, frames centred
on every hop). Audio before the track's start or past its end is silence (zeros): the rule at
a video's edges, and for a video without sound (:func:`silence_like`).

The STFT is ``torch.stft``; the filterbank is librosa's ``filters.mel`` (the maintained
reference implementation of the mel scale; torchaudio was not an option: each of its releases
is built for one torch release, the newest for one older than the torch pinned here). The tests
compare the result with ``librosa.feature.melspectrogram`` + ``power_to_db`` on the same signal.

A track's spectrogram can be computed once and windows cut from it (:meth:`LogMel.track` and
:meth:`LogMel.cut`): the frames are the same as computing each window alone, except within
half an FFT of the window's ends, where the whole track's frames see the real neighbouring
audio instead of the zero padding of a window computed alone.
"""

from __future__ import annotations

import functools
import math
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from affectlab.utils import atomic_write


class AudioError(RuntimeError):
    """An audio file that cannot be used, with a message naming it and the fix."""


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float,
                   f_max: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale, unnormalised
    (librosa ``filters.mel(htk=True, norm=None)``)."""
    import librosa  # only runs that read audio pay for its import

    bank = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min,
                               fmax=f_max, htk=True, norm=None)
    return torch.from_numpy(bank.astype(np.float32))


class LogMel:
    """Log-mel spectrograms of windows of a mono waveform (module docstring: the formula).

    Args:
        sample_rate: samples per second the waveforms have (a file at another rate is refused
            by :func:`read_wav` with the fix).
        window_s: length of the window around a frame, in seconds (centred on the frame).
        n_mels: mel bands. n_fft: FFT points. win_length: Hann window, in samples
            (≤ n_fft). hop_length: samples between frames.
        top_db: floor below each window's peak, in dB (None: no floor).
        f_min, f_max: the filterbank's range in Hz (f_max None: sample_rate / 2).
    """

    def __init__(self, *, sample_rate: int = 44100, window_s: float = 10.0, n_mels: int = 64,
                 n_fft: int = 1024, win_length: int = 882, hop_length: int = 441,
                 top_db: float | None = 80.0, f_min: float = 0.0,
                 f_max: float | None = None) -> None:
        if sample_rate <= 0 or window_s <= 0 or n_mels <= 0 or hop_length <= 0:
            raise ValueError(f"sample_rate={sample_rate}, window_s={window_s}, n_mels={n_mels}, "
                             f"hop_length={hop_length}: each must be > 0")
        if not 0 < win_length <= n_fft:
            raise ValueError(f"win_length={win_length} with n_fft={n_fft}: need "
                             "0 < win_length ≤ n_fft")
        self.sample_rate, self.window_s, self.n_mels = int(sample_rate), float(window_s), n_mels
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.top_db = top_db
        self.f_min, self.f_max = float(f_min), float(f_max or sample_rate / 2)

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def frames(self) -> int:
        """Spectrogram frames per window (TSAV's 1,001)."""
        return self.window_samples // self.hop_length + 1

    @property
    def shape(self) -> list[int]:
        """Shape of one window's spectrogram: [1, n_mels, frames]."""
        return [1, self.n_mels, self.frames]

    def decibels(self, waveform: torch.Tensor) -> torch.Tensor:
        """(..., S) float waveform → (..., n_mels, S // hop + 1) mel power in dB, no floor."""
        window = torch.hann_window(self.win_length, periodic=True, dtype=waveform.dtype,
                                   device=waveform.device)
        lead = waveform.shape[:-1]
        spec = torch.stft(waveform.reshape(-1, waveform.shape[-1]), n_fft=self.n_fft,
                          hop_length=self.hop_length, win_length=self.win_length,
                          window=window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()
        bank = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min,
                              self.f_max).to(power)
        mel = torch.matmul(bank, power)
        return (10.0 * torch.log10(mel.clamp_min(1e-10))).reshape(*lead, self.n_mels, -1)

    def floor(self, decibels: torch.Tensor) -> torch.Tensor:
        """max(D, max(D) − top_db) per window (the last two axes)."""
        if self.top_db is None:
            return decibels
        peak = decibels.amax(dim=(-2, -1), keepdim=True)
        return torch.maximum(decibels, peak - self.top_db)

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        """(..., window_samples) windows → (..., 1, n_mels, frames) log-mel spectrograms."""
        return self.floor(self.decibels(waveform.float())).unsqueeze(-3)

    def start(self, center_s: float) -> int:
        """First sample of the window centred at ``center_s`` seconds (may be < 0)."""
        return round(center_s * self.sample_rate) - self.window_samples // 2

    def window(self, waveform: torch.Tensor, center_s: float) -> torch.Tensor:
        """(S,) track → (window_samples,) samples of the window centred at ``center_s``
        seconds, zeros where it passes the track's ends."""
        start = self.start(center_s)
        out = waveform.new_zeros(self.window_samples)
        lo, hi = max(start, 0), min(start + self.window_samples, waveform.shape[-1])
        if hi > lo:
            out[lo - start:hi - start] = waveform[lo:hi]
        return out

    def track(self, waveform: torch.Tensor) -> torch.Tensor:
        """(S,) whole track → (n_mels, S // hop + 1) mel power in dB (no floor): computed once
        per track, windows are then cut from it (:meth:`cut`)."""
        return self.decibels(waveform.float())

    def cut(self, track_db: torch.Tensor, center_s: float) -> torch.Tensor:
        """A window's (1, n_mels, frames) spectrogram cut from :meth:`track`'s output: frames
        outside the track are silence (the dB of zero power), then the floor. The window's
        first frame is the track frame nearest its first sample: exactly it when the window
        starts on a hop (at 44.1 kHz, every frame of a 25 frames/s video), otherwise within half
        a hop (5 ms at the defaults)."""
        first = round(self.start(center_s) / self.hop_length)
        out = track_db.new_full((self.n_mels, self.frames), 10.0 * math.log10(1e-10))
        lo, hi = max(first, 0), min(first + self.frames, track_db.shape[-1])
        if hi > lo:
            out[:, lo - first:hi - first] = track_db[:, lo:hi]
        return self.floor(out).unsqueeze(0)


def read_wav(path: str | Path, *, sample_rate: int | None = None) -> torch.Tensor:
    """A PCM WAV file (8/16/32-bit integer samples, any channel count) → (S,) float32 mono in
    [−1, 1] (channels averaged). ``sample_rate``: the rate the file must have."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as handle:
            rate, channels = handle.getframerate(), handle.getnchannels()
            width, count = handle.getsampwidth(), handle.getnframes()
            raw = handle.readframes(count)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such audio file (extract the videos' audio first: "
                         "python scripts/extract_audio.py VIDEOS_DIR OUT_DIR)") from None
    except (wave.Error, EOFError) as error:
        raise AudioError(f"{path}: not a PCM WAV file ({error}); write it again with "
                         "python scripts/extract_audio.py VIDEOS_DIR OUT_DIR") from None
    if sample_rate is not None and rate != sample_rate:
        raise AudioError(f"{path}: {rate} Hz, the run reads {sample_rate} Hz; extract the audio "
                         f"again at {sample_rate} Hz or set the audio's sample_rate to {rate}")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise AudioError(f"{path}: {8 * width}-bit samples; 8-, 16- or 32-bit PCM are read")
    samples = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    if width == 1:                                   # 8-bit WAV is unsigned
        samples -= 128.0
    samples /= float(2 ** (8 * width - 1))
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(1)
    return torch.from_numpy(np.ascontiguousarray(samples))


def write_wav(path: str | Path, waveform: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """(S,) mono float samples in [−1, 1] → 16-bit PCM WAV, written atomically (values outside
    the range are clipped)."""
    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")

    def write(tmp: str) -> None:
        with wave.open(tmp, "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(int(sample_rate))
            handle.writeframes(pcm.tobytes())

    atomic_write(path, write)


@dataclass(frozen=True)
class VideoSound:
    """What :func:`extract_audio` found in a video: its frame rate, length, and whether it has
    sound (a video without an audio track gets no WAV file: its clips' sound is silence)."""

    fps: float
    seconds: float
    has_audio: bool


def _open_video(video: Path):
    import av  # only the preprocessing reads videos

    try:
        return av.open(str(video))
    except (av.FFmpegError, ValueError) as error:
        raise AudioError(f"{video}: cannot be decoded ({error}); re-download or re-encode it"
                         ) from None


def _sound_of(container, video: Path) -> VideoSound:
    streams = container.streams
    if not streams.video:
        raise AudioError(f"{video}: has no video stream; is it a video file?")
    return VideoSound(fps=float(streams.video[0].average_rate or 0),
                      seconds=float(container.duration or 0) / 1e6,
                      has_audio=bool(streams.audio))


def probe_video(video: str | Path) -> VideoSound:
    """A video's frame rate, length and whether it has sound, from its container (PyAV)."""
    video = Path(video)
    with _open_video(video) as container:
        return _sound_of(container, video)


def extract_audio(video: str | Path, wav: str | Path, *, sample_rate: int) -> VideoSound:
    """Decode ``video``'s first audio track with PyAV (FFmpeg's libraries), mix it to mono,
    resample it to ``sample_rate`` and write it as a 16-bit WAV (atomically); return the video's
    frame rate and length. A video without an audio track writes nothing
    (``has_audio=False``); one that cannot be decoded raises :class:`AudioError` naming it."""
    import av

    video = Path(video)
    with _open_video(video) as container:
        sound = _sound_of(container, video)
        if not sound.has_audio:
            return sound
        resampler = av.AudioResampler(format="s16", layout="mono", rate=int(sample_rate))
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
        except (av.FFmpegError, ValueError) as error:
            raise AudioError(f"{video}: its audio cannot be decoded ({error}); re-download or "
                             "re-encode it") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    write_wav(wav, samples.astype(np.float32) / 32768.0, sample_rate)
    if not sound.seconds:
        sound = VideoSound(fps=sound.fps, seconds=len(samples) / sample_rate, has_audio=True)
    return sound


#: the index scripts/extract_audio.py writes beside the WAV files
VIDEO_INDEX = "videos.csv"


def read_video_index(folder: str | Path) -> dict[str, VideoSound]:
    """``{video name: VideoSound}`` from the ``videos.csv`` of an audio folder ({} when there
    is none)."""
    import csv

    path = Path(folder) / VIDEO_INDEX
    if not path.is_file():
        return {}
    out = {}
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), 2):
            try:
                out[row["video"]] = VideoSound(fps=float(row["fps"]),
                                               seconds=float(row["seconds"]),
                                               has_audio=row["has_audio"] == "1")
            except (KeyError, TypeError, ValueError) as error:
                raise AudioError(f"{path}, line {line}: {error}; run scripts/extract_audio.py "
                                 "again to rewrite it") from None
    return out


def silence_like(seconds: float, sample_rate: int) -> torch.Tensor:
    """The track of a video without sound: zeros of its length."""
    return torch.zeros(max(round(seconds * sample_rate), 0))
