"""HyperLoRA core: the hyper-network, the face pipeline and the LoRA kernels. Never imports ComfyUI.

The public names are imported on first use, so that `python -m hyperlora_core download` and other
light tools start without loading torch.
"""

from .constants import TRIGGER_WORDS
from .errors import CheckpointError, FaceModelError, HyperLoRAError, InputError, NoFaceError
from .lazy import lazy_exports

_LAZY = {
    "HyperLoRA": ".model.hyperlora",
    "IdentityFeatures": ".features.identity",
    "MadeLoRA": ".pipeline",
    "lora_metadata": ".files.export",
    "photos_to_lora": ".pipeline",
    "save_lora": ".files.export",
}


__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "CheckpointError",
    "FaceModelError",
    "HyperLoRA",
    "HyperLoRAError",
    "IdentityFeatures",
    "InputError",
    "MadeLoRA",
    "NoFaceError",
    "TRIGGER_WORDS",
    "lora_metadata",
    "photos_to_lora",
    "save_lora",
]
