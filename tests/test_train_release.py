"""train/release.py: the trained network exported as a release folder that HyperLoRA loads, and warm
starts from a release folder."""

from __future__ import annotations

import pytest
import torch

from hyperlora_core import HyperLoRA
from hyperlora_core.bench.synthetic import SMALL_MODULES, make_release_folder
from hyperlora_core.errors import CheckpointError
from hyperlora_core.train import Trainer
from tiny_training import cache, make_cache, one_thread, tiny_config, toy_modules  # noqa: F401


def test_saved_folder_loads_and_generates_the_trained_lora(tmp_path, cache):
    config = tiny_config(tmp_path, cache, output={"export_dtype": "float32"})
    trainer = Trainer(config)
    trainer.run()
    release = tmp_path / "out" / "release"
    assert sorted(p.name for p in release.iterdir()) == [
        "hyper_lora_modules.json", "hyper_lora_modules.safetensors", "id_projector.safetensors",
        "resampler.safetensors"]
    model = HyperLoRA.from_pretrained(release)
    item = trainer.dataset[0]
    arcface, clip = item["arcface"][None], item["clip_tokens"][None].float()
    lora = model.generate_id_lora(arcface, clip)
    with torch.no_grad():
        factors = trainer.net.id_bank.factors(trainer.net.id_coefficients(arcface, clip))
    name = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k"
    down, up = factors[name]
    torch.testing.assert_close(lora[f"{name}.lora_down.weight"], down[0].T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lora[f"{name}.lora_up.weight"], up[0].T, rtol=1e-4, atol=1e-5)
    assert up.abs().max() > 0  # the up bases left their zero start
    assert len(lora) == 3 * 4 * 6


def test_base_stage_adds_base_resampler_and_base_bases(tmp_path, cache):
    trainer = Trainer(tiny_config(tmp_path, cache, training={"stage": "base", "max_steps": 2}))
    trainer.run()
    model = HyperLoRA.from_pretrained(tmp_path / "out" / "release")
    assert model.has_base_lora and model.base_bank.rank == 2
    lora = model.generate_base_lora(trainer.dataset[0]["base_clip_tokens"][None].float())
    assert any(v.abs().max() > 0 for k, v in lora.items() if "lora_up" in k)


def test_warm_start_from_a_release_folder_reproduces_it(tmp_path):
    release = make_release_folder(tmp_path / "release", modules=toy_modules(), hyper_dim=8, rank=4,
                                  with_base=True, dtype=torch.float32, dim=32, depth=1, inner=64)
    cache = make_cache(tmp_path / "cache", 2, clip_width=1024)
    config = tiny_config(tmp_path, cache, network={"init_from": str(release)},
                         training={"max_steps": 1, "lr": 1e-12}, output={"export_dtype": "float32"})
    trainer = Trainer(config)
    assert trainer.net.has_base and trainer.net.shape.clip_width == 1024 and trainer.net.shape.dim == 32
    trainer.run()
    original = HyperLoRA.from_pretrained(release)
    exported = HyperLoRA.from_pretrained(tmp_path / "out" / "release")
    item = trainer.dataset[1]
    a = original.generate_id_lora(item["arcface"][None], item["clip_tokens"][None].float())
    b = exported.generate_id_lora(item["arcface"][None], item["clip_tokens"][None].float())
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-5)
    assert exported.has_base_lora  # warm-started Base-LoRA parts are exported again


def test_warm_start_for_another_unet_names_the_missing_modules(tmp_path, cache):
    release = make_release_folder(tmp_path / "sdxl", modules=SMALL_MODULES[:2], hyper_dim=8, rank=4,
                                  dim=32, depth=1, inner=64)
    with pytest.raises(CheckpointError, match="lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1"):
        Trainer(tiny_config(tmp_path, cache, network={"init_from": str(release)}))
