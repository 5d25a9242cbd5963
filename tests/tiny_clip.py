"""A small random CLIP vision tower in the Hugging Face layout, for tests without the 1.7 GB model.

``make_tiny_clip(folder)`` writes ``config.json`` (a ``CLIPVisionConfig`` saved by transformers) and
``model.safetensors`` with the key names of OpenAI's ``openai/clip-vit-large-patch14`` file
(``vision_model.*`` plus ``visual_projection.weight``), which is what ComfyUI's "Load CLIP Vision",
transformers 4.x and our :mod:`hyperlora_core.features.clip` read.

What must stay as in ViT-L/14: width 1024 (the resampler's ``proj_in_2`` takes 1024), image 224 with
patches of 14 (257 tokens), heads of 64 (16 heads; the head count cannot be read from the weights,
so a file without config.json is read as 64-wide heads). What shrinks: the number of layers and the
MLP width. Note that ComfyUI recognises a ViT-L/14 file only when it has layer 22
(``vision_model.encoder.layers.22.*``), so a tower for a real-ComfyUI test needs ``layers=24``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def tiny_clip_config(layers: int = 2, intermediate: int = 64):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


def make_tiny_clip(folder: str | Path, layers: int = 2, intermediate: int = 64, seed: int = 0,
                   dtype: torch.dtype = torch.float32) -> Path:
    """Write a random CLIP vision tower (config.json + model.safetensors) into ``folder``; return it."""
    from transformers import CLIPVisionModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_clip_config(layers, intermediate)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModel(config).eval()
        projection = torch.randn(config.projection_dim, config.hidden_size) * 0.02
    config.save_pretrained(str(folder))
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        name = key if key.startswith("vision_model.") else f"vision_model.{key}"
        state[name] = value.detach().to(dtype).contiguous()
    state["visual_projection.weight"] = projection.to(dtype)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder
