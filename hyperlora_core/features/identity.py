"""The face features of one person, independent of any HyperLoRA checkpoint.

An identity is what the face pipeline and CLIP make of a set of photos: one ArcFace embedding and
one set of CLIP tokens per photo, with a weight per photo. It can be stored as a small file, loaded
back without the photos or the face models, blended with others, and fed to any variant
(fidelity or edit) of the hyper-network.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ..constants import ARCFACE_DIM, CLIP_TOKENS, CLIP_WIDTH
from ..errors import InputError
from ..files.export import write_new_file
from ..finite import non_finite_tensor
from ..model.hyperlora import photo_weights
from ..files.sniff import file_problem, torch_dtype_problem

log = logging.getLogger(__name__)
RESAVE = "Save the identity again from its photos with 'Save HyperLoRA Identity' (or --save-identity)."

FORMAT = "hyperlora-identity/1"




@dataclass
class IdentityFeatures:
    arcface: torch.Tensor  # (N, 512), L2-normalised
    clip_tokens: torch.Tensor  # (N, 257, 1024), CLIP penultimate hidden states of the face crops
    base_clip_tokens: torch.Tensor | None = None  # (N, 257, 1024) of the face-blurred crops, if made
    weights: torch.Tensor | None = None  # (N,), how much each photo counts; default equal
    sources: list[str] = field(default_factory=list)  # a name per photo, for the log and previews

    def __post_init__(self):
        for name in ("arcface", "clip_tokens", "base_clip_tokens"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) and not (name == "base_clip_tokens" and value is None):
                raise InputError(f"An identity's {name} must be a tensor, got {type(value).__name__}; make identities "
                                 "with the 'HyperLoRA ID Embedding' node or load a saved one.")
        n = self.arcface.shape[0] if self.arcface.dim() == 2 else -1
        if self.arcface.dim() != 2 or self.arcface.shape[1] != ARCFACE_DIM or n == 0:
            raise InputError(f"An identity needs arcface of shape (N, {ARCFACE_DIM}) with N >= 1, got {list(self.arcface.shape)}.")
        for name in ("clip_tokens", "base_clip_tokens"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (n, CLIP_TOKENS, CLIP_WIDTH):
                raise InputError(f"An identity's {name} must have shape ({n}, {CLIP_TOKENS}, {CLIP_WIDTH}), got {list(t.shape)}.")
        self.weights = photo_weights(self.weights, n)
        if not self.sources:
            self.sources = [f"photo {i}" for i in range(n)]

    @classmethod
    def from_faces(cls, faces: Sequence[Any], clip_tokens: torch.Tensor, base_clip_tokens: torch.Tensor | None = None,
                   sources: Sequence[str] | None = None, weights: Any = None) -> "IdentityFeatures":
        """The identity of the faces the face pipeline found (``FaceResult``s, one per photo) and their
        CLIP tokens: the ArcFace embeddings stacked and L2-normalised, here and nowhere else.
        ``weights``: how much each photo counts (the photo check's down-weighting); default equal."""
        arcface = torch.stack([torch.as_tensor(np.asarray(face.arcface_embedding), dtype=torch.float32).flatten()
                               for face in faces])
        arcface = arcface / arcface.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return cls(arcface=arcface, clip_tokens=clip_tokens, base_clip_tokens=base_clip_tokens,
                   weights=weights, sources=list(sources or []))

    @property
    def num_photos(self) -> int:
        return self.arcface.shape[0]

    @staticmethod
    def blend(parts: list[tuple["IdentityFeatures", float]]) -> "IdentityFeatures":
        """Mix identities at the coefficient level: the hyper-network's per-photo outputs are averaged
        with weight (identity weight x photo weight), exactly as several photos of one person are."""
        for i, (identity, w) in enumerate(parts, 1):
            if not isinstance(identity, IdentityFeatures):
                raise InputError(f"Identity {i} to blend is {type(identity).__name__}, not an identity: connect the "
                                 "output of 'HyperLoRA ID Embedding', 'Load HyperLoRA Identity' or another Blend.")
            try:
                finite = not isinstance(w, (str, bytes)) and math.isfinite(float(w))
            except (TypeError, ValueError, RuntimeError):
                finite = False
            if not finite:
                raise InputError(f"Blend weight {i} must be a finite number, got {w!r}.")
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
        bad = non_finite_tensor(tensors.items())
        if bad is not None:
            raise InputError(f"The identity's {bad} holds NaN or infinite values; it was not saved. "
                             "Make it again from the photos.")
        meta = {"format": FORMAT, "sources": json.dumps(self.sources)}
        return write_new_file(path, save(tensors, metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IdentityFeatures":
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(f"The identity file must be given as a path, got {type(path).__name__}.")
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            raise InputError(f"Identity file not found: {path}.")
        problem = file_problem(path)
        if problem is not None:
            raise InputError(f"{path} is not an identity file: it {problem}. It was not loaded. {RESAVE}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise InputError(f"{path} is not a readable identity file ({exc}). It was not loaded. {RESAVE}") from exc
        if meta.get("format") != FORMAT or "arcface" not in tensors or "clip_tokens" not in tensors:
            raise InputError(f"{path} is not a HyperLoRA identity file (saved by 'Save identity').")
        bad = torch_dtype_problem(tensors)
        if bad is not None:
            raise InputError(f"{path}: tensor {bad[0]!r} is stored as {bad[1]}, but identity files hold float16, "
                             f"bfloat16 or float32 only. It was not loaded. {RESAVE}")
        bad = non_finite_tensor(tensors.items())
        if bad is not None:
            raise InputError(f"{path}: tensor {bad!r} holds NaN or infinite values; the file is damaged. "
                             f"It was not loaded. {RESAVE}")
        return cls(
            arcface=tensors["arcface"].float(),
            clip_tokens=tensors["clip_tokens"].float(),
            base_clip_tokens=tensors["base_clip_tokens"].float() if "base_clip_tokens" in tensors else None,
            weights=tensors.get("weights"),
            sources=_sources(meta.get("sources", "[]"), path),
        )


def _sources(text: str, path: Path) -> list[str]:
    """The photo names stored in the metadata; a damaged list is replaced by numbered names, with a warning."""
    try:
        sources = json.loads(text)
    except (ValueError, RecursionError):
        sources = None
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        log.warning("%s: the list of source photos in its metadata is not a JSON list of names; "
                    "the photos are numbered instead.", path)
        return []
    return sources
