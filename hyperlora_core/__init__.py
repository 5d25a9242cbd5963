"""HyperLoRA core: the hyper-network, the face pipeline and the LoRA kernels. Never imports ComfyUI."""

from .constants import TRIGGER_WORDS
from .errors import CheckpointError, FaceModelError, HyperLoRAError, InputError, NoFaceError
from .export import lora_metadata, save_lora
from .identity import IdentityFeatures
from .model import HyperLoRA

__all__ = [
    "CheckpointError",
    "FaceModelError",
    "HyperLoRA",
    "HyperLoRAError",
    "IdentityFeatures",
    "InputError",
    "NoFaceError",
    "TRIGGER_WORDS",
    "lora_metadata",
    "save_lora",
]
