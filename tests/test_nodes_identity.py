"""HyperLoRA ID Embedding (faces + CLIP vision -> identity, the crops resized as the core resizes them),
and Blend, Save and Load HyperLoRA Identity."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from node_fixtures import (FakeClipVision, _identity, _photo, face_models, fake_comfy, nodes, pack,  # noqa: F401
                           tiny_antelopev2)
from pack import PACK


# -- ID embedding, with the tiny antelopev2 models -----------------------------------------------

def test_faces_to_identity_with_previews(pack, fake_comfy, face_models):
    photos = torch.cat([_photo(True, 0), _photo(True, 1)])
    faces, preview = nodes(pack)["HLS_LoadFaces"].execute(
        photos, "antelopev2", "CPU", "largest", True, False, "error", images_2=_photo(True, 2))
    assert len(faces) == 3 and faces.sources == ["images[0]", "images[1]", "images_2"]
    assert preview.shape[0] == 3 and preview.shape[-1] == 3 and preview.dtype == torch.float32
    clip = FakeClipVision()
    (identity,) = nodes(pack)["HLS_IDEmbedding"].execute(faces, clip)
    assert identity.num_photos == 3
    assert tuple(identity.clip_tokens.shape) == (3, 257, 1024)
    assert identity.base_clip_tokens is None  # base_lora_features is off by default
    torch.testing.assert_close(identity.arcface.norm(dim=-1), torch.ones(3))
    # crops reach CLIP already at 224 x 224, so ComfyUI's preprocessing only normalises
    assert all(shape == (3, 224, 224, 3) and crop is False for shape, crop in clip.seen)


def test_wrong_clip_vision_model_is_explained(pack, fake_comfy, face_models):
    faces, _ = nodes(pack)["HLS_LoadFaces"].execute(_photo(True), "antelopev2", "CPU", "largest",
                                                         True, False, "error")
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="ViT-L/14"):
        nodes(pack)["HLS_IDEmbedding"].execute(faces, FakeClipVision(width=1280))


def test_clip_input_equals_core_clip_pixel_values(pack):
    pixels = importlib.import_module(f"{PACK}.hyperlora_core.features.clip_pixels")
    identity_mod = importlib.import_module(f"{PACK}.nodes.identity")
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (300, 300, 3), dtype=np.uint8), rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)]
    ours = identity_mod.clip_input(crops)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    # ComfyUI's clip_preprocess on a 224 x 224 input: round to 8 bits, then normalise
    normalised = ((ours * 255).round() / 255 - mean) / std
    torch.testing.assert_close(normalised.permute(0, 3, 1, 2), pixels.clip_pixel_values(crops), atol=1e-5, rtol=0)


# -- blend, save, load -------------------------------------------------------------------------

def test_identity_save_load_round_trip_and_blend(pack, fake_comfy):
    a, b = _identity(pack, 1, seed=1), _identity(pack, 2, seed=2)
    saved = nodes(pack)["HLS_SaveIdentity"].execute(a, "hyperlora_identities/alice")[0]
    listed = nodes(pack)["HLS_LoadIdentity"].INPUT_TYPES()["required"]["identity_name"][1]["options"]
    assert "alice_00001_.safetensors" in [Path(n).name for n in listed]
    (back,) = nodes(pack)["HLS_LoadIdentity"].execute(Path(saved).name)
    torch.testing.assert_close(back.arcface, a.arcface)
    (mixed,) = nodes(pack)["HLS_BlendIdentities"].execute(a, 0.25, b, 0.75)
    assert mixed.num_photos == 3
    torch.testing.assert_close(mixed.weights, torch.tensor([0.25, 0.375, 0.375]))
    (three,) = nodes(pack)["HLS_BlendIdentities"].execute(a, 1.0, b, 1.0, identity_3=a, weight_3=2.0)
    assert three.num_photos == 4


def test_load_identity_reads_a_file_saved_again_under_its_name(pack, fake_comfy):
    node = nodes(pack)["HLS_LoadIdentity"]
    (saved,) = nodes(pack)["HLS_SaveIdentity"].execute(_identity(pack, 1), "hyperlora_identities/bob")
    name = Path(saved).name
    path = Path(fake_comfy.fp.output_dir) / saved
    first = node.fingerprint_inputs(identity_name=name)
    assert first == node.fingerprint_inputs(identity_name=name) == os.path.getmtime(path)
    os.utime(path, (first + 10, first + 10))
    assert node.fingerprint_inputs(identity_name=name) != first
    missing = node.fingerprint_inputs(identity_name="gone.safetensors")
    assert missing != missing  # NaN: never "unchanged", so the node runs and shows its error


def test_blend_refuses_all_zero_weights(pack):
    a = _identity(pack, 1)
    with pytest.raises(pack.hyperlora_core.HyperLoRAError):
        nodes(pack)["HLS_BlendIdentities"].execute(a, 0.0, a, 0.0)
