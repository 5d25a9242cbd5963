"""The whole chain from photos to LoRA, stage by stage: the "chain" stage of ``python -m hyperlora_core.bench``.

What runs is the command line's path (``generate --photos``), minus loading the models: face
analysis (:class:`~hyperlora_core.face.FaceAnalyzer`), the CLIP pass (ClipVisionEncoder, up to 4
crops per call), the hyper-network's forward and the mixing of the LoRA. The models are of the real
sizes with random weights (no download): the v1-sized checkpoint the other stages use, a CLIP
ViT-L/14 vision tower from OpenAI's configuration (24 layers, width 1024, float32 on the CPU), and
the antelopev2-sized ONNX models of :mod:`hyperlora_core.bench.faces`. The photos are 1024 x 1024
stand-in portraits with one face; face analysis is split into its networks' calls (two detections
per photo: the photo, then the ArcFace crop, as the reference does; landmarks; recognition) and the
rest (crops, background removal, the Base-LoRA crop, the preview).

The goal it is compared with: the network's forward plus one CLIP pass and one detection per photo.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..features.identity import IdentityFeatures
from .common import spread

FACE_CALLS = (("detector", "detect", "face_detection"), ("landmarks", "get", "face_landmarks"),
              ("recognition", "get", "face_recognition"))


def vit_l14(device: torch.device, dtype: torch.dtype = torch.float32):
    """OpenAI CLIP ViT-L/14's vision tower with random weights, as a ClipVisionEncoder."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from ..features.clip import ClipVisionEncoder

    config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768,
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPVisionModel(config)
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return ClipVisionEncoder(model, Path("random ViT-L/14"), device, dtype)


class _Timed:
    """Wraps one method of a face model, adding up the seconds spent in it."""

    def __init__(self, fn: Callable):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def _instrument(analyzer) -> dict[str, _Timed]:
    timers = {}
    for attribute, method, stage in FACE_CALLS:
        model = getattr(analyzer.models, attribute)
        timers[stage] = _Timed(getattr(model, method))
        setattr(model, method, timers[stage])  # an instance attribute: insightface's method underneath
    return timers


def _chain_once(analyzer, timers, encoder, hl, photos) -> tuple[dict[str, float], dict]:
    for t in timers.values():
        t.seconds, t.calls = 0.0, 0
    times: dict[str, float] = {}
    start = time.perf_counter()
    results = analyzer.analyze(photos)
    times["face_analysis"] = time.perf_counter() - start
    if len(results) != len(photos):
        raise RuntimeError(f"the stand-in face models found {len(results)} faces in {len(photos)} photos")
    for stage, t in timers.items():
        times[stage] = t.seconds
    times["face_crops_and_rest"] = times["face_analysis"] - sum(t.seconds for t in timers.values())
    calls = {stage: t.calls for stage, t in timers.items()}

    mark = time.perf_counter()
    tokens = encoder.encode_crops([r.clip_crop for r in results])
    times["clip"] = time.perf_counter() - mark
    arcface = IdentityFeatures.from_faces(results, tokens).arcface

    mark = time.perf_counter()
    coefficients = hl.coefficients(arcface, tokens)
    times["network"] = time.perf_counter() - mark
    mark = time.perf_counter()
    lora = hl.lora_from_coefficients(coefficients)
    times["lora"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - start
    del lora
    return times, calls


def _repeat(fn: Callable[[], float], warmup: int, repeats: int) -> dict:
    for _ in range(warmup):
        fn()
    return spread([fn() for _ in range(repeats)])


def _seconds(fn: Callable) -> Callable[[], float]:
    def timed() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    return timed


def bench_chain(hl, args, device: torch.device, log: Callable[[str], None] = print, *, encoder=None,
                face_folder: Path | None = None, photos: list[np.ndarray] | None = None) -> dict:
    """Per photo count: min / median / max of each stage and of the whole chain, and the goal.

    ``args`` needs repeats, chain_photos and cache_dir. The tests pass small models and photos
    (encoder, face_folder, photos); the benchmark makes the real-sized ones.
    """
    from . import common as bench_common
    from .faces import MODEL_MACS, make_real_size_antelopev2, portrait
    from ..face import FaceAnalyzer

    WARMUP = bench_common.WARMUP
    counts = sorted(set(args.chain_photos))
    folder = face_folder or make_real_size_antelopev2(Path(args.cache_dir) / "antelopev2_random")
    analyzer = FaceAnalyzer(folder, provider="CPU")
    timers = _instrument(analyzer)
    encoder = encoder or vit_l14(device)
    photos = photos or [portrait(seed) for seed in range(max(counts))]
    if len(photos) < max(counts):
        raise ValueError(f"{max(counts)} photos needed, {len(photos)} given")
    report: dict = {
        "what": "the command line's path without model loading: FaceAnalyzer.analyze, ClipVisionEncoder.encode_crops "
                "(up to 4 crops a call), HyperLoRA.coefficients, HyperLoRA.lora_from_coefficients",
        "models": {"network": f"v1-sized random checkpoint, {hl.dtype} weights, maths in {hl.compute_dtype}",
                   "clip": f"random CLIP ViT-L/14 vision tower (transformers), {encoder.dtype}",
                   "faces": {name: f"{macs / 1e9:.2f} G multiply-adds" for name, macs in MODEL_MACS.items()
                             if face_folder is None},
                   "face_models_note": "random-weight ONNX of antelopev2's sizes (hyperlora_core/bench_faces.py): "
                                       "IResNet-100 exact; detector and landmarks sized by compute, not SCRFD's "
                                       "or 2d106det's exact layout",
                   "photo": "1024 x 1024 RGB, one face"},
        "providers": list(analyzer.models.providers),
    }

    # The goal's parts, each on its own: one detection, one CLIP pass of one crop.
    first = photos[0]
    one = analyzer.analyze([first])[0]
    report["one_detection"] = _repeat(_seconds(lambda: analyzer.detect(first)), WARMUP, args.repeats)
    log(f"one detection: {report['one_detection']}")
    report["one_clip_pass"] = _repeat(_seconds(lambda: encoder.encode_crops([one.clip_crop], batch_size=1)),
                                      WARMUP, args.repeats)
    log(f"one CLIP pass: {report['one_clip_pass']}")

    for n in counts:
        runs = [_chain_once(analyzer, timers, encoder, hl, photos[:n]) for _ in range(WARMUP + args.repeats)][WARMUP:]
        stages = {stage: spread([times[stage] for times, _ in runs]) for stage in runs[0][0]}
        per_photo = {stage: round(s["median_s"] / n, 5) for stage, s in stages.items()}
        goal = stages["network"]["median_s"] + n * (report["one_detection"]["median_s"]
                                                    + report["one_clip_pass"]["median_s"])
        # The same goal with the chain's own CLIP time, which does not carry the lone pass's spread.
        own = stages["network"]["median_s"] + stages["clip"]["median_s"] + n * report["one_detection"]["median_s"]
        entry = {"stages": stages, "median_per_photo_s": per_photo, "face_model_calls": runs[0][1],
                 "goal_s": round(goal, 5), "total_over_goal": round(stages["total"]["median_s"] / goal, 3),
                 "goal_with_chain_clip_s": round(own, 5),
                 "total_over_goal_with_chain_clip": round(stages["total"]["median_s"] / own, 3)}
        if n > 1:
            crops = [r.clip_crop for r in analyzer.analyze(photos[:n])]
            entry["clip_one_crop_a_call"] = _repeat(
                _seconds(lambda: encoder.encode_crops(crops, batch_size=1)), 0, max(3, args.repeats // 2))
            entry["clip_batching_speedup"] = round(
                entry["clip_one_crop_a_call"]["median_s"] / stages["clip"]["median_s"], 3)
        report[f"photos_{n}"] = entry
        log(f"{n} photo(s): total {stages['total']}, goal {entry['goal_s']} s")
    return report

