"""Between the trainable network and a release folder: warm start and export.

Export writes exactly the layout of spec sections 1-5 that :meth:`HyperLoRA.from_pretrained` and the
nodes load (``hyper_lora_modules.json``, ``hyper_lora_modules.safetensors``, ``resampler.safetensors``,
``id_projector.safetensors``) plus ``base_resampler.safetensors`` and the ``base_*_basis`` tensors when
the network has a Base-LoRA. Where the training came from is kept in the safetensors metadata.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import save

from ..files.atomic import write_atomic
from ..model.checkpoint import basis_key, write_modules_json
from ..constants import (
    BASE_RESAMPLER_WEIGHTS,
    ID_PROJECTOR_WEIGHTS,
    MODULES_JSON,
    MODULES_WEIGHTS,
    RESAMPLER_WEIGHTS,
)
from ..model.hyperlora import HyperLoRA, resolve_dtype
from .config import NetworkShape
from .network import TrainableBank, TrainableHyperLoRA

log = logging.getLogger(__name__)


def _bank_tensors(bank: TrainableBank, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for name, slots in bank.groups.items():
        role, features = name.split("_")
        data = getattr(bank, name).detach()
        for j, slot in enumerate(slots):
            shape = (bank.hyper_dim, int(features), bank.rank) if role == "down" else \
                (bank.hyper_dim, bank.rank, int(features))
            out[basis_key(slot.module_index, slot.projection, bank.kind, role)] = \
                data[j].view(shape).to("cpu", dtype).contiguous()
    return out


def export_release(net: TrainableHyperLoRA, folder: str | Path, dtype: torch.dtype | str = torch.float16,
                   metadata: dict[str, object] | None = None) -> Path:
    """Write the network as a release folder; an existing folder is replaced only once the new one is complete."""
    folder = Path(folder)
    dtype = resolve_dtype(dtype)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    meta = {"format": "pt", "hyperlora.trained_by": "hyperlora_core.train"}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})

    def write(name: str, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in tensors.items()}
        write_atomic(partial / name, save(tensors, metadata=meta), overwrite=True)

    write_modules_json(net.target_modules, partial / MODULES_JSON)
    bases = _bank_tensors(net.id_bank, dtype)
    if net.has_base:
        bases.update(_bank_tensors(net.base_bank, dtype))
    write(MODULES_WEIGHTS, {k: bases[k] for k in sorted(bases, key=lambda k: (int(k.split(".")[0]), k))})
    write(RESAMPLER_WEIGHTS, net.resampler.state_dict())
    write(ID_PROJECTOR_WEIGHTS, {k.removeprefix("layers."): v for k, v in net.id_projector.state_dict().items()})
    if net.has_base:
        write(BASE_RESAMPLER_WEIGHTS, net.base_resampler.state_dict())
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        folder.replace(old)
        partial.replace(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.replace(folder)
    log.info("Exported HyperLoRA release folder %s (%d modules%s)", folder, len(net.target_modules),
             ", with Base-LoRA" if net.has_base else "")
    return folder


def shape_of(model: HyperLoRA, fallback: NetworkShape) -> NetworkShape:
    """The sizes of a loaded release, as a NetworkShape (Base-LoRA rank from the config when absent)."""
    resampler = model.resampler
    layer = resampler.layers[0]
    dim = resampler.latents.shape[-1]
    return NetworkShape(
        hyper_dim=model.hyper_dim,
        rank=model.rank,
        base_rank=model.base_bank.rank if model.has_base_lora else fallback.base_rank,
        dim=dim,
        depth=len(resampler.layers),
        inner=layer.attn1.to_q.out_features,
        ff_mult=max(1, layer.ff.net[0].proj.out_features // dim),
        id_tokens=model.id_projector.tokens,
        id_width=model.id_projector.width,
        clip_width=resampler.in_dims[1],
    )


def warm_start(net: TrainableHyperLoRA, model: HyperLoRA) -> list[str]:
    """Copy a loaded release's weights into a network built with its shape; return the parts copied."""
    copied = ["id_projector", "resampler", "id_bases"]
    with torch.no_grad():
        net.id_projector.load_state_dict(model.id_projector.state_dict(), strict=True)
        net.resampler.load_state_dict(model.resampler.state_dict(), strict=True)
        _copy_bank(net.id_bank, model.id_bank)
        if model.has_base_lora and net.has_base:
            net.base_resampler.load_state_dict(model.base_resampler.state_dict(), strict=True)
            _copy_bank(net.base_bank, model.base_bank)
            copied += ["base_resampler", "base_bases"]
    return copied


def _copy_bank(target: TrainableBank, source) -> None:
    for name in target.groups:
        getattr(target, name).copy_(getattr(source, name).float())
