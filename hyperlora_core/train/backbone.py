"""The frozen diffusion model the hyper-network trains against.

A :class:`Backbone` bundles what a training step needs: a UNet whose attention layers get the
LoRA, frozen text encoders, a VAE (used once, while the dataset is cached) and the noise schedule.

* ``kind = "sdxl"``: an SDXL base model, either a diffusers folder (``model_index.json``,
  ``unet/``, ``vae/``, ``text_encoder/``, ``text_encoder_2/``, ...) or a single ``.safetensors``
  file as ComfyUI and A1111 use (read through diffusers' ``from_single_file``). Needs ``diffusers``.
* ``kind = "custom"``: ``factory = "package.module:function"``, a function of ``(**options)``
  returning a :class:`Backbone`; how other UNet bases (and the tests' toy model) plug in.

A checkpoint of the wrong kind (SD 1.x, SD 2.x, the SDXL refiner, SD3, Flux, a LoRA, a VAE, a
HyperLoRA release) is refused with an error that says what was found.
"""

from __future__ import annotations

import importlib
import json
import logging
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpointing import checkpointed
from ..errors import CheckpointError, HyperLoRAError

log = logging.getLogger(__name__)


class Backbone:
    """Interface of a frozen base model. Subclasses set the attributes and implement the methods."""

    unet: nn.Module
    prediction_type: str = "epsilon"  # or "v_prediction"
    alphas_cumprod: torch.Tensor  # (T,) float64 on the CPU
    description: str = ""

    def to(self, device: torch.device, dtype: torch.dtype) -> Backbone:
        raise NotImplementedError

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in -1..1 -> latents, already scaled as the UNet expects."""
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> (B, 3, H, W) in -1..1 (for sample images)."""
        raise NotImplementedError

    def encode_prompts(self, captions: list[str], sizes: torch.Tensor) -> dict[str, Any]:
        """Captions and per-sample size conditioning (B, 6: original h, w, crop top, left, target h, w)
        -> the UNet's conditioning, whatever form this model needs."""
        raise NotImplementedError

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def enable_gradient_checkpointing(self) -> bool:
        """Use the UNet's own checkpointing if it has one; False lets the trainer wrap blocks itself."""
        enable = getattr(self.unet, "enable_gradient_checkpointing", None)
        if enable is None:
            return False
        enable()
        return True


def scaled_linear_schedule(steps: int = 1000, start: float = 0.00085, end: float = 0.012) -> torch.Tensor:
    """The SD/SDXL noise schedule ("scaled_linear"): cumulative alphas, float64."""
    betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


# -- what kind of checkpoint is this? ---------------------------------------------------------

_KINDS_BY_KEY = (  # (marker key prefix, description); first match wins
    ("0.to_q.id_down_basis", "a HyperLoRA module file (hyper_lora_modules.safetensors), not a base model"),
    ("lora_unet_", "a LoRA, not a base model"),
    ("lora_te", "a LoRA, not a base model"),
    ("double_blocks.", "a Flux model"),
    ("model.diffusion_model.double_blocks.", "a Flux model"),
    ("model.diffusion_model.joint_blocks.", "a Stable Diffusion 3 model"),
    ("joint_blocks.", "a Stable Diffusion 3 model"),
    ("conditioner.embedders.1.model.", "an SDXL base model"),
    ("conditioner.embedders.0.model.", "an SDXL refiner (it has no CLIP-L text encoder)"),
    ("cond_stage_model.model.", "a Stable Diffusion 2.x model"),
    ("cond_stage_model.transformer.", "a Stable Diffusion 1.x model"),
    ("model.diffusion_model.", "a UNet without text encoders"),
    ("encoder.down.", "a VAE, not a base model"),
    ("decoder.up.", "a VAE, not a base model"),
)
SDXL = "an SDXL base model"


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a .safetensors header (nothing else is read)."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100 * 2**20:
                raise ValueError("header larger than 100 MB")
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise CheckpointError(f"{path} is not a readable .safetensors file ({exc}).") from exc
    return [k for k in header if k != "__metadata__"]


def identify_single_file(keys: list[str]) -> str:
    for prefix, kind in _KINDS_BY_KEY:
        if any(k.startswith(prefix) for k in keys):
            return kind
    sample = ", ".join(sorted(keys)[:3]) or "no tensors"
    return f"an unknown kind of file (keys such as {sample})"


def identify_folder(folder: Path) -> str:
    if (folder / "hyper_lora_modules.json").is_file():
        return "a HyperLoRA release folder, not a base model (use it as network.init_from to fine-tune)"
    index = folder / "model_index.json"
    if index.is_file():
        try:
            name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
        except (OSError, ValueError):
            name = ""
        if name.startswith("StableDiffusionXL") and "Img2Img" not in name and "Refiner" not in name:
            if not (folder / "text_encoder").is_dir():
                return "an SDXL refiner (it has no CLIP-L text encoder)"
            return SDXL
        return f"a diffusers {name or 'pipeline of unknown class'}"
    if (folder / "config.json").is_file() and (folder / "diffusion_pytorch_model.safetensors").is_file():
        return "a single diffusers component (a UNet or VAE folder), not a whole pipeline"
    return "a folder without model_index.json"


def check_sdxl(path: Path) -> str:
    """Raise CheckpointError naming what was found unless ``path`` is an SDXL base model."""
    if not path.exists():
        raise CheckpointError(f"Base model not found: {path}. Give an SDXL diffusers folder or a .safetensors file.")
    if path.is_dir():
        found = identify_folder(path)
    elif path.suffix.lower() == ".safetensors":
        found = identify_single_file(safetensors_keys(path))
    else:
        raise CheckpointError(
            f"{path}: only .safetensors files and diffusers folders are read (a {path.suffix or 'bare'} file "
            "may hold pickled code); convert it to .safetensors first."
        )
    if found != SDXL:
        raise CheckpointError(
            f"{path} is {found}. model.kind = \"sdxl\" needs an SDXL base model (e.g. "
            "stabilityai/stable-diffusion-xl-base-1.0 or a fine-tune such as RealVisXL)."
        )
    return found


# -- loading ----------------------------------------------------------------------------------

def load_backbone(model_config) -> Backbone:
    """Build the backbone a config's ``model`` section describes."""
    if model_config.kind == "custom":
        module_name, _, function = model_config.factory.partition(":")
        if not module_name or not function:
            raise HyperLoRAError(
                f"model.factory must look like 'package.module:function', got {model_config.factory!r}."
            )
        try:
            factory = getattr(importlib.import_module(module_name), function)
        except (ImportError, AttributeError) as exc:
            raise HyperLoRAError(f"Cannot import model.factory {model_config.factory!r}: {exc}.") from exc
        backbone = factory(**model_config.options)
        if not isinstance(backbone, Backbone):
            raise HyperLoRAError(f"model.factory {model_config.factory!r} returned {type(backbone).__name__}, "
                                 "not a hyperlora_core.train.backbone.Backbone.")
        return backbone
    if model_config.kind == "sdxl":
        path = Path(model_config.path).expanduser()
        check_sdxl(path)
        return SDXLBackbone.load(path, model_config.config or None)
    raise HyperLoRAError(f"Unknown model.kind {model_config.kind!r}: use 'sdxl' or 'custom'.")


def _diffusers():
    try:
        import diffusers
    except ImportError as exc:
        raise HyperLoRAError(
            "Training on SDXL needs the 'diffusers' package: pip install 'hyperlora-studio[train]' "
            "(or pip install diffusers)."
        ) from exc
    return diffusers


class SDXLBackbone(Backbone):
    """SDXL through diffusers: two CLIP text encoders (penultimate layers), size conditioning."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.unet = pipe.unet
        self.vae = pipe.vae
        self.text_encoders = (pipe.text_encoder, pipe.text_encoder_2)
        self.tokenizers = (pipe.tokenizer, pipe.tokenizer_2)
        self.prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
        self.alphas_cumprod = pipe.scheduler.alphas_cumprod.to(torch.float64).cpu()
        self.scaling = pipe.vae.config.scaling_factor
        for module in (self.unet, self.vae, *self.text_encoders):
            module.requires_grad_(False).eval()
        self.description = "SDXL"

    @classmethod
    def load(cls, path: Path, config: str | None) -> SDXLBackbone:
        diffusers = _diffusers()
        log.info("Loading SDXL from %s", path)
        # float32 (the default) on load; `to()` then casts the UNet and text encoders for mixed precision.
        if path.is_dir():
            pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(str(path))
        else:
            kwargs = {"config": config} if config else {}
            pipe = diffusers.StableDiffusionXLPipeline.from_single_file(str(path), **kwargs)
        pipe.scheduler = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)
        return cls(pipe)

    def to(self, device, dtype):
        self.device = torch.device(device)
        self.dtype = dtype
        self.unet.to(device, dtype)
        for encoder in self.text_encoders:
            encoder.to(device, dtype)
        self.vae.to(device, torch.float32)  # the SDXL VAE overflows in fp16
        return self

    @torch.no_grad()
    def encode_images(self, pixels):
        latents = self.vae.encode(pixels.to(self.vae.device, torch.float32)).latent_dist.sample()
        return latents * self.scaling

    @torch.no_grad()
    def decode_latents(self, latents):
        return self.vae.decode(latents.to(self.vae.device, torch.float32) / self.scaling).sample

    @torch.no_grad()
    def encode_prompts(self, captions, sizes):
        states = []
        pooled = None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(encoder.device)
            out = encoder(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]  # text_encoder_2 comes last: its projected pooled output
        return {"context": torch.cat(states, dim=-1),
                "added": {"text_embeds": pooled, "time_ids": sizes.to(pooled.device, pooled.dtype)}}

    def predict(self, noisy, timesteps, condition):
        return self.unet(noisy, timesteps, encoder_hidden_states=condition["context"],
                         added_cond_kwargs=condition["added"]).sample


def checkpoint_blocks(unet: torch.nn.Module, targets: list) -> int:
    """Gradient checkpointing for a UNet without its own: recompute each block holding attention
    (``targets``: the ``lora_inject.AttentionTarget``s of the run)."""
    parents = sorted({t.path.rsplit(".", 1)[0] for t in targets if "." in t.path})
    for path in parents:
        block = unet.get_submodule(path)
        block.forward = checkpointed(block.forward)
    return len(parents)
