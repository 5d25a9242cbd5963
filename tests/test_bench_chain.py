"""The benchmark's plumbing (no timings are asserted): the spread and the machine in each report, the
antelopev2-sized stand-in face models, and the chain stage on small models."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from checkpoints import make_release_folder
from hyperlora_core.bench import common as bench_common, faces as bench_faces, run as bench
from hyperlora_core.model.hyperlora import HyperLoRA


def test_every_stage_names_its_baseline_and_the_chain_is_a_stage():
    assert "chain" in bench.STAGES
    assert set(bench.BASELINES) == set(bench.STAGES)


def test_spread_and_speedup_range():
    s = bench_common.spread([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (s["min_s"], s["median_s"], s["max_s"], s["runs"]) == (1.0, 3.0, 5.0, 5)
    fast, slow = bench_common.spread([1.0, 2.0, 4.0]), bench_common.spread([8.0, 10.0, 12.0])
    c = bench_common.compare(fast, slow)
    assert c["speedup"] == 5.0 and c["speedup_range"] == [2.0, 12.0]


def test_machine_names_cpu_cores_torch_and_load():
    info = bench_common.finish_machine(bench_common.machine(torch.device("cpu")))
    assert info["cpu"] and info["cores"] >= 1 and info["threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__
    assert len(info["load_average_start"]) == len(info["load_average_end"]) == 3
    assert info["loaded"] == (max(info["load_average_start"][0], info["load_average_end"][0]) > 1.25 * info["cores"])


def test_stand_in_detector_reports_its_one_face_as_insightface_decodes_it():
    outs = bench_faces.Detector().eval()(torch.zeros(1, 3, 640, 640))
    found = []
    for level, stride in enumerate((8, 16, 32)):
        scores, boxes, kps = (outs[level + 3 * k].detach().numpy() for k in range(3))
        side = 640 // stride
        centres = np.stack(np.mgrid[:side, :side][::-1], axis=-1).reshape(-1, 2) * stride
        centres = np.repeat(centres, 2, axis=0)  # two anchors per cell, as SCRFD's decoder lays them out
        for row in np.flatnonzero(scores[:, 0] >= 0.5):
            d = boxes[row] * stride
            box = (centres[row, 0] - d[0], centres[row, 1] - d[1], centres[row, 0] + d[2], centres[row, 1] + d[3])
            points = centres[row] + kps[row].reshape(5, 2) * stride
            found.append((box, points))
    assert len(found) == 1
    box, points = found[0]
    np.testing.assert_allclose(box, bench_faces.FACE_BOX, atol=1e-3)
    x0, y0, x1, y1 = bench_faces.FACE_BOX
    assert ((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)).all()


def test_stand_in_landmarks_lie_on_the_face_in_the_crop():
    out = bench_faces.Landmarks().eval()(torch.zeros(1, 3, 192, 192)).detach().numpy().reshape(106, 2)
    pixels = (out + 1) * 96
    assert (pixels[:, 0] >= 48).all() and (pixels[:, 0] <= 144).all()
    assert (pixels[:, 1] >= 32).all() and (pixels[:, 1] <= 160).all()
    assert len(np.unique(pixels.round(2), axis=0)) > 60  # an outline, not one point


def test_recognition_stand_in_has_iresnet100s_size():
    model = bench_faces.IResNet100().eval()
    assert abs(sum(p.numel() for p in model.parameters()) / 65.2e6 - 1) < 0.01
    assert abs(bench_faces.count_macs(model, (1, 3, 112, 112)) / 12.1e9 - 1) < 0.01


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
