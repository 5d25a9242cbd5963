"""What the refine tests share: a random ID-LoRA for a UNet's attention layers, and the toy UNet
(hyperlora_core.train.toy) with encoded views, so a refine run takes a second on one CPU core."""

from __future__ import annotations

import numpy as np
import torch

from hyperlora_core.refine import PhotoView, RefineSettings, TrainingView, hooks_on, prepare_views
from hyperlora_core.refine.layers import attention_linears
from hyperlora_core.train.toy import ToyBackbone
from tiny_training import sdxl_shaped_unet


def random_id_lora(layers: dict[str, torch.nn.Linear], rank: int = 4, dtype=torch.float16,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """A kohya ID-LoRA shaped for ``layers`` (non-zero up factors, so that it shows), alpha = rank / 2."""
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for name, layer in layers.items():
        lora[f"{name}.lora_down.weight"] = (torch.randn(rank, layer.in_features, generator=gen) * 0.1).to(dtype)
        lora[f"{name}.lora_up.weight"] = (torch.randn(layer.out_features, rank, generator=gen) * 0.05).to(dtype)
        lora[f"{name}.alpha"] = torch.tensor(rank / 2, dtype=dtype)
    return lora


class ToyRefineSetup:
    """The toy UNet, its layers, an ID-LoRA for them and a few encoded views (32 px -> 8 x 8 latents)."""

    def __init__(self, views: int = 4, seed: int = 0):
        self.backbone = ToyBackbone(seed=seed)
        self.unet = self.backbone.unet
        self.layers = attention_linears(self.unet)
        self.lora = random_id_lora(self.layers)
        rng = np.random.default_rng(seed)
        photo_views = []
        for n in range(views):
            mask = np.zeros((32, 32), np.float32)
            mask[8:24, 10:22] = 1.0
            photo_views.append(PhotoView(rng.random((32, 32, 3), dtype=np.float32), mask,
                                         f"fcsks fxhks fhyks, a photo of person {n % 2}", f"photo {n}"))
        self.views: list[TrainingView] = prepare_views(
            photo_views, lambda px: self.backbone.encode_images(px.permute(0, 3, 1, 2) * 2 - 1),
            lambda caption: self.backbone.encode_prompts([caption], None), face_weight=1.0)
        self.alphas = self.backbone.alphas_cumprod
        self.attach = hooks_on(self.layers)

    def predict(self, noisy, timesteps, condition):
        return self.backbone.predict(noisy, timesteps, condition)

    def settings(self, **changes) -> RefineSettings:
        values = {"steps": 5, "learning_rate": 1e-3, "seed": 0, "log_every": 0}
        values.update(changes)
        return RefineSettings(**values)


class SDXLShapedBackbone(ToyBackbone):
    """The toy text encoder and 'VAE' around a diffusers UNet2DConditionModel with SDXL's block layout
    (its 560 attention projections) at a fraction of the width, conditioned as SDXL is: context, pooled
    text and the six size numbers."""

    def __init__(self):
        super().__init__(context_dim=64)
        self.unet = sdxl_shaped_unet()
        self.sizes_seen: list[torch.Tensor] = []

    def encode_prompts(self, captions, sizes):
        condition = super().encode_prompts(captions, sizes)
        self.sizes_seen.append(sizes)
        return {"context": condition["context"], "added": {"text_embeds": condition["pooled"], "time_ids": sizes}}

    def predict(self, noisy, timesteps, condition):
        return self.unet(noisy, timesteps, encoder_hidden_states=condition["context"],
                         added_cond_kwargs=condition["added"]).sample
