"""features/clip.py: the CLIP vision tower loads from the layouts it is found in, and a wrong CLIP file
says where the right one comes from."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from damaged_files import legacy_pickle as _legacy_pickle, rewrite as _rewrite
from hyperlora_core.features.clip import ClipVisionEncoder
from tiny_clip import make_tiny_clip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny CLIP where the reference pack keeps it, under a models folder (as the generate tests lay it out)."""
    models = tmp_path_factory.mktemp("clip") / "models"
    make_tiny_clip(models / "hyper_lora" / "clip_vit" / "clip_vit_large_14")
    return {"models": models}


def test_full_openai_clip_layout_loads_only_the_vision_tower(setup, tmp_path):
    """OpenAI's repository: a CLIPConfig with text and vision parts, text and vision weights in one file."""
    from safetensors.torch import save_file

    tiny = setup["models"] / "hyper_lora" / "clip_vit" / "clip_vit_large_14"
    folder = tmp_path / "clip_vit_large_14"
    folder.mkdir()
    vision = json.loads((tiny / "config.json").read_text())
    text = {"hidden_size": 768, "model_type": "clip_text_model", "num_hidden_layers": 12}
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 768,
         "text_config": text, "vision_config": vision}))
    weights = load_file(str(tiny / "model.safetensors"))
    weights.update({"text_model.embeddings.token_embedding.weight": torch.zeros(10, 768),
                    "logit_scale": torch.tensor(2.6592), "text_projection.weight": torch.zeros(768, 768)})
    save_file(weights, str(folder / "model.safetensors"))
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    full = ClipVisionEncoder.load(folder).encode(pixels)
    assert full.shape == (1, 257, 1024)
    assert torch.equal(full, ClipVisionEncoder.load(tiny).encode(pixels))


# -- wrong CLIP files --------------------------------------------------------------------------


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
