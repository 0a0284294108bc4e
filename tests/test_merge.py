"""Merged datasets (data/merge.py) on fixture trees in the real layouts of Aff-Wild2, DISFA,
ExpW and AFEW-VA: one AU space by FACS number with each source's other AUs masked, tasks a
source does not contribute masked, each source's pixels through its own reader, down-sampling
in the manifest, subject leakage across sources refused, the bad-input messages, and the
shipped config (Deng et al.'s mixed data) trained through the packed store and the per-task
sampler."""

from __future__ import annotations

import numpy as np
import pytest

from affectlab.data.contract import DataError, FaceData
from affectlab.data.layouts.afew_va import write_layout as write_afew_va
from affectlab.data.layouts.affwild2 import write_layout as write_affwild2
from affectlab.data.layouts.disfa import write_layout as write_disfa
from affectlab.data.layouts.expw import write_layout as write_expw
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.merge import MergedDataset, facs_number
from affectlab.data.sources.affwild2 import AffWild2
from affectlab.data.sources.disfa import DISFA
from affectlab.train import run

from .conftest import compose_config

SIZE = 32
AFFWILD2_AUS = [1, 2, 4, 6, 12, 15, 20, 25]            # ABAW 2020
DISFA_AUS = [1, 2, 4, 6, 9, 12, 25, 26]                # the benchmark's 8


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("merge")
    roots = {"affwild2": base / "Aff-Wild2", "disfa": base / "DISFA", "expw": base / "ExpW",
             "afew_va": base / "AFEW-VA"}
    write_affwild2(layout_faces(8, 6, seed=5, image_size=SIZE), roots["affwild2"],
                   release="abaw2020")
    write_disfa(layout_faces(27, 2, seed=6, image_size=SIZE), roots["disfa"])
    write_expw(layout_faces(6, 4, seed=7, image_size=SIZE), roots["expw"])
    write_afew_va(layout_faces(10, 8, seed=8, image_size=SIZE), roots["afew_va"])
    return base, roots


def affwild2(roots, cache, **kwargs) -> AffWild2:
    return AffWild2(root=str(roots["affwild2"]), image_size=SIZE, cache_dir=str(cache),
                    **kwargs)


def disfa(roots, cache, **kwargs) -> DISFA:
    return DISFA(root=str(roots["disfa"]), image_size=SIZE, cache_dir=str(cache), **kwargs)


def test_facs_numbers_are_read_from_au_names():
    assert [facs_number(n) for n in ("AU12", "au1", "AU 25", "26", "brow", "AU12L")] == [
        12, 1, 25, 26, None, None]


def test_one_au_space_with_each_sources_other_aus_masked(trees, tmp_path):
    _, roots = trees
    alone = {"affwild2": affwild2(roots, tmp_path).build(),
             "disfa": disfa(roots, tmp_path).build()}
    merged = MergedDataset(name="au_mix", sources={
        "affwild2": {"dataset": affwild2(roots, tmp_path), "tasks": ["au", "expr", "va"]},
        "disfa": {"dataset": disfa(roots, tmp_path), "tasks": ["au"],
                  "splits": {"train": ["train", "val", "test"]}}}).build()
    assert isinstance(merged, FaceData)
    union = sorted(set(AFFWILD2_AUS) | set(DISFA_AUS))
    assert merged.label_names["au"] == [f"AU{a}" for a in union]
    train = merged.train.table
    from_disfa = np.array([p.startswith("disfa/") for p in train.image_paths])
    assert from_disfa.sum() == sum(len(getattr(alone["disfa"], s)) for s in
                                   ("train", "val", "test"))
    # val and test are Aff-Wild2's alone
    for split in ("val", "test"):
        paths = getattr(merged, split).table.image_paths
        assert paths and all(p.startswith("affwild2/") for p in paths)
        assert len(paths) == len(getattr(alone["affwild2"], split))
    column = {a: c for c, a in enumerate(union)}
    for au in union:
        c = column[au]
        assert train.au_mask[from_disfa, c].any() == (au in DISFA_AUS), au
        assert train.au_mask[~from_disfa, c].any() == (au in AFFWILD2_AUS), au
    # DISFA contributes AUs only: no expression or VA where it has none
    assert not train.expr_mask[from_disfa].any() and not train.va_mask[from_disfa].any()
    assert train.expr_mask[~from_disfa].any() and train.va_mask[~from_disfa].any()
    # the labels are the source's own, in their merged columns; the pixels its reader's
    source = alone["disfa"].train
    row = int(np.flatnonzero(from_disfa)[0])
    local = source.table.image_paths.index(train.image_paths[row].split("/", 1)[1])
    for k, au in enumerate(DISFA_AUS):
        assert train.au[row, column[au]] == source.table.au[local, k]
    assert np.array_equal(merged.train.load_pixels(row), source.load_pixels(local))
    # subjects of the two datasets never share an id
    subjects = {p.split("/")[0]: set() for p in train.image_paths}
    for path, subject in zip(train.image_paths, train.subject):
        subjects[path.split("/")[0]].add(int(subject))
    assert not subjects["disfa"] & subjects["affwild2"]
    assert merged.manifest.ids["train"] == train.image_paths
    assert "affwild2=affwild2/abaw2020" in merged.manifest.protocol


def test_a_large_source_is_down_sampled_and_the_manifest_says_so(trees, tmp_path):
    _, roots = trees
    merged = MergedDataset(name="au_mix", seed=3, sources={
        "affwild2": {"dataset": affwild2(roots, tmp_path), "tasks": ["au"]},
        "disfa": {"dataset": disfa(roots, tmp_path), "tasks": ["au"], "max_train": 10,
                  "splits": {"train": ["train"]}}}).build()
    paths = merged.train.table.image_paths
    assert sum(p.startswith("disfa/") for p in paths) == 10
    assert "down-sampled {'disfa/train': '10 of" in merged.manifest.protocol
    again = MergedDataset(name="au_mix", seed=3, sources={
        "affwild2": {"dataset": affwild2(roots, tmp_path), "tasks": ["au"]},
        "disfa": {"dataset": disfa(roots, tmp_path), "tasks": ["au"], "max_train": 10,
                  "splits": {"train": ["train"]}}}).build()
    assert again.train.table.image_paths == paths


def test_the_same_person_in_training_and_test_across_sources_is_refused(trees, tmp_path):
    _, roots = trees
    # two sources of one dataset share people: Aff-Wild2's validation videos train in the second
    with pytest.raises(DataError, match="subject .* of affwild2 is in the merge's training part "
                                        "\\(source more\\) and in its (val|test) part"):
        MergedDataset(name="leaky", sources={
            "more": {"dataset": affwild2(roots, tmp_path), "tasks": ["au"],
                     "splits": {"train": ["train", "val", "test"]}},
            "affwild2": {"dataset": affwild2(roots, tmp_path), "tasks": ["au"],
                         "splits": {"val": ["val"], "test": ["test"]}}}).build()


class Renamed:
    """A dataset whose AUs are named without FACS numbers."""

    def __init__(self, inner):
        self.inner = inner

    def build(self) -> FaceData:
        data = self.inner.build()
        data.label_names["au"] = [f"unit{k}" for k in range(len(data.label_names["au"]))]
        return data


def test_bad_sources_are_named(trees, tmp_path):
    _, roots = trees
    with pytest.raises(DataError, match="sources.disfa is said to contribute \\['expr'\\]"):
        MergedDataset(name="m", sources={
            "affwild2": {"dataset": affwild2(roots, tmp_path), "tasks": ["au"]},
            "disfa": {"dataset": disfa(roots, tmp_path), "tasks": ["au", "expr"]}}).build()
    with pytest.raises(DataError, match="sources.odd: its AU label 'unit0' carries no FACS"):
        MergedDataset(name="m", sources={
            "affwild2": {"dataset": affwild2(roots, tmp_path), "tasks": ["au"]},
            "odd": {"dataset": Renamed(disfa(roots, tmp_path)), "tasks": ["au"]}}).build()
    with pytest.raises(DataError, match="other sizes"):
        MergedDataset(name="m", sources={
            "affwild2": {"dataset": affwild2(roots, tmp_path), "tasks": ["au"]},
            "disfa": {"dataset": DISFA(root=str(roots["disfa"]), image_size=48,
                                       cache_dir=str(tmp_path)), "tasks": ["au"]}}).build()
    with pytest.raises(DataError, match="no source feeds the merged 'val' split"):
        MergedDataset(name="m", sources={
            "disfa": {"dataset": disfa(roots, tmp_path), "tasks": ["au"],
                      "splits": {"train": ["train"], "test": ["test"]}}}).build()
    with pytest.raises(ValueError, match="sources.disfa.tasks=\\['pose'\\]"):
        MergedDataset(name="m", sources={"disfa": {"dataset": disfa(roots, tmp_path),
                                                   "tasks": ["pose"]}})
    with pytest.raises(ValueError, match="sources.disfa.dataset: name a dataset config"):
        MergedDataset(name="m", sources={"disfa": {"tasks": ["au"]}})


def test_the_papers_mixed_data_trains_with_the_per_task_sampler(trees, tmp_path):
    base, roots = trees
    sources = [f"dataset.sources.{name}.dataset.{key}={value}"
               for name, root in roots.items()
               for key, value in (("root", root), ("cache_dir", tmp_path / "cache"))]
    cfg = compose_config(base, ["dataset=affwild2_mixed", *sources, f"dataset.image_size={SIZE}",
                                "sampler=per_task",
                                "model=small_cnn", "model.widths=[8,16]", "method=baseline",
                                "method.heads.va.form=bins", "trainer.max_steps=3",
                                f"packed_dir={tmp_path / 'packed'}"])
    result = run(cfg, tmp_path / "run")
    assert set(result["tasks"]) == {"au", "expr", "va"}
    assert result["sampler"]["sampler"] == "per_task"
    assert list((tmp_path / "packed").glob("affwild2_mixed-train-*.npy"))
    manifest = (tmp_path / "run" / "split_manifest.json").read_text()
    assert "merge/affwild2_mixed" in manifest and "expw/" in manifest and "afew_va/" in manifest
