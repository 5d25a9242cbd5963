"""Generate, Apply and Save HyperLoRA: the LoRA matches the core's, lands on every layer of an SDXL
MODEL (a patched copy) or is refused with a message, and is saved as a kohya file; a NaN LoRA is
neither applied nor saved."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from node_fixtures import (FakePatcher, _all_files, _error, _identity, _node, fake_comfy, id_lora, loaded,  # noqa: F401
                           nodes, pack, tiny_release)
from safetensors import safe_open
from safetensors.torch import load_file


# -- generate ----------------------------------------------------------------------------------

def test_generate_runs_under_model_management_and_matches_the_core(pack, loaded, fake_comfy):
    identity = _identity(pack)
    id_lora, base_lora = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, identity)
    assert fake_comfy.mm.loads and fake_comfy.mm.loads[-1][0] == [loaded.patcher]
    expected = loaded.network.generate_id_lora(identity.arcface, identity.clip_tokens, identity.weights)
    assert list(id_lora) == list(expected)
    for k in expected:
        torch.testing.assert_close(id_lora[k], expected[k])
    assert len(base_lora) == 0  # the checkpoint has no Base-LoRA weights, like the release
    assert isinstance(id_lora, dict)


def test_generate_shows_the_photos_and_layers_it_used(pack, loaded, fake_comfy):
    out = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack, n=3))
    id_lora, base = out
    layers = len(id_lora) // 3  # lora_down, lora_up and alpha per layer
    (text,) = out.ui.as_dict()["text"]
    assert f"ID-LoRA: {layers} layers from 3 photos" in text
    assert "Base-LoRA: none" in text and "network: tiny" in text


def test_base_lora_is_generated_and_applied_when_the_checkpoint_has_it(pack, fake_comfy, monkeypatch):
    from checkpoints import make_release_folder
    make_release_folder(Path(fake_comfy.fp.models_dir) / "hyperlora" / "with_base", with_base=True,
                        dim=64, depth=1, inner=64, hyper_dim=16, seed=9)
    (handle,) = nodes(pack)["HLS_LoadHyperLoRA"].execute("with_base", "float32", "cpu")
    identity = _identity(pack, 2)
    (id_lora, empty) = nodes(pack)["HLS_GenerateLoRA"].execute(handle, identity)
    assert len(empty) == 0  # the identity has no Base-LoRA crops
    identity.base_clip_tokens = identity.clip_tokens.flip(0)
    (id_lora, base) = nodes(pack)["HLS_GenerateLoRA"].execute(handle, identity)
    assert set(base) == set(id_lora) and base.kind == "base"
    assert base[next(k for k in base if k.endswith("lora_down.weight"))].shape[0] == id_lora[
        next(k for k in id_lora if k.endswith("lora_down.weight"))].shape[0] // 2

    layers = sorted({k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in id_lora})
    lora_mod = types.ModuleType("comfy.lora")
    lora_mod.model_lora_keys_unet = lambda model, key_map: {n: f"diffusion_model.{n}.weight" for n in layers}
    lora_mod.load_lora = lambda lora, to_load, log_missing=True: {v: ("lora", k) for k, v in to_load.items()}
    monkeypatch.setitem(sys.modules, "comfy.lora", lora_mod)

    class Unet(fake_comfy.model_base.SDXL):
        def state_dict(self, *a, **k):
            return {f"diffusion_model.{n}.weight": None for n in layers}
    model = FakePatcher(Unet())
    (patched,) = nodes(pack)["HLS_ApplyLoRA"].execute(model, id_lora, 0.8, base_lora=base, base_strength=0.5)
    assert all([s for s, _ in v] == [0.8, 0.5] for v in patched.patches.values())
    assert len(patched.patches) == len(layers)


# -- apply -------------------------------------------------------------------------------------

def test_apply_refuses_a_model_that_is_not_sdxl_naming_it(pack, fake_comfy):
    class SD15(torch.nn.Module):
        pass

    class BaseModel(fake_comfy.model_base.BaseModel):
        model_config = SD15()
    model = FakePatcher(BaseModel())
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="SD15"):
        nodes(pack)["HLS_ApplyLoRA"].execute(model, {"x.alpha": torch.tensor(1.0)}, 0.85)


def test_apply_refuses_lora_layers_missing_from_the_model(pack, fake_comfy, monkeypatch):
    lora_mod = types.ModuleType("comfy.lora")
    lora_mod.model_lora_keys_unet = lambda model, key_map: {"lora_unet_a": "diffusion_model.a.weight"}
    lora_mod.load_lora = lambda lora, to_load, log_missing=True: {v: ("lora", k) for k, v in to_load.items()}
    monkeypatch.setitem(sys.modules, "comfy.lora", lora_mod)

    class Unet(fake_comfy.model_base.SDXL):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 2)

        def state_dict(self, *a, **k):
            return {"diffusion_model.a.weight": self.a.weight}
    model = FakePatcher(Unet())
    lora = {f"lora_unet_{n}.{s}": torch.zeros(1) for n in ("a", "b")
            for s in ("lora_down.weight", "lora_up.weight", "alpha")}
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="1 of the 2 layers"):
        nodes(pack)["HLS_ApplyLoRA"].execute(model, lora, 0.85)
    del lora["lora_unet_b.lora_down.weight"], lora["lora_unet_b.lora_up.weight"], lora["lora_unet_b.alpha"]
    (patched,) = nodes(pack)["HLS_ApplyLoRA"].execute(model, lora, -0.5)
    assert patched is not model and model.patches == {}
    assert patched.patches["diffusion_model.a.weight"][0][0] == -0.5


def test_apply_refuses_an_empty_lora(pack, fake_comfy):
    model = FakePatcher(fake_comfy.model_base.SDXL())
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="empty"):
        nodes(pack)["HLS_ApplyLoRA"].execute(model, {}, 0.85)


def test_apply_refuses_a_nan_lora(pack, fake_comfy, id_lora):
    model = FakePatcher(fake_comfy.model_base.SDXL())
    key = next(iter(id_lora))
    id_lora[key] = torch.full_like(id_lora[key], float("nan"))
    with pytest.raises(_error(pack), match=r"ID-LoRA \(made from the checkpoint 'tiny'\) holds NaN"):
        _node(pack, "HLS_ApplyLoRA").execute(model, id_lora, 0.85)
    assert model.patches == {}


# -- save --------------------------------------------------------------------------------------

def test_save_lora_writes_kohya_file_with_trigger_words_and_never_overwrites(pack, loaded, fake_comfy):
    id_lora, _ = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack))
    saver = nodes(pack)["HLS_SaveLoRA"]
    first = saver.execute(id_lora, "loras/person")[0]
    second = saver.execute(id_lora, "loras/person")[0]
    assert first != second
    out = Path(fake_comfy.fp.output_dir)
    assert first == "loras/person_00001_.safetensors" and (out / second).is_file()
    tensors = load_file(str(out / first))
    assert set(tensors) == set(id_lora)
    with safe_open(str(out / first), "pt") as f:
        meta = f.metadata()
    assert meta["hyperlora.trigger_words"] == pack.hyperlora_core.TRIGGER_WORDS
    assert meta["hyperlora.source_checkpoint"] == "tiny"


def test_save_refuses_empty_base_lora(pack, loaded, fake_comfy):
    _, base = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack))
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="empty"):
        nodes(pack)["HLS_SaveLoRA"].execute(base, "loras/base")


def test_save_refuses_a_nan_lora_and_writes_nothing(pack, fake_comfy, id_lora):
    key = next(k for k in id_lora if k.endswith("lora_down.weight"))
    id_lora[key] = id_lora[key].clone().fill_(float("inf"))
    with pytest.raises(_error(pack), match="holds NaN or infinite values.*not used"):
        _node(pack, "HLS_SaveLoRA").execute(id_lora, "loras/person")
    assert _all_files(Path(fake_comfy.fp.output_dir)) == []
