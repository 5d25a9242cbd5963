"""The refine loop: the ID-LoRA's own tensors trained on a few photos with the standard diffusion loss.

The engine knows no model library. It is given

* ``predict(noisy, timesteps, condition) -> noise prediction``: the frozen UNet (epsilon prediction,
  SDXL's added conditioning inside ``condition``), already on its device and in its dtype;
* ``attach(lora)``: a context manager that puts the trainable LoRA on the UNet's layers and takes it
  off again (:func:`hooks_on` for plain ``nn.Linear`` layers; the ComfyUI node uses ComfyUI's weight
  wrappers);
* the training views, already encoded (:func:`prepare_views`), and the noise schedule.

Each step draws one view, a timestep and noise from a generator seeded by (seed, step), so a run is
repeatable and a step's sample can be drawn again to compare losses.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HyperLoRAError
from .data import PhotoView
from .lora import RefinableLoRA

log = logging.getLogger(__name__)

MAX_STEPS = 5000
MAX_LEARNING_RATE = 1e-2
MAX_FACE_WEIGHT = 20.0
MEMORY_KNOBS = ("lower the resolution (768 or 512), keep gradient checkpointing on, keep the batch at 1 (it is "
                "1), set extra_rank to 0, or free the GPU (close other programs, unload other models); fewer "
                "steps do not help")


class RefineError(HyperLoRAError):
    """Refining stopped: a diverging loss, a bad setting or not enough memory (the message says which)."""


class RefineMemoryError(RefineError):
    """Not enough memory for one training step."""


@dataclass
class RefineSettings:
    steps: int = 100
    learning_rate: float = 1e-4
    extra_rank: int = 0
    face_weight: float = 1.0  # 0: every pixel counts the same; k: face pixels count 1 + k times
    seed: int = 0
    log_every: int = 10

    def check(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise RefineError(f"steps must be a whole number from 1 to {MAX_STEPS} (50-200 is typical), "
                              f"not {self.steps!r}.")
        lr = self.learning_rate
        if not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 < lr <= MAX_LEARNING_RATE:
            raise RefineError(f"learning_rate {lr!r} is out of range: use a value above 0 and at most "
                              f"{MAX_LEARNING_RATE:g} (1e-4 is typical; higher rates wreck the LoRA in a few steps).")
        fw = self.face_weight
        if not isinstance(fw, (int, float)) or not math.isfinite(fw) or not 0 <= fw <= MAX_FACE_WEIGHT:
            raise RefineError(f"face_weight must be from 0 to {MAX_FACE_WEIGHT:g} (1 is typical), not {fw!r}.")


@dataclass
class TrainingView:
    """One encoded view: latents (C, h, w), per-latent-pixel loss weights (h, w), the UNet conditioning."""

    latents: torch.Tensor
    weights: torch.Tensor
    condition: Any
    source: str = ""


@dataclass
class RefineResult:
    lora: dict[str, torch.Tensor]  # the refined kohya tensors, the input's keys (rank + extra rank)
    losses: list[float]  # one per step
    seconds: float
    extra_rank: int = 0

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")


def loss_weights(mask: np.ndarray | torch.Tensor, size: tuple[int, int], face_weight: float) -> torch.Tensor:
    """Per-latent-pixel loss weights (h, w) from a face mask (H, W) in 0..1: 1 + face_weight * mask,
    averaged down to the latent grid and scaled to a mean of 1 (so the loss keeps its size)."""
    mask = torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32)[None, None]
    small = F.adaptive_avg_pool2d(mask, size)[0, 0]
    weights = 1 + face_weight * small
    return weights / weights.mean()


def prepare_views(views: list[PhotoView], encode_pixels: Callable[[torch.Tensor], torch.Tensor],
                  encode_caption: Callable[[str], Any], face_weight: float) -> list[TrainingView]:
    """Encode each view once: ``encode_pixels`` takes (1, H, W, 3) floats 0..1 and gives scaled latents
    (1, C, h, w); ``encode_caption`` gives the UNet conditioning of a caption (cached per caption)."""
    conditions: dict[str, Any] = {}
    out = []
    for view in views:
        pixels = torch.from_numpy(np.ascontiguousarray(view.pixels))[None]
        latents = encode_pixels(pixels)[0].detach().float().cpu().clone()
        if view.caption not in conditions:
            conditions[view.caption] = encode_caption(view.caption)
        out.append(TrainingView(latents, loss_weights(view.mask, tuple(latents.shape[-2:]), face_weight),
                                conditions[view.caption], view.source))
    return out


def hooks_on(modules: dict[str, nn.Module]) -> Callable[[RefinableLoRA], ContextManager]:
    """``attach`` for plain layers: a forward hook on each named layer adds the LoRA's output."""

    @contextlib.contextmanager
    def attach(lora: RefinableLoRA) -> Iterator[None]:
        missing = [layer for layer in lora.layers if layer not in modules]
        if missing:
            raise RefineError(f"{len(missing)} of the {len(lora.layers)} layers of the LoRA have no matching layer "
                              f"in this UNet, e.g. {missing[0]}; the LoRA was made for another base model.")
        handles = []
        try:
            for layer in lora.layers:
                def hook(module, inputs, output, _layer=layer):
                    return output + lora.forward_delta(_layer, inputs[0]).to(output.dtype)
                handles.append(modules[layer].register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()

    return attach


def _is_out_of_memory(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(exc, (oom, MemoryError)) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("out of memory", "not enough memory")))


class Refiner:
    """One refine run, step by step (``refine`` drives it; tests call it directly)."""

    def __init__(self, lora: dict[str, torch.Tensor], predict: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
                 views: list[TrainingView], alphas_cumprod: torch.Tensor, settings: RefineSettings,
                 attach: Callable[[RefinableLoRA], ContextManager], device: torch.device | str = "cpu"):
        settings.check()
        if not views:
            raise RefineError("Refining needs at least one photo with a face.")
        self.settings = settings
        self.device = torch.device(device)
        self.lora = RefinableLoRA(lora, settings.extra_rank, settings.seed, self.device)
        self.predict = predict
        self.views = views
        self.alphas_cumprod = alphas_cumprod.detach().double().cpu()
        self.attach = attach
        self.optimizer = torch.optim.AdamW(self.lora.parameters(), lr=settings.learning_rate, weight_decay=0.0)
        # Loss scaling keeps half-precision gradients of the small LoRA factors from underflowing.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.step_index = 0

    def sample(self, step: int) -> tuple[TrainingView, torch.Tensor, torch.Tensor]:
        """The view, timestep and noise of a step (repeatable: drawn from (seed, step))."""
        generator = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + step)
        epoch, position = divmod(step, len(self.views))
        order = torch.randperm(len(self.views), generator=torch.Generator().manual_seed(self.settings.seed + epoch))
        view = self.views[int(order[position])]
        timestep = torch.randint(0, self.alphas_cumprod.shape[0], (1,), generator=generator)
        noise = torch.randn(view.latents.shape, generator=generator)
        return view, timestep, noise

    def loss(self, step: int) -> torch.Tensor:
        """The face-weighted noise-prediction loss of a step's sample (LoRA attached by the caller)."""
        view, timestep, noise = self.sample(step)
        latents = view.latents.to(self.device)[None]
        noise = noise.to(self.device)[None]
        alpha = float(self.alphas_cumprod[timestep])
        noisy = math.sqrt(alpha) * latents + math.sqrt(1 - alpha) * noise
        prediction = self.predict(noisy, timestep.to(self.device), view.condition)
        error = (prediction.float() - noise).pow(2).mean(1)[0]  # (h, w)
        return (error * view.weights.to(self.device)).mean()

    def evaluate(self, steps: list[int]) -> float:
        """Mean loss over the samples of the given steps, without training (LoRA attached here)."""
        with torch.no_grad(), self.attach(self.lora):
            return float(sum(float(self.loss(s)) for s in steps) / len(steps))

    def step(self) -> float:
        """One optimiser step (the LoRA must be attached); returns its loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.step_index)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RefineError(
                f"The training loss became {value} at step {self.step_index + 1} of {self.settings.steps}: the run "
                f"is stopped and nothing is output. Lower the learning rate (now {self.settings.learning_rate:g}); "
                "if it happens at the first step, the model or the photos give non-finite values (try float32 "
                "or another VAE).")
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.lora.parameters(), 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_index += 1
        return value


def refine(lora: dict[str, torch.Tensor], predict: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
           views: list[TrainingView], alphas_cumprod: torch.Tensor, settings: RefineSettings,
           attach: Callable[[RefinableLoRA], ContextManager], device: torch.device | str = "cpu",
           on_step: Callable[[int, float], None] | None = None,
           check_cancel: Callable[[], None] | None = None) -> RefineResult:
    """Refine ``lora`` for ``settings.steps`` steps; returns the refined LoRA and the loss of each step.

    ``check_cancel`` is called before every step and stops the run by raising (ComfyUI's
    ``throw_exception_if_processing_interrupted``); the layers are restored and nothing is returned.
    A non-finite loss or an out-of-memory error raises :class:`RefineError` with what to change.
    """
    refiner = Refiner(lora, predict, views, alphas_cumprod, settings, attach, device)
    losses: list[float] = []
    started = time.perf_counter()
    try:
        with torch.enable_grad(), refiner.attach(refiner.lora):
            for step in range(settings.steps):
                if check_cancel is not None:
                    check_cancel()
                losses.append(refiner.step())
                if on_step is not None:
                    on_step(step + 1, losses[-1])
                if settings.log_every and ((step + 1) % settings.log_every == 0 or step + 1 == settings.steps):
                    recent = losses[-settings.log_every:]
                    log.info("refine step %d/%d: loss %.4f", step + 1, settings.steps, sum(recent) / len(recent))
    except RefineError:
        raise
    except Exception as exc:
        if _is_out_of_memory(exc):
            raise RefineMemoryError(f"Not enough memory to refine the LoRA ({' '.join(str(exc).split())[:200]}): "
                                    f"{MEMORY_KNOBS}.") from exc
        raise
    refined = refiner.lora.export()
    bad = next((k for k, t in refined.items() if not torch.isfinite(t).all()), None)
    if bad is not None:
        raise RefineError(f"The refined LoRA holds non-finite values ({bad}) after {settings.steps} steps: nothing is "
                          f"output. Lower the learning rate (now {settings.learning_rate:g}).")
    return RefineResult(refined, losses, time.perf_counter() - started, settings.extra_rank)
