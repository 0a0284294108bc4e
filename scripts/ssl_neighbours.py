"""What a trained network's feature space groups together: people or action units?

    python scripts/ssl_neighbours.py ROW_DIR [...] [--split test] [--k 10] [--pixels] [--out FILE]

Consistency and pseudo-label terms spread a network's predictions along the neighbourhoods of
its feature space (a pool face is pulled toward what the network says of faces that look the
same to it). Whether that can teach action units depends on what those neighbourhoods share.
For every face of a split this script finds its k nearest other faces (cosine similarity of the
features that enter the task heads, the network the run evaluates with) and reports, per row of
runs (mean ± std over its seeds):

- ``same person``: the fraction of the k neighbours showing the same person, and ``chance``,
  that fraction for k faces drawn at random (``(n_s − 1) / (N − 1)`` averaged over faces);
- ``kNN AP``: mean AU average precision of the neighbours' vote (score of AU c for face i =
  the fraction of its k neighbours with AU c), the AU information a neighbourhood carries;
- ``kNN AP, other people``: the same vote with the face's own person's images left out of its
  neighbours: the AU information that crosses identities — what an unseen person's faces
  can get from the labelled people through the features;
- ``head AP``: the run's own AU AP on the same split, for comparison;
- ``prevalence``: the mean AU positive rate, the AP of scores that carry no information.

``--pixels`` adds a row for the raw pixels (flattened, centred images) of the first run's split,
the similarity before any learning. Reads runs (``*/metrics.json`` below each ROW_DIR, or a run
directory), never writes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from affectlab.engine.evaluation import predict_split
from affectlab.inference import load_run
from affectlab.methods.heads import TaskHeads
from affectlab.metrics import average_precision
from affectlab.results import finished_runs, mean_std, publish_report

COLUMNS = ("same person", "chance", "kNN AP", "kNN AP, other people", "head AP",
           "prevalence")


def nearest_neighbours(features: np.ndarray, k: int,
                       exclude: np.ndarray | None = None) -> np.ndarray:
    """(N, k) indices of each row's k most cosine-similar other rows, most similar first.

    Args:
        features: (N, D) float; rows are L2-normalised here.
        exclude: optional (N,) group ids: rows of the same group are never neighbours.
    """
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    x = torch.nn.functional.normalize(x, dim=1)
    similarity = x @ x.T
    similarity.fill_diagonal_(-float("inf"))
    if exclude is not None:
        groups = torch.from_numpy(np.asarray(exclude))
        similarity[groups[:, None] == groups[None, :]] = -float("inf")
    if k >= len(x):
        raise ValueError(f"--k {k}: the split has {len(x)} faces; choose k < {len(x)}")
    return similarity.topk(k, dim=1).indices.numpy()


def neighbourhood_stats(features: np.ndarray, subject: np.ndarray, au: np.ndarray,
                        au_mask: np.ndarray, k: int) -> dict[str, float]:
    """The table's columns but ``head AP``, for one feature matrix (see the module doc).

    Args:
        features: (N, D); subject: (N,) person ids; au: (N, C) {0, 1}; au_mask: (N, C) bool.
    """
    subject = np.asarray(subject)
    neighbours = nearest_neighbours(features, k)
    same = float((subject[neighbours] == subject[:, None]).mean())
    counts = {s: n for s, n in zip(*np.unique(subject, return_counts=True))}
    chance = float(np.mean([(counts[s] - 1) / (len(subject) - 1) for s in subject]))
    has_positives = (au * au_mask).sum(0) > 0

    def vote_ap(idx: np.ndarray) -> float:
        votes = au[idx].mean(axis=1)                        # (N, C): neighbours' AU rates
        return float(average_precision(au, votes, au_mask)[has_positives].mean())

    prevalence = (au * au_mask).sum(0) / np.maximum(au_mask.sum(0), 1)
    return {"same person": same, "chance": chance, "kNN AP": vote_ap(neighbours),
            "kNN AP, other people": vote_ap(nearest_neighbours(features, k, exclude=subject)),
            "prevalence": float(prevalence[has_positives].mean())}


def head_features(run_dir: Path, split: str) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """Features entering the task heads of the run's evaluated network on ``split``, the
    split's targets, and the head's AU AP there."""
    run = load_run(run_dir, data=True)
    dataset = getattr(run.data, split)
    captured: list[torch.Tensor] = []
    hooks = [module.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
             for module in run.method.modules() if isinstance(module, TaskHeads)]
    if not hooks:
        raise SystemExit(f"{run_dir}: its method has no TaskHeads whose input features could "
                         "be read (this script reads baseline / mean teacher / pseudo-label "
                         "runs)")
    loader = DataLoader(dataset, batch_size=256, shuffle=False)
    outputs, targets = predict_split(run.method, loader, lambda b: run.transform(b, train=False),
                                     target_keys=("au", "au_mask", "subject"))
    for hook in hooks:
        hook.remove()
    if len(captured) != len(loader):
        raise SystemExit(f"{run_dir}: {len(captured)} head calls for {len(loader)} batches; "
                         "this script needs one TaskHeads call per prediction")
    features = torch.cat([c.float().flatten(1) for c in captured]).numpy()
    mask = targets["au_mask"].astype(bool)
    has_positives = (targets["au"] * mask).sum(0) > 0
    head_ap = float(average_precision(targets["au"], outputs["au"], mask)[has_positives].mean())
    return features, targets, head_ap


def pixel_features(run_dir: Path, split: str) -> np.ndarray:
    """(N, 3·H·W) raw pixels of ``split`` in [0, 1], each image centred on its mean."""
    dataset = getattr(load_run(run_dir, data=True).data, split)
    images = torch.cat([b["image"].float().flatten(1)
                        for b in DataLoader(dataset, batch_size=256, shuffle=False)])
    images = images / 255.0 if images.max() > 1.0 else images
    return (images - images.mean(dim=1, keepdim=True)).numpy()


def table(rows: dict[str, list[Path]], split: str, k: int, pixels: bool) -> str:
    lines = [f"Nearest {k} neighbours on the {split} split (cosine of head features; "
             "mean ± std over a row's runs)", "",
             "| row | runs | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    first_run = None
    for name, runs in rows.items():
        stats = []
        for run_dir in runs:
            features, targets, head_ap = head_features(run_dir, split)
            stats.append({**neighbourhood_stats(features, targets["subject"], targets["au"],
                                                targets["au_mask"].astype(bool), k),
                          "head AP": head_ap})
            first_run = first_run or (run_dir, targets)
        cells = []
        for column in COLUMNS:
            mean, std = mean_std([s[column] for s in stats])
            cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    if pixels and first_run is not None:
        run_dir, targets = first_run
        raw = neighbourhood_stats(pixel_features(run_dir, split), targets["subject"],
                                  targets["au"], targets["au_mask"].astype(bool), k)
        cells = [f"{100 * raw[c]:.1f}" if c in raw else "—" for c in COLUMNS]
        lines.append("| raw pixels | — | " + " | ".join(cells) + " |")
    lines += ["", "All in %. same person vs chance: how much the neighbourhoods are people; "
              "kNN AP, other people vs head AP: how much AU information crosses identities."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="+", type=Path)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--k", type=int, default=10, help="neighbours per face (default 10)")
    parser.add_argument("--pixels", action="store_true",
                        help="add a row for the raw pixels of the first run's split")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k {args.k}: at least 1")
    with torch.inference_mode():
        text = table({str(p): finished_runs(p) for p in args.rows}, args.split, args.k,
                     args.pixels)
    return publish_report(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
