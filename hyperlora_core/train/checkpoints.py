"""Checkpoints of a training run: saved whole (a ``.partial`` folder renamed once complete), the newest
found, and a run resumed from one only when its configuration matches."""

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

log = logging.getLogger(__name__)


def save_checkpoint(self: Any) -> Path:
    """The run's state as ``step_N/`` in its checkpoints folder (main process), keeping the newest few.
    ``self``: the :class:`~.trainer.Trainer` (not imported here: the trainer imports this module)."""
    folder = self.checkpoints / f"step_{self.step:08d}"
    if self.dist.is_main:
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        write_atomic(partial / "network.safetensors",
                     save({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}),
                     overwrite=True)
        extra = {"optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler else None,
                 "torch_rng": torch.get_rng_state()}
        write_atomic(partial / "optimizer.pt", lambda handle: torch.save(extra, handle), overwrite=True)
        state = {"step": self.step, "world_size": self.dist.world_size, "config": self.config.to_dict()}
        # state.json last: a checkpoint counts (latest_checkpoint) only once it is there.
        write_atomic(partial / "state.json", json.dumps(state, indent=1).encode("utf-8"), overwrite=True)
        shutil.rmtree(folder, ignore_errors=True)
        partial.replace(folder)
        kept = sorted(self.checkpoints.glob("step_*[0-9]"))
        for old in kept[: max(0, len(kept) - self.config.output.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("Saved checkpoint %s", folder)
    barrier(self.dist)
    return folder

def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder`` (one with its state.json), or None."""
    found = sorted(p for p in folder.glob("step_*[0-9]") if (p / "state.json").is_file())
    return found[-1] if found else None

def resume_from_checkpoint(self: Any) -> bool:
    """Continue from the newest checkpoint, refusing one whose configuration differs."""
    folder = latest_checkpoint(self.checkpoints)
    if folder is None:
        return False
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    changes = config_changes(state["config"], self.config.to_dict())
    saved_batch = state["config"]["training"]["batch_size"]
    if saved_batch * state["world_size"] == self.config.training.batch_size * self.dist.world_size:
        # Same global batch (e.g. 2 processes x 1 -> 1 process x 2): the same samples, a valid resume.
        changes = [c for c in changes if not c.startswith("training.batch_size:")]
    elif state["world_size"] != self.dist.world_size:
        changes.append(f"number of processes: {state['world_size']} -> {self.dist.world_size} "
                       "(the global batch and the order of samples change)")
    if changes:
        raise ConfigError(
            f"Cannot resume from {folder}: the configuration changed since it was saved:\n  "
            + "\n  ".join(changes)
            + "\nRestore those settings to continue, or set output.folder to a new folder to start a new run."
        )
    weights = load_file(str(folder / "network.safetensors"), device=str(self.device))
    self.net.load_state_dict(weights, strict=True)
    extra = torch.load(folder / "optimizer.pt", map_location=self.device, weights_only=True)
    self.optimizer.load_state_dict(extra["optimizer"])
    if self.scaler and extra.get("scaler"):
        self.scaler.load_state_dict(extra["scaler"])
    torch.set_rng_state(extra["torch_rng"].cpu())
    self.step = int(state["step"])
    log.info("Resumed from %s at step %d", folder, self.step)
    return True
