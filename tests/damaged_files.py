"""Damaging files the way downloads and old tools do, for the tests of the messages that follow."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file


def rewrite(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Change the tensors of a .safetensors file (one of a release-layout checkpoint the tests wrote)."""
    state = load_file(str(path))
    change(state)
    path.unlink()
    save_file(state, str(path))


def legacy_pickle(path: Path) -> None:
    """A checkpoint in torch's old pickle format, as .ckpt and .bin files are."""
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path, _use_new_zipfile_serialization=False)
