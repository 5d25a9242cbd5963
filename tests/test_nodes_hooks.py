"""CI tier of the hook node (and the node types the regional nodes exchange with it): declarations and
every check made before ComfyUI is called (no ComfyUI here). What the hooks do in sampling is tested
against the real sampler in tests/comfyui/test_hooks_sampler.py."""

from __future__ import annotations

import pytest
import torch

from pack import load_pack, node_classes

pack = load_pack()
NODES = node_classes(pack)
HyperLoRAError = pack.hyperlora_core.errors.HyperLoRAError


def hyperlora_like_lora(prefix="lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"):
    return {f"{prefix}.lora_down.weight": torch.zeros(4, 8), f"{prefix}.lora_up.weight": torch.zeros(8, 4),
            f"{prefix}.alpha": torch.tensor(4.0)}


def test_nodes_are_registered_with_descriptions_and_tooltips():
    for node_id in ("HLS_LoRAHooks", "HLS_RegionLayout", "HLS_SeveralPeople"):
        cls = NODES[node_id]
        assert cls.DESCRIPTION and cls.CATEGORY == "HyperLoRA Studio"
        spec = cls.INPUT_TYPES()
        for section in spec.values():
            for name, value in section.items():
                assert value[1].get("tooltip"), (node_id, name)
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) and all(cls.OUTPUT_TOOLTIPS)
        assert cls.GET_SCHEMA().display_name.startswith("HyperLoRA ")


def test_hooks_node_speaks_the_core_types():
    assert NODES["HLS_LoRAHooks"].RETURN_TYPES == ["HOOKS"]
    spec = NODES["HLS_LoRAHooks"].INPUT_TYPES()
    assert spec["required"]["lora"][0] == "LORA_MODEL" and spec["required"]["model"][0] == "MODEL"
    assert spec["optional"]["prev_hooks"][0] == "HOOKS"
    people = NODES["HLS_SeveralPeople"].INPUT_TYPES()["optional"]
    assert [people[f"hooks_{i}"][0] for i in range(1, 5)] == ["HOOKS"] * 4
    assert [people[f"region_{i}"][0] for i in range(1, 5)] == ["MASK"] * 4
    assert NODES["HLS_SeveralPeople"].RETURN_TYPES == ["CONDITIONING", "CONDITIONING"]
    assert NODES["HLS_SeveralPeople"].RETURN_NAMES == ["positive", "negative"]


def test_start_at_not_before_end_at_is_refused_before_the_model_is_read():
    with pytest.raises(HyperLoRAError, match="start_at .* must be smaller than end_at"):
        NODES["HLS_LoRAHooks"].execute(object(), hyperlora_like_lora(), 0.85, 0.5, 0.5, 0.0)


def test_lora_that_is_not_hyperloras_is_named():
    check = pack.nodes.hooks.check_hyperlora_lora
    assert check(hyperlora_like_lora(), "ID-LoRA") == [
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"]
    with pytest.raises(HyperLoRAError, match="'lora'.* is not a HyperLoRA LoRA.*Create Hook LoRA"):
        check(hyperlora_like_lora("lora_unet_input_blocks_0_0_proj"), "ID-LoRA (input 'lora')")
    with pytest.raises(HyperLoRAError, match="empty"):
        check({}, "ID-LoRA")
    with pytest.raises(HyperLoRAError, match="not a key of a kohya LoRA"):
        check({"model.diffusion_model.x.weight": torch.zeros(1)}, "ID-LoRA")
    with pytest.raises(HyperLoRAError, match="not a LoRA"):
        check(torch.zeros(3), "ID-LoRA")
