"""scripts/ssl_neighbours.py: what a feature space's nearest neighbours share (person, AUs)."""

from __future__ import annotations

import numpy as np
import pytest

from affectlab.train import run

from .conftest import load_script

# Two people, two images each; the features group by person.
FEATURES = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
SUBJECT = np.array([0, 0, 1, 1])
AU = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])   # AU 1 = person 0; AU 2 never


def test_nearest_neighbours_by_cosine_with_and_without_the_same_person():
    script = load_script("ssl_neighbours")
    assert script.nearest_neighbours(FEATURES, 1)[:, 0].tolist() == [1, 0, 3, 2]
    # the other person only: cos(x0, x3) = 0.1/|x3| > cos(x0, x2) = 0; cos(x1, x3) > cos(x1, x2)
    assert script.nearest_neighbours(FEATURES, 1, exclude=SUBJECT)[:, 0].tolist() == [3, 3, 1, 1]
    with pytest.raises(ValueError, match="--k 4"):
        script.nearest_neighbours(FEATURES, 4)


def test_neighbourhood_stats_by_hand():
    script = load_script("ssl_neighbours")
    stats = script.neighbourhood_stats(FEATURES, SUBJECT, AU, np.ones_like(AU, dtype=bool), k=1)
    assert stats["same person"] == 1.0
    assert stats["chance"] == pytest.approx(1 / 3)      # (2 − 1) / (4 − 1) for every face
    assert stats["kNN AP"] == 1.0                       # AU 2 has no positive: left out
    # other people's votes for AU 1: [0, 0, 1, 1] against truth [1, 1, 0, 0]: AP = 2/4
    assert stats["kNN AP, other people"] == pytest.approx(0.5)
    assert stats["prevalence"] == pytest.approx(0.5)


def test_table_of_a_tiny_run(tiny_cfg, tmp_path):
    run(tiny_cfg("method=mean_teacher", "trainer.max_steps=2"), tmp_path / "row" / "seed0")
    script = load_script("ssl_neighbours")
    out = tmp_path / "neighbours.md"
    assert script.main([str(tmp_path / "row"), "--k", "2", "--pixels", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    row = next(line for line in lines if line.startswith(f"| {tmp_path / 'row'} | 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    assert len(cells) == 6 and all(" ± 0.0" in c for c in cells)
    assert 0.0 <= float(cells[0].split(" ± ")[0]) <= 100.0
    assert any(line.startswith("| raw pixels | — |") for line in lines)
