"""Test-only ComfyUI nodes for HyperLoRA Studio's real-ComfyUI tier. Never shipped (tests/ is in
.comfyignore); loaded by the test server next to the pack.

- HLSTest_TinySDXL: a MODEL of ComfyUI's own SDXL classes (comfy.supported_models.SDXL and
  comfy.model_base.SDXL) at a tiny width with seeded random weights, plus stand-ins for the CLIP
  text encoders (deterministic conditioning of SDXL's shapes) and the VAE (a fixed upsampling), so
  a shipped workflow can run end to end on a CPU in seconds. Only the MODEL is under test.
- HLSTest_TinyCLIPVision: ComfyUI's ClipVisionModel (the class 'Load CLIP Vision' returns) built
  from a ViT-L/14-shaped config with 3 layers instead of 24: 257 tokens of 1024 like the real one.
- HLSTest_UNetProbe: runs the UNet of a MODEL on a fixed input through ComfyUI's model management
  and reports the output and the patched weight keys in the prompt's history.
- HLSTest_PasteProbe: counts the pixels of a picture that changed inside and outside a mask.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import torch

from .tiny_sdxl import SD15_CONFIG, UNET_CONFIG

TINY_CLIP_VISION_CONFIG = {
    "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 1024,
    "image_size": 224, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 512,
    "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 16,
    "num_channels": 3, "num_hidden_layers": 3, "patch_size": 14, "projection_dim": 768,
}


def _seeded_init(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """ComfyUI's ops skip weight initialisation (weights are loaded from files): fill them here."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + torch.randn(p.shape, generator=gen) * 0.05)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


class TinyCLIP:
    """Stands in for comfy.sd.CLIP: SDXL-shaped conditioning, (1, 77, 2048) + pooled (1, 1280),
    derived from the prompt text so that different prompts give different conditioning."""

    def __init__(self, layer: int = -1):
        self.layer = layer
        self.texts: list[str] = []

    def clone(self):
        return TinyCLIP(self.layer)

    def clip_layer(self, layer: int) -> None:
        self.layer = layer

    def tokenize(self, text: str, **kwargs):
        return {"text": text}

    def _encode(self, text: str):
        seed = int.from_bytes(hashlib.sha256(f"{self.layer}:{text}".encode()).digest()[:4], "little")
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(1, 77, 2048, generator=gen), torch.randn(1, 1280, generator=gen)

    def encode_from_tokens_scheduled(self, tokens, **kwargs):
        cond, pooled = self._encode(tokens["text"])
        return [[cond, {"pooled_output": pooled}]]

    def encode_from_tokens(self, tokens, return_pooled=False, **kwargs):
        cond, pooled = self._encode(tokens["text"])
        return (cond, pooled) if return_pooled else cond


class TinyVAE:
    """Stands in for comfy.sd.VAE: latents (B, 4, h, w) -> images (B, 8h, 8w, 3) in 0..1."""

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        rgb = torch.sigmoid(samples[:, :3].float())
        return torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest").movedim(1, -1)

    def spacial_compression_decode(self) -> int:
        return 8

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images (B, H, W, 3) -> latents (B, 4, H/8, W/8), cut to whole 8 px cells as the real VAE
        does; the inverse of decode for pictures that are constant over each 8 px cell."""
        height, width = (pixels.shape[1] // 8) * 8, (pixels.shape[2] // 8) * 8
        rgb = pixels[:, :height, :width, :3].movedim(-1, 1).float()
        cells = torch.nn.functional.avg_pool2d(rgb, 8).clamp(1e-4, 1 - 1e-4)
        return torch.cat([torch.logit(cells), torch.zeros_like(cells[:, :1])], dim=1)

    def spacial_compression_encode(self) -> int:
        return 8


class TinySDXL:
    CATEGORY = "HyperLoRA Studio tests"
    FUNCTION = "build"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    DESCRIPTION = "Test only: a tiny SDXL-architecture MODEL with stand-in CLIP and VAE."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def build(self, seed: int = 0):
        import comfy.model_management as mm
        import comfy.model_patcher
        import comfy.supported_models

        config = comfy.supported_models.SDXL(UNET_CONFIG)
        config.set_inference_dtype(torch.float32, None)
        model = config.get_model({}, "")
        _seeded_init(model.diffusion_model, seed)
        model = model.to(mm.unet_offload_device())
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                                   offload_device=mm.unet_offload_device())
        return (patcher, TinyCLIP(), TinyVAE())


class TinySD15:
    """A tiny SD 1.5-architecture MODEL, to check that 'Apply HyperLoRA' refuses it by name."""

    CATEGORY = "HyperLoRA Studio tests"
    FUNCTION = "build"
    RETURN_TYPES = ("MODEL",)
    DESCRIPTION = "Test only: a tiny SD 1.5-architecture MODEL."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def build(self, seed: int = 0):
        import comfy.model_management as mm
        import comfy.model_patcher
        import comfy.supported_models

        config = comfy.supported_models.SD15(SD15_CONFIG)
        config.set_inference_dtype(torch.float32, None)
        model = config.get_model({}, "")
        _seeded_init(model.diffusion_model, seed)
        return (comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                                 offload_device=mm.unet_offload_device()),)


class TinyCLIPVision:
    CATEGORY = "HyperLoRA Studio tests"
    FUNCTION = "build"
    RETURN_TYPES = ("CLIP_VISION",)
    DESCRIPTION = "Test only: ComfyUI's CLIP vision model class with a 3-layer ViT-L/14-shaped config."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def build(self, seed: int = 0):
        import comfy.clip_vision

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(TINY_CLIP_VISION_CONFIG, handle)
        try:
            clip = comfy.clip_vision.ClipVisionModel(handle.name)
        finally:
            os.unlink(handle.name)
        _seeded_init(clip.model, seed, scale=0.02)
        return (clip,)


class UNetProbe:
    CATEGORY = "HyperLoRA Studio tests"
    FUNCTION = "probe"
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    DESCRIPTION = "Test only: the UNet output on a fixed input and the patched keys, in the history."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "label": ("STRING", {"default": "probe"})}}

    def probe(self, model, label: str):
        import comfy.model_management as mm

        mm.load_models_gpu([model])
        gen = torch.Generator().manual_seed(1234)
        x = torch.randn(1, 4, 16, 16, generator=gen)
        context = torch.randn(1, 77, 2048, generator=gen)
        y = torch.randn(1, 2816, generator=gen)
        device = model.load_device
        with torch.no_grad():
            out = model.model.apply_model(x.to(device), torch.tensor([3.0], device=device),
                                          c_crossattn=context.to(device), y=y.to(device))
        report = {"label": label, "output": out.float().cpu().flatten().tolist(), "patched": sorted(model.patches)}
        return {"ui": {"hls_probe": [report]}}


class PasteProbe:
    CATEGORY = "HyperLoRA Studio tests"
    FUNCTION = "probe"
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    DESCRIPTION = "Test only: where a picture changed, inside and outside a mask, in the history."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"before": ("IMAGE",), "after": ("IMAGE",), "mask": ("MASK",),
                             "label": ("STRING", {"default": "paste"})}}

    def probe(self, before, after, mask, label: str):
        report = {"label": label, "before": list(before.shape), "after": list(after.shape), "mask": list(mask.shape)}
        if before.shape == after.shape and mask.shape == before.shape[:3]:
            changed = (after != before).any(dim=-1)
            inside = mask > 0
            report.update(changed_outside=int((changed & ~inside).sum()), changed_inside=int((changed & inside).sum()),
                          mask_pixels=int(inside.sum()))
        return {"ui": {"hls_probe": [report]}}


NODE_CLASS_MAPPINGS = {
    "HLSTest_TinySDXL": TinySDXL,
    "HLSTest_TinySD15": TinySD15,
    "HLSTest_TinyCLIPVision": TinyCLIPVision,
    "HLSTest_UNetProbe": UNetProbe,
    "HLSTest_PasteProbe": PasteProbe,
}
