"""Training views of the person's photos: square crops around the face (a few smaller ones as
augmentation), their mirror images, the face mask of each, and the captions.

A view is made from the whole photo and its 106 face landmarks (what the face pipeline found), so the
mask follows the face outline of the same crop and flip as the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..constants import TRIGGER_WORDS
from ..errors import HyperLoRAError
from ..face.crops import outline_points, soft_polygon_mask

DEFAULT_CAPTION = "a photo of a person"
# Mask edge blur (in pixels at 512, as the face pipeline's masks) and the side of the smaller crops,
# as a fraction of the largest square around the face.
MASK_BLUR = 8.0
SMALL_CROP = 0.85


@dataclass
class PhotoView:
    """One training picture: RGB floats 0..1 (H, W, 3), its face mask 0..1 (H, W), its caption."""

    pixels: np.ndarray
    mask: np.ndarray
    caption: str
    source: str


def captions_for(caption: str, count: int, trigger_words: str = TRIGGER_WORDS) -> list[str]:
    """One caption per photo: the trigger words plus the caption's line for that photo (a caption with
    fewer lines than photos repeats its last line; an empty one gives the neutral default)."""
    lines = [line.strip() for line in (caption or "").splitlines() if line.strip()] or [DEFAULT_CAPTION]
    return [(trigger_words + lines[min(i, len(lines) - 1)]).strip() for i in range(count)]


def face_mask(size: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Soft face mask (float 0..1, shape (height, width)) of a photo of ``size`` (width, height)."""
    mask = soft_polygon_mask(size, outline_points(landmarks), MASK_BLUR)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _square(width: int, height: int, cx: float, cy: float, side: float) -> tuple[int, int, int, int]:
    """A square of ``side`` inside the photo, as close to centred on (cx, cy) as the edges allow."""
    side = int(min(side, width, height))
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x0, y0, x0 + side, y0 + side


def training_views(photos: list[np.ndarray], landmarks: list[np.ndarray], captions: list[str], resolution: int,
                   seed: int = 0, flips: bool = True, small_crops: int = 1,
                   sources: list[str] | None = None) -> list[PhotoView]:
    """Square views of each photo at ``resolution``: the largest square around the face, ``small_crops``
    smaller ones at random offsets (seeded), and the mirror image of each when ``flips``."""
    if not photos:
        raise HyperLoRAError("Refining needs at least one photo with a face.")
    if not (len(photos) == len(landmarks) == len(captions)):
        raise HyperLoRAError(f"{len(photos)} photos, {len(landmarks)} face landmark sets and {len(captions)} "
                             "captions: one of each per photo is needed.")
    if resolution < 32 or resolution % 8:
        raise HyperLoRAError(f"resolution must be a multiple of 8 of at least 32, not {resolution}.")
    rng = np.random.default_rng(seed)
    views: list[PhotoView] = []
    for n, (photo, points, caption) in enumerate(zip(photos, landmarks, captions)):
        if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
            raise HyperLoRAError(f"photo {n}: expected uint8 RGB (H, W, 3), got {photo.dtype} {photo.shape}.")
        height, width = photo.shape[:2]
        image = Image.fromarray(photo)
        mask = Image.fromarray((face_mask((width, height), points) * 255).astype(np.uint8))
        points = np.asarray(points, dtype=np.float64)
        cx, cy = points.mean(axis=0)
        largest = min(width, height)
        boxes = [_square(width, height, cx, cy, largest)]
        for _ in range(small_crops):
            side = largest * SMALL_CROP
            jitter = (rng.uniform(-1, 1, 2) * largest * (1 - SMALL_CROP) / 2)
            boxes.append(_square(width, height, cx + jitter[0], cy + jitter[1], side))
        for box in boxes:
            pixels = np.asarray(image.crop(box).resize((resolution, resolution), Image.BICUBIC), np.float32) / 255
            weights = np.asarray(mask.crop(box).resize((resolution, resolution), Image.BILINEAR), np.float32) / 255
            source = sources[n] if sources else f"photo {n}"
            views.append(PhotoView(pixels, weights, caption, source))
            if flips:
                views.append(PhotoView(pixels[:, ::-1].copy(), weights[:, ::-1].copy(), caption, source + " (mirrored)"))
    return views
