"""Checks that weights hold only finite numbers.

A damaged file whose header is still valid loads like a good one; NaN or infinite weights then
turn every generated LoRA into NaN and the user gets black images without a word. These checks
find that at load (the small networks), when a LoRA is made (one reduction per basis group) and
before a LoRA is saved or applied.
"""

from __future__ import annotations

import torch
from torch import nn

from .constants import HF_URL
from .errors import CheckpointError, HyperLoRAError


def all_finite(tensor: torch.Tensor) -> bool:
    """True when a tensor holds no NaN and no infinity.

    One min/max pass without temporaries: aminmax propagates NaN, and an infinity is the min or the
    max. `torch.isfinite(t).all()` is four element-wise passes (==, abs, !=, *), each writing a
    temporary the size of the tensor, then the `all`: on the CPU it took most of the extra time of
    loading a checkpoint (docs/speed.md).
    """
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    lo, hi = torch.aminmax(tensor)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def non_finite_tensor(tensors) -> str | None:
    """The name of the first tensor holding NaN or an infinity, or None; ``tensors`` is (name, tensor) pairs."""
    for name, tensor in tensors:
        if not all_finite(tensor):
            return name
    return None


def check_module_finite(module: nn.Module, path, prefix: str = "") -> None:
    """Every parameter and buffer of a network read from ``path`` must be finite; ``prefix`` is the part of
    the module's names that the file's keys lack."""
    bad = non_finite_tensor((k.removeprefix(prefix), v) for k, v in module.state_dict().items())
    if bad is not None:
        raise CheckpointError(
            f"{path}: tensor {bad!r} holds NaN or infinite values, so the file is damaged (its header is intact). "
            f"It was not used. Download the file again from {HF_URL}."
        )


def check_lora_finite(lora: dict, source: str = "", what: str = "LoRA") -> None:
    """Refuse a LoRA with NaN or infinite weights: it would draw black or noisy images."""
    bad = non_finite_tensor((k, v) for k, v in lora.items() if isinstance(v, torch.Tensor))
    if bad is not None:
        origin = f" (made from the checkpoint {source!r})" if source else ""
        raise HyperLoRAError(
            f"The {what}{origin} holds NaN or infinite values (first in {bad!r}); it would give black or noisy "
            "images, so it was not used. Generate it again; if that repeats, the HyperLoRA checkpoint is damaged: "
            f"download it again from {HF_URL}."
        )
