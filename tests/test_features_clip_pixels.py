"""features/clip_pixels.py: a crop becomes CLIP's pixel values exactly as OpenAI's preprocessing makes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from face_photos import close
from hyperlora_core.constants import CLIP_MEAN, CLIP_STD
from hyperlora_core.features.clip_pixels import clip_pixel_values


def test_clip_pixel_values_is_the_openai_clip_preprocessing():
    rng = np.random.default_rng(7)
    crops = [rng.integers(0, 256, (300, 200, 3), dtype=np.uint8), rng.integers(0, 256, (180, 181, 3), dtype=np.uint8)]
    values = clip_pixel_values(crops)
    assert values.shape == (2, 3, 224, 224) and values.dtype == torch.float32
    # Written out: shortest side to 224 (bicubic), centre 224 crop, mean/std.
    resized = np.asarray(Image.fromarray(crops[0]).resize((224, 336), Image.Resampling.BICUBIC))
    centre = resized[56:280].astype(np.float32) / 255
    expected = (centre - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    close(values[0].numpy(), expected.transpose(2, 0, 1), 1e-5)
    transformers = pytest.importorskip("transformers")
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, do_center_crop=True,
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), resample=3,
    )
    reference = processor(images=[Image.fromarray(c) for c in crops], return_tensors="np")["pixel_values"]
    close(values.numpy(), reference, 1e-5)
