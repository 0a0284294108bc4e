"""scripts/write_synthetic_layout.py: synthetic faces in a real layout, read back by its module."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from affectlab.datasets.ckplus import CKPlus

from .conftest import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("write_synthetic_layout",
                                                  REPO / "scripts" / "write_synthetic_layout.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["write_synthetic_layout"] = module
    spec.loader.exec_module(module)
    return module


def test_ckplus_layout_is_written_and_read_back(tmp_path):
    script = load_script()
    out = tmp_path / "CK+"
    assert script.main(["--layout", "ckplus", "--out", str(out), "--subjects", "10",
                        "--images", "2", "--image-size", "32"]) == 0
    data = CKPlus(root=str(out), cache_dir=str(tmp_path / "cache"), image_size=32).build()
    assert sum(len(s) for s in (data.train, data.val, data.test)) == 20
    with pytest.raises(SystemExit):          # an existing folder is never written into
        script.main(["--layout", "ckplus", "--out", str(out)])
