"""The embedded synthetic benchmark as a dataset: faces with known AUs, expressions and
valence/arousal, generated once into ``dataset.root`` and read back like a real dataset.

The generative story and its parameters are in :mod:`.story`, the files on disk and their
reader in :mod:`.files`, the renderer in :mod:`.faces`, the pool and label variants in
:mod:`.variants`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affectlab.data.contract import (
    EXPRESSIONS,
    DataError,
    FaceData,
    FaceImageDataset,
    LabelTable,
    check_subject_exclusive,
)
from affectlab.data.sources.synthetic import story
from affectlab.data.sources.synthetic.faces import SUPPORTED_AUS
from affectlab.data.sources.synthetic.files import (
    LABELS_FILE,
    checked_generator_version,
    generate_dataset,
    generate_once,
    read_labels_csv,
    read_meta,
)
from affectlab.data.sources.synthetic.story import GenerationParams
from affectlab.data.sources.synthetic.variants import (
    POOL_LABELS,
    PoolWithRenderings,
    alternate_path,
    one_task_per_face,
    reveal_labels,
)

DEFAULT_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43)


class Synthetic:
    """The synthetic face benchmark (the generative story: :mod:`.story`).

    Args:
        name: dataset name in logs and results.
        root: folder holding one subfolder per parameter hash; relative paths are resolved
            against the current working directory at construction.
        seed: seed of the whole generation.
        image_size: side of the square images in pixels.
        aus: AU numbers exposed as labels, in this order (a subset of ``SUPPORTED_AUS``);
            rendering always uses every supported AU, so this does not change the images.
        num_subjects_<split>, images_per_subject_<split>: sizes of the labelled training set,
            the unlabelled pool, validation and test (subject-exclusive).
        rotation_deg, scale_jitter, shift_jitter, yaw_jitter: pose nuisances (uniform ranges:
            degrees, relative scale, fraction of the image side, yaw in [-1, 1]).
        illumination: strength of the illumination gradient and gain jitter.
        noise_std: pixel noise std (intensities in [0, 1]).
        clutter: maximum number of background shapes.
        occlusion_prob: probability of an occluder; AUs it covers become unknown.
        label_noise: probability that the annotator misses a present AU (false positives are
            balanced so that AU rates do not change).
        spontaneous_au_rate: per-image probability of each AU outside the expression prototype.
        blink_rate: per-image probability of AU43 (eyes closed) outside the prototypes.
        intensity_alpha, intensity_beta: Beta distribution of AU intensities (before the
            subject's expressivity).
        va_noise: std of the Gaussian noise on valence and arousal.
        au_effect_scale: multiplies every rendered AU displacement (difficulty: < 1 subtler).
        oracle: if True, the unlabelled pool keeps its labels and joins ``train`` (the upper
            bound of semi-supervised methods); ``unlabeled`` is then None.
        train_split: ``train`` (default) or ``pool``: train on the pool's faces instead of the
            labelled set (pre-training stages: another, larger set of other people, as
            MS-Celeb-1M or AffectNet are to EmotioNet); ``unlabeled`` is then None and val /
            test are unchanged.
        pool_labels: with ``train_split=pool``, the pool's labels revealed (``expr``, ``va``,
            ``au``; the subject ids always are, for identity pre-training); the others stay
            unknown.
        train_labels: ``all`` (default) or ``one_task``: each labelled training face keeps
            the labels of one task (AU, expression or valence/arousal, drawn per face), as
            most Aff-Wild2 frames do (:func:`one_task_per_face`).
        pool_renderings: 1 (default) or 2: each pool face is rendered a second time (same
            face and AU state, new pose, lighting, clutter, occluder and noise), read as the
            pool samples' ``image_alt`` (:class:`PoolWithRenderings`): a perturbation that
            changes exactly the generator's nuisances.
        pool_rendering_face: ``same`` (default) or ``other``: the second rendering shows the
            pool face's AU state on the face of a new person drawn for it (its own identity,
            same AU intensities): a perturbation that changes the identity too, which no
            augmentation of a real image can.
        pool_identities: ``new`` (default: the pool's subjects are people seen nowhere else) or
            ``shared`` (pool subject i is labelled subject i mod num_subjects_train, in new
            images: the pool carries the labelled identities, like unlabelled frames of the
            labelled videos).
        num_workers: processes for the one-off generation (0: in this process).
        generator_version: the generator's version the config expects (None: this code's,
            :data:`.story.GENERATOR_VERSION`); another is refused.

    ``aus``, ``oracle``, ``train_split``, ``pool_labels``, ``train_labels``, ``name``,
    ``root`` and ``num_workers`` do not change the generated files; every other argument does
    and is part of the folder's hash.
    """

    def __init__(
        self,
        *,
        name: str = "synthetic",
        root: str = "data/synthetic",
        seed: int = 0,
        image_size: int = 64,
        aus: list[int] | tuple[int, ...] = DEFAULT_AUS,
        num_subjects_train: int = 40,
        images_per_subject_train: int = 15,
        num_subjects_unlabeled: int = 200,
        images_per_subject_unlabeled: int = 40,
        num_subjects_val: int = 40,
        images_per_subject_val: int = 25,
        num_subjects_test: int = 80,
        images_per_subject_test: int = 25,
        rotation_deg: float = 10.0,
        scale_jitter: float = 0.08,
        shift_jitter: float = 0.05,
        yaw_jitter: float = 0.5,
        illumination: float = 0.35,
        noise_std: float = 0.03,
        clutter: int = 5,
        occlusion_prob: float = 0.15,
        label_noise: float = 0.03,
        spontaneous_au_rate: float = 0.03,
        blink_rate: float = 0.06,
        intensity_alpha: float = 2.0,
        intensity_beta: float = 2.0,
        va_noise: float = 0.12,
        au_effect_scale: float = 1.0,
        pool_identities: str = "new",
        expression_frequencies: list[float] | None = None,
        oracle: bool = False,
        train_split: str = "train",
        pool_labels: list[str] | tuple[str, ...] = ("expr",),
        train_labels: str = "all",
        pool_renderings: int = 1,
        pool_rendering_face: str = "same",
        num_workers: int = 0,
        generator_version: int | None = None,
    ) -> None:
        checked_generator_version("dataset.generator_version", generator_version,
                                  story.GENERATOR_VERSION)
        self.name = name
        root_path = Path(root).expanduser()
        self.root = root_path if root_path.is_absolute() else Path.cwd() / root_path
        self.aus = [int(a) for a in aus]
        unknown = [a for a in self.aus if a not in SUPPORTED_AUS]
        if unknown:
            raise ValueError(f"dataset.aus contains unsupported AU(s) {unknown}; the synthetic "
                             f"benchmark supports AUs {list(SUPPORTED_AUS)}")
        if len(set(self.aus)) != len(self.aus):
            raise ValueError(f"dataset.aus lists an AU twice: {self.aus}")
        self.oracle = bool(oracle)
        if train_split not in ("train", "pool"):
            raise ValueError(f"dataset.train_split={train_split!r}: use train (the labelled "
                             "set) or pool (the pool's faces, for pre-training)")
        unknown_labels = sorted(set(pool_labels) - set(POOL_LABELS))
        if unknown_labels:
            raise ValueError(f"dataset.pool_labels={list(pool_labels)}: {unknown_labels} not "
                             f"among {list(POOL_LABELS)} (subject ids are always revealed)")
        if train_split == "pool" and oracle:
            raise ValueError("dataset.train_split=pool and dataset.oracle=true exclude each "
                             "other: the oracle adds the labelled pool to the labelled set")
        if train_labels not in ("all", "one_task"):
            raise ValueError(f"dataset.train_labels={train_labels!r}: use all (every labelled "
                             "face carries AU, expression and valence/arousal labels) or "
                             "one_task (each carries one of them)")
        self.train_labels = train_labels
        self.train_split = train_split
        self.pool_labels = tuple(pool_labels)
        self.num_workers = int(num_workers)
        self.params = GenerationParams(
            seed=int(seed), image_size=int(image_size),
            num_subjects_train=int(num_subjects_train),
            images_per_subject_train=int(images_per_subject_train),
            num_subjects_unlabeled=int(num_subjects_unlabeled),
            images_per_subject_unlabeled=int(images_per_subject_unlabeled),
            num_subjects_val=int(num_subjects_val),
            images_per_subject_val=int(images_per_subject_val),
            num_subjects_test=int(num_subjects_test),
            images_per_subject_test=int(images_per_subject_test),
            rotation_deg=float(rotation_deg), scale_jitter=float(scale_jitter),
            shift_jitter=float(shift_jitter), yaw_jitter=float(yaw_jitter),
            illumination=float(illumination), noise_std=float(noise_std), clutter=int(clutter),
            occlusion_prob=float(occlusion_prob), label_noise=float(label_noise),
            spontaneous_au_rate=float(spontaneous_au_rate), blink_rate=float(blink_rate),
            intensity_alpha=float(intensity_alpha), intensity_beta=float(intensity_beta),
            va_noise=float(va_noise), au_effect_scale=float(au_effect_scale),
            pool_identities=str(pool_identities), pool_renderings=int(pool_renderings),
            pool_rendering_face=str(pool_rendering_face),
            expression_frequencies=(None if expression_frequencies is None
                                    else tuple(float(f) for f in expression_frequencies)),
        )
        self._validate()

    def _validate(self) -> None:
        p = self.params
        if p.image_size < 16:
            raise ValueError(f"dataset.image_size={p.image_size} is too small; use >= 16")
        for split, (subjects, images) in p.split_sizes().items():
            if subjects < 0 or images < 0:
                raise ValueError(f"dataset sizes of '{split}' must be >= 0, got {subjects} x "
                                 f"{images}")
            if split != "unlabeled" and subjects * images == 0:
                raise ValueError(f"dataset split '{split}' is empty ({subjects} subjects x "
                                 f"{images} images); it needs at least one image")
        for key in ("occlusion_prob", "label_noise", "spontaneous_au_rate", "blink_rate"):
            value = getattr(p, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"dataset.{key}={value} must be a probability in [0, 1]")
        for key in ("scale_jitter", "shift_jitter", "yaw_jitter", "illumination", "noise_std",
                    "va_noise", "au_effect_scale", "rotation_deg", "clutter"):
            if getattr(p, key) < 0:
                raise ValueError(f"dataset.{key}={getattr(p, key)} must be >= 0")
        if p.scale_jitter >= 1:
            raise ValueError(f"dataset.scale_jitter={p.scale_jitter} must be < 1")
        freqs = p.expression_frequencies
        if freqs is not None and (len(freqs) != len(EXPRESSIONS) or min(freqs) <= 0
                                  or abs(sum(freqs) - 1.0) > 1e-6):
            raise ValueError(f"dataset.expression_frequencies={list(freqs)}: give "
                             f"{len(EXPRESSIONS)} positive frequencies summing to 1, in the "
                             f"order {list(EXPRESSIONS)}")
        if p.intensity_alpha <= 0 or p.intensity_beta <= 0:
            raise ValueError("dataset.intensity_alpha and intensity_beta must be > 0")
        if p.pool_renderings not in (1, 2):
            raise ValueError(f"dataset.pool_renderings={p.pool_renderings}: 1 (one image per pool "
                             "face) or 2 (a second rendering of each, read as image_alt)")
        if p.pool_rendering_face not in ("same", "other"):
            raise ValueError(f"dataset.pool_rendering_face={p.pool_rendering_face!r}: use same "
                             "(the pool face's person) or other (a new person, same AU state)")
        if p.pool_rendering_face == "other" and p.pool_renderings == 1:
            raise ValueError("dataset.pool_rendering_face=other changes the pool's second "
                             "rendering, which dataset.pool_renderings=1 does not make: set "
                             "dataset.pool_renderings=2")
        if p.pool_identities not in ("new", "shared"):
            raise ValueError(f"dataset.pool_identities={p.pool_identities!r}: use new or shared")

    @property
    def dataset_dir(self) -> Path:
        """``root/<hash>``: where this parameter set's files live."""
        return self.root / self.params.digest()

    def generate(self) -> dict[str, Any]:
        """Generate the files unless a complete copy exists; return its meta dict.

        Generation writes into ``root/.tmp-<hash>-<pid>-<random>`` and renames it to
        ``root/<hash>`` when complete, so an interrupted run never leaves a folder that is
        trusted later, and concurrent runs (a sweep) cannot corrupt each other.
        """
        digest = self.params.digest()
        return generate_once(self.root, self.dataset_dir,
                             lambda: read_meta(self.dataset_dir, digest),
                             lambda folder: generate_dataset(self.params, folder,
                                                             self.num_workers))

    def check_images(self, tables: dict[str, LabelTable]) -> None:
        """Every image of every split readable
        (:func:`~affectlab.data.sources.image_checks.readable_images`: cheap checks, cached by path,
        size and mtime), so a damaged file stops the run before it trains rather than when the
        test split is first read."""
        from affectlab.data.sources.image_checks import readable_images
        from affectlab.data.sources.on_disk import Problems

        table = LabelTable.concat(list(tables.values()))
        paths = list(table.image_paths)
        if self.params.pool_renderings > 1:
            paths += [alternate_path(path) for path in tables["unlabeled"].image_paths]
        try:
            readable_images(table.root, paths, Problems("raise"),
                            cache_file=self.dataset_dir / "images_checked.npy")
        except DataError as err:
            message = str(err).split(" (set dataset.on_error")[0]
            raise DataError(f"{message}. The synthetic benchmark is generated: delete "
                            f"{self.dataset_dir} to regenerate it.") from None

    def build(self) -> FaceData:
        """Generate if needed, then read the labels and images back like a real dataset.

        ``mean``/``std`` are the per-channel statistics of the labelled training images (also
        in oracle mode), computed once during generation and stored in ``meta.json``.
        """
        meta = self.generate()
        tables = read_labels_csv(self.dataset_dir / LABELS_FILE, self.aus)
        # train and pool may share subjects (pool_identities=shared); val and test never do
        check_subject_exclusive({"train + unlabeled": LabelTable.concat(
            [tables["train"], tables["unlabeled"]]), "val": tables["val"], "test": tables["test"]})
        expected = meta["counts"]
        for split, table in tables.items():
            if len(table) != expected.get(split):
                raise DataError(f"{self.dataset_dir / LABELS_FILE} has {len(table)} '{split}' rows "
                                f"but meta.json says {expected.get(split)}; delete "
                                f"{self.dataset_dir} to regenerate it.")
        self.check_images(tables)
        size = self.params.image_size
        train, pool = tables["train"], tables["unlabeled"]
        if self.oracle:
            train = LabelTable.concat([train, pool])
            unlabeled = None
        elif self.train_split == "pool":
            train, unlabeled = reveal_labels(pool, self.pool_labels), None
        else:
            pool_class = (FaceImageDataset if self.params.pool_renderings == 1
                          else PoolWithRenderings)
            unlabeled = pool_class(pool.unlabeled(), image_size=size) if len(pool) else None
        if self.train_labels == "one_task":
            train = one_task_per_face(train, self.params.seed)
        return FaceData(
            name=self.name,
            train=FaceImageDataset(train, image_size=size),
            val=FaceImageDataset(tables["val"], image_size=size),
            test=FaceImageDataset(tables["test"], image_size=size),
            unlabeled=unlabeled,
            label_names={"au": [f"AU{au}" for au in self.aus], "expr": list(EXPRESSIONS),
                         "va": ["valence", "arousal"]},
            mean=tuple(float(v) for v in meta["mean"]),
            std=tuple(float(v) for v in meta["std"]),
        )
