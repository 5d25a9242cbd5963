"""A chart of likeness per picture or per frame (drawn with PIL): users would rather look than read.

One point per picture, joined by a line, on a 0..1 similarity axis (lower when a score is negative);
the threshold as a dashed line, the worst picture in red, a picture without a face as a grey cross on
the axis (a gap in the line, never a 0).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError
from .grid import _font
from .stats import LOW_LIKENESS, summarise

BACKGROUND = (24, 24, 24)
AXIS = (120, 120, 120)
GRIDLINE = (52, 52, 52)
LINE = (90, 170, 255)
POINT = (235, 235, 235)
WORST = (255, 80, 80)
THRESHOLD = (255, 170, 60)
MISSING = (150, 150, 150)


def likeness_chart(scores: Sequence, labels: Sequence[str] | None = None, threshold: float = LOW_LIKENESS,
                   title: str = "likeness per picture", x_name: str = "picture", size: tuple[int, int] = (960, 400),
                   x_values: Sequence[int] | None = None) -> np.ndarray:
    """RGB uint8 (height, width, 3) chart of the scores (``Likeness`` objects or numbers; None / NaN: no
    face). ``x_values``: the number shown under each point (frame numbers of a video); default 0, 1, ..."""
    stats = summarise(scores, threshold, labels)
    values = [None if i in stats.missing else float(getattr(s, "similarity", s)) for i, s in enumerate(scores)]
    xs = list(range(len(values))) if x_values is None else [int(v) for v in x_values]
    if len(xs) != len(values):
        raise InputError(f"{len(xs)} x values for {len(values)} scores.")
    width, height = size
    left, right, top, bottom = 64, 24, 44, 52
    low = min(0.0, *(v for v in values if v is not None)) if stats.scored else 0.0
    low = float(np.floor(low * 10) / 10)
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(12)
    plot_w, plot_h = width - left - right, height - top - bottom

    def y_of(v: float) -> float:
        return top + (1.0 - (v - low) / (1.0 - low)) * plot_h

    def x_of(i: int) -> float:
        return left + (plot_w / 2 if len(values) == 1 else i * plot_w / (len(values) - 1))

    step = 0.1 if 1.0 - low <= 1.2 else 0.2
    for k in range(int(np.ceil(low / step - 1e-9)), int(np.floor(1.0 / step + 1e-9)) + 1):
        tick = k * step
        y = y_of(float(tick))
        draw.line([(left, y), (width - right, y)], fill=GRIDLINE)
        draw.text((left - 8, y), f"{tick:.1f}", fill=AXIS, font=small, anchor="rm")
    draw.line([(left, top), (left, top + plot_h), (width - right, top + plot_h)], fill=AXIS, width=2)
    # the threshold, dashed
    y = y_of(stats.threshold)
    for x in range(left, width - right, 12):
        draw.line([(x, y), (min(x + 6, width - right), y)], fill=THRESHOLD, width=2)
    draw.text((width - right, y - 4), f"{stats.threshold:.2f}", fill=THRESHOLD, font=small, anchor="rb")
    # the line, broken where a picture has no face
    run: list[tuple[float, float]] = []
    for i, v in enumerate(values + [None]):
        if v is None:
            if len(run) > 1:
                draw.line(run, fill=LINE, width=2)
            run = []
        else:
            run.append((x_of(i), y_of(v)))
    radius = 4 if len(values) <= 60 else 2
    for i, v in enumerate(values):
        x = x_of(i)
        if v is None:
            yb = top + plot_h
            draw.line([(x - 5, yb - 5), (x + 5, yb + 5)], fill=MISSING, width=2)
            draw.line([(x - 5, yb + 5), (x + 5, yb - 5)], fill=MISSING, width=2)
            continue
        colour = WORST if i == stats.worst else POINT
        draw.ellipse([x - radius, y_of(v) - radius, x + radius, y_of(v) + radius], fill=colour)
    step = max(1, int(np.ceil(len(values) / 16)))
    for i in range(0, len(values), step):
        draw.text((x_of(i), top + plot_h + 8), str(xs[i]), fill=AXIS, font=small, anchor="mt")
    draw.text((left + plot_w / 2, height - 8), x_name, fill=AXIS, font=small, anchor="mb")
    if stats.scored:
        head = (f"{title}: min {stats.minimum:.2f}  median {stats.median:.2f}  max {stats.maximum:.2f}  "
                f"worst {stats.labels[stats.worst]}")
    else:
        head = f"{title}: no face found"
    if stats.missing:
        head += f"  ({len(stats.missing)} without a face)"
    draw.text((left, 12), head, fill=POINT, font=font)
    if stats.worst is not None:
        wy = y_of(values[stats.worst])
        above = wy > top + plot_h / 2  # in the lower half the label goes above the point, clear of the axis
        draw.text((x_of(stats.worst), wy - 8 if above else wy + 8), f"{values[stats.worst]:.2f}", fill=WORST,
                  font=small, anchor="mb" if above else "mt")
    return np.array(image)  # writable, for torch.from_numpy
