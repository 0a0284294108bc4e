"""Safe checkpoints, rebuilding runs, init_from, per-label thresholds, evaluation and ensembles."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from affectlab.build import build_data, build_method
from affectlab.engine import CheckpointError
from affectlab.engine.checkpoint import init_from, load_checkpoint
from affectlab.evaluate import evaluate
from affectlab.inference import load_run
from affectlab.methods.base import Method
from affectlab.methods.ensemble import Ensemble
from affectlab.metrics import best_thresholds
from affectlab.train import run

from .conftest import CONFIG_DIR, TINY_DATA

MARKER = "affectlab-test-pickle-ran"


class RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")   # the plain pickle's protocol
def test_a_checkpoint_holding_code_is_refused_before_anything_runs(tmp_path, tiny_cfg):
    marker = tmp_path / MARKER
    crafted = tmp_path / "crafted.pt"
    torch.save({"method": {}, "payload": RunsCode(marker)}, crafted)
    with pytest.raises(CheckpointError, match=r"refusing checkpoint .*crafted.pt.*Nothing in it "
                                              r"was executed"):
        load_checkpoint(crafted)
    assert not marker.exists()
    # the same through trainer.resume, init_from and a plain pickle file
    with pytest.raises(CheckpointError, match="refusing"):
        run(tiny_cfg(f"trainer.resume={crafted}"), tmp_path / "resumed")
    with pytest.raises(CheckpointError, match="refusing"):
        run(tiny_cfg(f"init_from={crafted}"), tmp_path / "init")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(plain)
    assert not marker.exists()


def test_checkpoints_load_with_weights_only_and_carry_thresholds(tiny_cfg, tmp_path):
    metrics = run(tiny_cfg("method.tasks=[au,expr]", "trainer.max_steps=2"), tmp_path / "run")
    best = torch.load(tmp_path / "run/checkpoints/best.pt", weights_only=True)
    assert best["label_names"]["expr"][0] == "neutral"
    assert best["thresholds"]["au"] == metrics["tasks"]["au"]["thresholds"]
    assert len(best["thresholds"]["au"]) == 12 and "expr" not in best["thresholds"]
    au = metrics["tasks"]["au"]
    assert set(au["tuned"]) >= {"f1", "f1_mean", "acc_mean"} and "ap_mean" in au
    assert metrics["score"] == pytest.approx(np.mean([m["criterion"]
                                                      for m in metrics["tasks"].values()]))


def test_threshold_search_finds_the_known_optimum():
    # label 0: positives score 0.3 and 0.35, negatives 0.1 and 0.2 → any t in (0.2, 0.3] is
    # perfect; the candidate grid's best is 0.25 or 0.3 (0.3 is closer to 0.5)
    # label 1: positive 0.9, negatives 0.6, 0.7, 0.8 → only t in (0.8, 0.9] is perfect → 0.85
    # (0.9 ties but is farther from 0.5)
    y = np.array([[1, 1], [1, 0], [0, 0], [0, 0]])
    s = np.array([[0.3, 0.9], [0.35, 0.6], [0.1, 0.7], [0.2, 0.8]])
    assert best_thresholds(y, s).tolist() == pytest.approx([0.3, 0.85])
    with pytest.raises(ValueError, match="threshold criterion 'auc'"):
        best_thresholds(y, s, criterion="auc")


def test_emotionet_criterion_trades_f1_against_accuracy():
    # positives at 0.9, 0.3, 0.3; negatives 4 × 0.3. t ≤ 0.3: TP 3, FP 4 → F1 0.6, acc 3/7;
    # t in (0.3, 0.9]: TP 1, FN 2 → F1 0.5, acc 5/7. F1 takes the low threshold (0.3, the
    # closest to 0.5 of its tied candidates), ½(F1 + acc) the high one (0.514 vs 0.607 → 0.5)
    y = np.array([1, 1, 1, 0, 0, 0, 0])[:, None]
    s = np.array([0.9, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])[:, None]
    assert best_thresholds(y, s).tolist() == pytest.approx([0.3])
    assert best_thresholds(y, s, criterion="emotionet").tolist() == pytest.approx([0.5])


# ------------------------------------------------------------------------------ init_from
def tiny_run(tiny_cfg, path: Path, *overrides: str) -> Path:
    run(tiny_cfg("trainer.max_steps=2", *overrides), path)
    return path


def test_init_from_loads_exactly_the_named_parts(tiny_cfg, tmp_path):
    source = tiny_run(tiny_cfg, tmp_path / "expr", "method.tasks=[expr]")
    cfg = tiny_cfg("method.tasks=[au,expr]")
    data, method = build_data(cfg), build_method(cfg)
    method.prepare(data)
    fresh = {k: v.clone() for k, v in method.state_dict().items()}
    saved = load_checkpoint(source / "checkpoints/best.pt")["method"]
    report = init_from(method, source)          # default: the backbone only
    state = method.state_dict()
    for name, value in state.items():
        if name.startswith("backbone."):
            assert torch.equal(value, saved[name]), name
            assert name in report["loaded"]
        else:
            assert torch.equal(value, fresh[name]), name      # heads start new
    assert any(n.startswith("heads.") for n in report["new"])
    # heads too: the expression head matches (same shape), the AU head has no source
    method2 = build_method(cfg)
    method2.prepare(data)
    report = init_from(method2, source, ["all"])
    assert torch.equal(method2.state_dict()["heads.heads.expr.linear.weight"],
                       saved["heads.heads.expr.linear.weight"])
    assert "heads.heads.au.linear.weight" in report["new"]


def test_a_head_over_other_labels_starts_new(tiny_cfg, tmp_path):
    source = tiny_run(tiny_cfg, tmp_path / "three", "method.tasks=[au]", "dataset.aus=[1,2,4]")
    cfg = tiny_cfg("method.tasks=[au]")
    data, method = build_data(cfg), build_method(cfg)
    method.prepare(data)
    report = init_from(method, source, ["all"])
    assert "heads.heads.au.linear.weight" in report["new"]          # 3 vs 12 AUs
    assert report["loaded"] and all(n.startswith("backbone.") for n in report["loaded"])


def test_init_from_a_one_backbone_run_fills_both_mlcr_views(tiny_cfg, tmp_path):
    source = tiny_run(tiny_cfg, tmp_path / "au", "method.tasks=[au]")
    metrics = run(tiny_cfg("method=mlcr", "trainer.max_steps=1", f"init_from={source}",
                           "optim.optimizer.lr=0.0"), tmp_path / "mlcr")
    assert metrics["init_from"] == str(source)
    saved = load_checkpoint(source / "checkpoints/best.pt")["method"]
    views = load_checkpoint(tmp_path / "mlcr/checkpoints/last.pt")["method"]
    for name, value in saved.items():
        if name.startswith("backbone.") and value.dtype.is_floating_point \
                and "running" not in name:
            for view in (0, 1):
                assert torch.equal(views[name.replace("backbone.", f"views.{view}.")], value)


def test_init_from_two_runs_starts_each_mlcr_view_from_its_own(tiny_cfg, tmp_path):
    """MLCR's two views from two different pre-trainings (identity and expression)."""
    identity = tiny_run(tiny_cfg, tmp_path / "identity", "method.tasks=[identity]")
    expression = tiny_run(tiny_cfg, tmp_path / "expression", "method.tasks=[expr]", "seed=1")
    metrics = run(tiny_cfg("method=mlcr", "trainer.max_steps=1", "optim.optimizer.lr=0.0",
                           f"init_from=[{identity},{expression}]"), tmp_path / "mlcr")
    assert metrics["init_from"] == [str(identity), str(expression)]
    views = load_checkpoint(tmp_path / "mlcr/checkpoints/last.pt")["method"]
    for view, source in enumerate((identity, expression)):
        saved = load_checkpoint(source / "checkpoints/best.pt")["method"]
        weights = [n for n, v in saved.items() if n.startswith("backbone.")
                   and v.dtype.is_floating_point and "running" not in n]
        assert weights
        for name in weights:
            assert torch.equal(views[name.replace("backbone.", f"views.{view}.")], saved[name])
    first = weights[0]
    assert not torch.equal(load_checkpoint(identity / "checkpoints/best.pt")["method"][first],
                           views[first.replace("backbone.", "views.1.")])


def test_init_from_an_incompatible_model_names_both(tiny_cfg, tmp_path):
    source = tiny_run(tiny_cfg, tmp_path / "small", "method.tasks=[au]")
    with pytest.raises(CheckpointError, match=r"nothing of 'backbone' matches.*widths.*8, 16"):
        run(tiny_cfg("model=resnet18", "dataset.image_size=32", f"init_from={source}",
                     "trainer.max_steps=1"), tmp_path / "resnet")
    with pytest.raises(CheckpointError, match="init_parts=\\['neck'\\]"):
        run(tiny_cfg(f"init_from={source}", "init_parts=[neck]", "trainer.max_steps=1"),
            tmp_path / "neck")
    with pytest.raises(CheckpointError, match="does not exist"):
        run(tiny_cfg(f"init_from={tmp_path / 'nowhere'}"), tmp_path / "x")


# ----------------------------------------------------------------------- evaluate, ensemble
class Constant(Method):
    def __init__(self, value: float, labels: list[str]) -> None:
        super().__init__()
        self.value = value
        self.label_names = {"au": labels, "va": ["valence", "arousal"]}
        self.thresholds = {"au": [value] * len(labels)}

    def predict(self, batch):
        n = batch["image"].shape[0]
        return {"au": torch.full((n, len(self.label_names["au"])), self.value),
                "va": torch.full((n, 2), -self.value)}


def test_ensemble_averages_members_and_refuses_other_label_sets():
    ensemble = Ensemble([Constant(0.2, ["AU1", "AU2"]), Constant(0.6, ["AU1", "AU2"])])
    out = ensemble.predict({"image": torch.zeros(3, 3, 4, 4)})
    assert torch.allclose(out["au"], torch.full((3, 2), 0.4))
    assert torch.allclose(out["va"], torch.full((3, 2), -0.4))
    assert ensemble.thresholds["au"] == pytest.approx([0.4, 0.4])
    with pytest.raises(ValueError, match=r"cannot ensemble a and b: 'au' labels differ \(only in "
                                         r"the first: \['AU2'\], only in the other: \['AU4'\]"):
        Ensemble([Constant(0.2, ["AU1", "AU2"]), Constant(0.6, ["AU1", "AU4"])], names=["a", "b"])


def evaluate_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def test_evaluate_one_run_reproduces_its_metrics_and_an_ensemble_runs(tiny_cfg, tmp_path):
    a = tiny_run(tiny_cfg, tmp_path / "a", "method.tasks=[au,va]")
    b = tiny_run(tiny_cfg, tmp_path / "b", "method.tasks=[au,va]", "seed=1")
    trained = json.loads((a / "metrics.json").read_text())
    loaded = load_run(a)
    assert loaded.method.thresholds["au"] == trained["tasks"]["au"]["thresholds"]

    one = evaluate(evaluate_cfg(f"runs=[{a}]", "thresholds=members", "batch_size=16"),
                   tmp_path / "eval_a")
    assert json.loads((tmp_path / "eval_a/metrics.json").read_text()) == one
    with pytest.raises(ValueError, match="eval_a already holds an evaluation"):
        evaluate(evaluate_cfg(f"runs=[{a}]"), tmp_path / "eval_a")
    for key in ("f1", "acc", "average_precision", "thresholds"):
        assert one["tasks"]["au"][key] == pytest.approx(trained["tasks"]["au"][key], abs=1e-6)
    assert one["tasks"]["au"]["tuned"]["f1"] == pytest.approx(
        trained["tasks"]["au"]["tuned"]["f1"], abs=1e-6)
    assert one["tasks"]["va"]["ccc_mean"] == pytest.approx(trained["tasks"]["va"]["ccc_mean"],
                                                           abs=1e-5)
    # thresholds searched anew on validation give the run's own (same predictions)
    searched = evaluate(evaluate_cfg(f"runs=[{a}]", "batch_size=16"), tmp_path / "eval_s")
    assert searched["tasks"]["au"]["thresholds"] == trained["tasks"]["au"]["thresholds"]

    both = evaluate(evaluate_cfg(f"runs=[{a},{b}]", "split=val"), tmp_path / "eval_ab")
    assert both["members"] == 2 and both["split"] == "val"
    assert set(both["tasks"]) == {"au", "va"} and "tuned" in both["tasks"]["au"]


def test_evaluate_can_take_an_input_away(tiny_cfg, tmp_path):
    a = tiny_run(tiny_cfg, tmp_path / "a", "method.tasks=[au,va]")
    blind = evaluate(evaluate_cfg(f"runs=[{a}]", "ablate=[image]", "thresholds=members"),
                     tmp_path / "blind")
    assert blind["ablated"] == ["image"]
    # every face replaced by the mean face: one prediction for all, so AP is each AU's
    # positive rate (all scores tied) and the VA predictions do not vary (CCC 0)
    au = blind["tasks"]["au"]
    assert au["average_precision"] == pytest.approx(au["positive_rate"], abs=1e-6)
    assert blind["tasks"]["va"]["ccc_mean"] == pytest.approx(0.0, abs=1e-6)
    own = json.loads((a / "metrics.json").read_text())["tasks"]["va"]["ccc_mean"]
    assert own != pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match=r"ablate=\['audio'\]: the runs do not read "
                                         r"\['audio'\] \(they read \['image'\]\)"):
        evaluate(evaluate_cfg(f"runs=[{a}]", "ablate=[audio]"), tmp_path / "deaf")


def test_evaluate_refuses_runs_with_other_label_sets(tiny_cfg, tmp_path):
    a = tiny_run(tiny_cfg, tmp_path / "a", "method.tasks=[au]")
    b = tiny_run(tiny_cfg, tmp_path / "b", "method.tasks=[au]", "dataset.aus=[1,2,4]")
    with pytest.raises(ValueError, match="'au' labels differ"):
        evaluate(evaluate_cfg(f"runs=[{a},{b}]"), tmp_path / "eval")
    with pytest.raises(CheckpointError, match="not a finished run directory"):
        evaluate(evaluate_cfg(f"runs=[{tmp_path}]"), tmp_path / "eval2")


def test_evaluate_on_another_dataset_config(tiny_cfg, tmp_path, data_root):
    a = tiny_run(tiny_cfg, tmp_path / "a", "method.tasks=[au]")
    other_root = tmp_path / "other"
    metrics = evaluate(evaluate_cfg(f"runs=[{a}]", "dataset=synthetic",
                                    f"dataset.root={other_root}", "dataset.seed=7",
                                    *[o for o in TINY_DATA]), tmp_path / "eval")
    assert metrics["dataset"] == "synthetic" and list(other_root.iterdir())
    own = json.loads((a / "metrics.json").read_text())["tasks"]["au"]
    assert metrics["tasks"]["au"]["labels"] == own["labels"]
    assert metrics["tasks"]["au"]["f1"] != own["f1"]       # other faces, other numbers
    # a dataset whose AUs differ from the run's is refused, naming the difference
    with pytest.raises(ValueError, match="does not fit the runs: 'au' labels differ"):
        evaluate(evaluate_cfg(f"runs=[{a}]", "dataset=synthetic", f"dataset.root={other_root}",
                              "dataset.seed=7", "dataset.aus=[1,2]", *TINY_DATA),
                 tmp_path / "eval2")
