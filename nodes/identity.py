"""Identities: faces + CLIP -> identity features; blend, save and load them."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..hyperlora_core import IdentityFeatures
from ..hyperlora_core.errors import HyperLoRAError
from .faces import HYPERLORA_FACES
from .utils import (
    CATEGORY,
    CLIP_URL,
    IDENTITY_SUBFOLDER,
    identity_file_path,
    list_identity_files,
    progress_bar,
    require_input,
    save_in_output,
)

log = logging.getLogger(__name__)

HYPERLORA_IDENTITY = "HYPERLORA_IDENTITY"
CLIP_SIZE = 224
CLIP_SHAPE = (257, 1024)
MAX_BLEND = 4
CLIP_BATCH = 4  # crops per CLIP call


def clip_input(crops: list[np.ndarray]) -> torch.Tensor:
    """Square RGB uint8 crops -> IMAGE batch at 224 x 224, resized as OpenAI's CLIP preprocessing does.

    The reference resizes with PIL's bicubic filter (HF CLIPImageProcessor: shortest edge 224, centre
    crop 224). Doing that here, on the uint8 crop, leaves ComfyUI's clip_preprocess nothing to resize
    or crop, so only its mean/std normalisation applies and the pixels match the reference exactly.
    """
    from PIL import Image

    out = []
    for crop in crops:
        image = Image.fromarray(np.asarray(crop, dtype=np.uint8)).convert("RGB")
        width, height = image.size
        if (width, height) != (CLIP_SIZE, CLIP_SIZE):
            short, long = sorted((width, height))
            new_long = int(CLIP_SIZE * long / short)
            size = (CLIP_SIZE, new_long) if width <= height else (new_long, CLIP_SIZE)
            image = image.resize(size, Image.BICUBIC)
            left, top = (size[0] - CLIP_SIZE) // 2, (size[1] - CLIP_SIZE) // 2
            image = image.crop((left, top, left + CLIP_SIZE, top + CLIP_SIZE))
        out.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0))
    return torch.stack(out)


def clip_tokens(clip_vision, crops: list[np.ndarray], what: str) -> torch.Tensor:
    """CLIP ViT-L/14 penultimate hidden states (N, 257, 1024) of the crops, before the final norm.

    ComfyUI's encode_image runs the tower with intermediate_output=-2, which is the output of the
    23rd of 24 layers: HF's hidden_states[-2], the tokens the reference feeds the resampler.
    """
    if not hasattr(clip_vision, "encode_image"):
        raise HyperLoRAError(f"clip_vision must be a CLIP_VISION from 'Load CLIP Vision', got {type(clip_vision).__name__}.")
    bar = progress_bar(len(crops))
    tokens = []
    # A few crops per call: the tower's matrix products get taller (better use of the cores, per-call
    # overhead paid once) while the activations stay small. Each crop's tokens equal its own pass up to
    # float rounding: nothing in the tower mixes the images of a batch.
    for start in range(0, len(crops), CLIP_BATCH):
        chunk = crops[start : start + CLIP_BATCH]
        output = clip_vision.encode_image(clip_input(chunk), crop=False)
        hidden = output["penultimate_hidden_states"]
        if tuple(hidden.shape[1:]) != CLIP_SHAPE:
            raise HyperLoRAError(
                f"The CLIP vision model gives {what} tokens of shape {list(hidden.shape[1:])}, but HyperLoRA needs "
                f"OpenAI CLIP ViT-L/14 ({CLIP_SHAPE[0]} x {CLIP_SHAPE[1]}). Load clip-vit-large-patch14 "
                f"({CLIP_URL}, model.safetensors) with 'Load CLIP Vision' (ViT-H/G and SigLIP models do not fit)."
            )
        tokens.append(hidden.detach().float().cpu())
        bar.update(len(chunk))
    return torch.cat(tokens)


class IDEmbedding:
    DESCRIPTION = (
        "Turns the faces into the identity HyperLoRA reads: one ArcFace embedding and one set of CLIP "
        "ViT-L/14 tokens per photo. Connect the core 'Load CLIP Vision' node with OpenAI CLIP ViT-L/14 "
        f"(model.safetensors from {CLIP_URL}, in models/clip_vision; the reference pack's "
        "models/hyper_lora/clip_vit/clip_vit_large_14/model.safetensors is listed too). Base-LoRA features "
        "(a second CLIP pass) are made only when base_lora_features is on."
    )
    CATEGORY = CATEGORY
    FUNCTION = "embed"
    RETURN_TYPES = (HYPERLORA_IDENTITY,)
    RETURN_NAMES = ("identity",)
    OUTPUT_TOOLTIPS = ("The person's identity features, for 'Generate HyperLoRA', 'Blend' or 'Save Identity'.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "faces": (HYPERLORA_FACES, {"tooltip": "The faces from 'Load Faces (HyperLoRA)'."}),
                "clip_vision": ("CLIP_VISION", {
                    "tooltip": "OpenAI CLIP ViT-L/14 from the core 'Load CLIP Vision' node."}),
            },
            "optional": {
                "base_lora_features": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Also encode the face-blurred crops that a checkpoint with Base-LoRA weights reads "
                               "(a second CLIP pass per photo). The released v1 variants have no Base-LoRA: "
                               "leave it off for them."}),
            },
        }

    def embed(self, faces, clip_vision, base_lora_features: bool = False):
        require_input(faces, "faces", "HYPERLORA_FACES", "the faces output of 'Load Faces (HyperLoRA)'",
                      accept=lambda v: isinstance(getattr(v, "results", None), list))
        require_input(clip_vision, "clip_vision", "a CLIP_VISION model",
                      "the output of the core 'Load CLIP Vision' node with OpenAI CLIP ViT-L/14",
                      accept=lambda v: hasattr(v, "encode_image"))
        results = list(getattr(faces, "results", []))
        if not results:
            raise HyperLoRAError("No faces to embed: connect the 'faces' output of 'Load Faces (HyperLoRA)'.")
        arcface = torch.stack([torch.as_tensor(np.asarray(r.arcface_embedding), dtype=torch.float32).flatten()
                               for r in results])
        arcface = arcface / arcface.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        tokens = clip_tokens(clip_vision, [r.clip_crop for r in results], "face")
        base = None
        if base_lora_features:
            base_crops = [getattr(r, "base_crop", None) for r in results]
            if any(c is None for c in base_crops):
                raise HyperLoRAError("These faces have no Base-LoRA crops; run them through 'Load Faces (HyperLoRA)' "
                                     "again, or turn base_lora_features off.")
            base = clip_tokens(clip_vision, base_crops, "Base-LoRA")
        sources = list(getattr(faces, "sources", [])) or [f"photo {i}" for i in range(len(results))]
        identity = IdentityFeatures(arcface=arcface, clip_tokens=tokens, base_clip_tokens=base, sources=sources)
        return (identity,)


class BlendIdentities:
    DESCRIPTION = (
        "Mixes two to four identities into one, for look-alikes and sliders. The mix happens where several "
        "photos of one person are combined (on the hyper-network's per-photo outputs, before they become "
        "LoRA weights), so a 50/50 blend is like giving the photos of both people. Weights are relative."
    )
    CATEGORY = CATEGORY
    FUNCTION = "blend"
    RETURN_TYPES = (HYPERLORA_IDENTITY,)
    RETURN_NAMES = ("identity",)
    OUTPUT_TOOLTIPS = ("The blended identity.",)

    @classmethod
    def INPUT_TYPES(cls):
        def weight(default: float):
            return ("FLOAT", {"default": default, "min": 0.0, "max": 10.0, "step": 0.05,
                              "tooltip": "How much this identity counts, relative to the others (0 leaves it out)."})
        required = {
            "identity_1": (HYPERLORA_IDENTITY, {"tooltip": "First identity."}),
            "weight_1": weight(0.5),
            "identity_2": (HYPERLORA_IDENTITY, {"tooltip": "Second identity."}),
            "weight_2": weight(0.5),
        }
        optional = {}
        for i in range(3, MAX_BLEND + 1):
            optional[f"identity_{i}"] = (HYPERLORA_IDENTITY, {"tooltip": "Another identity (optional)."})
            optional[f"weight_{i}"] = weight(0.5)
        return {"required": required, "optional": optional}

    def blend(self, identity_1, weight_1, identity_2, weight_2, **more):
        parts = [(identity_1, weight_1), (identity_2, weight_2)]
        for i in range(3, MAX_BLEND + 1):
            identity = more.get(f"identity_{i}")
            if identity is not None:
                parts.append((identity, more.get(f"weight_{i}", 0.5)))
        return (IdentityFeatures.blend(parts),)


class SaveIdentity:
    DESCRIPTION = (
        "Stores an identity as a small .safetensors file (about 1 MB per photo) in ComfyUI's output folder "
        f"(default output/{IDENTITY_SUBFOLDER}/), so it can be loaded later without the photos or the face "
        "models. Never overwrites a file. Identity files hold biometric data: keep them private."
    )
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("filename",)
    OUTPUT_TOOLTIPS = ("The saved file, relative to the output folder.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "identity": (HYPERLORA_IDENTITY, {"tooltip": "The identity to store."}),
                "filename_prefix": ("STRING", {
                    "default": f"{IDENTITY_SUBFOLDER}/person",
                    "tooltip": "File name inside the output folder; a counter is added. Files saved under "
                               f"{IDENTITY_SUBFOLDER}/ show up in 'Load HyperLoRA Identity'."}),
            }
        }

    def save(self, identity, filename_prefix: str):
        require_input(identity, "identity", "a HYPERLORA_IDENTITY",
                      "the output of 'HyperLoRA ID Embedding', 'Blend HyperLoRA Identities' or 'Load HyperLoRA Identity'",
                      accept=lambda v: isinstance(v, IdentityFeatures))
        return save_in_output(filename_prefix, "identity", identity.save)


class LoadIdentity:
    DESCRIPTION = (
        "Loads an identity saved by 'Save HyperLoRA Identity', from models/hyperlora_identities/ or "
        f"output/{IDENTITY_SUBFOLDER}/ (extra_model_paths.yaml key 'hyperlora_identities'). No photos, "
        "face models or CLIP needed."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (HYPERLORA_IDENTITY,)
    RETURN_NAMES = ("identity",)
    OUTPUT_TOOLTIPS = ("The stored identity.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "identity_name": (list_identity_files(), {"tooltip": "A saved identity file."}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, identity_name: str):
        # A file saved again under the same name is read again.
        try:
            return os.path.getmtime(identity_file_path(identity_name))
        except HyperLoRAError:
            return float("nan")  # never equal to itself: the error is shown when the node runs

    def load(self, identity_name: str):
        require_input(identity_name, "identity_name", "the name of a saved identity file",
                      "pick one in the list (saved by 'Save HyperLoRA Identity')",
                      accept=lambda v: isinstance(v, str) and v.strip() != "")
        return (IdentityFeatures.load(identity_file_path(identity_name)),)
