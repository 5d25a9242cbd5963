"""Stand-in for `comfy_api.v0_0_2.ui`: what a node shows on itself after it runs."""

from __future__ import annotations

import os
import random

import numpy as np
from PIL import Image as PILImage


class PreviewText:
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}


class PreviewImage:
    """Saves the batch as PNG files in ComfyUI's temp folder (folder_paths.get_temp_directory), as the
    real one does, and lists them as {filename, subfolder, type: "temp"}."""

    def __init__(self, image, animated: bool = False, cls=None, **kwargs):
        import folder_paths

        folder = folder_paths.get_temp_directory()
        os.makedirs(folder, exist_ok=True)
        prefix = "ComfyUI_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
        self.values = []
        for i, picture in enumerate(image):
            name = f"{prefix}_{i:05}_.png"
            pixels = np.clip(255.0 * picture.cpu().numpy(), 0, 255).astype(np.uint8)
            PILImage.fromarray(pixels).save(os.path.join(folder, name), compress_level=1)
            self.values.append({"filename": name, "subfolder": "", "type": "temp"})
        self.animated = animated

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (self.animated,)}
