"""The training loop: a frozen base model, the hyper-network's LoRA per sample, noise-prediction loss.

Stages (``training.stage``), as in the paper, each a configuration of what learns and what it sees:

=========  ===============================================  =====================================
stage      learns                                           conditioning of the LoRA
=========  ===============================================  =====================================
base       Base-LoRA resampler and bases                    CLIP tokens of the face-blurred crop
id_clip    ID resampler and ID bases                        CLIP tokens of the face crop; the
                                                            ArcFace input is zero (projector frozen)
id_full    ID projector, ID resampler and ID bases          ArcFace embedding and CLIP tokens
=========  ===============================================  =====================================

In the ID stages a Base-LoRA (from ``network.init_from``) is applied frozen, switched off per sample
with probability ``drop_base_lora``; the ID-LoRA is switched off with ``drop_id_lora``; samples with
the ID-LoRA on get the trigger words in front of their caption unless dropped (``drop_trigger``).

Everything random in a step (which photo, its timestep, its noise, the switches) is drawn from a
generator seeded by the run's seed and the sample's position in the global stream of samples, so a
resumed run continues exactly, and N processes with batch B see the same samples, noise and
switches as one process with batch N x B.

Several processes (``training.strategy``): ``ddp`` keeps the whole network on every rank
(DistributedDataParallel); ``fsdp`` shards its parameters, gradients and AdamW state with FSDP2
(see :mod:`.sharding`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..files.atomic import write_atomic
from ..errors import CheckpointError
from .backbone import Backbone, checkpoint_blocks, load_backbone
from .checkpoints import latest_checkpoint, resume_from_checkpoint, save_checkpoint
from .config import Config, ConfigError
from .data import CachedDataset, collate, prepare_cache
from .distributed import barrier, mean_across, setup
from .lora_inject import LoRAState, find_attention_modules, inject
from .release import export_release
from .sample_likeness import SampleLikeness
from .sharding import check_launch, gathered, gradient_sync, grad_scaler, shard
from .stages import STAGES, build_network, mix_seed

log = logging.getLogger(__name__)


class Trainer:
    """One training run; ``run()`` trains to ``training.max_steps`` (resuming if it can)."""

    def __init__(self, config: Config, backbone: Backbone | None = None):
        self.config = config
        t = config.training
        self.stage = STAGES[t.stage]
        check_launch(t.strategy)
        self.sharded = t.strategy == "fsdp"
        self.dist, self.device = setup(t.device, force_group=self.sharded)
        if t.mixed_precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("training.mixed_precision = \"fp16\" needs a GPU; on a CPU use \"bf16\" or \"no\".")
        self.amp_dtype = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[t.mixed_precision]
        self.backbone = backbone if backbone is not None else load_backbone(config.model)
        self.backbone.to(self.device, self.amp_dtype or torch.float32)
        unet_targets = find_attention_modules(self.backbone.unet)
        if not unet_targets:
            raise CheckpointError(
                f"The base model's UNet ({type(self.backbone.unet).__name__}) has no attention modules named "
                "'...attn<N>' with to_q, to_k, to_v and to_out[0] linear layers; the trainer cannot place a LoRA."
            )
        self.net, self.targets = build_network(config, unet_targets)
        if self.stage.id_lora is False and not self.net.has_base:
            raise ConfigError("The base stage needs Base-LoRA parts.")  # build_network adds them; defensive
        self.net.to(self.device)
        self.lora_state = LoRAState()
        inject(self.backbone.unet, self.targets, self.lora_state)
        if t.gradient_checkpointing and not self.backbone.enable_gradient_checkpointing():
            checkpoint_blocks(self.backbone.unet, self.targets)

        parts = self.net.parts()
        trains = [p for p in self.stage.trains if t.train_bases or not p.endswith("_bases")]
        self.net.requires_grad_(False)
        for name in trains:
            parts[name].requires_grad_(True)
        if self.sharded:  # before the optimizer: it must see the sharded parameters
            shard(self.net, self.device, self.dist.world_size)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        log.info("Stage %s: training %s (%.2fM parameters) on %d attention modules of %s, device %s%s%s",
                 t.stage, ", ".join(trains), sum(p.numel() for p in self.params) / 1e6, len(self.targets),
                 self.backbone.description or type(self.backbone).__name__, self.device,
                 f", {self.dist.world_size} processes" if self.dist.enabled else "",
                 f" ({t.strategy})" if self.dist.enabled or self.sharded else "")
        self.optimizer = torch.optim.AdamW(self.params, lr=t.lr, weight_decay=t.weight_decay)
        if self.sharded:
            self.scaler = grad_scaler(t.mixed_precision == "fp16")
        else:
            self.scaler = torch.amp.GradScaler("cuda") if t.mixed_precision == "fp16" else None
        if self.sharded:
            self.model = self.net  # fully_shard made the network its own data-parallel wrapper
        elif self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids)
        else:
            self.model = self.net
        self.step = 0
        self.dataset: CachedDataset | None = None
        self.likeness = SampleLikeness.from_config(config)  # None without data.face_models
        self._perm: tuple[int, list[int]] | None = None

    # -- paths ---------------------------------------------------------------------------------

    @property
    def output(self) -> Path:
        return self.config.output_dir

    @property
    def checkpoints(self) -> Path:
        return self.output / "checkpoints"

    # -- data ----------------------------------------------------------------------------------

    def prepare_data(self) -> CachedDataset:
        d = self.config.data
        if d.folder or d.manifest:
            if self.dist.is_main:
                prepare_cache(self.config, self.backbone)
            barrier(self.dist)
        self.dataset = CachedDataset(self.config.cache_dir)
        if self.dataset.no_face and self.dist.is_main:
            log.info("%d photos of the data have no face and are not trained on.", len(self.dataset.no_face))
        return self.dataset

    def _index(self, position: int) -> int:
        count = len(self.dataset)
        epoch, within = divmod(position, count)
        if self._perm is None or self._perm[0] != epoch:
            generator = torch.Generator().manual_seed(mix_seed(self.config.training.seed, 1, epoch))
            self._perm = (epoch, torch.randperm(count, generator=generator).tolist())
        return self._perm[1][within]

    # -- one step ------------------------------------------------------------------------------

    def _lr(self, step: int) -> float:
        t = self.config.training
        return t.lr * min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else t.lr

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _micro_loss(self, positions: range) -> torch.Tensor:
        t = self.config.training
        batch = collate([self.dataset[self._index(p)] for p in positions])
        latent_shape = batch["latents"].shape[1:]
        timesteps, noise, switches = [], [], []
        for p in positions:
            generator = torch.Generator().manual_seed(mix_seed(t.seed, 2, p))
            timesteps.append(torch.randint(0, self.backbone.alphas_cumprod.shape[0], (1,), generator=generator))
            switches.append(torch.rand(4, generator=generator))
            eps = torch.randn(latent_shape, generator=generator)
            if t.noise_offset:  # one offset per channel
                offset = torch.randn(latent_shape[0], generator=generator)
                eps = eps + t.noise_offset * offset.view(-1, *[1] * (len(latent_shape) - 1))
            noise.append(eps)
        timesteps = torch.cat(timesteps)
        switches = torch.stack(switches)  # trigger, caption, id, base
        noise = torch.stack(noise).to(self.device)
        latents = batch["latents"].to(self.device)
        alpha = self.backbone.alphas_cumprod[timesteps].float().to(self.device).view(-1, *[1] * len(latent_shape))
        noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        if self.backbone.prediction_type == "v_prediction":
            target = alpha.sqrt() * noise - (1 - alpha).sqrt() * latents
        else:
            target = noise

        id_on = torch.full((len(positions),), self.stage.id_lora) & (switches[:, 2] >= t.drop_id_lora)
        if not self.net.has_base:
            base_on = torch.zeros(len(positions), dtype=torch.bool)
        elif self.stage.id_lora:
            base_on = switches[:, 3] >= t.drop_base_lora
        else:
            base_on = torch.ones(len(positions), dtype=torch.bool)
        captions = []
        for n, caption in enumerate(batch["caption"]):
            caption = "" if switches[n, 1] < t.drop_caption else caption
            if id_on[n] and switches[n, 0] >= t.drop_trigger:
                caption = t.trigger_words + caption
            captions.append(caption.strip())

        clip = batch["clip_tokens"].to(self.device)
        if self.stage.id_lora and clip.shape[-1] != self.net.shape.clip_width:
            raise ConfigError(f"The cached CLIP tokens are {clip.shape[-1]} wide but the network takes "
                              f"{self.net.shape.clip_width}; set network.clip_width or use the matching CLIP model.")
        arcface = batch["arcface"].to(self.device)
        if not self.stage.arcface:
            arcface = torch.zeros_like(arcface)
        with self._autocast():
            condition = self.backbone.encode_prompts(captions, batch["sizes"].to(self.device))
            factors = self.model(arcface if self.stage.id_lora else None, clip if self.stage.id_lora else None,
                                 batch["base_clip_tokens"].to(self.device) if self.net.has_base else None)
            self.lora_state.clear()
            for kind, on in (("id", id_on), ("base", base_on)):
                if kind not in factors:
                    continue
                bank = self.net.id_bank if kind == "id" else self.net.base_bank
                scale = on.float().to(self.device) * bank.scale
                for layer, (down, up) in factors[kind].items():
                    self.lora_state.factors.setdefault(layer, []).append((down, up, scale))
            prediction = self.backbone.predict(noisy, timesteps.to(self.device), condition)
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(1)
        return per_sample.mean()

    def train_step(self) -> float:
        """One optimiser step (with its accumulation micro-steps); returns the loss of all processes."""
        t = self.config.training
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        global_batch = t.batch_size * self.dist.world_size
        total = torch.zeros((), device=self.device)
        for micro in range(t.grad_accum):
            first = (self.step * t.grad_accum + micro) * global_batch + self.dist.rank * t.batch_size
            last = micro == t.grad_accum - 1
            if self.sharded:
                sync = gradient_sync(self.net, last)
            else:
                sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.model.no_sync()
            with sync:
                loss = self._micro_loss(range(first, first + t.batch_size)) / t.grad_accum
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            self.lora_state.clear()
            total += loss.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if t.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, t.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        return float(mean_across(total, self.dist))

    # -- the run -------------------------------------------------------------------------------

    def run(self, stop_after: int | None = None) -> list[float]:
        """Train until ``training.max_steps`` (or ``stop_after`` more steps); return the losses."""
        o, t = self.config.output, self.config.training
        if self.dataset is None:
            self.prepare_data()
        if o.resume:
            self.resume()
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
        bar = _progress(t.max_steps, self.step, self.dist.is_main)
        losses: list[float] = []
        started = time.perf_counter()
        while self.step < t.max_steps:
            loss = self.train_step()
            losses.append(loss)
            if self.dist.is_main:
                self._log(loss, started, len(losses), bar)
            if o.checkpoint_every and self.step % o.checkpoint_every == 0:
                self.save_checkpoint()
            if o.export_every and self.step % o.export_every == 0 and self.step < t.max_steps:
                self.export(self.output / "exports" / f"step_{self.step:08d}")
            if o.sample_every and self.step % o.sample_every == 0:
                self.sample()
            if stop_after is not None and len(losses) >= stop_after:
                break
        if bar is not None:
            bar.close()
        if self.step >= t.max_steps:
            latest = self.latest_checkpoint()
            if latest is None or latest.name != f"step_{self.step:08d}":
                self.save_checkpoint()
            if losses or not (self.output / "release").is_dir():
                self.export(self.output / "release")
        return losses

    def _log(self, loss: float, started: float, done: int, bar) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        record = {"step": self.step, "loss": loss, "lr": lr, "stage": self.config.training.stage}
        with open(self.output / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        if self.step % self.config.output.log_every == 0:
            per_step = (time.perf_counter() - started) / done
            log.info("step %d/%d  loss %.5f  lr %.3g  %.2f s/step", self.step, self.config.training.max_steps,
                     loss, lr, per_step)

    # -- checkpoints (train/checkpoints.py) -----------------------------------------------------

    def save_checkpoint(self) -> Path:
        return save_checkpoint(self)

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.checkpoints)

    def resume(self) -> bool:
        """Continue from the newest checkpoint, refusing one whose configuration differs."""
        return resume_from_checkpoint(self)

    # -- outputs -------------------------------------------------------------------------------

    def export(self, folder: Path) -> Path | None:
        """The release folder; with FSDP the weights are gathered to the main process first (all ranks take part)."""
        net = gathered(self.net, self.dist.is_main) if self.sharded else self.net
        if self.dist.is_main:
            export_release(net, folder, self.config.output.export_dtype, metadata={
                "hyperlora.stage": self.config.training.stage, "hyperlora.step": str(self.step),
                "hyperlora.base_model": self.backbone.description,
            })
        barrier(self.dist)
        return folder

    @torch.no_grad()
    def sample(self) -> list[Path]:
        """Sample images with the LoRA made from the first photo of the data, on the main process."""
        from PIL import Image

        from .sampling import ddim_sample

        paths: list[Path] = []
        factors = None
        if self.dist.is_main or self.sharded:  # under FSDP every rank takes part in the forward
            item = collate([self.dataset[0]])
            clip = item["clip_tokens"].to(self.device)
            arcface = item["arcface"].to(self.device)
            if not self.stage.arcface:
                arcface = torch.zeros_like(arcface)
            with self._autocast():
                factors = self.net(arcface if self.stage.id_lora else None, clip if self.stage.id_lora else None,
                                   item["base_clip_tokens"].to(self.device) if self.net.has_base else None)
        if self.dist.is_main:
            o, t = self.config.output, self.config.training
            with self._autocast():
                self.lora_state.clear()
                for kind, per_layer in factors.items():
                    bank = self.net.id_bank if kind == "id" else self.net.base_bank
                    scale = torch.full((1,), bank.scale, device=self.device)
                    for layer, (down, up) in per_layer.items():
                        self.lora_state.factors.setdefault(layer, []).append((down, up, scale))
                folder = self.output / "samples"
                folder.mkdir(parents=True, exist_ok=True)
                images = []
                for k, prompt in enumerate(o.sample_prompts):
                    text = (t.trigger_words + prompt).strip() if self.stage.id_lora else prompt
                    image = ddim_sample(self.backbone, tuple(item["latents"].shape[1:]), text, item["sizes"][0],
                                        o.sample_steps, o.sample_guidance, t.seed + k, self.device,
                                        self.amp_dtype or torch.float32)
                    path = folder / f"step_{self.step:08d}_{k}.png"
                    write_atomic(path, lambda handle: Image.fromarray(image).save(handle, format="PNG"),
                                 overwrite=True)
                    paths.append(path)
                    images.append(image)
            self.lora_state.clear()
            if self.likeness is not None:  # the likeness to the photo the samples' LoRA was made from
                self.likeness.report(self.step, paths, images, item["arcface"][0], source=item["image"][0])
            log.info("Saved %d sample image(s) in %s", len(paths), self.output / "samples")
        barrier(self.dist)
        return paths


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True)


def train(config: Config, backbone: Backbone | None = None) -> Trainer:
    """Run a whole training as configured; return the finished trainer."""
    trainer = Trainer(config, backbone)
    trainer.run()
    return trainer
