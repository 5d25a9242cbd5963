"""``training.strategy = "fsdp"``: the hyper-network's parameters, gradients and AdamW state sharded
across the ranks with PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``), under ``torchrun``.

Each part of the network (ID projector, resampler(s), the two banks of bases) is one FSDP unit: its
parameters are gathered for its forward and backward and freed after, its gradients reduce-scattered,
and each rank's AdamW keeps the state of its own shard only. Checkpoints go through
``torch.distributed.checkpoint`` (one file per rank plus a metadata file), which reshards on load, so
a run resumes on the same or another number of ranks. The release export gathers the full weights to
rank 0 and writes exactly the folder a DDP run writes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..errors import ConfigError
from .network import TrainableHyperLoRA

SHARDED_FOLDER = "sharded"  # the torch.distributed.checkpoint files inside a checkpoint folder
TORCHRUN = "torchrun --nproc_per_node N -m hyperlora_core.train --config CONFIG"


def check_launch(strategy: str, environ: os._Environ | dict = os.environ) -> None:
    """An FSDP run must be started by torchrun (which sets RANK, WORLD_SIZE and the rendezvous address).
    One process under torchrun is allowed: it holds everything, and it can resume a sharded run."""
    if strategy != "fsdp":
        return
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in environ]
    if missing:
        raise ConfigError(
            'training.strategy = "fsdp" shards the network across processes that torchrun starts, but this '
            f"process was not started by torchrun ({', '.join(missing)} not set). Run: {TORCHRUN} (N = the "
            'number of GPUs, or processes on a CPU); or use training.strategy = "ddp" for one process.'
        )


def shard(net: TrainableHyperLoRA, device: torch.device, world_size: int) -> None:
    """Turn ``net`` into FSDP2 modules in place: one unit per part, the root last."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(device.type, (world_size,))
    for part in net.parts().values():
        fully_shard(part, mesh=mesh)
    for bank in (net.id_bank, net.base_bank):
        if bank is not None:  # the banks are used through factors(), not forward(): gather for it too
            register_fsdp_forward_method(bank, "factors")
    fully_shard(net, mesh=mesh)


@contextlib.contextmanager
def gradient_sync(net: nn.Module, sync: bool) -> Iterator[None]:
    """FSDP2's no_sync: gradients of accumulation micro-steps stay local until the last one."""
    if sync:
        yield
        return
    net.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        net.set_requires_gradient_sync(True)


def grad_scaler(enabled: bool) -> Any:
    """fp16 under FSDP: a scaler that agrees across ranks on skipping a step with inf/NaN gradients."""
    if not enabled:
        return None
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    return ShardedGradScaler("cuda")


def save_sharded(net: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Every rank writes its shards of the weights and the AdamW state (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(net, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(folder / SHARDED_FOLDER))


def load_sharded(net: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Read a sharded checkpoint into this run's shards, whatever the number of ranks that wrote it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(net, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(folder / SHARDED_FOLDER))
    set_state_dict(net, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def gathered(net: TrainableHyperLoRA, is_main: bool) -> TrainableHyperLoRA | None:
    """The whole network as a plain module on rank 0's CPU (None on the other ranks); collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not is_main:
        return None
    with torch.device("meta"):
        plain = TrainableHyperLoRA(net.target_modules, net.shape, net.has_base)
    plain.load_state_dict(full, strict=True, assign=True)
    return plain
