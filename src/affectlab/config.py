"""Instantiating configs with type checks, so a wrong value fails early with a clear message.

Constructors take typed keyword-only arguments. Python does not check annotations, so
:func:`instantiate_checked` compares each YAML value with the ``_target_``'s annotation before
calling it: ``trainer.max_epochs=ten`` fails with one line naming the key, the value and the
expected type, instead of a traceback from deep inside the loop. An unknown key (a typo) is
rejected the same way.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from hydra.utils import get_class, get_method, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A config value that does not fit what the code expects."""


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple, ListConfig)):
            return False
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, (dict, DictConfig))
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # callables, factories and other annotations are checked by use


def check_config(node: DictConfig, where: str) -> None:
    """Raise :class:`ConfigError` if ``node``'s keys do not fit its ``_target_``'s signature."""
    target_path = node.get("_target_")
    if target_path is None:
        raise ConfigError(f"config '{where}' has no _target_: name the class it configures.")
    try:
        # a class (Capitalised last name) or a function; asking get_class for a function logs
        # an error of Hydra's own
        last = target_path.rsplit(".", 1)[-1]
        target = get_class(target_path) if last[:1].isupper() else None
    except Exception:
        target = None
    if target is None:
        try:
            target = get_method(target_path)
        except Exception as err:
            raise ConfigError(f"{where}._target_={target_path} cannot be imported "
                              f"({err}).") from None
    function = target.__init__ if inspect.isclass(target) else target
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    values = OmegaConf.to_container(node, resolve=True)
    for key, value in values.items():
        if key.startswith("_"):
            continue
        if key not in signature.parameters:
            if accepts_any:
                continue
            allowed = sorted(k for k in signature.parameters if k != "self")
            raise ConfigError(f"{where}.{key} is not a parameter of {target_path}; "
                              f"valid keys: {allowed}")
        annotation = hints.get(key, inspect.Parameter.empty)
        if isinstance(value, dict) and "_target_" in value:
            check_config(node[key], f"{where}.{key}")   # a nested object (e.g. dataset.detector)
            continue
        if not _matches(value, annotation):
            shown = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
            raise ConfigError(f"{where}.{key}={value!r} has the wrong type: {target_path} expects "
                              f"{shown}.")


def instantiate_checked(node: DictConfig, where: str, **kwargs: Any) -> Any:
    """:func:`check_config`, then ``hydra.utils.instantiate(node, **kwargs)``."""
    check_config(node, where)
    return instantiate(node, **kwargs)


#: Where classes named by ``_target_`` in configs saved by earlier versions live now (a run's
#: saved config names its classes by module path; old runs still load and compare equal).
MOVED_TARGETS: dict[str, str] = {
    "affectlab.trainer.Trainer": "affectlab.engine.TrainerSettings",
    "affectlab.datasets.base.": "affectlab.data.contract.",
    "affectlab.datasets.transforms.": "affectlab.data.transforms.",
    "affectlab.datasets.samplers.": "affectlab.data.samplers.",
    "affectlab.datasets.packed.": "affectlab.data.packed.",
    "affectlab.datasets.preprocess.": "affectlab.data.preprocess.",
    "affectlab.datasets.alignment.": "affectlab.data.faces.alignment.",
    "affectlab.datasets.face_detection.": "affectlab.data.faces.detection.",
    "affectlab.datasets.face_boxes.": "affectlab.data.faces.boxes.",
    "affectlab.datasets.real.": "affectlab.data.sources.on_disk.",
    "affectlab.datasets.synthetic.": "affectlab.data.sources.synthetic.benchmark.",
    "affectlab.datasets.synthetic_faces.": "affectlab.data.sources.synthetic.faces.",
    "affectlab.datasets.": "affectlab.data.sources.",
    "affectlab.parallel.": "affectlab.threads.",
}


#: Keys a class's config had in earlier versions: ``(target, old key) → (new key, new value
#: of the old one)``; a saved config holding the old key (and not the new) is read with the new.
RENAMED_KEYS: dict[tuple[str, str], tuple[str, Callable[[Any], Any]]] = {
    # MLCR took its one task as ``task: au`` before every method took ``tasks``
    ("affectlab.methods.mlcr.MLCR", "task"): ("tasks", lambda task: [task]),
}


def upgrade_config(config: Any) -> Any:
    """A plain config (dicts and lists) as today's code reads it: every ``_target_`` of an
    earlier version's module layout renamed to today's (:data:`MOVED_TARGETS`, first match),
    then the keys of its node renamed (:data:`RENAMED_KEYS`); other values unchanged."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "_target_" and isinstance(value, str):
                for old, new in MOVED_TARGETS.items():
                    if value == old or (old.endswith(".") and value.startswith(old)):
                        value = new + value[len(old):] if old.endswith(".") else new
                        break
            out[key] = upgrade_config(value)
        for (target, old_key), (new_key, convert) in RENAMED_KEYS.items():
            if out.get("_target_") == target and old_key in out and new_key not in out:
                out[new_key] = convert(out.pop(old_key))
        return out
    if isinstance(config, list):
        return [upgrade_config(v) for v in config]
    return config
