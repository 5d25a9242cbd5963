"""train/lora_inject.py: a LoRA of its own for each sample of a batch, on the UNet's attention modules in
the release's order, on the toy UNet and through a diffusers UNet shaped like SDXL's (skipped without
diffusers)."""

from __future__ import annotations

import pytest
import torch

from hyperlora_core.train import Trainer
from hyperlora_core.train.lora_inject import LoRAState, PerSampleLoRALinear, find_attention_modules
from hyperlora_core.train.toy import ToyBackbone
from tiny_training import cache, one_thread, sdxl_shaped_unet, tiny_config  # noqa: F401


def test_each_sample_in_a_batch_gets_its_own_lora():
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    state = LoRAState()
    layer = PerSampleLoRALinear(base, "x", state)
    down, up, scale = torch.randn(3, 6, 2), torch.randn(3, 2, 5), torch.tensor([0.5, 0.0, 2.0])
    state.factors = {"x": [(down, up, scale)]}
    x = torch.randn(3, 7, 6)
    out = layer(x)
    for n in range(3):
        merged = base.weight + scale[n] * (down[n] @ up[n]).T  # the LoRA of sample n merged on its own
        torch.testing.assert_close(out[n], x[n] @ merged.T + base.bias)
    state.factors = {"x": [(down[:1], up[:1], scale[:1])]}  # one LoRA for a whole batch (sampling with CFG)
    torch.testing.assert_close(layer(x)[2], x[2] @ (base.weight + 0.5 * (down[0] @ up[0]).T).T + base.bias)


def test_targets_are_the_unets_attention_modules_in_release_order():
    targets = find_attention_modules(ToyBackbone().unet)
    assert [t.path.split(".")[0] for t in targets] == ["down_blocks"] * 2 + ["mid_block"] * 2 + ["up_blocks"] * 2
    first, second = targets[0].spec, targets[1].spec
    assert first.name == "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1"
    assert (first.hidden_size, first.cross_attention_dim) == (32, None)
    assert (second.hidden_size, second.cross_attention_dim) == (32, 48)


# -- a diffusers UNet shaped like SDXL's (skipped without diffusers) ------------------------------


class DiffusersUNetBackbone(ToyBackbone):
    """The toy text encoder and 'VAE' around a diffusers UNet2DConditionModel with SDXL's blocks."""

    def __init__(self):
        pytest.importorskip("diffusers")
        super().__init__(context_dim=64)
        self.unet = sdxl_shaped_unet()
        self.description = "SDXL-shaped diffusers UNet"

    def predict(self, noisy, timesteps, condition):
        added = {"text_embeds": condition["pooled"], "time_ids": torch.zeros(noisy.shape[0], 6)}
        return self.unet(noisy, timesteps, encoder_hidden_states=condition["context"], added_cond_kwargs=added).sample


@pytest.fixture(scope="module")
def sdxl_shaped():
    return DiffusersUNetBackbone()


def test_an_sdxl_unet_gives_the_released_module_list_in_order(sdxl_shaped):
    from hyperlora_core.model.checkpoint import sdxl_attention_modules

    targets = find_attention_modules(sdxl_shaped.unet)
    assert [t.spec.name for t in targets] == [m.name for m in sdxl_attention_modules()]
    assert [t.spec.hidden_size * 20 for t in targets] == [m.hidden_size for m in sdxl_attention_modules()]
    assert [t.spec.cross_attention_dim is None for t in targets] == [
        m.cross_attention_dim is None for m in sdxl_attention_modules()]


def test_per_sample_lora_through_diffusers_attention_and_its_gradient_checkpointing(tmp_path, sdxl_shaped, cache):
    from hyperlora_core.train import lora_inject

    lora_inject.remove(sdxl_shaped.unet)
    config = tiny_config(tmp_path, cache, training={"max_steps": 1})
    trainer = Trainer(config, backbone=sdxl_shaped)
    trainer.prepare_data()
    with torch.no_grad():  # a batch of two equals each sample alone with its own LoRA
        batch = trainer.net(torch.nn.functional.normalize(torch.randn(2, 512), dim=-1), torch.randn(2, 257, 64), None)
        x, t = torch.randn(2, 4, 8, 8), torch.tensor([100, 700])
        cond = sdxl_shaped.encode_prompts(["a", "b"], None)

        gen = torch.Generator().manual_seed(0)  # non-zero up factors, so that the LoRA shows
        factors = {k: (d, torch.randn(u.shape, generator=gen) * 0.05) for k, (d, u) in batch["id"].items()}

        def run(rows):
            trainer.lora_state.factors = {k: [(d[rows], u[rows], torch.full((len(rows),), 0.5))]
                                          for k, (d, u) in factors.items()}
            return sdxl_shaped.predict(x[rows], t[rows], {k: v[rows] for k, v in cond.items()})

        both = run([0, 1])
        alone = torch.cat([run([0]), run([1])])
        trainer.lora_state.clear()
        plain = sdxl_shaped.predict(x, t, cond)
    torch.testing.assert_close(both, alone, rtol=1e-4, atol=1e-5)
    assert (both - plain).abs().max() > 1e-3
    for p in trainer.params:
        p.grad = None
    trainer._micro_loss(range(2)).backward()
    grads = [p.grad.clone() for p in trainer.params]
    assert sdxl_shaped.enable_gradient_checkpointing()
    for p in trainer.params:
        p.grad = None
    trainer._micro_loss(range(2)).backward()
    for a, p in zip(grads, trainer.params):
        torch.testing.assert_close(p.grad, a, rtol=1e-4, atol=1e-6)
    lora_inject.remove(sdxl_shaped.unet)
