"""The network: a release folder and face features -> the LoRA's tensors.

* ``checkpoint``: reads and checks the release files (module list, safetensors, layouts);
* ``hypernet``: the resampler and the ID projector;
* ``lora``: the LoRA bases and how coefficients become kohya LoRA tensors;
* ``hyperlora``: the :class:`HyperLoRA` class that puts them together;
* ``finite``: NaN / infinity checks of weights and LoRAs.
"""

from ..lazy import lazy_exports

# Imported on first use: features.identity and files.export use model.finite, and model.hyperlora
# uses features.identity; importing hyperlora here would tie the three into a circle.
__getattr__ = lazy_exports(__name__, {name: ".hyperlora" for name in ("HyperLoRA", "resolve_device", "resolve_dtype")})

__all__ = ["HyperLoRA", "resolve_device", "resolve_dtype"]
