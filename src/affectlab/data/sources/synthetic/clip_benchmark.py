"""The synthetic benchmark in clip mode: videos with sound, generated once into
``dataset.root`` and read back as clips around labelled frames (``dataset=synthetic_clips``).

The story of a video is :mod:`.video_story`; the image story's knobs (:class:`~.story.
GenerationParams`) apply, with ``num_subjects_<split>`` read as videos (one person each) and
``images_per_subject_<split>`` as frames per video.

On disk (``root/clips-<hash>/``): ``videos/<split>/<video>/<frame>.png`` (every frame),
``landmarks.npy`` (F, 68, 2) and ``audio.wav`` (16-bit mono) per video, ``labels.csv`` (one row
per frame, the image benchmark's columns) and ``meta.json`` last. Written into a temporary
folder and renamed when complete, as the image benchmark is.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from affectlab.data.audio import write_wav
from affectlab.data.clips import ClipSettings, FaceClipDataset, Video, clip_rules
from affectlab.data.contract import EXPRESSIONS, DataError, FaceData, FaceImageDataset, LabelTable
from affectlab.data.sources.synthetic import story
from affectlab.data.sources.synthetic.benchmark import DEFAULT_AUS
from affectlab.data.sources.synthetic.drawing import face_landmarks, render_face
from affectlab.data.sources.synthetic.faces import SUPPORTED_AUS
from affectlab.data.sources.synthetic.files import (
    LABELS_FILE,
    META_FILE,
    checked_generator_version,
    generate_once,
    read_labels_csv,
    run_tasks,
    train_pixel_stats,
    write_labels,
)
from affectlab.data.sources.synthetic.story import SPLITS, GenerationParams, rng_for
from affectlab.data.sources.synthetic.variants import one_task_per_face
from affectlab.data.sources.synthetic.video_story import sample_video, synthesize_audio

#: 2: 15-s videos, shorter episodes (docs/clips.md); 3: the voice's timbre blurred per speaker
#: and episode (video_story.synthesize_audio): frames and labels as in 2, other sound
CLIP_GENERATOR_VERSION = 3


@dataclass(frozen=True)
class ClipParams:
    """Every parameter that changes the clip benchmark's files (and so its folder's hash)."""

    story: GenerationParams
    fps: float
    sample_rate: int
    blinks_per_second: float

    def digest(self) -> str:
        payload = json.dumps({"clip_generator_version": CLIP_GENERATOR_VERSION,
                              "story": self.story.digest(), "fps": self.fps,
                              "sample_rate": self.sample_rate,
                              "blinks_per_second": self.blinks_per_second}, sort_keys=True)
        return "clips-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def video_folder(split: str, video_id: int) -> str:
    return f"videos/{split}/{video_id:05d}"


def _generate_video(task: tuple[ClipParams, str, int, int, str]) -> dict[str, Any]:
    """Render one video's frames, landmarks and sound; return its CSV rows and pixel sums."""
    params, split, index, video_id, directory = task
    p = params.story
    frames = p.split_sizes()[split][1]
    subject = story.sample_subject(rng_for(p, split, index, 0), p.expression_frequencies)
    video = sample_video(rng_for(p, split, index, 1), subject, p, frames=frames, fps=params.fps,
                         blinks_per_second=params.blinks_per_second)
    folder = Path(directory) / video_folder(split, video_id)
    folder.mkdir(parents=True)
    landmarks = np.zeros((frames, 68, 2), dtype=np.float32)
    rows, pixel_sum, pixel_sq = [], np.zeros(3), np.zeros(3)
    for f in range(frames):
        active = {au: float(v) for au, v in zip(SUPPORTED_AUS, video.intensity[f]) if v > 0}
        image = render_face(subject.face, active, video.nuisances[f], p.image_size,
                            effect_scale=p.au_effect_scale)
        landmarks[f] = face_landmarks(subject.face, active, video.nuisances[f], p.image_size,
                                      effect_scale=p.au_effect_scale)
        relative = f"{video_folder(split, video_id)}/{f:05d}.png"
        Image.fromarray(image).save(Path(directory) / relative, format="PNG")
        rows.append([relative, split, video_id, EXPRESSIONS[video.expression[f]],
                     f"{video.va[f, 0]:.4f}", f"{video.va[f, 1]:.4f}",
                     *(int(v) for v in video.au[f])])
        pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
        pixel_sum += pixels.sum(0)
        pixel_sq += (pixels**2).sum(0)
    np.save(folder / "landmarks.npy", landmarks)
    write_wav(folder / "audio.wav", synthesize_audio(rng_for(p, split, index, 2), video,
                                                     fps=params.fps,
                                                     sample_rate=params.sample_rate),
              params.sample_rate)
    return {"rows": rows, "pixel_sum": pixel_sum, "pixel_sq": pixel_sq,
            "pixels": frames * p.image_size**2}


def generate_clips(params: ClipParams, directory: Path, num_workers: int = 0) -> dict[str, Any]:
    """Write every video, ``labels.csv`` and (last) ``meta.json`` into ``directory`` (which
    must not exist); return the meta dict."""
    start = time.perf_counter()
    directory.mkdir(parents=True)
    p = params.story
    first = p.first_subject_ids()
    tasks = [(params, split, i, first[split] + i, str(directory))
             for split, (videos, _) in p.split_sizes().items() for i in range(videos)]
    results = run_tasks(_generate_video, tasks, num_workers)
    write_labels(directory, results)
    mean, std = train_pixel_stats(tasks, results)
    meta = {"clip_generator_version": CLIP_GENERATOR_VERSION,
            "generator_version": story.GENERATOR_VERSION, "hash": params.digest(),
            "params": {**asdict(params), "story": asdict(p)},
            "counts": {split: sum(len(r["rows"]) for t, r in zip(tasks, results) if t[1] == split)
                       for split in SPLITS},
            "mean": mean, "std": std,
            "generation_seconds": round(time.perf_counter() - start, 2), "complete": True}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def read_clip_meta(directory: Path, expected_hash: str) -> dict[str, Any] | None:
    """The meta dict of a complete clip-benchmark folder of this hash, or None."""
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("complete") is not True \
            or meta.get("hash") != expected_hash:
        return None
    return meta


class SyntheticClips:
    """The synthetic benchmark's videos with sound, as clips around labelled frames.

    Args:
        name, root, seed, image_size, aus, and the story's knobs (pose, lighting, occlusion,
            label noise, intensities, VA noise, effect scale): as ``dataset=synthetic``.
        videos_<split>: videos (one person each) of the labelled set, the unlabelled pool,
            validation and test (person-exclusive).
        frames_per_video: frames of each video. fps: its frame rate.
        sample_rate: the sound's sample rate (Hz). blinks_per_second: blinks (AU43 events).
        label_every: every k-th frame of a video is a sample (labelled or pool), clips still
            reading the frames in between.
        clip: ``length``, ``dilation``, ``rule`` (black | repeat), ``anchor`` (end | centre),
            ``mask`` (the landmark channel): :class:`~affectlab.data.clips.ClipSettings`.
        audio: the log-mel settings (:class:`~affectlab.data.audio.LogMel` arguments but the
            sample rate), or None: clips without sound.
        inputs: ``clip`` (clips and, with ``audio``, spectrograms) or ``frame`` (the labelled
            frame alone as ``image``: an image model on the same samples).
        train_labels: ``all`` or ``one_task`` (each labelled frame keeps one task's labels).
        num_workers: processes for the one-off generation.
        generator_version: the clip generator's version the config expects (None: this
            code's, :data:`CLIP_GENERATOR_VERSION`); another is refused.
    """

    def __init__(self, *, name: str = "synthetic_clips", root: str = "data/synthetic",
                 seed: int = 0, image_size: int = 64,
                 aus: list[int] | tuple[int, ...] = DEFAULT_AUS,
                 videos_train: int = 60, videos_unlabeled: int = 60, videos_val: int = 30,
                 videos_test: int = 50, frames_per_video: int = 375, fps: float = 25.0,
                 sample_rate: int = 16000, blinks_per_second: float = 0.3,
                 rotation_deg: float = 10.0, scale_jitter: float = 0.08,
                 shift_jitter: float = 0.05, yaw_jitter: float = 0.5, illumination: float = 0.35,
                 noise_std: float = 0.03, clutter: int = 5, occlusion_prob: float = 0.15,
                 label_noise: float = 0.03, spontaneous_au_rate: float = 0.03,
                 intensity_alpha: float = 2.0, intensity_beta: float = 2.0,
                 va_noise: float = 0.12, au_effect_scale: float = 1.0, label_every: int = 10,
                 clip: dict[str, Any] | None = None, audio: dict[str, Any] | None = None,
                 inputs: str = "clip", train_labels: str = "all", num_workers: int = 0,
                 generator_version: int | None = None) -> None:
        checked_generator_version("dataset.generator_version", generator_version,
                                  CLIP_GENERATOR_VERSION)
        self.name, self.root = name, Path(root).expanduser().absolute()
        self.aus = [int(a) for a in aus]
        unknown = sorted(set(self.aus) - set(SUPPORTED_AUS))
        if unknown:
            raise ValueError(f"dataset.aus has AU(s) {unknown} the renderer cannot show; "
                             f"choose among {list(SUPPORTED_AUS)}")
        if inputs not in ("clip", "frame"):
            raise ValueError(f"dataset.inputs={inputs!r}: clip (clips and their sound) or "
                             "frame (the labelled frame alone, for image models)")
        if train_labels not in ("all", "one_task"):
            raise ValueError(f"dataset.train_labels={train_labels!r}: all or one_task")
        if label_every < 1 or frames_per_video < 1 or fps <= 0 or sample_rate <= 0:
            raise ValueError(f"dataset.label_every={label_every}, frames_per_video="
                             f"{frames_per_video}, fps={fps}, sample_rate={sample_rate}: each "
                             "must be ≥ 1 (> 0 for the rates)")
        for split, count in (("train", videos_train), ("val", videos_val),
                             ("test", videos_test)):
            if count < 1:
                raise ValueError(f"dataset.videos_{split}={count}: needs at least one video")
        self.label_every, self.inputs, self.train_labels = label_every, inputs, train_labels
        self.num_workers = int(num_workers)
        self.settings = ClipSettings.from_config(clip or {}, audio, sample_rate)
        self.logmel = self.settings.audio
        frames = int(frames_per_video)
        self.params = ClipParams(
            story=GenerationParams(
                seed=int(seed), image_size=int(image_size),
                num_subjects_train=int(videos_train), images_per_subject_train=frames,
                num_subjects_unlabeled=int(videos_unlabeled),
                images_per_subject_unlabeled=frames,
                num_subjects_val=int(videos_val), images_per_subject_val=frames,
                num_subjects_test=int(videos_test), images_per_subject_test=frames,
                rotation_deg=float(rotation_deg), scale_jitter=float(scale_jitter),
                shift_jitter=float(shift_jitter), yaw_jitter=float(yaw_jitter),
                illumination=float(illumination), noise_std=float(noise_std),
                clutter=int(clutter), occlusion_prob=float(occlusion_prob),
                label_noise=float(label_noise), spontaneous_au_rate=float(spontaneous_au_rate),
                blink_rate=0.0, intensity_alpha=float(intensity_alpha),
                intensity_beta=float(intensity_beta), va_noise=float(va_noise),
                au_effect_scale=float(au_effect_scale)),
            fps=float(fps), sample_rate=int(sample_rate),
            blinks_per_second=float(blinks_per_second))

    @property
    def dataset_dir(self) -> Path:
        return self.root / self.params.digest()

    def generate(self) -> dict[str, Any]:
        """Generate the files unless a complete copy exists (into a temporary folder, renamed
        when complete); return the meta dict."""
        digest = self.params.digest()
        return generate_once(self.root, self.dataset_dir,
                             lambda: read_clip_meta(self.dataset_dir, digest),
                             lambda folder: generate_clips(self.params, folder,
                                                           self.num_workers))

    def _videos(self, table: LabelTable) -> tuple[list[Video], np.ndarray, np.ndarray]:
        """The videos of a split's table (every frame a row), and each row's video and frame."""
        folders = [str(Path(p).parent) for p in table.image_paths]
        frame_of_row = np.array([int(Path(p).stem) for p in table.image_paths], dtype=np.int64)
        frames: dict[str, list[str]] = {}
        for folder, path in zip(folders, table.image_paths):
            frames.setdefault(folder, []).append(path)      # the CSV lists frames in order
        index = {folder: i for i, folder in enumerate(frames)}
        videos = []
        for folder, paths in frames.items():
            landmarks = np.load(Path(table.root) / folder / "landmarks.npy")
            videos.append(Video(frames=tuple(paths), fps=self.params.fps, landmarks=landmarks,
                                audio=f"{folder}/audio.wav",
                                frame_size=self.params.story.image_size))
        return videos, np.array([index[f] for f in folders], dtype=np.int64), frame_of_row

    def _split(self, table: LabelTable, rows_table: LabelTable | None = None) -> FaceImageDataset:
        """A split's dataset: samples every ``label_every``-th frame (of ``rows_table``'s
        labels, default the split's own), clips over all of its frames."""
        videos, video_of_row, frame_of_row = self._videos(table)
        keep = np.flatnonzero(frame_of_row % self.label_every == 0)
        rows = (rows_table or table).subset(keep)
        size = self.params.story.image_size
        if self.inputs == "frame":
            return FaceImageDataset(rows, image_size=size)
        return FaceClipDataset(rows, videos=videos, video_of_row=video_of_row[keep],
                               frame_of_row=frame_of_row[keep], settings=self.settings,
                               image_size=size)

    def build(self) -> FaceData:
        meta = self.generate()
        tables = read_labels_csv(self.dataset_dir / LABELS_FILE, self.aus)
        for split, table in tables.items():
            if len(table) != meta["counts"].get(split):
                raise DataError(f"{self.dataset_dir / LABELS_FILE} has {len(table)} '{split}' "
                                f"rows but meta.json says {meta['counts'].get(split)}; delete "
                                f"{self.dataset_dir} to regenerate it.")
        train_table = tables["train"]
        if self.train_labels == "one_task":
            train_table = one_task_per_face(train_table, self.params.story.seed)
        train = self._split(tables["train"], train_table)
        pool = tables["unlabeled"]
        unlabeled = self._split(pool, pool.unlabeled()) if len(pool) else None
        mean = tuple(float(v) for v in meta["mean"])
        std = tuple(float(v) for v in meta["std"])
        return FaceData(
            name=self.name, train=train, val=self._split(tables["val"]),
            test=self._split(tables["test"]), unlabeled=unlabeled,
            label_names={"au": [f"AU{au}" for au in self.aus], "expr": list(EXPRESSIONS),
                         "va": ["valence", "arousal"]},
            mean=mean, std=std,
            rules=clip_rules(train, mean, std) if self.inputs == "clip" else None)
