"""The face pipeline (spec section 8) and face regions for re-drawing a face in a picture.

Entry point: ``FaceAnalyzer(folder, provider="auto").analyze(images)`` -> one :class:`FaceResult`
per photo in which a face was found. One job per module:

* ``detection``: SCRFD detection with the reference's retries, and the choice of the face;
* ``crops``: the CLIP, Base-LoRA and landmark-square crops and their masks;
* ``preview``: the marked-up preview Load Faces shows;
* ``check``: the photo check (face size, detection score, sharpness, head pose, agreement) and
  keeping, dropping or down-weighting the flagged photos;
* ``analyzer``: :class:`FaceAnalyzer`, which runs the models and puts the pieces together;
* ``swap``: face masks and crops of any picture, and pasting re-drawn crops back (face swap, detailer);
* ``models``: finding and loading the antelopev2 ONNX models with onnxruntime.

The crops follow the reference's pixel conventions as spec section 8 writes them down: float
boxes cut with ``Image.crop`` (edges rounded, halves to even), the blurred squares pasted back at
the corner truncated toward zero, PIL bicubic for the CLIP resize, and IMAGE floats made 8-bit by
truncation (``images.float_to_uint8``). For a photo whose face the reference finds, with one face
(or with ``choice="most_confident"``), the crops are the reference's, pixel for pixel.

Beyond the reference, and each only where the reference's way finds nothing: a very large photo
is detected again on an area-averaged copy, and a face filling the frame on the photo padded with
black borders (PAD_FRACTIONS); if the ArcFace crop gives no face, the first detection's keypoints
are used (the reference drops the photo). Faces are chosen by a policy (largest by default) where
the reference always takes the most confident.
"""

from ..lazy import lazy_exports

# Imported on first use: the detection and crops need OpenCV and insightface, which the pack does
# without until a face node runs (face.models, for its choices, does not).
_EXPORTS = {
    **dict.fromkeys(["FaceAnalyzer", "FaceResult"], ".analyzer"),
    **dict.fromkeys(["BACKGROUND_BLUR", "FACE_BLUR", "FACE_POLYGON", "FACE_SCALE", "GREY", "MASK_BOX_SCALE", "MASK_SIZE",
                     "base_crop", "blur_face", "clip_crop", "landmark_box", "remove_background", "soft_polygon_mask",
                     "square_crop"], ".crops"),
    **dict.fromkeys(["ARCFACE_DETECT_SIZE", "CHOICES", "DETECT_MAX_SIDE", "DETECT_SIZES", "DET_THRESH", "Detection",
                     "PAD_FRACTIONS", "check_choice", "choose_face", "detect_faces"], ".detection"),
    **dict.fromkeys(["ACTIONS", "PhotoCheck", "SetCheck", "apply_check", "check_faces", "face_sharpness", "head_pose"],
                    ".check"),
    **dict.fromkeys(["PREVIEW_TILE", "make_preview"], ".preview"),
    **dict.fromkeys(["ALL_FACES", "FaceCrops", "FaceRegion", "cut_faces", "find_face_regions", "paste_faces"], ".swap"),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
