"""The refine engine on a :class:`hyperlora_core.train.backbone.Backbone` (SDXL through diffusers for
the command line, the toy model in the tests): its VAE encodes the views, its text encoders the
captions with SDXL's size conditioning, its UNet predicts the noise, and forward hooks put the LoRA on
its attention projections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch

from ..train.backbone import Backbone
from .engine import hooks_on
from .layers import attention_linears
from .lora import RefinableLoRA


@dataclass
class BackboneParts:
    encode_pixels: Callable[[torch.Tensor], torch.Tensor]
    encode_caption: Callable[[str], Any]
    predict: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
    attach: Callable[[RefinableLoRA], ContextManager]
    alphas_cumprod: torch.Tensor


def backbone_parts(backbone: Backbone, resolution: int) -> BackboneParts:
    """What the engine needs from a frozen backbone already moved to its device and dtype."""
    sizes = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32)
    dtype = getattr(backbone, "dtype", torch.float32)

    def encode_pixels(pixels: torch.Tensor) -> torch.Tensor:
        return backbone.encode_images(pixels.permute(0, 3, 1, 2) * 2 - 1)

    def encode_caption(caption: str):
        return backbone.encode_prompts([caption], sizes)

    def predict(noisy, timesteps, condition):
        return backbone.predict(noisy.to(dtype), timesteps, condition).float()

    if backbone.prediction_type != "epsilon":
        from .engine import RefineError
        raise RefineError(f"Refining trains SDXL's noise prediction (epsilon); this model predicts "
                          f"{backbone.prediction_type}.")
    return BackboneParts(encode_pixels, encode_caption, predict, hooks_on(attention_linears(backbone.unet)),
                         backbone.alphas_cumprod)
