"""Windows of consecutive frames and the CNN-RNN (data/sequences.py, models/cnn_rnn.py): the
window rule at a video's end and for short videos, the windows' frames and masks, predictions
averaged per frame over windows, a frozen CNN loaded from a trained frame CNN, and a tiny
CNN-RNN run through the real trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from affectlab.build import build_data, build_method
from affectlab.data.contract import DataError
from affectlab.data.sequences import SequenceDataset, sequence_windows
from affectlab.engine.evaluation import average_by_index
from affectlab.train import run

from .conftest import TINY_TRAINER, compose_config

FRAMES = ["dataset=synthetic_clips", "dataset.videos_train=2", "dataset.videos_unlabeled=1",
          "dataset.videos_val=1", "dataset.videos_test=1", "dataset.frames_per_video=40",
          "dataset.label_every=5", "dataset.image_size=32", "dataset.audio=null",
          "method=baseline", "method.tasks=[au,expr,va]", *TINY_TRAINER,
          "trainer.batch_size=2", "trainer.max_steps=3"]
SEQUENCE = ["dataset.clip.length=1", "dataset.clip.mask=false", "sequence={length: 5, stride: 3}",
            "model=cnn_rnn", "model.cnn.widths=[8,16]", "model.hidden=4"]


def test_windows_end_at_the_videos_end_and_short_videos_are_padded():
    windows = sequence_windows(70, 32, 16)
    assert [w[0] for w in windows] == [0, 16, 32, 38] and windows[-1][-1] == 69
    assert all(len(w) == 32 for w in windows)
    assert sequence_windows(5, 8, 4)[0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert [w.tolist() for w in sequence_windows(4, 2, 2)] == [[0, 1], [2, 3]]
    assert sequence_windows(0, 8, 4) == []
    with pytest.raises(ValueError, match="length=0"):
        sequence_windows(5, 0, 1)


def test_predictions_are_averaged_per_frame_over_windows_by_hand():
    outputs = {"au": np.array([[0.2], [0.4], [0.6], [0.8], [1.0], [1.0]])}
    targets = {"index": np.array([0, 1, 1, 2, 2, 2]), "frame_valid":
               np.array([True, True, True, True, True, False]),
               "au": np.array([[0.0], [1.0], [1.0], [0.0], [0.0], [0.0]])}
    averaged, once = average_by_index(outputs, targets)
    assert averaged["au"][:, 0].tolist() == pytest.approx([0.2, 0.5, 0.9])
    assert once["index"].tolist() == [0, 1, 2] and once["au"][:, 0].tolist() == [0, 1, 0]
    plain = {"au": np.ones((2, 1))}
    assert average_by_index(plain, {"au": np.ones((2, 1))})[0] is plain


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sequences")


def test_a_window_holds_consecutive_labelled_frames_of_one_video(root):
    cfg = compose_config(root, [*FRAMES, *SEQUENCE])
    data = build_data(cfg, pack=False)
    windows = data.train
    assert isinstance(windows, SequenceDataset) and len(windows.table) == len(windows)
    frames = windows.frames
    per_video = 40 // 5
    assert len(windows) == 2 * len(sequence_windows(per_video, 5, 3))
    sample = windows[1]
    assert sample["clip"].shape == (5, 3, 32, 32) and sample["au"].shape[0] == 5
    rows = sample["index"].numpy()
    assert len(set(frames.video_of_row[rows])) == 1
    assert np.all(np.diff(frames.frame_of_row[rows]) == 5)          # consecutive labelled
    first = frames[int(rows[0])]
    assert torch.equal(sample["clip"][0], first["clip"][0])
    assert torch.equal(sample["au"][0], first["au"]) and sample["frame_valid"].all()
    # the batch transform gives one row per frame to the method
    batch = data.transform(next(iter(torch.utils.data.DataLoader(windows, batch_size=2))),
                           train=True)
    assert batch["clip"].shape[:2] == (2, 5) and batch["au"].shape[0] == 10
    assert batch["expr_mask"].shape == (10,) and batch["index"].shape == (10,)


def test_a_video_shorter_than_the_window_is_padded_and_masked(root):
    cfg = compose_config(root, [*FRAMES, *SEQUENCE, "sequence.length=12"])
    windows = build_data(cfg, pack=False).train            # 8 labelled frames a video
    sample = windows[0]
    assert sample["frame_valid"].tolist() == [True] * 8 + [False] * 4
    assert not sample["au_mask"][8:].any() and not sample["expr_mask"][8:].any()
    assert torch.equal(sample["clip"][11], sample["clip"][7])


def test_sequences_need_clips_of_one_frame(root):
    with pytest.raises(DataError, match="dataset.clip=\\{length: 1"):
        build_data(compose_config(root, [*FRAMES, "sequence={length: 4}"]), pack=False)


@pytest.mark.slow
def test_a_cnn_rnn_on_a_frozen_frame_cnn_trains_and_scores_every_frame_once(root, tmp_path):
    frame_cnn = run(compose_config(root, [*FRAMES, "dataset.inputs=frame", "model=small_cnn",
                                          "model.widths=[8,16]"]), tmp_path / "frame_cnn")
    assert frame_cnn["steps"] == 3
    cfg = compose_config(root, [*FRAMES, *SEQUENCE, f"init_from={tmp_path / 'frame_cnn'}"])
    result = run(cfg, tmp_path / "cnn_rnn")
    assert set(result["tasks"]) == {"au", "expr", "va"}
    cnn = torch.load(tmp_path / "frame_cnn/checkpoints/best.pt", weights_only=True)["method"]
    trained = torch.load(tmp_path / "cnn_rnn/checkpoints/last.pt", weights_only=True)["method"]
    frozen = [k for k in trained if k.startswith("backbone.cnn.")]
    assert frozen and all(torch.equal(trained[k], cnn[k.replace("backbone.cnn.", "backbone.")])
                          for k in frozen)                   # loaded, and never moved
    first = compose_config(root, [*FRAMES, *SEQUENCE])
    untrained = build_method(first)
    untrained.prepare(build_data(first, pack=False))
    assert any(not torch.equal(trained[k], v) for k, v in untrained.state_dict().items()
               if k.startswith("backbone.grus."))
    # every test frame is scored once, whatever the windows' overlap
    metrics = json.loads((tmp_path / "cnn_rnn/metrics.json").read_text())
    frames = build_data(first, pack=False).test.frames
    assert metrics["tasks"]["expr"]["num_valid"] == int(frames.table.expr_mask.sum())
    assert metrics["tasks"]["au"]["num_valid"] == frames.table.au_mask.sum(0).tolist()


def test_the_cnn_rnn_benchmark_runs(root, tmp_path):
    from .conftest import load_script
    benchmark = load_script("benchmark_cnn_rnn")
    tiny = [f"dataset.root={root}", *FRAMES[1:9], "model.cnn.widths=[8,16]", "model.hidden=4",
            "sequence={length: 4, stride: 2}", "trainer.batch_size=2", "trainer.device=cpu"]
    assert benchmark.main(["--steps", "2", "--warmup", "1", "--out", str(tmp_path), *tiny]) == 0
    result = json.loads((tmp_path / "benchmark_cnn_rnn.json").read_text())
    assert result["batch_shape"][:2] == [2, 4] and 0 < result["cnn_share"]
    assert "feature cache would save at most" in (tmp_path / "benchmark_cnn_rnn.md").read_text()


def test_cached_frame_features_stand_in_for_the_frozen_cnn(root, tmp_path, monkeypatch):
    frame_run = tmp_path / "frame_cnn"
    run(compose_config(root, [*FRAMES, "dataset.inputs=frame", "model=small_cnn",
                              "model.widths=[8,16]"]), frame_run)
    cached = [*FRAMES, "dataset.clip.length=1", "dataset.clip.mask=false",
              f"sequence={{length: 5, stride: 3, features_from: {frame_run}}}",
              "model=cnn_rnn", "model.cnn=null", "model.feature_size=16", "model.hidden=4",
              f"packed_dir={tmp_path / 'packed'}"]
    data = build_data(compose_config(root, cached))
    windows = data.train
    sample = windows[0]
    assert "clip" not in sample and sample["features"].shape == (5, 16)
    assert data.spec().inputs == {"features": [5, 16]}
    # the frame CNN's own features of the un-augmented frame
    loaded = __import__("affectlab").load_run(frame_run)
    row = int(sample["index"][2])
    frame = windows.frames[row]["clip"][:, :3]
    with torch.no_grad():
        expected = loaded.method.backbone.forward_features(
            loaded.transform({"image": frame}, train=False)["image"])[0]
    assert torch.allclose(sample["features"][2], expected, atol=1e-5)
    assert len(list((tmp_path / "packed").glob("features-*.npy"))) == 3      # one a split

    def must_not_load(*args, **kwargs):
        raise AssertionError("cached features were computed again")

    monkeypatch.setattr("affectlab.inference.load_run", must_not_load)
    again = build_data(compose_config(root, cached)).train[0]
    assert torch.equal(again["features"], sample["features"])
    result = run(compose_config(root, cached), tmp_path / "cnn_rnn")
    assert set(result["tasks"]) == {"au", "expr", "va"}
    with pytest.raises(Exception, match="model.cnn=null .* needs model.feature_size"):
        build_method(compose_config(root, [*cached, "model.feature_size=null"]))
