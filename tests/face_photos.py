"""Synthetic photos for the face tests: a textured background, a group of three marker faces (see
tiny_face_models), and a tolerance check for boxes and landmarks."""

from __future__ import annotations

import numpy as np

from tiny_face_models import draw_face


def photo(width=640, height=480, seed=0) -> np.ndarray:
    """A textured background that holds no marker colour."""
    rng = np.random.default_rng(seed)
    return rng.integers(60, 180, size=(height, width, 3), dtype=np.uint8)


def close(a, b, tol):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=tol)


def three_faces() -> tuple[np.ndarray, dict]:
    rgb = photo(900, 420, seed=9)
    boxes = {"confident_small_right": (700, 150, 790, 250), "big_middle": (370, 80, 560, 320), "left": (60, 120, 200, 280)}
    for slot, box in enumerate(boxes.values()):
        draw_face(rgb, box, slot=slot, ring=5)
    rng = np.random.default_rng(11)
    for box in boxes.values():  # something different inside each face
        x0, y0, x1, y1 = box
        rgb[y0 + 5 : y1 - 5, x0 + 5 : x1 - 5] = rng.integers(0, 120, 3, dtype=np.uint8)
    return rgb, boxes
