"""files/images.py: photos and ComfyUI images become 8-bit RGB arrays, and a file that cannot be a photo
says why. (Photo formats through the whole face pipeline: tests/test_face_analyzer.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperlora_core import InputError
from hyperlora_core.files.images import load_image, to_rgb_list


def test_comfyui_images_become_8_bit_by_truncation():
    """LoadImage gives k / 255 in float32: truncation gives k back, like rounding. A resized
    picture's (k + 0.6) / 255 becomes k, as in the reference, not k + 1."""
    import importlib

    from pack import load_pack

    images = importlib.import_module(load_pack().__name__ + ".nodes.images")
    k = np.arange(256, dtype=np.float32)
    loaded = torch.from_numpy(np.tile(k / 255.0, (64, 1))[None, :, :, None].repeat(3, axis=3).copy())
    assert loaded.dtype == torch.float32
    np.testing.assert_array_equal(images.images_to_uint8(loaded)[0][..., 0], np.tile(k, (64, 1)))
    np.testing.assert_array_equal(to_rgb_list(loaded)[0][..., 0], np.tile(k, (64, 1)))
    resized = torch.from_numpy((np.minimum(k + 0.6, 255) / 255.0).astype(np.float32))
    resized = resized.view(1, 1, 256, 1).expand(1, 64, 256, 3).contiguous()
    expected = np.tile((np.minimum(k + 0.6, 255)).astype(np.uint8), (64, 1))
    np.testing.assert_array_equal(images.images_to_uint8(resized)[0][..., 1], expected)
    np.testing.assert_array_equal(to_rgb_list(resized)[0][..., 1], expected)
    assert (expected[0, :255] == k[:255]).all()  # truncated: one level below what rounding gives


# -- files that are not photos -------------------------------------------------------------------


def test_decompression_bomb_photo(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("RGB", (200, 200)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 40,000 pixels is then over twice the limit
    with pytest.raises(InputError, match="decompression bomb.*not loaded.*Resize the photo"):
        load_image(path)


def test_dev_zero_as_a_photo_is_not_reported_as_missing():
    with pytest.raises(InputError) as caught:
        load_image("/dev/zero")
    assert "not a regular file" in str(caught.value) and "not found" not in str(caught.value)


def test_truncated_photo(tmp_path):
    from PIL import Image

    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match="damaged or truncated.*export the photo again"):
        load_image(path)


def test_photo_folder_given_as_a_photo(tmp_path):
    with pytest.raises(InputError, match="is a folder, not a file"):
        load_image(tmp_path)
