"""Checkpoints of a training run: saved whole (a ``.partial`` folder renamed once complete), the newest
found, and a run resumed from one only when its configuration matches.

A checkpoint folder holds ``state.json`` (written last: a folder without it does not count), the
scaler and random state in ``extra.pt``, and the weights and AdamW state: ``network.safetensors`` and
``optimizer.pt`` from a ``ddp`` run (written by the main process), or ``sharded/`` from an ``fsdp``
run (``torch.distributed.checkpoint``: every rank writes its shards; read back on any number of ranks).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from ..errors import ConfigError
from ..files.atomic import write_atomic
from .config import config_changes
from .distributed import barrier
from .sharding import load_sharded, save_sharded

log = logging.getLogger(__name__)


def save_checkpoint(trainer: Any) -> Path:
    """The run's state as ``step_N/`` in its checkpoints folder, keeping the newest few. ``trainer``: a
    :class:`~.trainer.Trainer` (every rank calls this)."""
    folder = trainer.checkpoints / f"step_{trainer.step:08d}"
    partial = folder.with_name(folder.name + ".partial")
    main = trainer.dist.is_main
    if main:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    barrier(trainer.dist)
    if trainer.sharded:
        save_sharded(trainer.net, trainer.optimizer, partial)  # collective: every rank writes its shards
    if main:
        extra: dict[str, Any] = {"scaler": trainer.scaler.state_dict() if trainer.scaler else None,
                                 "torch_rng": torch.get_rng_state()}
        if not trainer.sharded:
            write_atomic(partial / "network.safetensors",
                         save({k: v.detach().cpu().contiguous() for k, v in trainer.net.state_dict().items()}),
                         overwrite=True)
            extra["optimizer"] = trainer.optimizer.state_dict()
        write_atomic(partial / "optimizer.pt", lambda handle: torch.save(extra, handle), overwrite=True)
        state = {"step": trainer.step, "world_size": trainer.dist.world_size,
                 "strategy": trainer.config.training.strategy, "config": trainer.config.to_dict()}
        # state.json last: a checkpoint counts (latest_checkpoint) only once it is there.
        write_atomic(partial / "state.json", json.dumps(state, indent=1).encode("utf-8"), overwrite=True)
        shutil.rmtree(folder, ignore_errors=True)
        partial.replace(folder)
        kept = sorted(trainer.checkpoints.glob("step_*[0-9]"))
        for old in kept[: max(0, len(kept) - trainer.config.output.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("Saved checkpoint %s", folder)
    barrier(trainer.dist)
    return folder


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder`` (one with its state.json), or None."""
    found = sorted(p for p in folder.glob("step_*[0-9]") if (p / "state.json").is_file())
    return found[-1] if found else None


def _check_processes(folder: Path, state: dict[str, Any], batch: int, world: int, changes: list[str]) -> list[str]:
    """The same global batch on another number of processes is a valid resume (2 x 1 -> 1 x 2); a
    global batch that does not divide into this run's processes is refused with the counts that work."""
    saved_batch = state["config"]["training"]["batch_size"]
    saved_global = saved_batch * state["world_size"]
    if saved_global == batch * world:
        return [c for c in changes if not c.startswith("training.batch_size:")]
    if state["world_size"] != world and saved_global % world:
        fits = [n for n in range(1, saved_global + 1) if saved_global % n == 0]
        raise ConfigError(
            f"Cannot resume {folder} on {world} processes: it trained with a global batch of {saved_global} samples "
            f"({state['world_size']} processes x batch_size {saved_batch}), which does not divide into {world} "
            f"processes. Start {' or '.join(map(str, fits))} processes with training.batch_size = {saved_global} / "
            "processes, or set output.folder to a new folder to start a new run."
        )
    if state["world_size"] != world:
        changes.append(f"number of processes: {state['world_size']} -> {world} (the global batch and the order "
                       f"of samples change; keep batch_size x processes = {saved_global} with batch_size = "
                       f"{saved_global // world})")
    return changes


def resume_from_checkpoint(trainer: Any) -> bool:
    """Continue from the newest checkpoint, refusing one whose configuration differs."""
    folder = latest_checkpoint(trainer.checkpoints)
    if folder is None:
        return False
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    saved = state["config"]
    saved["training"].setdefault("strategy", state.get("strategy", "ddp"))  # checkpoints from before strategies
    changes = config_changes(saved, trainer.config.to_dict())
    changes = _check_processes(folder, state, trainer.config.training.batch_size, trainer.dist.world_size, changes)
    if changes:
        raise ConfigError(
            f"Cannot resume from {folder}: the configuration changed since it was saved:\n  "
            + "\n  ".join(changes)
            + "\nRestore those settings to continue, or set output.folder to a new folder to start a new run."
        )
    extra = torch.load(folder / "optimizer.pt", map_location=trainer.device, weights_only=True)
    if trainer.sharded:
        load_sharded(trainer.net, trainer.optimizer, folder)
    else:
        weights = load_file(str(folder / "network.safetensors"), device=str(trainer.device))
        trainer.net.load_state_dict(weights, strict=True)
        trainer.optimizer.load_state_dict(extra["optimizer"])
    if trainer.scaler and extra.get("scaler"):
        trainer.scaler.load_state_dict(extra["scaler"])
    torch.set_rng_state(extra["torch_rng"].cpu())
    trainer.step = int(state["step"])
    log.info("Resumed from %s at step %d", folder, trainer.step)
    return True
