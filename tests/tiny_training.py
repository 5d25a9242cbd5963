"""Training on a toy UNet and toy encoders (hyperlora_core.train.toy) in seconds, CPU only: the tiny
network, prepared datasets without face models, configs, and photos for the face pipeline.

The fixtures are imported by the test_train_*.py files that use them; ``one_thread`` is autouse
there, so every test of those files runs on one thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyperlora_core.train import Config, config_from_dict
from hyperlora_core.train.data import write_index, write_item
from hyperlora_core.train.lora_inject import find_attention_modules
from hyperlora_core.train.toy import ToyBackbone

TINY_NETWORK = {"hyper_dim": 8, "rank": 4, "base_rank": 2, "dim": 32, "depth": 1, "inner": 64,
                "id_tokens": 4, "id_width": 32, "clip_width": 64}


def make_cache(folder: Path, count: int, clip_width: int = 64, seed: int = 0) -> Path:
    """A prepared dataset for the toy backbone (32 px images -> 4 x 8 x 8 latents), without face models."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for n in range(count):
        arcface = torch.randn(512, generator=gen)
        write_item(folder, f"item{n}", {
            "arcface": arcface / arcface.norm(),
            "clip_tokens": torch.randn(257, clip_width, generator=gen).half(),
            "base_clip_tokens": torch.randn(257, clip_width, generator=gen).half(),
            "latents": torch.randn(4, 8, 8, generator=gen),
            "sizes": torch.tensor([32.0, 32.0, 0.0, 0.0, 32.0, 32.0]),
        })
        items.append({"image": f"photo{n}.png", "caption": f"a photo of person {n}", "key": f"item{n}"})
    write_index(folder, items, [], {})
    return folder


def tiny_config(tmp_path: Path, cache: Path, **sections) -> Config:
    data = {
        "model": {"kind": "custom", "factory": "hyperlora_core.train.toy:build"},
        "data": {"cache": str(cache), "resolution": 32},
        "network": dict(TINY_NETWORK),
        "training": {"stage": "id_full", "max_steps": 3, "batch_size": 2, "lr": 1e-3, "seed": 0,
                     "device": "cpu", "drop_base_lora": 0.5},
        "output": {"folder": str(tmp_path / "out"), "checkpoint_every": 0, "log_every": 1},
    }
    for section, values in sections.items():
        data[section].update(values)
    return config_from_dict(data)


def sdxl_shaped_unet():
    """A tiny diffusers UNet2DConditionModel with SDXL's block layout (560 attention layers, size
    conditioning), seeded, frozen."""
    import diffusers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return diffusers.UNet2DConditionModel(
            sample_size=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(16, 32, 64), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
            cross_attention_dim=64, attention_head_dim=(1, 2, 4), addition_embed_type="text_time",
            addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 64, norm_num_groups=8,
            use_linear_projection=True).requires_grad_(False).eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: on a shared 2-core machine, two contending threads make these tiny steps 50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cache(tmp_path) -> Path:
    return make_cache(tmp_path / "cache", 4)


def toy_modules():
    return [t.spec for t in find_attention_modules(ToyBackbone().unet)]


@pytest.fixture(scope="module")
def face_data(tmp_path_factory):
    import numpy as np
    from PIL import Image
    from tiny_clip import make_tiny_clip
    from tiny_face_models import draw_face, make_tiny_antelopev2

    root = tmp_path_factory.mktemp("faces")
    photos = root / "photos"
    photos.mkdir()
    for n, box in enumerate([(60, 50, 150, 170), (40, 40, 140, 160)]):
        image = (np.random.default_rng(n).random((200, 180, 3)) * 200).astype(np.uint8)
        Image.fromarray(draw_face(image, box, slot=0, ring=6)).save(photos / f"face{n}.png")
        (photos / f"face{n}.txt").write_text(f"a photo of person {n}\n")
    Image.fromarray(np.full((120, 120, 3), 90, np.uint8)).save(photos / "wall.png")
    (photos / "wall.txt").write_text("a grey wall")
    return {"photos": photos, "clip": make_tiny_clip(root / "clip"),
            "faces": make_tiny_antelopev2(root / "antelopev2")}


def face_config(tmp_path, face_data, **data):
    return tiny_config(tmp_path, tmp_path / "cache", data={
        "folder": str(face_data["photos"]), "face_models": str(face_data["faces"]),
        "clip_model": str(face_data["clip"]), **data}, network={"clip_width": 1024},
        training={"max_steps": 1})
