"""A CLIP_VISION for the CI tier: what the ID Embedding node uses of ComfyUI's ClipVisionModel.

``encode_image(image, crop)`` as ComfyUI 0.3.x does it for the node's 224 x 224 input: the IMAGE
batch (N, 224, 224, 3) in 0..1 is rounded to 8 bits (``clip_preprocess``: clip, x255, round, /255),
normalised with CLIP's mean and std, and run through the tower; ``penultimate_hidden_states`` are the
output of the last-but-one layer. The tower here is :class:`hyperlora_core.features.clip.ClipVisionEncoder`
(transformers), so a test can put the node and the command line on the same weights.
tests/comfyui/test_clip_vision.py checks this stand-in against the real ClipVisionModel.
"""

from __future__ import annotations

import torch

from hyperlora_core.features.clip import ClipVisionEncoder

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class StandInClipVision:
    def __init__(self, path):
        self.encoder = ClipVisionEncoder.load(path)
        self.calls: list[int] = []  # batch size of each encode_image call

    def encode_image(self, image: torch.Tensor, crop: bool = True) -> dict[str, torch.Tensor]:
        if tuple(image.shape[1:3]) != (224, 224):
            raise NotImplementedError("the stand-in takes 224 x 224 images only (what the ID Embedding node sends)")
        self.calls.append(image.shape[0])
        image = image[..., :3].movedim(-1, 1)
        image = torch.clip(255.0 * image, 0, 255).round() / 255.0
        pixels = (image - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        return {"penultimate_hidden_states": self.encoder.encode(pixels.float())}
