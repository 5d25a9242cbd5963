"""The node cases of the bad-input sweep (issue 15): missing or wrong inputs name the input and what to
connect; Save never writes outside the output folder, through links included; a NaN LoRA is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from test_nodes import FakeClip, FakePatcher, _identity, fake_comfy, loaded, nodes, pack, tiny_release  # noqa: F401


def _node(pack, node_id):
    return nodes(pack)[node_id]


def _error(pack):
    return pack.hyperlora_core.HyperLoRAError


@pytest.fixture
def id_lora(pack, loaded):
    return _node(pack, "HLS_GenerateLoRA").execute(loaded, _identity(pack))[0]


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# -- misused inputs --------------------------------------------------------------------------------

def test_generate_without_identity_names_the_input_and_what_to_connect(pack, loaded):
    with pytest.raises(_error(pack), match=r"input 'identity' needs a HYPERLORA_IDENTITY but got nothing.*"
                                           r"connect the output of 'HyperLoRA ID Embedding'"):
        _node(pack, "HLS_GenerateLoRA").execute(loaded, None)


def test_generate_given_the_wrong_objects(pack, loaded):
    with pytest.raises(_error(pack), match=r"input 'hyperlora' needs a HYPERLORA_MODEL but got a str.*'Load HyperLoRA'"):
        _node(pack, "HLS_GenerateLoRA").execute("tiny", _identity(pack))
    with pytest.raises(_error(pack), match=r"input 'identity' .* got a dict"):
        _node(pack, "HLS_GenerateLoRA").execute(loaded, {"arcface": None})


@pytest.mark.parametrize("model, found", [(None, "nothing"), ("sdxl.safetensors", "a str"), (torch.zeros(1), "a Tensor")])
def test_apply_given_something_that_is_not_a_model(pack, fake_comfy, id_lora, model, found):
    with pytest.raises(_error(pack), match=rf"input 'model' needs a MODEL .* got {found}.*connect the MODEL output "
                                           r"of 'Load Checkpoint'"):
        _node(pack, "HLS_ApplyLoRA").execute(model, id_lora, 0.85)


def test_apply_given_something_that_is_not_a_lora(pack, fake_comfy):
    model = FakePatcher(fake_comfy.model_base.SDXL())
    with pytest.raises(_error(pack), match=r"input 'lora' needs a LORA_MODEL .* got a str.*id_lora output"):
        _node(pack, "HLS_ApplyLoRA").execute(model, "my_lora", 0.85)
    with pytest.raises(_error(pack), match=r"input 'base_lora' needs a LORA_MODEL .* got a list"):
        _node(pack, "HLS_ApplyLoRA").execute(model, {"a.alpha": torch.tensor(1.0)}, 0.85, base_lora=[1])
    with pytest.raises(_error(pack), match=r"input 'strength' needs a number but got a str"):
        _node(pack, "HLS_ApplyLoRA").execute(model, {"a.alpha": torch.tensor(1.0)}, "0.85")


def test_apply_refuses_a_nan_lora(pack, fake_comfy, id_lora):
    model = FakePatcher(fake_comfy.model_base.SDXL())
    key = next(iter(id_lora))
    id_lora[key] = torch.full_like(id_lora[key], float("nan"))
    with pytest.raises(_error(pack), match=r"ID-LoRA \(made from the checkpoint 'tiny'\) holds NaN"):
        _node(pack, "HLS_ApplyLoRA").execute(model, id_lora, 0.85)
    assert model.patches == {}


def test_save_lora_without_a_lora(pack, fake_comfy):
    with pytest.raises(_error(pack), match=r"input 'lora' needs a LORA_MODEL .* got nothing"):
        _node(pack, "HLS_SaveLoRA").execute(None, "loras/x")


def test_prompt_given_the_wrong_clip_or_text(pack):
    with pytest.raises(_error(pack), match=r"input 'clip' needs a CLIP .* got a str.*'Load Checkpoint'"):
        _node(pack, "HLS_TriggerPrompt").execute("clip", "a photo")
    with pytest.raises(_error(pack), match=r"input 'text' needs text but got a int"):
        _node(pack, "HLS_TriggerPrompt").execute(FakeClip(), 5)


def test_identity_nodes_given_nothing(pack, fake_comfy):
    with pytest.raises(_error(pack), match=r"input 'faces' needs HYPERLORA_FACES but got nothing.*'Load Faces"):
        _node(pack, "HLS_IDEmbedding").execute(None, object())
    with pytest.raises(_error(pack), match=r"input 'identity' needs a HYPERLORA_IDENTITY but got a str"):
        _node(pack, "HLS_SaveIdentity").execute("alice", "hyperlora_identities/alice")
    with pytest.raises(_error(pack), match=r"Identity 1 to blend is NoneType"):
        _node(pack, "HLS_BlendIdentities").execute(None, 0.5, _identity(pack), 0.5)
    with pytest.raises(_error(pack), match=r"input 'identity_name' needs the name of a saved identity file"):
        _node(pack, "HLS_LoadIdentity").execute(None)


def test_load_hyperlora_without_a_name(pack, fake_comfy):
    with pytest.raises(_error(pack), match=r"input 'hyperlora_name' needs the name of a checkpoint folder.*"
                                           r"bytedance-research/HyperLoRA"):
        _node(pack, "HLS_LoadHyperLoRA").execute(None, "auto", "auto")


def test_load_faces_given_a_string_as_images(pack, fake_comfy):
    with pytest.raises(_error(pack), match=r"input 'images' needs an IMAGE batch but got a str.*'Load Image'"):
        _node(pack, "HLS_LoadFaces").execute("photo.jpg", "antelopev2")
    with pytest.raises(_error(pack), match=r"input 'images_2' needs an IMAGE batch but got a Tensor"):
        _node(pack, "HLS_LoadFaces").execute(torch.zeros(1, 64, 64, 3), "antelopev2", images_2=torch.zeros(3))


# -- output names ----------------------------------------------------------------------------------

def test_save_through_a_symlink_inside_the_output_folder_is_refused(pack, fake_comfy, id_lora):
    outside = fake_comfy.root / "elsewhere"
    outside.mkdir()
    output = Path(fake_comfy.fp.output_dir)
    (output / "loras").symlink_to(outside, target_is_directory=True)
    with pytest.raises(_error(pack), match="points outside ComfyUI's output folder.*links"):
        _node(pack, "HLS_SaveLoRA").execute(id_lora, "loras/person")
    with pytest.raises(_error(pack), match="points outside ComfyUI's output folder"):
        _node(pack, "HLS_SaveIdentity").execute(_identity(pack), "loras/deeper/alice")
    assert _all_files(outside) == [] and not (outside / "deeper").exists()


def test_a_link_named_like_the_next_file_is_skipped_never_followed(pack, fake_comfy, id_lora):
    outside = fake_comfy.root / "victim.safetensors"
    output = Path(fake_comfy.fp.output_dir)
    (output / "loras").mkdir()
    (output / "loras" / "person_00001_.safetensors").symlink_to(outside)  # a dangling link
    saved = _node(pack, "HLS_SaveLoRA").execute(id_lora, "loras/person")[0]
    assert saved == "loras/person_00002_.safetensors"
    assert not outside.exists()


def test_a_symlinked_output_folder_itself_is_fine(pack, fake_comfy, id_lora):
    real = fake_comfy.root / "big_disk"
    real.mkdir()
    link = fake_comfy.root / "linked_output"
    link.symlink_to(real, target_is_directory=True)
    fake_comfy.fp.output_dir = str(link)
    saved = _node(pack, "HLS_SaveLoRA").execute(id_lora, "loras/person")[0]
    assert (real / saved).is_file()


@pytest.mark.parametrize("prefix, message", [
    ("loras/bad\x00name", r"NUL byte.*use letters, digits"),
    ("loras/" + "n" * 250, r"at most 235 \(the counter and '.safetensors' are added\)"),
    ("x" * 300 + "/person", r"a folder name may have at most 255"),
    (42, "filename_prefix must be text"),
])
def test_bad_prefix_names_say_what_is_allowed(pack, fake_comfy, id_lora, prefix, message):
    with pytest.raises(_error(pack), match=message):
        _node(pack, "HLS_SaveLoRA").execute(id_lora, prefix)
    assert _all_files(Path(fake_comfy.fp.output_dir)) == []


def test_save_refuses_a_nan_lora_and_writes_nothing(pack, fake_comfy, id_lora):
    key = next(k for k in id_lora if k.endswith("lora_down.weight"))
    id_lora[key] = id_lora[key].clone().fill_(float("inf"))
    with pytest.raises(_error(pack), match="holds NaN or infinite values.*not used"):
        _node(pack, "HLS_SaveLoRA").execute(id_lora, "loras/person")
    assert _all_files(Path(fake_comfy.fp.output_dir)) == []


def test_save_into_an_output_subfolder_that_is_a_file(pack, fake_comfy, id_lora):
    (Path(fake_comfy.fp.output_dir) / "loras").write_text("not a folder")
    with pytest.raises(_error(pack), match="is a file, not a folder|not a directory"):
        _node(pack, "HLS_SaveLoRA").execute(id_lora, "loras/person")
    assert os.path.isfile(Path(fake_comfy.fp.output_dir) / "loras")
