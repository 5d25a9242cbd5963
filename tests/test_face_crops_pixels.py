"""The reference's pixel conventions (spec section 8), re-derived here independently of the code.

What is written out here, in numpy: where a float box is cut (each edge rounded, halves to even,
black outside the photo), where the cut-out is pasted back (the float corner truncated toward
zero), and how a paste blends through its mask (PIL's integer arithmetic). The drawing, resizing
and blurring primitives the spec names (ImageDraw.polygon, bicubic resize, GaussianBlur) are PIL's.
The landmarks are placed so that the corners' fractional parts fall below and above 0.5, where
rounding and truncation part ways.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from hyperlora_core.face import base_crop, clip_crop, remove_background
from tiny_face_models import draw_face, landmarks_for_box

OUTLINE = [1, 9, 10, 11, 12, 13, 14, 15, 16, 2, 3, 4, 5, 6, 7, 8, 0,
           24, 23, 22, 21, 20, 19, 18, 32, 31, 30, 29, 28, 27, 26, 25, 17,
           101, 105, 104, 103, 102, 50, 51, 49, 48, 43]
GREY = 127


def cut(array: np.ndarray, box) -> np.ndarray:
    """The float box cut out of ``array``: edges rounded (halves to even), zeros outside."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    out = np.zeros((y1 - y0, x1 - x0) + array.shape[2:], dtype=array.dtype)
    height, width = array.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = array[sy0:sy1, sx0:sx1]
    return out


def paste(base: np.ndarray, piece: np.ndarray, mask: np.ndarray, x: int, y: int) -> np.ndarray:
    """``piece`` blended onto ``base`` at integer (x, y) through ``mask`` (0..255), as PIL's paste
    rounds: (piece * m + base * (255 - m)) / 255 to the nearest integer."""
    out = base.copy()
    height, width = base.shape[:2]
    ph, pw = piece.shape[:2]
    bx0, by0, bx1, by1 = max(x, 0), max(y, 0), min(x + pw, width), min(y + ph, height)
    if bx1 <= bx0 or by1 <= by0:
        return out
    p = piece[by0 - y : by1 - y, bx0 - x : bx1 - x].astype(np.int64)
    m = mask[by0 - y : by1 - y, bx0 - x : bx1 - x].astype(np.int64)[..., None]
    b = base[by0:by1, bx0:bx1].astype(np.int64)
    t = p * m + b * (255 - m) + 128
    out[by0:by1, bx0:bx1] = (((t >> 8) + t) >> 8).astype(np.uint8)
    return out


def soft(mask: np.ndarray, radius: float) -> np.ndarray:
    """Resized to 512 (bicubic), Gaussian blur, resized back (bicubic)."""
    image = Image.fromarray(mask)
    blurred = image.resize((512, 512), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred.resize(image.size, Image.Resampling.BICUBIC))


def polygon_mask(size, points) -> np.ndarray:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([tuple(map(float, p)) for p in points], fill=255)
    return np.asarray(mask)


def outline_square(points: np.ndarray):
    centre = points.mean(axis=0)
    half = 0.8 * max(np.ptp(points[:, 0]), np.ptp(points[:, 1]))
    return centre, (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)


def landmark_square(landmarks: np.ndarray):
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    half = 0.75 * max(high - low)
    cx, cy = (low + high) / 2
    cy -= 0.125 * half
    return cx - half, cy - half, cx + half, cy + half


def spec_clip_crop(rgb: np.ndarray, landmarks: np.ndarray, position=int) -> np.ndarray:
    points = landmarks[OUTLINE]
    _, box = outline_square(points)
    mask = soft(cut(polygon_mask((rgb.shape[1], rgb.shape[0]), points), box), 15)
    canvas = np.full_like(rgb, GREY)
    canvas = paste(canvas, cut(rgb, box), mask, position(box[0]), position(box[1]))
    return cut(canvas, landmark_square(landmarks))


def spec_base_crop(rgb: np.ndarray, landmarks: np.ndarray, position=int) -> np.ndarray:
    points = landmarks[OUTLINE]
    centre, box = outline_square(points)  # the square of the outline as it is, not scaled
    size = (rgb.shape[1], rgb.shape[0])
    mask = soft(cut(polygon_mask(size, centre + 1.4 * (points - centre)), box), 15)
    blurred = soft(cut(rgb, box), 45)
    out = paste(rgb, blurred, mask, position(box[0]), position(box[1]))
    x0, y0, x1, y1 = landmark_square(landmarks)  # safe crop: clamped to the photo
    return cut(out, (max(0, x0), max(0, y0), min(size[0], x1), min(size[1], y1)))


def placed_landmarks(frac_x: float, frac_y: float, corner=(60.0, 40.0), seed=0) -> np.ndarray:
    """Face landmarks moved so that the outline square's corner is at ``corner`` + fractions."""
    landmarks = landmarks_for_box((100, 80, 240, 250)) + np.random.default_rng(seed).normal(0, 1.5, (106, 2))
    _, box = outline_square(landmarks[OUTLINE])
    shift = np.array([np.floor(corner[0]) + frac_x - box[0], np.floor(corner[1]) + frac_y - box[1]])
    return landmarks + shift


def photo(width=360, height=320, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


FRACTIONS = [(0.2, 0.3), (0.756, 0.6), (0.4, 0.9), (0.49, 0.51), (0.99, 0.01)]


@pytest.mark.parametrize("fx, fy", FRACTIONS)
def test_clip_crop_pastes_the_face_at_the_truncated_corner(fx, fy):
    rgb = photo()
    landmarks = placed_landmarks(fx, fy)
    _, box = outline_square(landmarks[OUTLINE])
    assert box[0] % 1 == pytest.approx(fx, abs=1e-9) and box[1] % 1 == pytest.approx(fy, abs=1e-9)
    expected = spec_clip_crop(rgb, landmarks)
    np.testing.assert_array_equal(clip_crop(Image.fromarray(rgb), landmarks), expected)
    rounded = spec_clip_crop(rgb, landmarks, position=round)
    # Rounding and truncation agree below 0.5 and part ways above it.
    assert np.array_equal(expected, rounded) == (fx < 0.5 and fy < 0.5)


@pytest.mark.parametrize("fx, fy", FRACTIONS)
def test_base_crop_pastes_the_blurred_face_at_the_truncated_corner(fx, fy):
    rgb = photo(seed=2)
    landmarks = placed_landmarks(fx, fy, seed=1)
    expected = spec_base_crop(rgb, landmarks)
    np.testing.assert_array_equal(base_crop(Image.fromarray(rgb), landmarks), expected)
    if fx > 0.5 or fy > 0.5:
        assert not np.array_equal(expected, spec_base_crop(rgb, landmarks, position=round))


@pytest.mark.parametrize("corner", [(-3.7, 20.2), (-0.4, -6.6), (250.7, 5.5)])
def test_corners_outside_the_photo_truncate_toward_zero(corner):
    """int(-3.7) is -3 (toward zero), where floor would give -4; the cut fills black outside."""
    rgb = photo(seed=3)
    landmarks = placed_landmarks(corner[0] % 1, corner[1] % 1, corner=corner, seed=2)
    np.testing.assert_array_equal(clip_crop(Image.fromarray(rgb), landmarks), spec_clip_crop(rgb, landmarks))
    np.testing.assert_array_equal(base_crop(Image.fromarray(rgb), landmarks), spec_base_crop(rgb, landmarks))


def test_background_removed_canvas_is_grey_outside_the_pasted_square():
    rgb = photo(seed=4)
    landmarks = placed_landmarks(0.8, 0.8)
    out = np.asarray(remove_background(Image.fromarray(rgb), landmarks))
    _, box = outline_square(landmarks[OUTLINE])
    x, y = int(box[0]), int(box[1])
    outside = np.ones(rgb.shape[:2], bool)
    w = int(round(box[2])) - int(round(box[0]))
    outside[y : y + w, x : x + w] = False
    assert (out[outside] == GREY).all()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-image, inside insightface
def test_arcface_sees_the_rounded_cut_of_the_original_photo(analyzer, monkeypatch):
    rgb = draw_face(photo(640, 480, seed=5), (203, 117, 341, 299), ring=6)
    seen = []
    recognition = analyzer.models.recognition
    get = recognition.get

    def recording(image, face):
        seen.append((image.copy(), face))
        return get(image, face)

    monkeypatch.setattr(recognition, "get", recording)
    (result,) = analyzer.analyze(rgb)
    cx, cy, half = result.landmark_box
    expected = cut(rgb, (cx - 2 * half, cy - 2 * half, cx + 2 * half, cy + 2 * half))
    (image, _), = seen
    np.testing.assert_array_equal(image[:, :, ::-1], expected)
