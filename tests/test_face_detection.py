"""The offline face detector (MTCNN) and ``dataset.crop=detect``.

The detector runs on a real photograph — scikit-image's ``astronaut`` (Eileen Collins, public
domain, shipped inside the scikit-image wheel) — and on synthetic faces written in a dataset's
layout. Its weights are facenet-pytorch's files (installed by ``make`` with ``--no-deps``).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from affectlab.data.contract import DataError
from affectlab.data.faces.detection import MTCNN, detect_landmarks, nms_min
from affectlab.data.layouts.faces import layout_faces
from affectlab.data.sources.image_folder import ImageFolder
from affectlab.train import run

# What facenet-pytorch's own MTCNN (2.6.0, default settings) returns on the astronaut: the box
# (x1, y1, x2, y2), its probability and the five points (x, y). Our implementation is separate
# code on the same weights, so it must agree to well under a pixel.
ASTRONAUT_BOX = (181.0514, 62.1561, 267.7473, 172.0502)
ASTRONAUT_POINTS = ((205.0109, 101.7274), (246.7626, 103.7141), (224.6714, 128.9650),
                    (201.7161, 139.2462), (245.2655, 141.8570))


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN(min_face_size=20, device="cpu")


def test_mtcnn_finds_the_astronaut_as_the_reference_implementation(astronaut, detector):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.999
    np.testing.assert_allclose(face.box, ASTRONAUT_BOX, atol=0.05)
    np.testing.assert_allclose(face.points, ASTRONAUT_POINTS, atol=0.05)
    # template order: image-left eye left of image-right eye, nose below eyes, mouth below nose
    left_eye, right_eye, nose, mouth_left, mouth_right = face.points
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_no_face_in_a_blank_image(detector):
    assert detector.detect(Image.new("RGB", (200, 160), (128, 128, 128))) == []
    assert detector.largest_face(Image.new("RGB", (200, 160), (128, 128, 128))) is None


def test_largest_face_picks_the_biggest_of_two(astronaut, detector):
    # the astronaut at full size and at half size side by side
    canvas = Image.new("RGB", (768, 512))
    canvas.paste(astronaut, (0, 0))
    canvas.paste(astronaut.resize((256, 256)), (512, 128))
    faces = detector.detect(canvas)
    assert len(faces) == 2
    largest = detector.largest_face(canvas)
    np.testing.assert_allclose(largest.box, ASTRONAUT_BOX, atol=1.0)


def test_pyramid_scales_follow_the_formula():
    # s_k = (12 / min_face) · factor^k while min(H, W) · s_k ≥ 12: 0.6·100 = 60, 30, 15, (7.5)
    scales = MTCNN(min_face_size=20, scale_factor=0.5).scales(100, 200)
    np.testing.assert_allclose(scales, [0.6, 0.3, 0.15])
    assert MTCNN(min_face_size=40).scales(30, 30) == []   # 0.3 · 30 = 9 < 12


def test_last_stage_nms_measures_overlap_against_the_smaller_box():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 2, 6, 6], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # box 1 lies inside box 0: IoU 16/100 = 0.16 would keep it, intersection/min-area 16/16 = 1
    assert nms_min(boxes, scores, 0.7).tolist() == [0, 2]
    assert nms_min(boxes, torch.tensor([0.5, 0.8, 0.7]), 0.7).tolist() == [1, 2]


def test_settings_are_checked_with_their_config_key(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"detector.min_face_size=8"):
        MTCNN(min_face_size=8)
    with pytest.raises(ValueError, match=r"detector.thresholds"):
        MTCNN(thresholds=[0.6, 0.7])
    with pytest.raises(ValueError, match=r"detector.scale_factor=1.2"):
        MTCNN(scale_factor=1.2)
    with pytest.raises(ValueError, match=r"detector.device='tpu'"):
        MTCNN(device="tpu")
    with monkeypatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(ValueError, match=r"detector.device=cuda but no CUDA device"):
            MTCNN(device="cuda").detect(Image.new("RGB", (64, 64)))
    missing = MTCNN(weights=str(tmp_path / "nowhere"))   # cheap until used
    with pytest.raises(FileNotFoundError, match=r"nowhere/pnet.pt are missing.*detector.weights"):
        missing.detect(Image.new("RGB", (64, 64)))


def test_a_pickled_detector_carries_settings_not_networks(astronaut, detector):
    detector.detect(astronaut)
    clone = pickle.loads(pickle.dumps(detector))
    assert clone._nets is None and clone.settings() == detector.settings()


def test_detections_are_cached_and_only_new_images_are_run(tmp_path, astronaut, detector):
    astronaut.save(tmp_path / "astronaut.png")
    Image.new("RGB", (120, 120), (90, 90, 90)).save(tmp_path / "blank.png")
    cache = tmp_path / "cache" / "faces.npz"
    points = detect_landmarks(detector, tmp_path, ["astronaut.png", "blank.png"], cache)
    np.testing.assert_allclose(points[0], ASTRONAUT_POINTS, atol=0.05)
    assert np.isnan(points[1]).all()

    class Counting(MTCNN):
        seen: list[int] = []

        def detect(self, image):
            self.seen.append(image.size[0])
            return super().detect(image)

    counting = Counting(min_face_size=20)
    astronaut.resize((300, 300)).save(tmp_path / "small.png")
    again = detect_landmarks(counting, tmp_path, ["blank.png", "small.png", "astronaut.png"],
                             cache)
    assert Counting.seen == [300]                       # only the new image was run
    np.testing.assert_array_equal(again[2], points[0])  # cached points come back exactly
    assert np.isnan(again[0]).all() and np.isfinite(again[1]).all()


def test_image_folder_pool_aligns_detected_faces(tmp_path, astronaut):
    folder = tmp_path / "faces"
    folder.mkdir()
    astronaut.save(folder / "astronaut.jpg")
    Image.new("RGB", (100, 100), (200, 200, 200)).save(folder / "wall.jpg")
    options = dict(root=str(folder), crop="detect", template="arcface_112",
                   detector=MTCNN(min_face_size=20), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"no face found in .*wall.jpg by the face detector"):
        ImageFolder(**options).pool(112)
    pool = ImageFolder(**options, on_error="skip").pool(112)
    assert pool.table.image_paths == ["astronaut.jpg"]
    image = pool[0]["image"]
    assert image.shape == (3, 112, 112) and not pool[0]["labeled"]
    # the aligned face fills the crop: the eyes sit where ArcFace's template puts them, so the
    # crop is not the raw photo resized
    raw = torch.from_numpy(np.asarray(astronaut.resize((112, 112)), np.float32) / 255)
    assert (image - raw.permute(2, 0, 1)).abs().mean() > 0.1
    with pytest.raises(ValueError, match=r"dataset.crop='align': use one of \['none', 'detect'\]"):
        ImageFolder(root=str(folder), crop="align")


@pytest.fixture(scope="module")
def ckplus_tree(tmp_path_factory) -> Path:
    """A CK+ tree of 128 px synthetic faces (MTCNN finds most of them, not all)."""
    from affectlab.data.layouts.ckplus import write_layout

    root = tmp_path_factory.mktemp("ckplus_detect") / "CK+"
    write_layout(layout_faces(10, 2, seed=3, image_size=128), root, frames_per_sequence=1)
    return root


def test_train_py_aligns_ckplus_by_detected_faces(ckplus_tree, tmp_path, tiny_cfg):
    common = ["dataset=ckplus", f"dataset.root={ckplus_tree}", "dataset.crop=detect",
              "dataset.image_size=48", "dataset.align_size=56", "detector.min_face_size=20",
              "detector.device=cpu", f"dataset.cache_dir={tmp_path / 'cache'}", "method=baseline",
              "trainer.max_steps=2", "trainer.batch_size=4"]
    # the synthetic faces are drawings: MTCNN misses some, and says which
    with pytest.raises(DataError, match=r"no face found in .*cohn-kanade-images/S\d+/"):
        run(tiny_cfg(*common), tmp_path / "raise")
    metrics = run(tiny_cfg(*common, "dataset.on_error=skip"), tmp_path / "run")
    assert metrics["steps"] == 2
    manifest = json.loads((tmp_path / "run" / "split_manifest.json").read_text())
    listed = sum(len(ids) for ids in manifest["ids"].values())
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    kept = sum(split["num_samples"] for split in info["data"].values())
    assert 0 < metrics["skipped_problems"] == listed - kept < listed / 2


def test_preprocessed_detected_crops_are_the_raw_paths_pixels(ckplus_tree, tmp_path, tiny_cfg):
    from affectlab.build import build_data

    from .conftest import load_script
    from .test_preprocess import same_pixels

    args = ["dataset=ckplus", f"dataset.root={ckplus_tree}", "dataset.crop=detect",
            "dataset.image_size=48", "dataset.align_size=56", "detector.min_face_size=20",
            "detector.device=cpu", "dataset.on_error=skip",
            f"dataset.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "crops"
    assert load_script("preprocess").main(["--out", str(out), *args]) == 0
    cfg = tiny_cfg(*args, f"preprocessed={out}")
    same_pixels(build_data(cfg, crops=False), build_data(cfg))
    # crops written by the detector are not taken for another crop of the same samples
    other = tiny_cfg(*args[:-1], "dataset.template=arcface_112",
                     f"dataset.cache_dir={tmp_path / 'cache'}", f"preprocessed={out}")
    with pytest.raises(DataError, match="was written for other samples"):
        build_data(other)


# dataset → (subjects, faces per subject, extra overrides); faces at 96 px so MTCNN finds most
DETECT_LAYOUTS = {
    "bp4d": (41, 1, []),
    "disfa": (27, 2, []),
    "emotionet": (12, 4, ["dataset.num_labeled=20", "dataset.num_val=4",
                          "dataset.num_unlabeled=8"]),
    "lfw": (12, 2, []),
}


@pytest.mark.parametrize("name", sorted(DETECT_LAYOUTS))
def test_every_dataset_without_usable_landmarks_aligns_by_detection(name, tmp_path, tiny_cfg):
    import importlib

    from affectlab.build import build_data
    from affectlab.data.faces.alignment import AlignedImages

    subjects, per_subject, extra = DETECT_LAYOUTS[name]
    root = tmp_path / name
    module = importlib.import_module(f"affectlab.data.layouts.{name}")
    module.write_layout(layout_faces(subjects, per_subject, seed=4, image_size=96), root)
    args = [f"dataset={name}", f"dataset.root={root}", "dataset.crop=detect",
            "dataset.image_size=48", "dataset.align_size=48", "detector.min_face_size=20",
            "detector.device=cpu", "dataset.on_error=skip",
            f"dataset.cache_dir={tmp_path / 'cache'}", *extra]
    data = build_data(tiny_cfg(*args), pack=False)   # the reading path itself (the run packs)
    for split in (data.train, data.val, data.test):
        assert isinstance(split, AlignedImages) and len(split) > 0
        assert split[0]["image"].shape == (3, 48, 48)
    if name != "lfw":   # LFW has identities only: nothing for the baseline to learn
        metrics = run(tiny_cfg(*args, "method=baseline", "trainer.max_steps=2",
                               "trainer.batch_size=4"), tmp_path / "run")
        assert metrics["steps"] == 2


def test_an_unreadable_image_is_named_and_earlier_detections_are_kept(tmp_path, astronaut,
                                                                        detector):
    astronaut.save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cache = tmp_path / "faces.npz"
    with pytest.raises(DataError, match=r"image file is unreadable or truncated: .*b.png"):
        detect_landmarks(detector, tmp_path, ["a.png", "b.png"], cache)
    with np.load(cache) as kept:
        assert kept["paths"].tolist() == ["a.png"]


def test_a_small_image_size_for_a_large_aligned_face_is_warned_about(ckplus_tree, tmp_path,
                                                                      caplog):
    from affectlab.data.sources.ckplus import CKPlus

    options = dict(root=str(ckplus_tree), crop="align", cache_dir=str(tmp_path / "cache"))
    with caplog.at_level("WARNING"):
        CKPlus(**options, image_size=64, align_size=240).build()
    assert "keeps only the centre 27% of faces aligned at dataset.align_size=240" in caplog.text
    assert "set dataset.align_size=69" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        CKPlus(**options, image_size=64, align_size=69).build()
    assert "keeps only the centre" not in caplog.text
