"""Gradient checkpointing of a module's forward, for the trainer and for Refine HyperLoRA: the
activations inside are recomputed in the backward pass instead of kept."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint


def checkpointed(forward: Callable) -> Callable:
    """``forward`` recomputed in the backward pass; called as it is when no gradient is being taken."""

    def wrapped(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return wrapped
