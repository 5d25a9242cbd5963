"""Load Faces: photos in, the face crops and ArcFace embeddings HyperLoRA needs out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..hyperlora_core.errors import FaceModelError, HyperLoRAError
from .utils import (
    ANTELOPEV2_HELP,
    CATEGORY,
    face_model_folder_path,
    images_to_uint8,
    list_face_model_folders,
    progress_bar,
    uint8_to_image,
)

log = logging.getLogger(__name__)

HYPERLORA_FACES = "HYPERLORA_FACES"
PROVIDERS = ["auto", "CPU", "CUDA", "ROCM", "CoreML", "DirectML", "OpenVINO", "TensorRT"]
FACE_CHOICES = ["largest", "most confident"]
PREVIEW_SIZE = 256
INSIGHTFACE_INSTALL = (
    "The 'Load Faces' node needs the Python packages insightface and onnxruntime: install them into "
    "ComfyUI's Python with `python -m pip install insightface onnxruntime` (use onnxruntime-gpu for CUDA; "
    "on Windows a prebuilt insightface wheel for your Python version avoids needing a C++ compiler), "
    "then restart ComfyUI."
)

# (folder, provider) -> analyzer; the face models are loaded once per ComfyUI session.
_ANALYZERS: dict[tuple[str, str], object] = {}


@dataclass
class FaceBatch:
    """What travels on a HYPERLORA_FACES link: one analysed face per photo."""

    results: list  # hyperlora_core.face.FaceResult, one per photo
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.results)


def _face_module():
    try:
        import insightface  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise FaceModelError(f"{INSIGHTFACE_INSTALL} (import error: {exc})") from exc
    from ..hyperlora_core import face
    return face


def get_analyzer(folder: str, provider: str):
    key = (folder, provider)
    if key not in _ANALYZERS:
        face = _face_module()
        _ANALYZERS[key] = face.FaceAnalyzer(folder, provider=provider)
    return _ANALYZERS[key]


def _choice(value: str) -> str:
    return {"largest": "largest", "most confident": "confident"}.get(value, value)


class LoadFaces:
    DESCRIPTION = (
        "Finds the face in each photo (one face per photo) and makes the crops HyperLoRA uses: the CLIP "
        "crop (background greyed out by default), the ArcFace embedding and the crop for the Base-LoRA. "
        "Feed several photos of the same person for a steadier likeness (their features are averaged). "
        f"Needs the Python packages insightface and onnxruntime. {ANTELOPEV2_HELP} "
        "A photo without a detectable face stops the run with a message naming the photo."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load_faces"
    RETURN_TYPES = (HYPERLORA_FACES, "IMAGE")
    RETURN_NAMES = ("faces", "preview")
    OUTPUT_TOOLTIPS = (
        "The analysed faces, for 'HyperLoRA ID Embedding'.",
        "The face crops CLIP will see, one per photo, to check what was found.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        photo_tip = "More photos of the same person (any size; a batch counts as several photos)."
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Photos of one person, one face each (a batch is several photos). "
                                                "Front-facing, well-lit faces work best."}),
                "face_model": (list_face_model_folders(), {
                    "tooltip": "The insightface model folder under models/insightface/models (antelopev2)."}),
                "provider": (PROVIDERS, {
                    "default": "auto",
                    "tooltip": "Where ONNX Runtime runs the face models. auto: CUDA when onnxruntime-gpu is "
                               "installed, else the CPU (fast enough: a few photos take a second or two)."}),
                "face_choice": (FACE_CHOICES, {
                    "default": "largest",
                    "tooltip": "Which face to use when a photo shows several people."}),
                "remove_background": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Grey out everything but the face in the CLIP crop, as the released weights "
                               "were trained. Turn off to let hair and clothes influence the LoRA more."}),
                "greyscale": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Give CLIP a greyscale crop, so the photo's colours (lighting, make-up, "
                               "colour cast) carry less into the LoRA."}),
            },
            "optional": {
                "images_2": ("IMAGE", {"tooltip": photo_tip}),
                "images_3": ("IMAGE", {"tooltip": photo_tip}),
                "images_4": ("IMAGE", {"tooltip": photo_tip}),
            },
        }

    def load_faces(self, images, face_model: str, provider: str = "auto", face_choice: str = "largest",
                   remove_background: bool = True, greyscale: bool = False,
                   images_2=None, images_3=None, images_4=None):
        photos: list[np.ndarray] = []
        sources: list[str] = []
        for slot, batch in (("images", images), ("images_2", images_2), ("images_3", images_3),
                            ("images_4", images_4)):
            if batch is None:
                continue
            arrays = images_to_uint8(batch)
            photos.extend(arrays)
            sources.extend(f"{slot}[{i}]" if len(arrays) > 1 else slot for i in range(len(arrays)))
        if not photos:
            raise HyperLoRAError("No photos were given: connect at least one IMAGE to 'images'.")
        if face_choice not in FACE_CHOICES:
            raise HyperLoRAError(f"Unknown face_choice {face_choice!r}: use one of {', '.join(FACE_CHOICES)}.")

        analyzer = get_analyzer(face_model_folder_path(face_model), provider)
        bar = progress_bar(len(photos))
        results = []
        for i, photo in enumerate(photos):
            results.extend(analyze_one(analyzer, photo, sources[i], _choice(face_choice),
                                       remove_background, greyscale))
            bar.update(1)
        preview = uint8_to_image([np.asarray(r.clip_crop) for r in results], PREVIEW_SIZE)
        log.info("HyperLoRA: found faces in %d photo(s)", len(results))
        return (FaceBatch(results=results, sources=sources), preview)


def analyze_one(analyzer, photo: np.ndarray, source: str, choice: str, remove_background: bool,
                greyscale: bool) -> list:
    """Analyse one photo; the core's no-face error is re-raised naming the photo by its input."""
    from ..hyperlora_core.errors import NoFaceError

    try:
        return list(analyzer.analyze([photo], choice=choice, remove_background=remove_background, grey=greyscale))
    except NoFaceError as exc:
        raise NoFaceError(f"No face found in {source}: {exc}") from exc
