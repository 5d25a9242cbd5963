"""bench/run.py and bench/chain.py: every stage has its baseline, and the chain stage (photos -> LoRA)
runs on small models (no timings are asserted). The spread and the machine: test_bench_common.py;
the stand-in face models: test_bench_faces.py."""

from __future__ import annotations

import argparse

import pytest
import torch

from checkpoints import make_release_folder
from hyperlora_core.bench import common as bench_common, run as bench
from hyperlora_core.model.hyperlora import HyperLoRA


def test_every_stage_names_its_baseline_and_the_chain_is_a_stage():
    assert "chain" in bench.STAGES
    assert set(bench.BASELINES) == set(bench.STAGES)


def test_chain_stage_on_small_models(tmp_path, monkeypatch):
    pytest.importorskip("insightface")
    from clip_vision_standin import StandInClipVision
    from node_fixtures import _photo
    from tiny_clip import make_tiny_clip
    from tiny_face_models import make_tiny_antelopev2

    from hyperlora_core.bench import chain as bench_chain

    hl = HyperLoRA.from_pretrained(make_release_folder(tmp_path / "hl", dim=64, depth=1, inner=64, hyper_dim=16),
                                   torch.float32)
    encoder = StandInClipVision(make_tiny_clip(tmp_path / "clip")).encoder
    photos = [_photo(True, seed)[0].mul(255).round().byte().numpy() for seed in range(2)]
    monkeypatch.setattr(bench_common, "WARMUP", 0)
    args = argparse.Namespace(repeats=2, chain_photos=[2, 1], cache_dir=str(tmp_path))
    report = bench_chain.bench_chain(hl, args, torch.device("cpu"), log=lambda text: None, encoder=encoder,
                                     face_folder=make_tiny_antelopev2(tmp_path / "faces"), photos=photos)
    for n in (1, 2):
        entry = report[f"photos_{n}"]
        assert entry["face_model_calls"] == {"face_detection": 2 * n, "face_landmarks": n, "face_recognition": n}
        for s in entry["stages"].values():
            assert s["runs"] == 2 and s["min_s"] <= s["median_s"] <= s["max_s"]
        parts = entry["stages"]["network"]["median_s"] + n * (report["one_detection"]["median_s"]
                                                              + report["one_clip_pass"]["median_s"])
        assert entry["goal_s"] == pytest.approx(parts, abs=1e-4)
        own = (entry["stages"]["network"]["median_s"] + entry["stages"]["clip"]["median_s"]
               + n * report["one_detection"]["median_s"])
        assert entry["goal_with_chain_clip_s"] == pytest.approx(own, abs=1e-4)
    assert "clip_batching_speedup" in report["photos_2"] and "clip_batching_speedup" not in report["photos_1"]
