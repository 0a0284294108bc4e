"""affectlab: learning facial behaviour (AUs, expressions, valence/arousal, attributes) from
partly labelled data.

``affectlab.load_run(run_dir)`` rebuilds a trained method from its checkpoint alone
(:mod:`affectlab.inference`)."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_run"]


def __getattr__(name: str) -> Any:
    # imported on first use: ``import affectlab`` stays light (no torch, no Hydra)
    if name == "load_run":
        from affectlab.inference import load_run

        return load_run
    raise AttributeError(f"module 'affectlab' has no attribute {name!r}")
