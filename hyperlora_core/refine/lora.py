"""The ID-LoRA being refined: its check, and its trainable copy.

The copy starts exactly from the given tensors (kept as float32 master weights; a float16, bfloat16
or float32 value survives the round trip unchanged, so an export before any step is bit for bit the
input). The extra rank ("rank relaxation") adds ``extra`` rows to each down factor (small random
values) and ``extra`` columns to each up factor (zeros): its product is zero at step 0. The exported
alpha is raised to ``alpha * (r + extra) / r`` so the kohya scale ``alpha / rank`` stays that of the
input and the old directions keep their weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import HyperLoRAError

SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
# HyperLoRA's ID-LoRA touches only the four projections of the UNet's attention layers.
ATTENTION_LAYER = re.compile(r"^lora_unet_.+_attn\d+_to_(q|k|v|out_0)$")
MAX_EXTRA_RANK = 64


class LoRAFormatError(HyperLoRAError):
    """The LoRA given to refine is not a HyperLoRA ID-LoRA (the message says what it is)."""


@dataclass(frozen=True)
class LayerShape:
    rank: int
    in_features: int
    out_features: int


def check_id_lora(lora: dict[str, torch.Tensor]) -> dict[str, LayerShape]:
    """Every layer of a HyperLoRA ID-LoRA (kohya layout: lora_down/lora_up/alpha on the UNet's attention
    projections, one rank) and its shape; anything else is refused with a message naming what was found."""
    if not isinstance(lora, dict) or not lora:
        raise LoRAFormatError("The LoRA to refine is empty: connect the id_lora output of 'Generate HyperLoRA' "
                              "(or a LoRA file it saved).")
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in lora.items():
        suffix = next((s for s in SUFFIXES if key.endswith(s)), None)
        if suffix is None or not isinstance(tensor, torch.Tensor):
            kind = "a LyCORIS/LoHa/LoKr LoRA" if re.search(r"\.(hada|lokr)_", key) else \
                "a DoRA" if key.endswith("dora_scale") else "not a kohya LoRA"
            raise LoRAFormatError(f"The LoRA to refine has the key {key!r}: it is {kind}, not a HyperLoRA ID-LoRA "
                                  "(lora_down/lora_up/alpha on the UNet's attention layers).")
        layers.setdefault(key[: -len(suffix)], {})[suffix] = tensor
    text = [name for name in layers if name.startswith("lora_te")]
    if text:
        raise LoRAFormatError(
            f"The LoRA to refine has {len(text)} text-encoder layers (e.g. {text[0]}): it is an ordinary LoRA, "
            "not a HyperLoRA ID-LoRA, which changes only the UNet's attention layers.")
    other = [name for name in layers if not ATTENTION_LAYER.match(name)]
    if other:
        raise LoRAFormatError(
            f"{len(other)} of the {len(layers)} layers of the LoRA to refine are not attention projections "
            f"(e.g. {other[0]}): it is an ordinary LoRA, not a HyperLoRA ID-LoRA (which has only "
            "..._attn1/attn2_to_q/k/v/out_0 layers, 560 for SDXL).")
    shapes: dict[str, LayerShape] = {}
    for name, parts in layers.items():
        missing = [s.lstrip(".") for s in SUFFIXES if s not in parts]
        if missing:
            raise LoRAFormatError(f"The layer {name} of the LoRA to refine lacks {', '.join(missing)}; the file is "
                                  "damaged or not a HyperLoRA ID-LoRA.")
        down, up = parts[".lora_down.weight"], parts[".lora_up.weight"]
        if down.dim() != 2 or up.dim() != 2 or down.shape[0] != up.shape[1] or parts[".alpha"].numel() != 1:
            raise LoRAFormatError(
                f"The layer {name} of the LoRA to refine has lora_down {tuple(down.shape)} and lora_up "
                f"{tuple(up.shape)}; a HyperLoRA ID-LoRA has 2-D factors of one rank (down (r, in), up (out, r)).")
        if not (torch.isfinite(down).all() and torch.isfinite(up).all() and torch.isfinite(parts[".alpha"]).all()):
            raise LoRAFormatError(f"The layer {name} of the LoRA to refine holds NaN or infinite values; "
                                  "generate the LoRA again.")
        shapes[name] = LayerShape(down.shape[0], down.shape[1], up.shape[0])
    ranks = sorted({s.rank for s in shapes.values()})
    if len(ranks) > 1:
        raise LoRAFormatError(f"The layers of the LoRA to refine have ranks {ranks}; a HyperLoRA ID-LoRA has "
                              "one rank (8 for v1).")
    return shapes


def _param_name(layer: str) -> str:
    return layer.replace(".", "__")


class RefinableLoRA(nn.Module):
    """Trainable float32 copy of an ID-LoRA (and its extra rank); exports kohya tensors again."""

    def __init__(self, lora: dict[str, torch.Tensor], extra_rank: int = 0, seed: int = 0,
                 device: torch.device | str = "cpu"):
        super().__init__()
        if not isinstance(extra_rank, int) or not 0 <= extra_rank <= MAX_EXTRA_RANK:
            raise HyperLoRAError(f"extra_rank must be a whole number from 0 to {MAX_EXTRA_RANK}, not {extra_rank!r}.")
        self.shapes = check_id_lora(lora)
        self.source = lora
        self.extra_rank = extra_rank
        self.layers = list(self.shapes)
        self.rank = next(iter(self.shapes.values())).rank
        self.down = nn.ParameterDict()
        self.up = nn.ParameterDict()
        self.extra_down = nn.ParameterDict()
        self.extra_up = nn.ParameterDict()
        self.scales: dict[str, float] = {}
        generator = torch.Generator().manual_seed(seed)
        for layer in self.layers:
            key = _param_name(layer)
            self.down[key] = nn.Parameter(lora[f"{layer}.lora_down.weight"].detach().to(device, torch.float32).clone())
            self.up[key] = nn.Parameter(lora[f"{layer}.lora_up.weight"].detach().to(device, torch.float32).clone())
            self.scales[layer] = float(lora[f"{layer}.alpha"]) / self.rank
            if extra_rank:
                shape = self.shapes[layer]
                # down: small random (as kohya initialises a new LoRA); up: zeros, so the product is zero
                down = torch.randn(extra_rank, shape.in_features, generator=generator) / shape.in_features ** 0.5
                self.extra_down[key] = nn.Parameter(down.to(device))
                self.extra_up[key] = nn.Parameter(torch.zeros(shape.out_features, extra_rank, device=device))

    def factors(self, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(down (r', in), up (out, r')) of one layer, extra rank included."""
        key = _param_name(layer)
        down, up = self.down[key], self.up[key]
        if self.extra_rank:
            down = torch.cat([down, self.extra_down[key]], 0)
            up = torch.cat([up, self.extra_up[key]], 1)
        return down, up

    def forward_delta(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        """What the LoRA adds to the layer's output for input ``x`` (..., in)."""
        down, up = self.factors(layer)
        return (x @ down.to(x.dtype).t()) @ up.to(x.dtype).t() * self.scales[layer]

    def weight_delta(self, layer: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """What the LoRA adds to the layer's weight (out, in)."""
        down, up = self.factors(layer)
        delta = (up @ down) * self.scales[layer]
        return delta if dtype is None else delta.to(dtype)

    def export(self) -> dict[str, torch.Tensor]:
        """The refined LoRA: the input's keys in its order and dtype, on the CPU (rank + extra when asked)."""
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for key, original in self.source.items():
                layer, suffix = next((key[: -len(s)], s) for s in SUFFIXES if key.endswith(s))
                down, up = self.factors(layer)
                if suffix == ".lora_down.weight":
                    value = down
                elif suffix == ".lora_up.weight":
                    value = up
                else:
                    value = original.detach().float() * (self.rank + self.extra_rank) / self.rank
                out[key] = value.detach().to("cpu", original.dtype).clone().reshape(
                    original.shape if suffix == ".alpha" else value.shape)
        return out
