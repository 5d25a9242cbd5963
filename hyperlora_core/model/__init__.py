"""The network: a release folder and face features -> the LoRA's tensors.

* ``checkpoint``: reads and checks the release files (module list, safetensors, layouts);
* ``hypernet``: the resampler and the ID projector;
* ``lora``: the LoRA bases and how coefficients become kohya LoRA tensors;
* ``hyperlora``: the :class:`HyperLoRA` class that puts them together (and the per-photo weights).

NaN / infinity checks of weights and LoRAs are ``hyperlora_core.finite``, shared with the files and
the identities.
"""

from .hyperlora import HyperLoRA, photo_weights, resolve_device, resolve_dtype

__all__ = ["HyperLoRA", "photo_weights", "resolve_device", "resolve_dtype"]
