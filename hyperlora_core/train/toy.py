"""A toy base model (tiny UNet, word-hash text encoder, pooling "VAE") for trying the trainer.

Everything a training run touches is here at a size that runs in seconds on one CPU core: the UNet
has attention modules named as in diffusers (``down_blocks.0.attentions.0.transformer_blocks.0.attn1``
with ``to_q``, ``to_k``, ``to_v``, ``to_out.0``), so target discovery, the per-sample LoRA, export and
warm start take the same path as with SDXL. The weights are random (seeded): it learns nothing
useful, it only shows that everything fits together. Use it with::

    [model]
    kind = "custom"
    factory = "hyperlora_core.train.toy:build"
"""

from __future__ import annotations

import math
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, scaled_linear_schedule


class ToyAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, _ = x.shape

        def split(t):
            return t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context)))
        return self.to_out[1](self.to_out[0](out.transpose(1, 2).reshape(b, n, -1)))


class ToyTransformerBlock(nn.Module):
    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = ToyAttention(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = ToyAttention(dim, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class ToyTransformer(nn.Module):
    def __init__(self, dim: int, context_dim: int, depth: int = 1):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(ToyTransformerBlock(dim, context_dim) for _ in range(depth))

    def forward(self, h, context):
        b, c, hh, ww = h.shape
        x = h.flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            x = block(x, context)
        return h + x.transpose(1, 2).reshape(b, c, hh, ww)


class ToyBlock(nn.Module):
    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        self.resnets = nn.ModuleList([nn.Conv2d(dim, dim, 3, padding=1)])
        self.attentions = nn.ModuleList([ToyTransformer(dim, context_dim)])

    def forward(self, h, emb, context):
        h = h + F.silu(self.resnets[0](h) + emb[:, :, None, None])
        return self.attentions[0](h, context)


class ToyUNet(nn.Module):
    """conv_in -> down (width w) -> downsample -> mid (2w) -> upsample -> up (w) -> conv_out."""

    def __init__(self, channels: int = 4, width: int = 32, context_dim: int = 48):
        super().__init__()
        self.width = width
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.time_embedding = nn.Sequential(nn.Linear(width, width), nn.SiLU())
        self.text_embedding = nn.Linear(context_dim, width)
        self.down_blocks = nn.ModuleList([ToyBlock(width, context_dim)])
        self.downsample = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid_block = ToyBlock(2 * width, context_dim)
        self.mid_emb = nn.Linear(width, 2 * width)
        self.upsample = nn.Conv2d(2 * width, width, 3, padding=1)
        self.up_blocks = nn.ModuleList([ToyBlock(width, context_dim)])
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, timesteps, context, pooled):
        half = self.width // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device) / half)
        angles = timesteps.float()[:, None] * freqs[None]
        emb = self.time_embedding(torch.cat([angles.sin(), angles.cos()], -1).to(x.dtype))
        emb = emb + self.text_embedding(pooled)
        h = self.conv_in(x)
        skip = h = self.down_blocks[0](h, emb, context)
        h = self.mid_block(self.downsample(h), self.mid_emb(emb), context)
        h = self.upsample(F.interpolate(h, scale_factor=2, mode="nearest")) + skip
        h = self.up_blocks[0](h, emb, context)
        return self.conv_out(h)


class ToyBackbone(Backbone):
    """The toy UNet, a word-hash text encoder and an average-pooling 'VAE' (factor 4)."""

    def __init__(self, seed: int = 0, width: int = 32, context_dim: int = 48, vocab: int = 512,
                 max_words: int = 12, channels: int = 4):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.unet = ToyUNet(channels, width, context_dim)
            self.words = nn.Embedding(vocab, context_dim)
            self.positions = nn.Parameter(torch.randn(max_words, context_dim) * 0.1)
            self.to_latent = torch.linalg.qr(torch.randn(channels, channels))[0][:, :3].contiguous()
        for module in (self.unet, self.words):
            module.requires_grad_(False).eval()
        self.positions.requires_grad_(False)
        self.vocab = vocab
        self.max_words = max_words
        self.alphas_cumprod = scaled_linear_schedule()
        self.description = "toy UNet"
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def to(self, device, dtype):
        self.device, self.dtype = torch.device(device), dtype
        self.unet.to(device, dtype)
        self.words.to(device, dtype)
        self.positions.data = self.positions.data.to(device, dtype)
        self.to_latent = self.to_latent.to(device)
        return self

    def encode_images(self, pixels):
        pooled = F.avg_pool2d(pixels.to(self.device, torch.float32), 4)  # (B, 3, H/4, W/4)
        return torch.einsum("cr,brhw->bchw", self.to_latent, pooled)

    def decode_latents(self, latents):
        rgb = torch.einsum("cr,bchw->brhw", self.to_latent, latents.float())
        return F.interpolate(rgb, scale_factor=4, mode="nearest").clamp(-1, 1)

    @torch.no_grad()
    def encode_prompts(self, captions, sizes):
        ids = torch.zeros(len(captions), self.max_words, dtype=torch.long)
        for n, caption in enumerate(captions):
            words = caption.replace(",", " ").split()[: self.max_words]
            for j, word in enumerate(words):
                ids[n, j] = 1 + zlib.crc32(word.encode("utf-8")) % (self.vocab - 1)
        context = self.words(ids.to(self.device)) + self.positions
        return {"context": context, "pooled": context.mean(1)}

    def predict(self, noisy, timesteps, condition):
        return self.unet(noisy, timesteps, condition["context"], condition["pooled"])


def build(**options) -> ToyBackbone:
    """Factory for ``model.factory = "hyperlora_core.train.toy:build"``; options go to ToyBackbone."""
    return ToyBackbone(**options)
