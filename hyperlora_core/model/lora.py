"""From coefficients to LoRA weights (spec sections 6 and 7).

The bases of all layers that share a shape are stored as one tensor, (layers, K, in * r) for the
down bases and (layers, K, r * out) for the up bases, in the checkpoint's dtype. Mixing a group is
then a single batched matrix product of its coefficients with its bases instead of one small
product per layer; on a CPU without half-precision arithmetic the half bases are converted to
float32 a chunk at a time, so no float32 copy of the whole bank is ever made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .checkpoint import ModuleSpec, SafetensorsFile, basis_key
from ..constants import KOHYA_SUFFIX, PROJECTIONS, TOKENS_PER_MODULE
from ..errors import NonFiniteLoRA

ROLES = ("down", "up")
# Bytes of float32 a chunk of converted half bases may take on the CPU.
CPU_CHUNK_BYTES = 8 * 2**20




@dataclass(frozen=True)
class LayerSlot:
    """One patched linear layer: where its coefficients are and what its LoRA is called."""

    module_index: int
    projection: str
    kohya_name: str  # e.g. lora_unet_..._attn1_to_out_0
    in_features: int
    out_features: int

    def token(self, role: str) -> int:
        """Index of the coefficient token of this layer's down or up factor."""
        return self.module_index * TOKENS_PER_MODULE + 2 * PROJECTIONS.index(self.projection) + ROLES.index(role)

    def features(self, role: str) -> int:
        """The width of the factor that is not the rank: in for down, out for up."""
        return self.in_features if role == "down" else self.out_features


def layer_slots(modules: list[ModuleSpec]) -> list[LayerSlot]:
    return [
        LayerSlot(i, p, f"{m.name}_{KOHYA_SUFFIX[p]}", m.in_features(p), m.out_features(p))
        for i, m in enumerate(modules)
        for p in PROJECTIONS
    ]


def kohya_key_plan(modules: list[ModuleSpec], rank: int) -> dict[str, tuple[int, ...]]:
    """Every key of the generated LoRA and its shape, without computing anything."""
    plan: dict[str, tuple[int, ...]] = {}
    for slot in layer_slots(modules):
        plan[f"{slot.kohya_name}.lora_down.weight"] = (rank, slot.in_features)
        plan[f"{slot.kohya_name}.lora_up.weight"] = (slot.out_features, rank)
        plan[f"{slot.kohya_name}.alpha"] = ()
    return plan


def group_by_shape(slots: list[LayerSlot]) -> dict[str, list[LayerSlot]]:
    """`{role}_{features}` -> the layers whose bases of that role have the same shape, in order."""
    groups: dict[str, list[LayerSlot]] = {}
    for slot in slots:
        for role in ROLES:
            groups.setdefault(f"{role}_{slot.features(role)}", []).append(slot)
    return groups


class BasisBank(nn.Module):
    """The down and up bases of one LoRA kind ("id" or "base"), grouped by shape.

    Buffers are named `{role}_{features}` with shape (layers in group, K, features * rank).
    """

    def __init__(self, modules: list[ModuleSpec], kind: str, hyper_dim: int, rank: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        super().__init__()
        self.kind = kind
        self.hyper_dim = hyper_dim
        self.rank = rank
        self.slots = layer_slots(modules)
        self._token_cache: dict[tuple[str, torch.device], torch.Tensor] = {}
        self.groups = group_by_shape(self.slots)  # group name -> its slots, in buffer order
        for name, slots in self.groups.items():
            features = int(name.split("_")[1])
            self.register_buffer(
                name, torch.empty(len(slots), hyper_dim, features * rank, dtype=dtype, device=device)
            )

    @property
    def alpha(self) -> float:
        # The release scales the ID-LoRA by alpha / r = 0.5 (alpha = r / 2); the Base-LoRA is
        # assumed to follow the same convention.
        return self.rank / 2

    def load_from(self, weights: SafetensorsFile) -> None:
        """Fill the bank from a checked `hyper_lora_modules.safetensors`, one tensor at a time."""
        items = []
        for name, slots in self.groups.items():
            role = name.split("_")[0]
            bank = getattr(self, name)
            # down (K, in, r) and up (K, r, out) both lie in memory as (K, features * r)
            items += [(basis_key(slot.module_index, slot.projection, self.kind, role), bank[j])
                      for j, slot in enumerate(slots)]
        weights.read_into(items)

    def _tokens(self, name: str, device: torch.device) -> torch.Tensor:
        """Indices of the coefficient tokens of a group's layers (cached per device)."""
        key = (name, device)
        if key not in self._token_cache:
            role = name.split("_")[0]
            self._token_cache[key] = torch.tensor([slot.token(role) for slot in self.groups[name]], device=device)
        return self._token_cache[key]

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.buffers())).dtype

    def mix(self, coefficients: torch.Tensor) -> dict[str, torch.Tensor]:
        """Coefficients (Q, K) -> the kohya LoRA of this bank, tensors on the CPU in the bank dtype.

        Each group is mixed on its device and written, transposed to the kohya layout and cast, into
        one CPU buffer. Every layer's tensor is a window on that buffer with a storage of its own
        (`torch.frombuffer`): no per-layer copy, and safetensors, which refuses tensors sharing a
        storage, saves them as they are.
        """
        dtype = self.dtype
        total = sum(getattr(self, name).shape[0] * getattr(self, name).shape[2] for name in self.groups)
        # Pinned memory makes the copy from the GPU a DMA transfer (and torch caches pinned blocks).
        host = torch.empty(total, dtype=dtype, pin_memory=coefficients.device.type == "cuda")
        placed: list[tuple[str, LayerSlot, int, tuple[int, int]]] = []
        offset = 0
        # One reduction per group on the device, read back once at the end (one synchronisation).
        finite = torch.ones((), dtype=torch.bool, device=coefficients.device)
        for name, slots in self.groups.items():
            role = name.split("_")[0]
            bank = getattr(self, name)
            mixed = mix_group(coefficients.index_select(0, self._tokens(name, coefficients.device)), bank)
            finite &= torch.isfinite(mixed).all()
            features = bank.shape[2] // self.rank
            # down: (G, in, r) -> lora_down (G, r, in); up: (G, r, out) -> lora_up (G, out, r)
            shape = (len(slots), features, self.rank) if role == "down" else (len(slots), self.rank, features)
            window = host[offset:offset + mixed.numel()].view(shape[0], shape[2], shape[1])
            window.copy_(mixed.view(shape).transpose(1, 2))
            for j, slot in enumerate(slots):
                placed.append((role, slot, offset + j * bank.shape[2], (shape[2], shape[1])))
            offset += mixed.numel()
        if not bool(finite):
            bad = next((name for name in self.groups if not bool(torch.isfinite(getattr(self, name)).all())), None)
            where = f"the {self.kind} {bad.replace('_', ' bases of width ')} hold NaN or infinite values" \
                if bad else f"the {self.kind} bases overflow {str(dtype).removeprefix('torch.')}"
            raise NonFiniteLoRA(where)
        raw = host.view(torch.uint8).numpy()
        size = host.element_size()
        out: dict[str, torch.Tensor] = {}
        for role, slot, start, shape in placed:
            tensor = torch.frombuffer(raw, dtype=dtype, count=shape[0] * shape[1], offset=start * size)
            out[f"{slot.kohya_name}.lora_{role}.weight"] = tensor.view(shape)
        for slot in self.slots:
            out[f"{slot.kohya_name}.alpha"] = torch.tensor(self.alpha, dtype=dtype)
        return {key: out[key] for key in self._key_order()}

    def _key_order(self) -> list[str]:
        return [
            f"{slot.kohya_name}.{suffix}"
            for slot in self.slots
            for suffix in ("lora_down.weight", "lora_up.weight", "alpha")
        ]

    def mix_per_layer(self, coefficients: torch.Tensor) -> dict[str, torch.Tensor]:
        """The straightforward path: one small product per layer in the bank's dtype.

        Kept as the baseline the benchmark measures the grouped path against.
        """
        out: dict[str, torch.Tensor] = {}
        dtype = self.dtype
        index = {}
        for name, slots in self.groups.items():
            for j, slot in enumerate(slots):
                index[(slot, name.split("_")[0])] = (name, j)
        for slot in self.slots:
            for role in ROLES:
                name, j = index[(slot, role)]
                basis = getattr(self, name)[j].view(self.hyper_dim, *(
                    (slot.in_features, self.rank) if role == "down" else (self.rank, slot.out_features)))
                c = coefficients[slot.token(role)].to(dtype)
                out[f"{slot.kohya_name}.lora_{role}.weight"] = torch.einsum("k,kab->ba", c, basis).cpu()
            out[f"{slot.kohya_name}.alpha"] = torch.tensor(self.alpha, dtype=dtype)
        return {key: out[key] for key in self._key_order()}


def _half_arithmetic_is_slow(bank: torch.Tensor) -> bool:
    return bank.device.type == "cpu" and bank.dtype in (torch.float16, torch.bfloat16)


def mix_group(coefficients: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(G, K) coefficients x (G, K, M) bases -> (G, M), accumulated in float32.

    On the GPU the product runs in the bank dtype (cuBLAS accumulates half products in float32);
    on the CPU half banks are converted a chunk at a time and multiplied in float32.
    """
    groups, hyper_dim, width = bank.shape
    if not _half_arithmetic_is_slow(bank):
        c = coefficients.to(bank.device, bank.dtype).unsqueeze(1)
        return torch.bmm(c, bank).squeeze(1)
    c = coefficients.to(bank.device, torch.float32).unsqueeze(1)
    out = torch.empty(groups, 1, width, dtype=torch.float32, device=bank.device)
    step = max(1, CPU_CHUNK_BYTES // (hyper_dim * width * 4))
    # one float32 buffer, reused: freshly allocated memory costs a page fault per 4 KiB
    buffer = torch.empty(min(step, groups), hyper_dim, width, dtype=torch.float32)
    for start in range(0, groups, step):
        stop = min(groups, start + step)
        chunk = buffer[: stop - start]
        chunk.copy_(bank[start:stop])
        torch.bmm(c[start:stop], chunk, out=out[start:stop])
    return out.squeeze(1)
