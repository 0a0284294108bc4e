"""Run directories: claimed atomically before a run writes anything, never shared, and
cleaned of what killed writes left behind."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

from affectlab.engine.checkpoint import CHECKPOINT_DIR, CheckpointError

log = logging.getLogger(__name__)


class RunDirectoryError(CheckpointError):
    """A run directory that is taken by another run or cannot be written."""


#: The file whose exclusive creation claims a run directory (later the run's environment).
RUN_CLAIM = "run_info.json"
# what a run directory of affectlab written before claims existed holds
RUN_MARKERS = (RUN_CLAIM, "config_resolved.yaml", "metrics.json", CHECKPOINT_DIR)


def claim_run_dir(run_dir: str | Path, *, unique: bool = False) -> Path:
    """Claim ``run_dir`` for this run before anything is written into it, and return it.

    The claim is the exclusive creation of ``run_info.json`` (``O_CREAT | O_EXCL``: of two
    processes racing for one directory exactly one wins). A directory that holds a run
    already is refused with :class:`RunDirectoryError`, or, with ``unique`` (the default
    timestamped directories), the next free ``<name>_1``, ``<name>_2``, ... is claimed
    instead. A directory that cannot be written is a :class:`RunDirectoryError` too.
    """
    run_dir = Path(run_dir)
    for attempt in range(10_000):
        path = run_dir if attempt == 0 else run_dir.with_name(f"{run_dir.name}_{attempt}")
        try:
            taken = any((path / marker).exists() for marker in RUN_MARKERS)
            if not taken:
                path.mkdir(parents=True, exist_ok=True)
                fd = os.open(path / RUN_CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            taken = True
        except OSError as err:
            raise RunDirectoryError(
                f"cannot write into the run directory {path} ({err.strerror or err}): choose a "
                "writable place with hydra.run.dir=<folder> (or run from a writable working "
                "directory).") from None
        if taken and unique:
            continue
        if taken:
            raise RunDirectoryError(
                f"{path} already holds a run: runs never share a directory, and this one wrote "
                "nothing there. Choose another hydra.run.dir (the default "
                "outputs/<run_name>/<time> is always new), or continue that run with "
                f"trainer.resume={path / CHECKPOINT_DIR / 'last.pt'} (into a new directory).")
        with os.fdopen(fd, "w") as claim:
            json.dump({"claimed_by": {"hostname": platform.node(), "pid": os.getpid(),
                                      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}, claim)
        if path != run_dir:
            log.info("%s is taken by another run: this run writes into %s", run_dir, path)
        return path
    raise RunDirectoryError(f"no free run directory next to {run_dir}")


def writer_alive(run_dir: Path) -> bool | None:
    """Whether the process that claimed ``run_dir`` still runs: True / False when it ran on
    this machine (its pid is looked up), None when that cannot be known (another machine, or
    no ``run_info.json``)."""
    try:
        info = json.loads((run_dir / RUN_CLAIM).read_text())
    except (OSError, ValueError):
        return None
    info = info.get("claimed_by", info)      # the claim, or the full run_info written later
    if info.get("hostname") != platform.node() or not isinstance(info.get("pid"), int):
        return None
    if info["pid"] == os.getpid():   # an earlier run of this very process: not writing now
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # alive, under another user
        return True
    return True


def remove_stray_temporaries(folder: Path) -> None:
    """Delete the temporaries (``.<name>.*.tmp``) that killed atomic writes left in a run's
    checkpoint ``folder`` — once the process that wrote them is known to be gone (its
    ``run_info.json`` names host and pid); a write still in progress is never touched."""
    strays = list(folder.glob(".*.tmp")) if folder.is_dir() else []
    if not strays:
        return
    alive = writer_alive(folder.parent)
    if alive is not False:
        log.warning("%s holds %d temporary file(s) of interrupted writes; left in place because "
                    "the run that wrote them %s", folder, len(strays),
                    "is still running" if alive else "ran on another machine")
        return
    for stray in strays:
        try:
            stray.unlink()
        except OSError:
            continue
        log.info("removed %s, left by a write that was killed", stray)
