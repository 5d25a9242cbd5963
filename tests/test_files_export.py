"""files/export.py: a saved LoRA keeps its tensors, carries its metadata and never replaces a file."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from checkpoints import random_features
from hyperlora_core import HyperLoRA, TRIGGER_WORDS, lora_metadata, save_lora


def test_saved_lora_has_metadata_and_same_tensors(release_folder, tmp_path):
    hl = HyperLoRA.from_pretrained(release_folder, dtype=torch.float16)
    lora = hl.generate_id_lora(*random_features(2))
    path = save_lora(lora, tmp_path / "me.safetensors",
                     lora_metadata(lora, source=hl.source, num_photos=2))
    back = load_file(str(path))
    assert set(back) == set(lora) and all(torch.equal(back[k], lora[k]) for k in lora)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["hyperlora.trigger_words"] == TRIGGER_WORDS
    assert meta["hyperlora.source_checkpoint"] == release_folder.name
    assert meta["hyperlora.num_photos"] == "2"
    assert meta["ss_network_dim"] == "8" and meta["ss_network_alpha"] == "4.0"


def test_save_never_overwrites(tmp_path):
    target = tmp_path / "mine.safetensors"
    target.write_bytes(b"precious")
    with pytest.raises(Exception, match="already exists and will not be overwritten"):
        save_lora({"a.alpha": torch.tensor(1.0)}, target)
    assert target.read_bytes() == b"precious"
