"""The benchmark's reference path (the reference implementation's float32 CPU practice, re-derived):
it loads the release in float32 and makes the same LoRA as this project's path."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from hyperlora_core.bench import common as bench_common, run as bench
from hyperlora_core.bench.reference import ReferenceModel, reference_generate, reference_load
from hyperlora_core.bench.synthetic import random_features
from hyperlora_core.constants import MODULES_WEIGHTS
from hyperlora_core.model.hyperlora import HyperLoRA


def test_every_reference_stage_is_a_stage():
    assert set(bench.REFERENCE_BASELINES) <= set(bench.STAGES)


def test_reference_load_holds_every_tensor_of_the_files_in_float32(id_only_folder):
    trees = reference_load(id_only_folder, torch.device("cpu"))
    stored = load_file(str(id_only_folder / MODULES_WEIGHTS))
    loaded = dict(trees[MODULES_WEIGHTS].named_parameters())
    assert loaded.keys() == stored.keys()
    for key, tensor in stored.items():
        assert loaded[key].dtype == torch.float32
        assert torch.equal(loaded[key], tensor.float())


def test_reference_lora_equals_ours_up_to_float16_rounding(id_only_folder):
    hl = HyperLoRA.from_pretrained(id_only_folder, torch.float16)
    arcface, clip = random_features(2, seed=4)
    ours = hl.generate_id_lora(arcface, clip)
    theirs = reference_generate(ReferenceModel(id_only_folder, torch.device("cpu")), arcface, clip)
    assert ours.keys() == theirs.keys()
    for key, tensor in theirs.items():
        assert tensor.dtype == torch.float32 and tensor.shape == ours[key].shape
        # ours is rounded to float16 (plus float32 sums in another order): within one float16 step
        step = torch.finfo(torch.float16).eps * tensor.abs().clamp_min(2.0 ** -14)
        assert ((ours[key].float() - tensor).abs() <= step).all(), key


def test_reference_figures_sit_beside_the_straightforward_ones():
    project, slow = bench_common.spread([1.0, 2.0, 3.0]), bench_common.spread([4.0, 5.0, 6.0])
    reference = bench_common.spread([2.0, 4.0, 6.0])
    project["peak_mb"], slow["peak_mb"], reference["peak_mb"] = 100.0, 200.0, 300.0
    stage = bench_common.add_reference(bench_common.compare(project, slow), reference)
    assert {"project", "straightforward", "speedup", "speedup_range"} <= stage.keys()
    assert stage["speedup_vs_reference"] == 2.0 and stage["speedup_vs_reference_range"] == [0.67, 6.0]
    assert stage["peak_vs_reference"] == 3.0


def test_interleaved_measure_runs_each_path_its_own_number_of_times():
    calls = []
    figures = bench_common.measure_interleaved({"a": (lambda: calls.append("a"), 3), "b": (lambda: calls.append("b"), 2)},
                                               torch.device("cpu"), warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b", "a"]
    assert figures["a"]["runs"] == 3 and figures["b"]["runs"] == 2
