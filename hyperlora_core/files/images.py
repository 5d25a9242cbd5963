"""Turn the photos a user gives into RGB uint8 arrays, whatever form they come in.

Accepted: ComfyUI IMAGE tensors (N, H, W, C) or (H, W, C) of floats in 0..1, numpy arrays (uint8,
uint16 or floats in 0..1; H x W, H x W x 1/3/4, or a batch N x H x W x C), PIL images of any mode,
and image files (JPEG with its EXIF rotation applied, PNG including 16-bit and palette, WebP, ...).
Transparency is composited onto white, as image viewers show it. Floats become 8-bit by
truncation, as the reference converts them (:func:`float_to_uint8`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError
from .sniff import path_problem

MIN_SIDE = 64


def to_rgb_list(images: Any) -> list[np.ndarray]:
    """Split ``images`` into photos, each a contiguous RGB uint8 array of shape (H, W, 3).

    ``images`` is one photo (tensor, array, PIL image, path) or a batch: a 4-D tensor/array or a
    list/tuple of photos. Raises :class:`InputError` for anything that is not a usable photo.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError("No photos were given: pass at least one photo of the person.")
        photos: list[np.ndarray] = []
        for item in images:
            photos.extend(_split(item, len(photos)))
    else:
        photos = _split(images, 0)
    if not photos:
        raise InputError("No photos were given: the image batch is empty.")
    return photos


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), upright as its EXIF orientation says."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InputError(f"Image file not found: {path}")
    problem = path_problem(path)
    if problem is not None:
        raise InputError(f"The photo {path} {problem}; give the path of an image file (JPEG, PNG, WebP, ...).")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as error:
        raise InputError(
            f"{path} declares more pixels than the safety limit allows ({error}); it is refused because decoding "
            "it could exhaust the memory (a 'decompression bomb'). "
            "It was not loaded. Resize the photo to a few megapixels: the face crop needs only about 1024 px."
        ) from None
    except UnidentifiedImageError as error:
        raise InputError(f"{path} is not an image that can be read ({error}); use a JPEG, PNG or WebP photo.") from error
    except (OSError, ValueError, SyntaxError, MemoryError) as error:
        raise InputError(f"{path} is not an image that can be read: it is damaged or truncated ({error}); "
                         "export the photo again as JPEG or PNG.") from error
    return _checked(pil_to_rgb(image), str(path))


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to RGB uint8, handling 16-bit and transparency."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image).astype(np.float64)
        # Pillow opens 16-bit greyscale PNGs as I;16 (or I); their range is 0..65535.
        values = values / 257.0 if mode != "I" or values.max(initial=0) > 255 else values
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        scale = 255.0 if grey.max(initial=0) <= 1.0 else 1.0
        grey = np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB")).copy()
    return np.asarray(image.convert("RGB")).copy()


def _split(item: Any, start: int) -> list[np.ndarray]:
    """One photo or a batch, as RGB uint8 arrays; ``start`` numbers them in messages."""
    if isinstance(item, (str, os.PathLike)):
        return [load_image(item)]
    if isinstance(item, Image.Image):
        return [_checked(pil_to_rgb(ImageOps.exif_transpose(item)), f"photo {start}")]
    if type(item).__module__.split(".")[0] == "torch":
        item = item.detach().cpu().float().numpy()
    if not isinstance(item, np.ndarray):
        raise InputError(
            f"Photo {start} is a {type(item).__name__}, not an image: give an IMAGE tensor, a "
            "numpy array, a PIL image or the path of an image file."
        )
    if item.ndim == 4:
        return [_checked(_array_to_rgb(p, start + i), f"photo {start + i}") for i, p in enumerate(item)]
    return [_checked(_array_to_rgb(item, start), f"photo {start}")]


def _array_to_rgb(array: np.ndarray, index: int) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(
            f"Photo {index} has shape {tuple(array.shape)}; expected height x width x channels "
            "with 1, 3 or 4 channels (ComfyUI IMAGE layout)."
        )
    if array.dtype == np.uint8:
        values = array
    elif array.dtype == np.uint16:
        values = np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError(f"Photo {index} contains NaN or infinite values.")
        low, high = float(array.min(initial=0)), float(array.max(initial=0))
        if low < -0.01 or high > 1.01:
            raise InputError(
                f"Photo {index} has float values from {low:.3g} to {high:.3g}; float images must "
                "be in 0..1 (as ComfyUI IMAGE tensors are)."
            )
        values = float_to_uint8(array)
    else:
        raise InputError(f"Photo {index} has pixel type {array.dtype}; use uint8, uint16 or float.")
    channels = values.shape[2]
    if channels == 1:
        values = np.repeat(values, 3, axis=2)
    elif channels == 4:
        alpha = values[:, :, 3:4].astype(np.float32) / 255.0
        rgb = values[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        values = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(values)


def float_to_uint8(array: np.ndarray) -> np.ndarray:
    """Floats in 0..1 -> uint8 as the reference converts a ComfyUI IMAGE (spec section 8): clipped,
    times 255 in float32, TRUNCATED (cast), not rounded. For LoadImage's output, k / 255 in
    float32, both give k back; for pixels another node resized they can differ by one level."""
    return (np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)


def _checked(rgb: np.ndarray, name: str) -> np.ndarray:
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputError(
            f"{name[0].upper()}{name[1:]} is {width}x{height} pixels: too small to hold a face "
            f"(at least {MIN_SIDE}x{MIN_SIDE} needed). Use a larger photo."
        )
    return rgb
