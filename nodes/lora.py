"""Generate the LoRA from an identity, apply it to an SDXL MODEL, save it as a kohya file."""

from __future__ import annotations

import logging

import torch

from ..hyperlora_core import IdentityFeatures, TRIGGER_WORDS, lora_metadata, save_lora
from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.finite import check_lora_finite
from . import CATEGORY
from .comfy_access import comfy_module
from .comfy_v3 import io, ui
from .identity import Identity
from .inputs import require_input, require_lora, require_model, require_strength
from .loaders import HyperLoRAModel, LoadedHyperLoRA
from .outputs import save_in_output

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
USAGE = f"Start the prompt with '{TRIGGER_WORDS}' (the 'HyperLoRA Prompt' node does it); strength 0.75-0.9."


class GeneratedLoRA(dict):
    """A kohya LoRA dict (what core LORA_MODEL nodes accept) that remembers where it came from."""

    def __init__(self, tensors: dict[str, torch.Tensor] | None = None, kind: str = "id", source: str = "",
                 num_photos: int | None = None):
        super().__init__(tensors or {})
        self.kind = kind
        self.source = source
        self.num_photos = num_photos

    def metadata(self) -> dict[str, str]:
        return lora_metadata(self, source=self.source, num_photos=self.num_photos, kind=self.kind)


def lora_layer_names(lora: dict) -> list[str]:
    """The layer names (key prefixes) of a kohya LoRA dict, in order."""
    layers: dict[str, None] = {}
    for key in lora:
        for suffix in LORA_SUFFIXES:
            if key.endswith(suffix):
                layers[key[: -len(suffix)]] = None
                break
        else:
            raise HyperLoRAError(f"{key!r} is not a key of a kohya LoRA (…lora_down.weight, …lora_up.weight, …alpha).")
    return list(layers)


def describe_model(model) -> str:
    base = getattr(model, "model", None)
    config = getattr(base, "model_config", None)
    if config is not None:
        return f"{type(config).__name__} ({type(base).__name__})"
    return type(base if base is not None else model).__name__


def check_sdxl(model) -> None:
    model_base = comfy_module("comfy.model_base")
    base = getattr(model, "model", None)
    if not isinstance(base, model_base.SDXL):
        raise HyperLoRAError(
            f"HyperLoRA v1 makes LoRAs for SDXL UNets, but this MODEL is {describe_model(model)}. "
            "Load an SDXL checkpoint (SDXL base or a fine-tune such as RealVisXL, Juggernaut XL); "
            "SD 1.5, SD3, Flux and the SDXL refiner are not supported."
        )


def check_layers_land(model, layers: list[str], what: str) -> dict[str, str]:
    """ComfyUI's LoRA key map of the MODEL; every layer must find its weight in it (ComfyUI itself
    skips missing layers, with only a log line for a LoRA and silently for a hook)."""
    key_map = comfy_module("comfy.lora").model_lora_keys_unet(model.model, {})
    missing = [layer for layer in layers if layer not in key_map]
    if missing:
        raise HyperLoRAError(
            f"{len(missing)} of the {len(layers)} layers of the {what} have no matching layer in this MODEL "
            f"({describe_model(model)}), e.g. {missing[0]}. HyperLoRA v1 needs the full SDXL UNet; "
            "distilled SDXL variants (SSD-1B, Vega, KOALA) lack some attention layers."
        )
    return key_map


def add_lora_patches(patched, lora: dict, strength: float, what: str) -> int:
    """Patch `patched` (a ModelPatcher clone) with the LoRA; every layer must land, or nothing is patched."""
    comfy_lora = comfy_module("comfy.lora")
    layers = lora_layer_names(lora)
    key_map = check_layers_land(patched, layers, what)
    loaded = comfy_lora.load_lora(lora, {layer: key_map[layer] for layer in layers}, log_missing=True)
    expected = {key_map[layer] for layer in layers}
    if set(loaded) != expected:
        raise HyperLoRAError(
            f"ComfyUI read {len(loaded)} of the {len(expected)} layers of the {what}; the LoRA is damaged "
            "(each layer needs lora_down.weight, lora_up.weight and alpha)."
        )
    applied = set(patched.add_patches(loaded, strength))
    if applied != expected:
        missed = sorted(expected - applied)
        raise HyperLoRAError(
            f"{len(missed)} layers of the {what} did not land in this MODEL (e.g. {missed[0]}); "
            "is it an SDXL UNet with its usual weight names?"
        )
    return len(applied)


def generate_summary(id_layers: int, base: GeneratedLoRA, identity: IdentityFeatures, network_name: str) -> str:
    """What 'Generate HyperLoRA' shows on itself: the photos used and the layers made."""
    photos = f"{identity.num_photos} photo" + ("s" if identity.num_photos != 1 else "")
    lines = [f"ID-LoRA: {id_layers} layers from {photos} ({', '.join(identity.sources)})",
             f"Base-LoRA: {len(lora_layer_names(base))} layers" if base else "Base-LoRA: none (no Base-LoRA weights)",
             f"network: {network_name}"]
    return "\n".join(lines)


class GenerateLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_GenerateLoRA",
            display_name="Generate HyperLoRA",
            category=CATEGORY,
            description=(
                "Runs HyperLoRA on an identity and outputs the ID-LoRA (and the Base-LoRA when the checkpoint has "
                "Base-LoRA weights; the released v1 variants have none and their ID-LoRA already carries it). "
                "The outputs are ComfyUI LORA_MODEL values: use them with 'Apply HyperLoRA', the core "
                f"'Load LoRA Model' or 'Save HyperLoRA'. It shows the photos used and the layers made. {USAGE}"
            ),
            inputs=[
                HyperLoRAModel.Input("hyperlora", tooltip="The network from 'Load HyperLoRA'."),
                Identity.Input("identity", tooltip="The person, from 'HyperLoRA ID Embedding', 'Blend' or "
                                                   "'Load Identity'."),
            ],
            outputs=[
                io.LoraModel.Output("id_lora", display_name="id_lora",
                                    tooltip="The ID-LoRA for SDXL (kohya format, rank 8, 560 layers for v1)."),
                io.LoraModel.Output("base_lora", display_name="base_lora",
                                    tooltip="The Base-LoRA, or an empty LoRA that changes nothing when the checkpoint "
                                            "has no Base-LoRA weights."),
            ],
        )

    @classmethod
    def execute(cls, hyperlora, identity) -> io.NodeOutput:
        require_input(hyperlora, "hyperlora", "a HYPERLORA_MODEL", "the output of 'Load HyperLoRA'",
                      accept=lambda v: isinstance(v, LoadedHyperLoRA))
        require_input(identity, "identity", "a HYPERLORA_IDENTITY",
                      "the output of 'HyperLoRA ID Embedding', 'Blend HyperLoRA Identities' or "
                      "'Load HyperLoRA Identity'", accept=lambda v: isinstance(v, IdentityFeatures))
        network = hyperlora.ready()
        weights = identity.weights
        id_lora = GeneratedLoRA(network.generate_id_lora(identity.arcface, identity.clip_tokens, weights),
                                kind="id", source=hyperlora.name, num_photos=identity.num_photos)
        base = GeneratedLoRA(kind="base", source=hyperlora.name, num_photos=identity.num_photos)
        if network.has_base_lora:
            if identity.base_clip_tokens is None:
                log.warning("HyperLoRA %s has Base-LoRA weights but the identity has no Base-LoRA crops "
                            "(it was saved without them); the base_lora output is empty.", hyperlora.name)
            else:
                base.update(network.generate_base_lora(identity.base_clip_tokens, weights))
        id_layers = len(lora_layer_names(id_lora))
        log.info("HyperLoRA: generated an ID-LoRA of %d layers from %d photo(s). %s",
                 id_layers, identity.num_photos, USAGE)
        summary = generate_summary(id_layers, base, identity, hyperlora.name)
        return io.NodeOutput(id_lora, base, ui=ui.PreviewText(summary))


class ApplyLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_ApplyLoRA",
            display_name="Apply HyperLoRA",
            category=CATEGORY,
            description=(
                "Applies the generated LoRA to an SDXL MODEL (a patched copy; the input MODEL is not changed). "
                "Every layer of the LoRA must find its place, and a MODEL that is not SDXL is refused with a "
                f"message. {USAGE} CLIP skip -2 (core 'CLIP Set Last Layer' at -2) is what the release recommends."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An SDXL diffusion model (realistic fine-tunes such as "
                                                "RealVisXL 4.0 work best)."),
                io.LoraModel.Input("lora", tooltip="The ID-LoRA from 'Generate HyperLoRA'."),
                io.Float.Input("strength", default=0.85, min=-10.0, max=10.0, step=0.01,
                               tooltip="How strongly to modify the diffusion model: 0.75-0.9 is typical, higher "
                                       "copies the photo more and follows the prompt less. This value can be "
                                       "negative."),
                io.LoraModel.Input("base_lora", optional=True,
                                   tooltip="The Base-LoRA from 'Generate HyperLoRA' (optional)."),
                io.Float.Input("base_strength", optional=True, default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="Strength of the Base-LoRA (background, clothes, hair), added to the "
                                       "ID-LoRA's effect. This value can be negative."),
            ],
            outputs=[io.Model.Output("patched_model", display_name="model",
                                     tooltip="The SDXL model that draws the person.")],
        )

    @classmethod
    def execute(cls, model, lora, strength: float, base_lora=None, base_strength: float = 1.0) -> io.NodeOutput:
        require_model(model)
        require_lora(lora)
        require_strength(strength, "strength")
        if base_lora is not None:
            require_lora(base_lora, "base_lora", "the base_lora output of 'Generate HyperLoRA', or nothing")
            require_strength(base_strength, "base_strength")
        check_sdxl(model)
        if not lora:
            raise HyperLoRAError("The LoRA is empty: connect the id_lora output of 'Generate HyperLoRA'.")
        check_lora_finite(lora, getattr(lora, "source", ""), "ID-LoRA")
        if base_lora:
            check_lora_finite(base_lora, getattr(base_lora, "source", ""), "Base-LoRA")
        patched = model.clone()
        count = 0
        if strength != 0:
            count += add_lora_patches(patched, lora, strength, "ID-LoRA")
        if base_lora and base_strength != 0:
            count += add_lora_patches(patched, base_lora, base_strength, "Base-LoRA")
        log.info("HyperLoRA: patched %d layers of the UNet", count)
        return io.NodeOutput(patched)


class SaveLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_SaveLoRA",
            display_name="Save HyperLoRA",
            category=CATEGORY,
            description=(
                "Saves the generated LoRA as a kohya .safetensors file (with its trigger words and source in the "
                "metadata) in ComfyUI's output folder, default output/loras/, and shows the file's name. Never "
                "overwrites a file. Move or link it into models/loras to use it with the core "
                f"'LoraLoaderModelOnly' node or other SDXL tools. {USAGE}"
            ),
            is_output_node=True,
            inputs=[
                io.LoraModel.Input("lora", tooltip="The LoRA from 'Generate HyperLoRA'."),
                io.String.Input("filename_prefix", default="loras/hyperlora",
                                tooltip="File name inside the output folder; a counter is added. It may not lead "
                                        "outside the output folder."),
            ],
            outputs=[io.String.Output("filename", display_name="filename",
                                      tooltip="The saved file, relative to the output folder.")],
        )

    @classmethod
    def execute(cls, lora, filename_prefix: str) -> io.NodeOutput:
        require_lora(lora)
        if not lora:
            raise HyperLoRAError(
                "The LoRA to save is empty (the base_lora output is empty when the checkpoint has no "
                "Base-LoRA weights); connect id_lora.")
        lora_layer_names(lora)
        meta = lora.metadata() if isinstance(lora, GeneratedLoRA) else lora_metadata(lora)
        rel = save_in_output(filename_prefix, "LoRA", lambda path: save_lora(lora, path, metadata=meta))
        # The node shows the name; API clients read it from the history as before (ui text).
        return io.NodeOutput(rel, ui=ui.PreviewText(rel))
