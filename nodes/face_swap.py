"""Face Crop and Face Paste: re-draw only the face of a picture (face swap, face detailer)."""

from __future__ import annotations

import logging

import torch

from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.face.models import PROVIDER_CHOICES
from . import CATEGORY
from .comfy_v3 import io
from .faces import FACE_CHOICES, get_analyzer
from .images import image_to_float, mask_to_float
from .model_folders import ANTELOPEV2_HELP, face_model_folder_path, list_face_model_folders

log = logging.getLogger(__name__)

HYPERLORA_FACE_CROP = "HYPERLORA_FACE_CROP"
# The face_choice label for one crop per face (the core's choice is face.swap.ALL_FACES, "all").
ALL_FACES_CHOICE = "all faces"
CROP_CHOICES = {**FACE_CHOICES, ALL_FACES_CHOICE: "all"}
IF_NO_FACE = ["error", "pass through"]


def _face_swap():
    from ..hyperlora_core.face import swap  # OpenCV and the face pipeline only when a node runs
    return swap


FaceCropInfo = io.Custom(HYPERLORA_FACE_CROP)


class FaceCrop(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_FaceCrop",
            display_name="Face Crop (HyperLoRA)",
            category=CATEGORY,
            description=(
                "Finds faces in a picture (a photo or a generated image) and cuts a square crop around each at a "
                "working size (1024 for SDXL), with a feathered mask of the face: inpaint the crop with the "
                "HyperLoRA-patched model (VAE Encode -> Set Latent Noise Mask -> KSampler -> VAE Decode), then "
                "'Face Paste' puts it back into the picture at its full resolution, changing nothing outside the "
                f"mask. Needs insightface and onnxruntime. {ANTELOPEV2_HELP}"
            ),
            inputs=[
                io.Image.Input("image", tooltip="The picture whose face is re-drawn: a photo to put the person into, "
                                                "or a generated image to fix (a batch: each picture)."),
                io.Combo.Input("face_model", options=list_face_model_folders(),
                               tooltip="The insightface model folder under models/insightface/models (antelopev2)."),
                io.Combo.Input("provider", options=list(PROVIDER_CHOICES), default="auto",
                               tooltip="Where ONNX Runtime runs the face models (auto: CUDA if available)."),
                io.Combo.Input("face_choice", options=list(CROP_CHOICES), default="largest",
                               tooltip="Which face to re-draw when a picture shows several people: as in Load Faces "
                                       "(largest, most confident, by position from the left), or all faces (one "
                                       "crop each)."),
                io.Int.Input("size", default=1024, min=256, max=4096, step=64,
                             tooltip="Side of the square crop the model re-draws, in pixels: 1024 for SDXL. The face "
                                     "is pasted back at the picture's own resolution."),
                io.Float.Input("crop_factor", default=2.0, min=1.0, max=5.0, step=0.05,
                               tooltip="How much of the surroundings the crop holds: the crop side is this times the "
                                       "face square (about 1.5 face heights). 2 gives the model enough context; more "
                                       "is slower to re-draw in detail. A crop that would be larger than the picture "
                                       "is made to fit."),
                io.Int.Input("grow", default=16, min=-256, max=256, step=1,
                             tooltip="Grow the face mask (the outline of cheeks, chin and brows) by this many pixels "
                                     "of the crop (negative: shrink). More covers forehead and jaw line."),
                io.Int.Input("feather", default=32, min=0, max=256, step=1,
                             tooltip="Width of the soft edge of the mask, in pixels of the crop, so the re-drawn face "
                                     "blends in. 0: a hard edge."),
                io.Combo.Input("if_no_face", options=IF_NO_FACE, default="error",
                               tooltip="error: stop and say which picture has no face. pass through: leave such a "
                                       "picture unchanged (its crop is re-drawn under an empty mask and not pasted)."),
            ],
            outputs=[
                io.Image.Output("crops", display_name="crops",
                                tooltip="One square crop per face at the working size: encode it with 'VAE Encode' "
                                        "and re-draw it."),
                io.Mask.Output("crop_masks", display_name="crop_masks",
                               tooltip="The face mask of each crop (working size): for 'Set Latent Noise Mask', so "
                                       "only the face is re-drawn."),
                io.Mask.Output("mask", display_name="mask",
                               tooltip="The face mask at the picture's own size (all chosen faces of each picture), "
                                       "to see or refine it."),
                FaceCropInfo.Output("crop_info", display_name="crop_info",
                                    tooltip="Where each crop came from: connect it to 'Face Paste'."),
            ],
        )

    @classmethod
    def execute(cls, image, face_model: str, provider: str = "auto", face_choice: str = "largest", size: int = 1024,
                crop_factor: float = 2.0, grow: int = 16, feather: int = 32,
                if_no_face: str = "error") -> io.NodeOutput:
        if face_choice not in CROP_CHOICES:
            raise HyperLoRAError(f"Unknown face_choice {face_choice!r}: use one of {', '.join(CROP_CHOICES)}.")
        swap = _face_swap()
        pictures = image_to_float(image, "image")
        analyzer = get_analyzer(face_model_folder_path(face_model), provider)
        found = swap.find_face_regions(analyzer, pictures, CROP_CHOICES[face_choice], crop_factor, if_no_face)
        info = swap.cut_faces(pictures, found, size, grow, feather)
        faces = sum(not r.empty for r in info.regions)
        log.info("HyperLoRA: %d face crop(s) of %dx%d from %d picture(s)", faces, info.size, info.size, len(pictures))
        # Copies: crop_info keeps the crops as cut, to know a crop that comes back unchanged.
        return io.NodeOutput(torch.from_numpy(info.crops.copy()), torch.from_numpy(info.crop_masks.copy()),
                             torch.from_numpy(info.picture_masks()), info)


class FacePaste(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_FacePaste",
            display_name="Face Paste (HyperLoRA)",
            category=CATEGORY,
            description=(
                "Pastes the re-drawn face crops from 'Face Crop' back into the picture they were cut from, at its "
                "full resolution, blended through the feathered face mask. Outside the mask the picture is "
                "untouched, bit for bit; a crop that was not re-drawn leaves its face as it was."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The same picture that went into 'Face Crop'."),
                io.Image.Input("crops", tooltip="The re-drawn crops (VAE Decode of the inpainted crops), one per "
                                                "face."),
                FaceCropInfo.Input("crop_info", tooltip="The crop_info output of 'Face Crop'."),
                io.Mask.Input("mask", optional=True,
                              tooltip="A mask at the picture's size to blend with instead of the face mask (e.g. "
                                      "Face Crop's mask, grown or painted). Empty: the face mask."),
            ],
            outputs=[io.Image.Output("pasted_image", display_name="image",
                                     tooltip="The picture with the re-drawn faces.")],
        )

    @classmethod
    def execute(cls, image, crops, crop_info, mask=None) -> io.NodeOutput:
        if not hasattr(crop_info, "regions"):
            raise HyperLoRAError("'crop_info' must come from the 'Face Crop' node's crop_info output.")
        out = _face_swap().paste_faces(image_to_float(image, "image"), crop_info, image_to_float(crops, "crops"),
                                       None if mask is None else mask_to_float(mask))
        return io.NodeOutput(torch.from_numpy(out))
