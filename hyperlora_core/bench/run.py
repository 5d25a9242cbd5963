"""Benchmark: the project's path against the straightforward one, stage by stage, v1-sized.

    python -m hyperlora_core.bench [--device cpu|cuda] [--dtype fp16] [--repeats 5] [--stages ... chain]

Builds random weights in the release layout with the v1 module list (140 modules, about 3 GB in
fp16; cached under --cache-dir after the first run) and prints one JSON object: for each stage the
min, median and max time over the repeats and the peak memory above what was in use before the stage, for both
paths, with `speedup` = straightforward / project (and its range, slowest against fastest), what
each baseline does (`baselines`), and the machine: CPU model, cores, torch version and build,
threads, the load average at the start and the end (`loaded` when it passed the core count).
The `chain` stage (hyperlora_core/bench_chain.py) times photos -> LoRA as the command line runs it.
The load_checkpoint and features_to_lora stages also time the reference implementation's own path
(bench/reference.py: float32 load and maths) as `reference`, the three paths in turn in each round.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import common as bench_common
from ..files.atomic import write_atomic
from .common import add_reference, compare, machine, measure, measure_interleaved
from ..model.checkpoint import sdxl_attention_modules
from ..constants import RELEASE_FILES
from .merge import lora_layers, merge_layer_, merge_layer_straightforward
from ..model.hyperlora import HyperLoRA, normalise_coefficients, resolve_device, resolve_dtype
from .reference import REFERENCE_COMMIT, ReferenceModel, reference_generate, reference_load
from .synthetic import make_release_folder, random_features

STAGES = ("load_checkpoint", "hypernet_forward", "coefficients_to_lora", "features_to_lora", "merge_into_unet", "chain")
# What each stage's straightforward path does, in the report's words (the dtype of its maths included).
BASELINES = {
    "load_checkpoint": "safetensors.torch.load_file of each file whole, then tensor.to(device, dtype, copy=True)",
    "hypernet_forward": "the same modules run in the weights' dtype (on the CPU: float16 matrix products, which "
                        "PyTorch accumulates in float32 and rounds to float16 after each operation)",
    "coefficients_to_lora": "one torch.einsum('k,kab->ba') per layer and role (1,120 products) on the stored bases: "
                            "float16 in and out, float32 accumulation inside PyTorch's CPU kernel, a .cpu() per tensor",
    "features_to_lora": "the straightforward forward, then the per-layer einsum",
    "merge_into_unet": "W += scale * (up.float() @ down.float()) with a float32 copy of W per layer",
    "chain": "none: the chain is compared with its goal, the network's forward plus one CLIP pass and one "
             "detection per photo",
}
# The reference implementation's own path (bytedance/ComfyUI-HyperLoRA with its fp32 option, float32 maths),
# reported as `reference` beside `straightforward` in these stages, all three timed in turn in each round.
REFERENCE_BASELINES = {
    "load_checkpoint": "the reference's load: float32 nn.Modules with PyTorch's default initialisation (bases as "
                       "float32 zeros), safetensors.torch.load_file of each file whole, load_state_dict (float16 -> "
                       "float32), .to(device, float32)",
    "features_to_lora": "the reference's generation: the network in float32 on float32 weights, then one "
                        "einsum('bi,ijk->bjk') per layer and factor on the float32 bases, .t().contiguous().cpu(); "
                        "a float32 LoRA",
}


# -- the straightforward paths -------------------------------------------------------------------

def straightforward_load(folder: Path, dtype: torch.dtype, device: torch.device) -> dict:
    """Read every file whole, then convert (or copy) each tensor: what a plain loader does."""
    state = {}
    for name in RELEASE_FILES:
        if name.endswith(".safetensors"):
            for key, tensor in load_file(str(folder / name)).items():
                state[f"{name}:{key}"] = tensor.to(device, dtype, copy=True)
    return state


def straightforward_coefficients(hl: HyperLoRA, arcface, clip) -> torch.Tensor:
    """The network run in the storage dtype, as the reference does, whatever the hardware."""
    ids = hl.id_projector(arcface.to(hl.device, hl.dtype))
    per_photo = hl.resampler(ids, clip.to(hl.device, hl.dtype))
    weights = torch.full((arcface.shape[0],), 1.0 / arcface.shape[0], device=hl.device)
    return normalise_coefficients(per_photo.float(), weights)


def unet_weights(hl: HyperLoRA, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """Random weights of the shapes of every patched UNet layer (about 0.9 G values for SDXL)."""
    gen = torch.Generator(device=device).manual_seed(0)
    return {slot.kohya_name: torch.randn(slot.out_features, slot.in_features, generator=gen, device=device,
                                         dtype=torch.float32).to(dtype) * 0.02
            for slot in hl.id_bank.slots}


def ensure_checkpoint(cache_dir: Path, n_modules: int) -> Path:
    folder = cache_dir / f"v1_random_{n_modules}"
    if not all((folder / name).is_file() for name in RELEASE_FILES):
        print(f"[bench] writing a random {n_modules}-module checkpoint to {folder} (once)", flush=True)
        make_release_folder(folder, sdxl_attention_modules()[:n_modules], dtype=torch.float16, seed=0)
    return folder


def run(args) -> dict:
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)
    torch.manual_seed(0)
    folder = ensure_checkpoint(Path(args.cache_dir), args.modules)
    checkpoint_mb = sum((folder / n).stat().st_size for n in RELEASE_FILES) / 2**20
    r, rb = args.repeats, args.baseline_repeats or args.repeats
    info = machine(device)
    report = {"machine": info, "device_type": device.type, "repeats": r, "baseline_repeats": rb,
              "warmup": bench_common.WARMUP, "weights_dtype": str(dtype).removeprefix("torch."), "modules": args.modules,
              "checkpoint_mb": round(checkpoint_mb, 1),
              "baselines": {k: v for k, v in BASELINES.items() if k in args.stages},
              "reference_baselines": {k: v for k, v in REFERENCE_BASELINES.items() if k in args.stages},
              "reference_source": f"github.com/bytedance/ComfyUI-HyperLoRA at {REFERENCE_COMMIT}: hyperlora/nodes.py "
                                  "(HyperLoRALoaderNode, HyperLoRAGenerateIDLoRANode), hyperlora/modules.py",
              "stages": {}}
    stages = report["stages"]

    def log(stage):
        print(f"[bench] {stage}: {json.dumps(stages[stage])}", flush=True)

    want = set(args.stages)
    if "load_checkpoint" in want:
        timed = measure_interleaved({
            "project": (lambda: HyperLoRA.from_pretrained(folder, dtype, device), r),
            "straightforward": (lambda: straightforward_load(folder, dtype, device), rb),
            "reference": (lambda: reference_load(folder, device), rb)}, device, warmup=0)
        stage = stages["load_checkpoint"] = add_reference(compare(timed["project"], timed["straightforward"]),
                                                          timed["reference"])
        stage["interleaved"] = True
        log("load_checkpoint")
    hl = HyperLoRA.from_pretrained(folder, dtype, device)
    report["compute_dtype"] = str(hl.compute_dtype).removeprefix("torch.")

    for n in (1, 4) if "hypernet_forward" in want else ():
        arcface, clip = random_features(n, seed=n)
        stages[f"hypernet_forward_n{n}"] = compare(
            measure(lambda: hl.coefficients(arcface, clip), device, r),
            measure(lambda: straightforward_coefficients(hl, arcface, clip), device, rb))
        log(f"hypernet_forward_n{n}")

    arcface, clip = random_features(1, seed=1)
    coefficients = hl.coefficients(arcface, clip)
    with torch.no_grad():
        fast = hl.id_bank.mix(coefficients)
        if "coefficients_to_lora" in want:
            slow = hl.id_bank.mix_per_layer(coefficients)
            stages["coefficients_to_lora"] = compare(
                measure(lambda: hl.id_bank.mix(coefficients), device, r),
                measure(lambda: hl.id_bank.mix_per_layer(coefficients), device, rb))
            stages["coefficients_to_lora"]["max_abs_diff"] = max(
                (fast[k].float() - slow[k].float()).abs().max().item() for k in fast)
            log("coefficients_to_lora")

    def slow_generate():
        with torch.no_grad():
            return hl.id_bank.mix_per_layer(straightforward_coefficients(hl, arcface, clip))

    if "features_to_lora" in want:
        reference = ReferenceModel(folder, device)
        timed = measure_interleaved({
            "project": (lambda: hl.generate_id_lora(arcface, clip), r),
            "straightforward": (slow_generate, rb),
            "reference": (lambda: reference_generate(reference, arcface, clip), rb)}, device)
        stage = stages["features_to_lora_n1"] = add_reference(compare(timed["project"], timed["straightforward"]),
                                                              timed["reference"])
        stage["interleaved"] = True
        ours, theirs = hl.generate_id_lora(arcface, clip), reference_generate(reference, arcface, clip)
        del reference
        if ours.keys() != theirs.keys():
            raise RuntimeError("the reference path's LoRA has other keys than this project's")
        # ours is float16 (the weights' dtype), the reference's float32: the difference is float16 rounding
        stage["reference_max_abs_diff"] = max((ours[k].float() - theirs[k]).abs().max().item() for k in ours)
        stage["reference_max_abs_value"] = max(theirs[k].abs().max().item() for k in theirs if not k.endswith("alpha"))
        del ours, theirs
        if "hypernet_forward_n1" in stages:
            forward = stages["hypernet_forward_n1"]["project"]["median_s"]
            stage["ratio_to_forward_alone"] = round(stage["project"]["median_s"] / forward, 3)
        stage["peak_to_checkpoint"] = round(stage["project"]["peak_mb"] / checkpoint_mb, 3)
        log("features_to_lora_n1")
    if "merge_into_unet" in want:
        stages["merge_into_unet"] = bench_merge(hl, fast, dtype, device, r, rb, report)
        log("merge_into_unet")
    if "chain" in want:
        from .chain import bench_chain

        del fast
        stages["chain"] = bench_chain(hl, args, device, log=lambda text: print(f"[bench] chain {text}", flush=True))
    bench_common.finish_machine(info)
    return report


def bench_merge(hl: HyperLoRA, lora: dict, dtype: torch.dtype, device: torch.device, r: int, rb: int,
                report: dict) -> dict:
    """Merging the LoRA into random weights of the UNet's patched layers, in place."""
    layers = lora_layers(lora)
    weights = unet_weights(hl, dtype, device)
    report["unet_layers_mb"] = round(sum(w.numel() * w.element_size() for w in weights.values()) / 2**20, 1)

    def merge_all(kernel):
        for name, (up, down, scale) in layers.items():
            kernel(weights[name], up, down, 0.85 * scale)

    stage = compare(measure(lambda: merge_all(merge_layer_), device, r),
                    measure(lambda: merge_all(merge_layer_straightforward), device, rb))
    probe = next(iter(layers))
    w0 = torch.randn_like(weights[probe], dtype=torch.float32).to(dtype)
    a, b = merge_layer_(w0.clone(), *layers[probe][:2], 0.85), merge_layer_straightforward(w0.clone(), *layers[probe][:2], 0.85)
    stage["max_abs_diff_one_layer"] = (a.float() - b.float()).abs().max().item()
    return stage


def profile_generation(args) -> str:
    """Where the time of features-to-LoRA and of both coefficients-to-LoRA paths goes (warm calls)."""
    device = resolve_device(args.device)
    hl = HyperLoRA.from_pretrained(ensure_checkpoint(Path(args.cache_dir), args.modules), resolve_dtype(args.dtype), device)
    arcface, clip = random_features(1)
    coefficients = hl.coefficients(arcface, clip)
    calls = {"features_to_lora (project)": lambda: hl.generate_id_lora(arcface, clip),
             "coefficients_to_lora (project: grouped)": lambda: hl.id_bank.mix(coefficients),
             "coefficients_to_lora (straightforward: per layer)": lambda: hl.id_bank.mix_per_layer(coefficients)}
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    tables = []
    for title, fn in calls.items():
        with torch.no_grad():
            fn()  # warm: first-touch page faults and allocator growth are not what the table is for
            with torch.profiler.profile(activities=activities) as prof:
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
        tables.append(f"== {title}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return "\n".join(tables)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperlora_core.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", default="fp16", help="weights dtype: fp32, fp16 (the release) or bf16")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per stage for the project's path")
    parser.add_argument("--baseline-repeats", type=int, default=0,
                        help="timed runs for the straightforward path (default: --repeats)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs before each timed stage (on a VM whose memory is slow on first "
                             "touch, 2-3 give steady-state figures)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), metavar="STAGE",
                        help=f"stages to run (default all): {', '.join(STAGES)}")
    parser.add_argument("--modules", type=int, default=140, help="modules of the v1 list to use (default all 140)")
    parser.add_argument("--cache-dir", default=".bench_cache", help="where the random checkpoint is kept")
    parser.add_argument("--out", help="also write the JSON report to this file")
    parser.add_argument("--profile", action="store_true",
                        help="also print torch.profiler's tables of one features-to-LoRA call and of both "
                        "coefficients-to-LoRA paths (warm)")
    parser.add_argument("--chain-photos", nargs="+", type=int, default=[1, 4], metavar="N",
                        help="photo counts the chain stage runs (default 1 4)")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        print("[bench] note: fewer than 5 repeats; min / median / max say little", flush=True)
    bench_common.WARMUP = args.warmup
    report = run(args)
    if args.profile:
        print(profile_generation(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        write_atomic(args.out, (text + "\n").encode("utf-8"), overwrite=True)
    return 0

