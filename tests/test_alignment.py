"""Five-point similarity alignment: the transform in closed form, landmark helpers, the warp."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from affectlab.data.faces.alignment import (
    TEMPLATES,
    align_face,
    five_points_from_68,
    flip_landmarks,
    similarity_transform,
    template,
)


def rotation(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def test_similarity_transform_recovers_a_known_transform():
    source = TEMPLATES["arcface_112"].array
    target = 2.0 * source @ rotation(30).T + np.array([10.0, -5.0])
    m = similarity_transform(source, target)
    np.testing.assert_allclose(m[:, :2], 2.0 * rotation(30), atol=1e-9)
    np.testing.assert_allclose(m[:, 2], [10.0, -5.0], atol=1e-9)
    # the identity for identical point sets
    np.testing.assert_allclose(similarity_transform(source, source), np.eye(2, 3), atol=1e-12)


def test_similarity_transform_hand_computed_two_points():
    # (0,0)→(1,1) and (1,0)→(1,3): scale 2, rotation +90°, translation (1, 1)
    m = similarity_transform(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 3.0]]))
    np.testing.assert_allclose(m, [[0.0, -2.0, 1.0], [2.0, 0.0, 1.0]], atol=1e-12)


def test_similarity_transform_never_reflects():
    source = TEMPLATES["arcface_112"].array
    mirrored = source * np.array([-1.0, 1.0])
    m = similarity_transform(source, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(ValueError, match="all equal"):
        similarity_transform(np.ones((5, 2)), source)
    with pytest.raises(ValueError, match="K ≥ 2"):
        similarity_transform(source[:, :1], source)


def test_templates_and_rescaling():
    assert template("mlcr_240").size == 240
    np.testing.assert_allclose(template("mlcr_240").array,
                               TEMPLATES["seetaface_256"].array * 240 / 256)
    np.testing.assert_allclose(template("arcface_112", 224).array,
                               TEMPLATES["arcface_112"].array * 2)
    with pytest.raises(ValueError, match="arcface_112"):
        template("mtcnn")


def test_five_points_from_68_and_flip():
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = [[10, 20], [12, 20], [14, 20], [10, 22], [12, 22], [14, 22]]  # centre 12, 21
    landmarks[42:48] = [[30, 20]] * 6
    landmarks[30] = [21, 30]
    landmarks[48], landmarks[54] = [14, 40], [28, 40]
    points = five_points_from_68(landmarks)
    np.testing.assert_allclose(points, [[12, 21], [30, 20], [21, 30], [14, 40], [28, 40]])
    flipped = flip_landmarks(points, width=50)
    # x → 49 − x, and the left/right pairs swap places
    np.testing.assert_allclose(flipped, [[19, 20], [37, 21], [28, 30], [21, 40], [35, 40]])
    with pytest.raises(ValueError, match="68"):
        five_points_from_68(np.zeros((5, 2)))


def test_align_face_puts_the_landmarks_on_the_template():
    # A 200×160 image with five dots where a rotated, scaled, shifted template says the
    # landmarks are; after alignment each dot must sit on its template point.
    chosen = TEMPLATES["arcface_112"]
    points = 1.2 * chosen.array @ rotation(-12).T + np.array([30.0, 15.0])
    image = Image.new("L", (200, 160), 0)
    draw = ImageDraw.Draw(image)
    for x, y in points:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=255)
    aligned = np.asarray(align_face(image, points, "arcface_112"))
    assert aligned.shape == (112, 112, 3)
    gray = aligned[..., 0].astype(float)
    for (tx, ty) in chosen.array:
        x0, y0 = int(round(tx)) - 5, int(round(ty)) - 5
        window = gray[y0:y0 + 11, x0:x0 + 11]
        ys, xs = np.nonzero(window > 60)
        weights = window[ys, xs]
        cx = x0 + (xs * weights).sum() / weights.sum()
        cy = y0 + (ys * weights).sum() / weights.sum()
        assert math.hypot(cx - tx, cy - ty) < 1.0, (cx, cy, tx, ty)
    # the output size follows `size`
    assert align_face(image, points, "arcface_112", size=64).size == (64, 64)


def test_five_points_from_49_use_the_68_points_they_keep():
    from affectlab.data.faces.alignment import IBUG68_TO_49, five_points_from_49

    # the 49 points are iBUG 17..67 without 60 and 64: eyes at rows 19-24 / 25-30, nose tip 13,
    # mouth corners 31 and 37
    assert len(IBUG68_TO_49) == 49 and IBUG68_TO_49[19:25] == tuple(range(36, 42))
    assert (IBUG68_TO_49[13], IBUG68_TO_49[31], IBUG68_TO_49[37]) == (30, 48, 54)
    marks = np.zeros((49, 2))
    marks[19:25] = [[10, 20], [12, 20], [14, 20], [10, 22], [12, 22], [14, 22]]  # centre 12, 21
    marks[25:31] = [[30, 21]] * 6
    marks[13], marks[31], marks[37] = [21, 30], [14, 40], [28, 40]
    np.testing.assert_allclose(five_points_from_49(marks),
                               [[12, 21], [30, 21], [21, 30], [14, 40], [28, 40]])
    with pytest.raises(ValueError, match=r"expected \(49, 2\) landmarks, got \(68, 2\)"):
        five_points_from_49(np.zeros((68, 2)))
