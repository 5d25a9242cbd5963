"""bench/faces.py: the antelopev2-sized stand-in face models answer as insightface decodes them and have
the real networks' sizes."""

from __future__ import annotations

import numpy as np
import torch

from hyperlora_core.bench import faces as bench_faces


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
