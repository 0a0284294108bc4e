"""The synthetic faces' 68 landmarks (drawing.face_landmarks): on the drawn parts, moving with
the AUs and with the pose."""

from __future__ import annotations

import math

import numpy as np
import pytest

from affectlab.data.sources.synthetic import drawing as D
from affectlab.data.sources.synthetic import faces as F

SIZE = 128


def a_face(seed: int = 3) -> F.FaceParams:
    return F.random_face(np.random.default_rng(seed))


def test_landmarks_sit_on_the_drawn_lips_brows_and_eyes():
    for seed in range(5):
        face = a_face(seed)
        face = F.FaceParams(**{**face.__dict__, "glasses": False})
        image = D.render_face(face, {25: 0.8}, F.Nuisance(), SIZE).astype(float)
        points = D.face_landmarks(face, {25: 0.8}, F.Nuisance(), SIZE)
        assert points.shape == (68, 2)

        def colour(point, image=image):
            x, y = np.round(point).astype(int)
            return image[y, x]

        upper_lip = (points[51] + points[62]) / 2          # between the outer and inner edge
        lower_lip = (points[57] + points[66]) / 2
        for point in (upper_lip, lower_lip):
            assert np.abs(colour(point) - np.array(face.lip)).max() < 40, seed
        brow = np.array(F._shade(face.hair, 0.7), float)
        assert np.abs(colour(points[19]) - brow).max() < 40, seed
        inside_eye = (points[37] + points[38] + points[40] + points[41]) / 4
        assert np.abs(colour(inside_eye) - np.array(face.skin)).max() > 30, seed  # not skin


def test_landmarks_follow_the_aus():
    face = a_face()
    rest = D.face_landmarks(face, {}, F.Nuisance(), SIZE)
    smile = D.face_landmarks(face, {12: 1.0}, F.Nuisance(), SIZE)
    assert smile[48, 1] < rest[48, 1] and smile[54, 1] < rest[54, 1]          # corners up
    assert smile[54, 0] - smile[48, 0] > rest[54, 0] - rest[48, 0]             # and out
    jaw = D.face_landmarks(face, {26: 1.0}, F.Nuisance(), SIZE)
    assert jaw[8, 1] > rest[8, 1] + 1                                          # chin down
    assert jaw[66, 1] - jaw[62, 1] > rest[66, 1] - rest[62, 1] + 2             # mouth open
    closed = D.face_landmarks(face, {43: 1.0}, F.Nuisance(), SIZE)
    assert np.allclose(closed[[37, 38, 43, 44], 1], closed[[41, 40, 47, 46], 1])
    assert not np.allclose(rest[[37, 38], 1], rest[[41, 40], 1])
    brows = D.face_landmarks(face, {1: 1.0, 2: 1.0}, F.Nuisance(), SIZE)
    assert np.all(brows[17:27, 1] < rest[17:27, 1])
    assert np.allclose(brows[:17], rest[:17]) and np.allclose(brows[48:], rest[48:])


def test_landmarks_move_with_the_pose_as_the_image_does():
    face = a_face()
    still = D.face_landmarks(face, {12: 0.5}, F.Nuisance(), SIZE)
    pose = F.Nuisance(rotation_deg=20.0, scale=1.1, shift=(0.05, -0.03))
    posed = D.face_landmarks(face, {12: 0.5}, pose, SIZE)
    theta = math.radians(20.0)
    rotation = 1.1 * np.array([[math.cos(theta), -math.sin(theta)],
                               [math.sin(theta), math.cos(theta)]])
    centre = SIZE / 2
    expected = (still + 0.5 - centre) @ rotation.T + centre + np.array([0.05, -0.03]) * SIZE - 0.5
    assert np.allclose(posed, expected, atol=1e-6)
    # yaw slides the inner features, not the jaw's ends
    turned = D.face_landmarks(face, {}, F.Nuisance(yaw=1.0), SIZE)
    rest = D.face_landmarks(face, {}, F.Nuisance(), SIZE)
    assert np.all(turned[27:31, 0] > rest[27:31, 0] + 1)
    assert np.allclose(turned[[0, 16]], rest[[0, 16]], atol=0.5)


@pytest.mark.parametrize("size", [32, 64])
def test_landmarks_scale_with_the_image(size):
    face = a_face()
    big = D.face_landmarks(face, {}, F.Nuisance(), SIZE)
    small = D.face_landmarks(face, {}, F.Nuisance(), size)
    # to within the drawing's half-pixel convention, half a supersampled pixel
    assert np.allclose((small + 0.5) * SIZE / size, big + 0.5,
                       atol=0.5 / F.SUPERSAMPLE * SIZE / size)
