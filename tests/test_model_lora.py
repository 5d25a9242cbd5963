"""model/lora.py: the kohya key plan of the v1 module list, and the fast mixing kernels against the
straightforward per-layer results, for every dtype (CPU; GPU when present)."""

from __future__ import annotations

import math

import pytest
import torch

from checkpoints import random_features
from dtype_checks import DEVICES, DTYPES, assert_close_in_dtype as _close
from hyperlora_core import HyperLoRA
from hyperlora_core.constants import PROJECTIONS as PROJ
from hyperlora_core.model.checkpoint import expected_basis_shape, read_modules, sdxl_attention_modules, write_modules_json
from hyperlora_core.model.lora import kohya_key_plan, mix_group


def test_v1_sized_plan_without_allocating(tmp_path):
    modules = sdxl_attention_modules()
    write_modules_json(modules, tmp_path / "hyper_lora_modules.json")
    read = read_modules(tmp_path / "hyper_lora_modules.json")
    assert read == modules and len(read) == 140
    assert sum(m.hidden_size == 640 for m in read) == 2 * (2 * 2 + 3 * 2)
    plan = kohya_key_plan(read, rank=8)
    assert len(plan) == 1680
    assert sum(k.endswith(".lora_down.weight") for k in plan) == 560
    assert sum(math.prod(s) for k, s in plan.items() if not k.endswith(".alpha")) == 11_612_160
    assert plan["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"] == (8, 2048)
    assert plan["lora_unet_up_blocks_0_attentions_2_transformer_blocks_9_attn1_to_out_0.lora_up.weight"] == (1280, 8)
    bases = sum(math.prod(expected_basis_shape(m, p, role, 128, 8)) for m in read for p in PROJ for role in ("down", "up"))
    assert bases == 1_486_356_480
    assert 8 * len(read) == 1120  # the resampler's learned queries


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_grouped_mixing_equals_per_layer(release_folder, device, dtype):
    hl = HyperLoRA.from_pretrained(release_folder, dtype=dtype, device=device)
    coefficients = hl.coefficients(*random_features(1, seed=9))
    for bank in (hl.id_bank, hl.base_bank):
        fast, slow = bank.mix(coefficients), bank.mix_per_layer(coefficients)
        assert list(fast) == list(slow)
        for key in fast:
            assert fast[key].dtype == dtype and fast[key].device.type == "cpu"
            _close(fast[key], slow[key], dtype)
        # and both against float64 maths on the stored bases, for one layer of each group
        for name, slots in bank.groups.items():
            role = name.split("_")[0]
            basis = getattr(bank, name)[0].double().cpu()
            mixed = coefficients[slots[0].token(role)].double().cpu() @ basis
            key = f"{slots[0].kohya_name}.lora_{role}.weight"
            expected = mixed.view(-1, bank.rank).T if role == "down" else mixed.view(bank.rank, -1).T
            _close(fast[key], expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_chunked_cpu_mixing_matches_float64(dtype, monkeypatch):
    monkeypatch.setattr("hyperlora_core.model.lora.CPU_CHUNK_BYTES", 4096)  # force many chunks
    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(7, 16, 40, generator=gen).to(dtype)
    c = torch.randn(7, 16, generator=gen)
    expected = torch.einsum("gk,gkm->gm", c.double(), bank.double())
    _close(mix_group(c, bank), expected, torch.float32 if dtype == torch.float32 else dtype)
