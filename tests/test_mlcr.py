"""MLCR: closed-form losses, the relation adjacency, the GCN switch, ablation switches, training."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch

from affectlab.config import upgrade_config
from affectlab.losses import (
    binary_entropy,
    co_regularization_loss,
    multi_view_loss,
    selective_learning_weights,
)
from affectlab.methods.mlcr import MLCR, dependency_adjacency, normalize_adjacency
from affectlab.models.small_cnn import SmallCNN
from affectlab.train import run

from .conftest import run_interrupted, same_final_weights
from .test_methods import table_data

# Labels of the hand-computed adjacency example (rows: samples, columns: AU0, AU1, AU2).
LABELS = torch.tensor([[1.0, 1.0, 0.0],
                       [1.0, 1.0, 0.0],
                       [0.0, 0.0, 1.0],
                       [1.0, 0.0, 1.0]])


def make_mlcr(seed: int = 0, labels: torch.Tensor = LABELS, **kwargs) -> MLCR:
    torch.manual_seed(seed)
    kwargs.setdefault("step_two_start", 0)
    method = MLCR(model=functools.partial(SmallCNN, widths=[4, 8]), **kwargs)
    au = labels.numpy()
    method.setup(table_data(au, np.ones_like(au, dtype=bool)))
    return method


def make_batch(n: int = 4, c: int = 3, seed: int = 0, unlabeled_seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {"image": torch.rand(n, 3, 16, 16, generator=g),
             "au": (torch.rand(n, c, generator=g) > 0.5).float(),
             "au_mask": torch.ones(n, c, dtype=torch.bool)}
    gu = torch.Generator().manual_seed(unlabeled_seed)
    batch["unlabeled"] = {"image": torch.rand(n, 3, 16, 16, generator=gu)}
    return batch


# ---------------------------------------------------------------------------- L_mv
def test_multi_view_loss_closed_forms():
    w = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    orthogonal = torch.tensor([[2.0, -1.0, 0.0], [0.0, 7.0, 0.0]])  # row-wise ⟂ to w
    assert multi_view_loss(w, w).item() == pytest.approx(1.0)
    assert multi_view_loss(w, -w).item() == pytest.approx(1.0)
    assert multi_view_loss(w, 3 * w).item() == pytest.approx(1.0)  # scale-free
    assert multi_view_loss(w, orthogonal).item() == pytest.approx(0.0, abs=1e-7)
    assert multi_view_loss(w, -w, absolute=False).item() == pytest.approx(-1.0)
    assert multi_view_loss(w, w, absolute=False).item() == pytest.approx(1.0)
    # mean over labels: one identical row (1) and one orthogonal row (0) → 0.5
    mixed = torch.stack([w[0], orthogonal[1]])
    assert multi_view_loss(w, mixed).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="multi_view_loss"):
        multi_view_loss(w, w[:, :2])


def test_include_bias_changes_the_multi_view_term_in_a_worked_example():
    # view 1: w = e_0, b = 1;  view 2: w = e_1, b = 1 (for every label)
    #   without bias: cos(e_0, e_1) = 0
    #   with bias:    [1,0,…,1]·[0,1,…,1] / (√2 · √2) = 1/2
    values = {}
    for include_bias in (True, False):
        method = make_mlcr(include_bias=include_bias, gcn=False)
        with torch.no_grad():
            for head, axis in zip(method.heads, (0, 1)):
                head.weight.zero_()
                head.weight[:, axis] = 1.0
                head.bias.fill_(1.0)
        values[include_bias] = method(make_batch())["multi_view"].item()
    assert values[True] == pytest.approx(0.5)
    assert values[False] == pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------------------- L_cr
def test_co_regularization_is_zero_for_identical_predictions():
    p = torch.tensor([[0.0, 0.3, 1.0], [0.5, 0.99, 0.01]])
    assert co_regularization_loss(p, p).item() == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(binary_entropy(p)).all()


def test_co_regularization_worked_example_and_mask():
    # Entry (0, 0): p1 = p2 = 0.5 → H(0.5) − H(0.5) = 0.
    # Entry (0, 1): p1 = 0.9, p2 = 0.1 → mean 0.5, H(0.5) = ln 2 = 0.6931472;
    #   H(0.9) = H(0.1) = −(0.9 ln 0.9 + 0.1 ln 0.1) = 0.0948245 + 0.2302585 = 0.3250830
    #   JS = 0.6931472 − 0.3250830 = 0.3680642.
    # L_cr = (0 + 0.3680642) / 2 = 0.1840321.
    p1 = torch.tensor([[0.5, 0.9]])
    p2 = torch.tensor([[0.5, 0.1]])
    entry = math.log(2) + (0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert entry == pytest.approx(0.3680642, abs=1e-7)
    assert co_regularization_loss(p1, p2).item() == pytest.approx(entry / 2, rel=1e-5)
    # masking: only the selected entries count, averaged over themselves
    assert co_regularization_loss(p1, p2, torch.tensor([[False, True]])).item() == \
        pytest.approx(entry, rel=1e-5)
    assert co_regularization_loss(p1, p2, torch.tensor([[True, False]])).item() == \
        pytest.approx(0.0, abs=1e-7)
    assert co_regularization_loss(p1, p2, torch.zeros(1, 2, dtype=torch.bool)).item() == 0.0
    # symmetric, bounded by ln 2
    assert co_regularization_loss(p2, p1).item() == pytest.approx(entry / 2, rel=1e-5)
    extreme = co_regularization_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]])).item()
    assert 0.69 < extreme <= math.log(2) + 1e-6


# ------------------------------------------------------------------------ adjacency
def test_dependency_adjacency_hand_computed():
    # Â[i, j] = |(½(P(L_i=1|L_j=1) + P(L_i=0|L_j=0)) − 0.5) · 2|, LABELS rows:
    #   AU0: 1 1 0 1   AU1: 1 1 0 0   AU2: 0 0 1 1
    # [0,1]: P(L0=1|L1=1) = 2/2, P(L0=0|L1=0) = 1/2 → P = 3/4 → Â = 1/2
    # [1,0]: P(L1=1|L0=1) = 2/3, P(L1=0|L0=0) = 1/1 → P = 5/6 → Â = 2/3
    # [0,2]: P(L0=1|L2=1) = 1/2, P(L0=0|L2=0) = 0/2 → P = 1/4 → Â = 1/2
    # [2,0]: P(L2=1|L0=1) = 1/3, P(L2=0|L0=0) = 0/1 → P = 1/6 → Â = 2/3
    # [1,2]: P(L1=1|L2=1) = 0/2, P(L1=0|L2=0) = 0/2 → P = 0 → Â = 1 (anti-correlated)
    # [2,1]: P(L2=1|L1=1) = 0/2, P(L2=0|L1=0) = 0/2 → P = 0 → Â = 1
    expected = torch.tensor([[1.0, 1 / 2, 1 / 2],
                             [2 / 3, 1.0, 1.0],
                             [2 / 3, 1.0, 1.0]])
    got = dependency_adjacency(LABELS)
    assert got.dtype == torch.float32 and got.shape == (3, 3)
    assert torch.allclose(got, expected, atol=1e-6)


def test_dependency_adjacency_honours_the_mask():
    # Hiding AU0 of the last row leaves rows 0-2 for every pair with AU0:
    #   AU0: 1 1 0 ?   AU1: 1 1 0 0   AU2: 0 0 1 1
    # [0,1]: P(L0=1|L1=1) = 2/2, P(L0=0|L1=0) = 1/1 (row 2) → P = 1 → Â = 1
    # [1,0]: P(L1=1|L0=1) = 2/2, P(L1=0|L0=0) = 1/1 → Â = 1
    # [0,2]: P(L0=1|L2=1) = 0/1, P(L0=0|L2=0) = 0/2 → P = 0 → Â = 1; [2,0] likewise
    # [1,2], [2,1] use all four rows: 1 as before.  The hidden label's value is irrelevant.
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[3, 0] = False
    assert torch.allclose(dependency_adjacency(LABELS, mask), torch.ones(3, 3))
    flipped = LABELS.clone()
    flipped[3, 0] = 0.0
    assert torch.equal(dependency_adjacency(flipped, mask), dependency_adjacency(LABELS, mask))


def test_dependency_adjacency_without_evidence_is_zero_off_the_diagonal():
    # AU1 is never positive: P(L0=1|L1=1) cannot be counted → Â[0,1] = 0;
    # Â[1,0]: P(L1=1|L0=1) = 0, P(L1=0|L0=0) = 1 → P = 1/2 → 0.
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert torch.equal(dependency_adjacency(labels), torch.eye(2))


def test_normalize_adjacency_is_the_released_transposed_form():
    # Â = [[1, .5], [0, 1]], row sums (1.5, 1): D^-½ Âᵀ D^-½ = [[1/1.5, 0], [.5/√1.5, 1]]
    a = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    expected = torch.tensor([[1 / 1.5, 0.0], [0.5 / math.sqrt(1.5), 1.0]])
    assert torch.allclose(normalize_adjacency(a), expected)


# ------------------------------------------------------------------ supervised term
def test_selective_learning_undersamples_negatives_only():
    # column 0: 1 positive of 10 (under-represented for a = 0.2: 1 < 2)
    #   released: keep ceil(10 · 0.2) = 2 negatives; ratio: keep ceil(1 · 0.8 / 0.2) = 4
    # column 1: 5 positives of 10 (not under-represented): all 10 kept
    # column 2: row 0 unknown → weight 0 there; 9 valid negatives, no positive:
    #   released: keep ceil(9 · 0.2) = 2; ratio: keep ceil(max(0, 1) · 0.8 / 0.2) = 4
    targets = torch.zeros(10, 3)
    targets[0, 0] = 1.0
    targets[:5, 1] = 1.0
    mask = torch.ones(10, 3, dtype=torch.bool)
    mask[0, 2] = False
    ratio = torch.tensor([0.2, 0.2, 0.2])
    for rule, kept_negatives in (("released", 2), ("ratio", 4)):
        w = selective_learning_weights(targets, mask, ratio, rule=rule,
                                       generator=torch.Generator().manual_seed(0))
        assert w[0, 0] == 1.0  # the positive is kept, weight exactly 1 (never up-weighted)
        assert w[1:, 0].sum().item() == kept_negatives
        assert w[:, 1].sum().item() == 10
        assert w[0, 2] == 0.0 and w[1:, 2].sum().item() == kept_negatives
        assert set(w.unique().tolist()) <= {0.0, 1.0}


def test_supervised_weightings_differ_and_ignore_masked_labels():
    b = make_batch()
    # AU0 has 1 positive of 4 (< 4 · 0.5): selective learning drops one of its 3 negatives
    b["au"] = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 1, 1], [0, 0, 0]])
    losses = {w: make_mlcr(supervised_weighting=w, gcn=False)(b)["supervised"].item()
              for w in ("frequency", "selective", "none")}
    assert len({round(v, 6) for v in losses.values()}) == 3
    method = make_mlcr(gcn=False)
    b["au_mask"][:, 1] = False
    flipped = dict(b, au=b["au"].clone())
    flipped["au"][:, 1] = 1 - flipped["au"][:, 1]
    assert torch.equal(method(b)["supervised"], method(flipped)["supervised"])


# ------------------------------------------------------------------- views and GCN
def test_two_views_start_different_and_prediction_is_their_mean():
    method = make_mlcr()
    a, b = method.views[0].state_dict(), method.views[1].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(method.heads[0].weight, method.heads[1].weight)
    method.eval()
    images = make_batch()["image"]
    z1, z2 = method.view_logits(images)
    expected = (torch.sigmoid(z1) + torch.sigmoid(z2)) / 2
    assert torch.allclose(method.predict({"image": images})["au"], expected)


def test_switching_the_gcn_on_keeps_the_step_one_classifiers():
    method = make_mlcr(step_two_start=3)
    method.eval()
    images = make_batch()["image"]
    assert not method.gcn_active
    before = method.predict({"image": images})["au"]
    method.after_optimizer_step(2)  # 3 steps done → step two
    assert method.gcn_active
    assert torch.allclose(method.predict({"image": images})["au"], before, atol=1e-6)
    # the paper's non-residual form smooths the classifiers along the graph instead
    paper = make_mlcr(gcn_residual=False)
    raw = torch.cat([paper.heads[0].weight, paper.heads[0].bias[:, None]], 1)
    assert not torch.allclose(paper.classifier_vectors()[0], raw)


def test_gradients_reach_both_views_and_the_gcn():
    method = make_mlcr(step_two_start=0)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.01)
    for step in range(2):  # H1 starts at 0, so H0 gets its gradient from the second step on
        optimizer.zero_grad()
        method(make_batch(seed=step))["loss"].backward()
        optimizer.step()
        method.after_optimizer_step(step)
    for name, param in method.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert {"gcn.h0", "gcn.h1"} <= {n for n, _ in method.named_parameters()}
    # frozen input (the released snapshot): the GCN learns, the raw classifiers get no gradient
    frozen = make_mlcr(gcn_input="frozen")
    frozen(make_batch())["loss"].backward()
    assert frozen.heads[0].weight.grad is None and frozen.gcn.h1.grad.abs().sum() > 0
    assert frozen.views[1].body[0].weight.grad.abs().sum() > 0


def test_step_two_state_is_checkpointed():
    method = make_mlcr(step_two_start=5)
    method.after_optimizer_step(6)
    fresh = make_mlcr(seed=1, step_two_start=5)
    assert not fresh.gcn_active
    fresh.load_state_dict(method.state_dict())
    assert fresh.steps_done == 7 and fresh.gcn_active
    assert torch.equal(fresh.adjacency, dependency_adjacency(LABELS))
    assert "adjacency" in method.state_dict() and "gcn.adjacency" in method.state_dict()


def test_lambda_cr_step_two_replaces_lambda_cr_from_the_switch():
    method = make_mlcr(step_two_start=1, lambda_cr_step_two=500.0, gcn=False)
    assert method.current_lambda_cr == 100.0
    method.after_optimizer_step(0)
    assert method.current_lambda_cr == 500.0
    t = method.terms(make_batch())
    expected = t["supervised"] + 400 * t["multi_view"] + 500 * t["co_regularization"]
    assert torch.allclose(t["loss"], expected)


# ----------------------------------------------------------------- ablation switches
def test_lambdas_weight_exactly_their_terms():
    b = make_batch()
    full = make_mlcr().terms(b)
    assert full["multi_view"] > 0 and full["co_regularization"] > 0
    assert torch.allclose(full["loss"], full["supervised"] + 400 * full["multi_view"]
                          + 100 * full["co_regularization"])
    no_mv = make_mlcr(lambda_mv=0.0).terms(b)
    no_cr = make_mlcr(lambda_cr=0.0).terms(b)
    for key in ("supervised", "multi_view", "co_regularization"):  # same terms, same seed
        assert torch.equal(no_mv[key], full[key]) and torch.equal(no_cr[key], full[key])
    assert torch.equal(no_mv["loss"], full["supervised"] + 100 * full["co_regularization"])
    assert torch.equal(no_cr["loss"], full["supervised"] + 400 * full["multi_view"])
    both_off = make_mlcr(lambda_mv=0.0, lambda_cr=0.0).terms(b)
    assert torch.equal(both_off["loss"], full["supervised"])


def test_multi_view_term_uses_the_vectors_that_produce_the_logits():
    # After the switch, L_mv compares the GCN outputs, not the raw classifiers (released defect).
    method = make_mlcr(step_two_start=0, gcn_init="random")
    vectors = method.classifier_vectors()
    raw = [torch.cat([h.weight, h.bias[:, None]], 1) for h in method.heads]
    got = method(make_batch())["multi_view"]
    assert torch.allclose(got, multi_view_loss(vectors[0], vectors[1]))
    assert not torch.allclose(got, multi_view_loss(raw[0], raw[1]))


def test_gcn_false_creates_and_uses_no_gcn():
    with_gcn = make_mlcr(step_two_start=1)
    without = make_mlcr(step_two_start=1, gcn=False)
    assert without.gcn is None
    assert not any("gcn" in name for name in without.state_dict() if name != "_extra_state")
    assert any("gcn" in name for name in with_gcn.state_dict())
    b = make_batch()
    # step one: the same networks, the same loss
    assert torch.equal(with_gcn(b)["loss"], without(b)["loss"])
    for m in (with_gcn, without):
        m.after_optimizer_step(0)
    raw = [torch.cat([h.weight, h.bias[:, None]], 1) for h in without.heads]
    assert all(torch.equal(v, r) for v, r in zip(without.classifier_vectors(), raw))
    assert with_gcn.gcn_active and not without.gcn_active
    assert torch.equal(without(b)["loss"], without.terms(b)["loss"].detach())


def test_unlabeled_false_ignores_the_pool_batch():
    method = make_mlcr(unlabeled=False)
    assert method.needs_unlabeled is False
    assert make_mlcr().needs_unlabeled is True
    b = make_batch()
    poisoned = dict(b, unlabeled={"image": torch.full_like(b["unlabeled"]["image"], float("nan"))})
    without = {k: v for k, v in b.items() if k != "unlabeled"}
    assert torch.equal(method(poisoned)["loss"], method(without)["loss"])
    assert torch.isfinite(method(poisoned)["co_regularization"])
    # with the pool on, the same poisoned batch reaches the loss
    assert not torch.isfinite(make_mlcr()(poisoned)["loss"])
    with pytest.raises(KeyError, match="unlabeled"):
        make_mlcr()(without)


def test_co_regularization_on_unlabelled_data_moves_the_weights():
    """Only the unlabelled images differ: L_cr is non-zero and the update differs with it.

    Batch norm in eval mode (running statistics), so labelled features do not depend on the
    unlabelled images through batch statistics: any difference comes from L_cr alone.
    """
    def updated(lambda_cr: float, unlabeled_seed: int) -> tuple[torch.Tensor, dict]:
        method = make_mlcr(lambda_cr=lambda_cr, gcn=False)
        method.eval()
        optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
        terms = method.terms(make_batch(unlabeled_seed=unlabeled_seed))
        terms["loss"].backward()
        optimizer.step()
        return torch.cat([p.detach().flatten() for p in method.parameters()]), terms

    a, terms_a = updated(100.0, unlabeled_seed=1)
    b, terms_b = updated(100.0, unlabeled_seed=2)
    assert terms_a["co_regularization"] > 1e-6 and terms_b["co_regularization"] > 1e-6
    assert torch.equal(terms_a["supervised"], terms_b["supervised"])
    assert not torch.equal(terms_a["co_regularization"], terms_b["co_regularization"])
    assert (a - b).abs().max() > 1e-6
    # without L_cr, the unlabelled images have no effect at all
    c, _ = updated(0.0, unlabeled_seed=1)
    d, _ = updated(0.0, unlabeled_seed=2)
    assert torch.equal(c, d)
    # and L_cr alone sends gradients into both backbones
    method = make_mlcr(gcn=False)
    method.terms(make_batch())["co_regularization"].backward()
    for view in method.views:
        assert view.body[0].weight.grad.abs().sum() > 0


def test_lambda_cr_ramp_up_follows_the_exponential_schedule():
    method = make_mlcr(lambda_cr_rampup_steps=10, gcn=False)
    assert method.current_lambda_cr == pytest.approx(100 * math.exp(-5))  # t = 0
    method.after_optimizer_step(4)  # t = 5 = T/2: exp(−5 · 0.25)
    assert method.current_lambda_cr == pytest.approx(100 * math.exp(-1.25))
    t = method.terms(make_batch())
    assert torch.allclose(t["loss"], t["supervised"] + 400 * t["multi_view"]
                          + 100 * math.exp(-1.25) * t["co_regularization"])
    method.after_optimizer_step(9)  # t = T: full weight
    assert method.current_lambda_cr == 100.0
    assert make_mlcr(gcn=False).current_lambda_cr == 100.0  # no ramp by default


def test_independent_view_augmentation_feeds_each_view_its_own_copy():
    shared = make_mlcr(gcn=False)
    independent = make_mlcr(gcn=False, view_augmentation="independent")
    assert shared.augmented_views == 1 and independent.augmented_views == 2
    b = make_batch()
    g = torch.Generator().manual_seed(5)
    other = torch.rand(b["image"].shape, generator=g)
    other_pool = torch.rand(b["unlabeled"]["image"].shape, generator=g)
    # copies equal to the shared image: exactly the shared-augmentation loss
    same = dict(b, image_views=torch.stack([b["image"], b["image"]]),
                unlabeled={"image": b["unlabeled"]["image"],
                           "image_views": torch.stack([b["unlabeled"]["image"]] * 2)})
    assert torch.equal(independent(same)["loss"], shared(b)["loss"])
    # view 2 sees the second copy (labelled and pool), view 1 the first
    differ = dict(b, image_views=torch.stack([b["image"], other]),
                  unlabeled={"image": b["unlabeled"]["image"],
                             "image_views": torch.stack([b["unlabeled"]["image"], other_pool])})
    logits = independent.view_logits([torch.cat([b["image"], b["unlabeled"]["image"]]),
                                      torch.cat([other, other_pool])])
    probs = [torch.sigmoid(z) for z in logits]
    got = independent(differ)
    assert torch.allclose(got["co_regularization"], co_regularization_loss(*probs))
    assert not torch.allclose(got["co_regularization"], shared(b)["co_regularization"])
    with pytest.raises(KeyError, match="image_views"):
        independent(b)


def test_rejects_unknown_options():
    for kwargs in ({"supervised_weighting": "balanced"}, {"gcn_input": "copy"},
                   {"selective_ratio": 1.5}, {"step_two_start": -1},
                   {"view_augmentation": "twice"}, {"lambda_cr_rampup_steps": -1}):
        with pytest.raises(ValueError):
            make_mlcr(**kwargs)
    with pytest.raises(ValueError, match="selective_ratio"):
        make_mlcr(selective_ratio=[0.2, 0.3])  # 2 values for 3 labels


def test_the_one_task_comes_from_method_tasks():
    assert make_mlcr().task == "au"
    assert make_mlcr(tasks=["au"]).task == "au"
    for tasks in (["au", "expr"], ["va"], []):
        with pytest.raises(ValueError, match="one multi-label task"):
            make_mlcr(tasks=tasks)
    with pytest.raises(ValueError, match=r"has no 'attr' labels .* set method.tasks"):
        make_mlcr(tasks=["attr"])                          # the table data has AUs only


def test_configs_saved_with_the_older_task_key_read_as_tasks():
    old = {"method": {"_target_": "affectlab.methods.mlcr.MLCR", "task": "attr", "gcn": True},
           "dataset": {"_target_": "x.Y", "task": "kept"}}
    assert upgrade_config(old) == {
        "method": {"_target_": "affectlab.methods.mlcr.MLCR", "gcn": True, "tasks": ["attr"]},
        "dataset": {"_target_": "x.Y", "task": "kept"}}
    both = {"_target_": "affectlab.methods.mlcr.MLCR", "task": "au", "tasks": ["attr"]}
    assert upgrade_config(both) == both                    # a new key is never overwritten


# -------------------------------------------------------------------------- end to end
def test_tiny_mlcr_run_writes_au_f1(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    metrics = run(tiny_cfg("method=mlcr", "trainer.max_steps=3", "method.step_two_start=2",
                           "method.supervised_weighting=selective"), run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["method"] == "mlcr" and saved["steps"] == 3
    au = saved["tasks"]["au"]
    assert len(au["f1"]) == 12 and 0.0 <= au["f1_mean"] <= 1.0
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*events)
    assert {"train/loss", "train/supervised", "train/multi_view",
            "train/co_regularization"} <= keys
    last = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)["method"]
    assert int(last["_extra_state"]) == 3 and "gcn.h0" in last
    assert metrics["tasks"] == saved["tasks"]


def test_trainer_draws_independent_copies_for_each_view(tiny_cfg, tmp_path, monkeypatch):
    seen: list[dict] = []
    original = MLCR.terms

    def spy(self, batch):
        seen.append({"labelled": batch["image_views"].clone(), "image": batch["image"].clone(),
                     "pool": batch["unlabeled"]["image_views"].clone()})
        return original(self, batch)

    monkeypatch.setattr(MLCR, "terms", spy)
    run(tiny_cfg("method=mlcr", "trainer.max_steps=2", "method.view_augmentation=independent",
                 "trainer.batch_size=4"), tmp_path / "run")
    assert len(seen) == 2
    for views in seen:
        assert views["labelled"].shape[:2] == (2, 4) and views["pool"].shape[0] == 2
        assert torch.equal(views["image"], views["labelled"][0])
        assert not torch.allclose(views["labelled"][0], views["labelled"][1])
        assert not torch.allclose(views["pool"][0], views["pool"][1])


@pytest.mark.parametrize("view_augmentation", ["shared", "independent"])
def test_interrupted_and_resumed_mlcr_run_ends_like_an_uninterrupted_one(tiny_cfg, tmp_path,
                                                                           monkeypatch,
                                                                           view_augmentation):
    # 2 epochs × 6 steps; Ctrl-C in the 7th forward stops after global step 7. Step two starts
    # at step 7, so the first resumed step only turns the GCN on if the step count was restored.
    overrides = ["method=mlcr", "trainer.max_epochs=2", "trainer.batch_size=4",
                 "method.step_two_start=7", "trainer.eval_every_epochs=2",
                 f"method.view_augmentation={view_augmentation}"]
    reference = run(tiny_cfg(*overrides), tmp_path / "full")

    last = run_interrupted(tiny_cfg(*overrides), tmp_path / "interrupted", 7, monkeypatch)
    assert last["global_step"] == 7 and int(last["method"]["_extra_state"]) == 7

    resume = tmp_path / "interrupted/checkpoints/last.pt"
    resumed = run(tiny_cfg(*overrides, f"trainer.resume={resume}"), tmp_path / "resumed")
    assert resumed["tasks"] == reference["tasks"] and resumed["steps"] == reference["steps"]
    assert same_final_weights(tmp_path / "full", tmp_path / "resumed")
