"""face/crops.py: the spec section 8 crops, their geometry checked on synthetic landmarks against the
spec's formulas. The exact pixel rules of background removal and the Base-LoRA blur:
tests/test_face_crops_pixels.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from face_photos import photo
from hyperlora_core.face import FACE_POLYGON, base_crop, blur_face, clip_crop, landmark_box, remove_background
from tiny_face_models import landmarks_for_box

SPEC_POLYGON = [1, 9, 10, 11, 12, 13, 14, 15, 16, 2, 3, 4, 5, 6, 7, 8, 0,
                24, 23, 22, 21, 20, 19, 18, 32, 31, 30, 29, 28, 27, 26, 25, 17,
                101, 105, 104, 103, 102, 50, 51, 49, 48, 43]


def test_face_polygon_is_the_spec_landmark_order():
    assert list(FACE_POLYGON) == SPEC_POLYGON


def test_landmark_box_follows_the_spec_formula():
    rng = np.random.default_rng(1)
    points = rng.uniform([50, 80], [250, 200], size=(106, 2))
    cx, cy, half = landmark_box(points)
    width, height = np.ptp(points[:, 0]), np.ptp(points[:, 1])
    assert half == pytest.approx(0.75 * max(width, height))
    assert cx == pytest.approx((points[:, 0].min() + points[:, 0].max()) / 2)
    assert cy == pytest.approx((points[:, 1].min() + points[:, 1].max()) / 2 - 0.125 * half)


def coordinate_image(width, height) -> Image.Image:
    """Pixel (x, y) holds (x mod 256, y mod 256, 200): any crop says where it came from."""
    ys, xs = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([xs % 256, ys % 256, np.full_like(xs, 200)], axis=2).astype(np.uint8))


@pytest.mark.parametrize("box", [(100, 90, 220, 250), (3, 10, 150, 190), (200, 150, 318, 238)])
def test_clip_crop_is_the_landmark_square_with_black_outside_the_photo(box):
    image = coordinate_image(320, 240)
    landmarks = landmarks_for_box(box) + 0.37  # off the pixel grid
    crop = clip_crop(image, landmarks, remove_bg=False)
    cx, cy, half = landmark_box(landmarks)
    x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    assert crop.shape == (y1 - y0, x1 - x0, 3)
    assert abs(crop.shape[0] - 2 * half) <= 1 and abs(crop.shape[1] - 2 * half) <= 1
    source = np.asarray(image)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    inside = (xs >= 0) & (xs < 320) & (ys >= 0) & (ys < 240)
    expected = np.zeros_like(crop)
    expected[inside] = source[ys[inside], xs[inside]]
    np.testing.assert_array_equal(crop, expected)
    if box[0] < 20 or box[2] > 300:  # faces near the border: black where the photo ends
        assert (~inside).any() and (crop[~inside] == 0).all()


def test_grey_clip_crop_is_the_luminance_of_the_colour_crop():
    image = Image.fromarray(photo(320, 240, seed=4))
    landmarks = landmarks_for_box((90, 60, 210, 200))
    colour = clip_crop(image, landmarks, remove_bg=True)
    grey = clip_crop(image, landmarks, remove_bg=True, grey=True)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    np.testing.assert_array_equal(grey[..., 0], np.asarray(Image.fromarray(colour).convert("L")))


def test_background_removal_keeps_the_face_and_greys_the_rest():
    rgb = photo(400, 300, seed=5)
    box = (120, 60, 260, 240)
    landmarks = landmarks_for_box(box)
    out = np.asarray(remove_background(Image.fromarray(rgb), landmarks))
    points = landmarks[SPEC_POLYGON]
    side = 1.6 * max(np.ptp(points[:, 0]), np.ptp(points[:, 1]))
    margin = 3 * 15 * side / 512 + 2  # the blur reaches about three radii at 512 px
    inside = Image.new("L", (400, 300), 0)
    ImageDraw.Draw(inside).polygon([tuple(p) for p in points], fill=255)
    inside = np.asarray(inside) > 0
    distance_in = np.asarray(Image.fromarray(inside.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(2 * int(margin) + 1))) > 0
    distance_out = np.asarray(Image.fromarray(inside.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * int(margin) + 1))) == 0
    assert distance_in.sum() > 1000 and distance_out.sum() > 10000
    np.testing.assert_array_equal(out[distance_in], rgb[distance_in])
    assert (out[distance_out] == 127).all()


def test_only_the_outline_landmarks_shape_the_background_mask():
    image = Image.fromarray(photo(320, 260, seed=6))
    landmarks = landmarks_for_box((80, 50, 230, 230))
    moved = landmarks.copy()
    others = [i for i in range(106) if i not in SPEC_POLYGON]
    moved[others] += np.random.default_rng(0).normal(0, 15, (len(others), 2))
    np.testing.assert_array_equal(np.asarray(remove_background(image, landmarks)), np.asarray(remove_background(image, moved)))


def test_base_crop_blurs_out_the_face_and_nothing_far_from_it():
    checker = ((np.indices((300, 400)).sum(axis=0) // 3) % 2 * 200 + 20).astype(np.uint8)
    rgb = np.repeat(checker[:, :, None], 3, axis=2)
    box = (140, 70, 260, 230)
    landmarks = landmarks_for_box(box)
    blurred = base_crop(Image.fromarray(rgb), landmarks, crop=False)
    assert blurred.shape == rgb.shape
    cx = (box[0] + box[2]) // 2
    centre = blurred[140:160, cx - 10 : cx + 10].astype(float)
    assert centre.std() < 0.1 * rgb[140:160, cx - 10 : cx + 10].std()  # the face is smooth now
    points = landmarks[SPEC_POLYGON]
    c = points.mean(axis=0)
    scaled = c + 1.4 * (points - c)
    reach = 1.6 * max(np.ptp(scaled[:, 0]), np.ptp(scaled[:, 1])) / 2 + 2
    far = np.ones(rgb.shape[:2], dtype=bool)
    far[max(0, int(c[1] - reach)) : int(c[1] + reach), max(0, int(c[0] - reach)) : int(c[0] + reach)] = False
    np.testing.assert_array_equal(blurred[far], rgb[far])
    cropped = base_crop(Image.fromarray(rgb), landmarks, crop=True)
    cx_, cy_, half = landmark_box(landmarks)
    expected = np.asarray(Image.fromarray(blurred).crop((cx_ - half, cy_ - half, cx_ + half, cy_ + half)))
    np.testing.assert_array_equal(cropped, expected)
    np.testing.assert_array_equal(np.asarray(blur_face(Image.fromarray(rgb), landmarks)), blurred)
