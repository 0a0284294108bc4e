"""What one true label says about the others on the synthetic clip benchmark.

    python scripts/clip_label_ceilings.py [--out FILE.md] [overrides of dataset=synthetic_clips]

A network that reads the sound can know arousal (the voice's level and pitch follow it) and,
through the story's links, what arousal predicts: the expression (each expression has its
valence/arousal target, ``story.VA_MEANS``) and the AUs (each expression has its prototype
AUs). This script measures those links on the labels alone, no network: a predictor fitted on
the training split's labelled frames that sees one true quantity of a test frame — its arousal
(in 40 equal bins over [−1, 1]), its valence and arousal (10 × 10 bins) or its expression —
and predicts the training frames' majority expression and AU positive rates for that bin or
class. Its test scores (expression criterion 0.67·F1 + 0.33·Acc, AU AP) are ceilings of what
that one quantity carries: an audio-only network well above the arousal ceiling reads more than
arousal from the sound (the timbre), one at it reads arousal alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from affectlab.build import compose_config
from affectlab.config import instantiate_checked
from affectlab.data.contract import LabelTable
from affectlab.metrics import abaw_expr_score, average_precision, expression_metrics
from affectlab.utils import atomic_write_text

AROUSAL_BINS = 40
VA_BINS = 10


def bin_of(values: np.ndarray, bins: int) -> np.ndarray:
    """(N,) values in [−1, 1] → (N,) bin index in [0, bins)."""
    return np.clip(((values + 1) / 2 * bins).astype(np.int64), 0, bins - 1)


def ceiling(train: LabelTable, test: LabelTable, train_key: np.ndarray,
            test_key: np.ndarray, num_classes: int) -> dict[str, float]:
    """Expression criterion and AU AP (%) of predicting, per key value, the training frames'
    majority expression and AU positive rates (keys unseen in training: the overall ones)."""
    expr_known = train.expr_mask
    majority = np.bincount(train.expr[expr_known], minlength=num_classes).argmax()
    au_prior = (train.au * train.au_mask).sum(0) / np.maximum(train.au_mask.sum(0), 1)
    scores = np.zeros((len(test), num_classes))
    rates = np.tile(au_prior, (len(test), 1))
    scores[:, majority] = 1.0
    for key in np.unique(test_key):
        rows, seen = test_key == key, train_key == key
        if (seen & expr_known).any():
            counts = np.bincount(train.expr[seen & expr_known], minlength=num_classes)
            scores[rows] = 0.0
            scores[rows, counts.argmax()] = 1.0
        mask = train.au_mask[seen]
        if mask.any():
            known = mask.sum(0)
            rates[rows] = np.where(known > 0, (train.au[seen] * mask).sum(0) / np.maximum(known, 1),
                                   au_prior)
    expr = expression_metrics(test.expr, scores, test.expr_mask, num_classes=num_classes)
    return {"expression criterion": 100 * abaw_expr_score(expr),
            "AU AP": 100 * float(average_precision(test.au, rates, test.au_mask).mean())}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (dataset.*)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    cfg = compose_config("train", ["dataset=synthetic_clips", *args.overrides])
    data = instantiate_checked(cfg.dataset, "dataset").build()
    train, test = data.train.table, data.test.table
    train = train.subset(train.labeled)
    classes = len(data.spec().label_names["expr"])
    both = {split: bin_of(t.va[:, 0], VA_BINS) * VA_BINS + bin_of(t.va[:, 1], VA_BINS)
            for split, t in (("train", train), ("test", test))}
    rows = {
        "nothing (the training majority / AU rates)": (np.zeros(len(train)), np.ones(len(test))),
        "the true arousal": (bin_of(train.va[:, 1], AROUSAL_BINS),
                             bin_of(test.va[:, 1], AROUSAL_BINS)),
        "the true valence and arousal": (both["train"], both["test"]),
        "the true expression": (train.expr, test.expr),
    }
    lines = ["| a predictor that knows | expression criterion | AU AP |", "| --- | --- | --- |"]
    for label, (train_key, test_key) in rows.items():
        result = ceiling(train, test, train_key, test_key, classes)
        lines.append(f"| {label} | {result['expression criterion']:.1f} | "
                     f"{result['AU AP']:.1f} |")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
    return table


if __name__ == "__main__":
    main()
