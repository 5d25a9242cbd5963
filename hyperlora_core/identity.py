"""The face features of one person, independent of any HyperLoRA checkpoint.

An identity is what the face pipeline and CLIP make of a set of photos: one ArcFace embedding and
one set of CLIP tokens per photo, with a weight per photo. It can be stored as a small file, loaded
back without the photos or the face models, blended with others, and fed to any variant
(fidelity or edit) of the hyper-network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .constants import ARCFACE_DIM, CLIP_TOKENS, CLIP_WIDTH
from .errors import InputError
from .export import write_new_file

FORMAT = "hyperlora-identity/1"


@dataclass
class IdentityFeatures:
    arcface: torch.Tensor  # (N, 512), L2-normalised
    clip_tokens: torch.Tensor  # (N, 257, 1024), CLIP penultimate hidden states of the face crops
    base_clip_tokens: torch.Tensor | None = None  # (N, 257, 1024) of the face-blurred crops, if made
    weights: torch.Tensor | None = None  # (N,), how much each photo counts; default equal
    sources: list[str] = field(default_factory=list)  # a name per photo, for the log and previews

    def __post_init__(self):
        n = self.arcface.shape[0] if self.arcface.dim() == 2 else -1
        if self.arcface.dim() != 2 or self.arcface.shape[1] != ARCFACE_DIM or n == 0:
            raise InputError(f"An identity needs arcface of shape (N, {ARCFACE_DIM}) with N >= 1, got {list(self.arcface.shape)}.")
        for name in ("clip_tokens", "base_clip_tokens"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (n, CLIP_TOKENS, CLIP_WIDTH):
                raise InputError(f"An identity's {name} must have shape ({n}, {CLIP_TOKENS}, {CLIP_WIDTH}), got {list(t.shape)}.")
        if self.weights is None:
            self.weights = torch.full((n,), 1.0 / n)
        self.weights = torch.as_tensor(self.weights, dtype=torch.float32).flatten()
        if self.weights.numel() != n or (self.weights < 0).any() or self.weights.sum() <= 0:
            raise InputError(f"An identity needs {n} non-negative weights, not all zero; got {self.weights.tolist()}.")
        self.weights = self.weights / self.weights.sum()
        if not self.sources:
            self.sources = [f"photo {i}" for i in range(n)]

    @property
    def num_photos(self) -> int:
        return self.arcface.shape[0]

    @staticmethod
    def blend(parts: list[tuple["IdentityFeatures", float]]) -> "IdentityFeatures":
        """Mix identities at the coefficient level: the hyper-network's per-photo outputs are averaged
        with weight (identity weight x photo weight), exactly as several photos of one person are."""
        parts = [(identity, float(w)) for identity, w in parts if float(w) != 0.0]
        if not parts:
            raise InputError("Blending needs at least one identity with a non-zero weight.")
        if any(w < 0 for _, w in parts):
            raise InputError("Blend weights must not be negative.")
        with_base = all(identity.base_clip_tokens is not None for identity, _ in parts)
        return IdentityFeatures(
            arcface=torch.cat([identity.arcface for identity, _ in parts]),
            clip_tokens=torch.cat([identity.clip_tokens for identity, _ in parts]),
            base_clip_tokens=torch.cat([identity.base_clip_tokens for identity, _ in parts]) if with_base else None,
            weights=torch.cat([identity.weights * w for identity, w in parts]),
            sources=[s for identity, _ in parts for s in identity.sources],
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the identity as a small `.safetensors` file (float32, about 1 MB per photo); never overwrites."""
        tensors = {"arcface": self.arcface.float(), "clip_tokens": self.clip_tokens.float(), "weights": self.weights}
        if self.base_clip_tokens is not None:
            tensors["base_clip_tokens"] = self.base_clip_tokens.float()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"format": FORMAT, "sources": json.dumps(self.sources)}
        return write_new_file(path, save(tensors, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IdentityFeatures":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"Identity file not found: {path}.")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{path} is not a readable identity file ({exc}).") from exc
        if meta.get("format") != FORMAT or "arcface" not in tensors or "clip_tokens" not in tensors:
            raise InputError(f"{path} is not a HyperLoRA identity file (saved by 'Save identity').")
        return cls(
            arcface=tensors["arcface"].float(),
            clip_tokens=tensors["clip_tokens"].float(),
            base_clip_tokens=tensors["base_clip_tokens"].float() if "base_clip_tokens" in tensors else None,
            weights=tensors.get("weights"),
            sources=json.loads(meta.get("sources", "[]")),
        )
