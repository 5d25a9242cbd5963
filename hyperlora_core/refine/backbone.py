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


def render_with_lora(backbone: Backbone, lora: dict[str, torch.Tensor], prompts: list[tuple[str, int]],
                     resolution: int, steps: int = 20) -> list:
    """Pictures (uint8 RGB) of ``prompts`` ((text, seed) pairs) by the backbone's diffusers pipeline with
    ``lora`` on its attention layers (Euler, CFG 5; the pipeline's own scheduler is left as it was)."""
    import numpy as np

    from ..train.backbone import _diffusers

    pipe = backbone.pipe
    scheduler = pipe.scheduler
    pipe.scheduler = _diffusers().EulerDiscreteScheduler.from_config(scheduler.config)
    attach = hooks_on(attention_linears(backbone.unet))
    pictures = []
    try:
        with torch.no_grad(), attach(RefinableLoRA(lora, device=backbone.device)):
            for prompt, seed in prompts:
                generator = torch.Generator(device=backbone.device).manual_seed(seed)
                image = pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=5.0, height=resolution,
                             width=resolution, generator=generator, output_type="np").images[0]
                pictures.append((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    finally:
        pipe.scheduler = scheduler
    return pictures
