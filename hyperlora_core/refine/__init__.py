"""Refine: a short fine-tune of a generated ID-LoRA on the person's own photos (HyperDreamBooth's
"rank-relaxed" fast fine-tuning).

``lora.py`` checks the ID-LoRA and holds its trainable copy (plus the optional extra rank),
``data.py`` turns photos and face landmarks into training views (crops, flips, face masks, captions),
``engine.py`` runs the loop against any UNet callable, ``curve.py`` draws the loss curve. Nothing here
imports ComfyUI: the node adapts ComfyUI's MODEL/VAE/CLIP to the engine, the command line diffusers.
"""

from .data import DEFAULT_CAPTION, PhotoView, captions_for, face_mask, training_views
from .engine import (RefineResult, RefineSettings, TrainingView, hooks_on, loss_weights, prepare_views,
                     refine)
from .lora import RefinableLoRA, check_id_lora

__all__ = [
    "DEFAULT_CAPTION", "PhotoView", "captions_for", "face_mask", "training_views",
    "RefineResult", "RefineSettings", "TrainingView", "hooks_on", "loss_weights", "prepare_views", "refine",
    "RefinableLoRA", "check_id_lora",
]
