"""Benchmark: the project's path against the straightforward one, stage by stage, v1-sized.

    python -m hyperlora_core.bench [--device cpu|cuda] [--dtype fp16] [--repeats 5]

Builds random weights in the release layout with the v1 module list (140 modules, about 3 GB in
fp16; cached under --cache-dir after the first run) and prints one JSON object: for each stage the
median time over the repeats and the peak memory above what was in use before the stage, for both
paths, with `speedup` = straightforward / project.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import statistics
import threading
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from .atomic import write_atomic
from .checkpoint import sdxl_attention_modules
from .constants import RELEASE_FILES
from .merge import lora_layers, merge_layer_, merge_layer_straightforward
from .model import HyperLoRA, normalise_coefficients, resolve_device, resolve_dtype
from .synthetic import make_release_folder, random_features


def _release_freed_memory() -> None:
    """Give freed heap pages back to the OS, so that RSS growth shows a stage's own allocations."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator stats, or sampled RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        """Anonymous resident memory: what the process allocated, not file pages it has mapped."""
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def __enter__(self):
        gc.collect()
        _release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._max = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self._max = max(self._max, self._rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self._max, self._rss()) - self._base


STAGES = ("load_checkpoint", "hypernet_forward", "coefficients_to_lora", "features_to_lora", "merge_into_unet")
WARMUP = 1  # untimed runs before each measurement (--warmup)


def measure(fn, device: torch.device, repeats: int, warmup: int | None = None) -> dict:
    for _ in range(WARMUP if warmup is None else warmup):
        fn()
    times, peaks = [], []
    for _ in range(repeats):
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        peaks.append(mem.peak_bytes)
        del result
    return {"median_s": round(statistics.median(times), 5), "runs": len(times),
            "peak_mb": round(max(peaks) / 2**20, 1)}


def compare(project: dict, straightforward: dict) -> dict:
    return {"project": project, "straightforward": straightforward,
            "speedup": round(straightforward["median_s"] / max(project["median_s"], 1e-9), 2)}


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
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "device_type": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "weights_dtype": str(dtype).removeprefix("torch."), "modules": args.modules,
              "checkpoint_mb": round(checkpoint_mb, 1), "stages": {}}
    stages = report["stages"]

    def log(stage):
        print(f"[bench] {stage}: {json.dumps(stages[stage])}", flush=True)

    want = set(args.stages)
    if "load_checkpoint" in want:
        loads = min(r, 3)  # reading 3 GB: a few runs are enough for a median
        stages["load_checkpoint"] = compare(
            measure(lambda: HyperLoRA.from_pretrained(folder, dtype, device), device, loads, warmup=0),
            measure(lambda: straightforward_load(folder, dtype, device), device, min(rb, loads), warmup=0))
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
        stage = stages["features_to_lora_n1"] = compare(
            measure(lambda: hl.generate_id_lora(arcface, clip), device, r),
            measure(slow_generate, device, rb))
        if "hypernet_forward_n1" in stages:
            forward = stages["hypernet_forward_n1"]["project"]["median_s"]
            stage["ratio_to_forward_alone"] = round(stage["project"]["median_s"] / forward, 3)
        stage["peak_to_checkpoint"] = round(stage["project"]["peak_mb"] / checkpoint_mb, 3)
        log("features_to_lora_n1")
    if "merge_into_unet" in want:
        stages["merge_into_unet"] = bench_merge(hl, fast, dtype, device, r, rb, report)
        log("merge_into_unet")
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
    """The operators that one features-to-LoRA call spends its time in."""
    device = resolve_device(args.device)
    hl = HyperLoRA.from_pretrained(ensure_checkpoint(Path(args.cache_dir), args.modules), resolve_dtype(args.dtype), device)
    arcface, clip = random_features(1)
    hl.generate_id_lora(arcface, clip)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        hl.generate_id_lora(arcface, clip)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


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
                        help="also print torch.profiler's table of one features-to-LoRA call")
    args = parser.parse_args(argv)
    global WARMUP
    WARMUP = args.warmup
    report = run(args)
    if args.profile:
        print(profile_generation(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        write_atomic(args.out, (text + "\n").encode("utf-8"), overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
