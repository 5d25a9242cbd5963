"""Find, choose and crop the face in each photo and compute its ArcFace embedding (spec section 8).

Entry point: ``FaceAnalyzer(folder, provider="auto").analyze(images)`` -> one :class:`FaceResult`
per photo in which a face was found. The crops reproduce the reference preprocessing exactly
(PIL operations with the same rounding, so that the released weights see what they were trained
on); detection goes further than the reference so that close-ups and very large photos work.

Where the spec leaves a detail open we read it as follows (and the tests pin it down):

* "polygon centroid" is the mean of the polygon's landmarks, "extent" the longer side of their
  min/max box; masks are drawn with ``ImageDraw.polygon`` at the photo's size, the square around the
  centroid is cut with ``Image.crop`` (which rounds each edge, and fills outside the photo with 0),
  resized to 512x512, blurred with ``ImageFilter.GaussianBlur``, resized back (bicubic, PIL's
  default) and pasted at the rounded corner.
* Base-LoRA input: the polygon is scaled 1.4x about its centroid; the square of 1.6x its extent
  is blurred (radius 45 at 512 px) and pasted back through the scaled polygon's soft mask
  (radius 15), on the original photo (no background removal); then the landmark square is cut.
* The ArcFace re-detection keeps the face that overlaps the chosen one most (the reference takes the
  most confident, the same face unless another is close); if it finds none, the first detection's
  keypoints are used.

Beyond the reference: photos (and ArcFace crops) longer than DETECT_MAX_SIDE are detected on an
area-averaged copy; when the reference's sizes find nothing, the photo is padded (PAD_FRACTIONS);
faces are chosen by a policy instead of always the most confident. insightface's own
``FaceAnalysis`` is not used: it would load all five models, and in insightface 2.x its default
detection runs at two sizes, (128, 128) and (640, 640), where the reference runs at one.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .constants import ARCFACE_DIM, CLIP_MEAN, CLIP_SIZE, CLIP_STD
from .errors import InputError, NoFaceError
from .face_models import FaceModels, find_antelopev2, load_face_models, provider_name
from .images import to_rgb_list

logger = logging.getLogger(__name__)

# The reference's detection sizes, tried in turn until a face is found.
DETECT_SIZES = (640, 512, 384, 256)
# Then black borders of these fractions of the longer side on each side (a face filling the
# frame is too large for the detector's anchors), detected at DETECT_SIZES[0].
PAD_FRACTIONS = (0.25, 0.5, 1.0)
# Photos whose longer side is above this are detected on an area-averaged copy of this size:
# SCRFD's own bilinear resize would alias when shrinking a 4000 px photo 6x. Crops use the original.
DETECT_MAX_SIDE = 1280
ARCFACE_DETECT_SIZE = 640
DET_THRESH = 0.5

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
CHOICES = ("largest", "most_confident")
PREVIEW_TILE = 512

_BICUBIC = Image.Resampling.BICUBIC


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


@dataclass
class FaceResult:
    """The face used from one photo, with everything the hyper-network needs from it."""

    index: int  # position of the photo in the batch given to analyze()
    face_index: int  # which face of the photo, counted from the left (0 = leftmost)
    n_faces: int  # faces found in the photo
    box: np.ndarray  # (4,) float32 detection box x0, y0, x1, y1 in photo pixels
    det_score: float
    landmarks: np.ndarray  # (106, 2) float32 insightface landmark_2d_106, photo pixels
    landmark_box: tuple[float, float, float]  # (cx, cy, l) of spec section 8
    # uint8 RGB, the square (cx-l, cy-l, cx+l, cy+l) before CLIP resizing; PIL rounds each edge
    # (as the reference does), so width and height may differ by one pixel.
    clip_crop: np.ndarray
    base_crop: np.ndarray  # uint8 RGB, Base-LoRA input: face blurred out, before CLIP resizing
    arcface_embedding: np.ndarray  # (512,) float32, L2-normalised (normed_embedding)
    preview: np.ndarray = field(repr=False)  # uint8 (512, 1536, 3): photo marked up | CLIP | Base
    detection: Detection | None = field(default=None, repr=False)
    arcface_redetected: bool = True  # False: re-detection in the ArcFace crop failed


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


class FaceAnalyzer:
    """Face analysis with insightface's antelopev2 models, loaded on first use and kept.

    ``folder``: the antelopev2 folder (ComfyUI: ``models/insightface/models/antelopev2``).
    ``provider``: ``"auto"`` (CUDA if ONNX Runtime has it, else CPU), ``"CPU"``, ``"CUDA"``, ...
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        provider: str = "auto",
        det_thresh: float = DET_THRESH,
        detect_max_side: int = DETECT_MAX_SIDE,
    ) -> None:
        self.folder = find_antelopev2(folder)
        provider_name(provider)  # an unknown name fails here, not at the first photo
        self.provider = provider
        self.det_thresh = float(det_thresh)
        self.detect_max_side = int(detect_max_side)
        self._models: FaceModels | None = None
        self._lock = threading.Lock()

    @property
    def models(self) -> FaceModels:
        with self._lock:
            if self._models is None:
                self._models = load_face_models(self.folder, self.provider)
            return self._models

    # -- detection ---------------------------------------------------------------------------

    def _detect_once(self, bgr: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        detector = self.models.detector
        if _takes_det_thresh(detector.detect):
            det, kps = detector.detect(bgr, input_size=(size, size), det_thresh=self.det_thresh)
        else:  # insightface 0.7.x reads the threshold from the detector
            detector.det_thresh = self.det_thresh
            det, kps = detector.detect(bgr, input_size=(size, size))
        if kps is None:
            kps = np.zeros((len(det), 5, 2), dtype=np.float32)
        return det, kps

    def _shrunk(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = bgr.shape[:2]
        if max(height, width) <= self.detect_max_side:
            return bgr, 1.0
        scale = self.detect_max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), scale

    def detect(self, image: Any, allow_padding: bool = True, sizes: Sequence[int] = DETECT_SIZES) -> Detection:
        """All faces in one photo: the reference's retries over ``sizes``, then (``allow_padding``)
        the photo padded with black borders, for faces that fill the frame."""
        rgb = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 else to_rgb_list(image)[0]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        work, scale = self._shrunk(bgr)
        found = None
        for size in sizes:
            det, kps = self._detect_once(work, size)
            if len(det):
                found = (det, kps, size, 0)
                break
        if found is None and allow_padding:
            for fraction in PAD_FRACTIONS:
                pad = round(fraction * max(work.shape[:2]))
                padded = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
                det, kps = self._detect_once(padded, sizes[0])
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

    # -- one photo ---------------------------------------------------------------------------

    def _arcface(self, photo: Image.Image, box: np.ndarray, keypoints: np.ndarray, centre_half) -> tuple[np.ndarray, bool]:
        """normed_embedding of the face in the square of half-side 2l of the original photo."""
        from insightface.app.common import Face

        cx, cy, half = centre_half
        crop = square_crop(photo, cx, cy, 2.0 * half)
        origin = np.array([round(cx - 2.0 * half), round(cy - 2.0 * half)], dtype=np.float32)
        bgr = np.ascontiguousarray(np.asarray(crop)[:, :, ::-1])
        work, scale = self._shrunk(bgr)
        det, kps = self._detect_once(work, ARCFACE_DETECT_SIZE)
        expected = box - np.tile(origin, 2)
        redetected = False
        face_kps = keypoints - origin
        if len(det):
            overlap = _iou(expected, det[:, :4] / scale)
            best = int(np.argmax(overlap))
            if overlap[best] >= 0.3:
                face_kps = np.asarray(kps[best]) / scale
                redetected = True
        if not redetected:
            logger.debug("No face re-detected in the ArcFace crop; using the first detection's keypoints.")
        face = Face(bbox=expected, kps=face_kps.astype(np.float32), det_score=1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-image deprecation inside insightface
            self.models.recognition.get(bgr, face)
        embedding = np.asarray(face.normed_embedding, dtype=np.float32).reshape(-1)
        if embedding.shape != (ARCFACE_DIM,):
            raise InputError(f"The recognition model gave {embedding.shape[0]} numbers, not {ARCFACE_DIM}.")
        return embedding, redetected

    def analyze_photo(
        self,
        rgb: np.ndarray,
        index: int = 0,
        choice: str | int = "largest",
        remove_background: bool = True,
        grey: bool = False,
        crop_base: bool = True,
    ) -> FaceResult | None:
        """The chosen face of one RGB uint8 photo, or None when it has no face."""
        from insightface.app.common import Face

        detection = self.detect(rgb)
        if not len(detection):
            return None
        row, face_index = choose_face(detection, choice, index)
        if len(detection) > 1:
            logger.info(
                "Photo %d: %d faces found; using face %d from the left (choice: %s).",
                index, len(detection), face_index, choice,
            )
        if detection.padding or detection.scale != 1.0 or detection.size != DETECT_SIZES[0]:
            logger.info(
                "Photo %d: face found at detection size %d%s%s.", index, detection.size,
                f" after padding the photo by {detection.padding} px" if detection.padding else "",
                f" on a copy shrunk to {detection.scale:.3g}x" if detection.scale != 1.0 else "",
            )
        box = detection.boxes[row]
        keypoints = detection.keypoints[row]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        face = Face(bbox=box, kps=keypoints, det_score=float(detection.scores[row]))
        landmarks = np.asarray(self.models.landmarks.get(bgr, face), dtype=np.float32)[:, :2]
        photo = Image.fromarray(rgb)
        square = landmark_box(landmarks)
        clip = clip_crop(photo, landmarks, remove_background, grey)
        base = base_crop(photo, landmarks, crop_base)
        embedding, redetected = self._arcface(photo, box, keypoints, square)
        return FaceResult(
            index=index,
            face_index=face_index,
            n_faces=len(detection),
            box=box.copy(),
            det_score=float(detection.scores[row]),
            landmarks=landmarks,
            landmark_box=square,
            clip_crop=clip,
            base_crop=base,
            arcface_embedding=embedding,
            preview=make_preview(rgb, detection, row, landmarks, clip, base),
            detection=detection,
            arcface_redetected=redetected,
        )

    def analyze(
        self,
        images: Any,
        choice: str | int = "largest",
        remove_background: bool = True,
        grey: bool = False,
        crop_base: bool = True,
    ) -> list[FaceResult]:
        """Analyse each photo on its own; photos without a face are left out with a warning.

        ``images``: a ComfyUI IMAGE tensor (N, H, W, 3), arrays, PIL images, file paths, or a list
        of them. ``choice``: "largest" (default), "most_confident" (what the reference does) or
        the index of the face counted from the left. ``remove_background``: grey out all but the
        face in the CLIP crop (on by default, as in the reference). ``grey``: grey-scale CLIP crop.
        ``crop_base``: cut the Base-LoRA input to the landmark square (else the whole photo).
        Raises :class:`NoFaceError` when no photo has a face.
        """
        choice = check_choice(choice)
        photos = to_rgb_list(images)
        results = []
        missing = []
        for index, rgb in enumerate(photos):
            result = self.analyze_photo(rgb, index, choice, remove_background, grey, crop_base)
            if result is None:
                missing.append(index)
                logger.warning(
                    "No face found in photo %d (%dx%d); it is left out.", index, rgb.shape[1], rgb.shape[0]
                )
            else:
                results.append(result)
        if not results:
            which = "the photo" if len(photos) == 1 else f"any of the {len(photos)} photos"
            raise NoFaceError(
                f"No face was found in {which}. Use photos where the face is clearly visible: "
                "frontal or nearly so, sharp, well lit, not covered (sunglasses, masks, hands) and "
                "at least about 64 px wide. If no photo ever gives a face, check that "
                f"{self.folder} holds the real insightface antelopev2 models."
            )
        if missing:
            logger.warning(
                "Faces found in %d of %d photos; left out: %s.", len(results), len(photos),
                ", ".join(str(i) for i in missing),
            )
        return results


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
