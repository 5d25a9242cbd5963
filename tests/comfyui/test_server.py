"""The pack inside a real ComfyUI server started with --cpu: import, /object_info, every shipped
workflow through POST /prompt, the LoRA landing in the UNet, the saved file, the no-face error.

The SDXL MODEL is the test pack's tiny SDXL-architecture UNet built through ComfyUI's own SDXL
classes (ComfyUI recognises SDXL checkpoint files only at full size); the CLIP vision model is
ComfyUI's ClipVisionModel with 3 layers; the HyperLoRA checkpoint is random weights in the release
layout for that UNet's 22 attention modules; the face models are the tiny antelopev2 stand-ins.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hls_comfy import (CHECKPOINT_NAME, GRAPHS, OWN_TESTS, PACK_DIR_NAME, combo_options, execution_error, graph_id,
                       lora_chain, to_api)
from node_contract import load_contract

OUR_NODES = {node_id: entry["display_name"] for node_id, entry in load_contract().items()}
TINY_MODULES = 22


def test_pack_imports_with_no_import_failure(server):
    """No custom node pack failed to import. ComfyUI's own optional extras (nodes_audio.py without
    torchaudio, say) log "IMPORT FAILED: <file>" too; those are not custom nodes and are not ours."""
    log = server.log
    custom = [line for line in log.splitlines() if "custom_nodes" in line]
    failed = [line for line in custom if "IMPORT FAILED" in line or "Cannot import" in line]
    assert not failed, log
    assert any(f"custom_nodes/{PACK_DIR_NAME}" in line for line in custom), log


def test_object_info_lists_every_node(object_info):
    for node_id, name in OUR_NODES.items():
        info = object_info[node_id]
        assert info["display_name"] == name
        assert info["description"] and info["category"].startswith("HyperLoRA Studio")
        assert PACK_DIR_NAME in info["python_module"]


def test_model_folders_are_listed_through_folder_paths(object_info):
    names = combo_options(object_info["HLS_LoadHyperLoRA"]["input"]["required"]["hyperlora_name"])
    assert names == [CHECKPOINT_NAME]  # found in the reference pack's models/hyper_lora/hyper_lora
    assert combo_options(object_info["HLS_LoadFaces"]["input"]["required"]["face_model"]) == ["antelopev2"]
    clip_names = combo_options(object_info["CLIPVisionLoader"]["input"]["required"]["clip_name"])
    assert "clip_vit_large_14/model.safetensors" in clip_names
    assert "clip-vit-large-patch14.safetensors" in clip_names  # the name the shipped workflows use


def _check_success(entry: dict, name: str) -> None:
    error = execution_error(entry)
    assert entry["status"]["status_str"] == "success", (name, error)


@pytest.mark.parametrize("path", [p for p in GRAPHS if p.stem not in OWN_TESTS], ids=graph_id)
def test_shipped_workflow_runs(server, object_info, path):
    prompt = to_api(json.loads(path.read_text()), object_info)
    entry = server.run(prompt)
    _check_success(entry, path.name)
    if "save" in path.stem:
        saved = entry["outputs"]
        texts = [t for out in saved.values() for t in out.get("text", [])]
        assert any(t.startswith("loras/hyperlora_") for t in texts), texts
        assert any(t.startswith("hyperlora_identities/person_") for t in texts), texts
        out = server.base / "output"
        assert list((out / "loras").glob("hyperlora_*.safetensors"))
        assert list((out / "hyperlora_identities").glob("person_*.safetensors"))
    if "KSampler" in {n["class_type"] for n in prompt.values()}:
        images = [i for out in entry["outputs"].values() for i in out.get("images", [])]
        assert images, "the workflow saved an image"


def _probe(entry: dict, label: str) -> dict:
    for out in entry["outputs"].values():
        for report in out.get("hls_probe", []):
            if report["label"] == label:
                return report
    raise AssertionError(f"no probe {label!r} in {list(entry['outputs'])}")


def test_apply_patches_every_key_changes_the_unet_and_equals_the_saved_file(server):
    prompt = lora_chain()
    prompt.update({
        "11": {"class_type": "HLS_ApplyLoRA", "inputs": {"model": ["10", 0], "lora": ["6", 0], "strength": 0.85,
                                                         "base_lora": ["6", 1], "base_strength": 1.0}},
        "12": {"class_type": "HLSTest_UNetProbe", "inputs": {"model": ["10", 0], "label": "plain"}},
        "13": {"class_type": "HLSTest_UNetProbe", "inputs": {"model": ["11", 0], "label": "applied"}},
        "14": {"class_type": "HLS_SaveLoRA", "inputs": {"lora": ["6", 0], "filename_prefix": "loras/probe"}},
    })
    entry = server.run(prompt)
    _check_success(entry, "apply")
    plain, applied = _probe(entry, "plain"), _probe(entry, "applied")
    saved_name = entry["outputs"]["14"]["text"][0]
    from safetensors.torch import load_file
    lora = load_file(str(server.base / "output" / saved_name))
    layers = {k[: -len(".lora_down.weight")] for k in lora if k.endswith(".lora_down.weight")}
    assert len(layers) == 4 * TINY_MODULES
    assert plain["patched"] == []
    assert len(applied["patched"]) == len(layers), "every generated layer is patched"
    assert all(k.startswith("diffusion_model.") and k.endswith(".weight") for k in applied["patched"])
    out_plain, out_applied = torch.tensor(plain["output"]), torch.tensor(applied["output"])
    assert torch.isfinite(out_applied).all()
    assert (out_applied - out_plain).abs().max() > 1e-4, "the LoRA changes the UNet output"

    # The saved file through the stock LoraLoaderModelOnly gives the same model as Apply.
    lora_name = Path(saved_name).name  # output/loras is a LoRA folder in this server's config
    file_prompt = {
        "10": {"class_type": "HLSTest_TinySDXL", "inputs": {"seed": 0}},
        "20": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["10", 0], "lora_name": lora_name,
                                                               "strength_model": 0.85}},
        "21": {"class_type": "HLSTest_UNetProbe", "inputs": {"model": ["20", 0], "label": "file"}},
    }
    entry = server.run(file_prompt)
    _check_success(entry, "LoraLoaderModelOnly")
    from_file = _probe(entry, "file")
    assert from_file["patched"] == applied["patched"]
    torch.testing.assert_close(torch.tensor(from_file["output"]), out_applied, rtol=0, atol=1e-6)


def test_core_load_lora_model_node_accepts_the_generated_lora(server, object_info):
    if "LoraModelLoader" not in object_info:
        pytest.skip("this ComfyUI has no 'Load LoRA Model' node")
    prompt = lora_chain()
    prompt.update({
        "11": {"class_type": "LoraModelLoader", "inputs": {"model": ["10", 0], "lora": ["6", 0], "strength_model": 0.85}},
        "12": {"class_type": "HLS_ApplyLoRA", "inputs": {"model": ["10", 0], "lora": ["6", 0], "strength": 0.85}},
        "13": {"class_type": "HLSTest_UNetProbe", "inputs": {"model": ["11", 0], "label": "core"}},
        "14": {"class_type": "HLSTest_UNetProbe", "inputs": {"model": ["12", 0], "label": "ours"}},
    })
    entry = server.run(prompt)
    _check_success(entry, "LoraModelLoader")
    torch.testing.assert_close(torch.tensor(_probe(entry, "core")["output"]),
                               torch.tensor(_probe(entry, "ours")["output"]), rtol=0, atol=1e-6)


def test_photo_without_a_face_gives_our_error_message(server):
    prompt = lora_chain("no_face.png")
    prompt = {k: v for k, v in prompt.items() if k in ("1", "2")}
    prompt["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 1]}}
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "HLS_LoadFaces"
    assert error["exception_type"].endswith("NoFaceError")
    assert "HyperLoRA found no face in images" in error["exception_message"]
    assert "if_no_face" in error["exception_message"]


def test_apply_refuses_a_model_that_is_not_sdxl(server):
    prompt = lora_chain()
    prompt["10"] = {"class_type": "HLSTest_TinySD15", "inputs": {"seed": 0}}
    prompt["11"] = {"class_type": "HLS_ApplyLoRA", "inputs": {"model": ["10", 0], "lora": ["6", 0], "strength": 0.85}}
    prompt["12"] = {"class_type": "HLSTest_UNetProbe", "inputs": {"model": ["11", 0], "label": "sd15"}}
    entry = server.run(prompt)
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "HLS_ApplyLoRA", error
    assert "SD15" in error["exception_message"] and "SDXL" in error["exception_message"]


def test_unsaved_prefix_outside_output_is_refused(server):
    prompt = lora_chain()
    prompt["14"] = {"class_type": "HLS_SaveLoRA", "inputs": {"lora": ["6", 0], "filename_prefix": "../../escape"}}
    del prompt["10"]
    entry = server.run(prompt)
    error = execution_error(entry)
    assert error is not None and "outside ComfyUI's output folder" in error["exception_message"]
    assert not list(server.base.parent.glob("escape*"))
