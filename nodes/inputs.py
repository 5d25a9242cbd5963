"""Checks of what arrives on a node's inputs: a missing or wrong value is refused with a message that
names the input, what it needs and what to connect."""

from __future__ import annotations

import torch

from ..hyperlora_core.errors import HyperLoRAError


def require_input(value, name: str, expected: str, connect: str, accept=None) -> None:
    """Refuse a node input that is missing or of the wrong kind, naming it and what to connect.

    `accept(value)` says whether the value is of the right kind (default: anything but None).
    """
    if value is not None and (accept is None or accept(value)):
        return
    found = "nothing (it is not connected or the node before it gave no value)" if value is None \
        else f"a {type(value).__name__}"
    raise HyperLoRAError(f"The input '{name}' needs {expected} but got {found}: connect {connect}.")


def require_lora(lora, name: str = "lora", connect: str = "the id_lora output of 'Generate HyperLoRA'") -> None:
    """A LORA_MODEL input must be a dict of tensors."""
    require_input(lora, name, "a LORA_MODEL (a dict of LoRA tensors)", connect,
                  accept=lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()))


def require_model(model) -> None:
    require_input(model, "model", "a MODEL (the diffusion model of an SDXL checkpoint)",
                  "the MODEL output of 'Load Checkpoint' with an SDXL checkpoint",
                  accept=lambda m: hasattr(m, "clone") and hasattr(m, "add_patches") and hasattr(m, "model"))


def require_strength(value, name: str) -> None:
    require_input(value, name, "a number", "a FLOAT value (or type one into the widget)",
                  accept=lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
                  and abs(v) != float("inf"))
