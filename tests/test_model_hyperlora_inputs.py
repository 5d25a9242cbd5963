"""The arguments of the HyperLoRA API (model/hyperlora.py): dtype, device, features, photo weights;
every bad one gives an InputError or HyperLoRAError that says what is wrong and what to do."""

from __future__ import annotations

import pytest
import torch

from checkpoints import HF, random_features
from hyperlora_core import CheckpointError, HyperLoRA, HyperLoRAError, InputError


# -- loading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", torch.int8, "half-ish"])
def test_unsupported_dtype(small_folder, dtype):
    with pytest.raises(HyperLoRAError, match="use float32, float16 or bfloat16"):
        HyperLoRA.from_pretrained(small_folder, dtype=dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(small_folder):
    with pytest.raises(HyperLoRAError, match="sees no CUDA GPU"):
        HyperLoRA.from_pretrained(small_folder, device="cuda")


def test_string_dtypes_accepted(small_folder):
    assert HyperLoRA.from_pretrained(small_folder, dtype="fp16").dtype == torch.float16
    assert HyperLoRA.from_pretrained(small_folder, dtype="bf16").dtype == torch.bfloat16


@pytest.mark.parametrize("value", [None, 3, ""])
def test_from_pretrained_without_a_path(value):
    with pytest.raises(CheckpointError, match="needs the path of a release folder.*" + HF):
        HyperLoRA.from_pretrained(value)


def test_meta_device_is_refused(folder):
    with pytest.raises(HyperLoRAError, match="Device 'meta' cannot run HyperLoRA.*use 'cpu' or 'cuda'"):
        HyperLoRA.from_pretrained(folder, device="meta")


# -- features and photo weights --------------------------------------------------------------------


def test_single_photo_without_batch_dim_is_accepted(model):
    arcface, clip = random_features(1)
    one = model.generate_id_lora(arcface[0], clip[0])
    batched = model.generate_id_lora(arcface, clip)
    assert all(torch.equal(one[k], batched[k]) for k in one)


@pytest.mark.parametrize("arcface, clip, message", [
    (torch.zeros(2, 256), torch.zeros(2, 257, 1024), r"arcface_embeds must have shape \(N, 512\).*got \[2, 256\]"),
    (None, torch.zeros(2, 257, 768), r"clip_tokens must have shape \(N, 257, 1024\).*got \[2, 257, 768\]"),
    (None, torch.zeros(2, 1024), r"clip_tokens must have shape"),
    (torch.zeros(0, 512), torch.zeros(0, 257, 1024), r"no photo \(N = 0\)"),
    ("nope", None, "must be a tensor"),
    (torch.ones(2, 512, dtype=torch.int64), None, "must be floating point"),
])
def test_bad_feature_shapes_and_types(model, arcface, clip, message):
    good_a, good_c = random_features(2)
    with pytest.raises(InputError, match=message):
        model.generate_id_lora(good_a if arcface is None else arcface, good_c if clip is None else clip)


def test_batch_size_mismatch(model):
    a, _ = random_features(2)
    _, c = random_features(3)
    with pytest.raises(InputError, match="arcface_embeds has 2 photos but clip_tokens has 3"):
        model.generate_id_lora(a, c)


def test_nan_in_inputs(model):
    a, c = random_features(2)
    c[1, 5, 7] = float("nan")
    with pytest.raises(InputError, match="clip_tokens contains NaN"):
        model.generate_id_lora(a, c)
    a2 = a.clone()
    a2[0, 0] = float("inf")
    with pytest.raises(InputError, match="arcface_embeds contains NaN or infinite"):
        model.generate_id_lora(a2, random_features(2)[1])


def test_unnormalised_arcface_is_refused(model):
    a, c = random_features(1)
    with pytest.raises(InputError, match="must be L2-normalised.*normed_embedding"):
        model.generate_id_lora(a * 20, c)


@pytest.mark.parametrize("weights, message", [
    ([1.0], "weights has 1 entries for 2 photos"),
    ([0.0, 0.0], "not all zero"),
    ([1.0, -1.0], "non-negative"),
])
def test_bad_photo_weights(model, weights, message):
    with pytest.raises(InputError, match=message):
        model.generate_id_lora(*random_features(2), weights=weights)


@pytest.mark.parametrize("weights", ["1,2", b"\x00", {"a": 1}, [["x"]]])
def test_per_photo_weights_that_are_not_numbers(model, weights):
    arcface, clip = random_features(2)
    with pytest.raises(InputError, match="weights must be numbers, one per photo"):
        model.coefficients(arcface, clip, weights=weights)


def test_base_lora_without_base_weights_says_so(model):
    assert not model.has_base_lora
    with pytest.raises(HyperLoRAError, match="has no Base-LoRA weights.*Use the ID-LoRA alone"):
        model.generate_base_lora(random_features(1)[1])
