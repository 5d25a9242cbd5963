"""The layers of a diffusers-layout UNet (SDXL's, or the tests' toy one) by their kohya LoRA names."""

from __future__ import annotations

from torch import nn

from ..constants import PROJECTIONS
from ..train.lora_inject import find_attention_modules, layer_name


def attention_linears(unet: nn.Module) -> dict[str, nn.Linear]:
    """``lora_unet_..._attn1_to_q`` -> that ``nn.Linear`` for every attention projection of ``unet``."""
    layers: dict[str, nn.Linear] = {}
    for target in find_attention_modules(unet):
        attention = unet.get_submodule(target.path)
        for projection in PROJECTIONS:
            layer = attention.to_out[0] if projection == "to_out" else getattr(attention, projection)
            layers[layer_name(target.spec, projection)] = layer
    return layers
