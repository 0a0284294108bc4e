"""dataset=synthetic_clips: the clip benchmark's files, its samples (clip, mask channel, sound
window), the frame-only mode, bad settings, and TSAV / mean teacher on clips through the real
trainer with an exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from affectlab.build import build_data
from affectlab.data.clips import FaceClipDataset, Video
from affectlab.data.sources.synthetic.clip_benchmark import SyntheticClips
from affectlab.train import run

from .conftest import TINY_TRAINER, compose_config, run_interrupted, same_final_weights

TINY_CLIPS = ["dataset=synthetic_clips", "model=tsav", "model.arch=small",
              "model.small_widths=[8,16]", "dataset.videos_train=2",
              "dataset.videos_unlabeled=1", "dataset.videos_val=1", "dataset.videos_test=1",
              "dataset.frames_per_video=20", "dataset.label_every=5", "dataset.image_size=32",
              "dataset.clip.length=4",
              "dataset.audio.window_s=1.0", "dataset.audio.n_mels=32"]
SMALL = dict(videos_train=2, videos_unlabeled=1, videos_val=1, videos_test=1,
             frames_per_video=20, label_every=5, image_size=32,
             clip=dict(length=4, dilation=3), audio=dict(window_s=1.0, n_mels=32, n_fft=512,
                                                         win_length=320, hop_length=160))


@pytest.fixture(scope="module")
def clips_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def data(clips_root):
    return SyntheticClips(root=str(clips_root), **SMALL).build()


def test_the_files_hold_every_frame_landmarks_and_sound(clips_root, data):
    folder = SyntheticClips(root=str(clips_root), **SMALL).dataset_dir
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["counts"] == {"train": 40, "unlabeled": 20, "val": 20, "test": 20}
    video = folder / "videos/train/00000"
    assert len(list(video.glob("*.png"))) == 20
    assert np.load(video / "landmarks.npy").shape == (20, 68, 2)
    assert (video / "audio.wav").stat().st_size == 2 * 16000 * 20 // 25 + 44  # 16-bit + header
    # a second build reads the same folder back, generating nothing
    before = (folder / "meta.json").stat().st_mtime_ns
    SyntheticClips(root=str(clips_root), **SMALL).build()
    assert (folder / "meta.json").stat().st_mtime_ns == before


def test_a_sample_is_a_clip_with_its_mask_and_the_sound_around_its_frame(data):
    train = data.train
    assert isinstance(train, FaceClipDataset)
    assert len(train) == 8                                   # every 5th frame of 2 × 20
    assert data.spec().inputs == {"clip": [4, 4, 32, 32], "audio": [1, 32, 101]}
    row = 2                                                  # frame 10 of the first video
    assert train.frame_of_row[row] == 10
    assert train.frames_of(row).tolist() == [1, 4, 7, 10]
    sample = train[row]
    assert sample["clip"].shape == (4, 4, 32, 32) and sample["clip"].dtype == torch.uint8
    assert sample["audio"].shape == (1, 32, 101)
    mask = sample["clip"][:, 3]
    assert mask.amax() == 255 and (mask > 0).float().mean() < 0.2    # lips drawn, thin lines
    # the labelled frame is the clip's last; its pixels are the frame's image
    assert torch.equal(sample["clip"][-1, :3], (data.train.load_image(row) * 255).round()
                       .to(torch.uint8))
    # before the video's start: black frames with an empty mask (rule black)
    first = train[0]                                         # frame 0: three positions before it
    assert train.frames_of(0).tolist() == [-1, -1, -1, 0]
    assert first["clip"][:3].amax() == 0 and first["clip"][3].amax() > 0


def test_the_batch_transform_normalises_clips_and_spectrograms(data):
    batch = torch.utils.data.default_collate([data.train[i] for i in range(8)])
    out = data.transform(batch, train=False)
    assert out["clip"].dtype == torch.float32 and out["clip"].shape == (8, 4, 4, 32, 32)
    assert abs(float(out["audio"].mean())) < 0.5 and 0.5 < float(out["audio"].std()) < 1.5


def test_a_video_without_sound_gives_silence(data):
    train = data.train
    video = train.videos[0]
    silent = FaceClipDataset(train.table, videos=[Video(frames=video.frames, fps=video.fps),
                                                  train.videos[1]],
                             video_of_row=train.video_of_row, frame_of_row=train.frame_of_row,
                             settings=train.settings, image_size=32)
    spectrogram = silent[0]["audio"]
    assert torch.all(spectrogram == spectrogram.min())       # one level: the floor of silence
    assert silent[0]["clip"][:, 3].amax() == 0                # no landmarks: an empty mask


def test_frame_mode_gives_the_labelled_frames_as_images(clips_root, data):
    frames = SyntheticClips(root=str(clips_root), inputs="frame", **SMALL).build()
    assert frames.spec().inputs == {"image": [3, 32, 32]}
    assert frames.train.table.image_paths == data.train.table.image_paths


@pytest.mark.parametrize("setting, message", [
    (dict(inputs="video"), "dataset.inputs='video'"),
    (dict(clip=dict(rule="clamp")), "dataset.clip.rule='clamp'"),
    (dict(clip=dict(length=0)), "dataset.clip.length=0"),
    (dict(videos_test=0), "dataset.videos_test=0"),
    (dict(aus=[1, 99]), r"AU\(s\) \[99\]"),
    (dict(generator_version=2), "dataset.generator_version=2: this code generates version 3"),
])
def test_bad_settings_get_one_message(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        SyntheticClips(root=str(tmp_path), **{**SMALL, **setting})


def test_tsav_on_an_image_dataset_is_refused_with_the_fix(tmp_path):
    from affectlab.build import build_method

    cfg = compose_config(tmp_path / "synthetic", ["model=tsav"])
    data = build_data(cfg, pack=False)
    method = build_method(cfg)
    with pytest.raises(ValueError, match=r"reads input\(s\) \['clip', 'audio'\], which dataset "
                                         r"'synthetic' does not provide"):
        method.prepare(data)


def clip_run_overrides(clips_root: Path, method: str) -> list[str]:
    return [f"method={method}", *TINY_TRAINER, *TINY_CLIPS, f"dataset.root={clips_root}",
            "method.tasks=[au,expr,va]", "trainer.batch_size=4", "trainer.max_steps=4",
            "trainer.max_epochs=4"]


@pytest.mark.slow
def test_tsav_trains_on_clips_with_every_task(clips_root, tmp_path, monkeypatch):
    """TSAV's two streams (the small CPU arch; the full one's forward and backward are
    test_tsav's) through the real trainer: AUs, expressions and VA from clips and sound; with
    trainer.channels_last_3d every Conv3d reads NDHWC input with NDHWC weights."""
    layouts = set()
    original = torch.nn.Conv3d.forward

    def spy(self, x):
        layouts.add((x.is_contiguous(memory_format=torch.channels_last_3d),
                     self.weight.is_contiguous(memory_format=torch.channels_last_3d)))
        return original(self, x)

    monkeypatch.setattr(torch.nn.Conv3d, "forward", spy)
    cfg = compose_config(clips_root, [*clip_run_overrides(clips_root, "baseline"),
                                      "trainer.channels_last_3d=true"])
    result = run(cfg, tmp_path / "run")
    assert result["steps"] == 4 and set(result["tasks"]) == {"au", "expr", "va"}
    assert layouts == {(True, True)}
    monkeypatch.undo()
    # loaded without its data, the run transforms clips and sound as it trained on them
    import affectlab

    data = build_data(cfg, pack=False)
    raw = torch.utils.data.default_collate([data.test[i] for i in range(4)])
    alone = affectlab.load_run(tmp_path / "run")
    assert alone.data is None and set(alone.transform.rules) == {"image", "clip", "audio"}
    ours = alone.method.predict(alone.transform(dict(raw), train=False))
    expected = alone.method.predict(data.transform(dict(raw), train=False))
    for task in ("au", "expr", "va"):
        assert torch.allclose(ours[task], expected[task], atol=1e-6), task


@pytest.mark.slow
def test_mean_teacher_on_clips_logs_its_terms_and_resumes_exactly(clips_root, tmp_path,
                                                                  monkeypatch):
    """Mean teacher with TSAV on clips (an EMA teacher of both streams, consistency on the
    pool's clips): its terms are logged, and a run stopped after step 2 and resumed ends with
    the weights of an uninterrupted one (clip augmentation, sampler and teacher restored)."""
    overrides = [*clip_run_overrides(clips_root, "mean_teacher"),
                 "method.consistency_rampup_steps=0"]
    run(compose_config(clips_root, overrides), tmp_path / "full")
    terms = {k for line in (tmp_path / "full/metrics.jsonl").read_text().splitlines()
             for k in json.loads(line)}
    assert {"train/consistency", "train/au_pool_rate"} <= terms, terms
    run_interrupted(compose_config(clips_root, overrides), tmp_path / "stopped", 2, monkeypatch)
    run(compose_config(clips_root, [*overrides, "trainer.resume="
                                    f"{tmp_path / 'stopped/checkpoints/last.pt'}"]),
        tmp_path / "resumed")
    assert same_final_weights(tmp_path / "full", tmp_path / "resumed")


def test_the_packed_store_holds_each_frame_once_and_reads_the_same_clips(clips_root, data,
                                                                          tmp_path):
    from affectlab.data.packed import ClipFrames, PackedClips, use_packed

    frames = ClipFrames(data.train)
    assert len(frames) == 40                               # 2 videos × 20 frames, once each
    packed = use_packed(SyntheticClips(root=str(clips_root), **SMALL).build(),
                        tmp_path / "packed", workers=0)
    train = packed.train
    assert isinstance(train, PackedClips)
    files = sorted((tmp_path / "packed").glob("*.npy"))
    assert any("-train-clips-" in f.name for f in files)
    size = next(f for f in files if "-train-clips-" in f.name).stat().st_size
    assert size == pytest.approx(40 * 4 * 32 * 32, rel=0.01)   # uint8 frames + mask, once
    for row in range(len(train)):
        a, b = train[row], data.train[row]
        assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["audio"], b["audio"])
    import pickle
    clone = pickle.loads(pickle.dumps(train))                 # loader workers map it again
    assert clone._array is None and torch.equal(clone[3]["clip"], train[3]["clip"])
