"""Refine speed and memory: steps per second and peak memory of the refine engine (a benchmark, not a test).

    python scripts/bench_refine.py [--models toy,sdxl_tiny,sdxl] [--sdxl-resolution 256] [--sdxl-steps 3]
                                   [--device cpu|cuda] [--out docs/bench/refine_cpu_2core.json]

- toy: the trainer's toy UNet (hyperlora_core.train.toy) at 32 px, 20 steps;
- sdxl_tiny: a diffusers UNet2DConditionModel with SDXL's block layout at a fraction of its width, 64 px;
- sdxl: a full-size SDXL UNet (diffusers' SDXL config, random weights: no checkpoint needed, 560
  attention layers with an ID-LoRA of rank 8) for a few steps, with gradient checkpointing; on a GPU
  in float16 at 1024 px, on a CPU in float32 at a small resolution.

The views are random pictures (the cost of a step does not depend on what they show); the VAE and text
encoders are stand-ins, as the engine only sees their outputs (latents, conditioning), which are made
once before the loop. Per-step seconds: min / median / max of the steps after the first (the first also
sets up); peak memory above the level before the run (CUDA allocator or process RSS).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hyperlora_core.bench.common import PeakMemory, finish_machine, machine, spread  # noqa: E402
from hyperlora_core.refine import RefineSettings, TrainingView, hooks_on, refine  # noqa: E402
from hyperlora_core.refine.layers import attention_linears  # noqa: E402
from hyperlora_core.train.backbone import scaled_linear_schedule  # noqa: E402
from tiny_refine import random_id_lora  # noqa: E402

SDXL_CONFIG = dict(
    sample_size=128, in_channels=4, out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
    cross_attention_dim=2048, attention_head_dim=(5, 10, 20), addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, use_linear_projection=True)
SDXL_TINY_CONFIG = dict(
    sample_size=8, down_block_types=SDXL_CONFIG["down_block_types"], up_block_types=SDXL_CONFIG["up_block_types"],
    block_out_channels=(16, 32, 64), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
    cross_attention_dim=64, attention_head_dim=(1, 2, 4), addition_embed_type="text_time",
    addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 64, norm_num_groups=8,
    use_linear_projection=True)


def diffusers_setup(config: dict, context: int, pooled: int, latent: int, device, dtype, checkpointing: bool):
    import diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(**config).requires_grad_(False).eval().to(device, dtype)
    if checkpointing:
        unet.enable_gradient_checkpointing()
        unet.train()  # diffusers checkpoints only in training mode; dropout is 0 in SDXL's blocks
    gen = torch.Generator().manual_seed(0)
    condition = {"context": torch.randn(1, 77, context, generator=gen).to(device, dtype),
                 "added": {"text_embeds": torch.randn(1, pooled, generator=gen).to(device, dtype),
                           "time_ids": torch.tensor([[8.0 * latent] * 2 + [0.0, 0.0] + [8.0 * latent] * 2]).to(device, dtype)}}

    def predict(noisy, timesteps, cond):
        return unet(noisy.to(dtype), timesteps, encoder_hidden_states=cond["context"],
                    added_cond_kwargs=cond["added"]).sample.float()

    views = [TrainingView(torch.randn(4, latent, latent, generator=gen), torch.ones(latent, latent), condition)
             for _ in range(4)]
    return unet, predict, views


def toy_setup(device):
    from hyperlora_core.train.toy import ToyBackbone

    backbone = ToyBackbone().to(device, torch.float32)
    gen = torch.Generator().manual_seed(0)
    condition = backbone.encode_prompts(["fcsks fxhks fhyks, a photo of a person"], None)
    views = [TrainingView(torch.randn(4, 8, 8, generator=gen), torch.ones(8, 8), condition) for _ in range(4)]
    return backbone.unet, backbone.predict, views


def bench(name: str, unet, predict, views, steps: int, device, note: str) -> dict:
    layers = attention_linears(unet)
    lora = random_id_lora(layers, rank=8 if len(layers) == 560 else 4, dtype=torch.float16)
    times: list[float] = []
    last = [time.perf_counter()]

    def on_step(step, loss):
        now = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        print(f"  {name} step {step}/{steps}: {times[-1]:.2f} s, loss {loss:.4f}", flush=True)

    settings = RefineSettings(steps=steps, learning_rate=1e-4, extra_rank=0, seed=0, log_every=0)
    with PeakMemory(device) as mem:
        last[0] = time.perf_counter()
        result = refine(lora, predict, views, scaled_linear_schedule(), settings, hooks_on(layers), device=device,
                        on_step=on_step)
    later = times[1:] or times
    return {"layers": len(layers), "steps": steps, "first_step_s": round(times[0], 4), "step": spread(later),
            "steps_per_second": round(1 / spread(later)["median_s"], 3), "peak_mb": round(mem.peak_bytes / 2**20, 1),
            "loss_first_last": [round(result.losses[0], 5), round(result.losses[-1], 5)], "note": note}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="toy,sdxl_tiny,sdxl")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sdxl-resolution", type=int, default=None)
    parser.add_argument("--sdxl-steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {"machine": machine(device), "results": {}}
    models = args.models.split(",")
    if "toy" in models:
        report["results"]["toy"] = bench("toy", *toy_setup(device), steps=20, device=device,
                                         note="trainer's toy UNet, 32 px (8x8 latents), float32")
    if "sdxl_tiny" in models:
        report["results"]["sdxl_tiny"] = bench(
            "sdxl_tiny", *diffusers_setup(SDXL_TINY_CONFIG, 64, 64, 8, device, torch.float32, False), steps=20,
            device=device, note="diffusers UNet with SDXL's block layout at width 16/32/64, 64 px, float32")
    if "sdxl" in models:
        cuda = device.type == "cuda"
        resolution = args.sdxl_resolution or (1024 if cuda else 256)
        dtype = torch.float16 if cuda else torch.float32
        report["results"]["sdxl"] = bench(
            "sdxl", *diffusers_setup(SDXL_CONFIG, 2048, 1280, resolution // 8, device, dtype, True),
            steps=args.sdxl_steps, device=device,
            note=f"full-size SDXL UNet (random weights), {resolution} px, {str(dtype)[6:]}, gradient checkpointing, "
                 "batch 1, ID-LoRA rank 8 on 560 layers")
    report["machine"] = finish_machine(report["machine"])
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
