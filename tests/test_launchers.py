"""Sweeps through Hydra's launchers (joblib, submitit_local, a recipe's seeds) and the rule that
shares the CPUs among the jobs running at once (affectlab/threads.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from affectlab import threads as thread_plan
from affectlab.config import ConfigError
from affectlab.threads import (
    SWEEP_JOBS_ENV,
    USER_OMP_ENV,
    SweepFacts,
    configure_threads,
    parse_threads,
    plan_threads,
    sweep_size,
    usable_cpus,
)

from .conftest import TINY_DATA, TINY_MODEL, TINY_TRAINER

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


# --- the rule, by hand -------------------------------------------------------------------------

@pytest.mark.parametrize("cpus,launcher,n_jobs,sweep_jobs,threads,jobs", [
    (2, "joblib", 2, 2, 1, 2),          # 2 CPUs, 2 jobs → 1 each
    (16, "joblib", 3, None, 5, 3),      # 16 // 3 = 5 (one CPU left idle, none oversubscribed)
    (16, "joblib", -1, 3, 5, 3),        # n_jobs=-1 is 16 at once, but the sweep has only 3 jobs
    (16, "joblib", -1, None, 1, 16),    # -1, sweep size unknown: one job per CPU → 1 thread each
    (2, "joblib", -1, 3, 1, 2),         # 3 jobs, 2 at a time
    (16, "joblib", -2, 100, 1, 15),     # -2: all CPUs but one
    (8, "joblib", 1, 4, 8, 1),          # n_jobs=1: one after the other
    (2, "joblib", 4, 4, 1, 4),          # more jobs than CPUs: still at least 1 thread
    (12, "submitit_local", None, 3, 4, 3),   # submitit_local starts the whole sweep at once
    (12, "submitit_slurm", None, 3, 12, 1),  # a Slurm job has its CPUs to itself
    (12, "basic", None, 3, 12, 1),      # Hydra's basic launcher: one job after the other
])
def test_the_cpus_are_divided_among_the_jobs_running_at_once(cpus, launcher, n_jobs,
                                                              sweep_jobs, threads, jobs):
    plan = plan_threads(cpus=cpus, launcher=launcher, n_jobs=n_jobs, sweep_jobs=sweep_jobs)
    assert (plan.threads, plan.jobs) == (threads, jobs)
    assert plan.allotted == (jobs > 1)


def test_the_reason_is_one_readable_line():
    plan = plan_threads(cpus=2, launcher="joblib", n_jobs=-1, sweep_jobs=2)
    assert plan.reason == "2 parallel jobs (joblib) on 2 CPUs: 1 thread each"
    crowded = plan_threads(cpus=2, launcher="joblib", n_jobs=4, sweep_jobs=8)
    assert "more jobs than CPUs: lower hydra.launcher.n_jobs" in crowded.reason


def test_an_explicit_setting_wins_then_omp_num_threads_then_cpus_per_task():
    common = dict(cpus=16, launcher="submitit_local", cpus_per_task=4, sweep_jobs=8)
    assert plan_threads(**common, setting=3, omp=2).threads == 3
    assert plan_threads(**common, omp=2).threads == 2
    assert plan_threads(**common).threads == 4
    assert plan_threads(**{**common, "cpus_per_task": 64}).threads == 16   # at most the CPUs
    assert plan_threads(**{**common, "cpus_per_task": None}).threads == 2  # 16 // 8
    assert plan_threads(cpus=2, setting=6).threads == 6      # the user may oversubscribe on purpose


@pytest.mark.parametrize("value,expected", [(None, None), ("auto", None), ("", None), (4, 4),
                                            ("3", 3), ("4,2", 4)])
def test_thread_settings_are_read(value, expected):
    assert parse_threads(value, "threads") == expected


@pytest.mark.parametrize("value", [0, -2, "many", True, 1.5])
def test_a_bad_thread_setting_is_one_message_naming_it(value):
    with pytest.raises(ConfigError, match=f"threads={value!r}: must be an integer ≥ 1"):
        parse_threads(value, "threads")


def test_the_sweep_size_is_counted_as_the_basic_sweeper_counts_it():
    assert sweep_size(["seed=0,1,2", "optim.optimizer.lr=0.1,0.01", "method=baseline"]) == 6
    assert sweep_size(["seed=range(0,4)"]) == 4
    assert sweep_size(["seed=0,1", "seed=0,1,2"]) == 3    # the last value of a key wins
    assert sweep_size(["seed=0,1,2"], max_batch_size=2) == 2
    assert sweep_size(["method=glob(*)"]) is None         # needs the config: unknown


def test_the_launching_process_notes_the_sweep_and_the_users_omp(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(SWEEP_JOBS_ENV, raising=False)
    monkeypatch.delenv(USER_OMP_ENV, raising=False)
    config = OmegaConf.create({"hydra": {
        "sweeper": {"_target_": BASIC_SWEEPER, "max_batch_size": None, "params": None},
        "overrides": {"task": ["seed=0,1,2", "trainer.max_epochs=1,2"]}}})
    SweepFacts().on_multirun_start(config)
    assert os.environ[SWEEP_JOBS_ENV] == "6" and os.environ[USER_OMP_ENV] == ""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    config.hydra.sweeper._target_ = "hydra_plugins.some.OtherSweeper"   # cannot be counted
    SweepFacts().on_multirun_start(config)
    assert SWEEP_JOBS_ENV not in os.environ and os.environ[USER_OMP_ENV] == "3"


def test_configure_threads_applies_the_share(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(thread_plan, "usable_cpus", lambda: 3)
    before = torch.get_num_threads()
    try:
        plan = configure_threads(OmegaConf.create({"threads": None,
                                                   "trainer": {"num_workers": 4}}))
        assert plan.threads == torch.get_num_threads() == 3    # one run: every CPU
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert configure_threads(OmegaConf.create({"threads": None})).threads == 2
        assert torch.get_num_threads() == 2
        with pytest.raises(ConfigError, match="threads=0: must be an integer ≥ 1"):
            configure_threads(OmegaConf.create({"threads": 0}))
    finally:
        torch.set_num_threads(before)


# --- real sweeps ---------------------------------------------------------------------------------

def sweep_env() -> dict[str, str]:
    """The test process's environment without the thread settings a user would set: the jobs
    then share the CPUs by the rule."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "HYDRA_FULL_ERROR", SWEEP_JOBS_ENV, USER_OMP_ENV)}
    return {**env, "PYTHONUNBUFFERED": "1"}


def tiny_args(data_root: Path) -> list[str]:
    return [f"dataset.root={data_root}", *TINY_DATA, *TINY_MODEL, *TINY_TRAINER,
            "method=baseline", "trainer.max_epochs=1", "trainer.max_steps=2"]


def run_sweep(tmp_path: Path, data_root: Path, launcher: list[str]) -> str:
    """``python -m affectlab.train -m seed=0,1`` through ``launcher`` into ``tmp_path/sweep``,
    trainer.num_workers=2; returns its output."""
    result = subprocess.run(
        [sys.executable, "-m", "affectlab.train", "-m", *tiny_args(data_root), "seed=0,1",
         "trainer.num_workers=2", *launcher, "hydra.sweep.dir=sweep",
         "hydra.sweep.subdir=seed${seed}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, env=sweep_env())
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


def assert_shared(run_dirs: list[Path], threads: int) -> None:
    """Both seeds finished, each with ``threads`` threads and at most that many loaders."""
    for seed, run_dir in enumerate(run_dirs):
        assert json.loads((run_dir / "metrics.json").read_text())["seed"] == seed
        assert json.loads((run_dir / "run_info.json").read_text())["threads"] == threads
        resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
        assert resolved["trainer"]["num_workers"] == min(2, threads)


needs_two_cpus = pytest.mark.skipif(usable_cpus() < 2, reason="sharing needs 2 CPUs or more")


@pytest.mark.slow
@needs_two_cpus
def test_a_joblib_sweep_runs_two_jobs_at_once_sharing_the_cpus(tmp_path, data_root):
    output = run_sweep(tmp_path, data_root, ["hydra/launcher=joblib"])
    threads = usable_cpus() // 2    # n_jobs=-1 (every CPU), at most the sweep's 2 jobs
    sweep = tmp_path / "sweep"
    assert_shared([sweep / "seed0", sweep / "seed1"], threads)
    # both jobs decided by the rule (joblib's own OMP_NUM_THREADS in its workers not mistaken
    # for the user's), in worker processes of their own
    line = f"2 parallel jobs (joblib) on {usable_cpus()} CPUs: {threads} thread"
    assert output.count(line) == 2, output[-3000:]
    pids = {json.loads((sweep / f"seed{s}/run_info.json").read_text())["pid"] for s in (0, 1)}
    assert len(pids) == 2


@pytest.mark.slow
@needs_two_cpus
def test_a_submitit_local_sweep_runs_two_jobs_at_once_sharing_the_cpus(tmp_path, data_root):
    run_sweep(tmp_path, data_root, ["hydra/launcher=submitit_local"])
    threads = usable_cpus() // 2    # submitit_local starts both jobs at once
    sweep = tmp_path / "sweep"
    assert_shared([sweep / "seed0", sweep / "seed1"], threads)
    job_logs = [p.read_text() for p in sweep.glob(".submitit/*/*_log.out")]
    line = f"2 parallel jobs (submitit_local) on {usable_cpus()} CPUs: {threads} thread"
    assert len(job_logs) == 2 and all(line in log for log in job_logs), job_logs


@pytest.mark.slow
@needs_two_cpus
def test_a_recipe_fans_its_seeds_out_through_a_launcher(tmp_path, data_root, monkeypatch):
    from affectlab.recipe import Runner

    for key in ("OMP_NUM_THREADS", SWEEP_JOBS_ENV, USER_OMP_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)     # the stages' relative paths (caches) land here
    recipe = OmegaConf.create({"name": "tiny", "seeds": [0, 1],
                               "overrides": tiny_args(data_root),
                               "stages": {"au": {"overrides": ["method.tasks=[au]"]}}})
    out = tmp_path / "recipe"
    results = Runner(recipe, out=out, seeds=[0, 1], overrides=[],
                     launcher=["hydra/launcher=joblib"]).run()
    assert sorted(m["seed"] for m in results["au"]) == [0, 1]
    for seed in (0, 1):
        info = json.loads((out / f"au/seed{seed}/run_info.json").read_text())
        assert info["threads"] == usable_cpus() // 2
