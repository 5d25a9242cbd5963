"""bench/merge.py: merging a LoRA into weights in place equals the straightforward sum, for every dtype
(CPU; GPU when present)."""

from __future__ import annotations

import pytest
import torch

from checkpoints import random_features
from dtype_checks import DEVICES, DTYPES, assert_close_in_dtype as _close
from hyperlora_core import HyperLoRA
from hyperlora_core.bench.merge import lora_layers, merge_lora_, merge_layer_, merge_layer_straightforward


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
