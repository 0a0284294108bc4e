"""Grouped bar charts of result tables, drawn with Pillow (matplotlib is not a dependency).

Used by the table scripts: ``scripts/mlcr_tables.py`` (F1 per attribute, one bar per method)
and ``scripts/transfer_tables.py`` (Acc / F1 / Avg per row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class ChartLayout:
    """Pixel geometry and colours of a grouped bar chart."""

    bar_width: int = 9
    group_gap: int = 8
    plot_height: int = 320
    margin_left: int = 56
    margin_right: int = 24
    margin_top: int = 56
    label_area: int = 150
    tick_step: float = 20.0      # y grid every this many points
    y_max: float = 100.0
    font_size: int = 12
    title_size: int = 16
    background: str = "white"
    axis: str = "black"
    grid: str = "#dddddd"
    colors: tuple[str, ...] = ("#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                               "#9467bd", "#8c564b")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def grouped_bar_chart(path: Path, title: str, categories: Sequence[str],
                      series: Sequence[tuple[str, Sequence[float | None]]],
                      layout: ChartLayout = ChartLayout()) -> None:
    """Per category (x axis, labels written vertically) one bar per series, values in
    [0, ``layout.y_max``]; ``series`` = [(legend text, one value per category)], None / NaN
    values drawn as no bar. Written to ``path`` (PNG)."""
    group = layout.bar_width * len(series) + layout.group_gap
    width = layout.margin_left + group * len(categories) + layout.margin_right
    height = layout.margin_top + layout.plot_height + layout.label_area
    image = Image.new("RGB", (width, height), layout.background)
    draw = ImageDraw.Draw(image)
    font, title_font = _font(layout.font_size), _font(layout.title_size)
    bottom = layout.margin_top + layout.plot_height

    def y_of(value: float) -> float:
        return bottom - layout.plot_height * min(max(value, 0.0), layout.y_max) / layout.y_max

    draw.text((layout.margin_left, layout.font_size // 2), title, fill=layout.axis,
              font=title_font)
    ticks = int(layout.y_max // layout.tick_step)
    for tick in range(ticks + 1):
        value = tick * layout.tick_step
        draw.line([(layout.margin_left, y_of(value)), (width - layout.margin_right, y_of(value))],
                  fill=layout.grid)
        draw.text((layout.margin_left - 4, y_of(value)), f"{value:.0f}", fill=layout.axis,
                  font=font, anchor="rm")
    for m, (_, values) in enumerate(series):
        color = layout.colors[m % len(layout.colors)]
        for i, value in enumerate(values):
            if value is None or math.isnan(value):
                continue
            x0 = layout.margin_left + layout.group_gap // 2 + i * group + m * layout.bar_width
            draw.rectangle([x0, y_of(value), x0 + layout.bar_width - 1, bottom], fill=color)
    draw.line([(layout.margin_left, layout.margin_top), (layout.margin_left, bottom),
               (width - layout.margin_right, bottom)], fill=layout.axis)
    for i, label in enumerate(categories):   # labels written vertically under their group
        text_box = draw.textbbox((0, 0), label, font=font)
        text = Image.new("RGBA", (text_box[2] + 2, text_box[3] + 2), (0, 0, 0, 0))
        ImageDraw.Draw(text).text((0, 0), label, fill=layout.axis, font=font)
        text = text.rotate(90, expand=True)
        x = layout.margin_left + i * group + (group - text.width) // 2
        image.paste(text, (x, bottom + 4), text)
    legend_x = width - layout.margin_right
    for m, (label, _) in reversed(list(enumerate(series))):
        legend_x -= draw.textlength(label, font=font) + layout.font_size * 3
        y = layout.margin_top - layout.font_size * 2
        draw.rectangle([legend_x, y, legend_x + layout.font_size, y + layout.font_size],
                       fill=layout.colors[m % len(layout.colors)])
        draw.text((legend_x + layout.font_size * 1.5, y), label, fill=layout.axis, font=font)
    image.save(path)
