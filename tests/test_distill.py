"""Teacher → student distillation (methods/distill.py, Deng et al. 2020): the distillation
losses against hand computations, the per-sample weighting of Eq. 7, the ground truth masked
by task, the teacher outside the student's graph and checkpoint, cached against online teacher
outputs, the teacher's checks, ``seed_offset``, and a tiny teacher → 2 students → ensemble
recipe. (Exact resume, ``load_run`` without data and the distillation term's gradient: the
method contract test.)"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import affectlab
from affectlab.build import build_data, build_method, run_seed
from affectlab.losses import (
    binary_distillation_kl,
    distillation_kl,
    masked_ccc_loss,
    va_bin_indices,
    weighted_squared_distance,
)
from affectlab.methods.heads import ValenceArousalHead
from affectlab.recipe import Runner
from affectlab.train import run

from .conftest import TINY_DATA, TINY_MODEL, TINY_TRAINER, compose_config

PARTIAL = ["dataset.train_labels=one_task", "trainer.max_steps=3"]


# ------------------------------------------------------------------------------ formulas
def test_softmax_distillation_by_hand():
    teacher = torch.log(torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    student = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    weights = torch.tensor([0.4, 1.0])
    # T = 1: row 1 KL(q ‖ p) = 0.75 ln 1.5 + 0.25 ln 0.5; row 2: 0; mean over N = 2
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert distillation_kl(student, teacher, weights).item() == pytest.approx(0.4 * kl / 2)
    # T = 2 on the logits ln q: softmax(ln q / 2) = √q / Σ√q
    q = torch.tensor([0.75, 0.25]).sqrt()
    q = q / q.sum()
    kl_t = float((q * (q / 0.5).log()).sum())
    plain = distillation_kl(student, teacher, weights, temperature=2.0)
    squared = distillation_kl(student, teacher, weights, temperature=2.0, squared=True)
    assert plain.item() == pytest.approx(0.4 * kl_t / 2, rel=1e-5)
    assert squared.item() == pytest.approx(4 * 0.4 * kl_t / 2, rel=1e-5)


def test_softmax_distillation_sums_groups_and_is_zero_when_student_is_teacher():
    logits = torch.randn(5, 2, 20)
    assert distillation_kl(logits, logits, torch.ones(5), temperature=1.5).item() == 0.0
    teacher = torch.randn(5, 2, 20)
    both = distillation_kl(logits, teacher, torch.ones(5))
    each = sum(distillation_kl(logits[:, d], teacher[:, d], torch.ones(5)) for d in range(2))
    assert both.item() == pytest.approx(each.item())


def test_binary_distillation_is_bce_less_the_teachers_entropy():
    student, teacher = torch.tensor([[0.0, 2.0]]), torch.tensor([[math.log(3.0), -1.0]])
    weights = torch.tensor([[1.0, 0.4]])
    q = torch.sigmoid(teacher)
    bce = F.binary_cross_entropy_with_logits(student, q, reduction="none")
    entropy = -(q * q.log() + (1 - q) * (1 - q).log())
    expected = ((bce - entropy) * weights).sum() / 2
    # by hand for the first entry: q = 0.75, p = 0.5: 0.75 ln 1.5 + 0.25 ln 0.5
    assert (bce - entropy)[0, 0].item() == pytest.approx(0.75 * math.log(1.5)
                                                         + 0.25 * math.log(0.5))
    live = student.clone().requires_grad_(True)
    value = binary_distillation_kl(live, teacher, weights)
    assert value.item() == pytest.approx(expected.item())
    # the released code's BCE against σ(z_t) has the same gradient
    (grad,) = torch.autograd.grad(value, live)
    released = live.detach().clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(
        (F.binary_cross_entropy_with_logits(released, q, reduction="none") * weights).sum() / 2,
        released)
    assert torch.allclose(grad, reference)
    big = torch.tensor([[40.0, -40.0]])
    assert binary_distillation_kl(big, big, torch.ones(1, 2)).item() == 0.0


def test_squared_distance_by_hand():
    value = weighted_squared_distance(torch.tensor([[0.5, 0.0], [0.0, 0.0]]),
                                      torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
                                      torch.tensor([1.0, 0.5]))
    assert value.item() == pytest.approx((0.25 / 2 + 0.5 * 1.0) / 2)


def numpy_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC with population moments, written out."""
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (x.var() + y.var() + (mx - my) ** 2)


def test_the_ccc_loss_is_the_direct_computation_constant_predictions_included():
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, (9, 2)).astype(np.float32)
    pred = (0.6 * target + rng.normal(0, 0.3, (9, 2))).astype(np.float32)
    mask = np.array([True] * 7 + [False] * 2)
    expected = sum(1 - numpy_ccc(pred[mask, d], target[mask, d]) for d in range(2))
    value = masked_ccc_loss(torch.from_numpy(pred), torch.from_numpy(target),
                            torch.from_numpy(mask))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    constant = np.full_like(pred, 0.3)            # no covariance: CCC 0, loss 1 a dimension
    assert numpy_ccc(constant[:, 0], target[:, 0]) == 0.0
    assert masked_ccc_loss(torch.from_numpy(constant), torch.from_numpy(target),
                           torch.ones(9, dtype=torch.bool)).item() == pytest.approx(2.0)


def test_va_bins_and_their_expectation_round_trip():
    head = ValenceArousalHead(1, form="bins", bins=20)
    centres = head.centres                                   # (20,): −0.95, −0.85, …, 0.95
    values = torch.stack([centres, centres.flip(0)], dim=1)  # (20, 2), each bin once a dimension
    bins = va_bin_indices(values, 20)
    assert bins[:, 0].tolist() == list(range(20)) and bins[:, 1].tolist() == list(range(19, -1, -1))
    sharp = torch.full((20, 2, 20), -1e4)
    sharp.scatter_(2, bins.unsqueeze(2), 0.0)                # all mass on each value's bin
    assert torch.allclose(head.predict(sharp.view(20, 40)), values, atol=1e-6)
    edges = torch.tensor([[-1.0, 1.0], [-0.9, 0.9]])         # an edge belongs to the bin above
    assert va_bin_indices(edges, 20).tolist() == [[0, 19], [1, 19]]


# ------------------------------------------------------------------------- the method
@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distill") / "synthetic"


@pytest.fixture(scope="module")
def teacher_dir(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    run(compose_config(root, ["method=baseline", "method.loss_weights={au: 8.0}",
                              "method.heads.va.form=bins", *PARTIAL]), run_dir)
    return run_dir


def student_cfg(root: Path, teacher: Path, *overrides: str):
    return compose_config(root, ["method=distill", f"method.teacher={teacher}", *PARTIAL,
                                 *overrides])


def built_student(root: Path, teacher: Path, *overrides: str, augment: bool = True):
    cfg = student_cfg(root, teacher, *overrides)
    data, method = build_data(cfg), build_method(cfg)
    method.prepare(data)
    method.train()
    loader = torch.utils.data.DataLoader(data.train, batch_size=12)
    batch = data.transform(next(iter(loader)), train=augment)
    return data, method, batch


def test_the_ground_truth_term_of_a_task_ignores_faces_without_its_labels(root, teacher_dir):
    _, method, batch = built_student(root, teacher_dir, augment=False)
    unlabelled = ~batch["au_mask"].any(1)
    assert unlabelled.any() and (~unlabelled).any()
    before = method.terms(batch)
    changed = dict(batch, au=batch["au"].clone())
    changed["au"][unlabelled] = 1.0 - changed["au"][unlabelled]
    after = method.terms(changed)
    assert after["au"].item() == before["au"].item()
    assert after["loss"].item() == before["loss"].item()


def test_the_loss_is_the_papers_per_sample_sum(root, teacher_dir):
    _, method, batch = built_student(root, teacher_dir, augment=False)
    terms = method.terms(batch)
    expected = 0.0
    for task in method.heads.tasks:
        share = batch[f"{task}_mask"].float().mean()
        expected += 0.6 * share * terms[task] + terms[f"distill_{task}"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    # λ = 0: the teacher alone, on every sample
    method.gt_weight = 0.0
    assert method.terms(batch)["loss"].item() == pytest.approx(
        method.terms(batch)["distill"].item(), rel=1e-6)


def test_a_student_that_is_its_teacher_has_nothing_to_distil(root, teacher_dir):
    _, method, batch = built_student(root, teacher_dir)
    teacher = method.teacher
    method.backbone.load_state_dict(teacher.backbone.state_dict())
    method.heads.load_state_dict(teacher.heads.state_dict())
    method.eval()           # both normalise with running statistics: the same function
    terms = method.terms(batch)
    for task in method.heads.tasks:
        assert abs(terms[f"distill_{task}"].item()) < 1e-6, task


def test_the_teacher_is_frozen_outside_the_students_parameters_and_checkpoint(root, teacher_dir,
                                                                               tmp_path):
    _, method, batch = built_student(root, teacher_dir)
    teacher_weights = {id(p) for p in method.teacher.parameters()}
    assert not teacher_weights & {id(p) for p in method.parameters()}
    assert not any(p.requires_grad for p in method.teacher.parameters())
    assert not any("teacher" in key for key in method.state_dict())
    terms = method.terms(batch)
    terms["loss"].backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    assert method.backbone.body[0].weight.grad.abs().sum() > 0
    # a trained student predicts with its teacher gone
    copied = tmp_path / "teacher"
    shutil.copytree(teacher_dir, copied)
    run(student_cfg(root, copied), tmp_path / "student")
    shutil.rmtree(copied)
    loaded = affectlab.load_run(tmp_path / "student")
    assert set(loaded.predict({"image": torch.rand(2, 3, 32, 32)})) == {"au", "expr", "va"}


def test_cached_teacher_outputs_are_the_online_ones_on_unaugmented_inputs(root, teacher_dir):
    data, method, batch = built_student(root, teacher_dir, "method.teacher_outputs=cached",
                                        augment=False)
    method.on_fit_start(total_steps=3)
    cached = method.teacher_logits(batch)
    method._cache = {}
    online = method.teacher_logits(batch)
    assert set(cached) == set(online) == {"au", "expr", "va"}
    for task in cached:
        assert torch.allclose(cached[task], online[task], atol=1e-5), task


def test_the_teachers_mistakes_are_named(root, teacher_dir, tmp_path):
    cfg = student_cfg(root, tmp_path / "nowhere")
    data, method = build_data(cfg), build_method(cfg)
    with pytest.raises(ValueError, match="no such run directory.*recipe=distill_synthetic "
                                         "stages=\\[teacher\\]"):
        method.prepare(data)
    cfg = compose_config(root, ["method=distill", *PARTIAL])
    with pytest.raises(ValueError, match="needs a teacher: method.teacher="):
        build_method(cfg).prepare(data)
    regression = student_cfg(root, teacher_dir, "method.heads.va.form=regression")
    with pytest.raises(ValueError, match="'va' head has 40 outputs, the student's 2"):
        build_method(regression).prepare(data)
    au_only = run(compose_config(root, ["method=baseline", "method.tasks=[au]", *PARTIAL]),
                  tmp_path / "au_only")
    assert au_only["tasks"].keys() == {"au"}
    with pytest.raises(ValueError, match="learned \\['au'\\], not 'expr'"):
        build_method(student_cfg(root, tmp_path / "au_only")).prepare(data)
    data.mean = (0.4, 0.4, 0.4)        # as another dataset's normalisation would
    with pytest.raises(ValueError, match="normalised with mean/std"):
        build_method(student_cfg(root, teacher_dir)).prepare(data)
    for bad, message in (("method.gt_weight=1.5", "gt_weight"),
                         ("method.temperature=0", "temperature"),
                         ("method.teacher_outputs=disk", "teacher_outputs")):
        with pytest.raises(Exception, match=message):
            build_method(student_cfg(root, teacher_dir, bad))


def test_seed_offset_gives_a_run_other_draws():
    base = OmegaConf.create({"seed": 2, "seed_offset": 0})
    assert run_seed(base) == 2
    assert run_seed(OmegaConf.create({"seed": 2, "seed_offset": 3})) == 3002
    assert run_seed(OmegaConf.create({"seed": 2})) == 2
    with pytest.raises(ValueError, match="seed_offset"):
        run_seed(OmegaConf.create({"seed": 2, "seed_offset": -1}))


@pytest.mark.slow
def test_teacher_two_students_and_their_ensemble_as_a_recipe(tmp_path, data_root):
    recipe = {
        "name": "tiny_distill",
        "seeds": [0],
        "overrides": [f"dataset.root={data_root}", *TINY_DATA, *TINY_MODEL, *TINY_TRAINER,
                      *PARTIAL],
        "stages": {
            "teacher": {"overrides": ["method=baseline", "method.loss_weights={au: 8.0}",
                                      "method.heads.va.form=bins"]},
            "student0": {"overrides": ["method=distill", "seed_offset=1"],
                         "refs": {"method.teacher": "teacher"}},
            "student1": {"overrides": ["method=distill", "seed_offset=2"],
                         "refs": {"method.teacher": "teacher"}},
            "students": {"ensemble": ["student0", "student1"], "per_seed": True},
        },
    }
    out = tmp_path / "recipe"
    results = Runner(OmegaConf.create(recipe), out=out, seeds=[0], overrides=[],
                     launcher=[]).run()
    assert set(results) == {"teacher", "student0", "student1", "students"}
    students = [json.loads((out / f"student{k}/seed0/metrics.json").read_text())
                for k in (0, 1)]
    assert [s["seed_offset"] for s in students] == [1, 2]
    config = OmegaConf.load(out / "student0/seed0/config_resolved.yaml")
    assert config.method.teacher == str((out / "teacher/seed0").resolve())
    first = torch.load(out / "student0/seed0/checkpoints/best.pt", weights_only=True)["method"]
    second = torch.load(out / "student1/seed0/checkpoints/best.pt", weights_only=True)["method"]
    key = next(k for k in first if k.endswith("weight"))
    assert not torch.equal(first[key], second[key])       # their own draws
    ensemble = results["students"][0]
    assert ensemble["members"] == 2 and set(ensemble["tasks"]) == {"au", "expr", "va"}
    assert "thresholds" in json.dumps(ensemble)


def test_the_online_and_cached_benchmark_runs(root, teacher_dir, tmp_path):
    from .conftest import load_script
    benchmark = load_script("benchmark_distill")
    tiny = [f"dataset.root={root}", *TINY_DATA, *TINY_MODEL, "trainer.batch_size=8",
            "trainer.device=cpu", "dataset.train_labels=one_task"]
    assert benchmark.main(["--teacher", str(teacher_dir), "--steps", "2", "--warmup", "1",
                           "--out", str(tmp_path), *tiny]) == 0
    result = json.loads((tmp_path / "benchmark_distill.json").read_text())
    assert set(result["step_ms"]) == {"online", "cached"} and result["cache_fill_s"] >= 0
    assert "online / cached" in (tmp_path / "benchmark_distill.md").read_text()
