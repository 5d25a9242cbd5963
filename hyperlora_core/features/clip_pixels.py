"""OpenAI CLIP ViT-L/14 preprocessing of face crops: the one resize rule, shared by the command line
(:func:`clip_pixel_values`, for the tower in ``features.clip``) and the ComfyUI nodes (which resize
with :func:`clip_resize` and leave the normalisation to ComfyUI's CLIP vision model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from ..constants import CLIP_MEAN, CLIP_SIZE, CLIP_STD
from ..errors import InputError

if TYPE_CHECKING:
    import torch


def clip_resize(crop: Any) -> np.ndarray:
    """An RGB crop (uint8 array or PIL image) -> uint8 (224, 224, 3), as transformers' PIL-based
    ``CLIPImageProcessor`` resizes: shortest side to 224 with PIL bicubic (the long side to
    int(224 x long / short)), then the centre 224 x 224. A 224 x 224 crop is returned as it is."""
    image = crop.convert("RGB") if isinstance(crop, Image.Image) else Image.fromarray(np.asarray(crop, dtype=np.uint8))
    width, height = image.size
    if (width, height) != (CLIP_SIZE, CLIP_SIZE):
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(CLIP_SIZE * long / short)
        size = (CLIP_SIZE, new_long) if width <= height else (new_long, CLIP_SIZE)
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (size[0] - CLIP_SIZE) // 2, (size[1] - CLIP_SIZE) // 2
        image = image.crop((left, top, left + CLIP_SIZE, top + CLIP_SIZE))
    return np.asarray(image.convert("RGB"))


def clip_pixel_values(crops: Sequence[Any]) -> "torch.Tensor":
    """OpenAI CLIP ViT-L/14 preprocessing of RGB crops, as transformers' PIL-based
    ``CLIPImageProcessor`` does it.

    Shortest side resized to 224 with PIL bicubic (the long side to int(224 x long / short)),
    centre crop 224x224, scaled to 0..1, normalised with CLIP's mean and std. Returns float32
    (N, 3, 224, 224). For use outside ComfyUI (whose CLIP vision loader preprocesses itself).

    PIL on purpose: it is the processor of transformers 4.x, which the release was made with, so
    these are the pixels the weights were trained on. transformers 5 defaults to a torchvision
    processor whose pixels differ from these by up to 0.03.
    """
    import torch

    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    batch = []
    for crop in crops:
        array = (clip_resize(crop).astype(np.float64) * (1 / 255)).astype(np.float32)
        batch.append(((array - mean) / std).transpose(2, 0, 1))
    if not batch:
        raise InputError("clip_pixel_values needs at least one crop.")
    return torch.from_numpy(np.ascontiguousarray(np.stack(batch)))
