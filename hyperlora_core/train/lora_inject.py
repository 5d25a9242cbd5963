"""Per-sample LoRA inside a frozen UNet's attention projections.

Training a hyper-network means every sample of a batch carries its own LoRA (its own face), so
the update cannot be merged into the UNet's weights. Each targeted ``nn.Linear`` is wrapped so that

    y = x @ W^T + b + sum over LoRAs of  scale[n] * ((x[n] @ down[n]) @ up[n])

with ``down`` (B, in, r) and ``up`` (B, r, out) per sample, computed with two batched matrix
products. The factors are handed to the wrapped layers before each UNet call (:class:`LoRAState`),
so the UNet's own forward and its attention processors are used unchanged.

Targets come from the UNet itself: every module named ``...attn<N>`` that has ``to_q``, ``to_k``,
``to_v`` and ``to_out[0]`` linear layers (the diffusers attention layout), so any UNet with such
attention layers - SDXL, SD 1.x, a test-sized model - is served by the same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..model.checkpoint import ModuleSpec
from ..constants import KOHYA_SUFFIX, PROJECTIONS
from ..errors import CheckpointError

_ATTENTION_NAME = re.compile(r"(^|.*\.)attn\d+$")
# Release order of the v1 JSON: down blocks, then the mid block, then up blocks.
_BLOCK_ORDER = ("down_blocks", "mid_block", "up_blocks")


@dataclass(frozen=True)
class AttentionTarget:
    """One attention module of the UNet that gets a LoRA on its four projections."""

    path: str  # module path in the UNet, e.g. down_blocks.1.attentions.0.transformer_blocks.0.attn1
    spec: ModuleSpec  # kohya name, hidden size and cross-attention width, as in hyper_lora_modules.json


def kohya_module_name(path: str) -> str:
    """``down_blocks.1.attentions.0.transformer_blocks.0.attn1`` -> ``lora_unet_down_blocks_1_..._attn1``."""
    return "lora_unet_" + path.replace(".", "_")


def _projection(module: nn.Module, projection: str) -> nn.Module | None:
    layer = getattr(module, projection, None)
    if projection == "to_out":
        layer = layer[0] if isinstance(layer, (nn.ModuleList, nn.Sequential)) and len(layer) else None
    if isinstance(layer, PerSampleLoRALinear):
        layer = layer.base
    return layer if isinstance(layer, nn.Linear) else None


def _block_rank(path: str) -> int:
    head = path.split(".", 1)[0]
    return _BLOCK_ORDER.index(head) if head in _BLOCK_ORDER else len(_BLOCK_ORDER)


def find_attention_modules(unet: nn.Module) -> list[AttentionTarget]:
    """Every attention module of ``unet`` in release order (down, mid, up; registration order within).

    The order only matters for a fresh checkpoint (the resampler's token groups follow it); a warm
    start takes its order from the release's JSON.
    """
    found = []
    for path, module in unet.named_modules():
        if not _ATTENTION_NAME.match(path):
            continue
        layers = {p: _projection(module, p) for p in PROJECTIONS}
        if any(layer is None for layer in layers.values()):
            continue
        hidden = layers["to_q"].in_features
        context = layers["to_k"].in_features
        if layers["to_out"].out_features != hidden or layers["to_q"].out_features != layers["to_out"].in_features:
            continue  # not a square attention block; the release format cannot describe it
        is_self = path.endswith("attn1") and context == hidden
        found.append(AttentionTarget(path, ModuleSpec(kohya_module_name(path), hidden, None if is_self else context)))
    found.sort(key=lambda t: _block_rank(t.path))  # stable: registration order inside each part
    return found


def match_release_modules(unet_targets: list[AttentionTarget], modules: list[ModuleSpec],
                          source: str) -> list[AttentionTarget]:
    """The UNet's targets in the order of a release's JSON; an error names what does not fit."""
    by_name = {t.spec.name: t for t in unet_targets}
    missing = [m.name for m in modules if m.name not in by_name]
    if missing:
        example = unet_targets[0].spec.name if unet_targets else "none"
        raise CheckpointError(
            f"{source} lists {len(missing)} attention module(s) that the base UNet does not have, e.g. "
            f"{', '.join(missing[:3])}. The checkpoint was made for another base model "
            f"(this UNet has {len(unet_targets)} attention modules, e.g. {example})."
        )
    wrong = [(m, by_name[m.name].spec) for m in modules
             if (m.hidden_size, m.in_features("to_k")) != (by_name[m.name].spec.hidden_size,
                                                            by_name[m.name].spec.in_features("to_k"))]
    if wrong:
        m, found = wrong[0]
        raise CheckpointError(
            f"{source}: module {m.name} has hidden size {m.hidden_size} and context width {m.in_features('to_k')}, "
            f"but the base UNet's has {found.hidden_size} and {found.in_features('to_k')}. The checkpoint "
            "was made for another base model."
        )
    return [AttentionTarget(by_name[m.name].path, m) for m in modules]


@dataclass
class LoRAState:
    """The per-sample factors the wrapped layers apply on the next UNet call.

    ``factors[layer_name]`` is a list of (down (B, in, r), up (B, r, out), scale (B,)), one entry per
    active LoRA kind (ID and Base are applied side by side; their effects add).
    """

    factors: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = field(default_factory=dict)

    def clear(self) -> None:
        self.factors = {}


class PerSampleLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus the batched low-rank updates of :class:`LoRAState`."""

    def __init__(self, base: nn.Linear, name: str, state: LoRAState):
        super().__init__()
        self.base = base
        self.name = name
        self.__dict__["_state"] = state  # shared, not a submodule

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:  # extra args: old diffusers' `scale`
        out = self.base(x)
        for down, up, scale in self._state.factors.get(self.name, ()):
            batch = x.shape[0]
            if down.shape[0] != batch:
                if down.shape[0] != 1:
                    raise RuntimeError(
                        f"{self.name}: the LoRA holds {down.shape[0]} samples but the layer sees a batch of {batch}."
                    )
                down, up, scale = down.expand(batch, -1, -1), up.expand(batch, -1, -1), scale.expand(batch)
            flat = x.reshape(batch, -1, x.shape[-1])
            low = torch.bmm(flat, down.to(flat.dtype))
            update = torch.bmm(low, up.to(flat.dtype)) * scale.to(flat.dtype).view(batch, 1, 1)
            out = out + update.view(out.shape)
        return out


def layer_name(module: ModuleSpec, projection: str) -> str:
    """The kohya name of one projection's LoRA, e.g. ``lora_unet_..._attn1_to_out_0``."""
    return f"{module.name}_{KOHYA_SUFFIX[projection]}"


def inject(unet: nn.Module, targets: list[AttentionTarget], state: LoRAState) -> list[str]:
    """Wrap the four projections of each target in place; return the wrapped layers' names."""
    modules = dict(unet.named_modules())
    names = []
    for target in targets:
        attention = modules[target.path]
        for projection in PROJECTIONS:
            layer = _projection(attention, projection)
            name = layer_name(target.spec, projection)
            wrapped = PerSampleLoRALinear(layer, name, state)
            if projection == "to_out":
                attention.to_out[0] = wrapped
            else:
                setattr(attention, projection, wrapped)
            names.append(name)
    return names


def remove(unet: nn.Module) -> None:
    """Put the original linear layers back."""
    for module in list(unet.modules()):
        for projection in PROJECTIONS:
            holder = getattr(module, projection, None)
            if projection == "to_out" and isinstance(holder, (nn.ModuleList, nn.Sequential)) and len(holder):
                if isinstance(holder[0], PerSampleLoRALinear):
                    holder[0] = holder[0].base
            elif isinstance(holder, PerSampleLoRALinear):
                setattr(module, projection, holder.base)
