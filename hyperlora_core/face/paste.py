"""Paste re-drawn face crops back into the pictures they were cut from (see ``regions``).

Each crop is resized back to its square (area average when shrinking, bicubic when enlarging)
and blended into the picture at its original resolution through the feathered face mask:
``picture x (1 - mask) + crop x mask``. Where the mask is 0 the picture's pixels are kept as they
are, bit for bit; a crop that comes back exactly as it was cut leaves its square untouched (it was
not re-drawn, and resizing it there and back would only soften it).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .regions import FaceCrops, check_pictures, fingerprint, resize


def _size(array: np.ndarray) -> str:
    return f"{array.shape[-2]}x{array.shape[-3]}" if array.ndim >= 3 else f"{array.shape[-1]}x{array.shape[-2]}"


def check_paste(pictures: np.ndarray, info: FaceCrops, redrawn: np.ndarray, mask: np.ndarray | None) -> None:
    """InputError, naming the input and the fix, for anything that does not belong together."""
    height, width = info.picture_size
    batch = len(info.fingerprints)
    if pictures.shape[0] != batch or pictures.shape[1:3] != (height, width):
        raise InputError(
            f"The picture connected to 'image' is {pictures.shape[0]} x {_size(pictures)}, but the face crops "
            f"were cut from {batch} x {width}x{height}: connect the same IMAGE that went into 'Face Crop'."
        )
    for index, picture in enumerate(pictures):
        if fingerprint(picture) != info.fingerprints[index]:
            which = "The picture" if batch == 1 else f"Picture {index} of the batch"
            raise InputError(
                f"{which} connected to 'image' is not the one the face crops were cut from (same size, other "
                "pixels): a crop pasted into another picture lands on the wrong face. Connect the IMAGE that "
                "went into 'Face Crop'."
            )
    if redrawn.ndim != 4 or redrawn.shape[0] != len(info.regions):
        got = redrawn.shape[0] if redrawn.ndim == 4 else f"shape {tuple(redrawn.shape)}"
        raise InputError(
            f"'crops' holds {got} picture(s), but 'Face Crop' cut {len(info.regions)}: connect the decoded "
            "crops of that node (one per face, in its order)."
        )
    if redrawn.shape[1] != redrawn.shape[2]:
        raise InputError(
            f"The crops connected to 'crops' are {_size(redrawn)}, not square: the face crops were cut "
            f"{info.size}x{info.size}. Keep the crop's shape when re-drawing it."
        )
    if mask is not None and (mask.ndim != 3 or mask.shape[1:] != (height, width) or mask.shape[0] not in (1, batch)):
        raise InputError(
            f"The MASK connected to 'mask' is {' x '.join(map(str, mask.shape))}, but it must cover the picture: "
            f"{width}x{height} (one per picture, or one for all). Leave 'mask' empty to use the face mask."
        )


def paste_faces(
    pictures: np.ndarray, info: FaceCrops, redrawn: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """The pictures with the re-drawn crops blended in (float32 (B, H, W, 3)). ``mask``: an
    optional (B or 1, H, W) mask to blend with instead of each face's feathered mask."""
    pictures = check_pictures(pictures)
    redrawn = np.asarray(redrawn, dtype=np.float32)
    if redrawn.ndim == 4:
        redrawn = redrawn[..., :3]
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float32)
        mask = mask[None] if mask.ndim == 2 else mask
    check_paste(pictures, info, redrawn, mask)
    out = pictures.copy()
    for k, region in enumerate(info.regions):
        if region.empty or np.array_equal(redrawn[k], info.crops[k]):
            continue
        ys, xs = region.window()
        if mask is None:
            weight = info.square_masks[k]
        else:
            weight = np.clip(mask[region.picture if mask.shape[0] > 1 else 0, ys, xs], 0.0, 1.0)
        weight = weight[..., None]
        under = out[region.picture, ys, xs]
        piece = resize(redrawn[k], region.side)
        blended = under * (1.0 - weight) + piece * weight
        out[region.picture, ys, xs] = np.where(weight > 0, blended, under)
    return out
