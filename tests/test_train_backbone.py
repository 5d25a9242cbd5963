"""train/backbone.py: the base model must be SDXL (anything else is named), and a whole SDXL pipeline
folder trains from photos to a release (a tiny one, skipped without diffusers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hyperlora_core import HyperLoRA
from hyperlora_core.bench.synthetic import SMALL_MODULES, make_release_folder
from hyperlora_core.errors import CheckpointError
from hyperlora_core.train import Trainer
from hyperlora_core.train.backbone import check_sdxl
from tiny_training import face_config, face_data, one_thread  # noqa: F401


@pytest.mark.parametrize("key, found", [
    ("cond_stage_model.transformer.text_model.embeddings.position_ids", "Stable Diffusion 1.x"),
    ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "a LoRA"),
    ("conditioner.embedders.0.model.ln_final.weight", "SDXL refiner"),
    ("double_blocks.0.img_attn.qkv.weight", "Flux"),
])
def test_base_checkpoint_of_the_wrong_kind_names_what_was_found(tmp_path, key, found):
    path = tmp_path / "model.safetensors"
    save_file({key: torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointError, match=found):
        check_sdxl(path)
    good = tmp_path / "sdxl.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}, str(good))
    check_sdxl(good)
    release = make_release_folder(tmp_path / "release", modules=SMALL_MODULES[:1], hyper_dim=4, rank=2,
                                  dim=64, depth=1, inner=64)
    with pytest.raises(CheckpointError, match="HyperLoRA release folder"):
        check_sdxl(release)


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory) -> Path:
    """A whole SDXL pipeline in the diffusers folder layout, a few hundred kB (character tokenizer)."""
    import string

    diffusers = pytest.importorskip("diffusers")
    import transformers

    root = tmp_path_factory.mktemp("sdxl")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ",.":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=16)
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 16, "projection_dim": 32, "bos_token_id": 0,
            "eos_token_id": 1, "pad_token_id": 1}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pipe = diffusers.StableDiffusionXLPipeline(
            vae=diffusers.AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                                        norm_num_groups=8, sample_size=32),
            text_encoder=transformers.CLIPTextModel(transformers.CLIPTextConfig(**text)),
            text_encoder_2=transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**text)),
            tokenizer=tokenizer, tokenizer_2=tokenizer,
            unet=diffusers.UNet2DConditionModel(
                sample_size=16, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(16, 32), layers_per_block=1,
                cross_attention_dim=64, attention_head_dim=(1, 2), addition_embed_type="text_time",
                addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32, norm_num_groups=8,
                use_linear_projection=True),
            scheduler=diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                                       beta_schedule="scaled_linear"))
    pipe.save_pretrained(str(root / "model"))
    return root / "model"


def test_sdxl_folder_from_photos_to_release(tmp_path, tiny_sdxl, face_data):
    config = face_config(tmp_path, face_data)
    config.model.kind, config.model.path, config.model.factory = "sdxl", str(tiny_sdxl), ""
    config.output.sample_every, config.output.sample_steps = 1, 2
    trainer = Trainer(config)
    assert [t.spec.name for t in trainer.targets] == [
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1",
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2",
        "lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_attn1",
        "lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_attn2",
        "lora_unet_up_blocks_0_attentions_1_transformer_blocks_0_attn1",
        "lora_unet_up_blocks_0_attentions_1_transformer_blocks_0_attn2",
    ]
    losses = trainer.run()
    assert len(losses) == 1 and trainer.dataset[0]["latents"].shape == (4, 16, 16)
    assert len(list((tmp_path / "out" / "samples").glob("*.png"))) == 1
    model = HyperLoRA.from_pretrained(tmp_path / "out" / "release")
    assert [m.name for m in model.target_modules] == [t.spec.name for t in trainer.targets]
