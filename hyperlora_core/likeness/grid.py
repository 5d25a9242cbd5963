"""A contact sheet: pictures side by side in a grid, each with a caption below it (drawn with PIL)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError

BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
MISSING_TEXT = (255, 170, 60)
GAP = 8


def _font(size: int):
    return ImageFont.load_default(size=size)  # FreeType's bundled font where Pillow has FreeType


def _fit_text(text: str, font) -> str:
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    # Pillow without FreeType draws with a bitmap font that has no "·".
    return text.replace("\u00b7", "-")


def labelled_grid(pictures: Sequence[np.ndarray], captions: Sequence[str], columns: int = 0, tile: int = 512,
                  highlight: Sequence[bool] | None = None) -> np.ndarray:
    """RGB uint8 grid of the pictures, each fitted into a ``tile`` x ``tile`` square (aspect kept,
    never enlarged beyond its size) with its caption in a strip below.

    ``columns``: pictures per row (0: about square). ``highlight``: captions to draw in the warning
    colour (e.g. the pictures without a face).
    """
    if not pictures:
        raise InputError("The grid needs at least one picture.")
    if len(captions) != len(pictures):
        raise InputError(f"The grid got {len(captions)} caption(s) for {len(pictures)} picture(s).")
    count = len(pictures)
    columns = int(columns) if columns and columns > 0 else math.ceil(math.sqrt(count))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    largest = max(max(p.shape[0], p.shape[1]) for p in pictures)
    side = max(64, min(int(tile), largest))
    font_size = max(12, side // 22)
    font = _font(font_size)
    strip = int(font_size * 1.8)
    cell_w, cell_h = side, side + strip
    sheet = Image.new("RGB", (columns * cell_w + (columns + 1) * GAP, rows * cell_h + (rows + 1) * GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for n, (picture, caption) in enumerate(zip(pictures, captions)):
        image = Image.fromarray(np.asarray(picture, dtype=np.uint8)).convert("RGB")
        scale = min(1.0, side / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        row, col = divmod(n, columns)
        x = GAP + col * (cell_w + GAP)
        y = GAP + row * (cell_h + GAP)
        sheet.paste(image, (x + (side - image.width) // 2, y + (side - image.height) // 2))
        text = _fit_text(caption, font)
        while text and draw.textlength(text, font=font) > side - 4:  # keep the caption inside its cell
            text = text[:-2] + "\u2026" if isinstance(font, ImageFont.FreeTypeFont) else text[:-1]
        width = draw.textlength(text, font=font)
        colour = MISSING_TEXT if highlight is not None and highlight[n] else TEXT
        draw.text((x + (side - width) / 2, y + side + (strip - font_size) / 2), text, fill=colour, font=font)
    return np.asarray(sheet).copy()
