"""Load HyperLoRA and the model folders the loader nodes list and find (models/hyperlora, the reference
pack's layout, extra_model_paths.yaml, models/insightface), and the loaded network under ComfyUI's
model management."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from node_fixtures import FakePatcher, _photo, fake_comfy, loaded, nodes, pack, tiny_release  # noqa: F401


# -- model folders -----------------------------------------------------------------------------

def test_hyperlora_folders_listed_from_both_layouts_and_extra_paths(pack, fake_comfy, tiny_release):
    import shutil
    models = Path(fake_comfy.fp.models_dir)
    shutil.copytree(tiny_release, models / "hyperlora" / "mine")
    shutil.copytree(tiny_release, models / "hyper_lora" / "hyper_lora" / "sdxl_hyper_id_lora_v1_fidelity")
    extra = fake_comfy.root / "elsewhere"
    shutil.copytree(tiny_release, extra / "from_yaml")
    (models / "hyperlora" / "not_a_checkpoint").mkdir()
    fake_comfy.fp.folder_names_and_paths["hyperlora"] = ([str(extra)], set())  # as extra_model_paths.yaml does
    names = nodes(pack)["HLS_LoadHyperLoRA"].INPUT_TYPES()["required"]["hyperlora_name"][1]["options"]
    assert names == ["from_yaml", "mine", "sdxl_hyper_id_lora_v1_fidelity"]
    assert str(extra) in fake_comfy.fp.get_folder_paths("hyperlora")
    clip_paths = fake_comfy.fp.get_folder_paths("clip_vision")
    assert os.path.join(str(models), "hyper_lora", "clip_vit") in clip_paths


def test_face_model_folders_listed(pack, fake_comfy):
    folder = Path(fake_comfy.fp.models_dir) / "insightface" / "models"
    (folder / "antelopev2").mkdir(parents=True)
    (folder / "antelopev2" / "glintr100.onnx").write_bytes(b"x")
    (folder / "buffalo_l").mkdir()
    (folder / "buffalo_l" / "w600k_r50.onnx").write_bytes(b"x")
    (folder / "empty").mkdir()
    spec = nodes(pack)["HLS_LoadFaces"].INPUT_TYPES()["required"]["face_model"]
    assert spec[1]["options"] == ["antelopev2", "buffalo_l"]


def test_missing_hyperlora_folder_says_where_to_put_it(pack, fake_comfy):
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="bytedance-research/HyperLoRA"):
        nodes(pack)["HLS_LoadHyperLoRA"].execute("nowhere", "auto", "auto")


def test_missing_face_models_folder_explains_where_they_go(pack, fake_comfy):
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="models/insightface/models/antelopev2"):
        nodes(pack)["HLS_LoadFaces"].execute(_photo(True), "antelopev2", "CPU", "largest", True, False, "error")


# -- the loaded network ------------------------------------------------------------------------

def test_loaded_network_is_wrapped_for_comfyui_model_management(pack, loaded, fake_comfy):
    assert isinstance(loaded.patcher, FakePatcher)
    assert loaded.patcher.model.network is loaded.network
    loaded.patcher.model.device = torch.device("cpu")  # ModelPatcher sets this on the module it manages
    assert loaded.network.dtype == torch.float32
