"""Several datasets read as one: each source contributes the tasks it is said to label.

The everyday case of affect research (Deng et al., 2020): Aff-Wild2's frames are annotated
for some tasks each, and auxiliary sets label one task each — DISFA AUs, ExpW expressions,
AFEW-VA valence/arousal. A merge is a dataset config (``configs/dataset/affwild2_mixed.yaml``)::

    defaults:                                   # each source a normal dataset config
      - affwild2@sources.affwild2.dataset
      - disfa@sources.disfa.dataset
      - _self_
    _target_: affectlab.data.merge.MergedDataset
    name: affwild2_disfa
    sources:
      affwild2: {tasks: [au, expr, va]}
      disfa: {tasks: [au], splits: {train: [train, val, test]}, max_train: 20000}

Every source is built as on its own — its files, split protocol, crops, known gaps — and then:

- **one label space**: AUs aligned by FACS number (a source's AU names must carry one, e.g.
  ``AU12``; the merged AUs are the union in ascending order, or ``aus``), a source's AUs that
  it does not code masked; expressions in the framework's order and VA as read; every task a
  source does not contribute masked (even where it has labels);
- **splits**: per source, which of its splits feed each merged split (``splits``; default the
  same name; a source given only ``{train: [...]}`` adds training data only), its training
  part down-sampled to ``max_train`` samples (seeded by ``seed``);
- **subjects**: ids live in a namespace per dataset (its ``name``: two sources of one dataset
  share people); a person in the training part of the merge and in its validation or test
  part — within a source or across two — is refused, naming both places;
- **images**: each source's own reader (crop, alignment) gives its pixels; every source must
  give the same image size; one normalisation (``mean``/``std``, default the first source's)
  applies to the merge, and a source trained with other statistics is said so in the log;
- **the split manifest** lists ``<source>:<image path>`` per merged split, its protocol the
  sources' protocols and the down-sampling.

The packed store, the samplers (``sampler=per_task``) and every method see an ordinary
:class:`~affectlab.data.contract.FaceData`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from affectlab.data.contract import (
    EXPRESSIONS,
    DataError,
    FaceData,
    FaceImageDataset,
    LabelTable,
    empty_labels,
)
from affectlab.data.packed import reading_settings
from affectlab.data.sources.on_disk import SplitManifest

log = logging.getLogger("affectlab")

TASKS = ("au", "attr", "expr", "va")
SPLITS = ("train", "val", "test", "unlabeled")
FACS = re.compile(r"^(?:AU)?\s*(\d+)$", re.IGNORECASE)


@dataclass
class Source:
    """One dataset of a merge: what it contributes and which of its splits go where."""

    name: str
    dataset: Any                        # an object with build() -> FaceData (a dataset config)
    tasks: list[str]
    splits: dict[str, list[str]]        # merged split → this source's splits feeding it
    max_train: int | None = None


def au_names(data: FaceData) -> list[str]:
    """A dataset's AU label names (its column numbers when it names none)."""
    width = data.train.table.au.shape[1]
    return [str(n) for n in (data.label_names.get("au") or [str(i) for i in range(width)])]


def facs_number(name: str) -> int | None:
    """The FACS number of an AU label name (``AU12``, ``au12``, ``12``), or None."""
    match = FACS.match(str(name).strip())
    return int(match.group(1)) if match else None


class MergedSplit(FaceImageDataset):
    """Rows of several sources' splits in one table; each row's pixels come from its own
    source's reader (:meth:`load_pixels`), so crops and alignment stay the source's.

    ``image_paths`` are ``<source>/<path in the source>``; ``sources_key`` (the sources' roots
    and reading settings) keys the packed store's file with them."""

    def __init__(self, table: LabelTable, *, image_size: int | None,
                 readers: Sequence[tuple[str, FaceImageDataset]], part: np.ndarray,
                 local_row: np.ndarray) -> None:
        super().__init__(table, image_size=image_size)
        self.names = [name for name, _ in readers]
        self.readers = [reader for _, reader in readers]
        self.part = part
        self.local_row = local_row
        self.sources_key = "|".join(
            f"{name}@{Path(reader.table.root).resolve()}:{reading_settings(reader)}"
            for name, reader in readers)

    def load_pixels(self, row: int, relative: str | None = None) -> np.ndarray:
        if relative is not None:
            raise DataError("a merged split reads each sample's own image only")
        return self.readers[int(self.part[row])].load_pixels(int(self.local_row[row]))


class MergedDataset:
    """``dataset=<merge>``: see the module docstring.

    Args:
        name: the merge's name (run directories, the packed store).
        sources: ``{source name: {dataset: <dataset object>, tasks: [...], splits: {merged
            split: [source splits]}, max_train: int}}``; ``tasks`` is required.
        image_size: the side of every source's faces (set in each source's config; None:
            the sources' own, which must agree).
        aus: the merged AUs by FACS number, in this order (None: the union, ascending).
        mean, std: the merge's normalisation (None: the first source's).
        seed: the draw of the down-sampling (not the training seed).
    """

    def __init__(self, *, name: str, sources: Mapping[str, Mapping[str, Any]],
                 image_size: int | None = None, aus: list[int] | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 seed: int = 0) -> None:
        if not sources:
            raise ValueError(f"dataset {name}: a merge needs at least one source under "
                             "dataset.sources")
        self.name, self.seed = name, int(seed)
        self.image_size = None if image_size is None else int(image_size)
        self.aus = None if aus is None else [int(a) for a in aus]
        self.mean, self.std = mean, std
        self.sources = [self._source(str(key), dict(spec.items()))
                        for key, spec in sources.items()]

    def _source(self, key: str, spec: dict[str, Any]) -> Source:
        where = f"dataset.sources.{key}"
        unknown = set(spec) - {"dataset", "tasks", "splits", "max_train"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}: a source has dataset, "
                             "tasks, splits and max_train")
        dataset = spec.get("dataset")
        if isinstance(dataset, (Mapping, DictConfig)) and "_target_" in dataset:
            from affectlab.config import instantiate_checked
            node = dataset if isinstance(dataset, DictConfig) else OmegaConf.create(dataset)
            if self.image_size is not None:      # every source reads faces of the merge's size
                node = OmegaConf.merge(node, {"image_size": self.image_size})
            dataset = instantiate_checked(node, f"{where}.dataset")
        if dataset is None or not hasattr(dataset, "build"):
            raise ValueError(f"{where}.dataset: name a dataset config for it (in the merge's "
                             f"defaults: - <dataset>@sources.{key}.dataset)")
        tasks = [str(t) for t in spec.get("tasks") or []]
        if not tasks or any(t not in TASKS for t in tasks):
            raise ValueError(f"{where}.tasks={tasks}: the tasks this source contributes, some "
                             f"of {list(TASKS)}")
        splits = {s: [s] for s in SPLITS}
        if spec.get("splits") is not None:
            splits = {str(k): [str(v) for v in (vs or [])] for k, vs in spec["splits"].items()}
        for merged, feeding in splits.items():
            if merged not in SPLITS or any(s not in SPLITS for s in feeding):
                raise ValueError(f"{where}.splits={splits}: merged split → the source's splits, "
                                 f"both among {list(SPLITS)}")
        max_train = spec.get("max_train")
        if max_train is not None and (isinstance(max_train, bool) or int(max_train) < 1):
            raise ValueError(f"{where}.max_train={max_train}: a number of samples ≥ 1, or null")
        return Source(name=key, dataset=dataset, tasks=tasks, splits=splits,
                      max_train=None if max_train is None else int(max_train))

    # ---------------------------------------------------------------- building
    def build(self) -> FaceData:
        built = {source.name: source.dataset.build() for source in self.sources}
        self._ids: dict[tuple[str, int], int] = {}   # (namespace, subject) → merged id
        self._check_tasks(built)
        aus = self._au_space(built)
        attrs = self._attr_space(built)
        sizes = {name: data.train.image_size for name, data in built.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(f"dataset {self.name}: the sources give faces of other sizes "
                            f"({sizes}); set the same image_size in each "
                            "(dataset.sources.<name>.dataset.image_size)")
        rng = np.random.default_rng([self.seed, 17])
        parts: dict[str, list[tuple[str, FaceImageDataset, np.ndarray]]] = {s: [] for s in SPLITS}
        downsampled: dict[str, str] = {}
        for source in self.sources:
            data = built[source.name]
            for merged, feeding in source.splits.items():
                for split in feeding:
                    reader = getattr(data, split)
                    if reader is None or not len(reader):
                        continue
                    rows = np.arange(len(reader))
                    if merged == "train" and source.max_train and len(rows) > source.max_train:
                        rows = np.sort(rng.choice(rows, source.max_train, replace=False))
                        downsampled[f"{source.name}/{split}"] = f"{len(rows)} of {len(reader)}"
                    parts[merged].append((source.name, reader, rows))
        # subject ids live in a namespace per dataset: two sources of one dataset share people
        namespaces = {name: data.name for name, data in built.items()}
        splits = {split: self._merged_split(entries, built, aus, attrs, namespaces)
                  for split, entries in parts.items() if entries}
        for required in ("train", "val", "test"):
            if required not in splits:
                raise DataError(f"dataset {self.name}: no source feeds the merged '{required}' "
                                "split; give one source's splits to it "
                                "(dataset.sources.<name>.splits)")
        self._check_subjects(splits)
        mean, std = self._normalisation(built)
        unlabeled = splits.get("unlabeled")
        if unlabeled is not None:
            hidden = unlabeled.table.unlabeled()
            unlabeled = MergedSplit(hidden, image_size=unlabeled.image_size,
                                    readers=list(zip(unlabeled.names, unlabeled.readers)),
                                    part=unlabeled.part, local_row=unlabeled.local_row)
        manifest = SplitManifest(
            protocol=f"merge/{self.name}: " + "; ".join(
                f"{name}={data.manifest.protocol if data.manifest is not None else data.name}"
                for name, data in built.items())
            + (f"; down-sampled {downsampled}" if downsampled else ""),
            ids={split: list(dataset.table.image_paths) for split, dataset in splits.items()})
        label_names: dict[str, list[str]] = {}
        if aus:
            label_names["au"] = [f"AU{a}" for a in aus]
        if attrs:
            label_names["attr"] = list(attrs)
        label_names["expr"] = list(EXPRESSIONS)
        label_names["va"] = ["valence", "arousal"]
        return FaceData(name=self.name, train=splits["train"], val=splits["val"],
                        test=splits["test"], unlabeled=unlabeled, label_names=label_names,
                        mean=mean, std=std, manifest=manifest,
                        skipped=sum(d.skipped for d in built.values()),
                        known_gaps=sum(d.known_gaps for d in built.values()))

    def _check_tasks(self, built: dict[str, FaceData]) -> None:
        for source in self.sources:
            data = built[source.name]
            if set(data.input_keys) != {"image"}:
                raise DataError(f"dataset.sources.{source.name}: its samples carry "
                                f"{list(data.input_keys)}; a merge reads images only")
            labelled = data.tasks
            missing = [t for t in source.tasks if t not in labelled]
            if missing:
                raise DataError(f"dataset.sources.{source.name} is said to contribute {missing}, "
                                f"but dataset '{data.name}' labels {labelled} in its training "
                                f"split; drop {missing} from dataset.sources.{source.name}.tasks "
                                "or read that task's annotations")
            if "expr" in source.tasks and \
                    list(data.label_names.get("expr") or EXPRESSIONS) != list(EXPRESSIONS):
                raise DataError(f"dataset.sources.{source.name}: its expressions are "
                                f"{data.label_names['expr']}, not the framework's order "
                                f"{list(EXPRESSIONS)}")

    def _au_space(self, built: dict[str, FaceData]) -> list[int]:
        """The merged AUs by FACS number; each contributing source's names must carry one."""
        union: set[int] = set()
        for source in self.sources:
            if "au" not in source.tasks:
                continue
            data = built[source.name]
            names = au_names(data)
            numbers = [facs_number(n) for n in names]
            if None in numbers:
                bad = names[numbers.index(None)]
                raise DataError(f"dataset.sources.{source.name}: its AU label '{bad}' carries no "
                                f"FACS number (its AUs: {names}), so it cannot be aligned with "
                                "the other sources' AUs; name its AUs AU<number>")
            union |= set(numbers)
        if self.aus is None:
            return sorted(union)
        absent = [a for a in self.aus if a not in union]
        if absent:
            raise DataError(f"dataset.aus={self.aus}: no source codes AU(s) {absent} (the "
                            f"sources code {sorted(union)})")
        return list(self.aus)

    def _attr_space(self, built: dict[str, FaceData]) -> list[str]:
        names: list[str] | None = None
        for source in self.sources:
            if "attr" not in source.tasks:
                continue
            theirs = list(built[source.name].label_names.get("attr") or [])
            if names is not None and theirs != names:
                raise DataError(f"dataset.sources.{source.name}: its attributes {theirs} differ "
                                f"from another source's {names}; attributes merge only when "
                                "they are the same")
            names = theirs
        return names or []

    def _merged_split(self, entries: list[tuple[str, FaceImageDataset, np.ndarray]],
                      built: dict[str, FaceData], aus: list[int], attrs: list[str],
                      namespaces: dict[str, str]) -> MergedSplit:
        tables, part, local, readers = [], [], [], []
        contributes = {s.name: s.tasks for s in self.sources}
        for k, (name, reader, rows) in enumerate(entries):
            source_table = reader.table.subset(rows)
            table = self._aligned(source_table, contributes[name], aus, attrs, built[name])
            table.subject = np.where(source_table.subject >= 0,
                                     self._global_subject(namespaces[name], source_table.subject),
                                     -1)
            table.image_paths = [f"{name}/{p}" for p in source_table.image_paths]
            tables.append(table)
            part.append(np.full(len(rows), k, dtype=np.int64))
            local.append(rows.astype(np.int64))
            readers.append((name, reader))
        merged = LabelTable.concat(tables)
        return MergedSplit(merged, image_size=entries[0][1].image_size, readers=readers,
                           part=np.concatenate(part), local_row=np.concatenate(local))

    @staticmethod
    def _aligned(table: LabelTable, tasks: list[str], aus: list[int], attrs: list[str],
                 data: FaceData) -> LabelTable:
        """``table`` in the merged label space: the source's AUs in their merged columns, every
        task it does not contribute masked."""
        n = len(table)
        labels = empty_labels(n, num_aus=len(aus), num_attrs=len(attrs))
        if "au" in tasks and aus:
            column = {facs_number(a): c for c, a in enumerate(au_names(data))}
            for c, au in enumerate(aus):
                if au in column:
                    labels["au"][:, c] = table.au[:, column[au]]
                    labels["au_mask"][:, c] = table.au_mask[:, column[au]]
        if "attr" in tasks and attrs:
            labels["attr"], labels["attr_mask"] = table.attr, table.attr_mask
        if "expr" in tasks:
            labels["expr"], labels["expr_mask"] = table.expr, table.expr_mask
        if "va" in tasks:
            labels["va"], labels["va_mask"] = table.va, table.va_mask
        labels["labeled"] = table.labeled
        labels["subject"] = table.subject
        return LabelTable(root=".", image_paths=list(table.image_paths), **labels)

    def _global_subject(self, namespace: str, subjects: np.ndarray) -> np.ndarray:
        """Subject ids made unique across namespaces: (namespace, id) → one integer each,
        numbered in order of first sight (stable for a given merge config)."""
        ids = self._ids
        return np.array([ids.setdefault((namespace, int(s)), len(ids)) for s in subjects],
                        dtype=np.int64)

    def _check_subjects(self, splits: dict[str, MergedSplit]) -> None:
        """Nobody in the training part (train + unlabeled) and in val or test, or in both
        val and test; the message names the sources and splits on both sides."""
        where: dict[int, tuple[str, str]] = {}
        owner = {value: key for key, value in self._ids.items()}
        for split in ("train", "unlabeled", "val", "test"):
            dataset = splits.get(split)
            if dataset is None:
                continue
            group = "training" if split in ("train", "unlabeled") else split
            sources = np.array(dataset.names)[dataset.part]
            for subject, source in zip(dataset.table.subject, sources):
                if subject < 0:
                    continue
                seen = where.get(int(subject))
                if seen is not None and seen[0] != group:
                    namespace, original = owner[int(subject)]
                    raise DataError(
                        f"dataset {self.name}: subject {original} of {namespace} is in the "
                        f"merge's {seen[0]} part (source {seen[1]}) and in its {group} part "
                        f"(source {source}): the merged splits must not share people. Give "
                        "the sources split protocols that agree, or feed fewer of a source's "
                        "splits (dataset.sources.<name>.splits)")
                where.setdefault(int(subject), (group, str(source)))

    def _normalisation(self, built: dict[str, FaceData]
                       ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        first = next(iter(built.values()))
        mean = tuple(float(v) for v in (self.mean if self.mean is not None else first.mean))
        std = tuple(float(v) for v in (self.std if self.std is not None else first.std))
        for name, data in built.items():
            if not (np.allclose(data.mean, mean) and np.allclose(data.std, std)):
                log.warning("dataset %s: source %s is normalised with the merge's mean %s and "
                            "std %s, not its own %s / %s", self.name, name, mean, std,
                            tuple(data.mean), tuple(data.std))
        return mean, std


__all__ = ["MergedDataset", "MergedSplit", "Source", "facs_number"]
