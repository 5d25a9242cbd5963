"""Face analysis of a batch of photos: detection, choice, crops and the ArcFace embedding.

Entry point: ``FaceAnalyzer(folder, provider="auto").analyze(images)`` -> one :class:`FaceResult`
per photo in which a face was found. The ArcFace re-detection keeps the face that overlaps the
chosen one most (the reference takes the most confident, the same face unless another is close);
if it finds none, the first detection's keypoints are used. insightface's own ``FaceAnalysis`` is
not used: it would load all five models, and in insightface 2.x its default detection runs at two
sizes, (128, 128) and (640, 640), where the reference runs at one.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..constants import ARCFACE_DIM
from ..errors import InputError, NoFaceError
from .models import FaceModels, find_antelopev2, load_face_models, provider_name
from ..files.images import to_rgb_list
from .crops import base_crop, clip_crop, landmark_box, square_crop
from .detection import (
    ARCFACE_DETECT_SIZE,
    DET_THRESH,
    DETECT_MAX_SIDE,
    DETECT_SIZES,
    Detection,
    _iou,
    check_choice,
    choose_face,
    detect_faces,
    detect_once,
    shrunk,
)
from .check import face_sharpness
from .preview import make_preview

logger = logging.getLogger(__name__)


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
    # None (here, in base_crop and in preview) when analysed with crops=False: only the embedding wanted.
    clip_crop: np.ndarray | None
    # uint8 RGB, Base-LoRA input before CLIP resizing: face blurred out, landmark square clamped to the photo
    base_crop: np.ndarray | None
    arcface_embedding: np.ndarray  # (512,) float32, L2-normalised (normed_embedding)
    preview: np.ndarray | None = field(repr=False)  # uint8 (512, 1536, 3): photo marked up | CLIP | Base
    detection: Detection | None = field(default=None, repr=False)
    arcface_redetected: bool = True  # False: re-detection in the ArcFace crop failed
    sharpness: float | None = None  # variance of the Laplacian of the face (check.face_sharpness); None: not measured


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
        return detect_once(self.models.detector, bgr, size, self.det_thresh)

    def _shrunk(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        return shrunk(bgr, self.detect_max_side)

    def detect(self, image: Any, allow_padding: bool = True, sizes: Sequence[int] = DETECT_SIZES) -> Detection:
        """All faces in one photo (see :func:`detect_faces`)."""
        return detect_faces(self.models.detector, image, self.det_thresh, self.detect_max_side, allow_padding, sizes)

    def landmarks(self, rgb: np.ndarray, detection: Detection, row: int) -> np.ndarray:
        """The 106 landmarks (insightface landmark_2d_106, float32 (106, 2), photo pixels) of the
        face in ``row`` of ``detection``, found in the RGB uint8 photo ``rgb``."""
        from insightface.app.common import Face

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        face = Face(bbox=detection.boxes[row], kps=detection.keypoints[row], det_score=float(detection.scores[row]))
        return np.asarray(self.models.landmarks.get(bgr, face), dtype=np.float32)[:, :2]

    # -- one photo ---------------------------------------------------------------------------

    def _arcface(self, photo: Image.Image, box: np.ndarray, keypoints: np.ndarray, centre_half) -> tuple[np.ndarray, bool]:
        """normed_embedding of the face in the square of half-side 2l of the original photo
        (spec section 8: cut with ``Image.crop``, so its origin is the rounded corner), detected
        again at 640 on the crop itself; on an area-averaged copy only if that finds nothing."""
        from insightface.app.common import Face

        cx, cy, half = centre_half
        crop = square_crop(photo, cx, cy, 2.0 * half)
        origin = np.array([round(cx - 2.0 * half), round(cy - 2.0 * half)], dtype=np.float32)
        bgr = np.ascontiguousarray(np.asarray(crop)[:, :, ::-1])
        expected = box - np.tile(origin, 2)
        redetected = False
        face_kps = keypoints - origin
        small, small_scale = self._shrunk(bgr)
        attempts = [(bgr, 1.0)] + ([(small, small_scale)] if small_scale != 1.0 else [])
        for work, scale in attempts:
            det, kps = self._detect_once(work, ARCFACE_DETECT_SIZE)
            if len(det):
                overlap = _iou(expected, det[:, :4] / scale)
                best = int(np.argmax(overlap))
                if overlap[best] >= 0.3:
                    face_kps = np.asarray(kps[best]) / scale
                    redetected = True
                    break
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
        crops: bool = True,
    ) -> FaceResult | None:
        """The chosen face of one RGB uint8 photo, or None when it has no face. ``crops=False``: only
        the face and its ArcFace embedding (likeness), without the CLIP and Base-LoRA crops and the preview."""
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
        landmarks = self.landmarks(rgb, detection, row)
        photo = Image.fromarray(rgb)
        square = landmark_box(landmarks)
        clip = clip_crop(photo, landmarks, remove_background, grey) if crops else None
        base = base_crop(photo, landmarks, crop_base) if crops else None
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
            preview=make_preview(rgb, detection, row, landmarks, clip, base) if crops else None,
            detection=detection,
            arcface_redetected=redetected,
            sharpness=face_sharpness(rgb, landmarks),
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
