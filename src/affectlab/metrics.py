"""Evaluation metrics for action units, expressions, valence/arousal and attributes.

Everything here is a pure numpy function over arrays stacked from a whole split. Inputs may be
numpy arrays, lists or CPU tensors (anything :func:`numpy.asarray` accepts); outputs are plain
Python ``float`` / ``int`` / ``list`` / ``str`` so that they can go straight into ``json.dumps``.

Conventions (the ones that differ between papers are spelled out here once):

* **Masks.** Every function takes an optional boolean ``mask``; entries where it is ``False``
  are ignored (for multi-label tasks per label, i.e. per ``(sample, label)`` entry). ``None``
  means every entry is valid. Label values under a ``False`` mask are never read, so missing
  labels may be stored as ``-1`` or ``NaN``.
* **Binarisation.** A multi-label prediction is positive when ``score >= threshold``.
* **Per-label F1** is the F1 of the positive class, ``2TP / (2TP + FP + FN)``; a label with no
  positives and no predicted positives among its valid entries gets ``0.0`` (scikit-learn's
  ``zero_division=0``). Every "undefined" ratio in this module is ``0.0``, never ``NaN``.
* **Means over labels** (``f1_mean``, ``acc_mean``, ``f1_macro_mean``) are unweighted means over
  the labels that have at least one valid entry.
* **CCC** uses population (biased, ``1/N``) moments; see :func:`ccc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

ArrayLike = Any  # np.ndarray, list, CPU torch.Tensor, ...

# --------------------------------------------------------------------------------------------
# Challenge criteria weights
# --------------------------------------------------------------------------------------------

#: EmotioNet 2020 AU criterion: ``0.5 * acc_mean + 0.5 * f1_mean``.
EMOTIONET2020_ACC_WEIGHT: float = 0.5
EMOTIONET2020_F1_WEIGHT: float = 0.5
#: ABAW AU criterion: ``0.5 * f1_mean + 0.5 * acc_mean``.
ABAW_AU_F1_WEIGHT: float = 0.5
ABAW_AU_ACC_WEIGHT: float = 0.5
#: ABAW expression criterion: ``0.67 * f1_macro + 0.33 * acc``.
ABAW_EXPR_F1_WEIGHT: float = 0.67
ABAW_EXPR_ACC_WEIGHT: float = 0.33

#: Default candidate thresholds of :func:`best_thresholds`: 0.05, 0.10, ..., 0.95.
DEFAULT_THRESHOLD_CANDIDATES: np.ndarray = np.linspace(0.05, 0.95, 19)

MULTILABEL_TASKS: tuple[str, ...] = ("au", "attr")
#: Criteria :func:`best_thresholds` can tune per-label thresholds for.
THRESHOLD_CRITERIA: tuple[str, ...] = ("f1", "emotionet")
#: Every task :func:`evaluate_tasks` knows, in report order.
EVALUATED_TASKS: tuple[str, ...] = ("au", "expr", "va", "attr", "identity")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise ``num / den`` in float64, with ``0.0`` wherever ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _to_list(a: np.ndarray) -> list:
    """A numpy array as a nested list of Python scalars."""
    return np.asarray(a).tolist()


def _names(names: Optional[Sequence[str]], n: int, what: str) -> list[str]:
    if names is None:
        return [str(i) for i in range(n)]
    names = [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"{what}: got {len(names)} names for {n} labels")
    return names


def _multilabel_inputs(
    y_true: ArrayLike, y_score: ArrayLike, mask: Optional[ArrayLike], what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and return ``(y_true float (N, C), y_score float (N, C), valid bool (N, C))``.

    ``mask`` may be ``(N, C)`` or ``(N,)`` (broadcast over labels)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(
            f"{what}: y_true and y_score must both be (N, C); got {y_true.shape} and "
            f"{y_score.shape}"
        )
    if mask is None:
        valid = np.ones(y_true.shape, dtype=bool)
    else:
        valid = np.asarray(mask, dtype=bool)
        if valid.ndim == 1:
            valid = valid[:, None]
        try:
            valid = np.broadcast_to(valid, y_true.shape)
        except ValueError:
            raise ValueError(
                f"{what}: mask of shape {np.shape(mask)} does not fit y_true {y_true.shape}"
            ) from None
    bad = valid & (y_true != 0) & (y_true != 1)
    if bad.any():
        raise ValueError(
            f"{what}: y_true must be 0 or 1 wherever the mask is True; found "
            f"{np.unique(y_true[bad])[:5].tolist()} (mask missing labels out)"
        )
    return y_true, y_score, valid


def _confusion_counts(
    y_true: np.ndarray, y_score: np.ndarray, valid: np.ndarray, threshold: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-label ``(TP, FP, FN, TN)``, each int64 (C,), counted over valid entries only."""
    thr = np.asarray(threshold, dtype=np.float64)
    pos = (y_true == 1) & valid
    pred = (y_score >= thr) & valid
    n_valid = np.count_nonzero(valid, axis=0)
    tp = np.count_nonzero(pos & pred, axis=0)
    n_pos = np.count_nonzero(pos, axis=0)
    n_pred = np.count_nonzero(pred, axis=0)
    fp = n_pred - tp
    fn = n_pos - tp
    tn = n_valid - tp - fp - fn
    return tp, fp, fn, tn


def _mean_over(values: np.ndarray, keep: np.ndarray) -> float:
    """Unweighted mean of ``values[keep]``; ``0.0`` when nothing is kept."""
    return float(values[keep].mean()) if keep.any() else 0.0


# --------------------------------------------------------------------------------------------
# Multi-label (AUs, attributes)
# --------------------------------------------------------------------------------------------


def multilabel_metrics(
    y_true: ArrayLike,
    y_score: ArrayLike,
    mask: Optional[ArrayLike] = None,
    threshold: Union[float, ArrayLike] = 0.5,
    names: Optional[Sequence[str]] = None,
) -> dict[str, Any]:
    """Per-label binary metrics for multi-label occurrence tasks (AUs, attributes).

    Args:
        y_true: (N, C) ground truth in {0, 1} (any value where ``mask`` is False).
        y_score: (N, C) scores, usually probabilities; predicted positive iff
            ``y_score >= threshold``.
        mask: (N, C) or (N,) bool validity; False entries are ignored for that label.
            ``None``: all valid.
        threshold: scalar or (C,) per-label thresholds.
        names: C label names; default ``["0", "1", ...]``.

    With TP, FP, FN, TN counted per label over its valid entries and ``n = TP+FP+FN+TN``:

    * ``f1[c]       = 2TP / (2TP + FP + FN)``  (F1 of the positive class; ``0.0`` when the label
      has no positives and no predicted positives, i.e. sklearn ``zero_division=0``)
    * ``f1_neg[c]   = 2TN / (2TN + FN + FP)``  (F1 of the negative class, same convention)
    * ``f1_macro[c] = (f1[c] + f1_neg[c]) / 2`` (binary macro F1 per label, the ABAW2021
      convention; equals sklearn ``f1_score(average='macro', labels=[0, 1], zero_division=0)``)
    * ``acc[c]      = (TP + TN) / n``
    * ``positive_rate[c] = (TP + FN) / n`` (prevalence of the ground truth)
    * ``num_valid[c] = n``

    Labels with ``n = 0`` get ``0.0`` everywhere and are left out of the ``*_mean`` values, which
    are unweighted means over the labels with ``n > 0`` (``0.0`` if there are none).

    Returns:
        ``{"labels": [str]*C, "f1": [float]*C, "acc": [float]*C, "f1_mean": float,
        "acc_mean": float, "f1_macro": [float]*C, "f1_macro_mean": float,
        "positive_rate": [float]*C, "num_valid": [int]*C}``
    """
    y_true, y_score, valid = _multilabel_inputs(y_true, y_score, mask, "multilabel_metrics")
    c = y_true.shape[1]
    thr = np.asarray(threshold, dtype=np.float64)
    if thr.ndim not in (0, 1) or (thr.ndim == 1 and thr.shape[0] != c):
        raise ValueError(f"multilabel_metrics: threshold must be a scalar or ({c},), got "
                         f"{thr.shape}")
    labels = _names(names, c, "multilabel_metrics")

    tp, fp, fn, tn = _confusion_counts(y_true, y_score, valid, thr)
    n = tp + fp + fn + tn
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    f1_neg = _safe_div(2 * tn, 2 * tn + fp + fn)
    f1_macro = 0.5 * (f1 + f1_neg)
    acc = _safe_div(tp + tn, n)
    pos_rate = _safe_div(tp + fn, n)
    has = n > 0
    return {
        "labels": labels,
        "f1": _to_list(f1),
        "acc": _to_list(acc),
        "f1_mean": _mean_over(f1, has),
        "acc_mean": _mean_over(acc, has),
        "f1_macro": _to_list(f1_macro),
        "f1_macro_mean": _mean_over(f1_macro, has),
        "positive_rate": _to_list(pos_rate),
        "num_valid": [int(v) for v in n],
    }


def best_thresholds(
    y_true: ArrayLike,
    y_score: ArrayLike,
    mask: Optional[ArrayLike] = None,
    candidates: ArrayLike = DEFAULT_THRESHOLD_CANDIDATES,
    criterion: str = "f1",
) -> np.ndarray:
    """Per-label threshold maximising a criterion of :func:`multilabel_metrics`.

    Meant for tuning on a validation split and applying the result on the test split.

    Args:
        y_true: (N, C) in {0, 1}; y_score: (N, C); mask: (N, C) or (N,) bool or None.
        candidates: (T,) thresholds to try (default 0.05, 0.10, ..., 0.95); a prediction is
            positive iff ``y_score >= t``.
        criterion: ``f1`` (the positive-class F1 2TP / (2TP + FP + FN)) or ``emotionet``
            (the EmotioNet challenge's per-label ½ (F1 + accuracy)).

    Ties (several candidates with the same F1, including labels where every candidate gives
    F1 = 0, e.g. with no valid entries) go to the candidate closest to 0.5, and between two
    equally close ones to the smaller. F1 values are exact ratios of integer counts, so equal
    F1 compare equal.

    Returns:
        float64 array (C,) of chosen thresholds. Cost: T passes over (N, C).
    """
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(f"threshold criterion {criterion!r}: use one of {THRESHOLD_CRITERIA}")
    y_true, y_score, valid = _multilabel_inputs(y_true, y_score, mask, "best_thresholds")
    cand = np.asarray(candidates, dtype=np.float64).ravel()
    if cand.size == 0:
        raise ValueError("best_thresholds: candidates is empty")
    # Visit candidates in preference order so that argmax (first maximum) breaks ties. The
    # distance is rounded so that e.g. 0.3 and 0.7 count as equally close despite binary floats.
    order = np.lexsort((cand, np.round(np.abs(cand - 0.5), 9)))
    cand = cand[order]
    pos = (y_true == 1) & valid
    n_pos = np.count_nonzero(pos, axis=0)
    n_valid = np.count_nonzero(valid, axis=0)
    score = np.empty((cand.size, y_true.shape[1]), dtype=np.float64)
    for i, t in enumerate(cand):
        pred = (y_score >= t) & valid
        tp = np.count_nonzero(pred & pos, axis=0)
        n_pred = np.count_nonzero(pred, axis=0)
        # 2TP + FP + FN = n_pred + n_pos
        score[i] = _safe_div(2 * tp, n_pred + n_pos)
        if criterion == "emotionet":
            # TP + TN = n_valid − FP − FN = n_valid − n_pred − n_pos + 2 TP
            score[i] = 0.5 * (score[i] + _safe_div(n_valid - n_pred - n_pos + 2 * tp, n_valid))
    return cand[np.argmax(score, axis=0)]


def average_precision(
    y_true: ArrayLike,
    y_score: ArrayLike,
    mask: Optional[ArrayLike] = None,
) -> np.ndarray:
    """Per-label average precision: a threshold-free measure of how well scores rank positives.

        AP[c] = Σ_k (R_k − R_{k−1}) · P_k

    over the distinct scores of label c's valid entries in decreasing order, with P_k and R_k
    the precision and recall when every entry scoring ≥ the k-th distinct score is predicted
    positive (scikit-learn's ``average_precision_score``; tied scores enter together). A label
    without valid positives gets 0.0.

    Args:
        y_true: (N, C) in {0, 1}; y_score: (N, C); mask: (N, C) or (N,) bool or None.

    Returns:
        float64 array (C,).
    """
    y_true, y_score, valid = _multilabel_inputs(y_true, y_score, mask, "average_precision")
    out = np.zeros(y_true.shape[1], dtype=np.float64)
    for c in range(y_true.shape[1]):
        keep = valid[:, c]
        truth, score = y_true[keep, c], y_score[keep, c]
        n_pos = truth.sum()
        if n_pos == 0:
            continue
        order = np.argsort(-score, kind="stable")
        truth, score = truth[order], score[order]
        # the last index of each run of equal scores: the cut points between distinct scores
        last = np.r_[np.flatnonzero(np.diff(score) != 0), score.size - 1]
        tp = np.cumsum(truth)[last]
        precision = tp / (last + 1)
        recall = tp / n_pos
        out[c] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return out


# --------------------------------------------------------------------------------------------
# Expressions (single-label, K classes)
# --------------------------------------------------------------------------------------------


def expression_metrics(
    y_true: ArrayLike,
    logits_or_probs: ArrayLike,
    mask: Optional[ArrayLike] = None,
    num_classes: int = 7,
    names: Optional[Sequence[str]] = None,
) -> dict[str, Any]:
    """Macro F1, accuracy and confusion matrix for single-label classification.

    Args:
        y_true: (N,) class indices in ``[0, K)`` (any value where ``mask`` is False).
        logits_or_probs: (N, K) scores; the prediction is ``argmax`` over K (first index on
            ties), so logits and probabilities give the same result.
        mask: (N,) bool validity, ``None``: all valid.
        num_classes: K; must equal ``logits_or_probs.shape[1]``.
        names: K class names; default ``["0", ..., "K-1"]``.

    With the confusion matrix ``M[i, j]`` = #(true i, predicted j) over valid samples:

    * ``f1_per_class[k] = 2 M[k,k] / (sum_j M[k,j] + sum_i M[i,k])``, ``0.0`` for a class absent
      from both truth and prediction;
    * ``f1_macro = mean_k f1_per_class[k]`` over all K classes (absent classes count as 0, i.e.
      sklearn ``f1_score(average='macro', labels=range(K), zero_division=0)``);
    * ``acc = trace(M) / sum(M)``.

    Returns:
        ``{"labels": [str]*K, "f1_macro": float, "acc": float, "f1_per_class": [float]*K,
        "confusion": K x K nested list of int (rows = truth, columns = prediction),
        "num_valid": int}``; all zeros when no sample is valid.
    """
    k = int(num_classes)
    scores = np.asarray(logits_or_probs)
    y = np.asarray(y_true)
    if scores.ndim != 2 or scores.shape[1] != k:
        raise ValueError(f"expression_metrics: scores must be (N, {k}), got {scores.shape}")
    if y.ndim != 1 or y.shape[0] != scores.shape[0]:
        raise ValueError(
            f"expression_metrics: y_true must be (N,) with N={scores.shape[0]}, got {y.shape}"
        )
    valid = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if valid.shape != y.shape:
        raise ValueError(f"expression_metrics: mask must be {y.shape}, got {valid.shape}")
    labels = _names(names, k, "expression_metrics")

    yt = y[valid]
    if yt.size and (not np.all(np.isfinite(yt)) or np.any(yt != np.round(yt))):
        raise ValueError("expression_metrics: y_true must be integer class indices where valid")
    yt = yt.astype(np.int64)
    if yt.size and (yt.min() < 0 or yt.max() >= k):
        raise ValueError(
            f"expression_metrics: y_true must lie in [0, {k}) where the mask is True; found "
            f"[{yt.min()}, {yt.max()}] (mask missing labels out)"
        )
    yp = np.argmax(scores[valid], axis=1).astype(np.int64) if yt.size else yt
    conf = np.bincount(yt * k + yp, minlength=k * k).reshape(k, k)
    tp = np.diag(conf)
    f1 = _safe_div(2 * tp, conf.sum(axis=1) + conf.sum(axis=0))
    n = int(conf.sum())
    return {
        "labels": labels,
        "f1_macro": float(f1.mean()) if k else 0.0,
        "acc": float(tp.sum() / n) if n else 0.0,
        "f1_per_class": _to_list(f1),
        "confusion": _to_list(conf),
        "num_valid": n,
    }


# --------------------------------------------------------------------------------------------
# Valence / arousal
# --------------------------------------------------------------------------------------------


def ccc(x: ArrayLike, y: ArrayLike) -> float:
    """Concordance correlation coefficient (Lin, 1989) of two 1-D series of equal length N.

    ``CCC = 2 s_xy / (s_x^2 + s_y^2 + (mean(x) - mean(y))^2)``

    with **population (biased) moments**, all normalised by ``1/N`` (numpy ``ddof=0``):
    ``s_xy = 1/N sum (x_i - mean(x)) (y_i - mean(y))``, ``s_x^2 = 1/N sum (x_i - mean(x))^2``.
    (Mixing ``1/(N-1)`` variances with a ``1/N`` covariance, or using ``N-1`` everywhere, gives
    a different number for finite N; this is the AVEC/ABAW definition.)

    CCC is in [-1, 1], equals 1 only for ``y == x``, is symmetric, and is invariant to applying
    the same shift or the same positive scale to both series, but not to shifting or scaling
    one of them. Returns ``0.0`` for N < 2 or a zero denominator (both series constant and
    equal). Computed in float64.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"ccc: x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2:
        return 0.0
    mx, my = x.mean(), y.mean()
    dx, dy = x - mx, y - my
    vx = float(np.dot(dx, dx) / x.size)
    vy = float(np.dot(dy, dy) / x.size)
    cov = float(np.dot(dx, dy) / x.size)
    den = vx + vy + float(mx - my) ** 2
    if not den > 0.0:  # also catches NaN
        return 0.0
    return float(2.0 * cov / den)


def va_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, mask: Optional[ArrayLike] = None
) -> dict[str, Any]:
    """CCC of valence and arousal.

    Args:
        y_true, y_pred: (N, 2), column 0 valence, column 1 arousal.
        mask: (N,) bool (sample valid for both) or (N, 2) (per dimension); ``None``: all valid.

    Returns:
        ``{"ccc_valence": float, "ccc_arousal": float, "ccc_mean": float (their average),
        "num_valid": int (samples valid for valence)}``; see :func:`ccc` for the estimator.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2 or t.shape != p.shape:
        raise ValueError(f"va_metrics: y_true and y_pred must be (N, 2), got {t.shape}, {p.shape}")
    if mask is None:
        valid = np.ones(t.shape, dtype=bool)
    else:
        valid = np.asarray(mask, dtype=bool)
        if valid.ndim == 1:
            valid = valid[:, None]
        valid = np.broadcast_to(valid, t.shape)
    cv = ccc(t[valid[:, 0], 0], p[valid[:, 0], 0])
    ca = ccc(t[valid[:, 1], 1], p[valid[:, 1], 1])
    return {
        "ccc_valence": cv,
        "ccc_arousal": ca,
        "ccc_mean": 0.5 * (cv + ca),
        "num_valid": int(np.count_nonzero(valid[:, 0])),
    }


# --------------------------------------------------------------------------------------------
# Challenge criteria
# --------------------------------------------------------------------------------------------


def emotionet2020_score(au_metrics: Mapping[str, Any]) -> float:
    """EmotioNet 2020 AU criterion: ``0.5 * acc_mean + 0.5 * f1_mean`` (mean over AUs)."""
    return float(
        EMOTIONET2020_ACC_WEIGHT * au_metrics["acc_mean"]
        + EMOTIONET2020_F1_WEIGHT * au_metrics["f1_mean"]
    )


def abaw_au_score(au_metrics: Mapping[str, Any]) -> float:
    """ABAW AU criterion: ``0.5 * f1_mean + 0.5 * acc_mean``.

    Note: ABAW defines the accuracy term as the "total accuracy"; ``acc_mean`` (mean of per-AU
    accuracies) equals it when every AU has the same number of valid entries."""
    return float(ABAW_AU_F1_WEIGHT * au_metrics["f1_mean"]
                 + ABAW_AU_ACC_WEIGHT * au_metrics["acc_mean"])


def abaw_expr_score(expr_metrics: Mapping[str, Any]) -> float:
    """ABAW expression criterion: ``0.67 * f1_macro + 0.33 * acc``."""
    return float(
        ABAW_EXPR_F1_WEIGHT * expr_metrics["f1_macro"] + ABAW_EXPR_ACC_WEIGHT * expr_metrics["acc"]
    )


def abaw_va_score(va_metrics: Mapping[str, Any]) -> float:
    """ABAW valence/arousal criterion: mean of the two CCCs, ``ccc_mean``."""
    return float(va_metrics["ccc_mean"])


# --------------------------------------------------------------------------------------------
# Whole-split evaluation and logging
# --------------------------------------------------------------------------------------------


def _task_mask(targets: Mapping[str, Any], task: str, shape: tuple[int, ...]) -> np.ndarray:
    m = targets.get(f"{task}_mask")
    if m is None:
        return np.ones(shape, dtype=bool)
    return np.asarray(m, dtype=bool)


def identity_metrics(
    subjects: ArrayLike, probs: ArrayLike, classes: Sequence[Union[int, str]]
) -> dict[str, Any]:
    """Top-1 accuracy of an identity classifier over the samples whose subject is a class.

    Args:
        subjects: (N,) subject ids (−1: unknown).
        probs: (N, S) scores over the S classes.
        classes: the S subject ids of the classes, in column order.

    Returns ``{"acc": float, "num_valid": int}``: samples of subjects outside ``classes``
    (identity-disjoint splits) are not counted; ``acc`` is 0.0 when none is left.
    """
    ids = np.asarray([int(c) for c in classes], dtype=np.int64)
    subjects = np.asarray(subjects, dtype=np.int64)
    probs = np.asarray(probs)
    known = np.isin(subjects, ids) & (subjects >= 0)
    if not known.any() or ids.size == 0:
        return {"acc": 0.0, "num_valid": 0}
    predicted = ids[np.argmax(probs[known], axis=1)]
    return {"acc": float(np.mean(predicted == subjects[known])), "num_valid": int(known.sum())}


def task_criterion(task: str, metrics: Mapping[str, Any]) -> float:
    """The challenge criterion of one task, the number ``val/score`` averages:

    au: EmotioNet 2020 / ABAW ½ (F1 + acc) (means over AUs); expr: ABAW 0.67 F1 + 0.33 acc;
    va: mean CCC; attr: mean accuracy (the CelebA convention); identity: top-1 accuracy.
    """
    if task == "au":
        return emotionet2020_score(metrics)
    if task == "expr":
        return abaw_expr_score(metrics)
    if task == "va":
        return abaw_va_score(metrics)
    if task == "attr":
        return float(metrics["acc_mean"])
    return float(metrics["acc"])


def overall_score(task_metrics: Mapping[str, Mapping[str, Any]]) -> float:
    """Mean of the evaluated tasks' criteria (:func:`task_criterion`); 0.0 with no task."""
    values = [task_criterion(t, m) for t, m in task_metrics.items() if t in EVALUATED_TASKS]
    return float(np.mean(values)) if values else 0.0


def evaluate_tasks(
    outputs: Mapping[str, ArrayLike],
    targets: Mapping[str, ArrayLike],
    label_names: Optional[Mapping[str, Sequence[str]]] = None,
    thresholds: Optional[Mapping[str, Union[float, ArrayLike]]] = None,
) -> dict[str, dict[str, Any]]:
    """Metrics of every task in ``outputs`` that has at least one valid target.

    Args:
        outputs: stacked predictions of a whole split, any subset of
            ``{"au": probs (N, C), "expr": logits or probs (N, K), "va": (N, 2),
            "attr": probs (N, A), "identity": probs (N, S)}``. Other keys are ignored.
        targets: ``{"au": (N, C), "au_mask": (N, C) bool, "expr": (N,), "expr_mask": (N,) bool,
            "va": (N, 2), "va_mask": (N,) bool, "attr": (N, A), "attr_mask": (N, A) bool,
            "subject": (N,)}``; a missing ``<task>_mask`` means all valid.
        label_names: optional ``{task: names}`` (e.g. AU names, ``EXPRESSIONS``); for
            ``identity`` the subject ids of the S classes (required to evaluate it).
        thresholds: optional ``{"au": float or (C,), "attr": float or (A,)}`` tuned thresholds.

    A task is skipped when its mask has no True entry (including zero-width tasks).

    Returns:
        ``{"au": multilabel_metrics(...) at 0.5 + {"emotionet2020", "abaw", "average_precision",
        "ap_mean", "criterion"} + (with thresholds) {"thresholds", "tuned": the same metrics
        at them}, "expr": expression_metrics(...) + {"abaw", "criterion"}, "va":
        va_metrics(...) + {"abaw", "criterion"}, "attr": like au, "identity":
        identity_metrics(...) + {"criterion"}}`` for the evaluated tasks; plain Python values.
    """
    label_names = label_names or {}
    thresholds = thresholds or {}
    if not isinstance(thresholds, Mapping):
        raise TypeError("evaluate_tasks: thresholds must be a dict {task: threshold(s)}")
    results: dict[str, dict[str, Any]] = {}
    for task in EVALUATED_TASKS:
        if task not in outputs or outputs[task] is None:
            continue
        out = np.asarray(outputs[task])
        if task == "identity":
            if "subject" not in targets or not label_names.get("identity"):
                continue
            m = identity_metrics(targets["subject"], out, label_names["identity"])
            if not m["num_valid"]:
                continue
            m["criterion"] = task_criterion(task, m)
            results[task] = m
            continue
        if task not in targets:
            raise KeyError(f"evaluate_tasks: outputs has {task!r} but targets has no {task!r}")
        tgt = np.asarray(targets[task])
        mask = _task_mask(targets, task, tgt.shape if task != "va" else tgt.shape[:1])
        if not mask.any():
            continue
        if task in MULTILABEL_TASKS:
            if out.ndim != 2 or out.shape[1] == 0:
                continue
            names = label_names.get(task)
            m = multilabel_metrics(tgt, out, mask, threshold=0.5, names=names)
            if not any(m["num_valid"]):
                continue
            ap = average_precision(tgt, out, mask)
            has = np.asarray(m["num_valid"]) > 0
            m["average_precision"] = _to_list(ap)
            m["ap_mean"] = _mean_over(ap, has)
            if task == "au":
                m["emotionet2020"] = emotionet2020_score(m)
                m["abaw"] = abaw_au_score(m)
            if thresholds.get(task) is not None:
                thr = np.broadcast_to(np.asarray(thresholds[task], dtype=np.float64),
                                      (out.shape[1],))
                tuned = multilabel_metrics(tgt, out, mask, threshold=thr, names=names)
                if task == "au":
                    tuned["emotionet2020"] = emotionet2020_score(tuned)
                    tuned["abaw"] = abaw_au_score(tuned)
                tuned["criterion"] = task_criterion(task, tuned)
                m["thresholds"] = _to_list(thr)
                m["tuned"] = tuned
        elif task == "expr":
            m = expression_metrics(
                tgt, out, mask, num_classes=out.shape[1], names=label_names.get(task)
            )
            m["abaw"] = abaw_expr_score(m)
        else:
            m = va_metrics(tgt, out, mask)
            m["abaw"] = abaw_va_score(m)
        m["criterion"] = task_criterion(task, m)
        results[task] = m
    return results


def flatten_metrics(task_metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar metrics as a flat ``{name: float}`` dict for loggers.

    Nested dicts become path components, so ``flatten_metrics(evaluate_tasks(...), "val")``
    gives ``val/au/f1_mean``, ``val/expr/f1_macro``, ``val/va/ccc_valence``, ... and
    ``flatten_metrics(au_metrics, "val/au")`` gives the same keys for one task. List values are
    skipped, except ``"f1"``, which becomes one key per label (``val/au/f1/AU12``) using the
    sibling ``"labels"`` list (indices if absent). Booleans and strings are skipped.
    """
    prefix = prefix.rstrip("/")

    def key(*parts: str) -> str:
        return "/".join(p for p in (prefix, *parts) if p)

    flat: dict[str, float] = {}
    for name, value in task_metrics.items():
        name = str(name)
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, key(name)))
        elif name == "f1" and isinstance(value, (list, tuple, np.ndarray)):
            labels = task_metrics.get("labels") or [str(i) for i in range(len(value))]
            for label, v in zip(labels, value):
                flat[key(name, str(label))] = float(v)
        elif isinstance(value, (bool, np.bool_, str)):
            continue
        elif isinstance(value, (int, float, np.integer, np.floating)):
            flat[key(name)] = float(value)
        elif isinstance(value, np.ndarray) and value.ndim == 0:
            flat[key(name)] = float(value)
    return flat
