"""The spec section 8 crops of one photo, with the reference's pixel conventions.

The CLIP crop (background greyed out), the Base-LoRA crop (face blurred out), the landmark
square, and CLIP's own preprocessing outside ComfyUI. Pixel conventions (spec section 8, which
decide whether the LoRA equals the reference's rather than resembles it):

* Squares are cut with a float box through ``Image.crop``, which rounds each edge (Python
  ``round``, halves to even) and fills outside the photo with black.
* What is cut out, blurred and put back (the face for background removal, the blurred face for
  the Base-LoRA) is pasted at the float corner TRUNCATED toward zero (:func:`paste_position`),
  not at the rounded corner it was cut at.
* Masks are ``ImageDraw.polygon`` at the photo's size; blurs run at 512 x 512 (bicubic resizes,
  ``ImageFilter.GaussianBlur``); pastes blend with ``Image.paste``'s mask arithmetic.
* The CLIP resize is PIL bicubic (see :func:`hyperlora_core.features.clip_pixels.clip_resize`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


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


def outline_points(landmarks: np.ndarray) -> np.ndarray:
    """The face contour and brows of spec section 8 (FACE_POLYGON), as float64 (n, 2)."""
    return np.asarray(landmarks, dtype=np.float64)[list(FACE_POLYGON)]


def polygon_square(points: np.ndarray) -> tuple[float, float, float, float]:
    """The float box (x0, y0, x1, y1) that background removal and the Base-LoRA blur work in:
    the square centred on the MEAN of the outline points, half-side 0.8 x their larger extent (a
    side of 1.6 x). ``Image.crop`` cuts it at its rounded edges (Python ``round``, halves to even)."""
    centre = points.mean(axis=0)
    half = MASK_BOX_SCALE * float(max(points.max(axis=0) - points.min(axis=0))) / 2.0
    return (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)


def paste_position(box: Sequence[float]) -> tuple[int, int]:
    """Where spec section 8 pastes a square cut with the float ``box`` back: its corner truncated
    toward zero (Python ``int``), NOT the rounded corner ``Image.crop`` cut it at. A corner at
    x = 122.756 is cut from 123 and pasted at 122, so the pasted pixels move one to the left
    whenever the fractional part is 0.5 or more; the released weights were trained on that."""
    return int(box[0]), int(box[1])


def _blur_at_512(region: Image.Image, radius: float) -> Image.Image:
    """Resized to 512 x 512 (bicubic), Gaussian-blurred with ``radius``, resized back (bicubic)."""
    size = region.size
    if min(size) < 1:  # degenerate landmarks: nothing to blur
        return region
    blurred = region.resize((MASK_SIZE, MASK_SIZE), _BICUBIC).filter(ImageFilter.GaussianBlur(radius))
    return blurred.resize(size, _BICUBIC)


def _soft_cut(size: tuple[int, int], polygon: np.ndarray, box: Sequence[float], radius: float) -> Image.Image:
    """The paste mask of spec section 8: ``polygon`` filled at the photo's ``size``, cut to ``box``
    and blurred at 512 px; the size of the cut."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([(float(x), float(y)) for x, y in polygon], fill=255)
    return _blur_at_512(mask.crop(tuple(box)), radius)


def soft_polygon_mask(
    size: tuple[int, int], points: np.ndarray, radius: float, box: Sequence[float] | None = None
) -> Image.Image:
    """Mode "L" mask of ``size`` (width, height): the soft mask through which a paste of the square
    ``box`` (default: the polygon's own square) lands on the photo, at :func:`paste_position`."""
    points = np.asarray(points, dtype=np.float64)
    box = polygon_square(points) if box is None else box
    out = Image.new("L", size, 0)
    out.paste(_soft_cut(size, points, box, radius), paste_position(box))
    return out


def remove_background(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    """The face (contour and brows, softly masked) on a grey (127, 127, 127) canvas: the polygon
    square of the photo pasted onto the canvas through its soft mask (radius 15 at 512 px)."""
    image = image.convert("RGB")
    points = outline_points(landmarks)
    box = polygon_square(points)
    canvas = Image.new("RGB", image.size, GREY)
    canvas.paste(image.crop(box), paste_position(box), _soft_cut(image.size, points, box, BACKGROUND_BLUR))
    return canvas


def blur_face(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    """The photo with the face blurred out, for the Base-LoRA: the polygon square (of the outline
    as it is) blurred with radius 45 at 512 px, pasted back through the soft mask (radius 15) of
    the outline scaled 1.4x about its mean."""
    image = image.convert("RGB")
    points = outline_points(landmarks)
    centre = points.mean(axis=0)
    box = polygon_square(points)
    mask = _soft_cut(image.size, centre + FACE_SCALE * (points - centre), box, BACKGROUND_BLUR)
    out = image.copy()
    out.paste(_blur_at_512(image.crop(box), FACE_BLUR), paste_position(box), mask)
    return out


def clip_crop(
    image: Image.Image, landmarks: np.ndarray, remove_bg: bool = True, grey: bool = False
) -> np.ndarray:
    """CLIP input before resizing: the landmark square of the (background-removed) photo, black
    where it leaves the photo; grey-scaled (luminance in all three channels) if ``grey``."""
    if remove_bg:
        image = remove_background(image, landmarks)
    cx, cy, half = landmark_box(landmarks)
    crop = square_crop(image.convert("RGB"), cx, cy, half)
    if grey:
        crop = crop.convert("L").convert("RGB")
    return np.asarray(crop).copy()


def base_crop(image: Image.Image, landmarks: np.ndarray, crop: bool = True) -> np.ndarray:
    """Base-LoRA input before resizing: the face blurred out; if ``crop``, cut to the landmark
    square clamped to the photo (the reference's "safe crop": no black borders, so near an edge
    the crop is not square)."""
    blurred = blur_face(image, landmarks)
    if crop:
        cx, cy, half = landmark_box(landmarks)
        width, height = blurred.size
        blurred = blurred.crop((max(0, cx - half), max(0, cy - half), min(width, cx + half), min(height, cy + half)))
    return np.asarray(blurred).copy()
