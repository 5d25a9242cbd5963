"""The pack's ComfyUI nodes (classic V1 API). Each module only translates between ComfyUI types and
`hyperlora_core` calls; none imports ComfyUI at module level."""

from .face_regions import FaceCrop, FacePaste
from .faces import LoadFaces
from .hooks import LoRAHooks
from .identity import BlendIdentities, IDEmbedding, LoadIdentity, SaveIdentity
from .likeness import Likeness, StrengthSweep
from .loaders import LoadHyperLoRA
from .lora import ApplyLoRA, GenerateLoRA, SaveLoRA
from .prompt import TriggerPrompt
from .regions import RegionLayout, SeveralPeople

# Node ids are prefixed "HLS_" so they never clash with the reference pack (HyperLoRA...).
NODE_CLASS_MAPPINGS = {
    "HLS_LoadHyperLoRA": LoadHyperLoRA,
    "HLS_LoadFaces": LoadFaces,
    "HLS_IDEmbedding": IDEmbedding,
    "HLS_GenerateLoRA": GenerateLoRA,
    "HLS_ApplyLoRA": ApplyLoRA,
    "HLS_SaveLoRA": SaveLoRA,
    "HLS_TriggerPrompt": TriggerPrompt,
    "HLS_BlendIdentities": BlendIdentities,
    "HLS_SaveIdentity": SaveIdentity,
    "HLS_LoadIdentity": LoadIdentity,
    "HLS_FaceCrop": FaceCrop,
    "HLS_FacePaste": FacePaste,
    "HLS_Likeness": Likeness,
    "HLS_StrengthSweep": StrengthSweep,
    "HLS_LoRAHooks": LoRAHooks,
    "HLS_RegionLayout": RegionLayout,
    "HLS_SeveralPeople": SeveralPeople,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "HLS_LoadHyperLoRA": "Load HyperLoRA",
    "HLS_LoadFaces": "Load Faces (HyperLoRA)",
    "HLS_IDEmbedding": "HyperLoRA ID Embedding",
    "HLS_GenerateLoRA": "Generate HyperLoRA",
    "HLS_ApplyLoRA": "Apply HyperLoRA",
    "HLS_SaveLoRA": "Save HyperLoRA",
    "HLS_TriggerPrompt": "HyperLoRA Prompt (trigger words)",
    "HLS_BlendIdentities": "Blend HyperLoRA Identities",
    "HLS_SaveIdentity": "Save HyperLoRA Identity",
    "HLS_LoadIdentity": "Load HyperLoRA Identity",
    "HLS_FaceCrop": "Face Crop (HyperLoRA)",
    "HLS_FacePaste": "Face Paste (HyperLoRA)",
    "HLS_Likeness": "HyperLoRA Likeness (ArcFace similarity)",
    "HLS_StrengthSweep": "HyperLoRA Strength Sweep",
    "HLS_LoRAHooks": "HyperLoRA Hooks (regions, steps)",
    "HLS_RegionLayout": "HyperLoRA Region Layout",
    "HLS_SeveralPeople": "HyperLoRA Several People",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
