"""Base-LoRA features only on request (node input and command-line flag), the batched CLIP pass, and
the node chain against the command line on the same photos and tiny models."""

from __future__ import annotations

import importlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from checkpoints import make_release_folder
from clip_vision_standin import StandInClipVision
from hyperlora_core import IdentityFeatures, cli
from hyperlora_core.features.clip import ClipVisionEncoder
from node_fixtures import FakeClipVision, _photo, face_models, fake_comfy, nodes, pack, tiny_antelopev2  # noqa: F401
from pack import PACK
from tiny_clip import make_tiny_clip

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "clip_vit_large_14")


def _faces(pack, n: int):
    photos = torch.cat([_photo(True, seed) for seed in range(n)])
    faces, _ = nodes(pack)["HLS_LoadFaces"].execute(photos, "antelopev2", "CPU", "largest", True, False, "error")
    return faces


def test_the_new_input_is_an_optional_boolean_after_the_old_ones(pack):
    spec = nodes(pack)["HLS_IDEmbedding"].INPUT_TYPES()
    assert list(spec["required"]) == ["faces", "clip_vision"]  # saved workflows keep their widget order
    kind, options = spec["optional"]["base_lora_features"]
    assert kind == "BOOLEAN" and options["default"] is False and options["tooltip"]


def test_base_lora_features_are_made_only_when_asked(pack, fake_comfy, face_models):
    faces = _faces(pack, 3)
    clip = FakeClipVision()
    (identity,) = nodes(pack)["HLS_IDEmbedding"].execute(faces, clip)  # an old workflow: no value, the default
    assert identity.base_clip_tokens is None
    assert [shape[0] for shape, _ in clip.seen] == [3]  # one CLIP pass, all photos in one batch

    clip = FakeClipVision()
    (with_base,) = nodes(pack)["HLS_IDEmbedding"].execute(faces, clip, base_lora_features=True)
    assert tuple(with_base.base_clip_tokens.shape) == (3, 257, 1024)
    assert [shape[0] for shape, _ in clip.seen] == [3, 3]  # the face crops, then the Base-LoRA crops
    torch.testing.assert_close(with_base.clip_tokens, identity.clip_tokens)


def test_a_base_lora_from_an_identity_without_its_features_is_empty_and_says_so(pack, fake_comfy, face_models,
                                                                                 caplog):
    make_release_folder(Path(fake_comfy.fp.models_dir) / "hyperlora" / "with_base", with_base=True,
                        dim=64, depth=1, inner=64, hyper_dim=16, seed=9)
    (handle,) = nodes(pack)["HLS_LoadHyperLoRA"].execute("with_base", "float32", "cpu")
    faces = _faces(pack, 2)
    (identity,) = nodes(pack)["HLS_IDEmbedding"].execute(faces, FakeClipVision())
    with caplog.at_level(logging.WARNING):
        id_lora, base = nodes(pack)["HLS_GenerateLoRA"].execute(handle, identity)
    assert len(id_lora) > 0 and len(base) == 0
    assert any("Base-LoRA" in r.getMessage() and "empty" in r.getMessage() for r in caplog.records)

    (identity,) = nodes(pack)["HLS_IDEmbedding"].execute(faces, FakeClipVision(), base_lora_features=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _, base = nodes(pack)["HLS_GenerateLoRA"].execute(handle, identity)
    assert len(base) == len(id_lora) and not caplog.records


def test_batched_clip_pass_equals_the_per_photo_pass(pack, tiny_clip, monkeypatch):
    identity_mod = importlib.import_module(f"{PACK}.nodes.identity")
    rng = np.random.default_rng(4)
    crops = [rng.integers(0, 256, (230 + 7 * i, 230 + 7 * i, 3), dtype=np.uint8) for i in range(6)]
    clip = StandInClipVision(tiny_clip)
    batched = identity_mod.clip_tokens(clip, crops, "face")
    assert clip.calls == [4, 2]
    monkeypatch.setattr(identity_mod, "CLIP_BATCH", 1)
    single = identity_mod.clip_tokens(clip, crops, "face")
    assert clip.calls[2:] == [1] * 6
    # Nothing mixes the photos of a batch; only the matrix kernels' blocking may differ.
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)

    encoder = clip.encoder
    torch.testing.assert_close(encoder.encode_crops(crops, batch_size=4), encoder.encode_crops(crops, batch_size=1),
                               atol=1e-5, rtol=1e-5)


# -- the command line ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_antelopev2, tiny_clip):
    root = tmp_path_factory.mktemp("models")
    make_release_folder(root / "hyperlora" / "sdxl_hyper_id_lora_v1_fidelity", dim=64, depth=1, inner=64,
                        hyper_dim=16, seed=5)
    shutil.copytree(tiny_clip, root / "hyper_lora" / "clip_vit" / "clip_vit_large_14")
    shutil.copytree(tiny_antelopev2, root / "insightface" / "models" / "antelopev2")
    return root


def _photo_files(folder: Path, n: int) -> list[Path]:
    paths = []
    for seed in range(n):
        path = folder / f"photo{seed}.png"
        Image.fromarray(_photo(True, seed)[0].mul(255).round().byte().numpy()).save(path)
        paths.append(path)
    return paths


def test_command_line_makes_base_lora_features_only_with_the_flag(models, tmp_path, capsys):
    photos = _photo_files(tmp_path, 2)
    common = ("generate", "--photos", *photos, "--models-dir", models)
    plain, flagged = tmp_path / "plain.safetensors", tmp_path / "flagged.safetensors"
    assert cli.main(list(map(str, (*common, "--out", tmp_path / "a.safetensors", "--save-identity", plain)))) == 0
    assert IdentityFeatures.load(plain).base_clip_tokens is None
    assert cli.main(list(map(str, (*common, "--out", tmp_path / "b.safetensors", "--save-identity", flagged,
                                   "--base-lora-features")))) == 0
    identity = IdentityFeatures.load(flagged)
    torch.testing.assert_close(identity.clip_tokens, IdentityFeatures.load(plain).clip_tokens)
    assert tuple(identity.base_clip_tokens.shape) == (2, 257, 1024)
    assert not torch.allclose(identity.base_clip_tokens, identity.clip_tokens)

    capsys.readouterr()
    code = cli.main(list(map(str, (*common, "--out", tmp_path / "c.safetensors", "--base-lora-features"))))
    assert code != 0 and "--save-identity" in capsys.readouterr().err
    assert not (tmp_path / "c.safetensors").exists()


def test_the_node_chain_and_the_command_line_give_the_same_lora(pack, fake_comfy, models, tmp_path):
    photos = _photo_files(tmp_path, 2)
    out = tmp_path / "cli.safetensors"
    assert cli.main(list(map(str, ("generate", "--photos", *photos, "--models-dir", models, "--out", out)))) == 0

    shutil.copytree(models / "insightface", Path(fake_comfy.fp.models_dir) / "insightface")
    shutil.copytree(models / "hyperlora" / "sdxl_hyper_id_lora_v1_fidelity",
                    Path(fake_comfy.fp.models_dir) / "hyperlora" / "fidelity")
    images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).float().div(255)[None] for p in photos]
    faces, _ = nodes(pack)["HLS_LoadFaces"].execute(images[0], "antelopev2", "CPU", "largest", True, False,
                                                         "error", images_2=images[1])
    (identity,) = nodes(pack)["HLS_IDEmbedding"].execute(
        faces, StandInClipVision(models / "hyper_lora" / "clip_vit" / "clip_vit_large_14"))
    (handle,) = nodes(pack)["HLS_LoadHyperLoRA"].execute("fidelity", "float16", "cpu")
    id_lora, _ = nodes(pack)["HLS_GenerateLoRA"].execute(handle, identity)

    written = load_file(str(out))
    assert set(written) == set(id_lora)
    for key, tensor in written.items():
        assert id_lora[key].dtype == tensor.dtype, key
        # One float16 rounding step: the same numbers may be summed in another order.
        torch.testing.assert_close(id_lora[key], tensor, rtol=2**-10, atol=1e-5, msg=key)
