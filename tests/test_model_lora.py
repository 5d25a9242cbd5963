"""The fast kernels give the straightforward per-layer results, for every dtype (CPU; GPU when present)."""

from __future__ import annotations

import pytest
import torch

from checkpoints import random_features
from hyperlora_core import HyperLoRA
from hyperlora_core.model.lora import mix_group
from hyperlora_core.bench.merge import lora_layers, merge_lora_, merge_layer_, merge_layer_straightforward

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# relative to the largest value: one rounding to the dtype, plus float32 accumulation
TOL = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def _close(a, b, dtype):
    scale = b.float().abs().max().item() or 1.0
    assert (a.float() - b.float()).abs().max().item() <= TOL[dtype] * scale


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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_in_place_merge_equals_straightforward(device, dtype, monkeypatch):
    monkeypatch.setattr("hyperlora_core.bench.merge.ROW_BLOCK_BYTES", 1024)  # force several row blocks
    gen = torch.Generator().manual_seed(1)
    weight = (torch.randn(96, 80, generator=gen) * 0.1).to(device, dtype)
    up, down = torch.randn(96, 8, generator=gen).to(dtype), torch.randn(8, 80, generator=gen).to(dtype)
    fast = merge_layer_(weight.clone(), up, down, 0.425)
    slow = merge_layer_straightforward(weight.clone(), up, down, 0.425)
    expected = weight.double() + 0.425 * (up.double().to(device) @ down.double().to(device))
    _close(fast, expected, dtype)
    _close(slow, expected, dtype)
    assert fast.dtype == dtype and fast.data_ptr() != weight.data_ptr()


def test_merge_lora_uses_alpha_over_rank_and_names_missing_layers(release_folder):
    hl = HyperLoRA.from_pretrained(release_folder)
    lora = hl.generate_id_lora(*random_features(1))
    layers = lora_layers(lora)
    weights = {name: torch.zeros(up.shape[0], down.shape[1]) for name, (up, down, _) in layers.items()}
    merged = merge_lora_(weights, lora, strength=0.8)
    assert merged == list(layers)
    name, (up, down, scale) = next(iter(layers.items()))
    assert scale == 0.5  # alpha 4 / rank 8
    torch.testing.assert_close(weights[name], 0.8 * 0.5 * up @ down)
    weights.pop(name)
    with pytest.raises(KeyError, match=name):
        merge_lora_(weights, lora)
