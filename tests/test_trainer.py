"""The shared trainer end to end, in process: run directory, metrics.json, resume, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from affectlab.engine import CheckpointError
from affectlab.train import run

from .conftest import run_interrupted, same_final_weights, tree_snapshot


def test_tiny_run_writes_the_run_directory(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    metrics = run(tiny_cfg(), run_dir)
    for name in ("config_resolved.yaml", "run_info.json", "metrics.jsonl", "metrics.json",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))

    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["method"] == "baseline" and saved["dataset"] == "synthetic"
    assert saved["seed"] == 0 and saved["split"] == "test"
    au = saved["tasks"]["au"]
    assert len(au["labels"]) == len(au["f1"]) == len(au["acc"]) == 12
    assert au["labels"][0] == "AU1"
    assert 0.0 <= au["f1_mean"] <= 1.0 and 0.0 <= au["acc_mean"] <= 1.0
    assert au["f1_mean"] == pytest.approx(sum(au["f1"]) / 12)
    assert saved["throughput_images_per_s"] > 0

    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*events)
    assert {"train/loss", "train/lr", "val/au/f1_mean", "val/au/f1/AU12", "test/au/f1_mean"} <= keys

    checkpoint = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)
    for key in ("method", "optimizer", "scheduler", "rng", "config", "epoch", "global_step",
                "best_value"):
        assert key in checkpoint, key
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["seed"] == 0


def test_max_steps_overrides_epochs(tiny_cfg, tmp_path):
    metrics = run(tiny_cfg("trainer.max_steps=2", "trainer.max_epochs=50"), tmp_path / "run")
    assert metrics["steps"] == 2 and metrics["epochs"] == 1


def test_existing_run_is_never_overwritten(tiny_cfg, tmp_path):
    run(tiny_cfg("trainer.max_steps=1"), tmp_path / "run")
    before = tree_snapshot(tmp_path / "run")
    with pytest.raises(CheckpointError, match="already holds a run.*wrote nothing there"):
        run(tiny_cfg("trainer.max_steps=1", "seed=3"), tmp_path / "run")
    assert tree_snapshot(tmp_path / "run") == before


def test_interrupted_and_resumed_run_ends_like_an_uninterrupted_one(tiny_cfg, tmp_path,
                                                                      monkeypatch):
    overrides = ["trainer.max_epochs=3", "trainer.batch_size=4"]
    reference = run(tiny_cfg(*overrides), tmp_path / "full")

    # 6 steps per epoch: Ctrl-C in the 8th forward stops after step 8, mid-way through epoch 2
    last = run_interrupted(tiny_cfg(*overrides), tmp_path / "interrupted", 8, monkeypatch)
    assert last["global_step"] == 8 and last["epoch"] == 1 and last["batch_in_epoch"] == 2

    resume = tmp_path / "interrupted/checkpoints/last.pt"
    resumed = run(tiny_cfg(*overrides, f"trainer.resume={resume}"), tmp_path / "resumed")
    assert resumed["tasks"] == reference["tasks"]
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert resumed["steps"] == reference["steps"]
    assert same_final_weights(tmp_path / "full", tmp_path / "resumed")


def test_resume_from_another_model_is_refused(tiny_cfg, tmp_path):
    run(tiny_cfg("trainer.max_steps=1"), tmp_path / "small")
    last = tmp_path / "small/checkpoints/last.pt"
    with pytest.raises(CheckpointError, match=r"other settings: model.widths: \[8, 16\] → "
                                              r"\[8, 32\]; trainer.max_steps: 1 → None"):
        run(tiny_cfg("model.widths=[8,32]", f"trainer.resume={last}"), tmp_path / "other")
    assert not (tmp_path / "other").exists()      # refused before anything was written
    # a change allowed on purpose still has to fit the weights
    with pytest.raises(CheckpointError, match="does not fit this model"):
        run(tiny_cfg("model.widths=[8,32]", f"trainer.resume={last}",
                     "trainer.allow_changes=[model,trainer.max_steps]"), tmp_path / "other")


def test_resume_from_missing_or_damaged_checkpoint(tiny_cfg, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        run(tiny_cfg(f"trainer.resume={tmp_path / 'nope.pt'}"), tmp_path / "a")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="damaged.pt"):
        run(tiny_cfg(f"trainer.resume={damaged}"), tmp_path / "b")


def test_same_seed_same_result_different_seed_differs(tiny_cfg, tmp_path):
    a = run(tiny_cfg("trainer.max_steps=3"), tmp_path / "a")
    b = run(tiny_cfg("trainer.max_steps=3"), tmp_path / "b")
    c = run(tiny_cfg("trainer.max_steps=3", "seed=1"), tmp_path / "c")
    assert a["tasks"] == b["tasks"]
    assert a["tasks"] != c["tasks"]


def test_loader_workers_give_the_same_run(tiny_cfg, tmp_path):
    # two epochs through one persistent train loader (workers kept across epochs) and the
    # pool's: the batches, and so the result, are those of loading in this process
    serial = run(tiny_cfg("method=mlcr", "method.step_two_start=2"), tmp_path / "serial")
    workers = run(tiny_cfg("method=mlcr", "method.step_two_start=2", "trainer.num_workers=2"),
                  tmp_path / "workers")
    assert serial["steps"] == workers["steps"] > 3 and serial["epochs"] == 2
    assert serial["tasks"] == workers["tasks"]


def test_optimizers_and_step_schedule_train(tiny_cfg, tmp_path):
    for optim in ("sgd_step", "adamw"):
        metrics = run(tiny_cfg(f"optim={optim}", "trainer.max_steps=2",
                               "trainer.grad_clip_norm=1.0"), tmp_path / optim)
        assert metrics["steps"] == 2


def test_best_checkpoint_is_the_best_validation_epoch(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    metrics = run(tiny_cfg("trainer.max_epochs=4", "trainer.eval_every_epochs=1"), run_dir)
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [(e["step"], e["val/score"]) for e in events if "val/score" in e]
    assert len(val) == 4
    best_value = max(v for _, v in val)
    first_best_epoch = 1 + [v for _, v in val].index(best_value)
    assert metrics["best_value"] == best_value and metrics["best_epoch"] == first_best_epoch
    best = torch.load(run_dir / "checkpoints/best.pt", weights_only=True)
    assert best["best_epoch"] == first_best_epoch and best["epoch"] == first_best_epoch


def test_bf16_autocast_path_trains(tiny_cfg, tmp_path):
    metrics = run(tiny_cfg("trainer.precision=bf16", "trainer.max_steps=2"), tmp_path / "run")
    assert metrics["steps"] == 2


def test_compile_wraps_the_training_forward_and_channels_last_reaches_the_weights(
        tiny_cfg, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(model, **kwargs):      # the wiring, without a C++ toolchain's minutes
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    seen = {}
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        seen.setdefault("input", x.is_contiguous(memory_format=torch.channels_last))
        seen.setdefault("weight", self.weight.is_contiguous(memory_format=torch.channels_last))
        return original(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    run(tiny_cfg("trainer.max_steps=1", "trainer.compile=true", "trainer.channels_last=true"),
        tmp_path / "run")
    assert len(compiled) == 1 and type(compiled[0]).__name__ == "Baseline"
    assert seen == {"input": True, "weight": True}


def test_unwritable_data_root_is_a_clear_error(tmp_path):
    from affectlab.data.contract import DataError

    from .conftest import compose_config

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot be created.*writable folder"):
        run(compose_config(blocker / "data"), tmp_path / "run")


def test_unknown_monitor_names_the_available_metrics(tiny_cfg, tmp_path):
    with pytest.raises(KeyError, match="val/au/f1_mean"):
        run(tiny_cfg("trainer.monitor=val/au/f1_avg", "trainer.max_steps=1"), tmp_path / "run")


def test_diverging_loss_stops_with_advice(tiny_cfg, tmp_path):
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):
        run(tiny_cfg("optim.optimizer.lr=1e30", "trainer.max_steps=4"), tmp_path / "run")


def test_each_torchrun_process_takes_its_own_gpu_or_is_told_why(monkeypatch):
    import torch

    from affectlab.config import ConfigError
    from affectlab.utils import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)   # an explicit index wins
    with pytest.raises(ConfigError, match=r"trainer.device=cuda:2: only 2 GPU\(s\) visible"):
        resolve_device("cuda:2")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ConfigError, match=r"process 2 of this node has no GPU: 2 visible.*"
                                           "nproc_per_node"):
        resolve_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="trainer.device=cuda but no CUDA device is visible"):
        resolve_device("cuda")
