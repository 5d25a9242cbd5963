"""Every bad input to the core gives an error that names the problem and the fix."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoints import random_features
from hyperlora_core import CheckpointError, HyperLoRA, HyperLoRAError, InputError


def _rewrite(path, change):
    state = load_file(str(path))
    change(state)
    path.unlink()
    save_file(state, str(path))


def test_missing_folder_lists_layout_and_download(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*hyper_lora_modules.json.*huggingface.co/bytedance-research/HyperLoRA"):
        HyperLoRA.from_pretrained(tmp_path / "nowhere")


def test_missing_file_is_named(small_folder):
    (small_folder / "resampler.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing resampler.safetensors.*Download"):
        HyperLoRA.from_pretrained(small_folder)


def test_truncated_safetensors(small_folder):
    path = small_folder / "hyper_lora_modules.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="hyper_lora_modules.safetensors is not a valid .safetensors file.*truncated"):
        HyperLoRA.from_pretrained(small_folder)


def test_not_safetensors(small_folder):
    (small_folder / "id_projector.safetensors").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(CheckpointError, match="id_projector.safetensors is not a valid .safetensors"):
        HyperLoRA.from_pretrained(small_folder)


def test_missing_key_is_named(small_folder):
    _rewrite(small_folder / "hyper_lora_modules.safetensors", lambda s: s.pop("2.to_v.id_up_basis"))
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\), e.g. 2.to_v.id_up_basis"):
        HyperLoRA.from_pretrained(small_folder)


def test_extra_key_is_named(small_folder):
    _rewrite(small_folder / "resampler.safetensors", lambda s: s.__setitem__("stray", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"resampler.safetensors.*1 unexpected key\(s\), e.g. stray"):
        HyperLoRA.from_pretrained(small_folder)


def test_more_modules_in_weights_than_json(small_folder):
    def add(state):
        state["99.to_q.id_down_basis"] = state["0.to_q.id_down_basis"].clone()
    _rewrite(small_folder / "hyper_lora_modules.safetensors", add)
    with pytest.raises(CheckpointError, match="unexpected key.*99.to_q.id_down_basis"):
        HyperLoRA.from_pretrained(small_folder)


def test_wrong_shape_names_key_expected_and_found(small_folder):
    def bad(state):
        state["1.to_k.id_down_basis"] = torch.zeros(16, 640, 8, dtype=torch.float16)
    _rewrite(small_folder / "hyper_lora_modules.safetensors", bad)
    with pytest.raises(CheckpointError, match=r"'1.to_k.id_down_basis' has shape \[16, 640, 8\], expected \[16, 2048, 8\]"):
        HyperLoRA.from_pretrained(small_folder)


def test_wrong_resampler_shape(small_folder):
    def bad(state):
        state["layers.0.norm_ff.weight"] = torch.ones(65, dtype=torch.float16)
    _rewrite(small_folder / "resampler.safetensors", bad)
    with pytest.raises(CheckpointError, match=r"'layers.0.norm_ff.weight' has shape \[65\], expected \[64\]"):
        HyperLoRA.from_pretrained(small_folder)


def test_json_and_weights_from_different_checkpoints(small_folder):
    modules = json.loads((small_folder / "hyper_lora_modules.json").read_text())
    name, entry = next(iter(modules.items()))
    modules = {name: entry}  # fewer modules than the weights
    (small_folder / "hyper_lora_modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match="unexpected key"):
        HyperLoRA.from_pretrained(small_folder)


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must be a non-empty JSON object"),
    ("{}", "must be a non-empty JSON object"),
    ('{"m": {"hidden_size": "640"}}', "entry 'm' must be"),
    ('{"m": {"hidden_size": 640, "cross_attention_dim": -1}}', "entry 'm' must be"),
    ('{"m": 5}', "entry 'm' must be"),
    ("{not json", "is not readable JSON"),
])
def test_bad_json(small_folder, content, message):
    (small_folder / "hyper_lora_modules.json").write_text(content)
    with pytest.raises(CheckpointError, match=message):
        HyperLoRA.from_pretrained(small_folder)


@pytest.mark.parametrize("dtype", ["float64", torch.int8, "half-ish"])
def test_unsupported_dtype(small_folder, dtype):
    with pytest.raises(HyperLoRAError, match="use float32, float16 or bfloat16"):
        HyperLoRA.from_pretrained(small_folder, dtype=dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(small_folder):
    with pytest.raises(HyperLoRAError, match="sees no CUDA GPU"):
        HyperLoRA.from_pretrained(small_folder, device="cuda")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from checkpoints import make_release_folder
    return HyperLoRA.from_pretrained(
        make_release_folder(tmp_path_factory.mktemp("m") / "c", dim=64, depth=1, inner=64, hyper_dim=16))


def test_string_dtypes_accepted(small_folder):
    assert HyperLoRA.from_pretrained(small_folder, dtype="fp16").dtype == torch.float16
    assert HyperLoRA.from_pretrained(small_folder, dtype="bf16").dtype == torch.bfloat16


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


def test_base_lora_without_base_weights_says_so(model):
    assert not model.has_base_lora
    with pytest.raises(HyperLoRAError, match="has no Base-LoRA weights.*Use the ID-LoRA alone"):
        model.generate_base_lora(random_features(1)[1])
