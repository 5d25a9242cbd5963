"""ComfyUI's IMAGE and MASK tensors <-> the numpy arrays hyperlora_core works on."""

from __future__ import annotations

import numpy as np
import torch

from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.files.images import float_to_uint8


def images_to_uint8(image: torch.Tensor) -> list[np.ndarray]:
    """ComfyUI IMAGE (B, H, W, C) floats in 0..1 -> list of RGB uint8 arrays, truncated as the
    reference converts them (x * 255 in float32, cast; spec section 8)."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        raise HyperLoRAError(f"Expected an IMAGE batch (B, H, W, C), got {getattr(image, 'shape', type(image))}.")
    arr = float_to_uint8(image[..., :3].detach().cpu().float().numpy())
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return [np.ascontiguousarray(a) for a in arr]


def uint8_to_image(photos: list[np.ndarray], size: int | None = None) -> torch.Tensor:
    """RGB uint8 arrays -> ComfyUI IMAGE batch; resized (bicubic) to size x size when given."""
    from PIL import Image

    out = []
    for photo in photos:
        if size is not None and photo.shape[:2] != (size, size):
            photo = np.asarray(Image.fromarray(photo).resize((size, size), Image.BICUBIC))
        out.append(torch.from_numpy(np.ascontiguousarray(photo)).float() / 255.0)
    return torch.stack(out)


def image_to_float(image: torch.Tensor, what: str) -> np.ndarray:
    """An IMAGE (or a single picture) -> float32 RGB array (B, H, W, 3) in 0..1, as face swap works on it."""
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
        raise HyperLoRAError(f"'{what}' should be an IMAGE (batch, height, width, channels); got "
                             f"{getattr(image, 'shape', type(image).__name__)}.")
    image = image if image.dim() == 4 else image[None]
    return image[..., :3].detach().cpu().float().numpy()


def mask_to_float(mask: torch.Tensor) -> np.ndarray:
    """A MASK (B, H, W) or (H, W) -> float32 array of the same shape."""
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3):
        raise HyperLoRAError(f"'mask' should be a MASK (batch, height, width); got {getattr(mask, 'shape', type(mask).__name__)}.")
    return mask.detach().cpu().float().numpy()
