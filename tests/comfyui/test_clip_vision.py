"""The CLIP tokens the ID embedding takes from ComfyUI's CLIP_VISION are the ones the reference feeds
HyperLoRA: Hugging Face CLIPImageProcessor (OpenAI ViT-L/14 settings) + CLIPVisionModel's
hidden_states[-2] (the penultimate layer, before the final layer norm).

A small random CLIP vision tower is made with transformers, its weights loaded into ComfyUI's
ClipVisionModel (the class 'Load CLIP Vision' returns), and the two paths compared on face-sized crops.
Runs in this process with ComfyUI on sys.path (CPU), next to the server tests.
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import torch
from hls_comfy import COMFYUI_DIR
from pack import load_pack

CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, image_size=224,
              patch_size=14, projection_dim=32, hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)


@pytest.fixture(scope="module")
def comfy_clip_vision():
    if COMFYUI_DIR not in sys.path:
        sys.path.insert(0, COMFYUI_DIR)
    from comfy.cli_args import args
    args.cpu = True  # before comfy.model_management is imported
    import comfy.clip_vision
    return comfy.clip_vision


@pytest.fixture(scope="module")
def identity_module():
    name = "hyperlora_studio_clip_test"
    load_pack(name)
    return importlib.import_module(f"{name}.nodes.identity")


def _processor():
    import transformers
    from PIL import Image
    return transformers.CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": 224}, resample=Image.BICUBIC, do_center_crop=True,
        crop_size={"height": 224, "width": 224}, do_rescale=True, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])


def test_comfyui_penultimate_tokens_equal_hf_hidden_states_minus_2(comfy_clip_vision, identity_module, tmp_path,
                                                                   monkeypatch):
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    torch.manual_seed(0)
    hf = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**CONFIG)).eval()
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({**CONFIG, "model_type": "clip_vision_model"}))
    # ComfyUI keeps CLIP vision in float16 where it can; compare the maths in float32.
    monkeypatch.setattr(comfy_clip_vision.comfy.model_management, "text_encoder_dtype", lambda *a, **k: torch.float32)
    ours = comfy_clip_vision.ClipVisionModel(str(config_path))
    missing, _ = ours.load_sd(hf.state_dict())
    assert not missing

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(3)]
    pixel_values = _processor()(images=[Image.fromarray(c) for c in crops], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hf_out = hf(pixel_values=pixel_values, output_hidden_states=True)
    expected = hf_out.hidden_states[-2]

    got = ours.encode_image(identity_module.clip_input(crops), crop=False)["penultimate_hidden_states"]
    assert got.shape == expected.shape == (3, 257, CONFIG["hidden_size"])
    torch.testing.assert_close(got.float(), expected, atol=1e-4, rtol=1e-4)
    # and it is neither the last layer nor the post-layernorm output
    assert not torch.allclose(got.float(), hf_out.last_hidden_state, atol=1e-2)
    assert not torch.allclose(got.float(), hf_out.hidden_states[-1], atol=1e-2)


def test_resized_crops_match_the_hf_processor_within_one_level(comfy_clip_vision, identity_module):
    """Crops of other sizes: PIL bicubic resize of the uint8 crop then centre crop, as the reference's
    processor did; today's transformers rounds a few pixels differently, by at most one 8-bit level."""
    pytest.importorskip("transformers")
    from PIL import Image

    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (300, 300, 3), dtype=np.uint8), rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
             rng.integers(0, 256, (260, 330, 3), dtype=np.uint8)]
    expected = _processor()(images=[Image.fromarray(c) for c in crops], return_tensors="pt")["pixel_values"]
    got = comfy_clip_vision.clip_preprocess(identity_module.clip_input(crops), crop=False)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    assert got.shape == expected.shape
    assert ((got - expected) * std).abs().max() <= 1 / 255 + 1e-6


def test_ci_stand_in_gives_the_tokens_of_comfyuis_clip_vision(comfy_clip_vision, identity_module, tmp_path,
                                                              monkeypatch):
    """tests/clip_vision_standin.py (the CI tier's CLIP_VISION) against ComfyUI's ClipVisionModel on the
    same small ViT-L/14-wide tower, for a batch of crops as the ID Embedding node sends them."""
    pytest.importorskip("transformers")
    from clip_vision_standin import StandInClipVision
    from safetensors.torch import load_file
    from tiny_clip import make_tiny_clip

    folder = make_tiny_clip(tmp_path / "clip")
    monkeypatch.setattr(comfy_clip_vision.comfy.model_management, "text_encoder_dtype", lambda *a, **k: torch.float32)
    comfy = comfy_clip_vision.ClipVisionModel(str(folder / "config.json"))
    missing, _ = comfy.load_sd(load_file(str(folder / "model.safetensors")))
    assert not missing
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 256, (224 + 40 * i, 224 + 40 * i, 3), dtype=np.uint8) for i in range(3)]
    image = identity_module.clip_input(crops)
    expected = comfy.encode_image(image, crop=False)["penultimate_hidden_states"].float()
    got = StandInClipVision(folder).encode_image(image, crop=False)["penultimate_hidden_states"]
    assert got.shape == expected.shape == (3, 257, 1024)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
