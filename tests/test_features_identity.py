"""features/identity.py: identity files round-trip, blends mix at coefficient level, and bad identity
files or parts give a message that says what to do."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from checkpoints import random_features
from damaged_files import legacy_pickle as _legacy_pickle
from hyperlora_core import HyperLoRA, IdentityFeatures, InputError


def test_identity_file_round_trip_gives_same_lora(release_folder, tmp_path):
    hl = HyperLoRA.from_pretrained(release_folder)
    arcface, clip = random_features(2, seed=4)
    identity = IdentityFeatures(arcface, clip, sources=["a.jpg", "b.jpg"])
    back = IdentityFeatures.load(identity.save(tmp_path / "me.hlid.safetensors"))
    assert back.sources == ["a.jpg", "b.jpg"]
    a = hl.generate_id_lora(identity.arcface, identity.clip_tokens, identity.weights)
    b = hl.generate_id_lora(back.arcface, back.clip_tokens, back.weights)
    assert list(a) == list(b)
    for key in a:  # the file keeps float32 features; kernels may differ in the last bit
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=2e-6)


def test_blend_mixes_at_coefficient_level(release_folder):
    hl = HyperLoRA.from_pretrained(release_folder)
    a = IdentityFeatures(*random_features(2, seed=21))
    b = IdentityFeatures(*random_features(1, seed=22))
    mix = IdentityFeatures.blend([(a, 0.75), (b, 0.25)])
    assert mix.num_photos == 3
    torch.testing.assert_close(mix.weights, torch.tensor([0.375, 0.375, 0.25]))
    per = [hl.resampler(hl.id_projector(x.arcface), x.clip_tokens).mean(0) for x in (a, b)]
    mean = 0.75 * per[0] + 0.25 * per[1]
    torch.testing.assert_close(hl.coefficients(mix.arcface, mix.clip_tokens, mix.weights),
                               mean / torch.sqrt((mean**2).sum(-1, keepdim=True) + 1e-8), rtol=1e-5, atol=1e-6)
    only_a = IdentityFeatures.blend([(a, 1.0), (b, 0.0)])
    assert only_a.num_photos == 2


# -- bad identity files and parts ----------------------------------------------------------------


def _identity() -> IdentityFeatures:
    arcface, clip = random_features(2)
    return IdentityFeatures(arcface=arcface, clip_tokens=clip, sources=["a.jpg", "b.jpg"])


def test_pickle_in_the_identities_folder_is_refused_with_advice(tmp_path):
    path = tmp_path / "person.safetensors"
    _legacy_pickle(path)
    with pytest.raises(InputError, match="is a Python pickle.*not loaded.*Save the identity again"):
        IdentityFeatures.load(path)


def test_identity_with_int8_tensor_is_refused(tmp_path):
    path = _identity().save(tmp_path / "p.safetensors")
    with open(path, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    state = load_file(str(path))
    state["arcface"] = (state["arcface"] * 100).to(torch.int8)
    path.unlink()
    save_file(state, str(path), metadata=meta)
    with pytest.raises(InputError, match="'arcface' is stored as int8.*float16, bfloat16 or float32.*Save the identity"):
        IdentityFeatures.load(path)


def test_identity_whose_sources_are_not_json_loads_with_a_warning(tmp_path, caplog):
    path = _identity().save(tmp_path / "p.safetensors")
    state = load_file(str(path))
    path.unlink()
    save_file(state, str(path), metadata={"format": "hyperlora-identity/1", "sources": "{not json"})
    with caplog.at_level(logging.WARNING):
        identity = IdentityFeatures.load(path)
    assert identity.sources == ["photo 0", "photo 1"]
    assert "not a JSON list of names" in caplog.text


def test_identity_with_nan_is_not_saved(tmp_path):
    identity = _identity()
    identity.clip_tokens[1, 2, 3] = float("nan")
    with pytest.raises(InputError, match="clip_tokens holds NaN.*not saved"):
        identity.save(tmp_path / "p.safetensors")
    assert not list(tmp_path.iterdir())


def test_blend_of_something_that_is_not_an_identity():
    with pytest.raises(InputError, match="Identity 2 to blend is str.*connect"):
        IdentityFeatures.blend([(_identity(), 1.0), ("alice", 1.0)])
    with pytest.raises(InputError, match="Blend weight 1 must be a finite number"):
        IdentityFeatures.blend([(_identity(), "half")])


def test_identity_of_wrong_kind_of_parts():
    with pytest.raises(InputError, match="arcface must be a tensor, got list"):
        IdentityFeatures(arcface=[[0.0] * 512], clip_tokens=torch.zeros(1, 257, 1024))
    arcface, clip = random_features(1)
    with pytest.raises(InputError, match="weights must be numbers"):
        IdentityFeatures(arcface=arcface, clip_tokens=clip, weights="1")
