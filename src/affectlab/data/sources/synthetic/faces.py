"""Procedural cartoon faces whose facial action units (AUs) have visible, local effects.

This module says what a face of the synthetic benchmark
(:mod:`affectlab.data.sources.synthetic.story`) is: identity parameters (:class:`FaceParams`),
the AUs and their displacement constants, image nuisances (:class:`Nuisance`), occluders and
which AUs they hide, and the random draws of each. :mod:`~affectlab.data.sources.synthetic.
drawing` turns parameters + AU intensities (``{au: intensity in [0, 1]}``) + nuisances into an
RGB image (uint8, ``(H, W, 3)``, :func:`~affectlab.data.sources.synthetic.drawing.render_face`)
and its landmarks. Only numpy and Pillow.

Geometry lives in *face units*: the origin is the centre of the head, x points right, y points
down, and the head's half-height is 1 (the chin is at y = 1, the top of the skull at y = -1).
Each AU moves or shades the features of its own facial region, in proportion to its intensity,
following the FACS descriptions (Ekman & Friesen): e.g. AU12 (lip corner puller) lifts the lip
corners by ``AU12_CORNER_RAISE * intensity`` face units. The displacement constants below are
the full-intensity values; at the default 64 px one face unit is about 26 px, so an AU at
intensity 0.2 moves a feature by well under a pixel: low intensities are genuinely subtle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
