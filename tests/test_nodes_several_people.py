"""CI tier of 'HyperLoRA Region Layout' and 'HyperLoRA Several People': the masks, and every check made on
the regions and identities before ComfyUI is called (no ComfyUI here)."""

from __future__ import annotations

import logging

import pytest
import torch

from pack import load_pack, node_classes

pack = load_pack()
NODES = node_classes(pack)
HyperLoRAError = pack.hyperlora_core.errors.HyperLoRAError
LATENT = {"samples": torch.zeros(1, 4, 16, 24)}  # a 192 x 128 picture


def test_layout_node_outputs_four_comfyui_masks():
    out = NODES["HLS_RegionLayout"].execute("left | middle | right", 192, 128, 0, "")
    assert [tuple(m.shape) for m in out] == [(1, 128, 192)] * 4
    torch.testing.assert_close(out[0] + out[1] + out[2], torch.ones(1, 128, 192))
    assert out[3].eq(0).all()


def people(**pairs):
    return NODES["HLS_SeveralPeople"]._people(pairs, LATENT)


def halves():
    return NODES["HLS_RegionLayout"].execute("left | right", 192, 128, 0, "")[:2]


def test_regions_are_fitted_to_the_latent_and_the_resize_is_logged(caplog):
    left, right = halves()
    with caplog.at_level(logging.INFO):
        result = people(hooks_1="A", region_1=left, hooks_2="B", region_2=right)
    assert [h for h, _, _ in result] == ["A", "B"]
    assert [tuple(m.shape) for _, m, _ in result] == [(16, 24)] * 2
    assert result[0][1][:, :12].eq(1).all() and result[0][1][:, 12:].eq(0).all()
    assert "region_1 resized from 192 x 128 to the latent's 24 x 16" in caplog.text


def test_mask_of_another_aspect_ratio_is_stretched_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        people(hooks_1="A", region_1=torch.ones(1, 64, 64))
    assert "region_1 is 64 x 64 but the latent is 24 x 16" in caplog.text


def test_more_identities_than_regions_or_the_reverse_names_the_input():
    left, right = halves()
    with pytest.raises(HyperLoRAError, match="hooks_2 has no region: more identities than regions.*region_2"):
        people(hooks_1="A", region_1=left, hooks_2="B")
    with pytest.raises(HyperLoRAError, match="region_2 has no identity: more regions than identities.*hooks_2"):
        people(hooks_1="A", region_1=left, region_2=right)
    with pytest.raises(HyperLoRAError, match="No person given"):
        people()
    with pytest.raises(HyperLoRAError, match="positive_3 is connected"):
        people(hooks_1="A", region_1=left, positive_3=[])


def test_empty_or_vanishing_mask_is_refused():
    with pytest.raises(HyperLoRAError, match="region_1 is empty"):
        people(hooks_1="A", region_1=torch.zeros(1, 128, 192))
    speck = torch.zeros(1, 1280, 1920)
    speck[0, 0, 0] = 1.0
    with pytest.raises(HyperLoRAError, match="region_1 covers too few pixels"):
        people(hooks_1="A", region_1=speck)


def test_latent_must_be_a_latent():
    with pytest.raises(HyperLoRAError, match="latent"):
        NODES["HLS_SeveralPeople"]._people({"hooks_1": "A", "region_1": torch.ones(1, 8, 8)}, {"x": 1})
