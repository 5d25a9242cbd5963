"""Load Faces: photos in, the face crops and ArcFace embeddings HyperLoRA needs out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from ..hyperlora_core.face.check import ACTIONS, DOWNWEIGHT, apply_check, check_faces
from ..hyperlora_core.face.models import PROVIDER_CHOICES
from ..hyperlora_core.errors import FaceModelError, HyperLoRAError, NoFaceError
from . import CATEGORY
from .comfy_access import progress_bar
from .comfy_v3 import io, ui
from .images import images_to_uint8, uint8_to_image
from .inputs import require_input
from .model_folders import ANTELOPEV2_HELP, face_model_folder_path, list_face_model_folders

log = logging.getLogger(__name__)

HYPERLORA_FACES = "HYPERLORA_FACES"
Faces = io.Custom(HYPERLORA_FACES)
PROVIDERS = list(PROVIDER_CHOICES)
# Display name -> the core's choice ("largest", "most_confident" or a face index from the left).
FACE_CHOICES = {"largest": "largest", "most confident": "most_confident", "leftmost": 0,
                "second from left": 1, "third from left": 2}
IF_NO_FACE = ["error", "skip photo"]
PHOTO_CHECK = list(ACTIONS)  # keep (flags only), drop, downweight
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
    weights: list[float] | None = None  # how much each photo counts (the photo check's down-weighting); None: equal
    check: object | None = None  # hyperlora_core.face.check.SetCheck of the photos, when they were checked
    # The whole photos (uint8 RGB), parallel to results: what 'Refine HyperLoRA' trains on.
    photos: list = field(default_factory=list)
    # The FaceAnalyzer that found them: 'Refine HyperLoRA' scores its validation pictures with it.
    analyzer: object = None

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


class LoadFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        photo_tip = "More photos of the same person (any size; a batch counts as several photos)."
        return io.Schema(
            node_id="HLS_LoadFaces",
            display_name="Load Faces (HyperLoRA)",
            category=CATEGORY,
            description=(
                "Finds the face in each photo (one face per photo) and makes the crops HyperLoRA uses: the CLIP "
                "crop (background greyed out by default), the ArcFace embedding and the crop for the Base-LoRA. "
                "Feed several photos of the same person for a steadier likeness (their features are averaged). "
                f"Needs the Python packages insightface and onnxruntime. {ANTELOPEV2_HELP} "
                "A photo without a detectable face stops the run with a message naming the photo. The preview of "
                "each face found shows on the node itself, and the preview output gives the same images. Each "
                "photo is checked (face size, sharpness, head pose, likeness to the other photos): the table and "
                "the reasons for any flag show on the node, and photo_check can drop or down-weight flagged photos."
            ),
            inputs=[
                io.Image.Input("images", tooltip="Photos of one person, one face each (a batch is several photos). "
                                                 "Front-facing, well-lit faces work best."),
                io.Combo.Input("face_model", options=list_face_model_folders(),
                               tooltip="The insightface model folder under models/insightface/models (antelopev2)."),
                io.Combo.Input("provider", options=PROVIDERS, default="auto",
                               tooltip="Where ONNX Runtime runs the face models. auto: CUDA when onnxruntime-gpu is "
                                       "installed, else the CPU (fast enough: a few photos take a second or two)."),
                io.Combo.Input("face_choice", options=list(FACE_CHOICES), default="largest",
                               tooltip="Which face to use when a photo shows several people: the largest, the one "
                                       "the detector is surest of, or by position counted from the left."),
                io.Boolean.Input("remove_background", default=True,
                                 tooltip="Grey out everything but the face in the CLIP crop, as the released weights "
                                         "were trained. Turn off to let hair and clothes influence the LoRA more."),
                io.Boolean.Input("greyscale", default=False,
                                 tooltip="Give CLIP a greyscale crop, so the photo's colours (lighting, make-up, "
                                         "colour cast) carry less into the LoRA."),
                io.Combo.Input("if_no_face", options=IF_NO_FACE, default="error",
                               tooltip="error: stop and name the photo without a face. skip photo: leave it out with "
                                       "a warning (the run still stops if no photo has a face)."),
                io.Image.Input("images_2", optional=True, tooltip=photo_tip),
                io.Image.Input("images_3", optional=True, tooltip=photo_tip),
                io.Image.Input("images_4", optional=True, tooltip=photo_tip),
                io.Combo.Input("photo_check", options=PHOTO_CHECK, default="keep", optional=True,
                               tooltip="Each photo is checked (face size, detection score, sharpness, head pose, and "
                                       "whether it looks like the other photos) and the table shows on the node. "
                                       "keep: flags only. drop: leave the flagged photos out. downweight: flagged "
                                       f"photos count {DOWNWEIGHT} against 1. A set where every photo is flagged "
                                       "is kept whole."),
            ],
            outputs=[
                Faces.Output("faces", display_name="faces",
                             tooltip="The analysed faces, for 'HyperLoRA ID Embedding'."),
                io.Image.Output("preview", display_name="preview",
                                tooltip="One preview per photo: the photo with the face found (green box, landmarks, "
                                        "crop square), the crop CLIP sees and the Base-LoRA crop."),
            ],
        )

    @classmethod
    def execute(cls, images, face_model: str, provider: str = "auto", face_choice: str = "largest",
                remove_background: bool = True, greyscale: bool = False, if_no_face: str = "error",
                images_2=None, images_3=None, images_4=None, photo_check: str = "keep") -> io.NodeOutput:
        photos: list[np.ndarray] = []
        sources: list[str] = []
        for slot, batch in (("images", images), ("images_2", images_2), ("images_3", images_3),
                            ("images_4", images_4)):
            if batch is None:
                continue
            require_input(batch, slot, "an IMAGE batch", "the IMAGE output of 'Load Image' (or another image node)",
                          accept=lambda v: isinstance(v, torch.Tensor) and v.dim() == 4 and v.shape[-1] in (1, 3, 4))
            arrays = images_to_uint8(batch)
            photos.extend(arrays)
            sources.extend(f"{slot}[{i}]" if len(arrays) > 1 else slot for i in range(len(arrays)))
        if not photos:
            raise HyperLoRAError("No photos were given: connect at least one IMAGE to 'images'.")
        if face_choice not in FACE_CHOICES:
            raise HyperLoRAError(f"Unknown face_choice {face_choice!r}: use one of {', '.join(FACE_CHOICES)}.")
        if if_no_face not in IF_NO_FACE:
            raise HyperLoRAError(f"Unknown if_no_face {if_no_face!r}: use one of {', '.join(IF_NO_FACE)}.")
        photo_check = photo_check or "keep"
        if photo_check not in PHOTO_CHECK:
            raise HyperLoRAError(f"Unknown photo_check {photo_check!r}: use one of {', '.join(PHOTO_CHECK)}.")

        analyzer = get_analyzer(face_model_folder_path(face_model), provider)
        bar = progress_bar(len(photos))
        results, used, kept, missing = [], [], [], []
        for i, photo in enumerate(photos):
            result = analyzer.analyze_photo(photo, i, FACE_CHOICES[face_choice], remove_background, greyscale)
            bar.update(1)
            if result is None:
                if if_no_face == "error":
                    raise NoFaceError(no_face_message(sources[i], photo, analyzer))
                log.warning("HyperLoRA: no face found in %s; it is left out.", sources[i])
                missing.append(sources[i])
                continue
            results.append(result)
            used.append(sources[i])
            kept.append(photo)
        if not results:
            raise NoFaceError(no_face_message(", ".join(missing), None, analyzer))
        preview = uint8_to_image([np.asarray(r.preview) for r in results])  # every face found, flagged or not
        log.info("HyperLoRA: found faces in %d photo(s)", len(results))
        checked = apply_check(check_faces(results, labels=used), photo_check)
        text = checked.table()
        if missing:
            text += "\nno face found (left out): " + ", ".join(missing)
        log.info("HyperLoRA photo check:\n%s", text)
        faces = FaceBatch(results=[results[i] for i in checked.kept], sources=[used[i] for i in checked.kept],
                          weights=list(checked.weights), check=checked, photos=[kept[i] for i in checked.kept],
                          analyzer=analyzer)
        shown = {**ui.PreviewText(text).as_dict(), **ui.PreviewImage(preview, cls=cls).as_dict()}
        return io.NodeOutput(faces, preview, ui=shown)


def no_face_message(source: str, photo: np.ndarray | None, analyzer) -> str:
    size = f" ({photo.shape[1]}x{photo.shape[0]})" if photo is not None else ""
    return (
        f"HyperLoRA found no face in {source}{size}. Use photos where the face is clearly visible: frontal or "
        "nearly so, sharp, well lit, not covered (sunglasses, masks, hands) and at least about 64 px wide; or set "
        f"if_no_face to 'skip photo'. If no photo ever gives a face, check that {analyzer.folder} holds the "
        "real insightface antelopev2 models."
    )
