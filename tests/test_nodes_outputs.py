"""Where the Save nodes write (nodes/outputs.py): inside ComfyUI's output folder only, never through a
link that leads out of it, never over an existing file, with filename_prefix errors that say what is
allowed; the saved file's name is shown on the node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from node_fixtures import (_all_files, _error, _identity, _node, fake_comfy, id_lora, loaded, nodes, pack,  # noqa: F401
                           tiny_release)


def test_save_nodes_show_the_saved_file_on_themselves(pack, loaded, fake_comfy):
    id_lora, _ = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack))
    out = nodes(pack)["HLS_SaveLoRA"].execute(id_lora, "loras/person")
    assert out.result == ("loras/person_00001_.safetensors",)
    assert out.ui.as_dict()["text"] == ("loras/person_00001_.safetensors",)
    out = nodes(pack)["HLS_SaveIdentity"].execute(_identity(pack), "hyperlora_identities/alice")
    assert out.result == ("hyperlora_identities/alice_00001_.safetensors",)
    assert out.ui.as_dict()["text"] == ("hyperlora_identities/alice_00001_.safetensors",)
    assert (Path(fake_comfy.fp.output_dir) / out.result[0]).is_file()


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/abs", "loras/../../x", ""])
def test_save_refuses_prefix_outside_output_folder(pack, loaded, fake_comfy, prefix):
    id_lora, _ = nodes(pack)["HLS_GenerateLoRA"].execute(loaded, _identity(pack))
    with pytest.raises(pack.hyperlora_core.HyperLoRAError, match="output folder|empty"):
        nodes(pack)["HLS_SaveLoRA"].execute(id_lora, prefix)
    assert not list(Path(fake_comfy.fp.output_dir).rglob("*.safetensors"))
    assert not (fake_comfy.root / "escape_00001_.safetensors").exists()


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


def test_save_into_an_output_subfolder_that_is_a_file(pack, fake_comfy, id_lora):
    (Path(fake_comfy.fp.output_dir) / "loras").write_text("not a folder")
    with pytest.raises(_error(pack), match="is a file, not a folder|not a directory"):
        _node(pack, "HLS_SaveLoRA").execute(id_lora, "loras/person")
    assert os.path.isfile(Path(fake_comfy.fp.output_dir) / "loras")
