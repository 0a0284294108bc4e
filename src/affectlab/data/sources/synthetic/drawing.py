"""Drawing the synthetic faces: face parameters + AU intensities + nuisances → an RGB image
(:func:`render_face`) and the 68 landmarks of that drawing (:func:`face_landmarks`).

What a face is — its identity parameters, the AU displacement constants, the random draws of
faces, occluders and nuisances, which AUs an occluder hides — lives in
:mod:`affectlab.data.sources.synthetic.faces`; this module turns them into pixels.

Drawing happens at ``SUPERSAMPLE`` times the output resolution on a canvas large enough for the
pose transform (rotation, scale, shift), which is applied with one affine resampling; the image
is then box-filtered down to the output size (antialiasing), and illumination and pixel noise
are applied at the output resolution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from affectlab.data.sources.synthetic.faces import (
    AU1_AU2_FOREHEAD_WRINKLE,
    AU1_INNER_BROW_RAISE,
    AU2_OUTER_BROW_RAISE,
    AU4_BROW_KNIT,
    AU4_BROW_LOWER,
    AU4_GLABELLA_FURROW,
    AU5_LID_RAISE,
    AU6_CHEEK_RAISE,
    AU6_CROWS_FEET,
    AU6_LOWER_LID_RAISE,
    AU6_UPPER_LID_NARROW,
    AU7_LOWER_LID_RAISE,
    AU7_UPPER_LID_NARROW,
    AU9_NOSE_WRINKLE,
    AU9_NOSTRIL_RAISE,
    AU9_UPPER_LIP_RAISE,
    AU10_UPPER_LIP_RAISE,
    AU12_CORNER_OUT,
    AU12_CORNER_RAISE,
    AU12_NASOLABIAL,
    AU15_CORNER_LOWER,
    AU17_CHIN_BOSS,
    AU17_LIP_PUSH,
    AU20_CORNER_LOWER,
    AU20_LIP_THIN,
    AU20_STRETCH,
    AU23_LIP_THIN,
    AU23_NARROW,
    AU25_OPEN,
    AU26_CHIN_DROP,
    AU26_OPEN,
    BLUSH,
    DARK,
    FACE_CENTER_Y,
    FACE_HALF_HEIGHT,
    HAIRLINE_POWER,
    MAX_INTENSITY,
    MOUTH_INSIDE,
    SCLERA,
    SUPERSAMPLE,
    SUPPORTED_AUS,
    TEETH,
    YAW_SHIFT,
    ClutterShape,
    Color,
    FaceParams,
    Nuisance,
    Occluder,
    _mix,
    _shade,
)

# ---------------------------------------------------------------------------------------------
# Rendering.


class _Frame:
    """Face units → canvas pixels, with the yaw warp (features slide, the outline stays)."""

    def __init__(self, cx: float, cy: float, unit: float, yaw: float, head_half_width: float):
        self.cx, self.cy, self.unit = cx, cy, unit
        self.yaw_shift = yaw * YAW_SHIFT
        self.half_width = head_half_width

    def x(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray | float:
        # The shift fades to 0 at the head outline (and beyond, for hair and body).
        depth = np.sqrt(np.clip(1.0 - (np.asarray(x) / self.half_width) ** 2
                                - np.clip(np.asarray(y), 0, None) ** 2 * 0.3, 0.0, 1.0))
        return self.cx + (x + self.yaw_shift * depth) * self.unit

    def points(self, xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
        xs = np.asarray(xs, dtype=float)
        ys = np.asarray(ys, dtype=float)
        px = self.x(xs, ys)
        py = self.cy + ys * self.unit
        return list(zip(np.broadcast_to(px, xs.shape).tolist(),
                        np.broadcast_to(py, ys.shape).tolist()))

    def ellipse(self, x: float, y: float, rx: float, ry: float) -> list[float]:
        px = float(self.x(x, y))
        py = self.cy + y * self.unit
        return [px - rx * self.unit, py - ry * self.unit, px + rx * self.unit, py + ry * self.unit]

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.unit)))


class _AU:
    """AU intensities after ``effect_scale``, clipped to [0, MAX_INTENSITY]; missing AUs are 0."""

    def __init__(self, intensities: Mapping[int, float], effect_scale: float):
        unknown = sorted(set(intensities) - set(SUPPORTED_AUS))
        if unknown:
            raise ValueError(f"the renderer does not support AU(s) {unknown}; supported AUs: "
                             f"{list(SUPPORTED_AUS)}")
        self.values = {au: min(max(float(v) * effect_scale, 0.0), MAX_INTENSITY)
                       for au, v in intensities.items()}

    def __getitem__(self, au: int) -> float:
        return self.values.get(au, 0.0)


def _line(draw: ImageDraw.ImageDraw, frame: _Frame, xs, ys, color: Color, width: float) -> None:
    draw.line(frame.points(xs, ys), fill=color, width=frame.width(width), joint="curve")


def _draw_background(draw: ImageDraw.ImageDraw, shapes: tuple[ClutterShape, ...], centre: float,
                     side: int) -> None:
    for shape in shapes:
        box = [centre + v * side for v in shape.box]
        if shape.kind == "rect":
            draw.rectangle(box, fill=shape.color)
        elif shape.kind == "ellipse":
            draw.ellipse(box, fill=shape.color)
        else:
            draw.line(box, fill=shape.color, width=max(1, side // 40))


# Geometry of the parts that move with the AUs (face units), shared by the drawing and by
# face_landmarks.


def _outline(face: FaceParams, au: _AU, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head outline at angles ``theta`` (0 right, π/2 chin): an ellipse with a narrower jaw;
    the jaw drop (AU26) lowers the lower half."""
    s, c = np.sin(theta), np.cos(theta)
    lower = np.clip(s, 0, None)
    xs = face.head_half_width * c * (1 - (1 - face.jaw_width) * lower**2)
    ys = np.where(s > 0, s * (1 + AU26_CHIN_DROP * au[26]), s)
    return xs, ys


def _eyelids(face: FaceParams, au: _AU, cx: float, side: int,
             t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Lid curves of the eye centred at ``cx`` at positions t ∈ [−1, 1] (corner to corner):
    xs, upper-lid ys, lower-lid ys, and the upper and lower openings at the centre."""
    ew, ey = face.eye_half_width, face.eye_y
    closure = min(au[43], 1.0)
    upper = face.eye_upper * (1 + AU5_LID_RAISE * au[5]) * max(
        0.0, 1 - AU6_UPPER_LID_NARROW * au[6] - AU7_UPPER_LID_NARROW * au[7]) * (1 - closure)
    lower = face.eye_lower * max(
        0.05, 1 - AU6_LOWER_LID_RAISE * au[6] - AU7_LOWER_LID_RAISE * au[7]) * (1 - closure)
    bump = (1 - t**2) ** 0.8
    # the lid peak sits a little toward the inner corner, as in real eyes
    upper_y = ey - upper * bump * (1 + 0.15 * t * side * -1)
    lower_y = ey + lower * bump
    return cx + t * ew, upper_y, lower_y, upper, lower


def _brow(face: FaceParams, au: _AU, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The brow's three points, inner end first."""
    ex, ew = face.eye_spacing / 2, face.eye_half_width
    by = face.brow_y
    raise1 = AU1_INNER_BROW_RAISE * au[1]
    raise2 = AU2_OUTER_BROW_RAISE * au[2]
    lower4 = AU4_BROW_LOWER * au[4]
    xs = np.array([ex - 0.85 * ew - AU4_BROW_KNIT * au[4], ex + 0.25 * ew, ex + 1.25 * ew]) * side
    ys = by + np.array([
        face.brow_tilt - raise1 - 0.15 * raise2 + lower4,
        -face.brow_arch - 0.6 * raise1 - 0.6 * raise2 + 0.8 * lower4,
        0.02 - 0.15 * raise1 - raise2 + 0.5 * lower4,
    ])
    return xs, ys


@dataclass(frozen=True)
class _Mouth:
    """The lips as curves over t ∈ [−1, 1] (:data:`MOUTH_T`, left corner → right corner)."""

    xs: np.ndarray
    line: np.ndarray
    upper_inner: np.ndarray
    lower_inner: np.ndarray
    upper_outer: np.ndarray
    lower_outer: np.ndarray
    corner: float
    half_width: float
    opening: float


MOUTH_T = np.linspace(-1, 1, 25)


def _mouth(face: FaceParams, au: _AU) -> _Mouth:
    """The lip line y(t) = mouth_y + corner·t² − lift·(1 − t²); the upper/lower inner edges
    open by opening·(1 − t²)^0.7; the outer edges add the lip thickness."""
    corner = (face.mouth_corner - AU12_CORNER_RAISE * au[12] + AU15_CORNER_LOWER * au[15]
              + AU20_CORNER_LOWER * au[20])
    half_width = (face.mouth_half_width + AU12_CORNER_OUT * au[12] + AU20_STRETCH * au[20]
                  - AU23_NARROW * au[23])
    thin = max(0.2, 1 - AU20_LIP_THIN * au[20] - AU23_LIP_THIN * au[23])
    lift17 = AU17_LIP_PUSH * au[17]
    opening = AU25_OPEN * au[25] + AU26_OPEN * au[26]
    raise_upper = AU10_UPPER_LIP_RAISE * au[10] + AU9_UPPER_LIP_RAISE * au[9]
    t = MOUTH_T
    bump = 1 - t**2
    line = face.mouth_y + corner * t**2 - 0.3 * lift17 * bump
    upper_inner = line - (0.35 * opening + raise_upper) * bump**0.7
    lower_inner = line + 0.65 * opening * bump**0.7
    cupid = 1 - 0.3 * np.exp(-(t / 0.15) ** 2)
    upper_outer = (upper_inner - face.upper_lip * thin * (0.3 + 0.7 * bump**0.5) * cupid
                   - raise_upper * bump * 0.5)
    lower_outer = lower_inner + face.lower_lip * thin * (0.3 + 0.7 * bump**0.5) - lift17 * bump
    return _Mouth(t * half_width, line, upper_inner, lower_inner, upper_outer, lower_outer,
                  corner, half_width, opening)


def _draw_head(draw: ImageDraw.ImageDraw, f: _Frame, face: FaceParams, au: _AU) -> None:
    a = face.head_half_width
    skin = face.skin
    # body and neck
    draw.ellipse(f.ellipse(0.0, 1.85, 1.55, 0.65), fill=face.shirt)
    neck = np.array([-0.34, 0.34, 0.36, -0.36]) * a / 0.78
    draw.polygon(f.points(neck, np.array([0.4, 0.4, 1.35, 1.35])), fill=_shade(skin, 0.82))
    # hair behind the head
    hair_rx = a + 0.08 + face.hair_volume
    hair_ry = 1.06 + face.hair_volume * 0.5
    hair_cy = -0.06
    draw.ellipse(f.ellipse(0.0, hair_cy, hair_rx, hair_ry), fill=face.hair)
    if face.long_hair:
        draw.rectangle([f.x(-hair_rx, 2.0), f.cy + hair_cy * f.unit, f.x(hair_rx, 2.0),
                        f.cy + 1.25 * f.unit], fill=face.hair)
    # ears
    for side in (-1, 1):
        draw.ellipse(f.ellipse(side * (a - 0.02), face.eye_y + 0.12, 0.09, 0.17),
                     fill=_shade(skin, 0.9))
    xs, ys = _outline(face, au, np.linspace(0, 2 * np.pi, 72, endpoint=False))
    draw.polygon(f.points(xs, ys), fill=skin)
    # hair cap over the forehead down to the hairline
    top = np.linspace(np.pi, 2 * np.pi, 40)
    cap_x = hair_rx * np.cos(top)
    cap_y = hair_cy + hair_ry * np.sin(top)
    line_x = np.linspace(hair_rx, -hair_rx, 40)
    line_y = (face.hairline
              + (hair_cy - face.hairline) * (np.abs(line_x) / hair_rx) ** HAIRLINE_POWER)
    draw.polygon(f.points(np.concatenate([cap_x, line_x]), np.concatenate([cap_y, line_y])),
                 fill=face.hair)


def _draw_upper_face(draw: ImageDraw.ImageDraw, canvas: Image.Image, f: _Frame, face: FaceParams,
                     au: _AU, gaze: tuple[float, float]) -> None:
    skin = face.skin
    ex, ew, ey = face.eye_spacing / 2, face.eye_half_width, face.eye_y
    by = face.brow_y
    line_w = 0.012
    # Forehead lines: AU1 wrinkles the centre, AU2 the sides.
    for k, dy in enumerate((0.10, 0.17, 0.24)):
        y = by - dy
        if y < face.hairline + 0.04:
            break
        central = AU1_AU2_FOREHEAD_WRINKLE * au[1] * (1 - 0.2 * k)
        lateral = AU1_AU2_FOREHEAD_WRINKLE * au[2] * (1 - 0.2 * k)
        if central > 0.02:
            xs = np.linspace(-0.22, 0.22, 9)
            _line(draw, f, xs, y + 0.015 * (xs / 0.22) ** 2, _mix(skin, DARK, central), line_w)
        if lateral > 0.02:
            for side in (-1, 1):
                xs = side * np.linspace(0.20, ex + ew, 7)
                _line(draw, f, xs, y + 0.02 * ((np.abs(xs) - 0.2) / ex) ** 2,
                      _mix(skin, DARK, lateral), line_w)
    # Glabella furrows: AU4.
    furrow = AU4_GLABELLA_FURROW * au[4]
    if furrow > 0.02:
        for side in (-1, 1):
            _line(draw, f, [side * 0.035, side * 0.045], [by - 0.03, by + 0.09],
                  _mix(skin, DARK, furrow), line_w)
    # Nose wrinkles: AU9.
    wrinkle = AU9_NOSE_WRINKLE * au[9]
    if wrinkle > 0.02:
        for dy in (0.05, 0.10, 0.15):
            xs = np.linspace(-0.07, 0.07, 5)
            _line(draw, f, xs, ey + dy - 0.012 * (1 - (xs / 0.07) ** 2), _mix(skin, DARK, wrinkle),
                  line_w)
    for side in (-1, 1):
        cx = side * ex
        # Cheek mass and infraorbital furrow rise with AU6.
        raise6 = AU6_CHEEK_RAISE * au[6]
        draw.ellipse(f.ellipse(cx + side * 0.04, ey + 0.30 - raise6, 0.13, 0.09),
                     fill=_mix(skin, BLUSH, 0.10 + 0.15 * au[6]))
        xs = cx + np.linspace(-0.8, 0.8, 7) * ew
        _line(draw, f, xs, ey + face.eye_lower + 0.065 - raise6 * 0.6
              + 0.02 * ((xs - cx) / ew) ** 2, _mix(skin, DARK, 0.10 + 0.35 * au[6]), line_w)
        # Crow's feet: AU6.
        crow = AU6_CROWS_FEET * au[6]
        if crow > 0.02:
            ox = cx + side * (ew + 0.02)
            for angle in (-0.45, 0.0, 0.45):
                _line(draw, f, [ox, ox + side * 0.07 * math.cos(angle)],
                      [ey, ey + 0.07 * math.sin(angle)], _mix(skin, DARK, crow), line_w)
        _draw_eye(draw, canvas, f, face, au, cx, side, gaze)
        _draw_brow(draw, f, face, au, side)


def _draw_eye(draw: ImageDraw.ImageDraw, canvas: Image.Image, f: _Frame, face: FaceParams,
              au: _AU, cx: float, side: int, gaze: tuple[float, float]) -> None:
    ey = face.eye_y
    t = np.linspace(-1, 1, 15)
    xs, upper_y, lower_y, upper, lower = _eyelids(face, au, cx, side, t)
    bump = (1 - t**2) ** 0.8
    skin = face.skin
    # Upper-lid crease: hidden when the lid retracts (AU5), folds closer when the eye closes.
    _line(draw, f, xs[2:-2], ey - (upper + 0.045) * bump[2:-2],
          _mix(skin, DARK, 0.35 * max(0.0, 1 - au[5])), 0.010)
    if upper + lower > 0.006:
        polygon = f.points(np.concatenate([xs, xs[::-1]]), np.concatenate([upper_y, lower_y[::-1]]))
        # Draw sclera, iris and pupil clipped to the eye opening.
        px = [p[0] for p in polygon]
        py = [p[1] for p in polygon]
        x0, y0 = int(math.floor(min(px))) - 1, int(math.floor(min(py))) - 1
        x1, y1 = int(math.ceil(max(px))) + 2, int(math.ceil(max(py))) + 2
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in polygon], fill=255)
        eye = Image.new("RGB", (x1 - x0, y1 - y0), SCLERA)
        eye_draw = ImageDraw.Draw(eye)
        r = face.iris_radius
        ix, iy = cx + gaze[0] * r, ey + gaze[1] * r
        box = f.ellipse(ix, iy, r, r)
        eye_draw.ellipse([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0], fill=face.iris)
        box = f.ellipse(ix, iy, r * 0.45, r * 0.45)
        eye_draw.ellipse([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0], fill=(15, 10, 10))
        canvas.paste(eye, (x0, y0), mask)
        _line(draw, f, xs, lower_y, _shade(skin, 0.75), 0.010)
    # Upper lid with lashes (a closed eye is this line alone).
    _line(draw, f, xs, upper_y, _shade(face.hair, 0.5), 0.022)


def _draw_brow(draw: ImageDraw.ImageDraw, f: _Frame, face: FaceParams, au: _AU, side: int) -> None:
    xs, ys = _brow(face, au, side)
    _line(draw, f, xs, ys, _shade(face.hair, 0.7), face.brow_thickness)


def _draw_nose(draw: ImageDraw.ImageDraw, f: _Frame, face: FaceParams, au: _AU) -> None:
    skin = face.skin
    nw, tip = face.nose_half_width, face.nose_tip_y
    lift = AU9_NOSTRIL_RAISE * au[9]
    shadow = _shade(skin, 0.78)
    for side in (-1, 1):
        _line(draw, f, [side * 0.045, side * nw * 0.75], [face.eye_y + 0.06, tip - 0.06 - lift],
              _mix(skin, shadow, 0.45), 0.012)
        # ala (nose wing) and nostril
        draw.ellipse(f.ellipse(side * nw * 0.85, tip - lift - 0.005, nw * 0.35, 0.045), fill=shadow)
        nostril = f.ellipse(side * nw * 0.45, tip + 0.02 - lift, 0.030 * (1 + 0.3 * au[9]), 0.017)
        draw.ellipse(nostril, fill=(60, 35, 30))
    draw.ellipse(f.ellipse(0.0, tip - 0.03, nw * 0.45, 0.05), fill=_shade(skin, 1.06))


def _draw_mouth(draw: ImageDraw.ImageDraw, f: _Frame, face: FaceParams, au: _AU) -> None:
    """The lips of :func:`_mouth`, the folds and creases around them, the chin."""
    skin = face.skin
    m = _mouth(face, au)
    xs, corner, half_width, opening = m.xs, m.corner, m.half_width, m.opening
    upper_inner, upper_outer = m.upper_inner, m.upper_outer
    lower_inner, lower_outer = m.lower_inner, m.lower_outer
    bump = 1 - MOUTH_T**2
    # Nasolabial folds deepen with AU12/AU10/AU9 and follow the lip corners.
    fold = 0.12 + AU12_NASOLABIAL * max(au[12], au[10], 0.5 * au[9])
    for side in (-1, 1):
        _line(draw, f, [side * face.nose_half_width * 1.15, side * (half_width + 0.06)],
              [face.nose_tip_y - 0.02, face.mouth_y + corner + 0.06], _mix(skin, DARK, fold), 0.012)
    # Chin boss (AU17) and mental crease under the lower lip.
    chin_y = 1.0 + AU26_CHIN_DROP * au[26]
    boss = 0.06 + AU17_CHIN_BOSS * au[17]
    draw.ellipse(f.ellipse(0.0, chin_y - 0.17 - 0.03 * au[17], 0.14, 0.07),
                 fill=_mix(skin, DARK, boss * 0.4))
    if au[17] > 0.05:
        for dx, dy in ((-0.05, -0.02), (0.04, -0.01), (0.0, 0.02), (-0.03, 0.03), (0.06, 0.02)):
            draw.ellipse(f.ellipse(dx, chin_y - 0.17 + dy, 0.012, 0.012),
                         fill=_mix(skin, DARK, boss))
    crease_x = np.linspace(-0.6, 0.6, 7) * face.mouth_half_width
    _line(draw, f, crease_x, lower_outer[12] + 0.05 - 0.02 * au[17] + 0.01 * (crease_x / 0.1) ** 2,
          _mix(skin, DARK, 0.12 + 0.25 * au[17]), 0.010)
    # Mouth interior and teeth, then the lips.
    if opening > 0.003:
        draw.polygon(f.points(np.concatenate([xs, xs[::-1]]),
                              np.concatenate([upper_inner, lower_inner[::-1]])), fill=MOUTH_INSIDE)
        teeth_bottom = np.minimum(upper_inner + 0.035 * bump**0.7, lower_inner)
        inner = slice(3, -3)  # teeth stop short of the corners
        draw.polygon(f.points(np.concatenate([xs[inner], xs[inner][::-1]]),
                              np.concatenate([upper_inner[inner], teeth_bottom[inner][::-1]])),
                     fill=TEETH)
    draw.polygon(f.points(np.concatenate([xs, xs[::-1]]),
                          np.concatenate([upper_outer, upper_inner[::-1]])), fill=face.lip)
    draw.polygon(f.points(np.concatenate([xs, xs[::-1]]),
                          np.concatenate([lower_inner, lower_outer[::-1]])),
                 fill=_shade(face.lip, 1.06))
    _line(draw, f, xs, upper_inner, _shade(face.lip, 0.55), 0.012)


def _draw_glasses(draw: ImageDraw.ImageDraw, f: _Frame, face: FaceParams) -> None:
    ex, ew, ey = face.eye_spacing / 2, face.eye_half_width, face.eye_y
    frame_color = (30, 30, 35)
    w = f.width(0.014)
    for side in (-1, 1):
        draw.ellipse(f.ellipse(side * ex, ey + 0.01, ew + 0.04, 0.10), outline=frame_color, width=w)
    bridge = f.points(np.array([-ex + ew + 0.04, ex - ew - 0.04]), np.array([ey - 0.02, ey - 0.02]))
    draw.line(bridge, fill=frame_color, width=w)


def _draw_occluder(draw: ImageDraw.ImageDraw, f: _Frame, occluder: Occluder) -> None:
    x0, y0, x1, y1 = occluder.box
    corners = f.points(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]))
    if occluder.kind == "hand":
        px = [p[0] for p in corners]
        py = [p[1] for p in corners]
        box = [min(px), min(py), max(px), max(py)]
        draw.rounded_rectangle(box, radius=int(0.3 * (box[3] - box[1])), fill=occluder.color)
        for k in range(1, 4):  # finger gaps
            y = box[1] + (box[3] - box[1]) * k / 4
            draw.line([box[0] + 0.15 * (box[2] - box[0]), y, box[2], y],
                      fill=_shade(occluder.color, 0.75), width=f.width(0.012))
    else:
        draw.polygon(corners, fill=occluder.color)


def _canvas_side(side: int, nuisance: Nuisance) -> int:
    """Side of the scene canvas whose pose-transformed view covers the whole output image."""
    theta = math.radians(nuisance.rotation_deg)
    half = (side / 2 * (abs(math.cos(theta)) + abs(math.sin(theta)))
            + math.hypot(*nuisance.shift) * side) / nuisance.scale
    return max(side, 2 * int(math.ceil(half)) + 4)


def _apply_pose(canvas: Image.Image, side: int, nuisance: Nuisance) -> Image.Image:
    """Output pixel p ← canvas pixel R(−θ)(p − c_out − shift)/scale + c_in (one resample)."""
    theta = math.radians(nuisance.rotation_deg)
    cos, sin = math.cos(theta) / nuisance.scale, math.sin(theta) / nuisance.scale
    c_in = canvas.size[0] / 2
    ox = side / 2 + nuisance.shift[0] * side
    oy = side / 2 + nuisance.shift[1] * side
    coeffs = (cos, sin, c_in - cos * ox - sin * oy, -sin, cos, c_in + sin * ox - cos * oy)
    return canvas.transform((side, side), Image.Transform.AFFINE, coeffs,
                            resample=Image.Resampling.BILINEAR)


def _apply_photometric(image: np.ndarray, nuisance: Nuisance) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    if nuisance.light_gradient or nuisance.gain != 1.0:
        grid = np.linspace(-1.0, 1.0, x.shape[0], dtype=np.float32)
        angle = nuisance.light_angle
        light = nuisance.gain * (1 + nuisance.light_gradient * (
            grid[None, :] * math.cos(angle) + grid[:, None] * math.sin(angle)))
        x *= light[:, :, None]
    if nuisance.noise_std > 0:
        noise = np.random.default_rng(nuisance.noise_seed).normal(0.0, nuisance.noise_std, x.shape)
        x += noise.astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _face_frame(face: FaceParams, nuisance: Nuisance, side: int, canvas_side: int) -> _Frame:
    """Face units → pixels of the scene canvas (``side``: the output's side, supersampled)."""
    return _Frame(canvas_side / 2, canvas_side / 2 + FACE_CENTER_Y * side, FACE_HALF_HEIGHT * side,
                  nuisance.yaw, face.head_half_width)


#: jaw points of the 68-point scheme: outline angles from the head's left at the height of its
#: centre, under the chin, to its right (0 = right, π/2 = chin)
_JAW_THETA = np.linspace(np.pi, 0.0, 17)
#: positions t of the lid and lip points used by the 68-point scheme (see face_landmarks)
_EYE_T = np.array([-1.0, -1 / 3, 1 / 3, 1.0, 1 / 3, -1 / 3])
_OUTER_LIP = [0, 4, 8, 12, 16, 20, 24, 20, 16, 12, 8, 4]      # indices into MOUTH_T
_INNER_LIP = [0, 6, 12, 18, 24, 18, 12, 6]


def face_landmarks(face: FaceParams, au_intensity: Mapping[int, float],
                   nuisance: Nuisance = Nuisance(), image_size: int = 64, *,
                   effect_scale: float = 1.0, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """The 68 facial landmarks (iBUG / Multi-PIE scheme) of the face :func:`render_face`
    draws with the same arguments, in pixels of its output ((0, 0): the centre of the top-left
    pixel): where the drawn parts are, moving with the AUs, the pose and the yaw.

    The scheme's points, image-left to image-right (its "right" is the person's right): jaw
    0–16 along the outline from the height of the head's centre under the chin; brows 17–21
    and 22–26 (five points along each drawn brow); nose bridge 27–30 on the midline from the
    eyes to the tip; nostrils 31–35; eyes 36–41 and 42–47 (a corner, two upper-lid points, the
    other corner, two lower-lid points); outer lips 48–59 (corner, upper lip left to right,
    corner, lower lip right to left); inner lips 60–67 the same way. Drawn on a face, they
    give the mask
    channel of :func:`affectlab.data.clips.landmark_mask`.
    """
    au = _AU(au_intensity, effect_scale)
    side = image_size * supersample
    canvas_side = _canvas_side(side, nuisance)
    frame = _face_frame(face, nuisance, side, canvas_side)
    parts = [_outline(face, au, _JAW_THETA)]
    for brow_side in (-1, 1):
        xs, ys = _brow(face, au, brow_side)
        if brow_side < 0:
            xs, ys = xs[::-1], ys[::-1]          # the scheme runs image-left to image-right
        halfway = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
        parts.append((np.interp(halfway, [0, 1, 2], xs), np.interp(halfway, [0, 1, 2], ys)))
    tip = face.nose_tip_y
    lift = AU9_NOSTRIL_RAISE * au[9]
    parts.append((np.zeros(4), np.linspace(face.eye_y, tip - 0.03, 4)))
    parts.append((np.linspace(-0.85, 0.85, 5) * face.nose_half_width,
                  np.full(5, tip + 0.02 - lift)))
    for eye_side in (-1, 1):
        xs, upper_y, lower_y, _, _ = _eyelids(face, au, eye_side * face.eye_spacing / 2,
                                              eye_side, _EYE_T)
        parts.append((xs, np.concatenate([upper_y[:4], lower_y[4:]])))
    m = _mouth(face, au)
    for indices, top, bottom in ((_OUTER_LIP, m.upper_outer, m.lower_outer),
                                 (_INNER_LIP, m.upper_inner, m.lower_inner)):
        half = len(indices) // 2
        ys = np.concatenate([top[indices[:half]], bottom[indices[half:]]])
        ys[0], ys[half] = m.line[0], m.line[-1]               # the corners sit on the lip line
        parts.append((m.xs[indices], ys))
    xs = np.concatenate([p[0] for p in parts])
    ys = np.concatenate([p[1] for p in parts])
    canvas = np.asarray(frame.points(xs, ys)) + 0.5          # drawn coordinates → continuous
    theta = math.radians(nuisance.rotation_deg)
    rotation = nuisance.scale * np.array([[math.cos(theta), -math.sin(theta)],
                                          [math.sin(theta), math.cos(theta)]])
    origin = side / 2 + np.asarray(nuisance.shift) * side     # _apply_pose's inverse
    output = (canvas - canvas_side / 2) @ rotation.T + origin
    return output / supersample - 0.5


def render_face(face: FaceParams, au_intensity: Mapping[int, float],
                nuisance: Nuisance = Nuisance(), image_size: int = 64, *,
                effect_scale: float = 1.0, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Render one face.

    Args:
        face: the identity.
        au_intensity: ``{AU number: intensity}``, intensity 0 (absent) .. 1 (maximal); AUs not
            listed are absent. Each displacement is ``constant * min(intensity * effect_scale,
            MAX_INTENSITY)``.
        nuisance: pose, illumination, noise, background clutter and occluder.
        image_size: output side in pixels.
        effect_scale: multiplies every AU effect (a difficulty knob: < 1 makes AUs subtler).
        supersample: drawing resolution / output resolution.

    Returns:
        uint8 array of shape (image_size, image_size, 3).
    """
    au = _AU(au_intensity, effect_scale)
    side = image_size * supersample
    canvas_side = _canvas_side(side, nuisance)
    canvas = Image.new("RGB", (canvas_side, canvas_side), face.background)
    draw = ImageDraw.Draw(canvas)
    _draw_background(draw, nuisance.clutter, canvas_side / 2, side)
    frame = _face_frame(face, nuisance, side, canvas_side)
    _draw_head(draw, frame, face, au)
    _draw_upper_face(draw, canvas, frame, face, au, nuisance.gaze)
    _draw_nose(draw, frame, face, au)
    _draw_mouth(draw, frame, face, au)
    if face.glasses:
        _draw_glasses(draw, frame, face)
    if nuisance.occluder is not None:
        _draw_occluder(draw, frame, nuisance.occluder)
    image = _apply_pose(canvas, side, nuisance)
    if supersample > 1:
        image = image.resize((image_size, image_size), Image.Resampling.BOX)
    return _apply_photometric(np.asarray(image), nuisance)
