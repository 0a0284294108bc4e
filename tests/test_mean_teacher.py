"""Mean teacher and pseudo-labelling (methods/mean_teacher.py): the EMA against hand
computations, the teacher outside the graph, the consistency term's value and its gradient,
the buffer rule, partial-label masking, the weights-loaded hook, the bad-input messages and a
run through the real trainer. (Exact resume and ``load_run`` without data: the method
contract test covers both methods.)"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from affectlab.build import build_data, build_method
from affectlab.losses import masked_kl_divergence, masked_sigmoid_mse
from affectlab.methods.diagnostics import label_prior, pool_diagnostics
from affectlab.methods.mean_teacher import MeanTeacher
from affectlab.train import run

from .conftest import compose_config, run_interrupted, same_final_weights


# ------------------------------------------------------------------------------ formulas
def test_sigmoid_mse_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])      # σ: 0.5, 0.75; 0.5, 0.5
    targets = torch.tensor([[1.0, 0.25], [0.5, 0.0]])
    mask = torch.tensor([[True, True], [False, True]])
    # (0.5 − 1)² + (0.75 − 0.25)² + (0.5 − 0)² over 3 entries
    assert masked_sigmoid_mse(logits, targets, mask).item() == pytest.approx(0.75 / 3)
    assert masked_sigmoid_mse(logits, targets, torch.zeros_like(mask)).item() == 0.0


def test_kl_divergence_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    q = torch.tensor([[0.75, 0.25], [0.9, 0.1]])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)   # row 2: KL = 0
    mask = torch.tensor([True, True])
    assert masked_kl_divergence(logits, q, mask).item() == pytest.approx(expected / 2)


def test_pool_diagnostics_by_hand():
    a = torch.tensor([[0.9, 0.2], [0.4, 0.1], [0.6, 0.0]])
    b = torch.tensor([[0.7, 0.6], [0.5, 0.1], [0.2, 0.0]])
    selected = torch.tensor([[True, True], [True, True], [False, True]])
    prior = label_prior(torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]),
                        torch.ones(4, 2, dtype=torch.bool))        # 0.75, 0.25
    out = pool_diagnostics("au", a, b, selected, prior, ["AU1", "AU2"])
    # |a − b| on the 5 selected entries: 0.2, 0.4, 0.1, 0.0, 0.0
    assert out["au_disagreement"].item() == pytest.approx(0.7 / 5)
    # positive rates of b: AU1 1 of 2 selected (0.7, 0.5), AU2 1 of 3 (0.6)
    assert out["au_pool_rate/AU1"].item() == pytest.approx(1.0)
    assert out["au_pool_rate/AU2"].item() == pytest.approx(1 / 3)
    assert out["au_pool_rate"].item() == pytest.approx((1 + 1 / 3) / 2)
    assert out["au_rate_to_prior"].item() == pytest.approx((1 / 0.75 + (1 / 3) / 0.25) / 2)


def test_mlcr_logs_the_same_diagnostics_on_its_pool(tmp_path):
    cfg = compose_config(tmp_path / "synthetic", ["method=mlcr"])
    data, method = built(cfg)
    terms = method.terms(a_batch(data, method))
    assert {"au_disagreement", "au_pool_rate", "au_rate_to_prior", "au_pool_rate/AU1"} <= set(terms)
    assert torch.allclose(method.label_prior, label_prior(
        torch.from_numpy(data.train.table.au), torch.from_numpy(data.train.table.au_mask)))


# ----------------------------------------------------------------------------- the method
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt") / "synthetic"
    return lambda *o: compose_config(root, ["method=mean_teacher", *o])


def built(cfg):
    data, method = build_data(cfg), build_method(cfg)
    method.prepare(data)
    return data, method


def a_batch(data, method, size: int = 4):
    batch = data.transform(next(iter(torch.utils.data.DataLoader(data.train, batch_size=size))),
                           train=True, views=method.augmented_views)
    if method.needs_unlabeled:
        pool = next(iter(torch.utils.data.DataLoader(data.unlabeled, batch_size=size)))
        batch["unlabeled"] = data.transform(pool, train=True, views=method.augmented_views)
    return batch


def student_teacher(method: MeanTeacher):
    student = [*method.backbone.parameters(), *method.heads.parameters()]
    teacher = [*method.teacher["backbone"].parameters(), *method.teacher["heads"].parameters()]
    return student, teacher


def test_ema_two_steps_by_hand_with_warm_up(tiny):
    _, method = built(tiny("method.ema_decay=0.5"))
    assert [method.ema_rate(t) for t in (1, 2, 3, 10)] == [0.5, 0.5, 0.5, 0.5]
    _, fast = built(tiny("method.ema_decay=0.99"))
    assert [fast.ema_rate(t) for t in (1, 2, 3)] == pytest.approx([1 / 2, 2 / 3, 3 / 4])
    assert fast.ema_rate(1000) == 0.99
    student, teacher = student_teacher(method)
    start = [t.detach().clone() for t in teacher]
    with torch.no_grad():
        values = []
        for shift in (1.0, 3.0):                 # two optimizer steps move the student
            for p in student:
                p.add_(shift)
            values.append([p.detach().clone() for p in student])
            method.after_optimizer_step(len(values) - 1)
    for t, t0, s1, s2 in zip(teacher, start, *values):
        # θ′₁ = ½ θ′₀ + ½ θ₁;  θ′₂ = ½ θ′₁ + ½ θ₂
        expected = 0.5 * (0.5 * t0 + 0.5 * s1) + 0.5 * s2
        assert torch.allclose(t, expected, atol=1e-6)
    assert int(method.step) == 2


def test_the_teacher_gets_no_gradient_and_the_consistency_reaches_the_student(tiny):
    data, method = built(tiny("method.consistency_weight=1.0"))
    batch = a_batch(data, method)
    terms = method.terms(batch)
    assert all(not p.requires_grad for p in method.teacher.parameters())
    assert terms["consistency"].item() > 0          # two different views, one network
    terms["consistency"].backward()
    student, teacher = student_teacher(method)
    assert all(p.grad is None for p in teacher)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.backbone.parameters())


def test_consistency_is_zero_when_student_and_teacher_agree(tiny):
    """Soft forms (the expression's hard label is a cross-entropy: its minimum is not 0)."""
    data, method = built(tiny("method.consistency.expr=kl"))
    batch = a_batch(data, method)
    for key in [k for k in batch if k.endswith("_views")]:      # one view for both
        batch[key] = batch[key][:1].expand(2, *batch[key].shape[1:])
    for key in [k for k in batch["unlabeled"] if k.endswith("_views")]:
        batch["unlabeled"][key] = batch["unlabeled"][key][:1].expand(
            2, *batch["unlabeled"][key].shape[1:])
    method.eval()    # the student's BatchNorm as the teacher's: same function, same input
    assert method.terms(batch)["consistency"].item() == pytest.approx(0.0, abs=1e-6)


def test_only_the_consistency_term_moves_the_student(tiny):
    """Supervised weight 0: the weights still change, through L_c alone."""
    data, method = built(tiny("method.consistency_weight=1.0", "method.loss_weights={au: 0.0}"))
    batch = a_batch(data, method)
    before = copy.deepcopy(method.backbone.state_dict())
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1.0)
    terms = method(batch)
    assert terms["au"].item() > 0 and terms["consistency"].item() > 0
    terms["loss"].backward()
    optimizer.step()
    moved = [k for k, v in method.backbone.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved


@pytest.mark.parametrize("rule", ["ema", "copy"])
def test_teacher_buffers_follow_the_documented_rule(tiny, rule):
    _, method = built(tiny(f"method.buffers={rule}", "method.ema_decay=0.5"))
    student_bn = [m for m in method.backbone.modules() if isinstance(m, nn.BatchNorm2d)][0]
    teacher_bn = [m for m in method.teacher["backbone"].modules()
                  if isinstance(m, nn.BatchNorm2d)][0]
    old = teacher_bn.running_mean.clone()
    with torch.no_grad():
        student_bn.running_mean.add_(2.0)
        student_bn.num_batches_tracked.fill_(7)
    method.after_optimizer_step(0)
    expected = (0.5 * old + 0.5 * student_bn.running_mean) if rule == "ema" else \
        student_bn.running_mean
    assert torch.allclose(teacher_bn.running_mean, expected)
    assert int(teacher_bn.num_batches_tracked) == 7           # counters are copied


def test_the_teacher_predicts_in_evaluation_mode(tiny):
    _, method = built(tiny())
    method.train()
    assert method.backbone.training and not method.teacher.training


def test_partial_labels_an_expression_only_face_gets_au_consistency_not_supervision(tiny):
    data, method = built(tiny("method.tasks=[au,expr]", "method.unlabeled=false"))
    batch = a_batch(data, method)
    batch["au_mask"][0] = False                  # face 0 is labelled for expressions only
    batch["expr_mask"][1:] = False               # the others for AUs only
    selected = method._consistency_mask("au", batch, len(batch["index"]))
    assert selected[0].all() and not selected[1:].any()
    # the AU supervised term does not depend on face 0's AU outputs
    student = method.heads(method.backbone.forward_features(*method._inputs(batch, 0)))
    au = student["au"]
    au.retain_grad()
    losses = method.heads.losses(student, batch)
    losses["au"].backward(retain_graph=True)
    assert au.grad[0].abs().sum() == 0 and au.grad[1:].abs().sum() > 0
    # while the AU consistency does reach face 0's outputs
    au.grad = None
    with torch.no_grad():
        teacher = method.teacher["heads"](
            method.teacher["backbone"].forward_features(*method._inputs(batch, 1)))
    method._consistency("au", au, teacher["au"], selected).backward()
    assert au.grad[0].abs().sum() > 0 and au.grad[1:].abs().sum() == 0


def test_pseudo_labels_by_confidence_and_by_prior(tiny):
    _, method = built(tiny("method=pseudo_label", "method.confidence=0.8"))
    probs = torch.tensor([[0.9, 0.5], [0.1, 0.85], [0.3, 0.05]])
    hard, confident = method._pseudo_labels("au", probs)
    assert hard.tolist() == [[1, 0], [0, 1], [0, 0]]
    assert confident.tolist() == [[True, False], [True, True], [False, True]]
    method.pseudo_rule = "prior"
    method.prior_au = torch.full_like(method.prior_au, 1 / 3)
    many = torch.tensor([[0.2] * 12, [0.4] * 12, [0.3] * 12])
    hard, confident = method._pseudo_labels("au", many)
    assert hard[:, 0].tolist() == [0, 1, 0] and confident.all()   # the top third is positive


def test_init_from_restarts_the_teacher_from_the_loaded_student_and_resume_keeps_it(tiny):
    _, method = built(tiny())
    student, teacher = student_teacher(method)
    with torch.no_grad():
        for p in student:
            p.add_(1.0)
    method.on_weights_loaded(source="resume")
    assert not all(torch.equal(s, t) for s, t in zip(student, teacher))
    method.on_weights_loaded(source="init_from")
    assert all(torch.equal(s, t) for s, t in zip(student, teacher))


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("override, message", [
    ("method.ema_decay=1.0", "ema_decay=1.0"),
    ("method.ema_decay=0.0", "ema_decay=0.0"),
    ("method.input_noise=-0.1", "input_noise=-0.1"),
    ("method.confidence=0.4", "confidence=0.4"),
    ("method.buffers=mean", "method.buffers='mean'"),
    ("method.consistency.au=l1", "method.consistency.au=.l1."),
])
def test_bad_options_get_one_message(tiny, override, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace("+", r"\+")):
        build_method(tiny(override))


def test_a_ramp_longer_than_the_run_is_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="consistency_rampup_steps=50 is longer than the run"):
        run(tiny("method.consistency_rampup_steps=50", "trainer.max_steps=3"), tmp_path / "r")


def test_nothing_for_the_consistency_term_is_said(tiny):
    cfg = tiny("method.unlabeled=false", "method.tasks=[expr]")
    data, method = build_data(cfg), build_method(cfg)
    with pytest.raises(ValueError, match="nothing for the consistency term to use"):
        method.prepare(data)


# --------------------------------------------------------------------------- real trainer
@pytest.mark.parametrize("method", ["mean_teacher", "pseudo_label"])
def test_a_tiny_run_logs_consistency_and_diagnostics(tiny, tmp_path, method):
    result = run(tiny(f"method={method}", "method.consistency_rampup_steps=2"), tmp_path / "r")
    logged = (Path(tmp_path) / "r/metrics.jsonl").read_text()
    for key in ("train/consistency", "train/au_disagreement", "train/au_pool_rate",
                "train/au_rate_to_prior", "train/au_pool_rate/AU12", "train/consistency_weight"):
        assert f'"{key}"' in logged, key
    assert result["steps"] > 0 and {"au", "expr", "va"} <= set(result["tasks"])


def test_partial_labels_without_a_pool_train_on_the_missing_tasks(tiny, tmp_path):
    """One task per labelled face and no pool: consistency comes from the missing tasks only."""
    run(tiny("dataset.train_labels=one_task", "method.unlabeled=false"), tmp_path / "r")
    rows = [r for r in map(json.loads,
                           (tmp_path / "r/metrics.jsonl").read_text().splitlines())
            if "train/consistency_au" in r]
    for task in ("au", "expr", "va"):
        assert any(r[f"train/consistency_{task}"] > 0 for r in rows), task


def test_the_teacher_can_see_another_rendering_of_each_pool_face(tiny, tmp_path):
    data, method = built(tiny("dataset.pool_renderings=2", "method.teacher_view=rendering"))
    batch = a_batch(data, method)
    pool = batch["unlabeled"]
    assert "image_alt_views" in pool
    labelled = len(batch["index"])
    teacher_input = method._inputs(batch, 1)[0]
    assert torch.equal(teacher_input[:labelled], batch["image_views"][1])
    assert torch.equal(teacher_input[labelled:], pool["image_alt_views"][1])
    assert torch.equal(method._inputs(batch, 0)[0][labelled:], pool["image_views"][0])
    run(tiny("dataset.pool_renderings=2", "method.teacher_view=rendering"), tmp_path / "r")
    # without the renderings: one message saying what to set
    _, plain = built(tiny("method.teacher_view=rendering"))
    with pytest.raises(KeyError, match="dataset.pool_renderings=2"):
        plain.terms(a_batch(*built(tiny())))


def test_a_checkpoint_that_saved_the_label_priors_still_loads(tiny):
    _, method = built(tiny())
    state = {**method.state_dict(), "prior_au": torch.full((12,), 0.3)}
    method.load_state_dict(state)          # strict: the saved prior is dropped, not refused
    assert "prior_au" not in method.state_dict() and not torch.equal(method.prior_au,
                                                                     torch.full((12,), 0.3))


def test_evaluate_reports_the_student_or_the_teacher_of_a_run(tiny, tmp_path):
    from hydra import compose, initialize_config_dir

    from affectlab.build import CONFIG_DIR
    from affectlab.evaluate import evaluate

    run(tiny("method.tasks=[au]"), tmp_path / "r")

    def evaluated(*overrides):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("evaluate", overrides=[f"runs=[{tmp_path / 'r'}]", *overrides])
        return evaluate(cfg, tmp_path / f"eval_{len(overrides)}_{overrides[-1][-7:]}")

    default = evaluated("thresholds=none")
    teacher = evaluated("thresholds=none", "network=teacher")
    student = evaluated("thresholds=none", "network=student")
    assert default["tasks"] == teacher["tasks"] and student["network"] == "student"
    assert student["tasks"]["au"]["ap_mean"] != teacher["tasks"]["au"]["ap_mean"]
    with pytest.raises(ValueError, match=r"network='ema': MeanTeacher predicts with \['teacher'"):
        evaluated("network=ema")


def test_a_one_network_method_says_so_when_asked_for_another(tiny):
    _, baseline = built(tiny("method=baseline"))
    with pytest.raises(ValueError, match="Baseline predicts with one network"):
        baseline.use_network("student")


def test_weak_to_strong_pseudo_labels_augment_the_students_pool_view_more(tiny, tmp_path,
                                                                         monkeypatch):
    from affectlab.data.transforms import InputTransform

    _, method = built(tiny("method=pseudo_label", "method.student_strength=3.0"))
    assert method.pool_view_strengths == (3.0, 1.0)
    _, plain = built(tiny("method=pseudo_label"))
    assert plain.pool_view_strengths is None
    asked, call = [], InputTransform.__call__

    def recording(self, batch, **kwargs):
        asked.append((bool(batch["labeled"].any()), kwargs.get("strengths")))
        return call(self, batch, **kwargs)

    monkeypatch.setattr(InputTransform, "__call__", recording)
    run(tiny("method=pseudo_label", "method.student_strength=3.0"), tmp_path / "r")
    # the trainer asks for the strong view on pool batches only
    assert (False, (3.0, 1.0)) in asked and (True, (3.0, 1.0)) not in asked
    with pytest.raises(Exception, match="method.student_strength=0.0"):
        build_method(tiny("method.student_strength=0.0"))


def test_distribution_alignment_by_hand(tiny):
    _, method = built(tiny("method.align_to_prior=true", "method.tasks=[au]"))
    method.prior_au = torch.full_like(method.prior_au, 0.2)
    selected = torch.ones(2, 12, dtype=torch.bool)
    zeros = torch.zeros(2, 12)
    aligned = method._aligned("au", zeros, torch.sigmoid(zeros), selected)
    # the first batch sets the running rate (0.5): targets shift to the prior exactly
    assert torch.allclose(method.target_rate_au, torch.full((12,), 0.5))
    assert torch.allclose(aligned, torch.full((2, 12), 0.2), atol=1e-6)
    logit = math.log(0.9 / 0.1)
    high = torch.full((2, 12), logit)
    aligned = method._aligned("au", high, torch.sigmoid(high), selected)
    rate = 0.99 * 0.5 + 0.01 * 0.9
    expected = 1 / (1 + math.exp(-(logit + math.log(0.2 / 0.8) - math.log(rate / (1 - rate)))))
    assert torch.allclose(method.target_rate_au, torch.full((12,), rate), atol=1e-6)
    assert torch.allclose(aligned, torch.full((2, 12), expected), atol=1e-5)
    method.eval()                                   # evaluation never moves the running rate
    method._aligned("au", zeros, torch.sigmoid(zeros), selected)
    assert torch.allclose(method.target_rate_au, torch.full((12,), rate), atol=1e-6)
    assert "target_rate_au" in method.state_dict()  # saved: a resume continues it exactly


def test_alignment_and_weak_to_strong_resume_exactly(tiny, tmp_path, monkeypatch):
    options = ("method=pseudo_label", "method.align_to_prior=true", "method.student_strength=2.0",
               "trainer.max_steps=4", "trainer.max_epochs=4")
    run(tiny(*options), tmp_path / "full")
    run_interrupted(tiny(*options), tmp_path / "stopped", 2, monkeypatch)
    run(tiny(*options, f"trainer.resume={tmp_path / 'stopped/checkpoints/last.pt'}"),
        tmp_path / "resumed")
    assert same_final_weights(tmp_path / "full", tmp_path / "resumed")
