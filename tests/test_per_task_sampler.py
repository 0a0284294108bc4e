"""The per-task sampler (Deng et al.'s balancing): each batch's shares of the tasks' labelled
samples, every expression class and VA cell equally likely, ML-ROS on the AU stream, purity in
(seed, epoch), the config group through the trainer, and its messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affectlab.data.contract import LabelTable, empty_labels
from affectlab.data.samplers import PerTaskSampler, va_cell_weights
from affectlab.train import run

from .conftest import compose_config


def one_task_table(n: int = 300, seed: int = 0) -> LabelTable:
    """n faces, each labelled for one task (au rows first, then expr, then va), with an
    imbalanced expression (class 0 ten times class 6) and VA crowded near the origin."""
    rng = np.random.default_rng(seed)
    labels = empty_labels(n, num_aus=3)
    third = n // 3
    au = (rng.random((n, 3)) < [0.5, 0.2, 0.05]).astype(np.float32)
    labels["au"], labels["au_mask"][:third] = au, True
    weights = np.array([10, 5, 4, 3, 2, 2, 1], dtype=float)
    labels["expr"][third:2 * third] = rng.choice(7, size=third, p=weights / weights.sum())
    labels["expr_mask"][third:2 * third] = True
    labels["va"][2 * third:] = np.clip(rng.normal(0, 0.25, (n - 2 * third, 2)), -1, 1)
    labels["va_mask"][2 * third:] = True
    return LabelTable(root=".", image_paths=[f"{i}.png" for i in range(n)], **labels)


def batches(sampler: PerTaskSampler, epoch: int) -> np.ndarray:
    sampler.set_position(epoch)
    return np.array(list(sampler)).reshape(-1, sampler.batch_size)


def test_every_batch_holds_each_tasks_share():
    table = one_task_table()
    sampler = PerTaskSampler(table, proportions={"au": 0.5, "expr": 0.25, "va": 0.25},
                             batch_size=10, seed=0)
    assert sampler.batch_counts(10) == {"au": 5, "expr": 3, "va": 2} or \
        sampler.batch_counts(10) == {"au": 5, "expr": 2, "va": 3}
    assert sum(sampler.batch_counts(10).values()) == 10
    for batch in batches(sampler, 0):
        assert (batch < 100).sum() == 5          # au rows 0–99
    equal = PerTaskSampler(table, batch_size=9, seed=0)
    assert equal.batch_counts(9) == {"au": 3, "expr": 3, "va": 3}
    assert equal.batches_per_epoch() == 300 // 9


def test_expression_classes_and_va_cells_are_drawn_equally_often():
    table = one_task_table(n=3000)
    sampler = PerTaskSampler(table, proportions={"expr": 1.0}, batch_size=100, seed=1)
    drawn = np.concatenate([batches(sampler, e).ravel() for e in range(5)])
    counts = np.bincount(table.expr[drawn], minlength=7)
    assert counts.min() / counts.max() > 0.8, counts          # 10 : 1 in the data
    plain = PerTaskSampler(table, proportions={"expr": 1.0}, balance={"expr": "none"},
                           batch_size=100, seed=1)
    raw = np.bincount(table.expr[batches(plain, 0).ravel()], minlength=7)
    assert raw[0] > 5 * raw[6]
    va = PerTaskSampler(table, proportions={"va": 1.0}, va_bins=4, batch_size=100, seed=1)
    drawn = np.concatenate([batches(va, e).ravel() for e in range(5)])
    cells = np.clip(np.floor((table.va[drawn] + 1) / 2 * 4), 0, 3)
    occupied = np.unique(cells[:, 0] * 4 + cells[:, 1], return_counts=True)[1]
    assert occupied.min() / occupied.max() > 0.5, occupied


def test_va_cell_weights_by_hand():
    values = np.array([[-0.9, -0.9], [-0.8, -0.95], [0.9, 0.9]])
    assert va_cell_weights(values, 2).tolist() == [0.5, 0.5, 1.0]


def test_the_au_stream_is_ml_ros_balanced():
    table = one_task_table(n=600)
    balanced = PerTaskSampler(table, proportions={"au": 1.0}, batch_size=50, seed=0)
    plain = PerTaskSampler(table, proportions={"au": 1.0}, balance={"au": "none"},
                           batch_size=50, seed=0)
    rare = [table.au[batches(s, 0).ravel(), 2].mean() for s in (balanced, plain)]
    assert balanced.summary()["au_clones"] > 0 and rare[0] > rare[1]


def test_the_sampler_is_pure_in_seed_and_epoch():
    table = one_task_table()
    a, b = (PerTaskSampler(table, batch_size=10, seed=3) for _ in range(2))
    assert np.array_equal(batches(a, 2), batches(b, 2))
    assert not np.array_equal(batches(a, 2), batches(a, 3))
    b.set_position(2, start_batch=4)
    assert list(b) == batches(a, 2)[4:].ravel().tolist()


def test_bad_proportions_and_rules_are_named():
    table = one_task_table()
    with pytest.raises(ValueError, match="proportions.attr: the training split has no 'attr'"):
        PerTaskSampler(table, proportions={"attr": 1.0}, batch_size=10, seed=0)
    with pytest.raises(ValueError, match="proportions.pose: tasks are"):
        PerTaskSampler(table, proportions={"pose": 1.0}, batch_size=10, seed=0)
    with pytest.raises(ValueError, match="balance.expr='ml_ros'"):
        PerTaskSampler(table, balance={"expr": "ml_ros"}, batch_size=10, seed=0)
    with pytest.raises(ValueError, match="every share is 0"):
        PerTaskSampler(table, proportions={"au": 0.0}, batch_size=10, seed=0)


def test_the_sampler_group_trains_a_multi_task_run(data_root, tmp_path):
    cfg = compose_config(data_root, ["sampler=per_task", "dataset.train_labels=one_task",
                                     "trainer.max_steps=2"])
    result = run(cfg, tmp_path / "run")
    assert result["sampler"]["sampler"] == "per_task"
    assert set(result["sampler"]["proportions"]) == {"au", "expr", "va"}
    assert torch.isfinite(torch.tensor(result["score"]))
