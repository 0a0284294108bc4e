"""What reading clips and their sound costs: samples/s of the clip dataset decoding its frames
and from the packed store (every frame once), and a log-mel window computed alone vs cut from
the track's spectrogram (the cache the clip datasets use).

    python scripts/benchmark_clips.py [--root data/synthetic] [--samples 200]

Reads the default synthetic clip benchmark (``dataset=synthetic_clips``; generated on first use)
in this process, one thread, and prints one JSON line. The training step itself (TSAV on clips,
clips/s through the real trainer) is ``scripts/benchmark_throughput.py dataset=synthetic_clips
model=tsav method=baseline``. Benchmarks live here, not in timed tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from affectlab.data.audio import LogMel
from affectlab.data.sources.synthetic.clip_benchmark import SyntheticClips

TSAV_AUDIO = dict(sample_rate=44100, window_s=10.0, n_mels=64, n_fft=1024, win_length=882,
                  hop_length=441)
SYNTHETIC_AUDIO = dict(sample_rate=16000, window_s=2.0, n_mels=64, n_fft=512, win_length=320,
                       hop_length=160)


def per_second(work, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        work(i)
    return count / (time.perf_counter() - start)


def spectrogram_costs(settings: dict, track_seconds: float, count: int) -> dict[str, float]:
    """Windows/s computed alone and cut from the track's spectrogram (computed once, timed)."""
    logmel = LogMel(**settings)
    track = 0.1 * torch.randn(int(track_seconds * logmel.sample_rate),
                              generator=torch.Generator().manual_seed(0))
    logmel(logmel.window(track, 1.0))                      # the filterbank, once
    centres = torch.linspace(0, track_seconds, count).tolist()
    alone = per_second(lambda i: logmel(logmel.window(track, centres[i])), count)
    start = time.perf_counter()
    whole = logmel.track(track)
    track_time = time.perf_counter() - start
    cut = per_second(lambda i: logmel.cut(whole, centres[i]), count)
    return {"windows_per_s_alone": round(alone, 1), "windows_per_s_cut": round(cut, 1),
            "track_spectrogram_s": round(track_time, 3), "track_seconds": track_seconds,
            "track_megabytes": round(whole.numel() * 4 / 2**20, 2)}


def packed_costs(data, folder: str, count: int) -> dict[str, float]:
    """The train split's frames packed once (timed when built here), then samples/s read
    from the pack, and the pack's size per frame and in all."""
    from affectlab.data.packed import ClipFrames, use_packed

    frames = len(ClipFrames(data.train))
    start = time.perf_counter()
    packed = use_packed(data, folder, workers=0).train
    built = time.perf_counter() - start
    packed.load_audio(0)
    return {"packed_frames": frames, "packed_megabytes": round(packed.path.stat().st_size
                                                                / 2**20, 1),
            "packing_s_if_built": round(built, 1),
            "samples_per_s_packed": round(per_second(lambda i: packed[i], count), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="data/synthetic")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--packed-dir", default="data/cache/packed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    audio = {k: v for k, v in SYNTHETIC_AUDIO.items() if k != "sample_rate"}  # the dataset's
    data = SyntheticClips(root=args.root, audio=audio).build()
    train = data.train
    count = min(args.samples, len(train))
    train.load_audio(0)                                    # the first video's track, once
    results = {
        "machine": platform.processor() or platform.machine(), "threads": 1,
        "dataset": {"clip_shape": list(train.input_shapes()["clip"]),
                    "audio_shape": list(train.input_shapes()["audio"])},
        "samples_per_s_clip_and_audio": round(per_second(lambda i: train[i], count), 1),
        "samples_per_s_clip_only": round(per_second(lambda i: train.load_clip(i), count), 1),
        "samples_per_s_audio_only": round(per_second(lambda i: train.load_audio(i), count), 1),
        **packed_costs(data, args.packed_dir, count),
        "spectrogram_tsav_10s_44k": spectrogram_costs(TSAV_AUDIO, 600.0, 100),
        "spectrogram_synthetic_2s_16k": spectrogram_costs(SYNTHETIC_AUDIO, 5.0, 100),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
