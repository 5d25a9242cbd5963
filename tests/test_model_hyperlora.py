"""The HyperLoRA API against an independent, straightforward re-derivation of the spec maths."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from checkpoints import SMALL_MODULES, random_features
from hyperlora_core import HyperLoRA

PROJ = ["to_q", "to_k", "to_v", "to_out"]


# ---------------------------------------------------------------------------------------------
# The spec, written out plainly in float64 from the files (no code shared with the package).

def _read(folder: Path, name: str, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """The weights as the model holds them in `dtype`, then widened for exact maths."""
    return {k: v.to(dtype).double() for k, v in load_file(str(folder / name)).items()}


def _ln(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def _attn(sd, prefix, q_in, kv_in):
    q = q_in @ sd[prefix + "to_q.weight"].T
    k = kv_in @ sd[prefix + "to_k.weight"].T
    v = kv_in @ sd[prefix + "to_v.weight"].T
    n, tq, inner = q.shape
    heads = inner // 64

    def split(t):
        return t.reshape(n, t.shape[1], heads, 64).permute(0, 2, 1, 3)

    scores = split(q) @ split(k).transpose(-1, -2) / 8.0
    out = torch.softmax(scores, -1) @ split(v)
    out = out.permute(0, 2, 1, 3).reshape(n, tq, inner)
    return out @ sd[prefix + "to_out.0.weight"].T


def _resampler(sd, conds):
    n = conds[0].shape[0]
    lat = sd["latents"].repeat(n, 1, 1)
    x = conds[0] @ sd["proj_in.weight"].T + sd["proj_in.bias"]
    y = conds[1] @ sd["proj_in_2.weight"].T + sd["proj_in_2.bias"] if len(conds) == 2 else None
    layer = 0
    while f"layers.{layer}.norm_ff.weight" in sd:
        p = f"layers.{layer}."

        def ln(name, t):
            return _ln(t, sd[p + name + ".weight"], sd[p + name + ".bias"])

        h = ln("norm_attn1", lat)
        lat = lat + _attn(sd, p + "attn1.", h, h)
        lat = lat + _attn(sd, p + "attn2.", ln("norm_attn2_l", lat), ln("norm_attn2_x", x))
        if y is not None:
            lat = lat + _attn(sd, p + "attn3.", ln("norm_attn3_l", lat), ln("norm_attn3_y", y))
        h = ln("norm_ff", lat) @ sd[p + "ff.net.0.proj.weight"].T + sd[p + "ff.net.0.proj.bias"]
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        lat = lat + h @ sd[p + "ff.net.2.weight"].T + sd[p + "ff.net.2.bias"]
        layer += 1
    out = lat @ sd["proj_out.weight"].T + sd["proj_out.bias"]
    mean = out.mean(0)
    return mean / torch.sqrt((mean**2).sum(-1, keepdim=True) + 1e-8)


def _bases_to_lora(folder, coef, kind, dtype):
    names = list(json.loads((folder / "hyper_lora_modules.json").read_text(), object_pairs_hook=OrderedDict))
    bases = _read(folder, "hyper_lora_modules.safetensors", dtype)
    lora = {}
    for i, name in enumerate(names):
        for j, p in enumerate(PROJ):
            cd, cu = coef[8 * i + 2 * j], coef[8 * i + 2 * j + 1]
            down = torch.einsum("k,kir->ir", cd, bases[f"{i}.{p}.{kind}_down_basis"]).T
            up = torch.einsum("k,kro->ro", cu, bases[f"{i}.{p}.{kind}_up_basis"]).T
            suffix = "to_out_0" if p == "to_out" else p
            lora[f"{name}_{suffix}.lora_down.weight"] = down
            lora[f"{name}_{suffix}.lora_up.weight"] = up
            lora[f"{name}_{suffix}.alpha"] = torch.tensor(down.shape[0] / 2, dtype=torch.float64)
    return lora


def spec_id_lora(folder: Path, arcface: torch.Tensor, clip: torch.Tensor, dtype=torch.float32):
    proj = _read(folder, "id_projector.safetensors", dtype)
    ids = arcface.double() @ proj["0.weight"].T + proj["0.bias"]
    ids = _ln(ids.reshape(arcface.shape[0], 16, 1024), proj["2.weight"], proj["2.bias"])
    coef = _resampler(_read(folder, "resampler.safetensors", dtype), [ids, clip.double()])
    return _bases_to_lora(folder, coef, "id", dtype)


def spec_base_lora(folder: Path, clip: torch.Tensor):
    coef = _resampler(_read(folder, "base_resampler.safetensors"), [clip.double()])
    return _bases_to_lora(folder, coef, "base", torch.float32)


def assert_lora_close(ours, expected, rtol) -> float:
    """Same keys in the same order and every tensor within rtol of the largest value; returns the
    largest relative error seen."""
    assert list(ours) == list(expected), "same keys in the same order"
    worst = 0.0
    for key, ref in expected.items():
        got = ours[key]
        assert got.device.type == "cpu"
        assert tuple(got.shape) == tuple(ref.shape), key
        err = (got.double() - ref).abs().max().item()
        scale = ref.abs().max().item() or 1.0
        assert err <= rtol * scale, f"{key}: max error {err:.3g} vs scale {scale:.3g}"
        worst = max(worst, err / scale)
    return worst


# Outputs are rounded to the dtype; the maths runs in float32 on the CPU.
TOLERANCE = {torch.float32: 2e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("photos", [1, 3])
def test_id_lora_equals_spec_maths(release_folder, dtype, photos):
    arcface, clip = random_features(photos, seed=photos)
    hl = HyperLoRA.from_pretrained(release_folder, dtype=dtype, device="cpu")
    lora = hl.generate_id_lora(arcface, clip)
    assert all(t.dtype == dtype for t in lora.values())
    # the reference sees the weights as stored (fp16 file) rounded to the requested dtype, like ours
    assert_lora_close(lora, spec_id_lora(release_folder, arcface, clip, dtype), TOLERANCE[dtype])


# On the GPU the whole network runs in the weights' dtype, as the reference does there.
CUDA_TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_id_lora_on_the_gpu_equals_spec_maths(release_folder, dtype):
    arcface, clip = random_features(3, seed=3)
    hl = HyperLoRA.from_pretrained(release_folder, dtype=dtype, device="cuda")
    lora = hl.generate_id_lora(arcface, clip)
    assert all(t.dtype == dtype and t.device.type == "cpu" for t in lora.values())
    worst = assert_lora_close(lora, spec_id_lora(release_folder, arcface, clip, dtype), CUDA_TOLERANCE[dtype])
    print(f"largest relative error on cuda in {dtype}: {worst:.2e}")


def test_base_lora_equals_spec_maths(release_folder):
    _, clip = random_features(2, seed=7)
    hl = HyperLoRA.from_pretrained(release_folder, dtype=torch.float32)
    assert hl.has_base_lora
    base = hl.generate_base_lora(clip)
    expected = spec_base_lora(release_folder, clip)
    assert_lora_close(base, expected, TOLERANCE[torch.float32])
    assert base[next(k for k in base if k.endswith("lora_down.weight"))].shape[0] == 4  # rank r / 2


def test_lora_keys_follow_json_order_and_kohya_names(release_folder):
    hl = HyperLoRA.from_pretrained(release_folder)
    lora = hl.generate_id_lora(*random_features(1))
    stem = SMALL_MODULES[1].name
    assert list(lora)[:3] == [f"{SMALL_MODULES[0].name}_to_q.lora_down.weight",
                              f"{SMALL_MODULES[0].name}_to_q.lora_up.weight",
                              f"{SMALL_MODULES[0].name}_to_q.alpha"]
    assert lora[f"{stem}_to_k.lora_down.weight"].shape == (8, 2048)
    assert lora[f"{stem}_to_out_0.lora_up.weight"].shape == (640, 8)
    assert float(lora[f"{stem}_to_v.alpha"]) == 4.0
    assert len(lora) == 3 * 4 * len(SMALL_MODULES)


def test_photos_are_averaged_before_normalisation(release_folder):
    hl = HyperLoRA.from_pretrained(release_folder)
    arcface, clip = random_features(3, seed=11)
    per_photo = torch.stack([hl.resampler(hl.id_projector(arcface[i:i + 1]), clip[i:i + 1])[0] for i in range(3)])
    mean = per_photo.mean(0)
    expected = mean / torch.sqrt((mean**2).sum(-1, keepdim=True) + 1e-8)
    torch.testing.assert_close(hl.coefficients(arcface, clip), expected, rtol=1e-5, atol=1e-6)
    # averaging normalised per-photo coefficients would give something else
    normalised = per_photo / per_photo.norm(dim=-1, keepdim=True)
    assert not torch.allclose(normalised.mean(0), expected, atol=1e-3)


def test_photo_weights_select_and_mix(release_folder):
    hl = HyperLoRA.from_pretrained(release_folder)
    arcface, clip = random_features(3, seed=12)
    only_first = hl.coefficients(arcface, clip, weights=[1, 0, 0])
    torch.testing.assert_close(only_first, hl.coefficients(arcface[:1], clip[:1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hl.coefficients(arcface, clip, weights=[2, 2, 2]), hl.coefficients(arcface, clip))
