"""The cases of the bad-input sweep (issue 15) in the core: each gives a clear message, never a NaN LoRA
or a raw library error."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoints import make_release_folder, random_features
from hyperlora_core import CheckpointError, HyperLoRA, HyperLoRAError, IdentityFeatures, InputError, save_lora
from hyperlora_core.files import sniff
from hyperlora_core.files.images import load_image
from hyperlora_core.model.finite import all_finite

HF = "huggingface.co/bytedance-research/HyperLoRA"


def _rewrite(path: Path, change) -> None:
    """Change one file of a release-layout checkpoint written by the tests' own writer."""
    state = load_file(str(path))
    change(state)
    path.unlink()
    save_file(state, str(path))


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_release_folder(tmp_path / "ckpt", dim=64, depth=1, inner=64, hyper_dim=16, seed=5)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> HyperLoRA:
    return HyperLoRA.from_pretrained(
        make_release_folder(tmp_path_factory.mktemp("m") / "c", dim=64, depth=1, inner=64, hyper_dim=16))


# -- dtypes ------------------------------------------------------------------------------------

def test_int8_basis_is_refused_naming_tensor_and_dtype(folder):
    _rewrite(folder / "hyper_lora_modules.safetensors",
             lambda s: s.__setitem__("1.to_k.id_up_basis", s["1.to_k.id_up_basis"].to(torch.int8)))
    with pytest.raises(CheckpointError, match=r"'1.to_k.id_up_basis' is stored as int8.*float16, bfloat16 or "
                                              r"float32.*not loaded.*" + HF):
        HyperLoRA.from_pretrained(folder)


@pytest.mark.parametrize("file, key, dtype, name", [
    ("id_projector.safetensors", "2.bias", torch.bool, "bool"),
    ("resampler.safetensors", "proj_out.weight", torch.int8, "int8"),
    ("resampler.safetensors", "latents", torch.float64, "float64"),
])
def test_small_network_of_another_dtype_is_refused(folder, file, key, dtype, name):
    _rewrite(folder / file, lambda s: s.__setitem__(key, s[key].to(dtype)))
    with pytest.raises(CheckpointError, match=rf"{file}: tensor '{key}' is stored as {name}"):
        HyperLoRA.from_pretrained(folder)


# -- non-finite weights and overflowing inputs ---------------------------------------------------

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


# -- files that are not safetensors --------------------------------------------------------------

def _legacy_pickle(path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path, _use_new_zipfile_serialization=False)


@pytest.mark.parametrize("make, message", [
    (lambda p: _legacy_pickle(p), "is a Python pickle .*renamed.*not opened"),
    (lambda p: p.write_bytes(pickle.dumps({"w": [1, 2]}, protocol=4)), "is a Python pickle"),
    (lambda p: torch.save({"w": torch.zeros(2)}, p), "is a zip archive .*zipped pickles"),
    (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    (lambda p: p.mkdir(), "is a folder, not a file"),
    (lambda p: p.symlink_to("/dev/zero"), "is not a regular file"),
    (lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{"), "is truncated"),
])
def test_a_file_that_is_not_safetensors_says_what_it_is_and_where_to_get_the_right_one(folder, make, message):
    path = folder / "resampler.safetensors"
    path.unlink()
    make(path)
    if path.is_dir() or path.is_symlink():  # check_release_folder wants a file: test the reader directly
        from hyperlora_core.model.checkpoint import SafetensorsFile
        with pytest.raises(CheckpointError, match=rf"resampler.safetensors is not a valid .safetensors file: it "
                                                  rf"{message}.*not loaded.*{HF}"):
            SafetensorsFile(path)
        return
    with pytest.raises(CheckpointError, match=rf"resampler.safetensors is not a valid .safetensors file: it "
                                              rf"{message}.*not loaded.*{HF}"):
        HyperLoRA.from_pretrained(folder)


def test_unreadable_checkpoint_says_permission_denied_not_missing(folder, monkeypatch):
    # Tests may run as root, where chmod does not stop reading: the denial is simulated where it is met.
    real_open = open

    def denied(path, *args, **kwargs):
        if str(path).endswith("id_projector.safetensors"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(sniff, "open", denied, raising=False)
    with pytest.raises(CheckpointError) as caught:
        HyperLoRA.from_pretrained(folder)
    assert "permission denied" in str(caught.value) and "No such file" not in str(caught.value)
    assert "id_projector.safetensors" in str(caught.value)


def test_deeply_nested_modules_json(folder):
    (folder / "hyper_lora_modules.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="nests too deeply.*Download it again"):
        HyperLoRA.from_pretrained(folder)


# -- arguments of the API ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, 3, ""])
def test_from_pretrained_without_a_path(value):
    with pytest.raises(CheckpointError, match="needs the path of a release folder.*" + HF):
        HyperLoRA.from_pretrained(value)


def test_meta_device_is_refused(folder):
    with pytest.raises(HyperLoRAError, match="Device 'meta' cannot run HyperLoRA.*use 'cpu' or 'cuda'"):
        HyperLoRA.from_pretrained(folder, device="meta")


@pytest.mark.parametrize("weights", ["1,2", b"\x00", {"a": 1}, [["x"]]])
def test_per_photo_weights_that_are_not_numbers(model, weights):
    arcface, clip = random_features(2)
    with pytest.raises(InputError, match="weights must be numbers, one per photo"):
        model.coefficients(arcface, clip, weights=weights)


# -- identity files --------------------------------------------------------------------------------

def _identity() -> IdentityFeatures:
    arcface, clip = random_features(2)
    return IdentityFeatures(arcface=arcface, clip_tokens=clip, sources=["a.jpg", "b.jpg"])


def test_pickle_in_the_identities_folder_is_refused_with_advice(tmp_path):
    path = tmp_path / "person.safetensors"
    _legacy_pickle(path)
    with pytest.raises(InputError, match="is a Python pickle.*not loaded.*Save the identity again"):
        IdentityFeatures.load(path)


def test_identity_with_int8_tensor_is_refused(tmp_path):
    path = _identity().save(tmp_path / "p.safetensors")
    with open(path, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    state = load_file(str(path))
    state["arcface"] = (state["arcface"] * 100).to(torch.int8)
    path.unlink()
    save_file(state, str(path), metadata=meta)
    with pytest.raises(InputError, match="'arcface' is stored as int8.*float16, bfloat16 or float32.*Save the identity"):
        IdentityFeatures.load(path)


def test_identity_whose_sources_are_not_json_loads_with_a_warning(tmp_path, caplog):
    path = _identity().save(tmp_path / "p.safetensors")
    state = load_file(str(path))
    path.unlink()
    save_file(state, str(path), metadata={"format": "hyperlora-identity/1", "sources": "{not json"})
    with caplog.at_level(logging.WARNING):
        identity = IdentityFeatures.load(path)
    assert identity.sources == ["photo 0", "photo 1"]
    assert "not a JSON list of names" in caplog.text


def test_identity_with_nan_is_not_saved(tmp_path):
    identity = _identity()
    identity.clip_tokens[1, 2, 3] = float("nan")
    with pytest.raises(InputError, match="clip_tokens holds NaN.*not saved"):
        identity.save(tmp_path / "p.safetensors")
    assert not list(tmp_path.iterdir())


def test_blend_of_something_that_is_not_an_identity():
    with pytest.raises(InputError, match="Identity 2 to blend is str.*connect"):
        IdentityFeatures.blend([(_identity(), 1.0), ("alice", 1.0)])
    with pytest.raises(InputError, match="Blend weight 1 must be a finite number"):
        IdentityFeatures.blend([(_identity(), "half")])


def test_identity_of_wrong_kind_of_parts():
    with pytest.raises(InputError, match="arcface must be a tensor, got list"):
        IdentityFeatures(arcface=[[0.0] * 512], clip_tokens=torch.zeros(1, 257, 1024))
    arcface, clip = random_features(1)
    with pytest.raises(InputError, match="weights must be numbers"):
        IdentityFeatures(arcface=arcface, clip_tokens=clip, weights="1")


# -- CLIP file -------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda p: _legacy_pickle(p), "is a Python pickle"),
    (lambda p: p.write_bytes(b"\x00" * 5), "only 5 bytes long"),
    (lambda p: p.write_bytes(b"<!DOCTYPE html><html>Sign in</html>"), "is a web page"),
])
def test_bad_clip_file_says_where_the_right_one_comes_from(tmp_path, make, message):
    from hyperlora_core.features.clip import ClipModelError, ClipVisionEncoder

    path = tmp_path / "clip-vit-large-patch14.safetensors"
    make(path)
    with pytest.raises(ClipModelError, match=rf"{message}.*not loaded.*huggingface.co/openai/clip-vit-large-patch14"):
        ClipVisionEncoder.load(path)


def test_clip_file_of_int8_weights_is_refused(tmp_path):
    from tiny_clip import make_tiny_clip
    from hyperlora_core.features.clip import ClipModelError, ClipVisionEncoder

    folder = make_tiny_clip(tmp_path / "clip")
    _rewrite(folder / "model.safetensors", lambda s: s.__setitem__(
        "vision_model.pre_layrnorm.weight", s["vision_model.pre_layrnorm.weight"].to(torch.int8)))
    with pytest.raises(ClipModelError, match="'vision_model.pre_layrnorm.weight' is stored as int8"):
        ClipVisionEncoder.load(folder)


@pytest.mark.parametrize("content", ["[1, 2]", "[" * 100_000])
def test_clip_config_that_is_not_an_object(tmp_path, content):
    from tiny_clip import make_tiny_clip
    from hyperlora_core.features.clip import ClipModelError, ClipVisionEncoder

    folder = make_tiny_clip(tmp_path / "clip")
    (folder / "config.json").write_text(content)
    with pytest.raises(ClipModelError, match="config.json.*openai/clip-vit-large-patch14"):
        ClipVisionEncoder.load(folder)


# -- photos ----------------------------------------------------------------------------------------

def test_decompression_bomb_photo(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("RGB", (200, 200)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 40,000 pixels is then over twice the limit
    with pytest.raises(InputError, match="decompression bomb.*not loaded.*Resize the photo"):
        load_image(path)


def test_dev_zero_as_a_photo_is_not_reported_as_missing():
    with pytest.raises(InputError) as caught:
        load_image("/dev/zero")
    assert "not a regular file" in str(caught.value) and "not found" not in str(caught.value)


def test_truncated_photo(tmp_path):
    from PIL import Image

    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match="damaged or truncated.*export the photo again"):
        load_image(path)


def test_photo_folder_given_as_a_photo(tmp_path):
    with pytest.raises(InputError, match="is a folder, not a file"):
        load_image(tmp_path)


def test_a_safetensors_header_that_looks_like_a_pickle_start_is_still_read(tmp_path):
    """A header of 640 bytes begins with 0x80 0x02, like a pickle: the structure decides, not the first bytes."""
    path = tmp_path / "x.safetensors"
    for pad in range(0, 700):
        save_file({"w": torch.zeros(2)}, str(path), metadata={"p": "x" * pad})
        if path.read_bytes()[:2] == b"\x80\x02":
            break
    else:
        pytest.skip("no padding gave a header of 0x280 bytes")
    assert sniff.file_problem(path) is None
