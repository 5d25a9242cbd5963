"""Refine HyperLoRA (CI tier, no ComfyUI): every bad input is refused with its message before any work,
and Load Faces passes on the photos the node trains on. The run itself is tested in the real-ComfyUI
tier (tests/comfyui/test_refine_server.py), the engine in tests/test_refine.py."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from node_fixtures import FakePatcher, _photo, face_models, fake_comfy, nodes, pack, tiny_antelopev2  # noqa: F401
from tiny_refine import random_id_lora


class FakeVAE:
    def encode(self, pixels):
        return torch.zeros(pixels.shape[0], 4, pixels.shape[1] // 8, pixels.shape[2] // 8)


class FakeCLIP:
    def tokenize(self, text):
        return {"text": text}

    def encode_from_tokens(self, tokens, return_pooled=False):
        return torch.zeros(1, 77, 2048), torch.zeros(1, 1280)


LAYER = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"


def _faces(pack, count=2):
    faces_module = __import__(f"{pack.__name__}.nodes.faces", fromlist=["FaceBatch"])
    landmarks = np.stack([np.linspace(40, 80, 106), np.linspace(40, 90, 106)], 1)
    results = [types.SimpleNamespace(landmarks=landmarks) for _ in range(count)]
    photos = [np.zeros((128, 128, 3), np.uint8) for _ in range(count)]
    return faces_module.FaceBatch(results=results, sources=[f"images[{i}]" for i in range(count)], photos=photos)


def _run(pack, fake_comfy, **changes):
    model = FakePatcher(fake_comfy.model_base.SDXL())
    inputs = dict(lora=random_id_lora({LAYER: torch.nn.Linear(64, 64)}), model=model, vae=FakeVAE(), clip=FakeCLIP(),
                  faces=_faces(pack), steps=10, learning_rate=1e-4, extra_rank=0, face_weight=1.0, seed=0,
                  caption="a photo of a person", resolution=512)
    inputs.update(changes)
    return nodes(pack)["HLS_RefineLoRA"].execute(**inputs)


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps must be a whole number from 1"),
    ({"learning_rate": 0.5}, "learning_rate 0.5 is out of range"),
    ({"learning_rate": 0.0}, "learning_rate 0.0 is out of range"),
    ({"extra_rank": 65}, "extra_rank must be a whole number from 0 to 64"),
    ({"face_weight": -1.0}, "face_weight must be from 0"),
    ({"resolution": 1000}, "resolution must be a multiple of 64"),
    ({"likeness_pictures": 9}, "likeness_pictures must be a whole number from 0 to 8"),
    ({"lora": None}, "The input 'lora' needs a LORA_MODEL"),
    ({"model": None}, "The input 'model' needs a MODEL"),
    ({"vae": None}, "The input 'vae' needs a VAE"),
    ({"clip": None}, "The input 'clip' needs a CLIP"),
    ({"faces": None}, "The input 'faces' needs HYPERLORA_FACES"),
])
def test_bad_inputs_are_refused_naming_the_input(pack, fake_comfy, change, message):
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match=message):
        _run(pack, fake_comfy, **change)


def test_a_lora_that_is_not_an_id_lora_is_refused_naming_what_it_has(pack, fake_comfy):
    ordinary = random_id_lora({LAYER: torch.nn.Linear(64, 64),
                               "lora_unet_down_blocks_1_attentions_0_proj_in": torch.nn.Linear(64, 64)})
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="1 of the 2 layers .*not attention .*proj_in"):
        _run(pack, fake_comfy, lora=ordinary)
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="empty"):
        _run(pack, fake_comfy, lora={})


def test_a_model_that_is_not_sdxl_is_refused(pack, fake_comfy):
    sd15 = FakePatcher(fake_comfy.model_base.BaseModel())
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="makes LoRAs for SDXL UNets"):
        _run(pack, fake_comfy, model=sd15)


def test_faces_without_photos_or_faces_are_refused(pack, fake_comfy):
    empty = _faces(pack, 0)
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="No photo with a face"):
        _run(pack, fake_comfy, faces=empty)
    old = _faces(pack)
    old.photos = []
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="carry no photos.*Load Faces"):
        _run(pack, fake_comfy, faces=old)


def test_the_lora_given_is_not_changed_by_a_refused_run(pack, fake_comfy):
    lora = random_id_lora({LAYER: torch.nn.Linear(64, 64)})
    before = {k: v.clone() for k, v in lora.items()}
    with pytest.raises(pack.hyperlora_core.HyperLoRAError):
        _run(pack, fake_comfy, lora=lora, steps=0)
    assert all(torch.equal(lora[k], before[k]) for k in before)


def test_load_faces_passes_on_the_photos_refine_trains_on(pack, fake_comfy, face_models):
    photo = _photo(True, 0)
    faces, _ = nodes(pack)["HLS_LoadFaces"].execute(torch.cat([photo, _photo(False, 1)]), "antelopev2", "CPU",
                                                    "largest", True, False, "skip photo")
    assert len(faces.photos) == len(faces.results) == 1
    assert faces.photos[0].shape == (320, 256, 3) and faces.photos[0].dtype == np.uint8
