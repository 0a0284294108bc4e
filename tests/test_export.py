"""affectlab-export: ONNX and TorchScript files that predict what PyTorch predicts, carrying
their labels, thresholds and input conventions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from affectlab.export import ExportError, check_export, export, read_metadata, run_exported
from affectlab.predict.runs import Predictor


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
@pytest.mark.parametrize("members", [1, 2])
def test_the_exported_file_predicts_what_pytorch_predicts(tiny_runs, tmp_path, suffix,
                                                          members):
    predictor = Predictor(tiny_runs[:members])
    path = export(predictor, tmp_path / f"model{suffix}")
    assert check_export(predictor, path, samples=3) < 1e-4
    # another batch size than the export's example: the batch dimension is free
    size = predictor.reading["image_size"]
    pixels = torch.randint(0, 256, (5, 3, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    exported = run_exported(path, pixels.numpy() / 255.0)
    expected = predictor({"image": pixels.numpy()})
    assert set(exported) == {"au", "expr", "va"}
    for task in expected:
        assert exported[task].shape == expected[task].shape == (5, expected[task].shape[1])
        assert np.allclose(exported[task], expected[task], atol=1e-4)
    info = read_metadata(path)
    assert info["label_names"] == predictor.label_names
    assert info["thresholds"] == predictor.thresholds
    assert info["input"]["shape"] == ["N", 3, size, size] and info["input"]["range"] == [0, 1]
    assert len(info["runs"]) == members and info["faces"]["image_size"] == size


def test_an_unknown_format_is_named(tiny_runs, tmp_path):
    with pytest.raises(ExportError, match=r"model\.txt.*\.onnx.*\.pt"):
        export(Predictor(tiny_runs[:1]), tmp_path / "model.txt")
    assert list(tmp_path.iterdir()) == []


def test_the_command_exports_and_refuses_to_overwrite(tiny_runs, tmp_path):
    out = tmp_path / "model.pt"
    command = [sys.executable, "-m", "affectlab.export", str(tiny_runs[0]), "--out", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-1500:]
    assert "largest difference from PyTorch" in first.stderr and out.is_file()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert "Traceback" not in again.stderr
