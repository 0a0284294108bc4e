"""Extract the sound of every video in a folder once, as the clip datasets read it.

    python scripts/extract_audio.py data/Aff-Wild2/videos data/Aff-Wild2/audio [--sample-rate 44100]

Writes ``OUT/<video name without extension>.wav`` (16-bit mono at the sample rate; TSAV's
44.1 kHz by default) and ``OUT/videos.csv`` (``video,fps,seconds,has_audio``: the frame rate
maps a labelled frame to its time in the sound). Videos are found recursively by extension
(.mp4 .avi .mkv .mov .webm); decoding is PyAV's (FFmpeg's libraries, no ffmpeg program
needed). A WAV already there is kept (delete it to extract again); a video that cannot be
decoded is named and skipped, and counted at the end; a video without sound gets no WAV (its
clips' sound is silence) and ``has_audio=0``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from affectlab.data.audio import VIDEO_INDEX, AudioError, extract_audio, probe_video
from affectlab.utils import atomic_write_text

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", type=Path, help="folder of videos (searched recursively)")
    parser.add_argument("out", type=Path, help="folder the WAV files and videos.csv go to")
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args(argv)
    if not args.videos.is_dir():
        print(f"error: {args.videos} is not a folder of videos", file=sys.stderr)
        return 2
    videos = sorted(p for p in args.videos.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        print(f"error: no video ({', '.join(VIDEO_SUFFIXES)}) under {args.videos}",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for number, video in enumerate(videos, 1):
        wav = args.out / f"{video.stem}.wav"
        try:
            kept = wav.is_file()
            sound = (probe_video(video) if kept
                     else extract_audio(video, wav, sample_rate=args.sample_rate))
        except AudioError as error:
            failed.append(str(error))
            print(f"skipped: {error}", file=sys.stderr)
            continue
        rows.append([video.stem, f"{sound.fps:.6g}", f"{sound.seconds:.3f}", int(sound.has_audio)])
        state = "kept" if kept else "sound" if sound.has_audio else "no audio track"
        print(f"[{number}/{len(videos)}] {video.name}: {state}, {sound.fps:.3g} frames/s")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "fps", "seconds", "has_audio"])
    writer.writerows(rows)
    atomic_write_text(args.out / VIDEO_INDEX, buffer.getvalue())
    print(f"{len(rows)} video(s) in {args.out / VIDEO_INDEX}; {len(failed)} could not be decoded")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
