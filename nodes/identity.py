"""Identities: faces + CLIP -> identity features; blend, save and load them."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..hyperlora_core import IdentityFeatures
from ..hyperlora_core.constants import CLIP_TOKENS, CLIP_URL, CLIP_WIDTH
from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.features.clip_pixels import clip_resize
from . import CATEGORY
from .comfy_access import progress_bar
from .comfy_v3 import io, ui
from .faces import Faces
from .inputs import require_input
from .model_folders import IDENTITY_SUBFOLDER, identity_file_path, list_identity_files
from .outputs import save_in_output

log = logging.getLogger(__name__)

HYPERLORA_IDENTITY = "HYPERLORA_IDENTITY"
Identity = io.Custom(HYPERLORA_IDENTITY)
CLIP_SHAPE = (CLIP_TOKENS, CLIP_WIDTH)
MAX_BLEND = 4
CLIP_BATCH = 4  # crops per CLIP call


def clip_input(crops: list[np.ndarray]) -> torch.Tensor:
    """Square RGB uint8 crops -> IMAGE batch at 224 x 224, resized as OpenAI's CLIP preprocessing does.

    The reference resizes with PIL's bicubic filter (HF CLIPImageProcessor: shortest edge 224, centre
    crop 224; `clip_resize`). Doing that here, on the uint8 crop, leaves ComfyUI's clip_preprocess
    nothing to resize or crop, so only its mean/std normalisation applies and the pixels match the
    reference exactly.
    """
    return torch.stack([torch.from_numpy(clip_resize(crop).astype(np.float32) / 255.0) for crop in crops])


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


class IDEmbedding(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_IDEmbedding",
            display_name="HyperLoRA ID Embedding",
            category=CATEGORY,
            description=(
                "Turns the faces into the identity HyperLoRA reads: one ArcFace embedding and one set of CLIP "
                "ViT-L/14 tokens per photo. Connect the core 'Load CLIP Vision' node with OpenAI CLIP ViT-L/14 "
                f"(model.safetensors from {CLIP_URL}, in models/clip_vision; the reference pack's "
                "models/hyper_lora/clip_vit/clip_vit_large_14/model.safetensors is listed too). Base-LoRA features "
                "(a second CLIP pass) are made only when base_lora_features is on."
            ),
            inputs=[
                Faces.Input("faces", tooltip="The faces from 'Load Faces (HyperLoRA)'."),
                io.ClipVision.Input("clip_vision", tooltip="OpenAI CLIP ViT-L/14 from the core 'Load CLIP Vision' "
                                                           "node."),
                io.Boolean.Input("base_lora_features", optional=True, default=False,
                                 tooltip="Also encode the face-blurred crops that a checkpoint with Base-LoRA weights "
                                         "reads (a second CLIP pass per photo). The released v1 variants have no "
                                         "Base-LoRA: leave it off for them."),
            ],
            outputs=[Identity.Output("identity", display_name="identity",
                                     tooltip="The person's identity features, for 'Generate HyperLoRA', 'Blend' or "
                                             "'Save Identity'.")],
        )

    @classmethod
    def execute(cls, faces, clip_vision, base_lora_features: bool = False) -> io.NodeOutput:
        require_input(faces, "faces", "HYPERLORA_FACES", "the faces output of 'Load Faces (HyperLoRA)'",
                      accept=lambda v: isinstance(getattr(v, "results", None), list))
        require_input(clip_vision, "clip_vision", "a CLIP_VISION model",
                      "the output of the core 'Load CLIP Vision' node with OpenAI CLIP ViT-L/14",
                      accept=lambda v: hasattr(v, "encode_image"))
        results = list(getattr(faces, "results", []))
        if not results:
            raise HyperLoRAError("No faces to embed: connect the 'faces' output of 'Load Faces (HyperLoRA)'.")
        tokens = clip_tokens(clip_vision, [r.clip_crop for r in results], "face")
        base = None
        if base_lora_features:
            base_crops = [getattr(r, "base_crop", None) for r in results]
            if any(c is None for c in base_crops):
                raise HyperLoRAError("These faces have no Base-LoRA crops; run them through 'Load Faces (HyperLoRA)' "
                                     "again, or turn base_lora_features off.")
            base = clip_tokens(clip_vision, base_crops, "Base-LoRA")
        sources = getattr(faces, "sources", None)  # none: the identity names them "photo 0", "photo 1", ...
        # The photo check's weights (down-weighted photos), one per face; none: equal.
        weights = getattr(faces, "weights", None)
        return io.NodeOutput(IdentityFeatures.from_faces(results, tokens, base, sources=sources, weights=weights))


def _weight_input(name: str, optional: bool = False):
    return io.Float.Input(name, optional=optional, default=0.5, min=0.0, max=10.0, step=0.05,
                          tooltip="How much this identity counts, relative to the others (0 leaves it out).")


class BlendIdentities(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        more = []
        for i in range(3, MAX_BLEND + 1):
            more += [Identity.Input(f"identity_{i}", optional=True, tooltip="Another identity (optional)."),
                     _weight_input(f"weight_{i}", optional=True)]
        return io.Schema(
            node_id="HLS_BlendIdentities",
            display_name="Blend HyperLoRA Identities",
            category=CATEGORY,
            description=(
                "Mixes two to four identities into one, for look-alikes and sliders. The mix happens where several "
                "photos of one person are combined (on the hyper-network's per-photo outputs, before they become "
                "LoRA weights), so a 50/50 blend is like giving the photos of both people. Weights are relative."
            ),
            inputs=[
                Identity.Input("identity_1", tooltip="First identity."),
                _weight_input("weight_1"),
                Identity.Input("identity_2", tooltip="Second identity."),
                _weight_input("weight_2"),
                *more,
            ],
            outputs=[Identity.Output("identity", display_name="identity", tooltip="The blended identity.")],
        )

    @classmethod
    def execute(cls, identity_1, weight_1, identity_2, weight_2, **more) -> io.NodeOutput:
        parts = [(identity_1, weight_1), (identity_2, weight_2)]
        for i in range(3, MAX_BLEND + 1):
            identity = more.get(f"identity_{i}")
            if identity is not None:
                parts.append((identity, more.get(f"weight_{i}", 0.5)))
        return io.NodeOutput(IdentityFeatures.blend(parts))


class SaveIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_SaveIdentity",
            display_name="Save HyperLoRA Identity",
            category=CATEGORY,
            description=(
                "Stores an identity as a small .safetensors file (about 1 MB per photo) in ComfyUI's output folder "
                f"(default output/{IDENTITY_SUBFOLDER}/), so it can be loaded later without the photos or the face "
                "models, and shows the file's name. Never overwrites a file. Identity files hold biometric data: "
                "keep them private."
            ),
            is_output_node=True,
            inputs=[
                Identity.Input("identity", tooltip="The identity to store."),
                io.String.Input("filename_prefix", default=f"{IDENTITY_SUBFOLDER}/person",
                                tooltip="File name inside the output folder; a counter is added. Files saved under "
                                        f"{IDENTITY_SUBFOLDER}/ show up in 'Load HyperLoRA Identity'."),
            ],
            outputs=[io.String.Output("filename", display_name="filename",
                                      tooltip="The saved file, relative to the output folder.")],
        )

    @classmethod
    def execute(cls, identity, filename_prefix: str) -> io.NodeOutput:
        require_input(identity, "identity", "a HYPERLORA_IDENTITY",
                      "the output of 'HyperLoRA ID Embedding', 'Blend HyperLoRA Identities' or 'Load HyperLoRA Identity'",
                      accept=lambda v: isinstance(v, IdentityFeatures))
        rel = save_in_output(filename_prefix, "identity", identity.save)
        return io.NodeOutput(rel, ui=ui.PreviewText(rel))  # shown on the node, and in the history as before


class LoadIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_LoadIdentity",
            display_name="Load HyperLoRA Identity",
            category=CATEGORY,
            description=(
                "Loads an identity saved by 'Save HyperLoRA Identity', from models/hyperlora_identities/ or "
                f"output/{IDENTITY_SUBFOLDER}/ (extra_model_paths.yaml key 'hyperlora_identities'). No photos, "
                "face models or CLIP needed."
            ),
            inputs=[io.Combo.Input("identity_name", options=list_identity_files(), tooltip="A saved identity file.")],
            outputs=[Identity.Output("identity", display_name="identity", tooltip="The stored identity.")],
        )

    @classmethod
    def fingerprint_inputs(cls, identity_name: str):
        # A file saved again under the same name is read again.
        try:
            return os.path.getmtime(identity_file_path(identity_name))
        except HyperLoRAError:
            return float("nan")  # never equal to itself: the error is shown when the node runs

    @classmethod
    def execute(cls, identity_name: str) -> io.NodeOutput:
        require_input(identity_name, "identity_name", "the name of a saved identity file",
                      "pick one in the list (saved by 'Save HyperLoRA Identity')",
                      accept=lambda v: isinstance(v, str) and v.strip() != "")
        return io.NodeOutput(IdentityFeatures.load(identity_file_path(identity_name)))
