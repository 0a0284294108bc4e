"""What the face-identity sets (LFW, MS-Celeb-1M) share: identity-only labels, identity-disjoint
splits, and a seeded draw of unlabelled faces.

These datasets code no AUs, expressions, valence/arousal or attributes: every ``*_mask`` of their
samples is False and the ``au`` / ``attr`` columns have zero width. ``subject`` is the identity
(index into ``DatasetIndex.subject_names``, the identity names as the layout writes them). They
serve

- as the unlabelled pool of another dataset (``pool=<name>``; the MLCR reproduction on CK+ drew
  2,000 random LFW images): :meth:`OnDiskDataset.pool` lends the protocol's ``unlabeled`` split,
  which ``pool_images`` makes a seeded random draw of that many images; and
- as identity-labelled face sets (face-recognition pre-training, identity-disjoint splits).

Protocols (``dataset.protocol``; a module may add official ones, e.g. LFW's View 1 / View 2):

- ``identities``: identities shuffled with ``seed`` and cut into train / val / test by
  ``train_fraction`` / ``val_fraction`` (test: the rest), see
  :func:`~affectlab.data.sources.on_disk.subject_split`.
- ``pool``: no train / val / test; ``unlabeled`` = ``pool_images`` images drawn from every image
  (all of them when ``pool_images`` is None). The literal reading of "2,000 random LFW images":
  the draw may take any identity, which is harmless for a pool of *another* dataset and is why
  :meth:`IdentityDataset.build` refuses this protocol (there is nothing to train or test on).

With any other protocol, ``pool_images`` draws the ``unlabeled`` split from the *train* split's
images (those images leave train): val and test stay identity-disjoint from everything trained
on, which the base's leakage check demands.

Draws are made over sorted sample ids with ``numpy.random.default_rng([seed, k])``, so they do
not depend on the order files were listed in, and the identity split and the pool draw use
separate streams (changing ``pool_images`` does not move identities between splits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from affectlab.data.contract import DataError, FaceData, LabelTable, empty_labels
from affectlab.data.sources.on_disk import (
    DatasetIndex,
    OnDiskDataset,
    SplitManifest,
    check_split_fractions,
    subject_split,
)

IDENTITY_PROTOCOLS: tuple[str, ...] = ("identities", "pool")
POOL = "pool"
LABELLED_SPLITS: tuple[str, ...] = ("train", "val", "test")
_POOL_STREAM = 1   # rng stream of the pool draw: default_rng([seed, _POOL_STREAM])


def identity_index(root: Path, paths: list[str], identities: list[str]) -> DatasetIndex:
    """An index of ``paths`` (relative to ``root``) whose only label is the identity.

    Args:
        root: the folder ``paths`` are relative to.
        paths: N image paths; they are also the sample ids.
        identities: N identity names, one per path.

    Returns:
        A :class:`DatasetIndex` with ``subject`` (N,) = index of the identity in the sorted
        ``subject_names``, every mask False, zero-width ``au`` / ``attr``, ``aus`` = [].
    """
    labels = empty_labels(len(paths))
    names = sorted(set(identities))
    position = {name: k for k, name in enumerate(names)}
    labels["subject"][:] = [position[i] for i in identities]
    table = LabelTable(root=root, image_paths=list(paths), **labels)
    return DatasetIndex(table, sample_ids=list(paths), subject_names=names, aus=[])


def ids_of_identities(index: DatasetIndex, identities: list[str] | set[str]) -> list[str]:
    """Sorted sample ids of every image of ``identities`` (names) in ``index``."""
    members = set(identities)
    wanted = [k for k, name in enumerate(index.subject_names) if name in members]
    rows = np.flatnonzero(np.isin(index.table.subject, np.asarray(wanted, dtype=np.int64)))
    return sorted(index.sample_ids[r] for r in rows)


def draw(ids: list[str], size: int | None, seed: int, what: str) -> list[str]:
    """``size`` of ``ids`` drawn without replacement with ``default_rng([seed, 1])`` over the
    sorted ids (all of them, sorted, when ``size`` is None); ``what`` names the candidates in
    the error raised when there are fewer than ``size``."""
    ordered = sorted(ids)
    if size is None:
        return ordered
    if size > len(ordered):
        raise DataError(f"dataset.pool_images={size}, but {what} holds only {len(ordered)} "
                        f"image(s); lower it or set it to null (every image).")
    rows = np.random.default_rng([seed, _POOL_STREAM]).choice(len(ordered), size, replace=False)
    return sorted(ordered[i] for i in rows)


class IdentityDataset(OnDiskDataset):
    """Base of the identity-only datasets (see the module docstring).

    Args (besides :class:`~affectlab.data.sources.on_disk.OnDiskDataset`'s; no ``aus``: none coded):
        protocol: one of the class's ``PROTOCOLS`` (``identities``, ``pool``, and the module's
            official ones).
        seed: seeds the identity split and the pool draw (independent of the training seed).
        train_fraction, val_fraction: shares of the identities in train and val for
            ``identities`` (test: the rest); protocols with an official test set use
            ``val_fraction`` for the share of their training identities held out as val.
        pool_images: size of the seeded ``unlabeled`` draw (None: no ``unlabeled`` split, or,
            for ``protocol=pool``, every image).
    """

    CODED_AUS: tuple[int, ...] = ()   # identities only: the au columns have zero width
    PROTOCOLS: tuple[str, ...] = IDENTITY_PROTOCOLS

    def __init__(self, *, name: str, root: str, image_size: int, on_error: str,
                 cache_dir: str, mean: list[float] | None, std: list[float] | None,
                 protocol: str, seed: int, train_fraction: float, val_fraction: float,
                 pool_images: int | None) -> None:
        super().__init__(name=name, root=root, aus=None, image_size=image_size,
                         on_error=on_error, cache_dir=cache_dir, mean=mean, std=std)
        if protocol not in self.PROTOCOLS:
            raise ValueError(f"dataset.protocol={protocol!r}: use one of {list(self.PROTOCOLS)}")
        if seed < 0:
            raise ValueError(f"dataset.seed={seed}: must be ≥ 0")
        check_split_fractions(train_fraction, val_fraction)
        if pool_images is not None and pool_images < 1:
            raise ValueError(f"dataset.pool_images={pool_images}: must be ≥ 1 (or null)")
        if image_size < 1:
            raise ValueError(f"dataset.image_size={image_size}: must be positive")
        self.protocol = protocol
        self.seed = seed
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.pool_images = pool_images

    # ------------------------------------------------------------------ hooks
    def protocol_ids(self, index: DatasetIndex) -> tuple[str, dict[str, list[str]]]:
        """The labelled splits of ``self.protocol`` (any but ``pool``) as sorted sample ids:
        ``(protocol name, {"train": ids, "val": ids, "test": ids})``. Default: ``identities``;
        a module with official protocols overrides it for those."""
        groups = subject_split(index.subject_names,
                               {"train": self.train_fraction, "val": self.val_fraction,
                                "test": 1.0 - self.train_fraction - self.val_fraction},
                               seed=self.seed)
        return (f"{self.name}/identities/seed{self.seed}",
                {split: ids_of_identities(index, members) for split, members in groups.items()})

    # --------------------------------------------------------------- protocol
    def split(self, index: DatasetIndex) -> SplitManifest:
        """The protocol's train / val / test and, with ``pool_images`` or ``protocol=pool``,
        ``unlabeled`` (see the module docstring), as sorted sample ids."""
        if self.protocol == POOL:
            ids = {split: [] for split in LABELLED_SPLITS}
            ids["unlabeled"] = draw(index.sample_ids, self.pool_images, self.seed,
                                    f"{self.name} ({self.root})")
            size = "all" if self.pool_images is None else self.pool_images
            return SplitManifest(f"{self.name}/pool{size}/seed{self.seed}", ids)
        protocol, ids = self.protocol_ids(index)
        if self.pool_images is not None:
            pool = draw(ids["train"], self.pool_images, self.seed,
                        f"the train split of {protocol}")
            taken = set(pool)
            ids = {**ids, "train": [i for i in ids["train"] if i not in taken], "unlabeled": pool}
            protocol = f"{protocol}/pool{self.pool_images}"
        return SplitManifest(protocol, ids)

    def build(self) -> FaceData:
        """The base's build; refused for ``protocol=pool``, which has nothing to train on."""
        if self.protocol == POOL:
            others = [p for p in self.PROTOCOLS if p != POOL]
            raise DataError(f"dataset.protocol=pool makes {self.name} an unlabelled pool only "
                            f"(no train / val / test split): use it as another dataset's pool "
                            f"(pool=...), or train on it with dataset.protocol one of {others}.")
        return super().build()

    def label_names(self) -> dict[str, list[str]]:
        # no AU, expression, valence/arousal or attribute labels: identities only
        return {}


__all__ = ["IDENTITY_PROTOCOLS", "IdentityDataset", "draw", "identity_index",
           "ids_of_identities"]
