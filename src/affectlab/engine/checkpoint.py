"""Checkpoints: reading them safely, what they hold, loading weights exactly, and starting a
run from another run's weights (``init_from``).

Every checkpoint is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and
plain containers only, so loading a file can never run code from it. A file holding other
objects is refused with one message naming it. A checkpoint is a dict::

    {"format": 2, "method": state dict, "optimizer": ..., "scheduler": ..., "rng": ...,
     "augment": ..., "config": the run's resolved config (plain dicts),
     "method_class": "module.Class", "label_names": {task: names},
     "thresholds": {task: [per-label thresholds]},
     "spec": the DataSpec the method was built from (task and label names, input shapes),
     "inputs": the input spec (input keys and shapes, the mean/std used, image size and the
               dataset's reading settings: crop, alignment, ...),
     "epoch", "batch_in_epoch", "global_step", "best_value", "best_epoch", ...}

``spec`` and ``inputs`` (format 2) let :func:`affectlab.load_run` rebuild the method without
its dataset; older checkpoints lack them and are rebuilt through their run's data.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import ListConfig

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
#: 2: with ``spec`` and ``inputs`` (a method rebuilt without its data); 1: without
CHECKPOINT_FORMAT = 2
#: Dataset settings that decide what a network sees (recorded in a checkpoint's input spec).
READING_KEYS = ("name", "image_size", "crop", "template", "align_size", "box_margin", "detector")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run, with the reason and the fix."""


def class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain containers only), with one clear error for a
    missing, damaged or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Point at an existing "
                              "checkpoints/last.pt or best.pt of a run.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses any global it does not know before creating it: nothing ran
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"refusing checkpoint {path}: it holds objects other than tensors "
                              f"and plain containers ({first[:160]}), which could run code when "
                              "loaded. Nothing in it was executed. Use checkpoints written by "
                              "affectlab, or re-save the weights alone (a state dict).") from None
    except Exception as err:  # a truncated or foreign file: say which and what to do
        raise CheckpointError(f"cannot read checkpoint {path} ({type(err).__name__}: {err}). "
                              "The file is damaged or not an affectlab checkpoint.") from None
    if not isinstance(checkpoint, dict) or "method" not in checkpoint:
        raise CheckpointError(f"{path} is not an affectlab checkpoint (no 'method' weights).")
    return checkpoint


def load_method_state(method: torch.nn.Module, checkpoint: dict[str, Any],
                      path: str | Path) -> None:
    """Load weights into ``method`` exactly, refusing checkpoints of another method or model,
    and restore the thresholds stored with them."""
    expected = class_path(method)
    if checkpoint.get("method_class") != expected:
        raise CheckpointError(f"checkpoint {path} was written by method "
                              f"{checkpoint.get('method_class')}, but this run uses {expected}. "
                              "Use the same method config (or init_from= to start a new run "
                              "from its weights).")
    try:
        method.load_state_dict(checkpoint["method"])
    except RuntimeError as err:
        saved = (checkpoint.get("config") or {}).get("model", {})
        first_line = str(err).splitlines()[1:3]
        raise CheckpointError(f"checkpoint {path} does not fit this model (it was saved with "
                              f"model={saved}): {' '.join(s.strip() for s in first_line)}. "
                              "Use the model config the checkpoint was trained with (or "
                              "init_from= to load the parts that fit).") from None
    method.thresholds = {k: list(v) for k, v in (checkpoint.get("thresholds") or {}).items()}


def input_spec(data: Any, config: dict[str, Any] | None) -> dict[str, Any]:
    """What a trained network expects of its inputs: ``{"keys": {key: sample shape}, "mean",
    "std" (the normalisation actually used), "dataset": the reading settings of
    :data:`READING_KEYS` from the run's dataset config, "rules": the other inputs' transform
    numbers (:class:`~affectlab.data.clips.ClipRules`' dict) or None}``."""
    dataset = (config or {}).get("dataset") or {}
    rules = getattr(data, "rules", None)
    return {"keys": data.spec().inputs, "mean": list(data.mean), "std": list(data.std),
            "dataset": {k: dataset[k] for k in READING_KEYS if k in dataset},
            # the other inputs' transform numbers (clips, spectrograms), when the data has any
            "rules": rules.to_dict() if hasattr(rules, "to_dict") else None}


def checkpoint_of(source: str | Path, which: str = "best.pt") -> Path:
    """The checkpoint a run directory or checkpoint path names (a directory: its
    ``checkpoints/<which>``)."""
    source = Path(source)
    if source.is_dir():
        path = source / CHECKPOINT_DIR / which
        if not path.is_file():
            raise CheckpointError(f"{source} has no {CHECKPOINT_DIR}/{which}: it is not a "
                                  "finished run directory (a run writes its checkpoints there "
                                  "as it trains).")
        return path
    if not source.exists():
        raise CheckpointError(f"{source} does not exist: name a run directory (with "
                              f"{CHECKPOINT_DIR}/{which}) or a checkpoint file.")
    return source


# ---------------------------------------------------------------------------------- init_from
def _select(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def init_from(method: Any, source: str | Path | Sequence[str | Path],
              parts: Sequence[str] = ("backbone",), *, model_config: dict | None = None) -> dict:
    """Load the named ``parts`` of other runs' weights into a set-up ``method``.

    ``source``: a run directory (its ``best.pt``) or a checkpoint file; or a list of them, one
    per module of each part (a two-view method's views: ``[identity run, expression run]``
    starts view 0 from the first and view 1 from the second; the last source also fills any
    further module). Returns ``{"source", "loaded", "new"}`` (tensor names).
    """
    if isinstance(source, (list, tuple, ListConfig)) and len(source) > 1:
        sources = [str(s) for s in source]
        reports = [_init_from_one(method, s, parts, model_config=model_config,
                                  modules=range(k, k + 1) if k < len(sources) - 1
                                  else range(k, 1 << 30))
                   for k, s in enumerate(sources)]
        loaded = [n for r in reports for n in r["loaded"]]
        return {"source": [r["source"] for r in reports], "loaded": loaded,
                "new": [n for n in method.state_dict() if n not in loaded]}
    if isinstance(source, (list, tuple, ListConfig)):
        source = source[0]
    return _init_from_one(method, source, parts, model_config=model_config,
                          modules=range(1 << 30))


def _init_from_one(method: Any, source: str | Path, parts: Sequence[str], *,
                   model_config: dict | None, modules: range) -> dict:
    """:func:`init_from` of one source, into the modules of each part whose index is in
    ``modules``.

    ``source``: a run directory (its ``best.pt``) or a checkpoint file. ``parts``: names of
    :meth:`Method.parts` (``backbone``, ``heads``, ...) or ``all``. For each part, the source's
    modules of that part are matched to this method's by position (a one-backbone run
    initialises every view of a two-view method; a two-view run's first view initialises a
    one-backbone method); within a module, tensors are matched by name and shape. A tensor of
    another shape (a head over other labels) or one the source lacks starts new. What was
    loaded and what starts new is logged and returned.

    Raises :class:`CheckpointError` naming both architectures (``model_config``: this run's
    model config, for the message) when nothing of the backbone matches; another part (a head)
    that matches nothing starts new with a warning.
    """
    path = checkpoint_of(source)
    checkpoint = load_checkpoint(path)
    source_state: dict[str, torch.Tensor] = checkpoint["method"]
    source_config = checkpoint.get("config") or {}
    source_class = checkpoint.get("method_class", "?")
    source_parts = _parts_of_state(source_state, source_class)
    target_parts = method.parts()
    wanted = list(target_parts) if list(parts) == ["all"] else list(parts)
    unknown = [p for p in wanted if p not in target_parts]
    if unknown:
        raise CheckpointError(f"init_parts={list(parts)}: {unknown} not among this method's "
                              f"parts {sorted(target_parts)} (or 'all')")
    own = method.state_dict()
    update: dict[str, torch.Tensor] = {}
    report: dict[str, Any] = {"source": str(path), "loaded": [], "new": []}
    for part in wanted:
        from_prefixes = source_parts.get(part, [])
        to_prefixes = target_parts[part]
        if not from_prefixes:
            raise CheckpointError(
                f"init_from={source}: the source ({source_class}, model="
                f"{source_config.get('model', {}).get('_target_', '?')}) has no '{part}' to "
                f"load; its parts are {sorted(source_parts)}. Choose init_parts from those.")
        matched_here = 0
        in_range = [k for k in range(len(to_prefixes)) if k in modules]
        if not in_range:
            log.warning("init_from %s: this method has no '%s' module %d for it: the source is "
                        "not used for that part", path, part, modules.start)
            continue
        for k, to_prefix in enumerate(to_prefixes):
            if k not in modules:
                continue
            from_prefix = from_prefixes[min(k, len(from_prefixes) - 1)]
            theirs = _select(source_state, from_prefix)
            for name, value in own.items():
                if not name.startswith(to_prefix + "."):
                    continue
                key = name[len(to_prefix) + 1:]
                if key in theirs and tuple(theirs[key].shape) == tuple(value.shape):
                    update[name] = theirs[key]
                    report["loaded"].append(name)
                    matched_here += 1
                else:
                    report["new"].append(name)
        if matched_here == 0 and part != "backbone":
            log.warning("init_from %s: nothing of '%s' has the shape it has here (other labels?): "
                        "it starts new", path, part)
        elif matched_here == 0:
            raise CheckpointError(
                f"init_from={source}: nothing of '{part}' matches. The source is {source_class} "
                f"with model={_model_name(source_config)}; this run is {class_path(method)} with "
                f"model={_model_name({'model': model_config or {}})}. Tensors that "
                f"could not be matched: {report['new'][:6]}"
                f"{' …' if len(report['new']) > 6 else ''}."
                " Use the same model family (or init_parts that both have).")
    report["new"] += [n for n in own if n not in update and n not in report["new"]]
    method.load_state_dict({**own, **update})
    log.info("init_from %s: loaded %d tensors (%s), %d start new%s", path, len(report["loaded"]),
             ", ".join(wanted), len(report["new"]),
             f" ({', '.join(report['new'][:8])}{' …' if len(report['new']) > 8 else ''})"
             if report["new"] else "")
    return report


def _model_name(config: dict) -> str:
    model = config.get("model") or {}
    details = {k: v for k, v in model.items() if k in ("depth", "widths", "_target_")}
    return str(details or "?")


def _parts_of_state(state: dict[str, torch.Tensor], method_class: str) -> dict[str, list[str]]:
    """The parts of a saved method, from its tensor names: ``views.<i>`` modules are its
    backbones (two-view methods), else ``backbone``; every other top-level name is a part."""
    tops = sorted({k.split(".")[0] for k in state})
    parts: dict[str, list[str]] = {top: [top] for top in tops if top != "views"}
    if "views" in tops:
        views = sorted({int(k.split(".")[1]) for k in state if k.startswith("views.")})
        parts["backbone"] = [f"views.{i}" for i in views]
    return parts
