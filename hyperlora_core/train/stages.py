"""What each training stage trains, and the network a run starts from (fresh or warm-started)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..model.hyperlora import HyperLoRA
from .config import Config
from .lora_inject import AttentionTarget, match_release_modules
from .network import TrainableHyperLoRA
from .release import shape_of, warm_start

log = logging.getLogger(__name__)

_SEED_MIX = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class Stage:
    trains: tuple[str, ...]  # parts of TrainableHyperLoRA.parts()
    id_lora: bool  # the ID-LoRA is applied
    arcface: bool  # the ID-LoRA sees the ArcFace embedding (else zeros)


STAGES = {
    "base": Stage(("base_resampler", "base_bases"), id_lora=False, arcface=False),
    "id_clip": Stage(("resampler", "id_bases"), id_lora=True, arcface=False),
    "id_full": Stage(("id_projector", "resampler", "id_bases"), id_lora=True, arcface=True),
}


def mix_seed(*values: int) -> int:
    """A seed from several integers (run seed, rank, step...), the same on every machine."""
    h = 0
    for v in values:
        h = (h * _SEED_MIX + int(v) + 1) % (2**63 - 1)
    return h


def build_network(config: Config,
                  unet_targets: list[AttentionTarget]) -> tuple[TrainableHyperLoRA, list[AttentionTarget]]:
    """A fresh network for the UNet's attention modules, or one warm-started from a release folder."""
    n = config.network
    shape = n.shape()
    with_base = n.with_base or config.training.stage == "base"
    if not n.init_from:
        net = TrainableHyperLoRA([t.spec for t in unet_targets], shape, with_base)
        net.reset(config.training.seed)
        return net, unet_targets
    model = HyperLoRA.from_pretrained(n.init_from, torch.float32, "cpu")
    targets = match_release_modules(unet_targets, model.target_modules, n.init_from)
    shape = shape_of(model, shape)
    net = TrainableHyperLoRA(model.target_modules, shape, with_base or model.has_base_lora)
    net.reset(config.training.seed)
    copied = warm_start(net, model)
    log.info("Warm start from %s: %s", n.init_from, ", ".join(copied))
    return net, targets
