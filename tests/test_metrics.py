"""Tests of affectlab.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, confusion_matrix, f1_score

import affectlab.metrics as M

SEEDS = [0, 1, 2, 3, 4]


def _random_multilabel(seed: int, n: int = 300, c: int = 6, masked: bool = True):
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.05, 0.6, size=c)
    y = (rng.random((n, c)) < prevalence).astype(np.float32)
    # scores correlated with the labels so that F1 is not trivial
    score = np.clip(0.35 * y + 0.65 * rng.random((n, c)), 0, 1)
    mask = rng.random((n, c)) > 0.3 if masked else np.ones((n, c), dtype=bool)
    y_stored = np.where(mask, y, -1.0)  # missing labels stored as -1, must never be read
    return y, y_stored, score, mask


# ------------------------------------------------------------------------------------------
# multilabel_metrics
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("masked", [False, True])
def test_multilabel_per_label_matches_sklearn(seed, masked):
    y, y_stored, score, mask = _random_multilabel(seed, masked=masked)
    thr = 0.5
    m = M.multilabel_metrics(y_stored, score, mask if masked else None, threshold=thr)
    c = y.shape[1]
    assert m["labels"] == [str(i) for i in range(c)]
    for j in range(c):
        v = mask[:, j]
        yt, yp = y[v, j].astype(int), (score[v, j] >= thr).astype(int)
        assert m["num_valid"][j] == int(v.sum())
        assert m["f1"][j] == pytest.approx(f1_score(yt, yp, zero_division=0), abs=1e-12)
        assert m["acc"][j] == pytest.approx(accuracy_score(yt, yp), abs=1e-12)
        assert m["positive_rate"][j] == pytest.approx(yt.mean(), abs=1e-12)
        assert m["f1_macro"][j] == pytest.approx(
            f1_score(yt, yp, average="macro", labels=[0, 1], zero_division=0), abs=1e-12
        )
    assert m["f1_mean"] == pytest.approx(np.mean(m["f1"]), abs=1e-12)
    assert m["acc_mean"] == pytest.approx(np.mean(m["acc"]), abs=1e-12)
    assert m["f1_macro_mean"] == pytest.approx(np.mean(m["f1_macro"]), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_multilabel_per_label_threshold_vector(seed):
    y, _, score, _ = _random_multilabel(seed, masked=False)
    thr = np.linspace(0.2, 0.8, y.shape[1])
    m = M.multilabel_metrics(y, score, threshold=thr)
    for j in range(y.shape[1]):
        yp = (score[:, j] >= thr[j]).astype(int)
        assert m["f1"][j] == pytest.approx(f1_score(y[:, j], yp, zero_division=0), abs=1e-12)


def test_multilabel_threshold_is_inclusive():
    y = np.array([[1], [0]])
    s = np.array([[0.5], [0.49]])
    m = M.multilabel_metrics(y, s)
    assert m["f1"] == [1.0] and m["acc"] == [1.0]


def test_multilabel_zero_positive_edge_cases():
    # label 0: no positives, no predicted positives -> F1 = 0 (sklearn zero_division=0), acc = 1
    # label 1: no positives but predicted positives -> F1 = 0, acc = 0.5
    # label 2: all positive, all predicted positive -> F1 = 1, macro F1 = (1 + 0) / 2
    y = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    s = np.array([[0.1, 0.9, 0.9], [0.2, 0.8, 0.7], [0.3, 0.1, 0.6], [0.0, 0.2, 0.99]])
    m = M.multilabel_metrics(y, s)
    assert m["f1"] == [0.0, 0.0, 1.0]
    assert m["acc"] == [1.0, 0.5, 1.0]
    assert m["f1_macro"] == [0.5, pytest.approx(1 / 3), 0.5]
    for j in range(3):
        yp = (s[:, j] >= 0.5).astype(int)
        assert m["f1"][j] == f1_score(y[:, j], yp, zero_division=0)
        assert m["f1_macro"][j] == pytest.approx(
            f1_score(y[:, j], yp, average="macro", labels=[0, 1], zero_division=0)
        )
    assert m["positive_rate"] == [0.0, 0.0, 1.0]


def test_multilabel_label_without_valid_entries_is_excluded_from_means():
    y = np.array([[1, 1], [0, 1]])
    s = np.array([[0.9, 0.9], [0.1, 0.9]])
    mask = np.array([[True, False], [True, False]])
    m = M.multilabel_metrics(y, s, mask, names=["AU1", "AU2"])
    assert m["labels"] == ["AU1", "AU2"]
    assert m["num_valid"] == [2, 0]
    assert m["f1"] == [1.0, 0.0] and m["acc"] == [1.0, 0.0]
    assert m["f1_mean"] == 1.0 and m["acc_mean"] == 1.0
    assert all(math.isfinite(v) for v in m["f1"] + m["acc"] + m["f1_macro"])


def test_multilabel_row_mask_broadcasts():
    y, _, score, _ = _random_multilabel(7, masked=False)
    rows = np.arange(y.shape[0]) % 3 != 0
    a = M.multilabel_metrics(y, score, rows)
    b = M.multilabel_metrics(y[rows], score[rows])
    assert a == b


def test_multilabel_rejects_non_binary_valid_labels():
    with pytest.raises(ValueError):
        M.multilabel_metrics(np.array([[2.0]]), np.array([[0.3]]))
    with pytest.raises(ValueError):
        M.multilabel_metrics(np.array([[-1.0]]), np.array([[0.3]]))
    # ...but the same value under a False mask is fine
    M.multilabel_metrics(np.array([[-1.0], [1.0]]), np.array([[0.3], [0.6]]),
                         np.array([[False], [True]]))


def test_multilabel_returns_python_types():
    y, y_stored, score, mask = _random_multilabel(0)
    m = M.multilabel_metrics(y_stored, score, mask)
    assert type(m["f1_mean"]) is float and type(m["acc_mean"]) is float
    assert all(type(v) is float for v in m["f1"] + m["acc"] + m["f1_macro"] + m["positive_rate"])
    assert all(type(v) is int for v in m["num_valid"])
    json.dumps(m, allow_nan=False)


# ------------------------------------------------------------------------------------------
# expression_metrics
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_expression_matches_sklearn_with_absent_class_and_mask(seed):
    rng = np.random.default_rng(seed)
    n, k = 400, 7
    y = rng.integers(0, k, size=n)
    y[y == 3] = 2  # class 3 absent from the truth
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    logits[:, 3] -= 100.0  # ... and from the predictions
    mask = rng.random(n) > 0.25
    y_stored = np.where(mask, y, -1)
    m = M.expression_metrics(y_stored, logits, mask, num_classes=k)
    yt, yp = y[mask], logits[mask].argmax(1)
    assert 3 not in yt and 3 not in yp
    assert m["f1_macro"] == pytest.approx(
        f1_score(yt, yp, average="macro", labels=list(range(k)), zero_division=0), abs=1e-12
    )
    assert m["acc"] == pytest.approx(accuracy_score(yt, yp), abs=1e-12)
    np.testing.assert_allclose(
        m["f1_per_class"], f1_score(yt, yp, average=None, labels=list(range(k)), zero_division=0)
    )
    assert m["f1_per_class"][3] == 0.0
    assert m["confusion"] == confusion_matrix(yt, yp, labels=list(range(k))).tolist()
    assert m["num_valid"] == int(mask.sum())
    assert m["labels"] == [str(i) for i in range(k)]
    json.dumps(m, allow_nan=False)


def test_expression_hand_example_and_probs_equal_logits():
    # truth 0 0 1 2, predicted 0 1 1 1 -> acc 2/4; F1: c0 = 2*1/(2+1) = 2/3, c1 = 2*1/(1+3) = 1/2,
    # c2 = 0 -> macro over 3 classes = (2/3 + 1/2) / 3 = 7/18
    y = np.array([0, 0, 1, 2])
    logits = np.array([[3.0, 1, 0], [0, 2, 1], [0, 5, 1], [1, 2, 0]])
    m = M.expression_metrics(y, logits, num_classes=3, names=["a", "b", "c"])
    assert m["acc"] == 0.5
    assert m["f1_per_class"] == [pytest.approx(2 / 3), 0.5, 0.0]
    assert m["f1_macro"] == pytest.approx(7 / 18)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert M.expression_metrics(y, probs, num_classes=3, names=["a", "b", "c"]) == m


def test_expression_errors_and_empty():
    with pytest.raises(ValueError):
        M.expression_metrics(np.array([7]), np.zeros((1, 7)))
    with pytest.raises(ValueError):
        M.expression_metrics(np.array([0]), np.zeros((1, 5)), num_classes=7)
    m = M.expression_metrics(np.array([-1, -1]), np.zeros((2, 7)), np.array([False, False]))
    assert m["f1_macro"] == 0.0 and m["acc"] == 0.0 and m["num_valid"] == 0


# ------------------------------------------------------------------------------------------
# CCC
# ------------------------------------------------------------------------------------------


def _ccc_reference(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * cov / (np.var(x) + np.var(y) + (x.mean() - y.mean()) ** 2)


def test_ccc_worked_example():
    # x = [1, 2, 3, 4], y = [2, 3, 4, 5]: mean 2.5 and 3.5,
    # deviations both [-1.5, -0.5, 0.5, 1.5] -> var_x = var_y = cov = (2.25+0.25+0.25+2.25)/4 = 1.25
    # CCC = 2*1.25 / (1.25 + 1.25 + (2.5-3.5)^2) = 2.5 / 3.5 = 5/7
    # (the unbiased 1/(N-1) estimator would give (10/3)/(10/3 + 1) = 10/13 instead)
    assert M.ccc([1, 2, 3, 4], [2, 3, 4, 5]) == pytest.approx(5 / 7, abs=1e-12)
    # x = [1, 2, 3], y = [1, 3, 2]: means 2, 2; var_x = var_y = 2/3;
    # cov = ((-1)(-1) + 0*1 + 1*0) / 3 = 1/3 -> CCC = (2/3) / (4/3) = 1/2
    assert M.ccc([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5, abs=1e-12)


def test_ccc_identity_negation_and_shift():
    x = np.array([1.0, 2.0, 3.0])
    assert M.ccc(x, x) == pytest.approx(1.0, abs=1e-12)
    # -x: mean -2, var 2/3 each, cov -2/3, (2 - (-2))^2 = 16 -> CCC = (-4/3) / (4/3 + 16) = -1/13
    assert M.ccc(x, -x) == pytest.approx(-1 / 13, abs=1e-12)
    # zero-mean series: CCC(z, -z) = -1 exactly
    z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert M.ccc(z, -z) == pytest.approx(-1.0, abs=1e-12)
    # shift by c: CCC = 2 var / (2 var + c^2); var(x) = 2/3, c = 1 -> (4/3) / (4/3 + 1) = 4/7
    assert M.ccc(x, x + 1.0) == pytest.approx(4 / 7, abs=1e-12)
    assert M.ccc(x, x + 1.0) < 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_ccc_matches_population_formula_and_invariances(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=257)
    y = 0.6 * x + 0.3 + 0.5 * rng.normal(size=257)
    v = M.ccc(x, y)
    assert type(v) is float
    assert v == pytest.approx(_ccc_reference(x, y), abs=1e-12)
    assert M.ccc(y, x) == pytest.approx(v, abs=1e-12)  # symmetric
    perm = rng.permutation(x.size)
    assert M.ccc(x[perm], y[perm]) == pytest.approx(v, abs=1e-12)  # order of pairs
    assert M.ccc(x + 5.0, y + 5.0) == pytest.approx(v, abs=1e-10)  # joint shift
    assert M.ccc(3.0 * x, 3.0 * y) == pytest.approx(v, abs=1e-10)  # joint positive scale
    assert abs(M.ccc(x, 3.0 * y) - v) > 1e-3  # not invariant to scaling one series
    assert -1.0 <= v <= 1.0


def test_ccc_degenerate_inputs():
    assert M.ccc([], []) == 0.0
    assert M.ccc([0.3], [0.3]) == 0.0
    assert M.ccc([1.0, 1.0], [1.0, 1.0]) == 0.0  # zero denominator
    assert M.ccc([1.0, 1.0], [2.0, 2.0]) == 0.0  # zero covariance, nonzero denominator
    with pytest.raises(ValueError):
        M.ccc([1, 2], [1, 2, 3])


def test_va_metrics_with_mask():
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, size=(100, 2))
    p = t + 0.3 * rng.normal(size=(100, 2))
    mask = rng.random(100) > 0.4
    t_stored = np.where(mask[:, None], t, np.nan)
    m = M.va_metrics(t_stored, p, mask)
    cv = _ccc_reference(t[mask, 0], p[mask, 0])
    ca = _ccc_reference(t[mask, 1], p[mask, 1])
    assert m["ccc_valence"] == pytest.approx(cv, abs=1e-12)
    assert m["ccc_arousal"] == pytest.approx(ca, abs=1e-12)
    assert m["ccc_mean"] == pytest.approx((cv + ca) / 2, abs=1e-12)
    assert m["num_valid"] == int(mask.sum())
    json.dumps(m, allow_nan=False)


# ------------------------------------------------------------------------------------------
# Challenge scores
# ------------------------------------------------------------------------------------------


def test_challenge_scores():
    au = {"f1_mean": 0.4, "acc_mean": 0.9}
    assert M.emotionet2020_score(au) == pytest.approx(0.65)
    assert M.abaw_au_score(au) == pytest.approx(0.65)
    assert M.abaw_expr_score({"f1_macro": 0.5, "acc": 0.8}) == pytest.approx(
        0.67 * 0.5 + 0.33 * 0.8)
    assert M.abaw_expr_score({"f1_macro": 1.0, "acc": 0.0}) == pytest.approx(0.67)
    assert M.abaw_expr_score({"f1_macro": 0.0, "acc": 1.0}) == pytest.approx(0.33)
    assert M.abaw_va_score({"ccc_valence": 0.2, "ccc_arousal": 0.6, "ccc_mean": 0.4}) == 0.4
    assert M.ABAW_EXPR_F1_WEIGHT == 0.67 and M.ABAW_EXPR_ACC_WEIGHT == 0.33
    assert M.EMOTIONET2020_F1_WEIGHT + M.EMOTIONET2020_ACC_WEIGHT == 1.0
    assert M.ABAW_AU_F1_WEIGHT + M.ABAW_AU_ACC_WEIGHT == 1.0


# ------------------------------------------------------------------------------------------
# average_precision
# ------------------------------------------------------------------------------------------


def test_average_precision_hand_computed():
    # label 0: ranking 1, 0, 1, 0 → (P, R) at each cut: (1, .5) (.5, .5) (2/3, 1) (.5, 1)
    #          AP = .5·1 + 0 + .5·2/3 + 0 = 5/6
    # label 1: a tie at 0.5 between a positive and a negative enters as one cut:
    #          (.5, .5) then (2/3, 1) → AP = .5·.5 + .5·2/3 = 7/12
    # label 2: no positives → 0; label 3: masked entry (a high-scoring negative) ignored → 1
    y = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]])
    s = np.array([[0.9, 0.5, 0.3, 0.6], [0.8, 0.5, 0.2, 0.99], [0.7, 0.2, 0.1, 0.7],
                  [0.1, 0.1, 0.4, 0.1]])
    mask = np.ones_like(y, dtype=bool)
    mask[1, 3] = False
    np.testing.assert_allclose(M.average_precision(y, s, mask), [5 / 6, 7 / 12, 0.0, 1.0])


def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random((200, 5)) < 0.3).astype(float)
    s = np.round(rng.random((200, 5)) * 0.6 + 0.4 * y, 2)  # rounding makes ties
    ours = M.average_precision(y, s)
    for c in range(5):
        assert ours[c] == pytest.approx(average_precision_score(y[:, c], s[:, c]))


# ------------------------------------------------------------------------------------------
# best_thresholds
# ------------------------------------------------------------------------------------------


def test_best_thresholds_known_optimum():
    # label 0: positives score 0.72-0.9, negatives 0.1-0.68 -> perfectly separated for any
    #   threshold in (0.68, 0.72]; the only such candidate of 0.05..0.95 is 0.70.
    # label 1: positives 0.25-0.3, negatives 0.05-0.2 -> only candidate 0.25 separates them.
    # label 2: no positives -> every candidate gives F1 = 0, tie broken to 0.5.
    # label 3: masked out entirely -> 0.5.
    pos0 = np.array([0.72, 0.8, 0.9])
    neg0 = np.array([0.1, 0.3, 0.5, 0.68])
    pos1 = np.array([0.25, 0.27, 0.3])
    neg1 = np.array([0.05, 0.1, 0.15, 0.2])
    y = np.zeros((7, 4))
    y[:3, 0] = 1
    y[:3, 1] = 1
    s = np.zeros((7, 4))
    s[:, 0] = np.concatenate([pos0, neg0])
    s[:, 1] = np.concatenate([pos1, neg1])
    s[:, 2] = np.linspace(0, 1, 7)
    s[:, 3] = 0.9
    mask = np.ones((7, 4), dtype=bool)
    mask[:, 3] = False
    thr = M.best_thresholds(y, s, mask)
    assert isinstance(thr, np.ndarray) and thr.shape == (4,)
    np.testing.assert_allclose(thr, [0.70, 0.25, 0.5, 0.5], atol=1e-9)
    m = M.multilabel_metrics(y, s, mask, threshold=thr)
    assert m["f1"][:2] == [1.0, 1.0]


def test_best_thresholds_tie_goes_to_closest_to_half():
    # positives 0.9, negatives 0.1: every candidate in (0.1, 0.9] gives F1 = 1 -> pick 0.5
    y = np.array([[1], [1], [0], [0]])
    s = np.array([[0.9], [0.9], [0.1], [0.1]])
    np.testing.assert_allclose(M.best_thresholds(y, s), [0.5], atol=1e-9)
    # tie among candidates that exclude 0.5: all in (0.6, 0.9] -> closest to 0.5 is 0.65
    s2 = np.array([[0.9], [0.9], [0.6], [0.6]])
    np.testing.assert_allclose(M.best_thresholds(y, s2), [0.65], atol=1e-9)
    # explicit candidates equally close to 0.5 -> the smaller
    np.testing.assert_allclose(M.best_thresholds(y, s, candidates=[0.7, 0.3]), [0.3])


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_best_thresholds_is_optimal_on_random_data(seed):
    y, y_stored, score, mask = _random_multilabel(seed)
    cand = M.DEFAULT_THRESHOLD_CANDIDATES
    thr = M.best_thresholds(y_stored, score, mask)
    best = M.multilabel_metrics(y_stored, score, mask, threshold=thr)["f1"]
    for t in cand:
        f1 = M.multilabel_metrics(y_stored, score, mask, threshold=t)["f1"]
        assert all(b >= f - 1e-12 for b, f in zip(best, f1))


# ------------------------------------------------------------------------------------------
# evaluate_tasks / flatten_metrics
# ------------------------------------------------------------------------------------------


def _split(seed=0, n=120, c=5, a=4):
    rng = np.random.default_rng(seed)
    outputs = {
        "au": rng.random((n, c)).astype(np.float32),
        "expr": rng.normal(size=(n, 7)).astype(np.float32),
        "va": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "attr": rng.random((n, a)).astype(np.float32),
    }
    targets = {
        "au": (rng.random((n, c)) < 0.3).astype(np.float32),
        "au_mask": rng.random((n, c)) > 0.2,
        "expr": rng.integers(0, 7, n),
        "expr_mask": rng.random(n) > 0.5,
        "va": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "va_mask": rng.random(n) > 0.5,
        "attr": (rng.random((n, a)) < 0.5).astype(np.float32),
        "attr_mask": np.ones((n, a), dtype=bool),
    }
    names = {
        "au": [f"AU{i}" for i in (1, 2, 4, 6, 12)][:c],
        "expr": ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"],
        "attr": [f"attr{i}" for i in range(a)],
    }
    return outputs, targets, names


def test_evaluate_tasks_keys_values_and_json():
    outputs, targets, names = _split()
    res = M.evaluate_tasks(outputs, targets, names)
    assert set(res) == {"au", "expr", "va", "attr"}
    assert {"labels", "f1", "acc", "f1_mean", "acc_mean", "f1_macro", "f1_macro_mean",
            "positive_rate", "num_valid", "emotionet2020", "abaw"} <= set(res["au"])
    assert {"labels", "f1_macro", "acc", "f1_per_class", "confusion", "abaw"} <= set(res["expr"])
    assert {"ccc_valence", "ccc_arousal", "ccc_mean", "abaw"} <= set(res["va"])
    assert "abaw" not in res["attr"] and "f1_mean" in res["attr"]
    assert res["au"]["labels"] == names["au"]
    assert res["au"]["abaw"] == pytest.approx(
        0.5 * res["au"]["f1_mean"] + 0.5 * res["au"]["acc_mean"])
    assert res["expr"]["abaw"] == pytest.approx(
        0.67 * res["expr"]["f1_macro"] + 0.33 * res["expr"]["acc"])
    assert res["va"]["abaw"] == res["va"]["ccc_mean"]
    # same numbers as calling the task functions directly on the masked data
    au = M.multilabel_metrics(targets["au"], outputs["au"], targets["au_mask"], names=names["au"])
    assert res["au"]["f1"] == au["f1"]
    ex = M.expression_metrics(targets["expr"], outputs["expr"], targets["expr_mask"])
    assert res["expr"]["f1_macro"] == ex["f1_macro"]
    va = M.va_metrics(targets["va"], outputs["va"], targets["va_mask"])
    assert res["va"]["ccc_mean"] == va["ccc_mean"]
    json.dumps(res, allow_nan=False)

    def check_plain(obj):
        if isinstance(obj, dict):
            for v in obj.values():
                check_plain(v)
        elif isinstance(obj, list):
            for v in obj:
                check_plain(v)
        else:
            assert type(obj) in (float, int, str), type(obj)

    check_plain(res)


def test_evaluate_tasks_thresholds_and_subset():
    outputs, targets, names = _split(1)
    res = M.evaluate_tasks({"au": outputs["au"]}, targets, names, thresholds={"au": 0.2})
    assert set(res) == {"au"}
    # the top-level keys stay at 0.5; the thresholds and the metrics at them go under "tuned"
    ref = M.multilabel_metrics(targets["au"], outputs["au"], targets["au_mask"], threshold=0.2)
    at_half = M.evaluate_tasks({"au": outputs["au"]}, targets)["au"]
    assert res["au"]["tuned"]["f1"] == ref["f1"]
    assert res["au"]["f1"] == at_half["f1"] != ref["f1"]
    assert res["au"]["thresholds"] == [0.2] * len(ref["f1"])
    assert "tuned" not in at_half and "thresholds" not in at_half
    assert res["au"]["tuned"]["emotionet2020"] == M.emotionet2020_score(ref)


def test_evaluate_tasks_skips_tasks_without_valid_entries():
    outputs, targets, names = _split(2)
    n = targets["expr"].shape[0]
    targets["expr_mask"] = np.zeros(n, dtype=bool)
    targets["va_mask"] = np.zeros(n, dtype=bool)
    targets["expr"] = np.full(n, -1)
    # zero-width attributes (dataset without them)
    outputs["attr"] = np.zeros((n, 0), dtype=np.float32)
    targets["attr"] = np.zeros((n, 0), dtype=np.float32)
    targets["attr_mask"] = np.zeros((n, 0), dtype=bool)
    res = M.evaluate_tasks(outputs, targets, names)
    assert set(res) == {"au"}
    targets["au_mask"] = np.zeros_like(targets["au_mask"])
    assert M.evaluate_tasks(outputs, targets, names) == {}


def test_flatten_metrics():
    outputs, targets, names = _split(3)
    res = M.evaluate_tasks(outputs, targets, names)
    flat = M.flatten_metrics(res, "val")
    for k in ["val/au/f1_mean", "val/au/acc_mean", "val/au/f1_macro_mean", "val/au/abaw",
              "val/au/emotionet2020", "val/au/f1/AU12", "val/au/f1/AU1", "val/expr/f1_macro",
              "val/expr/acc", "val/expr/abaw", "val/va/ccc_valence", "val/va/ccc_arousal",
              "val/va/ccc_mean", "val/va/abaw", "val/attr/f1_mean", "val/attr/f1/attr0"]:
        assert k in flat, k
    assert flat["val/au/f1/AU12"] == res["au"]["f1"][4]
    assert flat["val/expr/f1_macro"] == res["expr"]["f1_macro"]
    # list-valued entries other than per-label f1 are skipped
    assert not any(k.startswith("val/au/acc/") or "confusion" in k or "labels" in k
                   or "f1_per_class" in k or "positive_rate" in k for k in flat)
    assert all(type(v) is float for v in flat.values())
    json.dumps(flat, allow_nan=False)
    # one task's dict with the task in the prefix gives the same keys
    au_flat = M.flatten_metrics(res["au"], "val/au/")
    assert au_flat == {k: v for k, v in flat.items() if k.startswith("val/au/")}
    assert "f1_mean" in M.flatten_metrics(res["au"], "")


def test_large_masked_inputs_match_small_computation():
    """Vectorised path on a large input equals the per-label computation on its valid rows."""
    rng = np.random.default_rng(0)
    n, c = 50_000, 40
    y = rng.random((n, c)) < 0.2
    s = rng.random((n, c)).astype(np.float32)
    mask = rng.random((n, c)) > 0.1
    res = M.multilabel_metrics(y, s, mask)
    for j in (0, 17, 39):
        valid = mask[:, j]
        expected = f1_score(y[valid, j], s[valid, j] >= 0.5, zero_division=0)
        assert res["f1"][j] == pytest.approx(expected)
