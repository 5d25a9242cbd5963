"""Regions of a picture for several identities (an identity's strength over the steps is in ``schedule``).

Plain torch, no ComfyUI. Masks are float tensors of shape (H, W) with values in 0..1 (1 = the region).

- Layouts (`layout_masks`): left | right, thirds, top | bottom, a 2 x 2 grid, or boxes given as
  fractions of the picture, optionally feathered. The fixed layouts are partitions: their hard masks
  add up to 1 at every pixel, and feathering (a blur, which is linear and keeps the sum) keeps it so.
- `fit_mask`: a mask brought to the latent's size (area averaging when shrinking, bilinear otherwise).
- `outside_mask`: what no region covers, 1 - sum of the regions clipped to 0..1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import InputError

LAYOUTS = {
    "left | right": [(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)],
    "left | middle | right": [(0.0, 0.0, 1 / 3, 1.0), (1 / 3, 0.0, 2 / 3, 1.0), (2 / 3, 0.0, 1.0, 1.0)],
    "top | bottom": [(0.0, 0.0, 1.0, 0.5), (0.0, 0.5, 1.0, 1.0)],
    "2 x 2 grid": [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 0.5, 1.0, 1.0)],
}
BOXES = "boxes"
MAX_REGIONS = 4
EMPTY_BELOW = 1e-3  # a mask whose largest value is below this covers nothing


def parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """'x0 y0 x1 y1; x0 y0 x1 y1' in fractions of the width and height (commas also separate numbers)."""
    boxes = []
    for part in (p.strip() for p in text.replace("\n", ";").split(";")):
        if not part:
            continue
        try:
            numbers = [float(v) for v in part.replace(",", " ").split()]
        except ValueError:
            numbers = []
        if len(numbers) != 4:
            raise InputError(
                f"boxes: {part!r} is not a box. Write each box as four fractions 'x0 y0 x1 y1' "
                "(left, top, right, bottom, 0..1), boxes separated by ';', e.g. '0 0 0.5 1; 0.5 0 1 1'.")
        x0, y0, x1, y1 = numbers
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise InputError(
                f"boxes: {part!r} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
                "(fractions of the picture, left/top first).")
        boxes.append((x0, y0, x1, y1))
    if not boxes:
        raise InputError("boxes: no box given. Write e.g. '0 0 0.5 1; 0.5 0 1 1' for two halves.")
    if len(boxes) > MAX_REGIONS:
        raise InputError(f"boxes: {len(boxes)} boxes given, at most {MAX_REGIONS} people are supported.")
    return boxes


def box_mask(box: tuple[float, float, float, float], height: int, width: int) -> torch.Tensor:
    """A hard mask of the pixels whose centres lie in the box (fractions of the picture)."""
    x0, y0, x1, y1 = box
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    inside_x = (xs >= x0) & (xs < x1) if x1 < 1.0 else xs >= x0
    inside_y = (ys >= y0) & (ys < y1) if y1 < 1.0 else ys >= y0
    return (inside_y[:, None] & inside_x[None, :]).float()


def feather(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """Soften a mask's edges over about `pixels` pixels with a Gaussian blur (edges replicated).

    Linear, so masks that add up to 1 still do after feathering."""
    if pixels <= 0:
        return mask
    sigma = pixels / 2.0
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = mask[None, None].float()
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x[0, 0].clamp(0.0, 1.0)


def layout_masks(layout: str, height: int, width: int, feather_pixels: float = 0.0,
                 boxes: str = "") -> list[torch.Tensor]:
    """The region masks of a layout, in reading order (left to right, top to bottom)."""
    if height < 1 or width < 1:
        raise InputError(f"width and height must be at least 1 pixel (got {width} x {height}).")
    if feather_pixels < 0:
        raise InputError(f"feather must be 0 or more pixels (got {feather_pixels}).")
    if layout == BOXES:
        rects = parse_boxes(boxes)
    elif layout in LAYOUTS:
        rects = LAYOUTS[layout]
    else:
        raise InputError(f"layout {layout!r} is unknown; choose one of {', '.join([*LAYOUTS, BOXES])}.")
    masks = [feather(box_mask(r, height, width), feather_pixels) for r in rects]
    for i, m in enumerate(masks):
        if float(m.max()) < EMPTY_BELOW:
            raise InputError(f"region {i + 1} of the layout covers no pixel at {width} x {height}; "
                             "make its box larger or the picture bigger.")
    return masks


def as_single_mask(mask: torch.Tensor, name: str) -> torch.Tensor:
    """A ComfyUI MASK ((H, W) or (1, H, W)) as (H, W); a batch of several masks is refused."""
    if mask.ndim == 3:
        if mask.shape[0] != 1:
            raise InputError(
                f"{name} holds {mask.shape[0]} masks; give one mask per person (connect region_1, "
                "region_2, ... of 'HyperLoRA Region Layout', or one mask each).")
        mask = mask[0]
    if mask.ndim != 2:
        raise InputError(f"{name} has shape {tuple(mask.shape)}; a MASK of height x width is expected.")
    return mask.float()


def fit_mask(mask: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, bool]:
    """The (H, W) mask at height x width, and whether it had to be resized."""
    if tuple(mask.shape) == (height, width):
        return mask.clamp(0.0, 1.0), False
    x = mask[None, None].float()
    if mask.shape[0] >= height and mask.shape[1] >= width:
        x = F.interpolate(x, size=(height, width), mode="area")
    else:
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x[0, 0].clamp(0.0, 1.0), True


def same_aspect(shape_a: tuple[int, int], shape_b: tuple[int, int], tolerance: float = 0.02) -> bool:
    (ha, wa), (hb, wb) = shape_a, shape_b
    return abs(wa / ha - wb / hb) <= tolerance * (wb / hb)


def is_empty(mask: torch.Tensor) -> bool:
    return float(mask.max()) < EMPTY_BELOW


def outside_mask(masks: list[torch.Tensor]) -> torch.Tensor:
    """The part of the picture no region covers (fully or partly): 1 - sum of regions, in 0..1."""
    total = torch.stack(masks).sum(dim=0)
    return (1.0 - total).clamp(0.0, 1.0)
