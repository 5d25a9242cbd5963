"""HyperLoRA core: the hyper-network, the face pipeline and the LoRA kernels. Never imports ComfyUI.

The public names are imported on first use, so that `python -m hyperlora_core download` and other
light tools start without loading torch.
"""

from importlib import import_module

from .constants import TRIGGER_WORDS
from .errors import CheckpointError, FaceModelError, HyperLoRAError, InputError, NoFaceError

_LAZY = {
    "HyperLoRA": ".model",
    "IdentityFeatures": ".identity",
    "lora_metadata": ".export",
    "save_lora": ".export",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
