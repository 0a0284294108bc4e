"""Balancing samplers: ML-ROS on hand-made label matrices, weighted draws, purity in
(seed, epoch, position), sharding, exact resume, and the sampler config group end to end."""

from __future__ import annotations

import numpy as np
import pytest

from affectlab.data.contract import LabelTable, empty_labels
from affectlab.data.samplers import (
    MLROSSampler,
    WeightedSampler,
    balancing_weights,
    imbalance_ratios,
    ml_ros_clones,
    uniform_epochs,
)
from affectlab.train import run

from .conftest import run_interrupted, same_final_weights


def table_of(au: np.ndarray, mask: np.ndarray | None = None, expr: np.ndarray | None = None
             ) -> LabelTable:
    labels = empty_labels(len(au), num_aus=au.shape[1])
    labels["au"] = au.astype(np.float32)
    labels["au_mask"] = np.ones_like(au, dtype=bool) if mask is None else mask
    if expr is not None:
        labels["expr"], labels["expr_mask"] = expr, np.ones(len(expr), dtype=bool)
    return LabelTable(root=".", image_paths=[f"{i}.png" for i in range(len(au))], **labels)


# 8 rows, label 0 positive in 6 rows, label 1 in 3, label 2 in 1
HAND = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 0, 1],
                 [0, 1, 0], [0, 0, 0]])


def test_imbalance_ratios_hand_values():
    irlbl, mean_ir = imbalance_ratios(HAND, np.ones_like(HAND, dtype=bool))
    assert irlbl.tolist() == [1.0, 2.0, 6.0]
    assert mean_ir == pytest.approx(3.0)
    # masked entries do not count, and a label without positives is left out (NaN)
    mask = np.ones_like(HAND, dtype=bool)
    mask[:3, 0] = False
    irlbl, mean_ir = imbalance_ratios(np.c_[HAND, np.zeros(8)], np.c_[mask, np.ones(8, bool)])
    assert irlbl[:3].tolist() == [1.0, 1.0, 3.0] and np.isnan(irlbl[3])
    assert mean_ir == pytest.approx(5 / 3)


def test_ml_ros_clones_minority_rows_until_mean_ir():
    mask = np.ones_like(HAND, dtype=bool)
    clones = ml_ros_clones(HAND, mask, percentage=100, rng=np.random.default_rng(0))
    # only label 2 (IRLbl 6 > MeanIR 3) is a minority: its one positive row (5) is cloned until
    # IRLbl(2) = max count / count(2) ≤ 3; row 5 also adds to label 0: 7/2, 8/3 → 2 clones
    assert clones.tolist() == [5, 5]
    rows = np.r_[np.arange(8), clones]
    _, mean_after = imbalance_ratios(HAND[rows], mask[rows])
    assert mean_after < 3.0


def test_ml_ros_budget_and_every_original_kept():
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 6)) < np.array([0.5, 0.3, 0.1, 0.05, 0.03, 0.02])).astype(float)
    mask = np.ones_like(labels, dtype=bool)
    table = table_of(labels)
    sampler = MLROSSampler(table, percentage=10, batch_size=8, seed=3)
    assert len(sampler.clones) <= 20                       # 10 % of 200
    rows = sampler.rows.numpy()
    assert sorted(rows[:200].tolist()) == list(range(200))  # every original once
    _, mean_ir = imbalance_ratios(labels, mask)
    irlbl, _ = imbalance_ratios(labels, mask)
    minority = np.flatnonzero(irlbl > mean_ir)
    # every clone carries a minority label
    assert all(labels[r, minority].any() for r in sampler.clones)
    summary = sampler.summary()
    assert summary["mean_ir_after"] < summary["mean_ir_before"] == pytest.approx(mean_ir, abs=1e-4)
    # an epoch visits each row of the enlarged set once
    sampler.set_position(0)
    epoch = list(sampler)
    assert len(epoch) == sampler.batches_per_epoch() * 8
    assert np.bincount(epoch, minlength=200).max() >= 2   # clones show up


def test_samplers_are_pure_functions_of_seed_epoch_and_position():
    table = table_of(HAND.repeat(4, axis=0))
    for make in (lambda: uniform_epochs(table, batch_size=4, seed=1),
                 lambda: MLROSSampler(table, batch_size=4, seed=1),
                 lambda: WeightedSampler(table, batch_size=4, seed=1)):
        a, b = make(), make()
        a.set_position(2)
        b.set_position(2, start_batch=3)
        full = list(a)
        assert list(b) == full[3 * 4:]
        a.set_position(3)
        assert list(a) != full
        # two ranks split one epoch between them, batch for batch
        shards = []
        for rank in range(2):
            sampler = make()
            sampler.rank, sampler.world_size = rank, 2
            sampler.set_position(2)
            shards.append(list(sampler))
        assert len(shards[0]) == len(shards[1]) == sampler.batches_per_epoch() * 4
        order = a.epoch_indices(2).tolist()
        assert shards[0] == order[0::2][:len(shards[0])]


def test_balancing_weights_hand_values():
    weights = balancing_weights(table_of(HAND), "au")
    # rarest present label: rows 0-2 → 1/6, rows 3-4 → 1/3, row 5 → 1/1, row 6 → 1/3,
    # row 7 (no AU) → 1 / (1 such row)
    assert weights.tolist() == pytest.approx([1 / 6] * 3 + [1 / 3] * 2 + [1.0, 1 / 3, 1.0])
    expr = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    weights = balancing_weights(table_of(HAND, expr=expr), "expr")
    assert weights.tolist() == pytest.approx([1 / 3] * 3 + [1 / 2] * 2 + [1 / 3] * 3)


def test_class_balanced_epochs_draw_classes_equally():
    expr = np.array([0] * 90 + [1] * 9 + [2] * 1)
    sampler = WeightedSampler(table_of(np.zeros((100, 1)), expr=expr), task="expr",
                              batch_size=10, seed=0)
    counts = np.zeros(3)
    for epoch in range(30):
        sampler.set_position(epoch)
        counts += np.bincount(expr[list(sampler)], minlength=3)
    assert counts.min() / counts.max() > 0.8


def test_samplers_refuse_tasks_they_cannot_balance():
    with pytest.raises(ValueError, match="sampler=class_balanced"):
        MLROSSampler(table_of(HAND), task="expr", batch_size=2, seed=0)
    with pytest.raises(ValueError, match="no 'attr' labels"):
        WeightedSampler(table_of(HAND), task="attr", batch_size=2, seed=0)


def test_ml_ros_run_logs_the_imbalance_and_resumes_exactly(tiny_cfg, tmp_path, monkeypatch):
    overrides = ["sampler=ml_ros", "method.tasks=[au]", "trainer.max_epochs=2",
                 "trainer.batch_size=4"]
    reference = run(tiny_cfg(*overrides), tmp_path / "full")
    summary = reference["sampler"]
    assert summary["sampler"] == "ml_ros" and summary["clones"] > 0
    assert summary["mean_ir_after"] < summary["mean_ir_before"]
    run_interrupted(tiny_cfg(*overrides), tmp_path / "interrupted", 9, monkeypatch)
    resumed = run(tiny_cfg(*overrides,
                           f"trainer.resume={tmp_path / 'interrupted/checkpoints/last.pt'}"),
                  tmp_path / "resumed")
    assert resumed["tasks"] == reference["tasks"]
    assert same_final_weights(tmp_path / "full", tmp_path / "resumed")
