"""Procedural cartoon faces whose facial action units (AUs) have visible, local effects.

This module is the renderer of the synthetic benchmark
(:mod:`affectlab.data.sources.synthetic.story`): identity parameters (:class:`FaceParams`)
+ AU intensities (``{au: intensity in [0, 1]}``) + image nuisances (:class:`Nuisance`) → an RGB
image (uint8, ``(H, W, 3)``). Only numpy and Pillow.

Geometry lives in *face units*: the origin is the centre of the head, x points right, y points
down, and the head's half-height is 1 (the chin is at y = 1, the top of the skull at y = -1).
Each AU moves or shades the features of its own facial region, in proportion to its intensity,
following the FACS descriptions (Ekman & Friesen): e.g. AU12 (lip corner puller) lifts the lip
corners by ``AU12_CORNER_RAISE * intensity`` face units. The displacement constants below are
the full-intensity values; at the default 64 px one face unit is about 26 px, so an AU at
intensity 0.2 moves a feature by well under a pixel: low intensities are genuinely subtle.

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

Color = tuple[int, int, int]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1

# The AUs the renderer draws, and the FACS names of their effects.
AU_DESCRIPTIONS: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    12: "lip corner puller",
    15: "lip corner depressor",
    17: "chin raiser",
    20: "lip stretcher",
    23: "lip tightener",
    25: "lips part",
    26: "jaw drop",
    43: "eyes closed",
}
SUPPORTED_AUS: tuple[int, ...] = tuple(sorted(AU_DESCRIPTIONS))

# ---------------------------------------------------------------------------------------------
# Layout of the image.
SUPERSAMPLE = 3            # drawing resolution / output resolution (box-filtered down)
FACE_HALF_HEIGHT = 0.40    # head half-height as a fraction of the image side
FACE_CENTER_Y = 0.03       # head centre below the image centre, fraction of the image side
YAW_SHIFT = 0.18           # midline shift (face units) at yaw = ±1; the outline stays put
HAIRLINE_POWER = 2.0       # shape of the hairline: y = hairline + drop * (|x| / r) ** power
OCCLUSION_UNKNOWN_FRACTION = 0.6  # an AU is unknown when > this fraction of its region is covered

# ---------------------------------------------------------------------------------------------
# AU effects at intensity 1, in face units (or relative factors where noted).
AU1_INNER_BROW_RAISE = 0.10        # inner brow ends up
AU2_OUTER_BROW_RAISE = 0.10        # outer brow ends up
AU1_AU2_FOREHEAD_WRINKLE = 0.50    # opacity of horizontal forehead lines
AU4_BROW_LOWER = 0.07              # whole brow down (inner end most)
AU4_BROW_KNIT = 0.045              # inner brow ends toward the midline
AU4_GLABELLA_FURROW = 0.55         # opacity of vertical lines between the brows
AU5_LID_RAISE = 0.85               # relative increase of the upper-lid opening
AU6_CHEEK_RAISE = 0.07             # cheek mass and infraorbital furrow up
AU6_LOWER_LID_RAISE = 0.45         # relative decrease of the lower-lid opening
AU6_UPPER_LID_NARROW = 0.20        # relative decrease of the upper-lid opening
AU6_CROWS_FEET = 0.55              # opacity of wrinkles at the outer eye corners
AU7_LOWER_LID_RAISE = 0.65         # relative decrease of the lower-lid opening (lid tightens)
AU7_UPPER_LID_NARROW = 0.20
AU9_NOSE_WRINKLE = 0.65            # opacity of horizontal wrinkles across the nose bridge
AU9_NOSTRIL_RAISE = 0.035          # nostrils and alae up
AU9_UPPER_LIP_RAISE = 0.015
AU10_UPPER_LIP_RAISE = 0.05        # upper lip up (most at the centre)
AU12_CORNER_RAISE = 0.10           # lip corners up
AU12_CORNER_OUT = 0.045            # lip corners outward
AU12_NASOLABIAL = 0.40             # extra opacity of the nasolabial folds
AU15_CORNER_LOWER = 0.075          # lip corners down
AU17_LIP_PUSH = 0.035              # lower lip (and lip line centre) pushed up
AU17_CHIN_BOSS = 0.40              # opacity of the wrinkled chin boss
AU20_STRETCH = 0.075               # lip corners outward (horizontal stretch)
AU20_CORNER_LOWER = 0.015
AU20_LIP_THIN = 0.30               # relative thinning of both lips
AU23_NARROW = 0.035                # lip corners inward
AU23_LIP_THIN = 0.45
AU25_OPEN = 0.06                   # lips apart at the centre
AU26_OPEN = 0.08                   # extra mouth opening from the jaw drop
AU26_CHIN_DROP = 0.10              # chin (and the lower face outline) down
MAX_INTENSITY = 1.5                # intensities (after effect_scale) are clipped to this

# Fixed colours.
SCLERA: Color = (236, 233, 226)
MOUTH_INSIDE: Color = (72, 26, 32)
TEETH: Color = (238, 236, 224)
DARK: Color = (40, 25, 20)
BLUSH: Color = (200, 80, 80)


# ---------------------------------------------------------------------------------------------
# Parameters.


@dataclass(frozen=True)
class FaceParams:
    """Identity of one synthetic subject: shape, colours and the resting (neutral) face.

    Lengths are in face units (head half-height = 1). The resting offsets (``brow_gap``,
    ``brow_tilt``, ``mouth_corner``, ``eye_upper``) vary across subjects by about as much as a
    mid-intensity AU moves the feature, so an AU can only be judged relative to the face.
    """

    head_half_width: float   # head half-width (head half-height = 1)
    jaw_width: float         # 1 = elliptic lower face, smaller = narrower jaw and pointier chin
    eye_y: float             # eye line
    eye_spacing: float       # distance between the eye centres
    eye_half_width: float
    eye_upper: float         # resting upper-lid opening above the eye line
    eye_lower: float         # resting lower-lid opening below the eye line
    iris_radius: float
    brow_gap: float          # resting brow height above the eye line
    brow_tilt: float         # resting inner-end offset, + = inner end lower ("stern" rest face)
    brow_arch: float
    brow_thickness: float
    nose_length: float       # eye line to nose tip
    nose_half_width: float
    mouth_gap: float         # nose tip to lip line
    mouth_half_width: float
    upper_lip: float         # lip thickness at the centre
    lower_lip: float
    mouth_corner: float      # resting lip-corner offset, + = down (resting frown)
    hairline: float          # y of the hairline at the midline
    hair_volume: float
    long_hair: bool
    glasses: bool
    skin: Color
    hair: Color
    iris: Color
    lip: Color
    background: Color
    shirt: Color

    @property
    def brow_y(self) -> float:
        """Resting brow line."""
        return self.eye_y - self.brow_gap

    @property
    def nose_tip_y(self) -> float:
        return self.eye_y + self.nose_length

    @property
    def mouth_y(self) -> float:
        """Resting lip line (centre)."""
        return self.nose_tip_y + self.mouth_gap


@dataclass(frozen=True)
class Occluder:
    """An object in front of the face; ``box`` is in face units (x0, y0, x1, y1)."""

    kind: str   # "sunglasses", "hand", "scarf", "fringe" or "patch"
    box: Box
    color: Color


@dataclass(frozen=True)
class ClutterShape:
    """A background object; ``box`` is relative to the image centre, in image sides."""

    kind: str   # "rect", "ellipse" or "line"
    box: Box
    color: Color


@dataclass(frozen=True)
class Nuisance:
    """Everything about one image that is neither identity nor expression.

    The pose maps a scene point p to ``scale * R(rotation) (p - c) + c + shift * side`` (c: image
    centre). Illumination multiplies the image by
    ``gain * (1 + light_gradient * (x cos(light_angle) + y sin(light_angle)))`` with x, y in
    [-1, 1] across the image; then Gaussian noise of std ``noise_std`` (intensity in [0, 1]) is
    added. The default value is the identity (a clean, frontal, centred face).
    """

    rotation_deg: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    yaw: float = 0.0                 # in [-1, 1]: features slide sideways, outline stays
    gaze: tuple[float, float] = (0.0, 0.0)  # iris offset, fraction of the iris radius
    light_angle: float = 0.0
    light_gradient: float = 0.0
    gain: float = 1.0
    noise_std: float = 0.0
    noise_seed: int = 0
    clutter: tuple[ClutterShape, ...] = ()
    occluder: Occluder | None = None


# ---------------------------------------------------------------------------------------------
# Sampling identities and nuisances.

_SKIN_LIGHT: Color = (243, 212, 188)
_SKIN_DARK: Color = (92, 58, 40)
_HAIR_PALETTE: tuple[Color, ...] = (
    (25, 20, 18), (60, 40, 28), (105, 70, 40), (160, 120, 70), (205, 170, 110),
    (140, 60, 30), (150, 150, 150), (220, 220, 215),
)
_IRIS_PALETTE: tuple[Color, ...] = ((70, 45, 25), (40, 30, 25), (60, 100, 140), (80, 110, 70))


def _mix(a: Color, b: Color, alpha: float) -> Color:
    """``a + alpha * (b - a)``, alpha clipped to [0, 1]: drawing with opacity on a known colour."""
    alpha = min(max(alpha, 0.0), 1.0)
    return (int(round(a[0] + (b[0] - a[0]) * alpha)), int(round(a[1] + (b[1] - a[1]) * alpha)),
            int(round(a[2] + (b[2] - a[2]) * alpha)))


def _shade(c: Color, factor: float) -> Color:
    return (min(255, int(c[0] * factor)), min(255, int(c[1] * factor)),
            min(255, int(c[2] * factor)))


def _jitter(rng: np.random.Generator, c: Color, amount: int) -> Color:
    d = rng.integers(-amount, amount + 1, size=3)
    return (int(np.clip(c[0] + d[0], 0, 255)), int(np.clip(c[1] + d[1], 0, 255)),
            int(np.clip(c[2] + d[2], 0, 255)))


def random_face(rng: np.random.Generator) -> FaceParams:
    """Draw one identity. Ranges are chosen so that faces stay plausible and features never
    collide, while the resting offsets vary by about a mid-intensity AU's displacement."""
    u = rng.uniform
    skin = _jitter(rng, _mix(_SKIN_LIGHT, _SKIN_DARK, float(u(0, 1))), 10)
    hair = _jitter(rng, _HAIR_PALETTE[int(rng.integers(len(_HAIR_PALETTE)))], 12)
    eye_half_width = float(u(0.13, 0.16))
    return FaceParams(
        head_half_width=float(u(0.70, 0.86)),
        jaw_width=float(u(0.55, 0.90)),
        eye_y=float(u(-0.17, -0.08)),
        eye_spacing=float(u(0.50, 0.62)),
        eye_half_width=eye_half_width,
        eye_upper=float(u(0.050, 0.078)),
        eye_lower=float(u(0.030, 0.045)),
        iris_radius=float(u(0.048, 0.060)),
        brow_gap=float(u(0.15, 0.22)),
        brow_tilt=float(u(-0.03, 0.03)),
        brow_arch=float(u(0.0, 0.045)),
        brow_thickness=float(u(0.028, 0.050)),
        nose_length=float(u(0.34, 0.43)),
        nose_half_width=float(u(0.08, 0.115)),
        mouth_gap=float(u(0.16, 0.22)),
        mouth_half_width=float(u(0.17, 0.23)),
        upper_lip=float(u(0.028, 0.045)),
        lower_lip=float(u(0.038, 0.060)),
        mouth_corner=float(u(-0.025, 0.025)),
        hairline=float(u(-0.78, -0.56)),
        hair_volume=float(u(0.0, 0.18)),
        long_hair=bool(rng.random() < 0.4),
        glasses=bool(rng.random() < 0.15),
        skin=skin,
        hair=hair,
        iris=_jitter(rng, _IRIS_PALETTE[int(rng.integers(len(_IRIS_PALETTE)))], 10),
        lip=_jitter(rng, _mix(skin, (175, 70, 80), float(u(0.3, 0.55))), 8),
        background=tuple(int(v) for v in rng.integers(30, 226, size=3)),
        shirt=tuple(int(v) for v in rng.integers(20, 236, size=3)),
    )


def random_occluder(rng: np.random.Generator, face: FaceParams) -> Occluder:
    """An occluder of a random kind, placed over the region that kind usually covers."""
    kind = ("sunglasses", "hand", "scarf", "fringe", "patch")[int(rng.integers(5))]
    u = rng.uniform
    if kind == "sunglasses":
        half_w = face.eye_spacing / 2 + face.eye_half_width + float(u(0.04, 0.10))
        cy = face.eye_y + float(u(-0.03, 0.03))
        half_h = float(u(0.09, 0.14))
        box = (-half_w, cy - half_h, half_w, cy + half_h)
        color = tuple(int(v) for v in rng.integers(10, 70, size=3))
    elif kind == "hand":
        # over the mouth, or over one side of the face
        cx = float(rng.choice([-0.35, 0.0, 0.35])) + float(u(-0.08, 0.08))
        cy = float(u(0.15, 0.65))
        half_w, half_h = float(u(0.25, 0.40)), float(u(0.20, 0.32))
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        color = _jitter(rng, _mix(_SKIN_LIGHT, _SKIN_DARK, float(u(0, 1))), 10)
    elif kind == "scarf":
        top = face.mouth_y + float(u(-0.10, 0.12))
        box = (-1.3, top, 1.3, 1.6)
        color = tuple(int(v) for v in rng.integers(20, 236, size=3))
    elif kind == "fringe":
        bottom = face.brow_y + float(u(-0.02, 0.08))
        half_w = float(u(0.35, 0.75))
        cx = float(u(-0.2, 0.2))
        box = (cx - half_w, face.hairline - 0.1, cx + half_w, bottom)
        color = face.hair
    else:  # a patch (sticker, microphone, ...) anywhere on the face
        cx, cy = float(u(-0.45, 0.45)), float(u(-0.45, 0.75))
        half_w, half_h = float(u(0.10, 0.25)), float(u(0.08, 0.20))
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        color = tuple(int(v) for v in rng.integers(0, 256, size=3))
    return Occluder(kind=kind, box=box, color=color)


def random_nuisance(rng: np.random.Generator, face: FaceParams, *, rotation_deg: float,
                    scale_jitter: float, shift_jitter: float, yaw_jitter: float,
                    illumination: float, noise_std: float, clutter: int,
                    occlusion_prob: float) -> Nuisance:
    """Draw the nuisances of one image.

    rotation ~ U(-rotation_deg, rotation_deg); scale ~ U(1 - scale_jitter, 1 + scale_jitter);
    shift ~ U(-shift_jitter, shift_jitter)² (image sides); yaw ~ U(-yaw_jitter, yaw_jitter);
    light gradient ~ U(0, illumination) in a uniform direction, gain ~ U(1 - illumination/2,
    1 + illumination/2); noise std ~ U(0.5, 1) * noise_std; U{0..clutter} background shapes;
    an occluder with probability ``occlusion_prob``.
    """
    u = rng.uniform
    shapes = []
    for _ in range(int(rng.integers(0, clutter + 1))):
        kind = ("rect", "ellipse", "line")[int(rng.integers(3))]
        cx, cy = float(u(-0.8, 0.8)), float(u(-0.8, 0.8))
        half_w, half_h = float(u(0.05, 0.35)), float(u(0.05, 0.35))
        if rng.random() < 0.6:  # mostly shades of the background, sometimes anything
            color = _jitter(rng, face.background, 70)
        else:
            color = tuple(int(v) for v in rng.integers(0, 256, size=3))
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        shapes.append(ClutterShape(kind, box, color))
    occluder = random_occluder(rng, face) if rng.random() < occlusion_prob else None
    return Nuisance(
        rotation_deg=float(u(-rotation_deg, rotation_deg)),
        scale=float(u(1 - scale_jitter, 1 + scale_jitter)),
        shift=(float(u(-shift_jitter, shift_jitter)), float(u(-shift_jitter, shift_jitter))),
        yaw=float(u(-yaw_jitter, yaw_jitter)),
        gaze=(float(u(-0.5, 0.5)), float(u(-0.25, 0.25))),
        light_angle=float(u(0, 2 * math.pi)),
        light_gradient=float(u(0, illumination)),
        gain=float(u(1 - illumination / 2, 1 + illumination / 2)),
        noise_std=float(u(0.5, 1.0)) * noise_std,
        noise_seed=int(rng.integers(2**31)),
        clutter=tuple(shapes),
        occluder=occluder,
    )


# ---------------------------------------------------------------------------------------------
# Occlusion → unknown AU labels.


def au_evidence_regions(face: FaceParams) -> dict[int, tuple[Box, ...]]:
    """The face-unit boxes a coder looks at to score each AU (the regions the AU changes)."""
    ex = face.eye_spacing / 2
    ew = face.eye_half_width
    by, ey, my = face.brow_y, face.eye_y, face.mouth_y
    inner = ex - ew
    eyes = ((-ex - ew, ey - face.eye_upper - 0.05, -ex + ew, ey + face.eye_lower + 0.03),
            (ex - ew, ey - face.eye_upper - 0.05, ex + ew, ey + face.eye_lower + 0.03))
    cheeks = ((-ex - ew, ey + 0.06, -ex + ew, ey + 0.32), (ex - ew, ey + 0.06, ex + ew, ey + 0.32))
    inner_brows = (-inner - 0.10, by - 0.16, inner + 0.10, by + 0.05)
    outer_brows = ((-ex - 1.3 * ew, by - 0.16, -ex, by + 0.05),
                   (ex, by - 0.16, ex + 1.3 * ew, by + 0.05))
    brows = (-ex - 1.3 * ew, by - 0.08, ex + 1.3 * ew, by + 0.10)
    nose = (-face.nose_half_width - 0.02, ey + 0.03, face.nose_half_width + 0.02,
            face.nose_tip_y + 0.05)
    mw = face.mouth_half_width + 0.08
    mouth = (-mw, my - 0.10, mw, my + 0.11)
    chin = (-face.mouth_half_width, my + 0.05, face.mouth_half_width, 0.95)
    return {
        1: (inner_brows,), 2: outer_brows, 4: (brows,), 5: eyes, 6: eyes + cheeks, 7: eyes,
        9: (nose,), 10: (mouth,), 12: (mouth,), 15: (mouth,), 17: (chin,), 20: (mouth,),
        23: (mouth,), 25: (mouth,), 26: (mouth, chin), 43: eyes,
    }


def _overlap(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def occluded_aus(face: FaceParams, occluder: Occluder | None,
                 min_fraction: float = OCCLUSION_UNKNOWN_FRACTION) -> frozenset[int]:
    """AUs whose evidence region is covered by more than ``min_fraction`` of its area.

    Covered fraction = Σ_boxes area(box ∩ occluder) / Σ_boxes area(box); bilateral AUs keep
    their label when one side stays visible.
    """
    if occluder is None:
        return frozenset()
    hidden = set()
    for au, boxes in au_evidence_regions(face).items():
        area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
        covered = sum(_overlap(b, occluder.box) for b in boxes)
        if covered > min_fraction * area:
            hidden.add(au)
    return frozenset(hidden)


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
