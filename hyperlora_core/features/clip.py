"""OpenAI CLIP ViT-L/14 vision tower outside ComfyUI, through ``transformers``.

HyperLoRA reads the tower's penultimate hidden states (``hidden_states[-2]``: the output of the 23rd
of 24 layers, before the final layer norm and projection), (N, 257, 1024) per batch of face crops;
inside ComfyUI the core "Load CLIP Vision" node gives the same tokens.

Accepted files:

* a Hugging Face folder: ``config.json`` (a ``CLIPVisionConfig``, or the full ``CLIPConfig`` of
  ``openai/clip-vit-large-patch14``, whose ``vision_config`` is used) and ``model.safetensors``;
* a single ``.safetensors`` file such as ComfyUI's ``models/clip_vision/clip-vit-large-patch14.safetensors``
  (OpenAI's full CLIP file: only its ``vision_model.*`` tensors are read); its configuration comes
  from a ``config.json`` beside it or given, else from the tensor shapes (OpenAI CLIP: quick GELU,
  heads of 64).

Keys are matched with or without the ``vision_model.`` prefix, so files written by transformers 4
(prefixed, as OpenAI's) and 5 (unprefixed) both load.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from ..constants import CLIP_SIZE, CLIP_TOKENS, CLIP_URL, CLIP_WIDTH
from ..errors import ClipModelError, InputError
from .clip_pixels import clip_pixel_values
from ..files.sniff import file_problem, path_problem, unsupported_dtype

logger = logging.getLogger(__name__)

PREFIX = "vision_model."
HEAD_WIDTH = 64
# Where `python -m hyperlora_core download` puts the tower, in the order they are tried.
HF_FOLDER = ("hyper_lora", "clip_vit", "clip_vit_large_14")
VISION_FILE = ("clip_vision", "clip-vit-large-patch14.safetensors")




def find_clip_vision(models_dir: str | os.PathLike) -> Path | None:
    """The CLIP ViT-L/14 of a ComfyUI models folder: the Hugging Face folder if it has weights,
    else the single file in ``clip_vision/``; None when neither is there."""
    models_dir = Path(models_dir)
    folder = models_dir.joinpath(*HF_FOLDER)
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    single = models_dir.joinpath(*VISION_FILE)
    if single.is_file():
        return single
    return None


def _read_config(path: Path) -> dict[str, Any]:
    problem = path_problem(path)
    if problem is not None:
        raise ClipModelError(f"The CLIP config {path} {problem}. Use the config.json of {CLIP_URL}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ClipModelError(f"{path} is not a readable CLIP config.json ({type(exc).__name__}). "
                             f"Use the config.json of {CLIP_URL}.") from exc
    if not isinstance(data, dict):
        raise ClipModelError(f"{path} is not a CLIP config.json (it holds a JSON {type(data).__name__}, not an "
                             f"object). Use the config.json of {CLIP_URL}.")
    if data.get("model_type") == "clip" or "vision_config" in data or "vision_config_dict" in data:
        # The full CLIPConfig of openai/clip-vit-large-patch14 (older files: vision_config_dict).
        data = data.get("vision_config") or data.get("vision_config_dict") or {}
    if not isinstance(data, dict):
        raise ClipModelError(f"{path}: vision_config is not a JSON object. Use the config.json of {CLIP_URL}.")
    return data


def _infer_config(shapes: dict[str, tuple[int, ...]], source: Path) -> dict[str, Any]:
    """A CLIPVisionConfig from the tensor shapes of an OpenAI-style CLIP vision file."""
    try:
        patch = shapes["embeddings.patch_embedding.weight"]
        positions = shapes["embeddings.position_embedding.weight"][0]
        fc1 = shapes["encoder.layers.0.mlp.fc1.weight"]
    except KeyError as exc:
        raise ClipModelError(
            f"{source} is not a CLIP vision model in the Hugging Face layout (no {exc.args[0]} tensor). "
            f"Use OpenAI CLIP ViT-L/14 from {CLIP_URL} (model.safetensors)."
        ) from None
    layers = {int(m.group(1)) for key in shapes if (m := re.match(r"encoder\.layers\.(\d+)\.", key))}
    hidden = patch[0]
    grid = round((positions - 1) ** 0.5)
    config = {
        "hidden_size": hidden,
        "intermediate_size": fc1[0],
        "num_hidden_layers": max(layers) + 1,
        "num_attention_heads": max(1, hidden // HEAD_WIDTH),
        "num_channels": patch[1],
        "patch_size": patch[2],
        "image_size": grid * patch[2],
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
    }
    if "visual_projection.weight" in shapes:
        config["projection_dim"] = shapes["visual_projection.weight"][0]
    return config


class ClipVisionEncoder:
    """A loaded CLIP vision tower that turns face crops into HyperLoRA's CLIP tokens."""

    def __init__(self, model: torch.nn.Module, source: Path, device: torch.device, dtype: torch.dtype):
        self.model = model
        self.source = source
        self.device = device
        self.dtype = dtype

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, config: str | os.PathLike | None = None) -> "ClipVisionEncoder":
        """Load a Hugging Face folder or a single ``.safetensors`` file (see the module docstring)."""
        from safetensors import SafetensorError, safe_open

        try:
            from transformers import CLIPVisionConfig, CLIPVisionModel
        except ImportError as exc:
            raise ClipModelError(
                "The command line needs the 'transformers' package for CLIP: pip install transformers"
            ) from exc

        path = Path(path).expanduser()
        if path.is_dir():
            weights = path / "model.safetensors"
            config_path = Path(config) if config else path / "config.json"
            if not weights.is_file():
                raise ClipModelError(
                    f"The CLIP folder {path} has no model.safetensors; put OpenAI CLIP ViT-L/14's "
                    f"model.safetensors ({CLIP_URL}) there, or run: python -m hyperlora_core download"
                )
        elif path.is_file():
            weights = path
            beside = path.with_name("config.json")
            config_path = Path(config) if config else (beside if beside.is_file() else None)
        else:
            raise ClipModelError(
                f"CLIP model not found: {path}. Get OpenAI CLIP ViT-L/14 with "
                f"'python -m hyperlora_core download' or from {CLIP_URL}."
            )

        get_it = (f"It was not loaded. Get OpenAI CLIP ViT-L/14's model.safetensors from {CLIP_URL} "
                  "(or run: python -m hyperlora_core download).")
        problem = file_problem(weights)
        if problem is not None:
            raise ClipModelError(f"The CLIP file {weights} is not a valid .safetensors file: it {problem}. {get_it}")
        try:
            handle = safe_open(str(weights), framework="pt")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ClipModelError(f"{weights} is not a readable .safetensors file ({exc}); it may be truncated. "
                                 f"{get_it}") from exc
        with handle:
            # Only the vision tower: the text tower of a full CLIP file is never read.
            names = {key.removeprefix(PREFIX): key for key in handle.keys()
                     if key.startswith(PREFIX) or key.startswith(("embeddings.", "encoder.", "pre_layrnorm.",
                                                                   "post_layernorm."))}
            if "visual_projection.weight" in handle.keys():
                names["visual_projection.weight"] = "visual_projection.weight"
            shapes = {short: tuple(handle.get_slice(key).get_shape()) for short, key in names.items()}
            bad = unsupported_dtype({key: handle.get_slice(key).get_dtype() for key in names.values()})
            if bad is not None:
                raise ClipModelError(f"{weights}: tensor {bad[0]!r} is stored as {bad[1]}, but CLIP weights must be "
                                     f"float16, bfloat16 or float32 (a quantised file does not work). {get_it}")
            settings = _read_config(config_path) if config_path is not None else _infer_config(shapes, weights)
            width = settings.get("hidden_size")
            if width != CLIP_WIDTH:
                raise ClipModelError(
                    f"{weights} is a CLIP vision model of width {width}, but HyperLoRA needs OpenAI CLIP "
                    f"ViT-L/14 (width {CLIP_WIDTH}); ViT-H, ViT-bigG and SigLIP do not fit. Get it from {CLIP_URL}."
                )
            allowed = set(CLIPVisionConfig().to_dict())
            vision_config = CLIPVisionConfig(**{k: v for k, v in settings.items() if k in allowed})
            model = CLIPVisionModel(vision_config)
            own = model.state_dict()
            own_prefixed = any(k.startswith(PREFIX) for k in own)
            state = {}
            for short, key in names.items():
                target = PREFIX + short if own_prefixed else short
                if target in own:
                    state[target] = handle.get_tensor(key)
        missing = [k for k in own if k not in state and not k.endswith("position_ids")]
        if missing:
            raise ClipModelError(
                f"{weights} lacks {len(missing)} tensors of the CLIP vision tower (e.g. {missing[0]}); "
                f"it is not a complete CLIP ViT-L/14. Get model.safetensors from {CLIP_URL}."
            )
        try:
            model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise ClipModelError(f"{weights} does not match its configuration ({str(exc).splitlines()[0]}).") from exc
        device = torch.device(device)
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        tokens = (vision_config.image_size // vision_config.patch_size) ** 2 + 1
        if tokens != CLIP_TOKENS or vision_config.image_size != CLIP_SIZE:
            raise ClipModelError(
                f"{weights} gives {tokens} tokens for {vision_config.image_size}px images, but HyperLoRA needs "
                f"OpenAI CLIP ViT-L/14 at {CLIP_SIZE}px ({CLIP_TOKENS} tokens); the 336px model does not fit."
            )
        logger.info("Loaded CLIP vision %s: %d layers, %s on %s", weights, vision_config.num_hidden_layers,
                    str(dtype).removeprefix("torch."), device)
        return cls(model, weights, device, dtype)

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Preprocessed images (N, 3, 224, 224) -> penultimate hidden states (N, 257, 1024), float32 on the CPU."""
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, CLIP_SIZE, CLIP_SIZE):
            raise InputError(
                f"CLIP pixel values must have shape (N, 3, {CLIP_SIZE}, {CLIP_SIZE}), got {list(pixel_values.shape)}."
            )
        out = self.model(pixel_values=pixel_values.to(self.device, self.dtype), output_hidden_states=True)
        return out.hidden_states[-2].float().cpu()

    def encode_crops(self, crops: Sequence[Any], batch_size: int = 4) -> torch.Tensor:
        """Square RGB uint8 face crops -> CLIP tokens (N, 257, 1024), with OpenAI's preprocessing."""
        if not crops:
            raise InputError("No face crops to encode.")
        parts = [self.encode(clip_pixel_values(crops[i : i + batch_size])) for i in range(0, len(crops), batch_size)]
        return torch.cat(parts)
