"""The loss curve of a refine run as a small picture (what the node shows on itself)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 512, 256, 28


LINE = 14


def loss_curve_image(losses: list[float], title: str = "refine loss", notes: list[str] | None = None) -> np.ndarray:
    """uint8 RGB (HEIGHT + a line per note, WIDTH, 3): the loss of each step (grey), its running mean
    (blue), and ``notes`` (e.g. the likeness before and after) as text lines below."""
    notes = notes or []
    image = Image.new("RGB", (WIDTH, HEIGHT + LINE * len(notes) + (6 if notes else 0)), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN + 16, MARGIN, WIDTH - 12, HEIGHT - MARGIN
    draw.rectangle((left, top, right, bottom), outline=(160, 160, 160))
    values = np.asarray([v for v in losses if np.isfinite(v)], dtype=np.float64)
    if values.size:
        low, high = float(values.min()), float(values.max())
        span = high - low or 1.0
        window = max(1, len(values) // 10)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")

        def points(series: np.ndarray, offset: int) -> list[tuple[float, float]]:
            count = max(len(values) - 1, 1)
            return [(left + (i + offset) / count * (right - left), bottom - (v - low) / span * (bottom - top))
                    for i, v in enumerate(series)]

        if len(values) > 1:
            draw.line(points(values, 0), fill=(190, 190, 190), width=1)
            if len(smooth) > 1:
                draw.line(points(smooth, window - 1), fill=(40, 90, 200), width=2)
        draw.text((4, top - 4), f"{high:.3f}", fill=(60, 60, 60))
        draw.text((4, bottom - 8), f"{low:.3f}", fill=(60, 60, 60))
        title = f"{title}: {len(values)} steps, {values[: window].mean():.4f} -> {values[-window:].mean():.4f}"
    draw.text((left, 8), title, fill=(20, 20, 20))
    draw.text((left, bottom + 8), "step", fill=(60, 60, 60))
    for n, note in enumerate(notes):
        draw.text((8, HEIGHT + 2 + n * LINE), note, fill=(20, 20, 20))
    return np.asarray(image)
