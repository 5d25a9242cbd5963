"""The trainable hyper-network: ID projector, resampler(s) and learnable LoRA bases.

The bases are kept as :class:`~hyperlora_core.model.lora.BasisBank` does at inference - one tensor per
group of layers with the same shape, ``(layers, K, features * rank)``, down bases laid out as
(K, in, r) and up bases as (K, r, out) - but as parameters. Mixing a batch is then one batched
product per group, and a warm start copies a loaded release's banks as they are.

The LoRA of sample n is ``down[n] = sum_k c_down[n, k] * down_basis[k]`` (in, r) and
``up[n] = sum_k c_up[n, k] * up_basis[k]`` (r, out), applied with scale alpha / r = 0.5 exactly as
the exported kohya LoRA will be (spec sections 6 and 7).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ..model.checkpoint import ModuleSpec
from ..constants import ARCFACE_DIM, TOKENS_PER_MODULE
from ..model.hypernet import IDProjector, Resampler
from ..model.lora import group_by_shape, layer_slots
from .config import NetworkShape
from ..model.hyperlora import NORM_EPS
from .lora_inject import layer_name

log = logging.getLogger(__name__)

KINDS = ("id", "base")


def normalise(per_sample: torch.Tensor) -> torch.Tensor:
    """(B, Q, K) -> each token L2-normalised (the per-photo form of spec 4.5: one photo per sample)."""
    return per_sample * torch.rsqrt(per_sample.pow(2).sum(-1, keepdim=True) + NORM_EPS)


class TrainableBank(nn.Module):
    """The down and up bases of one LoRA kind, grouped by shape, as parameters."""

    def __init__(self, modules: list[ModuleSpec], kind: str, hyper_dim: int, rank: int):
        super().__init__()
        self.kind = kind
        self.hyper_dim = hyper_dim
        self.rank = rank
        self.modules_spec = modules
        self.slots = layer_slots(modules)
        self.groups = group_by_shape(self.slots)
        for name, slots in self.groups.items():
            features = int(name.split("_")[1])
            self.register_parameter(name, nn.Parameter(torch.empty(len(slots), hyper_dim, features * rank)))
        self._tokens = {
            name: torch.tensor([slot.token(name.split("_")[0]) for slot in slots])
            for name, slots in self.groups.items()
        }

    def _tokens_on(self, name: str, device: torch.device) -> torch.Tensor:
        """A group's coefficient token indices on ``device`` (moved once, then kept)."""
        if self._tokens[name].device != device:
            self._tokens = {k: v.to(device) for k, v in self._tokens.items()}
        return self._tokens[name]

    @property
    def scale(self) -> float:
        return (self.rank / 2) / self.rank  # alpha / r, alpha = r / 2 as in the release

    def reset(self, generator: torch.Generator | None = None) -> None:
        """LoRA-style start: down bases random (unit-norm mixes keep std 1/sqrt(in)), up bases zero,
        so a fresh network leaves the UNet unchanged."""
        with torch.no_grad():
            for name in self.groups:
                bank = getattr(self, name)
                if name.startswith("down"):
                    features = int(name.split("_")[1])
                    bank.copy_(torch.randn(bank.shape, generator=generator) / math.sqrt(features))
                else:
                    bank.zero_()

    def factors(self, coefficients: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Normalised coefficients (B, Q, K) -> {layer name: (down (B, in, r), up (B, r, out))}."""
        batch = coefficients.shape[0]
        mixed: dict[tuple[str, str], torch.Tensor] = {}
        for name, slots in self.groups.items():
            role, features = name.split("_")
            tokens = self._tokens_on(name, coefficients.device)
            c = coefficients.index_select(1, tokens)  # (B, G, K)
            bank = getattr(self, name)
            out = torch.einsum("bgk,gkm->bgm", c, bank.to(c.dtype))  # (B, G, features * r)
            shape = (batch, len(slots), int(features), self.rank) if role == "down" else \
                (batch, len(slots), self.rank, int(features))
            out = out.view(shape)
            for j, slot in enumerate(slots):
                mixed[(layer_name(self.modules_spec[slot.module_index], slot.projection), role)] = out[:, j]
        return {layer: (mixed[(layer, "down")], mixed[(layer, "up")]) for layer, _ in mixed}


class TrainableHyperLoRA(nn.Module):
    """Everything that learns. Parameter names of the sub-networks equal the released keys."""

    def __init__(self, modules: list[ModuleSpec], shape: NetworkShape, with_base: bool):
        super().__init__()
        self.target_modules = list(modules)
        self.shape = shape
        queries = len(modules) * TOKENS_PER_MODULE
        ff_hidden = shape.ff_mult * shape.dim
        self.id_projector = IDProjector(ARCFACE_DIM, shape.id_tokens, shape.id_width)
        self.resampler = Resampler(queries, shape.dim, shape.inner, shape.depth, ff_hidden, shape.hyper_dim,
                                   (shape.id_width, shape.clip_width))
        self.id_bank = TrainableBank(modules, "id", shape.hyper_dim, shape.rank)
        self.base_resampler = self.base_bank = None
        if with_base:
            self.add_base()

    def add_base(self) -> None:
        s = self.shape
        queries = len(self.target_modules) * TOKENS_PER_MODULE
        self.base_resampler = Resampler(queries, s.dim, s.inner, s.depth, s.ff_mult * s.dim, s.hyper_dim,
                                        (s.clip_width,))
        self.base_bank = TrainableBank(self.target_modules, "base", s.hyper_dim, s.base_rank)

    @property
    def has_base(self) -> bool:
        return self.base_bank is not None

    def reset(self, seed: int) -> None:
        """A fresh network: default layer init, random learned queries, LoRA-style bases."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    bound = 1 / math.sqrt(module.in_features)
                    module.weight.copy_((torch.rand(module.weight.shape, generator=generator) * 2 - 1) * bound)
                    if module.bias is not None:
                        module.bias.copy_((torch.rand(module.bias.shape, generator=generator) * 2 - 1) * bound)
                elif isinstance(module, nn.LayerNorm):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
            for resampler in (self.resampler, self.base_resampler):
                if resampler is not None:
                    latents = resampler.latents
                    latents.copy_(torch.randn(latents.shape, generator=generator) / math.sqrt(latents.shape[-1]))
        for bank in (self.id_bank, self.base_bank):
            if bank is not None:
                bank.reset(generator)

    # -- forward -------------------------------------------------------------------------------

    def id_coefficients(self, arcface: torch.Tensor, clip_tokens: torch.Tensor) -> torch.Tensor:
        """(B, 512) ArcFace embeddings and (B, 257, W) CLIP tokens -> normalised (B, Q, K)."""
        ids = self.id_projector(arcface)
        return normalise(self.resampler(ids, clip_tokens).float())

    def base_coefficients(self, base_clip_tokens: torch.Tensor) -> torch.Tensor:
        return normalise(self.base_resampler(base_clip_tokens).float())

    def forward(self, arcface: torch.Tensor | None, clip_tokens: torch.Tensor | None,
                base_clip_tokens: torch.Tensor | None) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """The factors of each LoRA kind asked for (an input left as None skips that kind)."""
        out = {}
        if arcface is not None and clip_tokens is not None:
            out["id"] = self.id_bank.factors(self.id_coefficients(arcface, clip_tokens))
        if base_clip_tokens is not None and self.has_base:
            out["base"] = self.base_bank.factors(self.base_coefficients(base_clip_tokens))
        return out

    # -- parts by name -------------------------------------------------------------------------

    def parts(self) -> dict[str, nn.Module]:
        parts = {"id_projector": self.id_projector, "resampler": self.resampler, "id_bases": self.id_bank}
        if self.has_base:
            parts.update({"base_resampler": self.base_resampler, "base_bases": self.base_bank})
        return parts
