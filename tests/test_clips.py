"""data/clips.py: the frames of a clip at a video's edges and around missing frames, and the
landmark mask."""

from __future__ import annotations

import numpy as np
import pytest

from affectlab.data.clips import MASK_PARTS, clip_frames, landmark_mask


def frames(frame, available, rule="black", anchor="end", length=4, dilation=2):
    return clip_frames(frame, np.asarray(available, bool), length=length, dilation=dilation,
                       rule=rule, anchor=anchor).tolist()


def test_a_clip_ends_at_its_labelled_frame_with_dilation_d():
    every = [True] * 20
    assert frames(10, every) == [4, 6, 8, 10]
    assert frames(10, every, anchor="centre") == [6, 8, 10, 12]
    # TSAV's default: 8 frames, 6 apart, t − 42 … t
    assert clip_frames(50, np.ones(60, bool), length=8, dilation=6).tolist() == \
        list(range(8, 51, 6))


def test_positions_before_the_first_frame_are_black_or_repeat_the_nearest_frame():
    every = [True] * 20
    assert frames(3, every) == [-1, -1, 1, 3]
    assert frames(3, every, rule="repeat") == [1, 1, 1, 3]
    assert frames(0, every, rule="repeat") == [0, 0, 0, 0]
    # a clip longer than its video: the rule, no error
    assert frames(2, [True] * 3, length=8, dilation=1) == [-1] * 5 + [0, 1, 2]


def test_positions_past_the_last_frame_follow_the_rule_with_a_centred_clip():
    every = [True] * 12
    assert frames(10, every, anchor="centre") == [6, 8, 10, -1]
    assert frames(10, every, rule="repeat", anchor="centre") == [6, 8, 10, 10]


def test_missing_frames_inside_the_video():
    available = [True] * 20
    available[6] = available[8] = False
    assert frames(10, available) == [4, -1, -1, 10]
    only_six = [True] * 20
    only_six[6] = False
    assert frames(10, only_six, rule="repeat") == [4, 8, 8, 10]       # 4 and 8 tie: 8
    # each missing position takes the nearest existing one; a tie goes towards the label
    assert frames(10, available, rule="repeat") == [4, 4, 10, 10]
    available[4] = False
    assert frames(10, available, rule="repeat") == [10, 10, 10, 10]


def test_a_missing_labelled_frame_and_bad_settings_are_refused():
    available = [True] * 10
    available[5] = False
    with pytest.raises(ValueError, match="labelled frame 5 is missing"):
        frames(5, available)
    with pytest.raises(ValueError, match="labelled frame 12 is missing"):
        frames(12, available)
    with pytest.raises(ValueError, match="clip rule='clamp'"):
        frames(3, available, rule="clamp")
    with pytest.raises(ValueError, match="length=0"):
        frames(3, available, length=0)


def face_landmarks() -> np.ndarray:
    """68 points of a schematic face in a 64-px crop, each part on its own rows."""
    points = np.zeros((68, 2))
    points[0:17] = np.stack([np.linspace(8, 56, 17), np.full(17, 60.0)], 1)     # jaw, y = 60
    points[17:22] = np.stack([np.linspace(10, 26, 5), np.full(5, 14.0)], 1)     # brow
    points[22:27] = np.stack([np.linspace(38, 54, 5), np.full(5, 14.0)], 1)     # brow
    points[27:31] = np.stack([np.full(4, 32.0), np.linspace(20, 32, 4)], 1)     # nose bridge
    points[31:36] = np.stack([np.linspace(28, 36, 5), np.full(5, 36.0)], 1)     # nostrils
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    points[36:42] = np.stack([18 + 5 * np.cos(angles), 22 + 2 * np.sin(angles)], 1)  # eye
    points[42:48] = np.stack([46 + 5 * np.cos(angles), 22 + 2 * np.sin(angles)], 1)  # eye
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points[48:60] = np.stack([32 + 10 * np.cos(angles), 48 + 4 * np.sin(angles)], 1)  # lips
    points[60:68] = np.stack([np.linspace(26, 38, 8), np.full(8, 48.0)], 1)     # inner lips
    return points


def test_the_mask_draws_each_part_at_its_level_where_its_landmarks_are():
    mask = landmark_mask(face_landmarks(), 64)
    assert mask.shape == (64, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, *(level for *_, level in MASK_PARTS)}
    assert mask[60, 8:57].min() == 31 and mask[60, :7].max() == 0        # jaw row
    assert mask[14, 10:27].min() == 223 and mask[14, 38:55].min() == 191  # brows
    assert mask[20:33, 32].min() == 63                                    # nose bridge
    assert mask[22, 13] == 159 and mask[22, 51] == 127                    # eyes (closed)
    assert mask[48, 22] == 255 and mask[48, 42] == 255                    # lips, closed
    assert mask[36, 28:37].max() == 0 and mask[48, 27:38].max() == 0      # nostrils, inner lips
    assert (mask > 0).mean() < 0.15                                       # one-pixel lines


def test_the_mask_skips_missing_landmarks_and_refuses_other_schemes():
    points = face_landmarks()
    points[0:17] = np.nan                                 # no jaw in this frame
    mask = landmark_mask(points, (48, 64))
    assert mask.shape == (48, 64) and 31 not in np.unique(mask)
    with pytest.raises(ValueError, match="68-point scheme"):
        landmark_mask(np.zeros((5, 2)), 64)
