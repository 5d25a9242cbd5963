"""files/sniff.py: what a file is decides, read from its structure and not its first bytes alone.

What each kind of wrong file is called in the messages: tests/test_model_checkpoint.py (checkpoints),
test_features_identity.py, test_features_clip.py and test_files_images.py."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from hyperlora_core.files import sniff


def test_a_safetensors_header_that_looks_like_a_pickle_start_is_still_read(tmp_path):
    """A header of 640 bytes begins with 0x80 0x02, like a pickle: the structure decides, not the first bytes."""
    path = tmp_path / "x.safetensors"
    for pad in range(0, 700):
        save_file({"w": torch.zeros(2)}, str(path), metadata={"p": "x" * pad})
        if path.read_bytes()[:2] == b"\x80\x02":
            break
    else:
        pytest.skip("no padding gave a header of 0x280 bytes")
    assert sniff.file_problem(path) is None
