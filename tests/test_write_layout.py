"""scripts/write_synthetic_layout.py: synthetic faces in a real layout, read back by its module."""

from __future__ import annotations

import pytest

from affectlab.data.sources.ckplus import CKPlus

from .conftest import load_script


def test_ckplus_layout_is_written_and_read_back(tmp_path):
    script = load_script("write_synthetic_layout")
    out = tmp_path / "CK+"
    assert script.main(["--layout", "ckplus", "--out", str(out), "--subjects", "10",
                        "--images", "2", "--image-size", "32"]) == 0
    data = CKPlus(root=str(out), cache_dir=str(tmp_path / "cache"), image_size=32).build()
    assert sum(len(s) for s in (data.train, data.val, data.test)) == 20
    with pytest.raises(SystemExit):          # an existing folder is never written into
        script.main(["--layout", "ckplus", "--out", str(out)])
