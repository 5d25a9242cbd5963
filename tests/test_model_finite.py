"""Non-finite weights and overflowing inputs (finite.py): a clear message, never a NaN LoRA."""

from __future__ import annotations

import pytest
import torch

from checkpoints import HF, random_features
from damaged_files import rewrite as _rewrite
from hyperlora_core import CheckpointError, HyperLoRA, HyperLoRAError, InputError, save_lora
from hyperlora_core.finite import all_finite


def test_nan_bases_give_an_error_naming_the_checkpoint_not_a_nan_lora(folder):
    def damage(state):
        state["2.to_out.id_down_basis"][3, 5, 1] = float("nan")
    _rewrite(folder / "hyper_lora_modules.safetensors", damage)
    model = HyperLoRA.from_pretrained(folder)  # the header is intact: the load itself succeeds
    arcface, clip = random_features(1)
    with pytest.raises(CheckpointError, match=rf"ID-LoRA made from the HyperLoRA checkpoint '{folder}' holds NaN"
                                              rf".*damaged.*Download hyper_lora_modules.safetensors again.*{HF}"):
        model.generate_id_lora(arcface, clip)


@pytest.mark.parametrize("file, key, value", [
    ("resampler.safetensors", "latents", float("inf")),
    ("resampler.safetensors", "layers.0.ff.net.2.weight", float("nan")),
    ("id_projector.safetensors", "0.weight", float("-inf")),
])
def test_non_finite_small_network_is_refused_at_load(folder, file, key, value):
    def damage(state):
        state[key].view(-1)[7] = value
    _rewrite(folder / file, damage)
    with pytest.raises(CheckpointError, match=rf"{file}: tensor '{key}' holds NaN or infinite values.*Download"):
        HyperLoRA.from_pretrained(folder)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_finite_check_finds_one_nan_or_infinity_anywhere(dtype):
    for size in (1, 33, 4099):
        for index in sorted({0, size // 2, size - 1}):
            for value in (float("nan"), float("inf"), float("-inf")):
                tensor = torch.randn(size).to(dtype)
                tensor[index] = value
                assert not all_finite(tensor.view(1, size)), (size, index, value)
    assert all_finite(torch.randn(4099).to(dtype))
    assert all_finite(torch.empty(0, dtype=dtype)) and all_finite(torch.arange(5))
    assert not all_finite(torch.tensor([1e5]).to(torch.float16))  # too large for float16 after conversion


def test_finite_clip_features_that_overflow_the_maths_are_explained(model):
    arcface, clip = random_features(1)
    with pytest.raises(InputError, match=r"overflowed.*largest clip_tokens value is [\d.]+e\+30.*Recompute"):
        model.generate_id_lora(arcface, clip * 1e30)


def test_inf_clip_features_are_refused(model):
    arcface, clip = random_features(1)
    clip[0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite"):
        model.coefficients(arcface, clip)


def test_save_refuses_a_non_finite_lora(tmp_path, model):
    lora = model.generate_id_lora(*random_features(1))
    key = next(k for k in lora if k.endswith("lora_up.weight"))
    lora[key] = lora[key].clone()
    lora[key][0, 0] = float("nan")
    with pytest.raises(HyperLoRAError, match=rf"NaN or infinite values \(first in '{key}'\).*not used"):
        save_lora(lora, tmp_path / "nan.safetensors")
    assert not list(tmp_path.iterdir())


def test_non_finite_coefficients_given_directly_are_refused(model):
    coefficients = model.coefficients(*random_features(1)).clone()
    coefficients[0, 0] = float("nan")
    with pytest.raises(InputError, match="coefficients must be finite"):
        model.lora_from_coefficients(coefficients)
