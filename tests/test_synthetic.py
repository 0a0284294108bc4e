"""Tests of the synthetic benchmark: the story, the renderer, the cache and the read-back path."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import affectlab.data.sources.synthetic.benchmark as S
import affectlab.data.sources.synthetic.files as F
import affectlab.data.sources.synthetic.story as story
from affectlab.config import check_config
from affectlab.data.contract import EXPRESSIONS, DataError
from affectlab.data.sources.synthetic.drawing import render_face
from affectlab.data.sources.synthetic.faces import (
    FACE_CENTER_Y,
    FACE_HALF_HEIGHT,
    SUPPORTED_AUS,
    Nuisance,
    Occluder,
    occluded_aus,
    random_face,
)

REPO = Path(__file__).resolve().parents[1]

TINY = dict(image_size=32,
            num_subjects_train=3, images_per_subject_train=4,
            num_subjects_unlabeled=3, images_per_subject_unlabeled=4,
            num_subjects_val=3, images_per_subject_val=4,
            num_subjects_test=3, images_per_subject_test=4)


def tiny(root: Path, **overrides) -> S.Synthetic:
    return S.Synthetic(root=str(root), **{**TINY, **overrides})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    dataset = tiny(tmp_path_factory.mktemp("tiny"))
    return dataset, dataset.build()


@pytest.fixture(scope="module")
def moderate(tmp_path_factory):
    """~600 labelled images at 32 px with frequent occluders, for label statistics."""
    dataset = S.Synthetic(root=str(tmp_path_factory.mktemp("moderate")), image_size=32,
                          num_subjects_train=30, images_per_subject_train=20,
                          num_subjects_unlabeled=0, images_per_subject_unlabeled=0,
                          num_subjects_val=1, images_per_subject_val=1,
                          num_subjects_test=1, images_per_subject_test=1, occlusion_prob=0.5)
    return dataset, dataset.build()


# ------------------------------------------------------------------------------------------
# Determinism and the cache


def test_same_seed_gives_identical_files_other_seed_differs(tmp_path):
    a, b = tiny(tmp_path / "a"), tiny(tmp_path / "b")
    a.build(), b.build()
    assert a.dataset_dir.name == b.dataset_dir.name
    csv_a = (a.dataset_dir / F.LABELS_FILE).read_bytes()
    assert csv_a == (b.dataset_dir / F.LABELS_FILE).read_bytes()
    images = sorted((a.dataset_dir / "images").rglob("*.png"))
    assert len(images) == 48
    for image in images[::7]:
        assert image.read_bytes() == (b.dataset_dir / image.relative_to(a.dataset_dir)).read_bytes()

    c = tiny(tmp_path / "c", seed=1)
    c.build()
    assert c.dataset_dir.name != a.dataset_dir.name
    assert (c.dataset_dir / F.LABELS_FILE).read_bytes() != csv_a
    first = "images/train/00000_000.png"
    assert (c.dataset_dir / first).read_bytes() != (a.dataset_dir / first).read_bytes()


def test_worker_processes_give_identical_files(tmp_path):
    serial, parallel = tiny(tmp_path / "serial"), tiny(tmp_path / "parallel", num_workers=2)
    serial.generate(), parallel.generate()
    for path in [F.LABELS_FILE, "images/test/00011_003.png", "images/unlabeled/00004_002.png"]:
        assert ((serial.dataset_dir / path).read_bytes()
                == (parallel.dataset_dir / path).read_bytes())


def test_smaller_config_reproduces_first_images(tmp_path):
    small, large = tiny(tmp_path / "s"), tiny(tmp_path / "l", images_per_subject_train=6)
    small.generate(), large.generate()
    path = "images/train/00002_003.png"
    assert (small.dataset_dir / path).read_bytes() == (large.dataset_dir / path).read_bytes()


def test_parameter_change_gives_new_folder_and_reuse_does_not_regenerate(tmp_path, monkeypatch):
    dataset = tiny(tmp_path)
    dataset.build()
    folder = dataset.dataset_dir
    meta = (folder / F.META_FILE).read_bytes()
    for change in [dict(rotation_deg=5.0), dict(noise_std=0.0), dict(image_size=40),
                   dict(num_subjects_val=4), dict(au_effect_scale=0.5)]:
        assert tiny(tmp_path, **change).dataset_dir != folder, change
    # labels exposed, the oracle switch and the workers do not change the files
    for same in [dict(aus=[12, 1]), dict(oracle=True), dict(num_workers=2), dict(name="x")]:
        assert tiny(tmp_path, **same).dataset_dir == folder, same
    monkeypatch.setattr(story, "GENERATOR_VERSION", story.GENERATOR_VERSION + 1)
    assert tiny(tmp_path).dataset_dir != folder
    monkeypatch.undo()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete dataset was generated again")

    monkeypatch.setattr(S, "generate_dataset", must_not_run)
    data = tiny(tmp_path).build()
    assert len(data.train) == 12
    assert (folder / F.META_FILE).read_bytes() == meta


def test_interrupted_generation_leaves_nothing_trusted(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_render = story.render_face

    def crash_midway(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(story, "render_face", crash_midway)
    dataset = tiny(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        dataset.build()
    assert not dataset.dataset_dir.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too
    monkeypatch.undo()
    assert len(dataset.build().test) == 12


def test_folder_without_complete_meta_is_regenerated(tmp_path):
    dataset = tiny(tmp_path)
    dataset.dataset_dir.mkdir(parents=True)
    (dataset.dataset_dir / "junk.txt").write_text("half-written")
    data = dataset.build()
    assert len(data.val) == 12 and not (dataset.dataset_dir / "junk.txt").exists()
    assert F.read_meta(dataset.dataset_dir)["complete"] is True


def test_relative_root_resolves_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = S.Synthetic(root="data/synthetic", **TINY)
    assert dataset.root == tmp_path / "data" / "synthetic"


# ------------------------------------------------------------------------------------------
# The label story


def test_au_rates_are_imbalanced(moderate):
    _, data = moderate
    stats = data.train.table.label_statistics()
    rates = np.array(stats["au_positive_rate"])
    assert rates.min() > 0
    assert rates.max() / rates.min() > 3


def test_expressions_drive_their_prototype_aus(moderate):
    _, data = moderate
    table = data.train.table
    names = data.label_names["au"]

    def rate(au: str, rows: np.ndarray) -> float:
        j = names.index(au)
        valid = rows & table.au_mask[:, j]
        return float(table.au[valid, j].mean())

    happy = table.expr == EXPRESSIONS.index("happiness")
    surprise = table.expr == EXPRESSIONS.index("surprise")
    assert rate("AU12", happy) > 3 * rate("AU12", ~happy)
    assert rate("AU6", happy) > 2 * rate("AU6", ~happy)
    assert rate("AU26", surprise) > 2 * rate("AU26", ~surprise)
    assert rate("AU2", surprise) > 2 * rate("AU2", ~surprise)


def test_valence_and_expression_frequencies(moderate):
    _, data = moderate
    table = data.train.table
    va = table.va
    happy = table.expr == EXPRESSIONS.index("happiness")
    sad = table.expr == EXPRESSIONS.index("sadness")
    surprise = table.expr == EXPRESSIONS.index("surprise")
    assert va[happy, 0].mean() > va[sad, 0].mean() + 0.5
    assert va[surprise, 1].mean() > va[sad, 1].mean() + 0.5
    assert np.all(np.abs(va) <= 1)
    counts = np.bincount(table.expr, minlength=len(EXPRESSIONS))
    common = counts[EXPRESSIONS.index("neutral")] + counts[EXPRESSIONS.index("happiness")]
    rare = counts[EXPRESSIONS.index("fear")] + counts[EXPRESSIONS.index("disgust")]
    assert common > 3 * rare


def test_occluded_aus_are_unknown_not_negative(moderate):
    dataset, data = moderate
    table = data.train.table
    assert (~table.au_mask).any(), "occlusion_prob=0.5 must hide some AUs"
    assert (table.au[~table.au_mask] == 0).all()
    # in the CSV, hidden AUs are the EmotioNet sentinel
    text = (dataset.dataset_dir / F.LABELS_FILE).read_text().splitlines()
    assert any(",999" in line for line in text[1:])


def test_occluder_over_the_eyes_hides_eye_aus_only():
    face = random_face(np.random.default_rng(0))
    ey = face.eye_y
    glasses = Occluder("sunglasses", (-0.9, ey - 0.15, 0.9, ey + 0.15), (0, 0, 0))
    hidden = occluded_aus(face, glasses)
    assert {5, 7, 43} <= hidden
    assert not hidden & {12, 15, 17, 20, 25, 26}
    assert occluded_aus(face, None) == frozenset()


def test_label_noise_keeps_rates_and_zero_noise_labels_the_truth():
    rng = np.random.default_rng(0)
    subject = story.sample_subject(rng)
    noiseless = S.Synthetic(label_noise=0.0).params
    noisy = S.Synthetic(label_noise=0.25).params
    draws = 3000
    clean = [story.sample_labels(rng, subject, noiseless) for _ in range(draws)]
    for labels in clean[:300]:
        assert all(labels.au_labels[au] == int(labels.intensity[au] > 0) for au in SUPPORTED_AUS)
    dirty = [story.sample_labels(rng, subject, noisy) for _ in range(draws)]
    clean_rate = np.mean([labels.au_labels[12] for labels in clean])
    dirty_rate = np.mean([labels.au_labels[12] for labels in dirty])
    mismatch = np.mean([labels.au_labels[12] != int(labels.intensity[12] > 0) for labels in dirty])
    assert abs(dirty_rate - clean_rate) < 0.05, (clean_rate, dirty_rate)
    assert mismatch > 0.1
    intensities = np.array([[labels.intensity[au] for au in SUPPORTED_AUS] for labels in clean])
    present = intensities[intensities > 0]
    assert present.min() >= story.MIN_INTENSITY and present.max() <= 1


# ------------------------------------------------------------------------------------------
# The renderer


def _row(y_face: float, size: int) -> int:
    return int((0.5 + FACE_CENTER_Y + y_face * FACE_HALF_HEIGHT) * size)


@pytest.mark.parametrize("seed", [0, 1])
def test_each_au_changes_its_own_region(seed):
    size = 64
    face = random_face(np.random.default_rng(seed))
    neutral = render_face(face, {}, Nuisance(), size).astype(np.int32)
    eye_row = _row(face.eye_y, size)
    nose_row = _row(face.nose_tip_y - 0.05, size)
    mouth_row = _row(face.mouth_y - 0.1, size)

    def energy(au: int, intensity: float = 1.0) -> tuple[float, float, float]:
        image = render_face(face, {au: intensity}, Nuisance(), size).astype(np.int32)
        diff = np.abs(image - neutral).sum(-1)
        return (diff[: eye_row - 2].sum(), diff[eye_row - 4: eye_row + 4].sum(),
                diff[nose_row:].sum())

    for au in SUPPORTED_AUS:
        full = sum(energy(au))
        assert full > 0, f"AU{au} changes nothing"
        assert sum(energy(au, 0.3)) < full, f"AU{au} at low intensity is not subtler"
    # Without nuisances the effects are strictly local: the far region does not change at all.
    for au in (1, 2, 4):
        above, _, below = energy(au)
        assert above > 0 and below == 0, f"AU{au}: {above} above the eyes, {below} below the nose"
    for au in (5, 7, 43):
        _, eyes, below = energy(au)
        assert eyes > 0 and below == 0, f"AU{au}: {eyes} at the eyes, {below} below the nose"
    for au in (10, 12, 15, 17, 20, 23, 25, 26):
        above, eyes, below = energy(au)
        assert below > 0 and above == eyes == 0, f"AU{au}: {below} below the nose, {above} above"
    # the literal halves, for the two AUs everybody knows
    half = size // 2
    diff12 = np.abs(render_face(face, {12: 1.0}, Nuisance(), size).astype(np.int32) - neutral)
    diff1 = np.abs(render_face(face, {1: 1.0}, Nuisance(), size).astype(np.int32) - neutral)
    assert diff12[half:].sum() > 3 * diff12[:half].sum()
    assert diff1[:half].sum() > 3 * diff1[half:].sum()
    assert mouth_row > eye_row


def test_renderer_shape_and_unknown_au():
    face = random_face(np.random.default_rng(0))
    image = render_face(face, {12: 0.5}, Nuisance(rotation_deg=20, scale=0.9, noise_std=0.05), 40)
    assert image.shape == (40, 40, 3) and image.dtype == np.uint8
    with pytest.raises(ValueError, match="supported AUs"):
        render_face(face, {3: 1.0}, Nuisance(), 32)


# ------------------------------------------------------------------------------------------
# The dataset class and the read-back path


def test_face_data_contract(tiny_data):
    dataset, data = tiny_data
    sample = data.train[0]
    c = len(S.DEFAULT_AUS)
    expected = {"image": ((3, 32, 32), torch.float32), "au": ((c,), torch.float32),
                "au_mask": ((c,), torch.bool), "expr": ((), torch.int64),
                "expr_mask": ((), torch.bool), "va": ((2,), torch.float32),
                "va_mask": ((), torch.bool), "attr": ((0,), torch.float32),
                "attr_mask": ((0,), torch.bool), "subject": ((), torch.int64),
                "labeled": ((), torch.bool), "index": ((), torch.int64)}
    assert set(sample) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert tuple(sample[key].shape) == shape and sample[key].dtype == dtype, key
    assert 0 <= sample["image"].min() and sample["image"].max() <= 1
    assert sample["labeled"] and sample["expr_mask"] and sample["va_mask"]
    assert data.label_names["au"] == [f"AU{a}" for a in S.DEFAULT_AUS]
    assert data.label_names["expr"] == list(EXPRESSIONS)
    assert data.tasks == ["au", "expr", "va"]
    assert len(data.mean) == 3 and len(data.std) == 3 and all(0 < s < 1 for s in data.std)
    assert [len(data.train), len(data.val), len(data.test), len(data.unlabeled)] == [12, 12, 12, 12]
    assert data.name == "synthetic" and dataset.params.image_size == 32


def test_splits_are_subject_exclusive(tiny_data):
    _, data = tiny_data
    splits = (data.train, data.unlabeled, data.val, data.test)
    subjects = [set(ds.table.subject.tolist()) for ds in splits]
    assert all(len(s) == 3 for s in subjects)
    assert len(set.union(*subjects)) == 12


def test_subject_shared_between_splits_is_rejected(tmp_path):
    dataset = tiny(tmp_path)
    dataset.build()
    labels = dataset.dataset_dir / F.LABELS_FILE
    lines = labels.read_text().splitlines()
    test_line = next(i for i, line in enumerate(lines) if ",test," in line)
    fields = lines[test_line].split(",")
    fields[2] = "0"  # a training subject
    lines[test_line] = ",".join(fields)
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="subject-exclusive"):
        dataset.build()


def test_unlabeled_pool_and_oracle(tmp_path):
    data = tiny(tmp_path).build()
    pool = data.unlabeled.table
    assert not pool.labeled.any() and not pool.au_mask.any()
    assert not pool.expr_mask.any() and not pool.va_mask.any()
    assert not data.unlabeled[0]["labeled"]

    oracle = tiny(tmp_path, oracle=True).build()
    assert oracle.unlabeled is None
    assert len(oracle.train) == len(data.train) + len(pool)
    assert oracle.train.table.labeled.all() and oracle.train.table.expr_mask.all()
    assert oracle.train.table.au_mask.mean() > 0.8
    # the pool's images are the same files, now with their labels
    assert oracle.train.table.image_paths[12:] == pool.image_paths


def test_training_on_the_pool_for_pre_training(tmp_path):
    data = tiny(tmp_path).build()
    pool = data.unlabeled.table
    expr = tiny(tmp_path, train_split="pool").build()
    assert expr.unlabeled is None and expr.train.table.image_paths == pool.image_paths
    # the pool's own expressions and its subjects, nothing else
    oracle = tiny(tmp_path, oracle=True).build().train.table
    np.testing.assert_array_equal(expr.train.table.expr, oracle.expr[len(data.train):])
    assert expr.train.table.expr_mask.all() and not expr.train.table.au_mask.any()
    assert not expr.train.table.va_mask.any()
    np.testing.assert_array_equal(expr.train.table.subject, pool.subject)
    assert set(pool.subject).isdisjoint(set(data.val.table.subject) | set(data.test.table.subject))
    # val and test as before
    assert expr.test.table.image_paths == data.test.table.image_paths
    identity = tiny(tmp_path, train_split="pool", pool_labels=[]).build().train.table
    assert not (identity.expr_mask.any() or identity.au_mask.any() or identity.va_mask.any())
    with pytest.raises(ValueError, match="dataset.train_split='labelled'"):
        tiny(tmp_path, train_split="labelled")
    with pytest.raises(ValueError, match=r"dataset.pool_labels=\['identity'\]"):
        tiny(tmp_path, train_split="pool", pool_labels=["identity"])


def test_aus_subset_and_order(tmp_path):
    full = tiny(tmp_path).build()
    subset = tiny(tmp_path, aus=[12, 1, 15]).build()
    assert subset.label_names["au"] == ["AU12", "AU1", "AU15"]
    names = full.label_names["au"]
    for j, au in enumerate(["AU12", "AU1"]):
        np.testing.assert_array_equal(subset.train.table.au[:, j],
                                      full.train.table.au[:, names.index(au)])
        np.testing.assert_array_equal(subset.test.table.au_mask[:, j],
                                      full.test.table.au_mask[:, names.index(au)])
    assert subset.train[0]["au"].shape == (3,)


def test_invalid_arguments_fail_at_construction(tmp_path):
    with pytest.raises(ValueError, match=r"supports AUs \[1, 2, 4"):
        tiny(tmp_path, aus=[1, 3])
    with pytest.raises(ValueError, match="twice"):
        tiny(tmp_path, aus=[1, 1])
    with pytest.raises(ValueError, match="occlusion_prob"):
        tiny(tmp_path, occlusion_prob=1.5)
    with pytest.raises(ValueError, match="empty"):
        tiny(tmp_path, num_subjects_test=0)
    with pytest.raises(TypeError):
        tiny(tmp_path, rotation=3.0)  # a typo is not silently ignored


@pytest.mark.parametrize("bad_line, why", [
    ("images/train/x.png,train,0,happiness,0.1", "fields"),
    ("images/train/x.png,train,0,happiness,0.1,0.2" + ",7" * len(SUPPORTED_AUS), "AU values"),
    ("images/train/x.png,train,zero,happiness,0.1,0.2" + ",0" * len(SUPPORTED_AUS), "not a number"),
    ("images/train/x.png,train,0,joy,0.1,0.2" + ",0" * len(SUPPORTED_AUS), "unknown expression"),
    ("images/train/x.png,holdout,0,joy,0.1,0.2" + ",0" * len(SUPPORTED_AUS), "unknown split"),
    ("images/train/x.png,train,0,fear,1.5,0.2" + ",0" * len(SUPPORTED_AUS), "outside"),
])
def test_malformed_csv_line_names_file_and_line(tiny_data, tmp_path, bad_line, why):
    dataset, _ = tiny_data
    lines = (dataset.dataset_dir / F.LABELS_FILE).read_text().splitlines()
    lines.insert(4, bad_line)  # becomes line 5 of the file
    broken = tmp_path / F.LABELS_FILE
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{F.LABELS_FILE}, line 5: .*{why}"):
        F.read_labels_csv(broken, S.DEFAULT_AUS)


def test_csv_without_requested_au_column(tmp_path):
    path = tmp_path / F.LABELS_FILE
    path.write_text("path,split,subject,expression,valence,arousal,AU1\n")
    with pytest.raises(DataError, match=r"line 1: header lacks column\(s\) \['AU12'\]"):
        F.read_labels_csv(path, [1, 12])


def test_missing_image_is_a_data_error(tmp_path):
    dataset = tiny(tmp_path)
    data = dataset.build()
    (dataset.dataset_dir / data.val.table.image_paths[0]).unlink()
    with pytest.raises(DataError, match="missing"):
        data.val[0]


# ------------------------------------------------------------------------------------------
# The Hydra config


def test_yaml_matches_constructor_defaults(tmp_path):
    cfg = OmegaConf.load(REPO / "configs" / "dataset" / "synthetic.yaml")
    assert cfg._target_ == "affectlab.data.sources.synthetic.benchmark.Synthetic"
    signature = inspect.signature(S.Synthetic.__init__)
    parameters = {k: p.default for k, p in signature.parameters.items() if k != "self"}
    values = OmegaConf.to_container(cfg)
    values.pop("_target_")
    assert set(values) == set(parameters)
    # generator_version: the constructor's None means "this code's", which the yaml names
    parameters["generator_version"] = story.GENERATOR_VERSION
    for key, default in parameters.items():
        expected = list(default) if isinstance(default, tuple) else default
        assert values[key] == expected, key
    check_config(cfg, "dataset")
    from hydra.utils import instantiate

    dataset = instantiate(OmegaConf.merge(cfg, {"root": str(tmp_path), **TINY}))
    assert isinstance(dataset, S.Synthetic) and dataset.aus == list(S.DEFAULT_AUS)
    assert dataset.dataset_dir == S.Synthetic(root=str(tmp_path), **TINY).dataset_dir


def test_default_benchmark_keeps_its_hash():
    # the benchmark behind the README's numbers; a new generator option must not move it
    assert S.Synthetic().params.digest() == "00567f9a23a0"


def test_a_shared_identity_pool_shows_the_labelled_subjects_in_new_images(tmp_path):
    new = tiny(tmp_path / "new").build()
    shared_source = tiny(tmp_path / "shared", pool_identities="shared")
    assert shared_source.params.digest() != tiny(tmp_path / "x").params.digest()
    shared = shared_source.build()
    train_subjects = set(shared.train.table.subject.tolist())
    pool_subjects = shared.unlabeled.table.subject.tolist()
    # TINY: 3 train subjects, 3 pool "subjects" of 4 images → each labelled subject once more
    assert set(pool_subjects) == train_subjects
    assert set(new.unlabeled.table.subject.tolist()).isdisjoint(train_subjects)
    paths = shared.unlabeled.table.image_paths
    assert len(set(paths)) == len(paths) == len(new.unlabeled)
    # same faces, other images: the pool's pictures are not the training pictures
    train_images = {tuple(shared.train.load_image(i).flatten()[:64].tolist())
                    for i in range(len(shared.train))}
    assert all(tuple(shared.unlabeled.load_image(i).flatten()[:64].tolist()) not in train_images
               for i in range(len(shared.unlabeled)))
    # val and test stay exclusive, and the train/val/test files are the default benchmark's
    assert set(shared.test.table.subject.tolist()).isdisjoint(train_subjects)
    assert shared.test.table.image_paths == new.test.table.image_paths
    assert torch.equal(shared.test.load_image(0), new.test.load_image(0))
    with pytest.raises(ValueError, match="dataset.pool_identities='same': use new or shared"):
        tiny(tmp_path / "bad", pool_identities="same")


def test_more_labelled_faces_keep_the_same_pool_val_and_test(tmp_path):
    """The learning-curve presets (experiment=labels_*) change the labelled set only."""
    small = tiny(tmp_path / "small").build()
    large = tiny(tmp_path / "large", num_subjects_train=TINY["num_subjects_train"] + 2).build()
    assert len(large.train) > len(small.train)
    for split in ("unlabeled", "val", "test"):
        a, b = getattr(small, split), getattr(large, split)
        # the same faces and labels (subject ids are numbered across splits, so they shift)
        assert len(a) == len(b) and np.array_equal(a.table.au, b.table.au), split
        assert np.array_equal(a.table.va, b.table.va), split
        assert all(torch.equal(a.load_image(i), b.load_image(i)) for i in (0, len(a) - 1)), split
    # and the smaller labelled set is the first faces of the larger one
    assert large.train.table.image_paths[:len(small.train)] == small.train.table.image_paths


def test_one_task_per_face_keeps_one_task_of_each_labelled_face(tmp_path):
    full = tiny(tmp_path).build().train.table
    partial = tiny(tmp_path, train_labels="one_task").build().train.table
    carried = np.stack([partial.au_mask.any(1), partial.expr_mask, partial.va_mask], 1)
    assert (carried.sum(1) <= 1).all() and carried.any(0).all()
    # what is kept is the generated label, unchanged; the rows with all AUs occluded keep none
    kept_au = partial.au_mask
    assert np.array_equal(partial.au[kept_au], full.au[kept_au])
    assert (partial.au_mask <= full.au_mask).all() and (partial.expr_mask <= full.expr_mask).all()
    assert np.array_equal(S.one_task_per_face(full, 0).expr_mask, partial.expr_mask)  # seeded
    with pytest.raises(ValueError, match="dataset.train_labels='some'"):
        tiny(tmp_path, train_labels="some")


def test_a_second_rendering_of_each_pool_face_changes_only_the_nuisances(tmp_path):
    one = tiny(tmp_path / "one").build()
    source = tiny(tmp_path / "two", pool_renderings=2)
    assert source.params.digest() != tiny(tmp_path / "x").params.digest()
    two = source.build()
    pool = two.unlabeled
    assert isinstance(pool, S.PoolWithRenderings)
    assert not isinstance(two.train, S.PoolWithRenderings)
    assert pool.input_keys == ("image", "image_alt")
    sample = pool[0]
    # the first rendering is the one-rendering benchmark's image; the second another picture
    assert torch.equal(sample["image"], one.unlabeled[0]["image"])
    assert sample["image_alt"].shape == sample["image"].shape
    assert not torch.equal(sample["image_alt"], sample["image"])
    # of the same face in the same AU state: with the nuisances turned off, the two differ
    # only where the eyes look (gaze is drawn per image too)
    calm = dict(rotation_deg=0.0, scale_jitter=0.0, shift_jitter=0.0, yaw_jitter=0.0,
                illumination=0.0, noise_std=0.0, clutter=0, occlusion_prob=0.0)
    still = tiny(tmp_path / "calm", pool_renderings=2, **calm).build().unlabeled[0]
    def differs(pair: dict) -> float:      # share of pixels that differ
        return float(((pair["image"] - pair["image_alt"]).abs() > 2 / 255).float().mean())

    assert differs(still) < 0.05 < 0.5 < differs(sample)
    with pytest.raises(ValueError, match="dataset.pool_renderings=3"):
        tiny(tmp_path / "bad", pool_renderings=3)


def test_the_second_rendering_can_show_the_au_state_on_another_person(tmp_path):
    calm = dict(rotation_deg=0.0, scale_jitter=0.0, shift_jitter=0.0, yaw_jitter=0.0,
                illumination=0.0, noise_std=0.0, clutter=0, occlusion_prob=0.0)
    same = tiny(tmp_path / "same", pool_renderings=2, **calm)
    source = tiny(tmp_path / "other", pool_renderings=2, pool_rendering_face="other", **calm)
    assert source.params.digest() != same.params.digest()
    other, same = source.build(), same.build()
    # the first rendering and every label are the one-face benchmark's
    assert np.array_equal(other.unlabeled.table.au, same.unlabeled.table.au)
    other_person, same_person = other.unlabeled[0], same.unlabeled[0]
    assert torch.equal(other_person["image"], same_person["image"])

    def differs(pair: dict) -> float:      # share of pixels that differ between the renderings
        return float(((pair["image"] - pair["image_alt"]).abs() > 2 / 255).float().mean())

    # nuisances off: the same person's second rendering differs only in gaze; another
    # person's face (shape, skin, hair) differs in much of the picture
    assert differs(same_person) < 0.05 < 0.2 < differs(other_person)
    with pytest.raises(ValueError, match="pool_rendering_face='nobody'"):
        tiny(tmp_path / "bad", pool_renderings=2, pool_rendering_face="nobody")
    with pytest.raises(ValueError, match="set dataset.pool_renderings=2"):
        tiny(tmp_path / "bad", pool_rendering_face="other")


def test_a_config_of_another_generator_version_is_refused(tmp_path):
    assert tiny(tmp_path, generator_version=story.GENERATOR_VERSION).dataset_dir \
        == tiny(tmp_path).dataset_dir
    with pytest.raises(ValueError, match=rf"dataset.generator_version=0: this code generates "
                                         rf"version {story.GENERATOR_VERSION}"):
        tiny(tmp_path, generator_version=0)
