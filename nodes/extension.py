"""The pack as a ComfyUI V3 extension: its node classes, in the order the Add Node menu lists them.

Node ids are prefixed "HLS_" so they never clash with the reference pack's (HyperLoRA...); an id, an
input name or the order of the widgets is part of every saved workflow and never changes
(tests/node_contract.json holds them, and the tests check the nodes against it).
"""

from __future__ import annotations

from .comfy_v3 import ComfyExtension, io
from .face_swap import FaceCrop, FacePaste
from .faces import LoadFaces
from .hooks import LoRAHooks
from .identity import BlendIdentities, IDEmbedding, LoadIdentity, SaveIdentity
from .likeness import KeepBest, Likeness, StrengthSweep
from .loaders import LoadHyperLoRA
from .lora import ApplyLoRA, GenerateLoRA, SaveLoRA
from .prompt import TriggerPrompt
from .refine import RefineLoRA
from .several_people import RegionLayout, SeveralPeople

NODES: list[type[io.ComfyNode]] = [
    LoadHyperLoRA, LoadFaces, IDEmbedding, GenerateLoRA, ApplyLoRA, SaveLoRA, RefineLoRA, TriggerPrompt,
    BlendIdentities, SaveIdentity, LoadIdentity, FaceCrop, FacePaste, Likeness, KeepBest, StrengthSweep,
    LoRAHooks, RegionLayout, SeveralPeople,
]


def node_classes() -> dict[str, type[io.ComfyNode]]:
    """Node id -> class, as ComfyUI registers them."""
    return {node.GET_SCHEMA().node_id: node for node in NODES}


class HyperLoRAStudio(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
