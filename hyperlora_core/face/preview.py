"""The preview Load Faces shows: the photo marked up, the CLIP crop and the Base-LoRA crop."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .crops import FACE_POLYGON, landmark_box
from .detection import Detection

PREVIEW_TILE = 512

_BICUBIC = Image.Resampling.BICUBIC


def make_preview(
    rgb: np.ndarray, detection: Detection, row: int, landmarks: np.ndarray, clip: np.ndarray, base: np.ndarray
) -> np.ndarray:
    """Three 512x512 tiles side by side: the photo with every face box (the one used in green),
    its landmarks, face outline and landmark square; the CLIP crop; the Base-LoRA crop."""
    tile = PREVIEW_TILE
    photo = Image.fromarray(rgb)
    scale = tile / max(photo.size)
    shown = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))), _BICUBIC)
    canvas = Image.new("RGB", (3 * tile, tile), (32, 32, 32))
    offset = ((tile - shown.width) // 2, (tile - shown.height) // 2)
    canvas.paste(shown, offset)
    draw = ImageDraw.Draw(canvas)

    def at(points: np.ndarray) -> list[tuple[float, float]]:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2) * scale + offset
        return [tuple(p) for p in points]

    for i, box in enumerate(detection.boxes):
        draw.rectangle(at(box), outline=(0, 255, 0) if i == row else (255, 160, 0), width=3 if i == row else 1)
    outline = at(landmarks[list(FACE_POLYGON)])
    draw.line(outline + outline[:1], fill=(0, 200, 255), width=2)
    for x, y in at(landmarks):
        draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(255, 40, 40))
    cx, cy, half = landmark_box(landmarks)
    draw.rectangle(at([cx - half, cy - half, cx + half, cy + half]), outline=(255, 255, 0), width=1)
    for i, crop in enumerate((clip, base), start=1):
        image = Image.fromarray(crop)
        fit = tile / max(image.size)
        image = image.resize((max(1, round(image.width * fit)), max(1, round(image.height * fit))), _BICUBIC)
        canvas.paste(image, (i * tile + (tile - image.width) // 2, (tile - image.height) // 2))
    return np.asarray(canvas).copy()
