"""Loading a release folder (model/checkpoint.py): the modules list, and every damaged, missing or
foreign file gives an error that names the problem and the fix."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from checkpoints import HF, SMALL_MODULES
from damaged_files import legacy_pickle as _legacy_pickle, rewrite as _rewrite
from hyperlora_core import CheckpointError, HyperLoRA
from hyperlora_core.files import sniff
from hyperlora_core.model.checkpoint import read_modules, write_modules_json


def test_json_order_is_kept_not_sorted(tmp_path):
    modules = list(reversed(SMALL_MODULES))
    write_modules_json(modules, tmp_path / "m.json")
    assert [m.name for m in read_modules(tmp_path / "m.json")] == [m.name for m in modules]


# -- missing, truncated and mismatched files ---------------------------------------------------


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


# -- files that are not safetensors --------------------------------------------------------------


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
