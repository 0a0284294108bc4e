"""Write a PNG preview of the synthetic benchmark (for the README).

Top: training images as a model sees them, one row per expression, each captioned with its AU
labels (``?`` marks AUs hidden by an occluder) and valence/arousal. Bottom: the AU gallery, one
clean face per supported AU at full and at low intensity next to the neutral face, showing that
each AU has a local effect and that weak AUs are subtle.

    python scripts/preview_synthetic.py --out docs/synthetic_preview.png

The samples are the first images of the default configuration's training split: the generator
seeds every subject and image separately, so a build with the default parameters but fewer
images in the other splits reproduces them exactly (in a temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from affectlab.data.contract import EXPRESSIONS
from affectlab.data.sources.synthetic.benchmark import Synthetic
from affectlab.data.sources.synthetic.drawing import render_face
from affectlab.data.sources.synthetic.faces import SUPPORTED_AUS
from affectlab.data.sources.synthetic.story import rng_for, sample_subject

ZOOM = 2              # upscaling of each tile (nearest neighbour: shows the real pixels)
CAPTION_HEIGHT = 30   # pixels of text under each tile
COLUMNS = 8           # samples per expression row
LOW_INTENSITY = 0.35  # the "subtle" row of the AU gallery


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def _tile(image: np.ndarray, lines: list[str], font: ImageFont.ImageFont) -> Image.Image:
    size = image.shape[0] * ZOOM
    tile = Image.new("RGB", (size, size + CAPTION_HEIGHT), (255, 255, 255))
    tile.paste(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST), (0, 0))
    draw = ImageDraw.Draw(tile)
    for k, line in enumerate(lines):
        draw.text((2, size + 1 + 14 * k), line, fill=(0, 0, 0), font=font)
    return tile


def _row(tiles: list[Image.Image], label: str, font: ImageFont.ImageFont, label_width: int,
         gap: int = 4) -> Image.Image:
    width = label_width + sum(t.width + gap for t in tiles)
    row = Image.new("RGB", (width, max(t.height for t in tiles)), (255, 255, 255))
    ImageDraw.Draw(row).text((4, tiles[0].height // 2 - 20), label, fill=(0, 0, 0), font=font)
    x = label_width
    for t in tiles:
        row.paste(t, (x, 0))
        x += t.width + gap
    return row


def sample_grid(dataset: Synthetic, font: ImageFont.ImageFont,
                label_width: int) -> list[Image.Image]:
    """One row per expression of training images with their labels."""
    data = dataset.build()
    table = data.train.table
    names = data.label_names["au"]
    rows = []
    for e, expression in enumerate(EXPRESSIONS):
        # one image per subject, so that a row shows COLUMNS different faces
        rows_of_expression = np.flatnonzero(table.expr == e)
        _, first = np.unique(table.subject[rows_of_expression], return_index=True)
        picks = rows_of_expression[np.sort(first)][:COLUMNS]
        tiles = []
        for i in picks:
            pixels = data.train.load_image(int(i)).permute(1, 2, 0).numpy()
            image = (pixels * 255).round().astype(np.uint8)
            present = [n[2:] for n, v, m in zip(names, table.au[i], table.au_mask[i]) if m and v]
            hidden = [n[2:] for n, m in zip(names, table.au_mask[i]) if not m]
            au_text = "AU " + (",".join(present) or "-")
            if hidden:
                au_text += " ?" + ",".join(hidden)
            va_text = f"v{table.va[i, 0]:+.2f} a{table.va[i, 1]:+.2f}"
            tiles.append(_tile(image, [au_text, va_text], font))
        if tiles:
            rows.append(_row(tiles, expression, font, label_width))
    return rows


def au_gallery(dataset: Synthetic, font: ImageFont.ImageFont,
               label_width: int) -> list[Image.Image]:
    """Neutral face, then each supported AU alone at intensity 1 and at LOW_INTENSITY."""
    params = dataset.params
    # the first training subject with light skin: its features have the most contrast
    for subject_index in range(params.num_subjects_train):
        subject = sample_subject(rng_for(params, "train", subject_index, 0))
        if sum(subject.face.skin) > 3 * 170:
            break
    size = params.image_size
    neutral = render_face(subject.face, {}, image_size=size)
    half = (len(SUPPORTED_AUS) + 1) // 2
    rows = []
    for intensity in (1.0, LOW_INTENSITY):
        for aus in (SUPPORTED_AUS[:half], SUPPORTED_AUS[half:]):
            tiles = [_tile(neutral, ["neutral"], font)]
            for au in aus:
                image = render_face(subject.face, {au: intensity}, image_size=size,
                                    effect_scale=params.au_effect_scale)
                tiles.append(_tile(image, [f"AU{au}"], font))
            rows.append(_row(tiles, f"intensity {intensity:g}", font, label_width))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/synthetic_preview.png", help="PNG to write")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    args = parser.parse_args()
    font = _font(11)
    title_font = _font(16)
    label_width = 90
    with tempfile.TemporaryDirectory() as tmp:
        # Default parameters; the non-training splits shrunk to one image (not shown).
        dataset = Synthetic(root=tmp, seed=args.seed, num_subjects_unlabeled=0,
                            num_subjects_val=1, images_per_subject_val=1,
                            num_subjects_test=1, images_per_subject_test=1)
        sections = [("Training images (labels as annotated; ? = hidden by an occluder)",
                     sample_grid(dataset, font, label_width)),
                    ("Each AU alone on one clean face (no nuisances)",
                     au_gallery(dataset, font, label_width))]
    width = max(row.width for _, rows in sections for row in rows)
    height = sum(30 + sum(row.height + 4 for row in rows) for _, rows in sections)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for title, rows in sections:
        draw.text((4, y + 6), title, fill=(0, 0, 0), font=title_font)
        y += 30
        for row in rows:
            sheet.paste(row, (0, y))
            y += row.height + 4
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
