"""Several people in one picture: each region of the latent gets its own identity hook.

'HyperLoRA Region Layout' makes the region masks (left | right, thirds, boxes, feathered), so a
two-person picture needs no mask drawing. 'HyperLoRA Several People' builds the conditioning: for each
(hooks, region) pair a copy of the positive and negative conditioning carrying that identity's hooks
and masked to the region, as the core 'Cond Pair Set Props Combine' node would make it.

What ComfyUI's sampler then does: every conditioning is evaluated on the whole latent, with its hooks'
LoRA patched in, and each pixel's prediction is the mask-weighted average of them. So:
- inside one region, the prediction is that identity's alone (as if its LoRA covered the whole picture);
- where regions overlap (or feathered edges meet), the identities' predictions are blended in
  proportion to the mask values;
- outside every region, the input 'outside' decides: the base model with the shared prompt, or
  identity 1. Pixels that a feathered region covers only partly get the rest from 'outside'.
"""

from __future__ import annotations

import logging

import torch

from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.multi_person import (BOXES, LAYOUTS, MAX_REGIONS, as_single_mask, fit_mask, is_empty,
                                      layout_masks, outside_mask, same_aspect)
from . import CATEGORY
from .comfy_access import comfy_module
from .comfy_v3 import io

log = logging.getLogger(__name__)

OUTSIDE_BASE = "base model"
OUTSIDE_FIRST = "identity 1"


class RegionLayout(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_RegionLayout",
            display_name="HyperLoRA Region Layout",
            category=CATEGORY,
            description=(
                "Region masks for 'HyperLoRA Several People' without drawing: left | right, left | middle | "
                "right, top | bottom, a 2 x 2 grid, or boxes. Set width and height to the picture's size (the "
                "masks are resized to the latent anyway). The fixed layouts cover the picture exactly; "
                "feathering blends the identities across the borders."
            ),
            inputs=[
                io.Combo.Input("layout", options=[*LAYOUTS, BOXES], default="left | right",
                               tooltip="How to divide the picture; region 1 is the first in reading order."),
                io.Int.Input("width", default=1024, min=8, max=16384, step=8,
                             tooltip="Width of the picture in pixels (as in 'Empty Latent Image')."),
                io.Int.Input("height", default=1024, min=8, max=16384, step=8,
                             tooltip="Height of the picture in pixels."),
                io.Int.Input("feather", default=32, min=0, max=1024, step=1,
                             tooltip="Soften the borders over about this many pixels; 0 = hard edges. 24-64 "
                                     "hides the seam between two people."),
                io.String.Input("boxes", default="0 0 0.5 1; 0.5 0 1 1", multiline=False,
                                tooltip="For layout 'boxes' only: up to 4 boxes 'x0 y0 x1 y1' as fractions of "
                                        "the picture (left, top, right, bottom), separated by ';'."),
            ],
            outputs=[
                io.Mask.Output("region_1", display_name="region_1",
                               tooltip="The first region (left, top or top-left, or the first box)."),
                io.Mask.Output("region_2", display_name="region_2", tooltip="The second region."),
                io.Mask.Output("region_3", display_name="region_3",
                               tooltip="The third region (empty for a two-region layout: leave it unconnected)."),
                io.Mask.Output("region_4", display_name="region_4",
                               tooltip="The fourth region (empty unless the layout has four)."),
            ],
        )

    @classmethod
    def execute(cls, layout: str, width: int, height: int, feather: int, boxes: str) -> io.NodeOutput:
        masks = layout_masks(layout, height, width, float(feather), boxes)
        empty = torch.zeros(height, width)
        masks = masks + [empty] * (MAX_REGIONS - len(masks))
        return io.NodeOutput(*(m.unsqueeze(0) for m in masks))


def _region_inputs() -> list:
    optional = []
    for i in range(1, MAX_REGIONS + 1):
        optional += [
            io.Hooks.Input(f"hooks_{i}", optional=True,
                           tooltip=f"Person {i}'s identity: 'HyperLoRA Hooks' (or any HOOKS)."),
            io.Mask.Input(f"region_{i}", optional=True,
                          tooltip=f"Where person {i} is: a MASK from 'HyperLoRA Region Layout', the mask "
                                  "editor or another node."),
            io.Conditioning.Input(f"positive_{i}", optional=True,
                                  tooltip=f"Optional prompt for person {i}'s region, used there instead of the "
                                          "shared positive (describe the whole scene and this person, with the "
                                          "trigger words)."),
        ]
    return optional


class SeveralPeople(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_SeveralPeople",
            display_name="HyperLoRA Several People",
            category=CATEGORY,
            description=(
                "Gives each region of the picture its own identity: up to 4 (hooks, region) pairs, each from "
                "'HyperLoRA Hooks' and a MASK. Connect the outputs to the KSampler, whose MODEL is the plain "
                "SDXL model (no 'Apply HyperLoRA'). Inside a region the identity acts alone; where regions "
                "overlap the identities are blended by mask value; outside every region 'outside' decides (the "
                "base model or identity 1). Each extra person costs about one more UNet evaluation per step "
                "(two with CFG)."
            ),
            inputs=[
                io.Conditioning.Input("positive", tooltip="The shared prompt (the scene, with the trigger words)."),
                io.Conditioning.Input("negative", tooltip="The negative prompt, shared by everyone."),
                io.Latent.Input("latent", tooltip="The latent to be sampled; the masks are fitted to its size."),
                io.Combo.Input("outside", options=[OUTSIDE_BASE, OUTSIDE_FIRST], default=OUTSIDE_BASE,
                               tooltip="What draws the pixels outside every region: the base model with the "
                                       "shared prompt, or identity 1."),
                *_region_inputs(),
            ],
            # Output ids differ from the inputs' (the schema requires it); the names shown stay.
            outputs=[
                io.Conditioning.Output("people_positive", display_name="positive",
                                       tooltip="Positive conditioning with one part per person."),
                io.Conditioning.Output("people_negative", display_name="negative",
                                       tooltip="Negative conditioning with the same parts, so CFG compares like "
                                               "with like."),
            ],
        )

    @classmethod
    def execute(cls, positive, negative, latent, outside: str, **pairs) -> io.NodeOutput:
        people = cls._people(pairs, latent)
        hooks_module = comfy_module("comfy.hooks")
        out_pos, out_neg = [], []
        for n, (hooks, mask, person_pos) in enumerate(people, start=1):
            pos, neg = hooks_module.set_conds_props(
                conds=[person_pos if person_pos is not None else positive, negative], strength=1.0,
                set_cond_area="default", mask=mask.unsqueeze(0), hooks=hooks)
            out_pos += pos
            out_neg += neg
        rest = outside_mask([m for _, m, _ in people])
        if not is_empty(rest):
            hooks = people[0][0] if outside == OUTSIDE_FIRST else None
            pos, neg = hooks_module.set_conds_props(conds=[positive, negative], strength=1.0,
                                                    set_cond_area="default", mask=rest.unsqueeze(0), hooks=hooks)
            out_pos += pos
            out_neg += neg
            log.info("HyperLoRA Several People: %.0f%% of the picture is outside every region (drawn by %s).",
                     100.0 * float(rest.mean()), outside)
        log.info("HyperLoRA Several People: %d people.", len(people))
        return io.NodeOutput(out_pos, out_neg)

    @staticmethod
    def _people(pairs: dict, latent) -> list[tuple]:
        samples = latent.get("samples") if isinstance(latent, dict) else None
        if samples is None or samples.ndim < 4:
            raise HyperLoRAError("latent: connect a LATENT (e.g. from 'Empty Latent Image').")
        height, width = int(samples.shape[-2]), int(samples.shape[-1])
        people = []
        for i in range(1, MAX_REGIONS + 1):
            hooks, mask, person_pos = pairs.get(f"hooks_{i}"), pairs.get(f"region_{i}"), pairs.get(f"positive_{i}")
            if hooks is None and mask is None:
                if person_pos is not None:
                    raise HyperLoRAError(f"positive_{i} is connected but hooks_{i} and region_{i} are not; "
                                         f"connect person {i}'s hooks and region, or remove positive_{i}.")
                continue
            if mask is None:
                raise HyperLoRAError(
                    f"hooks_{i} has no region: more identities than regions. Connect a MASK to region_{i} "
                    f"(e.g. from 'HyperLoRA Region Layout'), or disconnect hooks_{i}.")
            if hooks is None:
                raise HyperLoRAError(
                    f"region_{i} has no identity: more regions than identities. Connect person {i}'s "
                    f"'HyperLoRA Hooks' to hooks_{i}, or disconnect region_{i}.")
            people.append((hooks, _fitted(mask, f"region_{i}", height, width), person_pos))
        if not people:
            raise HyperLoRAError("No person given: connect hooks_1 and region_1 (and hooks_2 / region_2 ...) from "
                                 "'HyperLoRA Hooks' and 'HyperLoRA Region Layout'.")
        return people


def _fitted(mask, name: str, height: int, width: int) -> torch.Tensor:
    source = as_single_mask(mask, name)
    if is_empty(source):
        raise HyperLoRAError(f"{name} is empty (all zero): it selects no pixel. Draw the region in the mask "
                             "editor, or use 'HyperLoRA Region Layout'.")
    fitted, resized = fit_mask(source, height, width)
    if resized:
        shape = tuple(source.shape)
        if same_aspect(shape, (height, width)):
            log.info("HyperLoRA Several People: %s resized from %d x %d to the latent's %d x %d.",
                     name, shape[1], shape[0], width, height)
        else:
            log.warning("HyperLoRA Several People: %s is %d x %d but the latent is %d x %d (another aspect "
                        "ratio); it was stretched to fit. Make the mask the picture's size.",
                        name, shape[1], shape[0], width, height)
    if is_empty(fitted):
        raise HyperLoRAError(f"{name} covers too few pixels to survive resizing to the latent ({width} x "
                             f"{height}, 1/8 of the picture); make the region larger.")
    return fitted
