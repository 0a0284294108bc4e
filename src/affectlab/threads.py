"""How many CPU threads a training job takes: the CPUs it may use, shared among the jobs that a
Hydra launcher runs at once on this machine.

Jobs that each take every core oversubscribe the machine: on 2 cores the default MLCR run
beside one single-threaded training fell from 243 to 29 images/s (8× slower, not 2×). So every
job decides its share once, at its start (:func:`configure_threads`, called by ``train.py``).
The rule (:func:`plan_threads`), first match wins:

1. ``threads=N`` in the config: N.
2. ``OMP_NUM_THREADS`` set by the user (not the value joblib gives its worker processes): that.
3. submitit (``hydra/launcher=submitit_local|submitit_slurm``) with
   ``hydra.launcher.cpus_per_task=C``: C (at most the CPUs this process may use).
4. Otherwise ``CPUs // jobs at once`` (at least 1). CPUs: those this process may use
   (``os.sched_getaffinity``, else ``os.cpu_count``). Jobs at once:

   - ``hydra/launcher=joblib``: ``hydra.launcher.n_jobs`` read as joblib reads it (-1: one per
     CPU, -2: all but one), at most the number of jobs in the sweep;
   - ``hydra/launcher=submitit_local``: the number of jobs in the sweep (it starts them all);
   - ``submitit_slurm`` (each job gets CPUs of its own), Hydra's basic launcher (one job after
     the other), a single run, any other launcher: 1.

When several jobs share the CPUs (4.) or submitit allots them (3.), a ``trainer.num_workers``
(DataLoader processes) above the job's share is lowered to it (null keeps the trainer's own
default).

The number of jobs in the sweep and the user's own ``OMP_NUM_THREADS`` are known only in the
process that launches the sweep: :class:`SweepFacts` (a Hydra callback, configs/train.yaml)
writes them into the environment there, which the launcher's processes inherit.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from dataclasses import dataclass
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from affectlab.config import ConfigError

log = logging.getLogger("affectlab")

SWEEP_JOBS_ENV = "AFFECTLAB_SWEEP_JOBS"                 # jobs the sweep launches at once
USER_OMP_ENV = "AFFECTLAB_USER_OMP_NUM_THREADS"         # OMP_NUM_THREADS before any launcher

# hydra.launcher._target_'s class name → the launcher as named here (and on the command line)
LAUNCHERS = {"BasicLauncher": "basic", "JoblibLauncher": "joblib",
             "LocalLauncher": "submitit_local", "SlurmLauncher": "submitit_slurm"}


@dataclass(frozen=True)
class ThreadPlan:
    """This job's CPU threads, how many jobs share the CPUs, and why (one log line)."""

    threads: int
    jobs: int           # jobs sharing this process's CPUs; 1 when nothing was divided
    allotted: bool      # the share came from a launcher (rules 3-4 with several jobs)
    reason: str


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: what ``taskset``, Slurm or a
    container allow), else all of the machine's."""
    if hasattr(os, "sched_getaffinity"):        # Linux; not on macOS or Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_threads(value: Any, name: str) -> int | None:
    """``value`` as a thread count: None for ``null`` / ``auto`` / unset, else an integer ≥ 1.
    A comma list (``OMP_NUM_THREADS=4,2``, nested OpenMP levels) counts its first level."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    text = value.split(",")[0].strip() if isinstance(value, str) else value
    try:
        count = int(text) if not isinstance(text, (bool, float)) else None
    except (TypeError, ValueError):
        count = None
    if count is None or count < 1:
        raise ConfigError(f"{name}={value!r}: must be an integer ≥ 1 (CPU threads of this job); "
                          "leave it unset (threads: null) to share this machine's CPUs among the "
                          "jobs running at once")
    return count


def jobs_at_once(launcher: str, *, cpus: int, n_jobs: int | None = None,
                 sweep_jobs: int | None = None) -> int:
    """How many jobs of this sweep run at the same time on this machine (rule 4)."""
    if launcher == "joblib":
        if n_jobs is None:
            parallel = 1
        elif n_jobs < 0:                        # joblib: -1 every CPU, -2 all but one, ...
            parallel = max(cpus + 1 + n_jobs, 1)
        else:
            parallel = max(n_jobs, 1)
        return min(parallel, sweep_jobs) if sweep_jobs else parallel
    if launcher == "submitit_local":
        return sweep_jobs or 1
    return 1


def plan_threads(*, cpus: int, setting: int | None = None, omp: int | None = None,
                 launcher: str = "basic", n_jobs: int | None = None,
                 cpus_per_task: int | None = None, sweep_jobs: int | None = None) -> ThreadPlan:
    """This job's thread count by the module's rule; every input already parsed (see
    :func:`configure_threads`). ``sweep_jobs``: jobs the sweep launches together, None when
    unknown."""
    if setting is not None:
        return ThreadPlan(setting, 1, False, f"threads={setting} (set in the config)")
    if omp is not None:
        return ThreadPlan(omp, 1, False, f"OMP_NUM_THREADS={omp} (set in the environment)")
    if launcher.startswith("submitit") and cpus_per_task:
        threads = min(cpus_per_task, cpus)
        return ThreadPlan(threads, 1, True, f"hydra.launcher.cpus_per_task={cpus_per_task} "
                                            f"({cpus} CPUs usable here): {threads} threads")
    jobs = jobs_at_once(launcher, cpus=cpus, n_jobs=n_jobs, sweep_jobs=sweep_jobs)
    threads = max(cpus // jobs, 1)
    count = f"{threads} thread{'s' if threads > 1 else ''}"
    if jobs == 1:
        unknown = (" (the sweep's size is unknown: set threads=N)"
                   if launcher == "submitit_local" and not sweep_jobs else "")
        return ThreadPlan(threads, 1, False, f"1 job at a time on {cpus} CPUs: {count}{unknown}")
    crowded = " (more jobs than CPUs: lower hydra.launcher.n_jobs)" if jobs > cpus else ""
    return ThreadPlan(threads, jobs, True,
                      f"{jobs} parallel jobs ({launcher}) on {cpus} CPUs: {count} each{crowded}")


def sweep_size(overrides: list[str], max_batch_size: int | None = None) -> int | None:
    """How many jobs Hydra's basic sweeper launches together for these overrides: the product
    of the sweeps' lengths (``seed=0,1,2 lr=1,2`` → 6), at most ``max_batch_size``; None when a
    sweep cannot be counted without the config (``glob(...)``, ranges the parser rejects)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        lengths = {o.get_key_element(): len(list(o.sweep_string_iterator()))
                   for o in parsed if o.is_sweep_override()}   # a repeated key: the last wins
    except Exception:       # the parser's errors vary by override type; unknown is fine here
        return None
    total = math.prod(lengths.values())
    return min(total, max_batch_size) if max_batch_size and max_batch_size > 0 else total


class SweepFacts(Callback):
    """Hydra callback (``hydra.callbacks`` in configs/train.yaml): before a multirun launches,
    note in the environment its jobs' count and the user's ``OMP_NUM_THREADS`` (joblib gives
    its workers an ``OMP_NUM_THREADS`` of its own; a job then tells the two apart)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[USER_OMP_ENV] = os.environ.get("OMP_NUM_THREADS", "")
        sweeper = config.hydra.sweeper
        size = None
        if str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
            params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
            size = sweep_size([*params, *config.hydra.overrides.task],
                              sweeper.get("max_batch_size"))
        if size is None:
            os.environ.pop(SWEEP_JOBS_ENV, None)
        else:
            os.environ[SWEEP_JOBS_ENV] = str(size)


def configure_threads(cfg: DictConfig) -> ThreadPlan:
    """Decide this job's thread count (module rule), apply it (``torch.set_num_threads``),
    lower ``cfg.trainer.num_workers`` to the share when jobs share the CPUs, and log why."""
    launcher, launcher_cfg, multirun = "basic", {}, False
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        if multirun:     # a single run uses no launcher, whatever hydra/launcher names
            launcher_cfg = hydra_cfg.launcher
            target = str(launcher_cfg.get("_target_", "")).rsplit(".", 1)[-1]
            launcher = LAUNCHERS.get(target, target or "basic")
    # in a sweep's job OMP_NUM_THREADS may be joblib's: the launching process noted the user's
    omp = (os.environ.get(USER_OMP_ENV) if multirun and USER_OMP_ENV in os.environ
           else os.environ.get("OMP_NUM_THREADS"))
    sweep_jobs = os.environ.get(SWEEP_JOBS_ENV) if multirun else None
    plan = plan_threads(
        cpus=usable_cpus(), setting=parse_threads(cfg.get("threads"), "threads"),
        omp=parse_threads(omp, "OMP_NUM_THREADS"), launcher=launcher,
        n_jobs=launcher_cfg.get("n_jobs"), cpus_per_task=launcher_cfg.get("cpus_per_task"),
        sweep_jobs=int(sweep_jobs) if sweep_jobs else None)
    torch.set_num_threads(plan.threads)
    log.info("CPU threads: %d — %s", plan.threads, plan.reason)
    if multiprocessing.get_start_method(allow_none=True) == "loky":
        # joblib's worker processes start their children with loky's method, which the
        # DataLoader's workers cannot use ("'Process' object has no attribute 'env'"): give them
        # the platform's default (fork on Linux, spawn on macOS)
        multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)
    workers = cfg.get("trainer", {}).get("num_workers")
    if plan.allotted and isinstance(workers, int) and workers > plan.threads:
        # loader processes beside the job's threads would crowd the other jobs' CPUs
        cfg.trainer.num_workers = plan.threads
        log.info("trainer.num_workers %d → %d: this job's share of the CPUs", workers,
                 plan.threads)
    return plan
