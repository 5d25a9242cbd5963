"""The reference implementation's own CPU path, re-derived from its behaviour (not its code).

What bytedance/ComfyUI-HyperLoRA (GPL-3.0) does, read at commit feb11be (2025-05-19), file
`hyperlora/nodes.py` (`HyperLoRALoaderNode.execute`, `HyperLoRAGenerateIDLoRANode.execute`) and
`hyperlora/modules.py` (`HyperLoRALayer`, `Resampler`); docs/speed.md, "Against the reference's own
path", gives the details. With the loader's `fp32` option, the one that gives float32 maths on a CPU:

* load: every network is built as an `nn.Module` in float32 with PyTorch's default initialisation
  (the LoRA bases as float32 zeros, one (K, in, r) and one (K, r, out) parameter per layer), then
  each file is read whole with `safetensors.torch.load_file` and copied into the module by
  `load_state_dict` (float16 -> float32), then `.to(device, dtype)`;
* features -> LoRA: the ID projector and the resampler run in float32, then for each of the 560
  layers and both factors one `einsum` of the (1, K) coefficients with the float32 basis, whose
  result is transposed, made contiguous and moved to the CPU; `alpha` is r / 2. The LoRA comes out
  in float32.

The network's maths is the same as this project's (spec sections 4-6), so the forward runs this
project's ID projector and resampler on the float32 weights the reference's load produced; the load
and the mixing, on those float32 bases, are written here.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..constants import ID_PROJECTOR_WEIGHTS, MODULES_JSON, MODULES_WEIGHTS, RELEASE_FILES, RESAMPLER_WEIGHTS
from ..model.checkpoint import SafetensorsFile, read_modules
from ..model.hypernet import IDProjector, Resampler
from ..model.hyperlora import normalise_coefficients
from ..model.lora import layer_slots

REFERENCE_COMMIT = "feb11bedcb5f965085dd8e52862dadd9fe456df9"


def _default_init(key: str, shape: list[int], shapes: dict[str, list[int]]) -> torch.Tensor:
    """A float32 tensor initialised as the reference's module constructors leave it."""
    if key.endswith("_basis"):
        return torch.zeros(shape)
    if key == "latents":
        return torch.randn(shape) / shape[-1] ** 0.5
    if len(shape) == 1 and key.endswith(".weight"):  # LayerNorm
        return torch.ones(shape)
    if key.endswith(".bias"):
        weight = shapes.get(key[: -len("bias")] + "weight")
        if weight is None or len(weight) == 1:  # LayerNorm
            return torch.zeros(shape)
        bound = 1 / math.sqrt(weight[1])  # nn.Linear's default bias
        return torch.empty(shape).uniform_(-bound, bound)
    # nn.Linear's default weight: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    return nn.init.kaiming_uniform_(torch.empty(shape), a=math.sqrt(5))


def _module_tree(shapes: dict[str, list[int]]) -> nn.Module:
    """An nn.Module whose parameter names are the file's keys, initialised as the reference's are."""
    root = nn.Module()
    for key, shape in shapes.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(_default_init(key, shape, shapes)))
    return root


def reference_load(folder: Path, device: torch.device) -> dict[str, nn.Module]:
    """The reference's load: float32 modules, `load_file` of each file whole, `load_state_dict`, `.to`."""
    modules = {}
    for name in RELEASE_FILES:
        if not name.endswith(".safetensors"):
            continue
        path = folder / name
        with safe_open(str(path), framework="pt") as f:
            shapes = {key: f.get_slice(key).get_shape() for key in f.keys()}
        module = _module_tree(shapes)
        module.load_state_dict(load_file(str(path)))
        modules[name] = module.to(device, torch.float32).eval()
    return modules


class ReferenceModel:
    """The reference-loaded float32 weights, with this project's forward modules holding them."""

    def __init__(self, folder: Path, device: torch.device):
        self.trees = reference_load(folder, device)
        self.slots = layer_slots(read_modules(folder / MODULES_JSON))
        bases = self.trees[MODULES_WEIGHTS]
        self.rank = bases.get_parameter("0.to_q.id_down_basis").shape[-1]
        # the same float32 tensors, not copies: built from the files' shapes, then given the trees' weights
        self.id_projector = IDProjector.from_file(SafetensorsFile(folder / ID_PROJECTOR_WEIGHTS))
        self.id_projector.load_state_dict({f"layers.{k}": v for k, v in self.trees[ID_PROJECTOR_WEIGHTS].state_dict().items()},
                                          strict=True, assign=True)
        self.resampler = Resampler.from_file(SafetensorsFile(folder / RESAMPLER_WEIGHTS), n_conds=2)
        self.resampler.load_state_dict(self.trees[RESAMPLER_WEIGHTS].state_dict(), strict=True, assign=True)
        self.device = device

    def basis(self, module_index: int, projection: str, role: str) -> torch.Tensor:
        """The (K, in, r) down or (K, r, out) up basis of one layer, a float32 parameter of its own."""
        return self.trees[MODULES_WEIGHTS].get_parameter(f"{module_index}.{projection}.id_{role}_basis")


@torch.no_grad()
def reference_mix(model: ReferenceModel, coefficients: torch.Tensor) -> dict[str, torch.Tensor]:
    """One einsum per layer and factor on the float32 bases, as the reference mixes."""
    out: dict[str, torch.Tensor] = {}
    for slot in model.slots:
        for role in ("down", "up"):
            c = coefficients[slot.token(role)].unsqueeze(0)  # (1, K): the reference's batch of one
            mixed = torch.einsum("bi,ijk->bjk", c, model.basis(slot.module_index, slot.projection, role))
            out[f"{slot.kohya_name}.lora_{role}.weight"] = mixed[0].t().contiguous().cpu()
        out[f"{slot.kohya_name}.alpha"] = torch.tensor(float(model.rank)) * 0.5
    return out


@torch.no_grad()
def reference_generate(model: ReferenceModel, arcface: torch.Tensor, clip: torch.Tensor) -> dict[str, torch.Tensor]:
    """Features -> ID-LoRA the reference's way: float32 weights, float32 maths, per-layer einsums."""
    ids = model.id_projector(arcface.to(model.device, torch.float32))
    per_photo = model.resampler(ids, clip.to(model.device, torch.float32))
    # the reference averages over the photos, then L2-normalises each token (spec 4.4)
    equal = torch.full((arcface.shape[0],), 1.0 / arcface.shape[0], device=model.device)
    return reference_mix(model, normalise_coefficients(per_photo, equal))
