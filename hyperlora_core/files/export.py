"""Writing a generated LoRA as a kohya `.safetensors` file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save

from ..constants import TRIGGER_WORDS
from .atomic import write_atomic
from ..errors import HyperLoRAError
from ..finite import check_lora_finite


def lora_metadata(lora: dict[str, torch.Tensor], source: str = "", num_photos: int | None = None,
                  kind: str = "id", extra: dict[str, object] | None = None) -> dict[str, str]:
    """The metadata kohya-style tools read, plus where the LoRA came from and its trigger words."""
    downs = [t for k, t in lora.items() if k.endswith(".lora_down.weight")]
    rank = downs[0].shape[0] if downs else 0
    alphas = [t for k, t in lora.items() if k.endswith(".alpha")]
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(float(alphas[0])) if alphas else str(rank),
        "ss_base_model_version": "sdxl_base_v1-0",
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        "modelspec.trigger_phrase": TRIGGER_WORDS.strip(),
        "hyperlora.kind": kind,
        "hyperlora.trigger_words": TRIGGER_WORDS,
        "hyperlora.usage": f"Start the prompt with '{TRIGGER_WORDS}'; strength 0.75-0.9; CLIP skip -2.",
    }
    if source:
        meta["hyperlora.source_checkpoint"] = source
    if num_photos is not None:
        meta["hyperlora.num_photos"] = str(num_photos)
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    return meta


def write_new_file(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to a file that must not exist yet; the file appears whole or not at all."""
    return write_atomic(path, data, overwrite=False)


def save_lora(lora: dict[str, torch.Tensor], path: str | os.PathLike,
              metadata: dict[str, str] | None = None) -> Path:
    """Write a LoRA dict as `.safetensors`; refuses to overwrite an existing file."""
    if not lora:
        raise HyperLoRAError("The LoRA to save is empty.")
    bad = [k for k, v in lora.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise HyperLoRAError(f"The LoRA to save holds {type(lora[bad[0]]).__name__} under {bad[0]!r}, not a tensor: "
                             "save the LoRA from 'Generate HyperLoRA' (or `HyperLoRA.generate_id_lora`).")
    check_lora_finite(lora, source=(metadata or {}).get("hyperlora.source_checkpoint", ""))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in lora.items()}
    meta = metadata if metadata is not None else lora_metadata(tensors)
    return write_new_file(path, save(tensors, metadata={k: str(v) for k, v in meta.items()}))
