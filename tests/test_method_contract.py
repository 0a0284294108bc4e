"""The method contract: every method under configs/method/ passes these without being listed
(a new method gets them for free).

Per method, on the tiny synthetic benchmark through the real trainer: it builds from its
config; trains a few steps, logging named loss terms; resumes bit-exactly from a stop in the
middle; is rebuilt by ``affectlab.load_run`` from its checkpoint alone (the data root moved
away) and predicts every task it learned, as the trained method did; and each term it learns
without labels (``Method.unsupervised_terms``) is non-zero and its gradient reaches the weights
it names. A method that learns from a trained run (``method.teacher``: distillation) is given
one, trained here once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import affectlab
from affectlab.build import CONFIG_DIR, build_data, build_method
from affectlab.train import run

from .conftest import compose_config, run_interrupted, same_final_weights

METHODS = sorted(p.stem for p in (Path(CONFIG_DIR) / "method").glob("*.yaml"))
# methods whose config names a trained run to learn from
TAUGHT = {m for m in METHODS
          if "teacher" in OmegaConf.load(Path(CONFIG_DIR) / "method" / f"{m}.yaml")}
STEPS = ["trainer.max_steps=4", "trainer.max_epochs=4", "trainer.eval_every_epochs=1",
         "trainer.batch_size=4"]


def method_cfg(data_root: Path, method: str, *overrides: str, teacher: Path | None = None):
    taught = [f"method.teacher={teacher}"] if method in TAUGHT else []
    return compose_config(data_root, [f"method={method}", *STEPS, *taught, *overrides])


def test_every_method_config_is_covered():
    assert {"baseline", "mlcr"} <= set(METHODS)


@pytest.fixture(scope="module")
def contract_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny benchmark in a folder of this module's own, so that moving it away (for
    load_run) disturbs no other test."""
    return tmp_path_factory.mktemp("contract") / "synthetic"


@pytest.fixture(scope="module")
def teacher(contract_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained baseline for the methods that learn from one (VA as bins, as theirs)."""
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    run(method_cfg(contract_root, "baseline", "method.heads.va.form=bins"), run_dir)
    return run_dir


@pytest.mark.parametrize("method", METHODS)
def test_method_contract(method, contract_root, teacher, tmp_path, monkeypatch):
    # trains, logging named loss terms
    reference = run(method_cfg(contract_root, method, teacher=teacher), tmp_path / "full")
    assert reference["steps"] == 4
    logged = [json.loads(line)
              for line in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    terms = {k for row in logged for k in row if k.startswith("train/")}
    assert "train/loss" in terms and len(terms - {"train/loss", "train/lr"}) >= 1, terms

    # resumes bit-exactly from a stop after step 2
    last = run_interrupted(method_cfg(contract_root, method, teacher=teacher),
                           tmp_path / "stopped", 2, monkeypatch)
    assert last["global_step"] == 2
    resumed = run(method_cfg(contract_root, method,
                             f"trainer.resume={tmp_path / 'stopped/checkpoints/last.pt'}",
                             teacher=teacher),
                  tmp_path / "resumed")
    assert resumed["tasks"] == reference["tasks"]
    assert same_final_weights(tmp_path / "full", tmp_path / "resumed")

    # load_run without the data predicts every task it learned, as the trained method did
    cfg = method_cfg(contract_root, method, teacher=teacher)
    data = build_data(cfg, pack=False)
    batch = data.transform(next(iter(torch.utils.data.DataLoader(data.test, batch_size=6))),
                           train=False)
    with_data = affectlab.load_run(tmp_path / "full", data=True)
    expected = with_data.method.predict(batch)
    moved = contract_root.with_name("moved_away")
    contract_root.rename(moved)
    try:
        loaded = affectlab.load_run(tmp_path / "full")
        assert loaded.data is None
        predicted = loaded.method.predict(batch)
    finally:
        moved.rename(contract_root)
    assert set(predicted) == set(loaded.method.label_names) == set(expected) != set()
    for task in predicted:
        assert torch.allclose(predicted[task], expected[task], atol=1e-6), task
    assert loaded.method.thresholds == with_data.method.thresholds
    assert loaded.inputs["mean"] == list(data.mean) and loaded.inputs["keys"]["image"][0] == 3


@pytest.mark.parametrize("method", METHODS)
def test_unsupervised_terms_are_nonzero_and_reach_their_weights(method, contract_root, teacher):
    cfg = method_cfg(contract_root, method, teacher=teacher)
    data, built = build_data(cfg), build_method(cfg)
    built.prepare(data)
    loader = torch.utils.data.DataLoader(data.train, batch_size=4)
    batch = data.transform(next(iter(loader)), train=True, views=built.augmented_views)
    if built.needs_unlabeled:
        pool = torch.utils.data.DataLoader(data.unlabeled, batch_size=4)
        batch["unlabeled"] = data.transform(next(iter(pool)), train=True,
                                            views=built.augmented_views)
    for _ in range(max(getattr(built, "step_two_start", 0), 0)):
        built.after_optimizer_step(_)          # into the phase where every term is live
    terms = built.terms(batch)
    assert terms["loss"].requires_grad
    for name, module in built.unsupervised_terms.items():
        assert float(terms[name].detach().abs()) > 0, f"{method}: {name} is zero"
        assert reaches(terms[name], built, module), f"{method}: {name} does not reach {module}"


def reaches(term: torch.Tensor, method: torch.nn.Module, module: str) -> bool:
    """Whether ``term``'s gradient is non-zero somewhere in ``method``'s parameters under
    ``module``."""
    weights = [p for n, p in method.named_parameters() if n.startswith(module + ".")]
    assert weights, f"no parameters under {module!r}"
    if not term.requires_grad:
        return False
    grads = torch.autograd.grad(term, weights, retain_graph=True, allow_unused=True)
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_the_gradient_check_catches_a_term_cut_from_the_graph(contract_root):
    """The mean-teacher bug this contract guards against: a consistency term computed on
    detached outputs is non-zero but moves nothing."""
    cfg = method_cfg(contract_root, "mlcr")
    data, built = build_data(cfg), build_method(cfg)
    built.prepare(data)
    images = torch.rand(4, 3, *data.train.input_shapes()["image"][1:])
    logits = built.view_logits(images)
    live = (logits[0] - logits[1]).pow(2).mean()
    cut = (logits[0].detach() - logits[1].detach()).pow(2).mean()
    assert reaches(live, built, "views") and float(cut) > 0 and not reaches(cut, built, "views")
