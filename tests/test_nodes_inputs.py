"""The node cases of the bad-input sweep (issue 15): a missing or wrong input is refused with a message
that names the input and what to connect (nodes/inputs.py)."""

from __future__ import annotations

import pytest
import torch
from node_fixtures import (FakeClip, FakePatcher, _error, _identity, _node, fake_comfy, id_lora,  # noqa: F401
                           loaded, pack, tiny_release)


def test_generate_without_identity_names_the_input_and_what_to_connect(pack, loaded):
    with pytest.raises(_error(pack), match=r"input 'identity' needs a HYPERLORA_IDENTITY but got nothing.*"
                                           r"connect the output of 'HyperLoRA ID Embedding'"):
        _node(pack, "HLS_GenerateLoRA").execute(loaded, None)


def test_generate_given_the_wrong_objects(pack, loaded):
    with pytest.raises(_error(pack), match=r"input 'hyperlora' needs a HYPERLORA_MODEL but got a str.*'Load HyperLoRA'"):
        _node(pack, "HLS_GenerateLoRA").execute("tiny", _identity(pack))
    with pytest.raises(_error(pack), match=r"input 'identity' .* got a dict"):
        _node(pack, "HLS_GenerateLoRA").execute(loaded, {"arcface": None})


@pytest.mark.parametrize("model, found", [(None, "nothing"), ("sdxl.safetensors", "a str"), (torch.zeros(1), "a Tensor")])
def test_apply_given_something_that_is_not_a_model(pack, fake_comfy, id_lora, model, found):
    with pytest.raises(_error(pack), match=rf"input 'model' needs a MODEL .* got {found}.*connect the MODEL output "
                                           r"of 'Load Checkpoint'"):
        _node(pack, "HLS_ApplyLoRA").execute(model, id_lora, 0.85)


def test_apply_given_something_that_is_not_a_lora(pack, fake_comfy):
    model = FakePatcher(fake_comfy.model_base.SDXL())
    with pytest.raises(_error(pack), match=r"input 'lora' needs a LORA_MODEL .* got a str.*id_lora output"):
        _node(pack, "HLS_ApplyLoRA").execute(model, "my_lora", 0.85)
    with pytest.raises(_error(pack), match=r"input 'base_lora' needs a LORA_MODEL .* got a list"):
        _node(pack, "HLS_ApplyLoRA").execute(model, {"a.alpha": torch.tensor(1.0)}, 0.85, base_lora=[1])
    with pytest.raises(_error(pack), match=r"input 'strength' needs a number but got a str"):
        _node(pack, "HLS_ApplyLoRA").execute(model, {"a.alpha": torch.tensor(1.0)}, "0.85")


def test_save_lora_without_a_lora(pack, fake_comfy):
    with pytest.raises(_error(pack), match=r"input 'lora' needs a LORA_MODEL .* got nothing"):
        _node(pack, "HLS_SaveLoRA").execute(None, "loras/x")


def test_prompt_given_the_wrong_clip_or_text(pack):
    with pytest.raises(_error(pack), match=r"input 'clip' needs a CLIP .* got a str.*'Load Checkpoint'"):
        _node(pack, "HLS_TriggerPrompt").execute("clip", "a photo")
    with pytest.raises(_error(pack), match=r"input 'text' needs text but got a int"):
        _node(pack, "HLS_TriggerPrompt").execute(FakeClip(), 5)


def test_identity_nodes_given_nothing(pack, fake_comfy):
    with pytest.raises(_error(pack), match=r"input 'faces' needs HYPERLORA_FACES but got nothing.*'Load Faces"):
        _node(pack, "HLS_IDEmbedding").execute(None, object())
    with pytest.raises(_error(pack), match=r"input 'identity' needs a HYPERLORA_IDENTITY but got a str"):
        _node(pack, "HLS_SaveIdentity").execute("alice", "hyperlora_identities/alice")
    with pytest.raises(_error(pack), match=r"Identity 1 to blend is NoneType"):
        _node(pack, "HLS_BlendIdentities").execute(None, 0.5, _identity(pack), 0.5)
    with pytest.raises(_error(pack), match=r"input 'identity_name' needs the name of a saved identity file"):
        _node(pack, "HLS_LoadIdentity").execute(None)


def test_load_hyperlora_without_a_name(pack, fake_comfy):
    with pytest.raises(_error(pack), match=r"input 'hyperlora_name' needs the name of a checkpoint folder.*"
                                           r"bytedance-research/HyperLoRA"):
        _node(pack, "HLS_LoadHyperLoRA").execute(None, "auto", "auto")


def test_load_faces_given_a_string_as_images(pack, fake_comfy):
    with pytest.raises(_error(pack), match=r"input 'images' needs an IMAGE batch but got a str.*'Load Image'"):
        _node(pack, "HLS_LoadFaces").execute("photo.jpg", "antelopev2")
    with pytest.raises(_error(pack), match=r"input 'images_2' needs an IMAGE batch but got a Tensor"):
        _node(pack, "HLS_LoadFaces").execute(torch.zeros(1, 64, 64, 3), "antelopev2", images_2=torch.zeros(3))
