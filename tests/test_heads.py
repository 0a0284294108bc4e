"""Task heads: each loss against hand-computed values (masks included), predictions, several
tasks in one network, that every task's loss reaches the weights it should move, and the
ArcFace margin of the identity head."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from affectlab.data.contract import FaceData, FaceImageDataset, LabelTable, empty_labels
from affectlab.losses import masked_ccc_loss, masked_cross_entropy, va_bin_indices
from affectlab.methods.baseline import Baseline
from affectlab.methods.heads import (
    ClassificationHead,
    IdentityHead,
    MultiLabelHead,
    TaskHeads,
    ValenceArousalHead,
    identity_classes,
)
from affectlab.models.small_cnn import SmallCNN

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def test_multilabel_head_bce_ignores_masked_entries():
    head = MultiLabelHead(1, 2)
    logits = torch.tensor([[0.0, 2.0], [0.0, -3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [True, False]])
    # two valid entries, each BCE(0, y) = ln 2
    assert head.loss(logits, targets, mask).item() == pytest.approx(LN2)
    assert torch.allclose(head.predict(logits), torch.sigmoid(logits))


def test_multilabel_head_selective_learning_keeps_the_target_ratio():
    head = MultiLabelHead(1, 2, weighting="selective", selective_ratio=0.5)
    head.fit_statistics(torch.zeros(4, 2), torch.ones(4, 2, dtype=torch.bool))
    targets = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    mask = torch.ones(4, 2, dtype=torch.bool)
    logits = torch.zeros(4, 2)
    # label 0: 1 positive of 4 < 0.5·4 → keep ceil(1·0.5/0.5) = 1 negative: 2 weighted entries;
    # label 1: 2 of 4 = the target → all 4 kept. Denominator: the 8 valid entries.
    assert head.loss(logits, targets, mask).item() == pytest.approx(6 * LN2 / 8)


def test_multilabel_head_selective_ratio_from_data():
    head = MultiLabelHead(1, 2, weighting="selective", selective_ratio="data")
    head.fit_statistics(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),
                        torch.ones(4, 2, dtype=torch.bool))
    assert torch.allclose(head.target_ratio, torch.tensor([0.25, 0.5]))


def test_classification_head_cross_entropy_and_class_weights():
    head = ClassificationHead(1, 3)
    logits = torch.zeros(3, 3)
    classes = torch.tensor([0, 2, 1])
    mask = torch.tensor([True, True, False])
    assert head.loss(logits, classes, mask).item() == pytest.approx(LN3)
    weighted = ClassificationHead(1, 3, weighting="frequency")
    # counts 3, 1, 0 → inverse (1/3, 1, 1) normalised to mean 1: (3/7, 9/7, 9/7)
    weighted.fit_statistics(torch.tensor([0, 0, 0, 1]), torch.ones(4, dtype=torch.bool))
    assert torch.allclose(weighted.class_weights, torch.tensor([3 / 7, 9 / 7, 9 / 7]))
    # (3/7 · ln 3 + 9/7 · ln 3) / 2 valid samples
    assert weighted.loss(logits, classes, mask).item() == pytest.approx(6 / 7 * LN3)
    assert torch.allclose(head.predict(logits), torch.full((3, 3), 1 / 3))


def test_va_regression_head_mse_over_valid_samples():
    head = ValenceArousalHead(1)
    logits = torch.zeros(2, 2)
    values = torch.tensor([[0.5, -0.5], [1.0, 1.0]])
    mask = torch.tensor([True, False])
    assert head.loss(logits, values, mask).item() == pytest.approx(0.25)
    assert torch.equal(head.predict(logits), torch.zeros(2, 2))


def test_va_bins_indices_expectation_and_loss():
    assert va_bin_indices(torch.tensor([[-1.0, -0.5], [0.0, 1.0]]), 4).tolist() == [[0, 1],
                                                                                     [2, 3]]
    head = ValenceArousalHead(1, form="bins", bins=4, ccc_weight=0.0)
    assert torch.allclose(head.centres, torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    logits = torch.zeros(2, 8)
    values = torch.tensor([[0.9, -0.9], [0.1, 0.1]])
    # uniform bins: expectation 0 and CE = ln 4 per dimension
    assert torch.allclose(head.predict(logits), torch.zeros(2, 2))
    assert head.loss(logits, values, torch.tensor([True, True])).item() == pytest.approx(2 * LN4)
    # all mass on the last valence bin, the first arousal bin → (0.75, −0.75)
    sharp = torch.full((1, 8), -1e4)
    sharp[0, 3] = sharp[0, 4] = 0.0
    assert torch.allclose(head.predict(sharp), torch.tensor([[0.75, -0.75]]))


def test_ccc_loss_hand_values():
    target = torch.tensor([[0.1, -0.2], [0.4, 0.3], [-0.5, 0.6]])
    every = torch.ones(3, dtype=torch.bool)
    assert masked_ccc_loss(target, target, every).item() == pytest.approx(0.0, abs=1e-6)
    # the negated series: CCC < 0 on each column (not −1: the means are not 0), so the
    # reference is the metric's own estimator
    from affectlab.metrics import ccc
    expected = sum(1 - ccc(target[:, d].numpy(), -target[:, d].numpy()) for d in range(2))
    assert masked_ccc_loss(-target, target, every).item() == pytest.approx(expected, rel=1e-5)
    # one valid sample: undefined CCC → 0
    assert masked_ccc_loss(-target, target, torch.tensor([True, False, False])).item() == 0.0


def test_masked_cross_entropy_without_valid_samples_is_zero_with_a_gradient():
    logits = torch.zeros(2, 3, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.tensor([0, 1]), torch.tensor([False, False]))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_identity_classes_map_subjects_and_mask_strangers():
    classes, known = identity_classes(torch.tensor([3, 7]), torch.tensor([7, 5, 3, -1]),
                                      torch.tensor([True, True, True, False]))
    assert known.tolist() == [True, False, True, False]
    assert classes[known].tolist() == [1, 0]


# ------------------------------------------------------------------- several tasks, one net
def multitask_data() -> FaceData:
    n = 6
    labels = empty_labels(n, num_aus=2)
    labels["au"] = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 0]], dtype=np.float32)
    labels["au_mask"][:] = True
    labels["expr"] = np.array([0, 1, 2, 3, 4, 5])
    labels["expr_mask"][:4] = True          # partial labels: two samples without expression
    labels["va"] = np.linspace(-0.9, 0.9, 2 * n, dtype=np.float32).reshape(n, 2)
    labels["va_mask"][2:] = True
    labels["subject"] = np.array([10, 10, 11, 11, 12, 12])
    table = LabelTable(root=".", image_paths=[f"{i}.png" for i in range(n)], **labels)
    dataset = FaceImageDataset(table, image_size=16)
    return FaceData(name="multi", train=dataset, val=dataset, test=dataset,
                    label_names={"au": ["AU1", "AU2"]})


def batch_of(data: FaceData) -> dict[str, torch.Tensor]:
    t = data.train.table
    generator = torch.Generator().manual_seed(0)
    return {"image": torch.rand(len(t), 3, 16, 16, generator=generator),
            "au": torch.from_numpy(t.au), "au_mask": torch.from_numpy(t.au_mask),
            "expr": torch.from_numpy(t.expr), "expr_mask": torch.from_numpy(t.expr_mask),
            "va": torch.from_numpy(t.va), "va_mask": torch.from_numpy(t.va_mask),
            "subject": torch.from_numpy(t.subject)}


def make_baseline(**kwargs) -> Baseline:
    return Baseline(model=functools.partial(SmallCNN, widths=[4, 8]), **kwargs)


def test_default_tasks_are_the_dataset_tasks_and_the_loss_is_their_weighted_sum():
    data = multitask_data()
    method = make_baseline(loss_weights={"au": 8.0})
    method.setup(data)
    assert method.heads.tasks == ["au", "expr", "va"]     # identity only when named
    assert method.label_names["expr"][0] == "neutral"
    losses = method(batch_of(data))
    assert set(losses) == {"loss", "au", "expr", "va"}
    expected = 8.0 * losses["au"] + losses["expr"] + losses["va"]
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    predictions = method.predict(batch_of(data))
    assert {k: tuple(v.shape) for k, v in predictions.items()} == {
        "au": (6, 2), "expr": (6, 7), "va": (6, 2)}


@pytest.mark.parametrize("task", ["au", "expr", "va", "identity"])
def test_each_task_loss_reaches_its_head_and_the_backbone_only(task):
    data = multitask_data()
    method = make_baseline(tasks=["au", "expr", "va", "identity"])
    method.setup(data)
    terms = method.heads.losses(method.heads(method.backbone.forward_features(
        batch_of(data)["image"])), batch_of(data))
    assert terms[task].item() > 0
    terms[task].backward()
    for name, param in method.named_parameters():
        grad = param.grad.abs().sum().item() if param.grad is not None else 0.0
        if name.startswith("backbone.") or name.startswith(f"heads.heads.{task}."):
            assert grad > 0, name
        else:
            assert grad == 0, name


def test_identity_head_has_a_class_per_training_subject():
    data = multitask_data()
    method = make_baseline(tasks=["identity"])
    method.setup(data)
    assert method.label_names["identity"] == ["10", "11", "12"]
    assert method.predict(batch_of(data))["identity"].shape == (6, 3)


def test_identity_on_a_dataset_without_subject_ids_says_so():
    data = multitask_data()
    data.train.table.subject[:] = -1
    with pytest.raises(ValueError, match="dataset 'multi' has no subject ids in its training "
                                         "split: identity pre-training needs"):
        make_baseline(tasks=["identity"]).setup(data)


def test_unknown_tasks_and_weights_are_named():
    with pytest.raises(ValueError, match=r"unknown task 'pose': dataset 'multi' labels "
                                         r"\['au', 'expr', 'va', 'identity'\]"):
        make_baseline(tasks=["pose"]).setup(multitask_data())
    with pytest.raises(ValueError, match="unknown task 'pose' in method.loss_weights"):
        TaskHeads(loss_weights={"pose": 1.0})
    with pytest.raises(ValueError, match="method.tasks is empty"):
        TaskHeads(tasks=[])
    method = make_baseline(tasks=["au"], loss_weights={"expr": 2.0})
    with pytest.raises(ValueError, match=r"loss_weights names \['expr'\]"):
        method.setup(multitask_data())


def test_identity_pretraining_without_shared_identities_keeps_the_latest_epoch(tiny_cfg,
                                                                               tmp_path):
    from affectlab.train import run

    # the synthetic splits are subject-exclusive: no validation face has a trained identity
    metrics = run(tiny_cfg("method.tasks=[identity]", "trainer.max_epochs=3",
                           "trainer.eval_every_epochs=1"), tmp_path / "run")
    assert metrics["best_epoch"] == 3 and metrics["tasks"] == {}
    best = torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)
    assert best["label_names"]["identity"] == [str(s) for s in range(4)]


# ---------------------------------------------------------------- ArcFace identity margin
def arcface_head(scale: float = 4.0, margin: float = 0.5) -> IdentityHead:
    """A 2-class head on 2-d features: w_0 ∥ e₁, w_1 ∥ e₂ (unnormalised on purpose); the
    classes are subjects 10 and 11."""
    head = IdentityHead(2, 2, margin="arcface", scale=scale, angular_margin=margin)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    head.fit_statistics(torch.tensor([10, 11]), torch.tensor([True, True]))
    return head


def test_arcface_logits_on_a_hand_example():
    head = arcface_head(scale=4.0, margin=0.5)
    # x̂₁ = (0.6, 0.8): cos θ = (0.6, 0.8); x̂₂ = (0.28, −0.96): cos θ = (0.28, −0.96)
    features = torch.tensor([[3.0, 4.0], [1.4, -4.8]])
    logits = head(features)
    assert torch.allclose(logits, torch.tensor([[2.4, 3.2], [1.12, -3.84]]), atol=1e-6)
    subjects = torch.tensor([10, 11])                       # true classes 0 and 1
    classes, known = identity_classes(head.subject_ids, subjects, torch.tensor([True, True]))
    margined = head.apply_margin(logits, classes, known)
    # sample 1: cos θ_y = 0.6 > th = cos(π − 0.5) = −0.87758 → cos(θ + m)
    #   = 0.6·cos 0.5 − 0.8·sin 0.5 = 0.14300911, · s = 0.57203643
    # sample 2: cos θ_y = −0.96 ≤ th → cos θ − m·sin(π − m) = −0.96 − 0.23971277
    #   = −1.19971277, · s = −4.79885108
    assert torch.allclose(margined, torch.tensor([[0.57203643, 3.2], [1.12, -4.79885108]]),
                          atol=1e-5)
    # CE: softplus(3.2 − 0.57203643) = 2.69769987, softplus(1.12 + 4.79885108) = 5.92153576
    assert head.loss(logits, subjects, torch.tensor([True, True])).item() == pytest.approx(
        (2.69769987 + 5.92153576) / 2, rel=1e-5)
    # a stranger (subject 12: no class) and a masked sample are left out of the loss
    assert head.loss(torch.cat([logits, logits[:1], logits[:1]]), torch.tensor([10, 11, 12, 10]),
                     torch.tensor([True, True, True, False])).item() == pytest.approx(
        (2.69769987 + 5.92153576) / 2, rel=1e-5)


def test_arcface_margin_touches_only_the_true_class():
    torch.manual_seed(0)
    head = IdentityHead(8, 5, margin="arcface")
    assert (head.scale, head.angular_margin) == (64.0, 0.5)   # the published defaults
    logits = head(torch.randn(6, 8))
    classes = torch.tensor([0, 3, 4, 1, 2, 2])
    known = torch.tensor([True, True, True, True, True, False])
    margined = head.apply_margin(logits, classes, known)
    changed = margined != logits
    expected = torch.zeros(6, 5, dtype=torch.bool)
    expected[torch.arange(5), classes[:5]] = True            # the unknown sample untouched
    assert torch.equal(changed, expected)
    # the margin lowers the true class's logit: cos(θ + m) < cos θ for θ in [0, π − m]
    assert torch.all(margined[expected] < logits[expected])


def test_arcface_gradient_reaches_the_features_and_the_weight():
    torch.manual_seed(0)
    head = IdentityHead(8, 5, margin="arcface", scale=16.0)
    head.fit_statistics(torch.arange(5), torch.ones(5, dtype=torch.bool))
    features = torch.randn(4, 8, requires_grad=True)
    loss = head.loss(head(features), torch.tensor([0, 1, 2, 3]), torch.ones(4, dtype=torch.bool))
    loss.backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert torch.isfinite(features.grad).all()
    assert head.linear.weight.grad.abs().sum() > 0 and head.linear.bias is None


def test_arcface_predictions_use_no_margin():
    head = arcface_head(scale=4.0)
    features = torch.tensor([[3.0, 4.0], [1.4, -4.8]])
    expected = torch.softmax(torch.tensor([[2.4, 3.2], [1.12, -3.84]]), dim=1)
    assert torch.allclose(head.predict(head(features)), expected, atol=1e-6)
    # and through a method: predict needs no subject ids
    data = multitask_data()
    method = make_baseline(tasks=["identity"], heads={"identity": {"margin": "arcface"}})
    method.setup(data)
    batch = batch_of(data)
    head = method.heads.heads["identity"]
    method.eval()
    with torch.no_grad():
        logits = head(method.backbone.forward_features(batch["image"]))
    assert torch.allclose(method.predict({"image": batch["image"]})["identity"],
                          torch.softmax(logits, dim=1), atol=1e-6)


def test_arcface_options_are_validated_and_named():
    with pytest.raises(ValueError, match=r"method.heads.identity.margin='cosface': use none or "
                                         r"arcface"):
        TaskHeads(options={"identity": {"margin": "cosface"}})
    with pytest.raises(ValueError, match=r"method.heads.identity.scale=0.0: a value > 0"):
        TaskHeads(options={"identity": {"margin": "arcface", "scale": 0.0}})
    with pytest.raises(ValueError, match=r"method.heads.identity.angular_margin=2.0: radians "
                                         r"in \[0, π/2\)"):
        TaskHeads(options={"identity": {"margin": "arcface", "angular_margin": 2.0}})
    with pytest.raises(ValueError, match=r"method.heads.identity.scale=32: an option of "
                                         r"margin=arcface only"):
        TaskHeads(options={"identity": {"scale": 32}})
    with pytest.raises(ValueError, match=r"method.heads.identity.m is not an option of the "
                                         r"identity head; options: \['weighting', 'margin', "
                                         r"'scale', 'angular_margin'\]"):
        TaskHeads(options={"identity": {"margin": "arcface", "m": 0.5}})


def test_arcface_head_runs_in_float32_under_autocast():
    head = arcface_head(scale=64.0)
    features = torch.tensor([[3.0, 4.0], [1.4, -4.8]])
    with torch.autocast("cpu", dtype=torch.bfloat16):     # a bf16 matmul would be ~0.25 off
        logits = head(features)
    assert logits.dtype == torch.float32
    assert torch.allclose(logits, 64.0 * torch.tensor([[0.6, 0.8], [0.28, -0.96]]), atol=1e-4)
