"""Behaviour of each method on a tiny batch: finite loss, gradients everywhere, masks honoured."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from affectlab.data.contract import FaceData, FaceImageDataset, LabelTable, empty_labels
from affectlab.methods.baseline import Baseline
from affectlab.models.small_cnn import SmallCNN


def table_data(au: np.ndarray, mask: np.ndarray) -> FaceData:
    labels = empty_labels(len(au), num_aus=au.shape[1])
    labels["au"], labels["au_mask"] = au.astype(np.float32), mask
    table = LabelTable(root=".", image_paths=[f"{i}.png" for i in range(len(au))], **labels)
    dataset = FaceImageDataset(table, image_size=16)
    return FaceData(name="table", train=dataset, val=dataset, test=dataset,
                    label_names={"au": [f"AU{i}" for i in range(au.shape[1])]})


def batch(n: int = 4, c: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"image": torch.rand(n, 3, 16, 16, generator=generator),
            "au": (torch.rand(n, c, generator=generator) > 0.5).float(),
            "au_mask": torch.ones(n, c, dtype=torch.bool)}


def make_baseline(**kwargs) -> Baseline:
    return Baseline(model=functools.partial(SmallCNN, widths=[4, 8]), **kwargs)


def test_baseline_step_has_finite_loss_and_gradients_on_every_parameter():
    method = make_baseline()
    method.setup(table_data(np.eye(3), np.ones((3, 3), dtype=bool)))
    losses = method(batch())
    assert set(losses) == {"loss", "au"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    for name, param in method.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    probs = method.predict(batch())["au"]
    assert probs.shape == (4, 3) and torch.all((probs >= 0) & (probs <= 1))
    assert method.label_names == {"au": ["AU0", "AU1", "AU2"]}


def test_baseline_ignores_masked_labels():
    method = make_baseline()
    method.setup(table_data(np.eye(3), np.ones((3, 3), dtype=bool)))
    b = batch()
    b["au_mask"][:, 1] = False
    flipped = dict(b, au=b["au"].clone())
    flipped["au"][:, 1] = 1 - flipped["au"][:, 1]
    assert torch.equal(method(b)["loss"], method(flipped)["loss"])


def test_frequency_weighting_comes_from_the_labelled_split():
    au = np.array([[1, 1], [0, 1], [0, 0], [0, 0]])
    method = make_baseline(heads={"au": {"weighting": "frequency"}})
    method.setup(table_data(au, np.ones_like(au, dtype=bool)))
    # positive rates 1/4 and 1/2 → weights ∝ (4, 2), mean 1
    assert torch.allclose(method.heads.heads["au"].label_weights, torch.tensor([4 / 3, 2 / 3]))
    unweighted = make_baseline()
    unweighted.setup(table_data(au, np.ones_like(au, dtype=bool)))
    assert torch.equal(unweighted.heads.heads["au"].label_weights, torch.ones(2))


def test_baseline_rejects_unknown_options_and_tasks():
    with pytest.raises(ValueError, match=r"method.heads.au.weighting='balanced'"):
        make_baseline(heads={"au": {"weighting": "balanced"}})
    with pytest.raises(ValueError, match=r"unknown task 'pose': dataset 'table' labels \['au'\]"):
        make_baseline(tasks=["pose"]).setup(table_data(np.eye(3), np.ones((3, 3), dtype=bool)))
    method = make_baseline(tasks=["attr"])
    with pytest.raises(ValueError, match=r"method.tasks has 'attr', but dataset 'table' labels "
                                         r"\['au'\]"):
        method.setup(table_data(np.eye(3), np.ones((3, 3), dtype=bool)))
