"""Bar charts as PNG images, drawn with Pillow.

Bars are labelled with numbers ("1", "2", ...), never with names: no font that can draw
Hangul can be assumed on a server, and the PyPI packages that ship one were either
unmaintained or incomplete when this was written (see the commit that added this module).
The message that carries the chart lists the numbered names as its caption, in the reader's
language. Pillow's own scalable font (FreeType) draws the digits and counts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import ImageFont

WIDTH = 960
ROW = 64
MARGIN = 28
LABEL_WIDTH = 64
VALUE_WIDTH = 230
BACKGROUND = (255, 255, 255)
TRACK = (236, 239, 243)
BAR = (59, 130, 246)
HIGHLIGHT = (22, 163, 74)
INK = (31, 41, 55)
MUTED = (107, 114, 128)


@dataclass(frozen=True)
class Bar:
    """One bar: a short label (a number), its length 0.0–1.0, and the text beside it."""

    label: str
    ratio: float
    text: str
    highlight: bool = False


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def bar_chart_png(bars: Sequence[Bar], *, footer: str = "") -> bytes:
    """A horizontal bar chart, one row per bar, as PNG bytes (ASCII labels only)."""
    # Imported when a chart is drawn: Pillow costs every process start-up time and ~4 MB.
    from PIL import Image, ImageDraw

    rows = max(1, len(bars))
    height = MARGIN * 2 + rows * ROW + (ROW // 2 if footer else 0)
    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    label_font, value_font, footer_font = _font(30), _font(24), _font(20)
    track_left = MARGIN + LABEL_WIDTH
    track_right = WIDTH - MARGIN - VALUE_WIDTH
    for index, bar in enumerate(bars):
        top = MARGIN + index * ROW
        middle = top + ROW // 2
        draw.text(
            (MARGIN + LABEL_WIDTH // 2, middle), bar.label, fill=INK, font=label_font, anchor="mm"
        )
        draw.rounded_rectangle(
            (track_left, top + 12, track_right, top + ROW - 12), radius=8, fill=TRACK
        )
        ratio = max(0.0, min(1.0, bar.ratio))
        if ratio > 0:
            right = track_left + max(16, int((track_right - track_left) * ratio))
            draw.rounded_rectangle(
                (track_left, top + 12, right, top + ROW - 12),
                radius=8,
                fill=HIGHLIGHT if bar.highlight else BAR,
            )
        draw.text((track_right + 16, middle), bar.text, fill=INK, font=value_font, anchor="lm")
    if footer:
        draw.text((MARGIN, height - MARGIN - 4), footer, fill=MUTED, font=footer_font, anchor="ls")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
