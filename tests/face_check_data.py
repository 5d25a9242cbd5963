"""Constructed faces for the photo-check tests: 106 landmarks posed from the ArcFace template, ArcFace
embeddings made to agree (one person) or not (another), and photos sharp or blurred."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

FIVE_POINTS = (38, 88, 86, 52, 61)
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])


def posed_landmarks(yaw=0.0, pitch=0.0, roll=0.0, scale=2.0, at=(160.0, 160.0)) -> np.ndarray:
    """106 landmarks whose five alignment points are the ArcFace template turned in 3D (nose tip half an
    eye distance in front of the eyes), the others spread on the face's box."""
    t = ARCFACE_TEMPLATE - ARCFACE_TEMPLATE[:2].mean(axis=0)
    depth = 0.5 * np.hypot(*(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]))
    points = np.c_[t, [0, 0, depth, 0, 0]]
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    five = (points @ (rz @ rx @ ry).T)[:, :2] * scale + np.asarray(at)
    grid = np.stack(np.meshgrid(np.linspace(-50, 50, 11), np.linspace(-45, 55, 10)), -1).reshape(-1, 2)
    landmarks = grid[:106] * scale + np.asarray(at)
    landmarks[list(FIVE_POINTS)] = five
    return landmarks.astype(np.float32)


def person_embeddings(n: int, outlier: int | None = None, seed: int = 0, spread: float = 0.5) -> np.ndarray:
    """n unit embeddings of one person (a shared direction plus noise: pairwise cosines about 0.6-0.8),
    the one at ``outlier`` of another person (a direction of its own)."""
    rng = np.random.default_rng(seed)
    person = rng.standard_normal(512)
    person /= np.linalg.norm(person)
    out = []
    for i in range(n):
        noise = rng.standard_normal(512)
        noise /= np.linalg.norm(noise)
        base = person
        if i == outlier:
            base = rng.standard_normal(512)
            base /= np.linalg.norm(base)
        e = base + spread * noise
        out.append(e / np.linalg.norm(e))
    return np.stack(out).astype(np.float32)


def face(index: int, embedding, width=200.0, det_score=0.9, sharpness=300.0, landmarks=None):
    """A FaceResult-like object with what the check reads."""
    return SimpleNamespace(index=index, box=np.array([60, 60, 60 + width, 60 + width * 1.2], np.float32),
                           det_score=det_score, sharpness=sharpness, arcface_embedding=np.asarray(embedding),
                           landmarks=posed_landmarks() if landmarks is None else landmarks)


def textured_photo(size=320, seed=0) -> np.ndarray:
    """A photo with fine detail everywhere (sharp at any scale)."""
    rng = np.random.default_rng(seed)
    small = (rng.random((size // 4, size // 4, 3)) * 255).astype(np.uint8)
    return np.kron(small, np.ones((4, 4, 1), np.uint8))
