"""``affectlab-export RUN_DIR [RUN_DIR ...] --out MODEL.onnx|MODEL.pt``: a trained run, or the
mean of several, as one ONNX or TorchScript graph that needs neither affectlab nor Python.

The graph takes ``image``: float32 (N, 3, S, S), RGB in [0, 1], S = the runs' image size, and
normalises it inside with each run's own mean/std (so members trained with other constants
average correctly). It returns one output per task, named by the task::

    au, attr      (N, C) probabilities            expr   (N, K) probabilities
    va            (N, 2) valence, arousal          (identity classes are not exported)

and for several runs the element-wise mean of the members' outputs (as
:class:`~affectlab.methods.ensemble.Ensemble`). Everything else a user of the file needs is
in its metadata under the key ``affectlab`` (JSON): the label names per task, the per-label
thresholds of the multi-label tasks (the runs' stored ones, averaged), the input
(size, range, channel order) and the runs' face-crop settings (``crop``, ``template``,
``align_size``, ``box_margin``; see :mod:`affectlab.predict.faces`). ONNX keeps it in the
model's ``metadata_props``; TorchScript in the archive's extra file ``affectlab.json``.

:func:`check_export` runs the written file (onnxruntime / ``torch.jit.load``) on the same
inputs as PyTorch and reports the largest difference; the command does it after every export.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from affectlab.engine import CheckpointError
from affectlab.predict.runs import Predictor, RunsError
from affectlab.utils import atomic_write

log = logging.getLogger("affectlab.export")

METADATA_KEY = "affectlab"
FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".torchscript": "torchscript"}
OPSET = 18
# PyTorch 2.14 marks TorchScript deprecated (FutureWarning on trace/save/load); the format is
# what many C++ and mobile deployments still load, so it stays, and ONNX is the recommended one
TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


class ExportError(ValueError):
    """An export that cannot be made, with the reason."""


class ExportedRuns(nn.Module):
    """The graph that is exported: image in [0, 1] → (x − mean) / std per run → each run's
    predictions → their mean, one tensor per task (in ``tasks`` order).

    The constants are buffers of this module (not the training transform's cached tensors,
    which an export's tracing would replace by its own placeholders)."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.members = nn.ModuleList(run.method for run in predictor.runs)
        self.tasks = list(predictor.label_names)
        for k, run in enumerate(predictor.runs):
            self.register_buffer(f"mean{k}", torch.tensor(run.inputs["mean"]).view(1, -1, 1, 1))
            self.register_buffer(f"std{k}", torch.tensor(run.inputs["std"]).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = [member.predict({"image": (image - getattr(self, f"mean{k}"))
                                   / getattr(self, f"std{k}")})
                   for k, member in enumerate(self.members)]
        return tuple(torch.stack([o[task].float() for o in outputs]).mean(0)
                     for task in self.tasks)


def metadata(predictor: Predictor) -> dict[str, Any]:
    """What the exported file says about itself (see the module docstring)."""
    size = int(predictor.reading["image_size"])
    return {
        "format": 1,
        "runs": predictor.names,
        "tasks": list(predictor.label_names),
        "label_names": predictor.label_names,
        "thresholds": predictor.thresholds,
        "input": {"name": "image", "shape": ["N", 3, size, size], "dtype": "float32",
                  "range": [0.0, 1.0], "channels": "RGB",
                  "normalisation": "inside the graph: (x - mean) / std per run",
                  "means": [run.inputs["mean"] for run in predictor.runs],
                  "stds": [run.inputs["std"] for run in predictor.runs]},
        "faces": {k: v for k, v in predictor.reading.items() if k != "detector"},
    }


def export(predictor: Predictor, out: str | Path, *, batch_size: int = 2) -> Path:
    """Write the runs of ``predictor`` as ``out`` (``.onnx``, or ``.pt`` for TorchScript);
    atomically (a failed export leaves nothing)."""
    out = Path(out)
    kind = FORMATS.get(out.suffix.lower())
    if kind is None:
        raise ExportError(f"--out {out}: name a .onnx (ONNX) or .pt (TorchScript) file")
    if predictor.clip is not None:
        raise ExportError(f"{predictor.names[0]} is a clip run: export serves runs of single "
                          "face images (the graph's input is one image)")
    module = ExportedRuns(predictor).eval().cpu()
    for member in module.members:
        member.cpu()
    size = int(predictor.reading["image_size"])
    example = torch.rand(batch_size, 3, size, size)
    info = json.dumps(metadata(predictor))
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", TORCHSCRIPT_DEPRECATION, FutureWarning)
        if kind == "torchscript":
            traced = torch.jit.trace(module, example, check_trace=False, strict=False)
            atomic_write(out, lambda tmp: torch.jit.save(
                traced, tmp, _extra_files={f"{METADATA_KEY}.json": info}))
        else:
            atomic_write(out, lambda tmp: _export_onnx(module, example, tmp, info))
    return out


def _export_onnx(module: nn.Module, example: torch.Tensor, path: str, info: str) -> None:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx and onnxscript packages: pip install "
                          "onnx onnxscript "
                          "(or export TorchScript: --out MODEL.pt)") from None
    # the torch.export-based exporter (the default of PyTorch ≥ 2.9), the batch dimension free
    torch.onnx.export(module, (example,), path, input_names=["image"],
                      output_names=list(module.tasks), opset_version=OPSET, dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("N")},), verbose=False)
    model = onnx.load(path)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info
    onnx.save(model, path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``affectlab`` metadata of an exported file."""
    path = Path(path)
    if FORMATS.get(path.suffix.lower()) == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return json.loads(props[METADATA_KEY])
    extra = {f"{METADATA_KEY}.json": ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", TORCHSCRIPT_DEPRECATION, FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[f"{METADATA_KEY}.json"])


def run_exported(path: str | Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """The exported file's outputs for ``image`` (N, 3, S, S) float32 in [0, 1]."""
    path = Path(path)
    tasks = read_metadata(path)["tasks"]
    if FORMATS.get(path.suffix.lower()) == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ExportError("running an ONNX file needs onnxruntime: pip install "
                              "onnxruntime") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(zip(tasks, session.run(tasks, {"image": image.astype(np.float32)})))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", TORCHSCRIPT_DEPRECATION, FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        outputs = module(torch.from_numpy(image.astype(np.float32)))
    return {task: o.numpy() for task, o in zip(tasks, outputs)}


def check_export(predictor: Predictor, path: str | Path, *, samples: int = 4,
                 seed: int = 0) -> float:
    """The largest absolute difference between the exported file's outputs and PyTorch's on
    ``samples`` random images (the same ones)."""
    size = int(predictor.reading["image_size"])
    image = torch.rand(samples, 3, size, size, generator=torch.Generator().manual_seed(seed))
    expected = predictor({"image": (image * 255).round().byte().numpy()})
    exported = run_exported(path, (image * 255).round().numpy() / 255.0)
    return max(float(np.abs(exported[t] - expected[t]).max()) for t in expected)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="affectlab-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (several: averaged)")
    parser.add_argument("--out", required=True, help="MODEL.onnx or MODEL.pt (TorchScript)")
    parser.add_argument("--checkpoint", default="best.pt", help="which checkpoint of each run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if Path(args.out).exists() and not args.overwrite:
            raise ExportError(f"{args.out} exists; refusing to overwrite it (--overwrite)")
        predictor = Predictor(args.runs, device="cpu", which=args.checkpoint)
        path = export(predictor, args.out)
        difference = check_export(predictor, path)
    except (ExportError, RunsError, CheckpointError, FileNotFoundError, ValueError) as err:
        log.error("affectlab-export: %s", " ".join(str(err).split()))
        sys.exit(2)
    log.info("written: %s (%d run(s); tasks %s); largest difference from PyTorch on 4 random "
             "images: %.2g", path, len(predictor.runs), ", ".join(predictor.label_names),
             difference)


if __name__ == "__main__":
    main()
