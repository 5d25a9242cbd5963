"""Load HyperLoRA: a checkpoint folder as a network under ComfyUI's model management."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..hyperlora_core import HyperLoRA
from ..hyperlora_core.constants import HF_URL
from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.model.hyperlora import resolve_dtype
from . import CATEGORY
from .comfy_access import comfy_module
from .comfy_v3 import io
from .inputs import require_input
from .model_folders import hyperlora_folder_path, list_hyperlora_folders

log = logging.getLogger(__name__)

HYPERLORA_MODEL = "HYPERLORA_MODEL"
# The dtype widget's choices: "auto" and the precisions of the core (model.hyperlora.DTYPES) by their long names.
DTYPE_CHOICES = ["auto", "float16", "bfloat16", "float32"]


class _Holder(torch.nn.Module):
    """The module a ModelPatcher manages: it sets `.device` and bookkeeping attributes on the model
    it holds, which HyperLoRA itself exposes read-only, so the network sits one level down."""

    def __init__(self, network: HyperLoRA):
        super().__init__()
        self.network = network
        self.device = network.device


@dataclass
class LoadedHyperLoRA:
    """What travels on a HYPERLORA_MODEL link."""

    network: HyperLoRA
    patcher: object  # comfy.model_patcher.ModelPatcher around a _Holder
    name: str

    def ready(self) -> HyperLoRA:
        """Move the network to its compute device through ComfyUI (other models make room for it,
        and it makes room for them later) and return it."""
        mm = comfy_module("comfy.model_management")
        mm.load_models_gpu([self.patcher], force_full_load=True)
        return self.network


def choose_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        return resolve_dtype(dtype)
    if device.type == "cpu":
        return torch.float16  # the files are fp16; the core computes in float32 on the CPU
    mm = comfy_module("comfy.model_management")
    return torch.float16 if mm.should_use_fp16(device) else torch.float32


HyperLoRAModel = io.Custom(HYPERLORA_MODEL)


class LoadHyperLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_LoadHyperLoRA",
            display_name="Load HyperLoRA",
            category=CATEGORY,
            description=(
                "Loads a HyperLoRA checkpoint folder: the network that turns face features into an SDXL LoRA. "
                "Put a variant folder (sdxl_hyper_id_lora_v1_fidelity for likeness or sdxl_hyper_id_lora_v1_edit "
                "for prompt editability, each with hyper_lora_modules.json, hyper_lora_modules.safetensors, "
                f"resampler.safetensors and id_projector.safetensors) in ComfyUI/models/hyperlora/ (the reference "
                f"pack's models/hyper_lora/hyper_lora/ and extra_model_paths.yaml key 'hyperlora' work too). "
                f"Download: {HF_URL} (licence CC BY-NC 4.0). The network is managed by ComfyUI: it goes to the GPU "
                "while generating and gives the memory back to other models afterwards."
            ),
            inputs=[
                io.Combo.Input("hyperlora_name", options=list_hyperlora_folders(),
                               tooltip="A checkpoint folder from models/hyperlora or models/hyper_lora/hyper_lora "
                                       "(a folder holding hyper_lora_modules.json)."),
                io.Combo.Input("dtype", options=DTYPE_CHOICES, default="auto",
                               tooltip="Precision of the network in memory. auto: float16 (the release's precision) "
                                       "where the device supports it. float32 doubles the memory (about 6 GB)."),
                io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                               tooltip="auto: ComfyUI's device (the GPU unless ComfyUI runs with --cpu). cpu: keep the "
                                       "network off the GPU (slower, frees about 3 GB of VRAM)."),
            ],
            outputs=[HyperLoRAModel.Output("hyperlora", display_name="hyperlora",
                                           tooltip="The HyperLoRA network, for 'Generate HyperLoRA'.")],
        )

    @classmethod
    def execute(cls, hyperlora_name: str, dtype: str = "auto", device: str = "auto") -> io.NodeOutput:
        require_input(hyperlora_name, "hyperlora_name", "the name of a checkpoint folder",
                      f"pick one in the list (folders under models/hyperlora, from {HF_URL})",
                      accept=lambda v: isinstance(v, str) and v.strip() != "")
        mm = comfy_module("comfy.model_management")
        patcher_mod = comfy_module("comfy.model_patcher")
        if device not in ("auto", "cpu"):
            raise HyperLoRAError(f"Unknown device {device!r}: use 'auto' or 'cpu'.")
        folder = hyperlora_folder_path(hyperlora_name)
        load_device = torch.device("cpu") if device == "cpu" else mm.get_torch_device()
        if dtype not in DTYPE_CHOICES:
            raise HyperLoRAError(f"Unknown dtype {dtype!r}: use auto, float16, bfloat16 or float32.")
        torch_dtype = choose_dtype(dtype, load_device)
        # Read the files on the CPU; ComfyUI moves the network when it is needed.
        network = HyperLoRA.from_pretrained(folder, dtype=torch_dtype, device="cpu")
        holder = _Holder(network)
        offload = torch.device("cpu")
        patcher = patcher_mod.ModelPatcher(holder, load_device=load_device, offload_device=offload)
        log.info("HyperLoRA %s ready (%s, runs on %s)", hyperlora_name, torch_dtype, load_device)
        return io.NodeOutput(LoadedHyperLoRA(network=network, patcher=patcher, name=hyperlora_name))
