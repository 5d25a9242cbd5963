"""The spec section 8 crops of one photo: the CLIP crop (background greyed out), the Base-LoRA
crop (face blurred out), the landmark square, and CLIP's own preprocessing outside ComfyUI."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..constants import CLIP_MEAN, CLIP_SIZE, CLIP_STD
from ..errors import InputError

# Landmarks of the face contour and brows, in the order of spec section 8.
FACE_POLYGON = (
    (1, *range(9, 17), *range(2, 9), 0, *range(24, 17, -1), *range(32, 24, -1), 17)
    + (101, 105, 104, 103, 102, 50, 51, 49, 48, 43)
)
MASK_SIZE = 512
MASK_BOX_SCALE = 1.6
BACKGROUND_BLUR = 15
FACE_SCALE = 1.4
FACE_BLUR = 45
GREY = (127, 127, 127)

_BICUBIC = Image.Resampling.BICUBIC


def landmark_box(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Centre (cx, cy) and half-side l of the landmark square: l = 0.75 x the longer side of the
    landmarks' min/max box, and cy moved up by 0.125 l."""
    points = np.asarray(landmarks, dtype=np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    cx, cy = (low + high) / 2.0
    half = 0.75 * float(max(high - low))
    return float(cx), float(cy - 0.125 * half), half


def square_crop(image: Image.Image, cx: float, cy: float, half: float) -> Image.Image:
    """The square (cx - half, cy - half, cx + half, cy + half); black outside the photo."""
    return image.crop((cx - half, cy - half, cx + half, cy + half))


def _mask_square(points: np.ndarray) -> tuple[float, float, float, float]:
    centre = points.mean(axis=0)
    half = MASK_BOX_SCALE * float(max(points.max(axis=0) - points.min(axis=0))) / 2.0
    return (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)


def _blur_at_512(region: Image.Image, radius: float) -> Image.Image:
    size = region.size
    if min(size) < 1:  # degenerate landmarks: nothing to blur
        return region
    blurred = region.resize((MASK_SIZE, MASK_SIZE), _BICUBIC).filter(ImageFilter.GaussianBlur(radius))
    return blurred.resize(size, _BICUBIC)


def soft_polygon_mask(size: tuple[int, int], points: np.ndarray, radius: float) -> Image.Image:
    """Mode "L" mask of ``size`` (width, height): the polygon filled, blurred at 512 px in its square."""
    points = np.asarray(points, dtype=np.float64)
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([(float(x), float(y)) for x, y in points], fill=255)
    box = _mask_square(points)
    soft = _blur_at_512(mask.crop(box), radius)
    out = Image.new("L", size, 0)
    out.paste(soft, (round(box[0]), round(box[1])))
    return out


def remove_background(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    """The face (contour and brows, softly masked) on a grey (127, 127, 127) canvas."""
    points = np.asarray(landmarks, dtype=np.float64)[list(FACE_POLYGON)]
    mask = soft_polygon_mask(image.size, points, BACKGROUND_BLUR)
    return Image.composite(image.convert("RGB"), Image.new("RGB", image.size, GREY), mask)


def blur_face(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    """The photo with the face region (polygon scaled 1.4x) blurred out, for the Base-LoRA."""
    image = image.convert("RGB")
    points = np.asarray(landmarks, dtype=np.float64)[list(FACE_POLYGON)]
    centre = points.mean(axis=0)
    points = centre + FACE_SCALE * (points - centre)
    box = _mask_square(points)
    blurred = image.copy()
    blurred.paste(_blur_at_512(image.crop(box), FACE_BLUR), (round(box[0]), round(box[1])))
    return Image.composite(blurred, image, soft_polygon_mask(image.size, points, BACKGROUND_BLUR))


def clip_crop(
    image: Image.Image, landmarks: np.ndarray, remove_bg: bool = True, grey: bool = False
) -> np.ndarray:
    """CLIP input before resizing: the landmark square of the (background-removed) photo."""
    if remove_bg:
        image = remove_background(image, landmarks)
    cx, cy, half = landmark_box(landmarks)
    crop = square_crop(image.convert("RGB"), cx, cy, half)
    if grey:
        crop = crop.convert("L").convert("RGB")
    return np.asarray(crop).copy()


def base_crop(image: Image.Image, landmarks: np.ndarray, crop: bool = True) -> np.ndarray:
    """Base-LoRA input before resizing: the face blurred out, cut to the landmark square if ``crop``."""
    blurred = blur_face(image, landmarks)
    if crop:
        blurred = square_crop(blurred, *landmark_box(landmarks))
    return np.asarray(blurred).copy()


def clip_pixel_values(crops: Sequence[Any]) -> "torch.Tensor":  # noqa: F821
    """OpenAI CLIP ViT-L/14 preprocessing of RGB crops, as ``CLIPImageProcessor`` does it.

    Shortest side resized to 224 (PIL bicubic), centre crop 224x224, scaled to 0..1, normalised
    with CLIP's mean and std. Returns float32 (N, 3, 224, 224). For use outside ComfyUI (whose
    CLIP vision loader preprocesses itself).
    """
    import torch

    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    batch = []
    for crop in crops:
        image = crop.convert("RGB") if isinstance(crop, Image.Image) else Image.fromarray(np.asarray(crop, dtype=np.uint8))
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(CLIP_SIZE * long / short)
        size = (CLIP_SIZE, new_long) if width <= height else (new_long, CLIP_SIZE)
        array = np.asarray(image.resize(size, _BICUBIC))
        top = (size[1] - CLIP_SIZE) // 2
        left = (size[0] - CLIP_SIZE) // 2
        array = array[top : top + CLIP_SIZE, left : left + CLIP_SIZE]
        array = (array.astype(np.float64) * (1 / 255)).astype(np.float32)
        batch.append(((array - mean) / std).transpose(2, 0, 1))
    if not batch:
        raise InputError("clip_pixel_values needs at least one crop.")
    return torch.from_numpy(np.ascontiguousarray(np.stack(batch)))
