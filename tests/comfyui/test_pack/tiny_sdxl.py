"""The tiny SDXL-architecture UNet of the real-ComfyUI tests, described without importing ComfyUI.

ComfyUI's checkpoint loaders recognise SDXL only at full size (model_channels 320, 10-deep
transformers), so the tests build the MODEL through ComfyUI's own classes instead
(comfy.supported_models.SDXL + comfy.model_base.SDXL) from this config: the SDXL block layout
(3 levels, 2 res blocks each, attention on levels 1 and 2, the middle block and up blocks 0 and 1,
cross-attention width 2048, ADM 2816) at a fraction of the width and one transformer block each.
"""

from __future__ import annotations

MODEL_CHANNELS = 64
CHANNEL_MULT = [1, 2, 4]

UNET_CONFIG = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "in_channels": 4,
    "model_channels": MODEL_CHANNELS,
    "num_res_blocks": [2, 2, 2],
    "transformer_depth": [0, 0, 1, 1, 1, 1],
    "channel_mult": CHANNEL_MULT,
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1],
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}

# A tiny SD 1.5-architecture UNet (context 768, no ADM), only to be refused.
SD15_CONFIG = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "in_channels": 4, "model_channels": 64, "num_res_blocks": [1, 1],
    "transformer_depth": [1, 1], "channel_mult": [1, 2], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 768, "transformer_depth_output": [1, 1, 1, 1],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}


def hyperlora_modules() -> list[tuple[str, int, int | None]]:
    """(kohya module name, hidden size, cross-attention dim) of every attention of the tiny UNet,
    in the order the v1 release lists SDXL's: the layout of hyper_lora_modules.json."""
    w1, w2 = MODEL_CHANNELS * CHANNEL_MULT[1], MODEL_CHANNELS * CHANNEL_MULT[2]
    blocks = [("down_blocks_1", 2, w1), ("down_blocks_2", 2, w2), ("mid_block", 1, w2),
              ("up_blocks_0", 3, w2), ("up_blocks_1", 3, w1)]
    modules = []
    for prefix, attentions, width in blocks:
        for a in range(attentions):
            stem = f"lora_unet_{prefix}_attentions_{a}_transformer_blocks_0"
            modules.append((f"{stem}_attn1", width, None))
            modules.append((f"{stem}_attn2", width, 2048))
    return modules
