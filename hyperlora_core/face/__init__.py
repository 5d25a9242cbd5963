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

from .analyzer import FaceAnalyzer, FaceResult
from .crops import (
    BACKGROUND_BLUR,
    FACE_BLUR,
    FACE_POLYGON,
    FACE_SCALE,
    GREY,
    MASK_BOX_SCALE,
    MASK_SIZE,
    base_crop,
    blur_face,
    clip_crop,
    clip_pixel_values,
    landmark_box,
    remove_background,
    soft_polygon_mask,
    square_crop,
)
from .detection import (
    ARCFACE_DETECT_SIZE,
    CHOICES,
    DET_THRESH,
    DETECT_MAX_SIDE,
    DETECT_SIZES,
    PAD_FRACTIONS,
    Detection,
    check_choice,
    choose_face,
    detect_faces,
)
from .preview import PREVIEW_TILE, make_preview

__all__ = [
    "ARCFACE_DETECT_SIZE", "BACKGROUND_BLUR", "CHOICES", "DET_THRESH", "DETECT_MAX_SIDE", "DETECT_SIZES",
    "Detection", "FACE_BLUR", "FACE_POLYGON", "FACE_SCALE", "FaceAnalyzer", "FaceResult", "GREY",
    "MASK_BOX_SCALE", "MASK_SIZE", "PAD_FRACTIONS", "PREVIEW_TILE", "base_crop", "blur_face",
    "check_choice", "choose_face", "clip_crop", "clip_pixel_values", "detect_faces", "landmark_box",
    "make_preview", "remove_background", "soft_polygon_mask", "square_crop",
]
