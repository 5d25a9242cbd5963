"""Random HyperLoRA checkpoints in the exact release layout (spec sections 1-5).

For tests and the benchmark: the files have the released key names, shapes and dtype; only the
number of modules (and, where asked, the network width) may differ from the 3 GB release. Random
weights test plumbing and speed, never the quality of a result.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save

from ..files.atomic import write_atomic
from ..model.checkpoint import ModuleSpec, write_modules_json
from ..constants import PROJECTIONS

# A few modules of both kinds at the real widths and cross-attention dim.
SMALL_MODULES = [
    ModuleSpec("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1", 640, None),
    ModuleSpec("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2", 640, 2048),
    ModuleSpec("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1", 1280, None),
    ModuleSpec("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2", 1280, 2048),
    ModuleSpec("lora_unet_up_blocks_1_attentions_2_transformer_blocks_1_attn2", 640, 2048),
]


def resampler_state(queries: int, dim: int = 1024, depth: int = 4, inner: int = 768, ff_mult: int = 4,
                    out_dim: int = 128, in_dims: tuple[int, ...] = (1024, 1024), gen=None) -> dict[str, torch.Tensor]:
    def rnd(*shape, scale=0.02):
        return torch.randn(*shape, generator=gen) * scale

    state = {"latents": rnd(1, queries, dim, scale=1.0 / dim**0.5),
             "proj_in.weight": rnd(dim, in_dims[0]), "proj_in.bias": rnd(dim),
             "proj_out.weight": rnd(out_dim, dim), "proj_out.bias": rnd(out_dim)}
    if len(in_dims) == 2:
        state["proj_in_2.weight"] = rnd(dim, in_dims[1])
        state["proj_in_2.bias"] = rnd(dim)
    norms = ["norm_attn1", "norm_attn2_l", "norm_attn2_x", "norm_ff"]
    attns = ["attn1", "attn2"]
    if len(in_dims) == 2:
        norms += ["norm_attn3_l", "norm_attn3_y"]
        attns += ["attn3"]
    for n in range(depth):
        p = f"layers.{n}."
        for norm in norms:
            state[p + norm + ".weight"] = 1 + rnd(dim, scale=0.1)
            state[p + norm + ".bias"] = rnd(dim, scale=0.1)
        for a in attns:
            for proj in ("to_q", "to_k", "to_v"):
                state[f"{p}{a}.{proj}.weight"] = rnd(inner, dim, scale=0.05)
            state[f"{p}{a}.to_out.0.weight"] = rnd(dim, inner, scale=0.05)
        state[p + "ff.net.0.proj.weight"] = rnd(ff_mult * dim, dim)
        state[p + "ff.net.0.proj.bias"] = rnd(ff_mult * dim)
        state[p + "ff.net.2.weight"] = rnd(dim, ff_mult * dim)
        state[p + "ff.net.2.bias"] = rnd(dim)
    return state


def basis_state(modules: list[ModuleSpec], hyper_dim: int, rank: int, base_rank: int | None,
                gen=None, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random bases, converted to `dtype` one tensor at a time (the v1 size is 1.5 G values)."""
    state = {}
    kinds = {"id": rank, **({"base": base_rank} if base_rank else {})}
    for i, m in enumerate(modules):
        for p in PROJECTIONS:
            for kind, r in kinds.items():
                down = torch.randn(hyper_dim, m.in_features(p), r, generator=gen) * 0.05
                up = torch.randn(hyper_dim, r, m.out_features(p), generator=gen) * 0.05
                state[f"{i}.{p}.{kind}_down_basis"] = down.to(dtype)
                state[f"{i}.{p}.{kind}_up_basis"] = up.to(dtype)
    return state


def make_release_folder(folder: str | Path, modules: list[ModuleSpec] | None = None, hyper_dim: int = 128,
                        rank: int = 8, with_base: bool = False, dtype: torch.dtype = torch.float16,
                        seed: int = 0, dim: int = 1024, depth: int = 4, inner: int = 768) -> Path:
    """Write a random checkpoint folder in the release layout and return its path.

    `dim`, `depth` and `inner` default to the released resampler; smaller values make fast tests.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    modules = list(modules if modules is not None else SMALL_MODULES)
    gen = torch.Generator().manual_seed(seed)
    write_modules_json(modules, folder / "hyper_lora_modules.json")

    def write(name, state):
        write_atomic(folder / name, save({k: v.to(dtype).contiguous() for k, v in state.items()}), overwrite=True)

    write("hyper_lora_modules.safetensors",
          basis_state(modules, hyper_dim, rank, rank // 2 if with_base else None, gen, dtype))
    queries = 8 * len(modules)
    write("resampler.safetensors", resampler_state(queries, dim, depth, inner, out_dim=hyper_dim, gen=gen))
    write("id_projector.safetensors", {
        "0.weight": torch.randn(16 * 1024, 512, generator=gen) * 0.05,
        "0.bias": torch.randn(16 * 1024, generator=gen) * 0.02,
        "2.weight": 1 + torch.randn(1024, generator=gen) * 0.1,
        "2.bias": torch.randn(1024, generator=gen) * 0.1,
    })
    if with_base:
        write("base_resampler.safetensors",
              resampler_state(queries, dim, depth, inner, out_dim=hyper_dim, in_dims=(1024,), gen=gen))
    return folder


def random_features(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """N L2-normalised ArcFace embeddings and N sets of CLIP tokens."""
    gen = torch.Generator().manual_seed(seed)
    arcface = torch.randn(n, 512, generator=gen)
    arcface = arcface / arcface.norm(dim=-1, keepdim=True)
    clip = torch.randn(n, 257, 1024, generator=gen)
    return arcface, clip
