"""The hyper-network: the ID projector and the perceiver resampler that turn face features into
LoRA coefficients (spec sections 4 and 5).

Parameter names equal the keys of the released files, so a state dict loads as it is. The modules
keep their weights in the storage dtype and cast them to the activations' dtype on use: on a CPU
without half-precision arithmetic the maths runs in float32 on half weights, without a float32 copy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import SafetensorsFile
from ..errors import CheckpointError

HEAD_DIM = 64
LAYER_NORM_EPS = 1e-5


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    bias = None if layer.bias is None else layer.bias.to(x.dtype)
    return F.linear(x, layer.weight.to(x.dtype), bias)


def _norm(layer: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, layer.normalized_shape, layer.weight.to(x.dtype), layer.bias.to(x.dtype), layer.eps)


class Attention(nn.Module):
    """Multi-head attention without biases, heads of 64, keys `to_q`, `to_k`, `to_v`, `to_out.0`."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.heads = inner // HEAD_DIM
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=False)])

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, q_len, _ = queries.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, t.shape[1], self.heads, HEAD_DIM).transpose(1, 2)

        q = split(_linear(self.to_q, queries))
        k = split(_linear(self.to_k, context))
        v = split(_linear(self.to_v, context))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(HEAD_DIM))
        return _linear(self.to_out[0], out.transpose(1, 2).reshape(n, q_len, -1))


class FeedForward(nn.Module):
    """Linear -> exact GELU -> Linear, keys `net.0.proj` and `net.2`."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        proj = nn.Module()
        proj.proj = nn.Linear(dim, hidden)
        self.net = nn.ModuleList([proj, nn.Identity(), nn.Linear(hidden, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(self.net[2], F.gelu(_linear(self.net[0].proj, x)))


class ResamplerLayer(nn.Module):
    def __init__(self, dim: int, inner: int, ff_hidden: int, n_conds: int):
        super().__init__()
        self.n_conds = n_conds
        self.norm_attn1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn1 = Attention(dim, inner)
        self.norm_attn2_l = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm_attn2_x = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn2 = Attention(dim, inner)
        if n_conds == 2:
            self.norm_attn3_l = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
            self.norm_attn3_y = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
            self.attn3 = Attention(dim, inner)
        self.norm_ff = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.ff = FeedForward(dim, ff_hidden)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = _norm(self.norm_attn1, latents)
        latents = latents + self.attn1(h, h)
        latents = latents + self.attn2(_norm(self.norm_attn2_l, latents), _norm(self.norm_attn2_x, x))
        if self.n_conds == 2:
            latents = latents + self.attn3(_norm(self.norm_attn3_l, latents), _norm(self.norm_attn3_y, y))
        return latents + self.ff(_norm(self.norm_ff, latents))


class Resampler(nn.Module):
    """Learned queries attending to the condition tokens; one output token per LoRA factor.

    With two conditions (the ID-LoRA resampler) `proj_in` takes the ArcFace ID tokens and
    `proj_in_2` the CLIP tokens; with one (the Base-LoRA resampler) `proj_in` takes the CLIP tokens.
    """

    def __init__(self, queries: int, dim: int, inner: int, depth: int, ff_hidden: int,
                 out_dim: int, in_dims: tuple[int, ...]):
        super().__init__()
        self.n_conds = len(in_dims)
        self.latents = nn.Parameter(torch.zeros(1, queries, dim))
        self.proj_in = nn.Linear(in_dims[0], dim)
        if self.n_conds == 2:
            self.proj_in_2 = nn.Linear(in_dims[1], dim)
        self.layers = nn.ModuleList(ResamplerLayer(dim, inner, ff_hidden, self.n_conds) for _ in range(depth))
        self.proj_out = nn.Linear(dim, out_dim)

    @property
    def in_dims(self) -> tuple[int, ...]:
        dims = [self.proj_in.in_features]
        if self.n_conds == 2:
            dims.append(self.proj_in_2.in_features)
        return tuple(dims)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, tokens, in_dims[0]); y: (N, tokens, in_dims[1]) when there are two conditions.

        Returns the unnormalised coefficients of each photo, (N, queries, out_dim).
        """
        latents = self.latents.to(x.dtype).expand(x.shape[0], -1, -1)
        x = _linear(self.proj_in, x)
        y = _linear(self.proj_in_2, y) if self.n_conds == 2 else None
        for layer in self.layers:
            latents = layer(latents, x, y)
        return _linear(self.proj_out, latents)

    @classmethod
    def from_file(cls, weights: SafetensorsFile, n_conds: int) -> "Resampler":
        """Build the resampler whose sizes the file's tensors give, check every key and shape, load."""
        for key in ("latents", "proj_in.weight", "proj_out.weight", "layers.0.attn1.to_q.weight",
                    "layers.0.ff.net.0.proj.weight"):
            if key not in weights.keys:
                weights.check_keys({key})
        _, queries, dim = weights.shape("latents")
        in_dims = [weights.shape("proj_in.weight")[1]]
        if n_conds == 2:
            if "proj_in_2.weight" not in weights.keys:
                weights.check_keys({"proj_in_2.weight"})
            in_dims.append(weights.shape("proj_in_2.weight")[1])
        inner = weights.shape("layers.0.attn1.to_q.weight")[0]
        if inner % HEAD_DIM:
            raise CheckpointError(f"{weights.path}: attention width {inner} is not a multiple of {HEAD_DIM}.")
        ff_hidden = weights.shape("layers.0.ff.net.0.proj.weight")[0]
        out_dim = weights.shape("proj_out.weight")[0]
        depth = len({k.split(".")[1] for k in weights.keys if k.startswith("layers.")})
        with torch.device("meta"):  # no random initialisation of weights about to be replaced
            model = cls(queries, dim, inner, depth, ff_hidden, out_dim, tuple(in_dims))
        load_checked(model, weights)
        return model


class IDProjector(nn.Module):
    """ArcFace embedding (N, 512) -> ID tokens (N, tokens, width): Linear, reshape, LayerNorm."""

    def __init__(self, in_dim: int, tokens: int, width: int):
        super().__init__()
        self.tokens = tokens
        self.width = width
        self.layers = nn.ModuleList([nn.Linear(in_dim, tokens * width), nn.Identity(), nn.LayerNorm(width)])

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        tokens = _linear(self.layers[0], embeds).reshape(embeds.shape[0], self.tokens, self.width)
        return _norm(self.layers[2], tokens)

    # The released keys are `0.weight`, `2.weight` (a bare Sequential): loaded with prefix `layers.`.
    @classmethod
    def from_file(cls, weights: SafetensorsFile) -> "IDProjector":
        weights.check_keys({"0.weight", "0.bias", "2.weight", "2.bias"})
        out_dim, in_dim = weights.shape("0.weight")
        width = weights.shape("2.weight")[0]
        if out_dim % width:
            raise CheckpointError(
                f"{weights.path}: projection width {out_dim} is not a whole number of {width}-wide tokens."
            )
        with torch.device("meta"):
            model = cls(in_dim, out_dim // width, width)
        load_checked(model, weights, prefix="layers.")
        return model


def load_checked(model: nn.Module, weights: SafetensorsFile, prefix: str = "") -> None:
    """Load a file into a module built from its shapes: exact key set, every shape checked."""
    expected = {k[len(prefix):]: tuple(v.shape) for k, v in model.state_dict().items()}
    weights.check_keys(set(expected))
    for key, shape in expected.items():
        weights.check_shape(key, shape)
    state = {f"{prefix}{key}": weights.tensor(key) for key in expected}
    model.load_state_dict(state, strict=True, assign=True)
