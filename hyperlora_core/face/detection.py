"""Find every face in a photo and choose the one to use.

The reference's detection (spec section 8): SCRFD at 640, retried at 512, 384 and 256 until some
face is found. Beyond it, and only where that finds nothing: an area-averaged copy of a very
large photo, then black borders for faces that fill the frame. The face is chosen by a policy
(largest, most confident, or by position) where the reference always takes the most confident;
"most_confident" is the reference's choice, and with one face in the photo all choices agree.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from ..errors import InputError
from ..files.images import to_rgb_list

# The reference's detection sizes, tried in turn until a face is found.
DETECT_SIZES = (640, 512, 384, 256)
# Then black borders of these fractions of the longer side on each side (a face filling the
# frame is too large for the detector's anchors), detected at DETECT_SIZES[0].
PAD_FRACTIONS = (0.25, 0.5, 1.0)
# Photos whose longer side is above this are also tried on an area-averaged copy of this size when
# the photo itself gives no face: SCRFD's own bilinear resize aliases when it shrinks a 4000 px
# photo 6x, and can lose a face. Crops always use the original.
DETECT_MAX_SIDE = 1280
ARCFACE_DETECT_SIZE = 640
DET_THRESH = 0.5
CHOICES = ("largest", "most_confident")


@dataclass
class Detection:
    """Faces the detector found in one photo, most confident first, in photo pixels."""

    boxes: np.ndarray  # (n, 4) float32 x0, y0, x1, y1
    scores: np.ndarray  # (n,) float32
    keypoints: np.ndarray  # (n, 5, 2) float32: eyes, nose, mouth corners
    size: int = 0  # detection size that found them (0: none found)
    padding: int = 0  # black border added on each side to find them, in photo pixels
    scale: float = 1.0  # size of the copy the detector saw, relative to the photo

    def __len__(self) -> int:
        return len(self.boxes)


def check_choice(choice: str | int) -> str | int:
    """``"largest"``, ``"most_confident"`` or a face index >= 0 (left to right); else InputError."""
    if isinstance(choice, (int, np.integer)) and not isinstance(choice, bool) and choice >= 0:
        return int(choice)
    if isinstance(choice, str):
        text = choice.strip().lower().replace(" ", "_")
        if text in CHOICES:
            return text
        if text.isdigit():
            return int(text)
    raise InputError(
        f"Unknown face choice {choice!r}: use 'largest', 'most_confident' or a face index "
        "0, 1, 2, ... counted from the left."
    )


def choose_face(detection: Detection, choice: str | int, photo: int = 0) -> tuple[int, int]:
    """(row in ``detection``, index counted from the left) of the face that ``choice`` picks."""
    choice = check_choice(choice)
    centres = (detection.boxes[:, 0] + detection.boxes[:, 2]) / 2.0
    left_to_right = list(np.argsort(centres, kind="stable"))
    if choice == "largest":
        areas = (detection.boxes[:, 2] - detection.boxes[:, 0]) * (detection.boxes[:, 3] - detection.boxes[:, 1])
        row = int(np.argmax(areas))  # ties go to the more confident (rows are by score)
    elif choice == "most_confident":
        row = int(np.argmax(detection.scores))
    else:
        if choice >= len(detection):
            raise InputError(
                f"Photo {photo} has {len(detection)} face(s) (indices 0 to {len(detection) - 1} "
                f"from the left), so face index {choice} does not exist. Choose another index or "
                "'largest'."
            )
        row = int(left_to_right[choice])
    return row, left_to_right.index(row)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` (4,) with each of ``b`` (n, 4)."""
    x0 = np.maximum(a[0], b[:, 0])
    y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2])
    y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda box: (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-6)


def _takes_det_thresh(detect) -> bool:
    try:
        parameters = inspect.signature(detect).parameters
    except (TypeError, ValueError):
        return False
    return "det_thresh" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def detect_once(detector: Any, bgr: np.ndarray, size: int, det_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """One SCRFD pass at ``size`` x ``size``: (n, 5) boxes and scores, (n, 5, 2) keypoints."""
    if _takes_det_thresh(detector.detect):
        det, kps = detector.detect(bgr, input_size=(size, size), det_thresh=det_thresh)
    else:  # insightface 0.7.x reads the threshold from the detector
        detector.det_thresh = det_thresh
        det, kps = detector.detect(bgr, input_size=(size, size))
    if kps is None:
        kps = np.zeros((len(det), 5, 2), dtype=np.float32)
    return det, kps


def shrunk(bgr: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``bgr`` area-averaged to ``max_side`` on its longer side (unchanged if not longer), and the scale."""
    height, width = bgr.shape[:2]
    if max(height, width) <= max_side:
        return bgr, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), scale


def detect_faces(
    detector: Any,
    image: Any,
    det_thresh: float = DET_THRESH,
    max_side: int = DETECT_MAX_SIDE,
    allow_padding: bool = True,
    sizes: Sequence[int] = DETECT_SIZES,
) -> Detection:
    """All faces in one photo: the reference's retries over ``sizes`` on the photo; for a photo
    longer than ``max_side``, then the same on an area-averaged copy; then (``allow_padding``)
    with black borders, for faces that fill the frame. Each step only where the one before found
    nothing, so a photo the reference finds a face in gives the reference's detection."""
    rgb = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 else to_rgb_list(image)[0]
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    # The reference's way first, on the photo itself, so that whatever it finds is found the same;
    # a very large photo is then tried on an area-averaged copy, and padding works on the last.
    small, small_scale = shrunk(bgr, max_side)
    attempts = [(bgr, 1.0)] + ([(small, small_scale)] if small_scale != 1.0 else [])
    found = None
    for work, scale in attempts:
        for size in sizes:
            det, kps = detect_once(detector, work, size, det_thresh)
            if len(det):
                found = (det, kps, size, 0)
                break
        if found is not None:
            break
    if found is None and allow_padding:
        for fraction in PAD_FRACTIONS:
            pad = round(fraction * max(work.shape[:2]))
            padded = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            det, kps = detect_once(detector, padded, sizes[0], det_thresh)
            if len(det):
                det = det.copy()
                det[:, :4] -= pad
                found = (det, kps - pad, sizes[0], pad)
                break
    if found is None:
        return Detection(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32),
            scale=scale,
        )
    det, kps, size, pad = found
    return Detection(
        boxes=(det[:, :4] / scale).astype(np.float32),
        scores=det[:, 4].astype(np.float32),
        keypoints=(np.asarray(kps) / scale).astype(np.float32),
        size=size,
        padding=round(pad / scale),
        scale=scale,
    )
