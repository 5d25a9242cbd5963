"""Sample images during training: a plain DDIM sampler (eta 0) over the backbone's noise schedule,
with classifier-free guidance, the hyper-network's LoRA applied to both halves of the batch."""

from __future__ import annotations

import numpy as np
import torch

from .backbone import Backbone


@torch.no_grad()
def ddim_sample(backbone: Backbone, latent_shape: tuple[int, ...], prompt: str, sizes: torch.Tensor,
                steps: int, guidance: float, seed: int, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """One image (H, W, 3) uint8 for ``prompt``, with whatever LoRA the UNet's layers hold now."""
    alphas = backbone.alphas_cumprod
    total = alphas.shape[0]
    timesteps = torch.linspace(total - 1, 0, steps).round().long()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((1, *latent_shape), generator=generator).to(device, torch.float32)
    use_cfg = guidance != 1.0
    captions = ["", prompt] if use_cfg else [prompt]
    sizes = sizes.reshape(1, -1).expand(len(captions), -1)
    condition = backbone.encode_prompts(captions, sizes.to(device))
    for i, t in enumerate(timesteps):
        a_t = alphas[t].item()
        a_prev = alphas[timesteps[i + 1]].item() if i + 1 < len(timesteps) else 1.0
        model_in = x.expand(len(captions), *x.shape[1:]).to(dtype)
        out = backbone.predict(model_in, t.expand(len(captions)).to(device), condition).float()
        if use_cfg:
            out = out[0:1] + guidance * (out[1:2] - out[0:1])
        if backbone.prediction_type == "v_prediction":
            eps = a_t**0.5 * out + (1 - a_t) ** 0.5 * x
            x0 = a_t**0.5 * x - (1 - a_t) ** 0.5 * out
        else:
            eps = out
            x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    image = backbone.decode_latents(x)[0].float().clamp(-1, 1)
    return ((image.permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)
