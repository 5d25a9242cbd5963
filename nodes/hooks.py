"""A generated LoRA as ComfyUI HOOKS: a LoRA attached to a conditioning, for part of the steps.

The hook is made by ComfyUI's own `comfy.hooks.create_hook_lora` from the kohya dict, exactly as the
core 'Create Hook LoRA' node makes one from a file, so every core hook node (Cond Set Props with a
mask, Set Hook Keyframes, Cond Pair nodes, Combine Hooks) treats it the same way. The schedule
(start_at, end_at, ramp) becomes a `comfy.hooks.HookKeyframeGroup`.
"""

from __future__ import annotations

import logging
import re

from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.schedule import identity_keyframes
from . import CATEGORY
from .comfy_access import comfy_module
from .comfy_v3 import io
from .lora import check_layers_land, check_sdxl, lora_layer_names

log = logging.getLogger(__name__)

# HyperLoRA v1 makes LoRAs for the attention projections of the SDXL UNet only.
HYPERLORA_LAYER = re.compile(r"^lora_unet_.+_attn[12]_to_(q|k|v|out_0)$")


def check_hyperlora_lora(lora, what: str) -> list[str]:
    """The layers of a LoRA from 'Generate HyperLoRA'; anything else is refused with a message."""
    if not isinstance(lora, dict):
        raise HyperLoRAError(f"{what} is a {type(lora).__name__}, not a LoRA; connect the id_lora output of "
                             "'Generate HyperLoRA'.")
    if not lora:
        raise HyperLoRAError(f"{what} is empty; connect the id_lora output of 'Generate HyperLoRA' "
                             "(base_lora is empty when the checkpoint has no Base-LoRA weights).")
    layers = lora_layer_names(lora)
    foreign = [layer for layer in layers if not HYPERLORA_LAYER.match(layer)]
    if foreign:
        raise HyperLoRAError(
            f"{what} is not a HyperLoRA LoRA: {len(foreign)} of its {len(layers)} layers are not SDXL UNet "
            f"attention layers (e.g. {foreign[0]}). Connect 'Generate HyperLoRA'; for any other LoRA file "
            "use the core 'Create Hook LoRA' node.")
    return layers


def keyframe_group(frames: list[tuple[float, float]]):
    """A comfy.hooks.HookKeyframeGroup for the schedule, or None for full strength at every step."""
    if not frames:
        return None
    hooks = comfy_module("comfy.hooks")
    group = hooks.HookKeyframeGroup()
    for percent, strength in frames:
        # guarantee_steps=0: the keyframe follows the sampling fraction alone, as PuLID's start_at does.
        group.add(hooks.HookKeyframe(strength=strength, start_percent=percent, guarantee_steps=0))
    return group


class LoRAHooks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_LoRAHooks",
            display_name="HyperLoRA Hooks (regions, steps)",
            category=CATEGORY,
            description=(
                "Turns the generated LoRA into ComfyUI HOOKS: the LoRA then acts only on the conditioning it is "
                "attached to (core 'Cond Pair Set Props' / 'Cond Set Props', with a mask for one region, or "
                "'HyperLoRA Several People'), and only from start_at to end_at of the sampling. Use the plain "
                "MODEL (without 'Apply HyperLoRA') in the KSampler. start_at 0.2-0.3 lets the prompt set the "
                "composition before the face comes in; strength 0.8-1.0 (a hook at 0.85 equals 'Apply "
                "HyperLoRA' at 0.85)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The SDXL MODEL the KSampler uses; checked to be SDXL with every "
                                                "layer of the LoRA in place (it is not changed)."),
                io.LoraModel.Input("lora", tooltip="The ID-LoRA from 'Generate HyperLoRA'."),
                io.Float.Input("strength", default=0.85, min=-10.0, max=10.0, step=0.01,
                               tooltip="Strength of the ID-LoRA, as in 'Apply HyperLoRA': 0.75-0.9 is typical."),
                io.Float.Input("start_at", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the sampling at which the identity starts: 0 = from the "
                                       "first step; 0.2-0.3 keeps the prompt's composition and pose."),
                io.Float.Input("end_at", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the sampling at which the identity stops (1 = to the last "
                                       "step)."),
                io.Float.Input("ramp", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="0 = full strength at start_at; otherwise the strength rises linearly "
                                       "from 0 at start_at to full at start_at + ramp (in 4 keyframes)."),
                io.LoraModel.Input("base_lora", optional=True,
                                   tooltip="The Base-LoRA from 'Generate HyperLoRA' (optional)."),
                io.Float.Input("base_strength", optional=True, default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="Strength of the Base-LoRA, with the same schedule as the ID-LoRA."),
                io.Hooks.Input("prev_hooks", optional=True,
                               tooltip="Hooks to add these to (as in the core 'Create Hook LoRA')."),
            ],
            outputs=[io.Hooks.Output("hooks", display_name="hooks",
                                     tooltip="HOOKS for the core hook nodes and 'HyperLoRA Several People'.")],
        )

    @classmethod
    def execute(cls, model, lora, strength: float, start_at: float, end_at: float, ramp: float,
                base_lora=None, base_strength: float = 1.0, prev_hooks=None) -> io.NodeOutput:
        frames = identity_keyframes(start_at, end_at, ramp)  # schedule errors before any work
        check_sdxl(model)
        kf = keyframe_group(frames)
        hooks_module = comfy_module("comfy.hooks")
        loras = [(lora, strength, "ID-LoRA (input 'lora')")]
        if base_lora:
            loras.append((base_lora, base_strength, "Base-LoRA (input 'base_lora')"))
        group = hooks_module.HookGroup()
        for tensors, weight, what in loras:
            layers = check_hyperlora_lora(tensors, what)
            check_layers_land(model, layers, what)
            if weight == 0:
                continue  # as the core node: a LoRA at strength 0 adds no hook
            group = group.clone_and_combine(
                hooks_module.create_hook_lora(lora=dict(tensors), strength_model=weight, strength_clip=0.0))
        if len(group) and kf is not None:
            group.set_keyframes_on_hooks(hook_kf=kf)
        if len(group) == 0:
            log.info("HyperLoRA hooks: every strength is 0, so no hook is added.")
        else:
            log.info("HyperLoRA hooks: %d LoRA hook(s), from %.2f to %.2f of the sampling%s.", len(group),
                     start_at, end_at, f", ramp {ramp:.2f}" if ramp else "")
        if prev_hooks is not None:
            return io.NodeOutput(prev_hooks.clone_and_combine(group))
        return io.NodeOutput(group)
