"""Refine HyperLoRA: a short fine-tune of the generated ID-LoRA on the person's photos, inside ComfyUI.

The node adapts ComfyUI's objects to the engine (hyperlora_core.refine): the VAE encodes the views,
CLIP the captions (with SDXL's size conditioning from the MODEL), and the UNet of a clone of the MODEL
is the denoiser. The LoRA reaches the UNet as ComfyUI's own weight wrappers on the layers that ComfyUI's
LoRA key map gives for its kohya names (the map 'Apply HyperLoRA' uses), added to the clone only and
removed when the clone is unloaded after the run; the MODEL given to the node is never changed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import torch

from ..hyperlora_core.checkpointing import checkpointed
from ..hyperlora_core.errors import HyperLoRAError
from ..hyperlora_core.refine import (RefineSettings, captions_for, check_id_lora, prepare_views, refine,
                                     training_views)
from ..hyperlora_core.refine.curve import loss_curve_image
from ..hyperlora_core.refine.engine import MAX_STEPS, RefineError
from ..hyperlora_core.refine.lora import MAX_EXTRA_RANK, RefinableLoRA
from . import CATEGORY
from .comfy_access import comfy_module, progress_bar
from .comfy_v3 import io, ui
from .faces import FaceBatch, Faces
from .images import uint8_to_image
from .inputs import require_input, require_lora, require_model
from .lora import GeneratedLoRA, add_lora_patches, check_layers_land, check_sdxl, describe_model

log = logging.getLogger(__name__)


def _require_settings(steps, learning_rate, extra_rank, face_weight, seed, resolution) -> RefineSettings:
    settings = RefineSettings(steps=steps, learning_rate=learning_rate, extra_rank=extra_rank,
                              face_weight=face_weight, seed=seed, log_every=10)
    settings.check()
    if isinstance(extra_rank, bool) or not isinstance(extra_rank, int) or not 0 <= extra_rank <= MAX_EXTRA_RANK:
        raise RefineError(f"extra_rank must be a whole number from 0 to {MAX_EXTRA_RANK}, not {extra_rank!r}.")
    if not isinstance(resolution, int) or resolution < 256 or resolution > 2048 or resolution % 64:
        raise RefineError(f"resolution must be a multiple of 64 from 256 to 2048 (1024 is SDXL's own), "
                          f"not {resolution!r}.")
    return settings


def _require_faces(faces) -> None:
    require_input(faces, "faces", "HYPERLORA_FACES", "the faces output of 'Load Faces (HyperLoRA)'",
                  accept=lambda v: isinstance(v, FaceBatch))
    if not faces.results:
        raise HyperLoRAError("No photo with a face reached 'Refine HyperLoRA': give 'Load Faces' photos where the face "
                             "is clearly visible.")
    if len(faces.photos) != len(faces.results):
        raise HyperLoRAError("These faces carry no photos to train on (they come from an older 'Load Faces'); run "
                             "'Load Faces (HyperLoRA)' again.")


def _require_eps_model(model) -> None:
    model_type = getattr(model.model, "model_type", None)
    if model_type is not None and getattr(model_type, "name", "EPS") != "EPS":
        raise HyperLoRAError(f"Refining trains SDXL's noise prediction (epsilon), but this MODEL "
                             f"({describe_model(model)}) predicts {model_type.name}; use an epsilon SDXL checkpoint.")


def _encoders(model, vae, clip, resolution: int):
    latent_format = model.model.latent_format

    def encode_pixels(pixels: torch.Tensor) -> torch.Tensor:
        return latent_format.process_in(vae.encode(pixels[..., :3]).float()).clone()

    def encode_caption(caption: str):
        cond, pooled = clip.encode_from_tokens(clip.tokenize(caption), return_pooled=True)
        y = model.model.encode_adm(pooled_output=pooled, width=resolution, height=resolution, crop_w=0, crop_h=0,
                                   target_width=resolution, target_height=resolution)
        return {"context": cond.detach().float().cpu().clone(), "y": y.detach().float().cpu().clone()}

    return encode_pixels, encode_caption


def _same_values(weight: torch.Tensor) -> torch.Tensor:
    return weight


@contextlib.contextmanager
def _checkpointed_blocks(unet: torch.nn.Module) -> Iterator[int]:
    """Gradient checkpointing on the UNet's input, middle and output blocks; their forwards are restored after."""
    blocks = [*getattr(unet, "input_blocks", []), getattr(unet, "middle_block", None), *getattr(unet, "output_blocks", [])]
    blocks = [b for b in blocks if b is not None]
    for block in blocks:
        block.forward = checkpointed(block.forward)
    try:
        yield len(blocks)
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


class ComfyRefineRun:
    """The MODEL clone being trained: the LoRA as weight wrappers, loaded by ComfyUI, unloaded after."""

    def __init__(self, model, key_map: dict[str, str]):
        self.mm = comfy_module("comfy.model_management")
        self.patcher = model.clone()
        self.key_map = key_map
        base = self.patcher.model
        self.dtype = getattr(base, "manual_cast_dtype", None) or base.get_dtype()
        self.device = self.patcher.load_device
        sigmas = base.model_sampling.sigmas.detach().double().cpu()
        self.alphas_cumprod = 1.0 / (1.0 + sigmas ** 2)

    def predict(self, noisy, timesteps, condition):
        unet = self.patcher.model.diffusion_model
        return unet(noisy.to(self.dtype), timesteps=timesteps.to(self.device).float(),
                    context=condition["context"].to(self.device, self.dtype),
                    y=condition["y"].to(self.device, self.dtype)).float()

    @contextlib.contextmanager
    def attach(self, lora: RefinableLoRA) -> Iterator[None]:
        lora_keys = {}
        for layer in lora.layers:
            key = self.key_map[layer]
            lora_keys[key] = layer

            def add_delta(weight, _layer=layer):
                return weight + lora.weight_delta(_layer, weight.dtype).to(weight.device)

            self.patcher.add_weight_wrapper(key, add_delta)
        # Every other weight gets a wrapper that changes nothing: ComfyUI then hands the layer a fresh
        # copy of its weight. The weights were made under inference mode, and autograd cannot save an
        # inference tensor for the backward pass through the frozen layers.
        for name, module in self.patcher.model.named_modules():
            if not hasattr(module, "weight_function"):
                continue
            for part in ("weight", "bias"):
                key = f"{name}.{part}"
                if getattr(module, part, None) is not None and key not in lora_keys:
                    self.patcher.add_weight_wrapper(key, _same_values)
        self.mm.load_models_gpu([self.patcher], force_full_load=True)
        unet = self.patcher.model.diffusion_model
        try:
            with _checkpointed_blocks(unet):
                yield
        finally:
            self.release()

    def release(self) -> None:
        """Unload the clone (its wrappers go with it) and hand the memory back."""
        loaded = self.mm.current_loaded_models
        for i in reversed(range(len(loaded))):
            if loaded[i].model is self.patcher:
                loaded.pop(i).model_unload()
        self.mm.soft_empty_cache()


LIKENESS_STRENGTH = 0.85
LIKENESS_NEGATIVE = "blurry, lowres, deformed, cartoon, watermark, text"


def _likeness_notes(before, after, model, vae, clip, faces: FaceBatch, count: int, resolution: int) -> list[str]:
    """The likeness of fixed-prompt pictures with the generated and with the refined LoRA, as text lines."""
    import numpy as np

    from ..hyperlora_core.refine.validate import compare_likeness

    if faces.analyzer is None:
        return ["likeness: not measured (these faces carry no face analyzer; run 'Load Faces' again)"]
    sampler = comfy_module("nodes").common_ksampler
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(LIKENESS_NEGATIVE))
    side = resolution // 8

    def render(lora, prompts):
        patched = model.clone()
        add_lora_patches(patched, lora, LIKENESS_STRENGTH, "ID-LoRA")
        pictures = []
        for prompt, seed in prompts:
            comfy_module("comfy.model_management").throw_exception_if_processing_interrupted()
            positive = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
            latent = {"samples": torch.zeros(1, 4, side, side)}
            samples = sampler(patched, seed, 20, 5.0, "euler", "normal", positive, negative, latent)[0]["samples"]
            image = vae.decode(samples)[0, ..., :3].float().clamp(0, 1)
            pictures.append((image.cpu().numpy() * 255).round().astype(np.uint8))
        return pictures

    reference = np.stack([r.arcface_embedding for r in faces.results])
    comparison = compare_likeness(render, before, after, faces.analyzer, reference, count)
    lines = ["likeness to the photos (ArcFace), generated -> refined:"] + [line.strip() for line in comparison.lines()]
    log.info("HyperLoRA: %s", "; ".join(lines))
    return lines


class RefineLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HLS_RefineLoRA",
            display_name="Refine HyperLoRA",
            category=CATEGORY,
            description=(
                "Fine-tunes the generated ID-LoRA for a short while on the person's own photos (HyperDreamBooth's "
                "fast fine-tuning): starts exactly from the generated LoRA, trains only its own layers (the UNet, "
                "VAE and text encoders stay frozen), weights the loss towards the face. Use it when the zero-shot "
                "LoRA is close but not quite the person. 100 steps take about a minute on a recent GPU at 1024 px; "
                "on a CPU use the tiny test models only. The output loads like the generated LoRA: 'Apply HyperLoRA', "
                "'Save HyperLoRA', or saved and loaded with the core 'LoraLoaderModelOnly'. Cancel stops it and "
                "outputs nothing."
            ),
            inputs=[
                io.LoraModel.Input("lora", tooltip="The ID-LoRA from 'Generate HyperLoRA' (or a HyperLoRA file loaded "
                                                   "with the core 'Load LoRA Model')."),
                io.Model.Input("model", tooltip="The SDXL model the LoRA will be used with (not changed)."),
                io.Vae.Input("vae", tooltip="The SDXL VAE (from the same checkpoint): encodes the photos."),
                io.Clip.Input("clip", tooltip="The SDXL text encoders (from the same checkpoint): encode the captions."),
                Faces.Input("faces", tooltip="The person's photos from 'Load Faces (HyperLoRA)': 3-10 varied photos "
                                             "work best; the face masks come with them."),
                io.Int.Input("steps", default=100, min=1, max=MAX_STEPS,
                             tooltip="Training steps (one photo view each). 50-200 is typical; more starts copying "
                                     "the photos (pose, background)."),
                io.Float.Input("learning_rate", default=1e-4, min=1e-6, max=1e-2, step=1e-5, round=1e-6,
                               tooltip="Step size. 1e-4 is a safe start; 2e-4-5e-4 refines faster and risks "
                                       "over-fitting; above 1e-3 the LoRA breaks quickly."),
                io.Int.Input("extra_rank", default=0, min=0, max=MAX_EXTRA_RANK,
                             tooltip="Rank added to every layer (HyperDreamBooth's 'rank relaxation'), zero at the "
                                     "start. 0 keeps the LoRA's rank (8); 4-8 lets it learn finer detail and makes "
                                     "the file larger."),
                io.Float.Input("face_weight", default=1.0, min=0.0, max=20.0, step=0.1,
                               tooltip="How much more the face counts in the loss than the rest of the picture: 0 "
                                       "treats every pixel alike; 1 makes face pixels count twice."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=True,
                             tooltip="Seed of the augmentation, the noise and the extra rank: the same seed gives "
                                     "the same LoRA (set 'control after generate' to fixed to keep it)."),
                io.String.Input("caption", default="a photo of a person", multiline=True,
                                tooltip="A short neutral caption, one line per photo (the last line repeats); the "
                                        "trigger words are put in front. Name what is not the person's identity "
                                        "(clothes, background) so the LoRA does not learn it."),
                io.Int.Input("resolution", default=1024, min=256, max=2048, step=64,
                             tooltip="Side of the square training views. 1024 is SDXL's own; 768 or 512 uses far "
                                     "less memory and time."),
                io.Int.Input("likeness_pictures", default=0, min=0, max=8, optional=True,
                             tooltip="Render this many pictures with fixed prompts and seeds (20 Euler steps, at "
                                     "the resolution above) with the generated and with the refined LoRA, and show "
                                     "the ArcFace likeness of each to the photos under the loss curve. 0: off."),
            ],
            outputs=[
                io.LoraModel.Output("refined_lora", display_name="refined_lora",
                                    tooltip="The refined ID-LoRA (same kohya layout; rank + extra_rank)."),
                io.Image.Output("loss_curve", display_name="loss_curve",
                                tooltip="The training loss of each step (also shown on the node)."),
            ],
        )

    @classmethod
    def execute(cls, lora, model, vae, clip, faces, steps: int, learning_rate: float, extra_rank: int,
                face_weight: float, seed: int, caption: str, resolution: int,
                likeness_pictures: int = 0) -> io.NodeOutput:
        settings = _require_settings(steps, learning_rate, extra_rank, face_weight, seed, resolution)
        if isinstance(likeness_pictures, bool) or not isinstance(likeness_pictures, int) \
                or not 0 <= likeness_pictures <= 8:
            raise RefineError(f"likeness_pictures must be a whole number from 0 to 8, not {likeness_pictures!r}.")
        require_lora(lora)
        require_model(model)
        require_input(vae, "vae", "a VAE", "the VAE output of 'Load Checkpoint'", accept=lambda v: hasattr(v, "encode"))
        require_input(clip, "clip", "a CLIP", "the CLIP output of 'Load Checkpoint'",
                      accept=lambda v: hasattr(v, "tokenize") and hasattr(v, "encode_from_tokens"))
        _require_faces(faces)
        shapes = check_id_lora(lora)
        check_sdxl(model)
        _require_eps_model(model)
        key_map = check_layers_land(model, list(shapes), "ID-LoRA")
        key_map = {layer: key_map[layer] for layer in shapes}

        mm = comfy_module("comfy.model_management")
        views = training_views(faces.photos, [r.landmarks for r in faces.results],
                               captions_for(caption, len(faces.results)), resolution, seed=seed,
                               sources=list(faces.sources) or None)
        encode_pixels, encode_caption = _encoders(model, vae, clip, resolution)
        # ComfyUI runs nodes in inference mode; tensors made there cannot take part in a backward pass.
        with torch.inference_mode(False):
            encoded = prepare_views(views, encode_pixels, encode_caption, face_weight)
        mm.throw_exception_if_processing_interrupted()

        run = ComfyRefineRun(model, key_map)
        log.info("HyperLoRA: refining the ID-LoRA (%d layers) for %d steps on %d views at %d px",
                 len(shapes), settings.steps, len(encoded), resolution)
        bar = progress_bar(settings.steps)
        with torch.inference_mode(False):
            result = refine(lora, run.predict, encoded, run.alphas_cumprod, settings, run.attach,
                            device=run.device, on_step=lambda step, loss: bar.update_absolute(step, settings.steps),
                            check_cancel=mm.throw_exception_if_processing_interrupted)
        log.info("HyperLoRA: refined the ID-LoRA for %d steps on %d views (%.2f steps/s), loss %.4f -> %.4f",
                 result.steps, len(encoded), result.steps_per_second, result.losses[0], result.losses[-1])
        refined = GeneratedLoRA(result.lora, kind="id", source=getattr(lora, "source", "") or "refined",
                                num_photos=len(faces.results))
        notes = []
        if likeness_pictures:
            notes = _likeness_notes(lora, refined, model, vae, clip, faces, likeness_pictures, resolution)
        curve = uint8_to_image([loss_curve_image(result.losses, notes=notes)])
        return io.NodeOutput(refined, curve, ui=ui.PreviewImage(curve, cls=cls))
