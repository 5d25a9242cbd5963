"""A models folder of tiny models and a folder of people for the batch tests (see tiny_face_models
for how a test puts a face in a photo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from checkpoints import make_release_folder
from hyperlora_core.constants import VARIANTS
from tiny_clip import make_tiny_clip
from tiny_face_models import draw_face, make_tiny_antelopev2

FIDELITY = VARIANTS[0]


def make_models(models: Path) -> Path:
    """ComfyUI's models folder layout with the tiny release, CLIP and face models (as `download` fills it)."""
    make_release_folder(models / "hyperlora" / FIDELITY, dim=64, depth=1, inner=64, hyper_dim=16, seed=5)
    make_tiny_clip(models / "hyper_lora" / "clip_vit" / "clip_vit_large_14")
    make_tiny_antelopev2(models / "insightface" / "models" / "antelopev2")
    return models


def face_photo(path: Path, seed: int, box=(70, 80, 180, 210), slot: int = 0, size=(300, 260)) -> Path:
    """A noisy photo with one face marker, its inside noise that differs per seed (so does the embedding)."""
    rng = np.random.default_rng(seed)
    image = (rng.random((*size, 3)) * 200).astype(np.uint8)  # below the marker colours' range
    draw_face(image, box, slot=slot, ring=6)
    Image.fromarray(image).save(path)
    return path


def blank_photo(path: Path) -> Path:
    """A photo without a face."""
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(path)
    return path


def make_people(root: Path, count: int = 3, photos: int = 2, blank_for: int | None = None) -> Path:
    """``root/person_<n>/`` with ``photos`` face photos each; person ``blank_for`` also gets a photo without a face."""
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        folder = root / f"person_{n}"
        folder.mkdir()
        for k in range(photos):
            face_photo(folder / f"p{k}.png", seed=100 * n + k, box=(60 + 10 * k, 70 + 5 * n, 170 + 10 * k, 200 + 5 * n))
        if blank_for == n:
            blank_photo(folder / "zz_blank.png")
    return root


def assert_same_safetensors(a: Path, b: Path) -> None:
    """Bit-identical tensors and the same metadata. Not the same bytes: safetensors writes the metadata
    from a hash map, whose order differs from one process to the next."""
    x, y = load_file(str(a)), load_file(str(b))
    assert set(x) == set(y), (a, b)
    for key in x:
        assert x[key].dtype == y[key].dtype and x[key].equal(y[key]), (a, b, key)
    with safe_open(str(a), "pt") as ha, safe_open(str(b), "pt") as hb:
        assert ha.metadata() == hb.metadata(), (a, b)
