"""Nothing lost, nothing silently wrong: run directories, interrupts and pre-emption, checkpoints
that always resume, divergence, changed settings on resume, short runs, values that crash.

Each test is one failure injected (README "What survives what"), checked against an
uninterrupted run where it should end the same.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch

from affectlab.engine import (
    CheckpointError,
    DivergenceError,
    RunDirectoryError,
    TrainerSettings,
)
from affectlab.engine.checkpoint import load_checkpoint
from affectlab.engine.guards import NonFiniteWatch
from affectlab.engine.run_dir import claim_run_dir
from affectlab.train import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED, run

from .conftest import (
    REPO,
    TINY_DATA,
    TINY_MODEL,
    TINY_TRAINER,
    run_cli,
    run_interrupted,
    same_final_weights,
    tree_snapshot,
)

# 24 training faces, batch 8: 3 steps per epoch; 3 epochs, validated after each
THREE_EPOCHS = ["trainer.max_epochs=3", "trainer.eval_every_epochs=1"]


def cli_args(data_root: Path, *extra: str) -> list[str]:
    return [f"dataset.root={data_root}", *TINY_DATA, *TINY_MODEL, *TINY_TRAINER,
            "method=baseline", *extra]


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory):
    """One uninterrupted run of THREE_EPOCHS, the yardstick of every resume below."""
    from .conftest import compose_config

    run_dir = tmp_path_factory.mktemp("reference") / "run"
    return run_dir, run(compose_config(data_root, THREE_EPOCHS), run_dir)


def assert_same_run(resumed: dict, resumed_dir: Path, reference) -> None:
    reference_dir, reference_metrics = reference
    assert resumed["tasks"] == reference_metrics["tasks"]
    assert resumed["best_epoch"] == reference_metrics["best_epoch"]
    assert resumed["steps"] == reference_metrics["steps"]
    assert same_final_weights(reference_dir, resumed_dir)


# ------------------------------------------------------------------- one run, one directory
def test_claiming_a_directory_is_exclusive_under_a_race(tmp_path):
    outcomes: list[object] = []

    def claim(unique: bool) -> None:
        try:
            outcomes.append(claim_run_dir(tmp_path / "run", unique=unique))
        except RunDirectoryError as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=claim, args=(False,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(o, Path) for o in outcomes) == 1
    assert all("already holds a run" in str(o) for o in outcomes if not isinstance(o, Path))

    outcomes.clear()
    threads = [threading.Thread(target=claim, args=(True,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in outcomes) == ["run_1", "run_2", "run_3", "run_4"]


def test_two_runs_started_into_one_directory(tmp_path, data_root):
    """Both exit 0 today and the directory mixes their files; now one refuses."""
    runs = [start_cli(cli_args(data_root, f"seed={seed}", "hydra.run.dir=outputs/shared"),
                      tmp_path) for seed in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in runs]
    codes = sorted(p.returncode for p in runs)
    assert codes == [0, EXIT_BAD_INPUT], outputs
    refused = next(out for p, out in zip(runs, outputs) if p.returncode == EXIT_BAD_INPUT)
    assert "already holds a run" in refused[0] + refused[1]
    run_dir = tmp_path / "outputs/shared"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    saved = load_checkpoint(run_dir / "checkpoints/best.pt")["config"]["seed"]
    overrides = (run_dir / ".hydra/overrides.yaml").read_text()
    assert metrics["seed"] == saved and f"seed={metrics['seed']}" in overrides


def test_a_taken_default_directory_gives_a_new_name(tmp_path, data_root):
    # every timestamped directory of the next minute is taken: the run takes <time>_1
    now = datetime.now()
    for second in range(60):
        taken = tmp_path / "outputs/clash" / (now + timedelta(seconds=second)).strftime(
            "%Y-%m-%d_%H-%M-%S")
        taken.mkdir(parents=True)
        (taken / "run_info.json").write_text("{}")
    result = run_cli(cli_args(data_root, "run_name=clash", "trainer.max_steps=1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    finished = list((tmp_path / "outputs/clash").glob("*/metrics.json"))
    assert len(finished) == 1 and finished[0].parent.name.endswith("_1")
    assert (finished[0].parent / "train.log").is_file()
    assert (finished[0].parent / ".hydra/overrides.yaml").is_file()


def test_a_refused_resume_leaves_the_finished_run_byte_identical(tmp_path, data_root):
    args = cli_args(data_root, "trainer.max_steps=2", "hydra.run.dir=outputs/done")
    assert run_cli(args, cwd=tmp_path).returncode == 0
    before = tree_snapshot(tmp_path / "outputs/done")
    result = run_cli([*args, "seed=5", "trainer.resume=outputs/done/checkpoints/last.pt"],
                     cwd=tmp_path)
    assert result.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in result.stderr
    assert tree_snapshot(tmp_path / "outputs/done") == before


def test_an_unwritable_run_directory_is_one_message(tiny_cfg, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(RunDirectoryError, match="cannot write into the run directory"):
        run(tiny_cfg("trainer.max_steps=1"), blocker / "run")


# ------------------------------------------------------------- interrupts and pre-emption
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_a_signal_mid_epoch_saves_and_resumes_bit_exactly(tiny_cfg, tmp_path, monkeypatch,
                                                          signum, reference):
    # the 5th forward is the 2nd step of epoch 2: the run stops after it
    last = run_interrupted(tiny_cfg(*THREE_EPOCHS), tmp_path / "stopped", 5, monkeypatch, signum)
    assert (last["global_step"], last["epoch"], last["batch_in_epoch"]) == (5, 1, 2)
    assert not (tmp_path / "stopped/metrics.json").exists()
    resumed = run(tiny_cfg(*THREE_EPOCHS,
                           f"trainer.resume={tmp_path / 'stopped/checkpoints/last.pt'}"),
                  tmp_path / "resumed")
    assert_same_run(resumed, tmp_path / "resumed", reference)


KILL_AT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.conftest import compose_config
from affectlab.train import run
import affectlab.engine.selection as selection_module
import torch
torch.set_num_threads({threads})   # the test process's: float sums then match bit for bit
{patch}
run(compose_config(Path({data_root!r}), {overrides!r}), Path({run_dir!r}))
"""

KILL_IN_FORWARD = """
from affectlab.methods.baseline import Baseline
forward, calls = Baseline.forward, [0]
def killing_forward(self, batch):
    calls[0] += 1
    if calls[0] == {at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return forward(self, batch)
Baseline.forward = killing_forward
"""

KILL_WRITING_BEST = """
save = selection_module.atomic_torch_save     # best.pt is written by the selection
def killing_save(obj, path):
    if Path(path).name == "best.pt":      # half a temporary, then the power goes
        Path(path).with_name(".best.pt.killed.tmp").write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, path)
selection_module.atomic_torch_save = killing_save
"""


def run_killed(data_root: Path, run_dir: Path, overrides: list[str], patch: str) -> None:
    script = KILL_AT.format(repo=str(REPO), patch=patch, data_root=str(data_root),
                            overrides=overrides, run_dir=str(run_dir),
                            threads=torch.get_num_threads())
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


def test_sigkill_loses_at_most_checkpoint_every_steps_and_resumes_bit_exactly(
        tiny_cfg, tmp_path, data_root, reference):
    overrides = [*THREE_EPOCHS, "trainer.checkpoint_every_steps=2"]
    run_killed(data_root, tmp_path / "killed", overrides, KILL_IN_FORWARD.format(at=6))
    last = load_checkpoint(tmp_path / "killed/checkpoints/last.pt")
    assert last["global_step"] == 4        # killed in step 6: steps 5 and 6 are lost
    resumed = run(tiny_cfg(*overrides, f"trainer.resume={tmp_path / 'killed/checkpoints/last.pt'}"),
                  tmp_path / "resumed")
    assert_same_run(resumed, tmp_path / "resumed", reference)


def test_killed_while_writing_best_resumes_and_leaves_no_temporary(tiny_cfg, tmp_path, data_root,
                                                                   reference):
    overrides = [*THREE_EPOCHS, "trainer.checkpoint_every_steps=2"]
    run_killed(data_root, tmp_path / "killed", overrides, KILL_WRITING_BEST)
    checkpoints = tmp_path / "killed/checkpoints"
    assert not (checkpoints / "best.pt").exists() and list(checkpoints.glob(".*.tmp"))
    resumed = run(tiny_cfg(*overrides, f"trainer.resume={checkpoints / 'last.pt'}"),
                  tmp_path / "resumed")
    assert_same_run(resumed, tmp_path / "resumed", reference)
    assert not list(checkpoints.glob(".*.tmp"))
    assert not list((tmp_path / "resumed/checkpoints").glob(".*.tmp"))


def test_a_resume_whose_best_checkpoint_is_gone_selects_anew(tiny_cfg, tmp_path, monkeypatch,
                                                            caplog):
    last = run_interrupted(tiny_cfg(*THREE_EPOCHS), tmp_path / "stopped", 5, monkeypatch)
    assert last["best_epoch"] == 1
    (tmp_path / "stopped/checkpoints/best.pt").unlink()
    with caplog.at_level(logging.WARNING):
        resumed = run(tiny_cfg(*THREE_EPOCHS,
                               f"trainer.resume={tmp_path / 'stopped/checkpoints/last.pt'}"),
                      tmp_path / "resumed")
    assert "is gone: best-checkpoint selection starts anew" in caplog.text
    assert resumed["best_epoch"] in (2, 3) and (tmp_path / "resumed/metrics.json").is_file()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_cli_stops_on_a_signal_with_status_3_and_the_resume_command(tmp_path, data_root,
                                                                         signum):
    process = start_cli(cli_args(data_root, "trainer.max_epochs=400", "hydra.run.dir=run"),
                        tmp_path)
    events = tmp_path / "run/metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (events.exists() and events.read_text().count("\n") >= 3):
        time.sleep(0.2)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, stderr[-2000:]
    assert "Traceback" not in stderr + stdout
    assert f"stopped by {signal.Signals(signum).name}" in stdout
    command = stdout.split("Continue exactly where it stopped with:")[1].strip().splitlines()[0]
    # the same overrides, the checkpoint, and a new directory (the stopped one stays as it is)
    assert command.startswith("python train.py") and "trainer.max_epochs=400" in command
    assert command.endswith(f"trainer.resume={tmp_path / 'run/checkpoints/last.pt'}")
    assert "hydra.run.dir" not in command
    last = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert last["global_step"] >= 3 and not (tmp_path / "run/metrics.json").exists()


# ----------------------------------------------------------------------------- divergence
def poison(monkeypatch, term: str, at_calls: set[int]) -> None:
    """Make the baseline's ``term`` loss NaN in the given training forwards (1-based)."""
    from affectlab.methods.baseline import Baseline

    forward, calls = Baseline.forward, [0]

    def poisoned(self, batch):
        out = forward(self, batch)
        calls[0] += 1
        if calls[0] in at_calls:
            out[term] = out[term] * math.nan
            out["loss"] = out["loss"] + out[term]
        return out

    monkeypatch.setattr(Baseline, "forward", poisoned)


def test_nan_at_the_first_step_stops_naming_step_and_term(tiny_cfg, tmp_path, monkeypatch):
    poison(monkeypatch, "au", {1})
    with pytest.raises(DivergenceError, match=r"loss term\(s\) au became non-finite .* at step 1"):
        run(tiny_cfg(), tmp_path / "run")
    assert not (tmp_path / "run/metrics.json").exists()
    assert not list((tmp_path / "run/checkpoints").glob("*.pt"))


def test_a_later_nan_keeps_the_last_finite_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    """log_every_steps larger than the run: today's check never fires and NaN weights are
    saved as best.pt."""
    poison(monkeypatch, "au", {5})
    with pytest.raises(DivergenceError, match="at step 5"):
        run(tiny_cfg(*THREE_EPOCHS, "trainer.log_every_steps=1000"), tmp_path / "run")
    assert not (tmp_path / "run/metrics.json").exists()
    for name in ("last.pt", "best.pt"):
        saved = load_checkpoint(tmp_path / f"run/checkpoints/{name}")
        assert saved["global_step"] == 3
        assert all(torch.isfinite(v).all() for v in saved["method"].values()
                   if v.is_floating_point())


def test_the_cli_exits_non_zero_on_divergence(tmp_path, data_root):
    result = run_cli(cli_args(data_root, "optim.optimizer.lr=1e30", "trainer.max_steps=4"),
                     cwd=tmp_path)
    assert result.returncode == EXIT_DIVERGED
    assert "became non-finite" in result.stdout + result.stderr
    assert not list(tmp_path.rglob("metrics.json"))


def test_the_device_side_watch_names_the_first_bad_step_when_read():
    """The CUDA path: no host read per step, the first bad step and term found when read."""
    watch = NonFiniteWatch(eager=False)
    finite = {"loss": torch.tensor(1.0), "au": torch.tensor(0.5), "expr": torch.tensor(0.5)}
    watch.observe(finite, 1)
    watch.observe({**finite, "expr": torch.tensor(math.inf), "loss": torch.tensor(math.inf)}, 2)
    watch.observe({**finite, "au": torch.tensor(math.nan)}, 3)
    watch.observe(finite, 4)
    with pytest.raises(DivergenceError,
                       match=r"au, expr became non-finite \(NaN or inf\), first at step 2"):
        watch.check()
    clean = NonFiniteWatch(eager=False)
    clean.observe(finite, 1)
    clean.check()


def test_skip_nonfinite_skips_and_counts(tiny_cfg, tmp_path, monkeypatch):
    poison(monkeypatch, "au", {2, 4})
    metrics = run(tiny_cfg("trainer.skip_nonfinite=true"), tmp_path / "run")
    assert metrics["skipped_nonfinite_steps"] == 2 and metrics["steps"] == 6
    weights = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["method"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


# --------------------------------------------------------------- changed settings on resume
@pytest.mark.parametrize("change,key", [("optim.optimizer.lr=0.01", "optim.optimizer.lr"),
                                        ("seed=4", "seed"),
                                        ("trainer.max_epochs=5", "trainer.max_epochs")])
def test_a_resume_with_changed_settings_is_refused(tiny_cfg, tmp_path, monkeypatch, change, key):
    run_interrupted(tiny_cfg(*THREE_EPOCHS), tmp_path / "stopped", 5, monkeypatch)
    last = tmp_path / "stopped/checkpoints/last.pt"
    with pytest.raises(CheckpointError,
                       match=rf"other settings: (.*; )?{re.escape(key)}: .*allow_changes"):
        run(tiny_cfg(*THREE_EPOCHS, change, f"trainer.resume={last}"), tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists()


def test_an_allowed_change_of_learning_rate_is_applied_and_recorded(tiny_cfg, tmp_path,
                                                                    monkeypatch):
    overrides = [*THREE_EPOCHS, "optim=sgd_step"]       # a constant rate within these epochs
    run_interrupted(tiny_cfg(*overrides), tmp_path / "stopped", 5, monkeypatch)
    last = tmp_path / "stopped/checkpoints/last.pt"
    metrics = run(tiny_cfg(*overrides, "optim.optimizer.lr=0.0123", f"trainer.resume={last}",
                           "trainer.allow_changes=[optim.optimizer.lr]"), tmp_path / "resumed")
    assert metrics["resume_changes"]["optim.optimizer.lr"][1] == 0.0123
    events = [json.loads(line) for line in
              (tmp_path / "resumed/metrics.jsonl").read_text().splitlines()]
    rates = [e["train/lr"] for e in events if "train/lr" in e]
    assert rates and all(r == pytest.approx(0.0123) for r in rates)
    resumed = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")
    assert resumed["config"]["optim"]["optimizer"]["lr"] == 0.0123


# ------------------------------------------------------------------ logging, labels, values
def test_a_run_shorter_than_log_every_steps_logs_its_first_and_last_step(tiny_cfg, tmp_path):
    run(tiny_cfg("trainer.max_steps=3", "trainer.log_every_steps=10"), tmp_path / "run")
    events = [json.loads(line)
              for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if "train/loss" in e] == [1, 3]


def test_labels_without_positives_are_named(tiny_cfg, tmp_path, monkeypatch, caplog):
    from affectlab import train

    build_data = train.build_data

    def without_au1_positives(cfg, **kwargs):
        data = build_data(cfg, **kwargs)
        data.train.table.au[:, 0] = 0.0
        return data

    monkeypatch.setattr(train, "build_data", without_au1_positives)
    with caplog.at_level(logging.WARNING):
        run(tiny_cfg("trainer.max_steps=1"), tmp_path / "run")
    warning = [r.getMessage() for r in caplog.records if "no positive example" in r.getMessage()]
    assert len(warning) == 1 and warning[0].startswith("au: AU1 have")


@pytest.mark.parametrize("value,message", [
    ("trainer.batch_size=0", r"trainer.batch_size=0: must be an integer ≥ 1"),
    ("trainer.batch_size=-8", r"trainer.batch_size=-8: must be an integer ≥ 1"),
    ("trainer.eval_every_epochs=0", r"trainer.eval_every_epochs=0: must be an integer ≥ 1"),
    ("trainer.log_every_steps=0", r"trainer.log_every_steps=0: must be an integer ≥ 1"),
    ("trainer.max_steps=0", r"trainer.max_steps=0: must be an integer ≥ 1 .*null trains"),
    ("trainer.max_steps=-5", r"trainer.max_steps=-5: must be an integer ≥ 1"),
    ("trainer.max_epochs=0", r"trainer.max_epochs=0: must be an integer ≥ 1"),
    ("trainer.checkpoint_every_steps=0", r"trainer.checkpoint_every_steps=0: must be"),
    ("trainer.num_workers=-1", r"trainer.num_workers=-1: must be an integer ≥ 0"),
    ("trainer.eval_batch_size=0", r"trainer.eval_batch_size=0: must be an integer ≥ 1"),
    ("trainer.grad_clip_norm=0", r"trainer.grad_clip_norm=0: must be > 0"),
])
def test_values_that_crashed_are_one_message_naming_key_and_range(tiny_cfg, tmp_path, value,
                                                                  message):
    with pytest.raises(Exception, match=message) as raised:
        run(tiny_cfg(value), tmp_path / "run")
    assert isinstance(raised.value, ValueError) or "InstantiationException" in repr(raised.value)
    assert not (tmp_path / "run").exists()


def test_a_crashing_value_at_the_cli_is_one_line(tmp_path, data_root):
    result = run_cli(cli_args(data_root, "trainer.batch_size=0"), cwd=tmp_path)
    assert result.returncode == EXIT_BAD_INPUT
    assert "trainer.batch_size=0: must be an integer ≥ 1" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "ZeroDivisionError" not in result.stderr


def test_the_trainer_checks_values_when_built_directly():
    with pytest.raises(ValueError, match="trainer.log_every_steps=0"):
        TrainerSettings(max_epochs=1, batch_size=8, log_every_steps=0, device="cpu")


def test_sigterm_under_torchrun_stops_every_process_at_one_step(tmp_path, data_root):
    """A scheduler's SIGTERM reaches torchrun, which passes it to every process: they agree on
    the step (their flags are combined), the main process saves and says how to resume."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(REPO / "train.py"),
               *cli_args(data_root, "trainer.max_epochs=5000", "trainer.batch_size=4",
                         "trainer.device=cpu", "hydra.run.dir=ddp")]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    events = tmp_path / "ddp/metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (events.exists() and events.read_text().count("\n") >= 5):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    output = stdout + stderr
    assert output.count("stopped by SIGTERM") == 1, output[-3000:]      # said by rank 0 only
    assert "torchrun --nproc_per_node=2 train.py" in output
    # torchrun prints a traceback of its own for the signal; none comes from the workers
    assert "affectlab/engine/" not in output and "affectlab/train.py" not in output
    last = load_checkpoint(tmp_path / "ddp/checkpoints/last.pt")
    assert last["global_step"] >= 5 and not (tmp_path / "ddp/metrics.json").exists()


def test_a_truncated_test_image_is_found_before_training(tmp_path, data_root):
    """Today found at test time, after training; now when the data is built."""
    import shutil

    from affectlab.build import build_data
    from affectlab.data.contract import DataError

    from .conftest import compose_config

    test = build_data(compose_config(data_root, [])).test.table   # generated once
    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    # a test image of this very configuration (data_root holds other sizes' folders too)
    victim = root / (Path(test.root) / test.image_paths[0]).relative_to(data_root)
    victim.write_bytes(victim.read_bytes()[:-30])
    with pytest.raises(DataError, match=f"{victim.name}.*delete .* to regenerate"):
        run(compose_config(root, []), tmp_path / "run")
    assert not (tmp_path / "run/checkpoints").exists()
