"""The baseline learns expressions and valence/arousal: the expression and VA sets train."""

from __future__ import annotations

import pytest
import torch

from affectlab.data.layouts import afew_va, affectnet, expw
from affectlab.data.layouts.faces import layout_faces
from affectlab.losses import masked_mse
from affectlab.train import run

TINY = ["method=baseline", "dataset.image_size=32", "trainer.max_steps=2",
        "trainer.batch_size=4", "trainer.eval_every_epochs=1"]


def test_masked_mse_hand_computed():
    pred = torch.tensor([[0.5, -0.5], [1.0, 1.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    mask = torch.tensor([True, True, False])
    # sample 0: (0.25 + 0.25) / 2 = 0.25; sample 1: (1 + 0) / 2 = 0.5; sample 2 masked
    assert masked_mse(pred, target, mask).item() == pytest.approx(0.375)
    assert masked_mse(pred, target, torch.zeros(3, dtype=torch.bool)).item() == 0.0


@pytest.mark.parametrize("name, module, task, monitor", [
    ("affectnet", affectnet, "expr", "val/expr/f1_macro"),
    ("expw", expw, "expr", "val/expr/f1_macro"),
    ("afew_va", afew_va, "va", "val/va/ccc_mean"),
])
def test_expression_and_va_sets_train_through_the_real_loader(tiny_cfg, tmp_path, name, module,
                                                              task, monitor):
    root = tmp_path / name
    module.write_layout(layout_faces(12, 4, seed=5, image_size=32), root)
    metrics = run(tiny_cfg(f"dataset={name}", f"dataset.root={root}",
                           f"dataset.cache_dir={tmp_path / 'cache'}", *TINY,
                           f"method.tasks=[{task}]", f"trainer.monitor={monitor}"),
                  tmp_path / "run")
    assert metrics["steps"] == 2 and set(metrics["tasks"]) == {task}
    if task == "expr":
        assert 0.0 <= metrics["tasks"]["expr"]["f1_macro"] <= 1.0
    else:
        assert -1.0 <= metrics["tasks"]["va"]["ccc_mean"] <= 1.0


def test_a_task_the_dataset_lacks_is_named(tiny_cfg, tmp_path):
    root = tmp_path / "afew_va"
    afew_va.write_layout(layout_faces(12, 4, seed=5, image_size=32), root)
    with pytest.raises(ValueError, match=r"method.tasks has 'expr', but dataset 'afew_va' labels "
                                         r"\['va'"):
        run(tiny_cfg("dataset=afew_va", f"dataset.root={root}",
                     f"dataset.cache_dir={tmp_path / 'cache'}", *TINY, "method.tasks=[expr]"),
            tmp_path / "run")
    with pytest.raises(ValueError, match=r"unknown task 'pose': dataset 'synthetic' labels "
                                         r"\['au', 'expr', 'va', 'identity'\]"):
        run(tiny_cfg("method.tasks=[pose]", "trainer.max_steps=1"), tmp_path / "run2")
