"""Merging a LoRA into weights: W += strength * (alpha / r) * up @ down, in place.

No copy of a whole weight is made: on the GPU (or in float32) the update is one in-place `addmm_`
per layer; on a CPU holding half weights, rows are widened to float32 a block at a time, updated and
written back, since CPUs have no fast half arithmetic.
"""

from __future__ import annotations

import torch

ROW_BLOCK_BYTES = 16 * 2**20


def lora_layers(lora: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """kohya LoRA dict -> {layer name: (up, down, alpha / rank)}."""
    layers = {}
    for key, down in lora.items():
        if key.endswith(".lora_down.weight"):
            name = key[: -len(".lora_down.weight")]
            up = lora[f"{name}.lora_up.weight"]
            alpha = lora.get(f"{name}.alpha")
            rank = down.shape[0]
            layers[name] = (up, down, float(alpha) / rank if alpha is not None else 1.0)
    return layers


def merge_layer_(weight: torch.Tensor, up: torch.Tensor, down: torch.Tensor, scale: float) -> torch.Tensor:
    """weight (out, in) += scale * up (out, r) @ down (r, in), in place; returns weight."""
    up = up.to(weight.device)
    down = down.to(weight.device)
    if weight.device.type != "cpu" or weight.dtype == torch.float32:
        return weight.addmm_(up.to(weight.dtype), down.to(weight.dtype), alpha=scale)
    up32, down32 = up.float(), down.float()
    rows = max(1, ROW_BLOCK_BYTES // (4 * weight.shape[1]))
    for start in range(0, weight.shape[0], rows):
        block = weight[start:start + rows]
        block.copy_(torch.addmm(block.float(), up32[start:start + rows], down32, alpha=scale))
    return weight


def merge_lora_(weights: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], strength: float = 1.0) -> list[str]:
    """Merge every layer of `lora` into `weights` (layer name -> weight), in place.

    Returns the names merged; raises KeyError naming the first layer that has no weight.
    """
    merged = []
    for name, (up, down, scale) in lora_layers(lora).items():
        if name not in weights:
            raise KeyError(f"LoRA layer {name!r} has no matching weight")
        merge_layer_(weights[name], up, down, strength * scale)
        merged.append(name)
    return merged


def merge_layer_straightforward(weight: torch.Tensor, up: torch.Tensor, down: torch.Tensor, scale: float) -> torch.Tensor:
    """The usual way (ComfyUI's patching does this): a float32 copy, the update, a cast back."""
    temp = weight.float()
    temp += scale * (up.to(temp) @ down.to(temp))
    weight.copy_(temp.to(weight.dtype))
    return weight
