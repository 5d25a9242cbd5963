"""Cost per sampling step of HyperLoRA identities as ComfyUI hooks, against one plain (merged) LoRA.

    COMFYUI_DIR=/path/to/ComfyUI python scripts/bench_hooks.py [--latent 32] [--dtype bf16] [--repeats 3]

Builds an SDXL UNet with ComfyUI's own classes (full SDXL size: model_channels 320, transformer depths
2/10, 560 attention LoRA layers of rank 8; random weights, so no checkpoint is needed) and times the
steps of ComfyUI's real sampler (Euler, CFG 5) for:

- plain_lora: 'Apply HyperLoRA' (the LoRA merged into the weights once);
- hooks_1: one identity as hooks over the whole picture ('HyperLoRA Hooks' + core Cond Pair Set Props);
- hooks_2, hooks_3: two or three identities in left/right or thirds regions ('HyperLoRA Several People');

each in ComfyUI's two hook modes: maxspeed (the default: patched weights of each hook group are cached
and copied back in when the group comes round again) and minvram (weights re-patched at every switch).
Per-step seconds are the times between the sampler's step callbacks (the first step, which also
loads and patches, is reported on its own); min / median / max over all steps of all repeats, as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SDXL_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
# (kohya block, attentions, transformer depth, width) of SDXL's UNet, in the v1 release's order.
SDXL_ATTENTIONS = [("down_blocks_1", 2, 2, 640), ("down_blocks_2", 2, 10, 1280), ("mid_block", 1, 10, 1280),
                   ("up_blocks_0", 3, 10, 1280), ("up_blocks_1", 3, 2, 640)]
# --smoke: the same code on a tiny UNet of SDXL's layout (width 64, depth 1), to check the script quickly.
SMOKE_UNET = dict(SDXL_UNET, model_channels=64, transformer_depth=[0, 0, 1, 1, 1, 1], transformer_depth_middle=1,
                  transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1], num_head_channels=32)
SMOKE_ATTENTIONS = [(block, attentions, 1, width // 5) for block, attentions, _, width in SDXL_ATTENTIONS]
RANK = 8
CFG = 5.0


def comfy_setup(comfy_dir: str):
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args
    args.cpu = True
    import comfy.hooks  # noqa: F401
    import comfy.model_management  # noqa: F401
    import comfy.model_patcher  # noqa: F401
    import comfy.sample  # noqa: F401
    import comfy.supported_models  # noqa: F401
    import comfy
    return comfy


def load_pack():
    name = "hyperlora_studio_bench"
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_sdxl(comfy, dtype: torch.dtype, unet_config: dict):
    import comfy.model_management as mm
    config = comfy.supported_models.SDXL(unet_config)
    config.set_inference_dtype(dtype, None)
    model = config.get_model({}, "")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(0.02).to(p.dtype))
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def random_lora(pack, seed: int, dtype: torch.dtype, attentions: list):
    spec_cls = sys.modules["hyperlora_studio_bench.hyperlora_core.model.checkpoint"].ModuleSpec
    plan = sys.modules["hyperlora_studio_bench.hyperlora_core.model.lora"].kohya_key_plan
    modules = []
    for block, count, depth, width in attentions:
        for a in range(count):
            for t in range(depth):
                stem = f"lora_unet_{block}_attentions_{a}_transformer_blocks_{t}"
                modules += [spec_cls(f"{stem}_attn1", width, None), spec_cls(f"{stem}_attn2", width, 2048)]
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for key, shape in plan(modules, RANK).items():
        lora[key] = (torch.tensor(float(RANK)) if key.endswith(".alpha")
                     else (torch.randn(shape, generator=gen) * 0.02).to(dtype))
    return sys.modules["hyperlora_studio_bench.nodes.lora"].GeneratedLoRA(lora)


def conditioning(seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 77, 2048, generator=gen), {"pooled_output": torch.randn(1, 1280, generator=gen)}]]


def time_steps(comfy, model, positive, negative, latent_size: int, steps: int) -> tuple[float, list[float]]:
    latent = torch.zeros(1, 4, latent_size, latent_size)
    noise = comfy.sample.prepare_noise(latent, 0)
    stamps = []
    start = time.perf_counter()
    comfy.sample.sample(model, noise, steps, CFG, "euler", "normal", positive, negative, latent,
                        callback=lambda *a: stamps.append(time.perf_counter()), disable_pbar=True, seed=0)
    first = stamps[0] - start
    return first, [b - a for a, b in zip(stamps, stamps[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", type=int, default=32, help="latent side (8 px each); 128 = 1024 x 1024")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--modes", default="maxspeed,minvram")
    parser.add_argument("--cases", default="plain_lora,hooks_1,hooks_2,hooks_3")
    parser.add_argument("--smoke", action="store_true", help="a tiny UNet of SDXL's layout, to test the script")
    opts = parser.parse_args()
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        sys.exit("set COMFYUI_DIR to a ComfyUI checkout")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[opts.dtype]
    comfy = comfy_setup(comfy_dir)
    pack = load_pack()
    nodes = importlib.import_module(pack.__name__ + ".nodes.extension").node_classes()
    t0 = time.perf_counter()
    unet, attentions = (SMOKE_UNET, SMOKE_ATTENTIONS) if opts.smoke else (SDXL_UNET, SDXL_ATTENTIONS)
    base = build_sdxl(comfy, dtype, unet)
    loras = [random_lora(pack, seed, dtype, attentions) for seed in (1, 2, 3)]
    build_s = time.perf_counter() - t0
    positive, negative = conditioning(10), conditioning(11)
    px = opts.latent * 8
    layouts = {2: "left | right", 3: "left | middle | right"}
    results = {"unet": "smoke (tiny)" if opts.smoke else "SDXL", "device": "cpu", "threads": torch.get_num_threads(), "dtype": opts.dtype,
               "latent": [opts.latent, opts.latent], "picture_px": [px, px], "steps": opts.steps,
               "repeats": opts.repeats, "cfg": CFG, "unet_params": sum(p.numel() for p in base.model.parameters()),
               "lora_layers": len(loras[0]) // 3, "build_s": round(build_s, 1), "cases": {}}
    for mode in opts.modes.split(","):
        for case in opts.cases.split(","):
            model = base.clone()
            model.set_hook_mode(comfy.hooks.EnumHookMode(mode))
            if case == "plain_lora":
                if mode != opts.modes.split(",")[0]:
                    continue  # no hooks: the mode does not matter
                (model,) = nodes["HLS_ApplyLoRA"].execute(model, loras[0], 0.85)
                pos, neg = positive, negative
            else:
                n = int(case.split("_")[1])
                hooks = [nodes["HLS_LoRAHooks"].execute(model, loras[i], 0.85, 0.0, 1.0, 0.0)[0] for i in range(n)]
                if n == 1:
                    pos, neg = comfy.hooks.set_conds_props(conds=[positive, negative], strength=1.0,
                                                           set_cond_area="default", hooks=hooks[0])
                else:
                    masks = nodes["HLS_RegionLayout"].execute(layouts[n], px, px, 0, "")
                    pairs = {}
                    for i in range(n):
                        pairs[f"hooks_{i + 1}"], pairs[f"region_{i + 1}"] = hooks[i], masks[i]
                    pos, neg = nodes["HLS_SeveralPeople"].execute(
                        positive, negative, {"samples": torch.zeros(1, 4, opts.latent, opts.latent)}, "base model",
                        **pairs)
            firsts, per_step = [], []
            for _ in range(opts.repeats):
                first, rest = time_steps(comfy, model, pos, neg, opts.latent, opts.steps)
                firsts.append(first)
                per_step += rest
            key = case if case == "plain_lora" else f"{case}_{mode}"
            results["cases"][key] = {
                "step_s": {"min": round(min(per_step), 3), "median": round(statistics.median(per_step), 3),
                           "max": round(max(per_step), 3)},
                "first_step_s": {"min": round(min(firsts), 3), "max": round(max(firsts), 3)},
                "samples": len(per_step)}
            print(key, results["cases"][key], file=sys.stderr, flush=True)
            del model
            comfy.model_management.unload_all_models()
            comfy.model_management.soft_empty_cache()
    base_step = results["cases"].get("plain_lora", {}).get("step_s", {}).get("median")
    if base_step:
        for key, value in results["cases"].items():
            value["vs_plain_lora"] = round(value["step_s"]["median"] / base_step, 2)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
