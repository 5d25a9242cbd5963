"""The refine engine (hyperlora_core.refine) on the toy UNet: it starts from the ID-LoRA exactly, trains
only the LoRA, lowers the loss, and stops with a message on a diverging loss, bad settings, a foreign
LoRA, a cancel or a lack of memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_refine import ToyRefineSetup, random_id_lora

from hyperlora_core.files.export import save_lora
from hyperlora_core.refine import captions_for, loss_weights, refine, training_views
from hyperlora_core.refine.curve import loss_curve_image
from hyperlora_core.refine.engine import Refiner, RefineError, RefineMemoryError
from hyperlora_core.refine.lora import LoRAFormatError, RefinableLoRA, check_id_lora


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy():
    return ToyRefineSetup()


def _output(toy, x=None):
    with torch.no_grad():
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)) if x is None else x
        return toy.predict(x, torch.tensor([500]), toy.views[0].condition)


def test_step_zero_export_equals_the_input_lora_bit_for_bit(toy):
    exported = RefinableLoRA(toy.lora).export()
    assert list(exported) == list(toy.lora)
    for key, tensor in toy.lora.items():
        assert exported[key].dtype == tensor.dtype and exported[key].shape == tensor.shape
        assert torch.equal(exported[key], tensor), key


def test_extra_rank_is_zero_at_step_zero_and_keeps_the_scale(toy):
    lora = RefinableLoRA(toy.lora, extra_rank=3, seed=1)
    exported = lora.export()
    name = lora.layers[0]
    assert exported[f"{name}.lora_down.weight"].shape[0] == 4 + 3
    assert exported[f"{name}.lora_up.weight"].shape[1] == 4 + 3
    assert float(exported[f"{name}.alpha"]) == pytest.approx(2.0 * 7 / 4)
    assert exported[f"{name}.lora_down.weight"][4:].abs().sum() > 0  # small random down, zero up
    assert torch.count_nonzero(exported[f"{name}.lora_up.weight"][:, 4:]) == 0
    for layer in lora.layers:  # the weight delta ComfyUI computes from the file is the input's
        def delta(tensors):
            down, up = tensors[f"{layer}.lora_down.weight"].float(), tensors[f"{layer}.lora_up.weight"].float()
            return up @ down * float(tensors[f"{layer}.alpha"]) / down.shape[0]
        torch.testing.assert_close(delta(exported), delta(toy.lora))


def test_the_attached_lora_changes_the_unet_and_detaching_restores_it(toy):
    plain = _output(toy)
    refiner = Refiner(toy.lora, toy.predict, toy.views, toy.alphas, toy.settings(), toy.attach)
    with torch.no_grad(), toy.attach(refiner.lora):
        patched = _output(toy)
    assert (patched - plain).abs().max() > 1e-4
    torch.testing.assert_close(_output(toy), plain, rtol=0, atol=0)


def test_with_a_fixed_seed_refining_lowers_the_training_loss(toy):
    settings = toy.settings(steps=40, learning_rate=3e-3, extra_rank=2)
    refiner = Refiner(toy.lora, toy.predict, toy.views, toy.alphas, settings, toy.attach)
    probe = list(range(40))  # the samples the run trains on, drawn again
    before = refiner.evaluate(probe)
    with torch.enable_grad(), toy.attach(refiner.lora):
        losses = [refiner.step() for _ in range(settings.steps)]
    after = refiner.evaluate(probe)
    assert after < before * 0.9, (before, after)
    assert len(losses) == 40 and all(np.isfinite(losses))


def test_a_run_is_repeatable_and_changes_only_the_lora(toy):
    unet_before = {k: v.clone() for k, v in toy.unet.state_dict().items()}
    plain = _output(toy)
    first = refine(toy.lora, toy.predict, toy.views, toy.alphas, toy.settings(), toy.attach)
    second = refine(toy.lora, toy.predict, toy.views, toy.alphas, toy.settings(), toy.attach)
    assert first.steps == 5 and first.losses == second.losses
    for key in first.lora:
        assert torch.equal(first.lora[key], second.lora[key])
    changed = [k for k in first.lora if not torch.equal(first.lora[k], toy.lora[k])]
    assert changed and all(k.endswith((".lora_down.weight", ".lora_up.weight")) for k in changed)
    for key, tensor in toy.unet.state_dict().items():  # the UNet is frozen and left as it was
        assert torch.equal(tensor, unet_before[key]), key
    assert not any(p.requires_grad for p in toy.unet.parameters())
    torch.testing.assert_close(_output(toy), plain, rtol=0, atol=0)
    assert not any(m._forward_hooks for m in toy.layers.values())


@pytest.mark.parametrize("extra_rank", [0, 2])
def test_the_saved_file_has_the_input_keys_and_shapes(toy, tmp_path, extra_rank):
    result = refine(toy.lora, toy.predict, toy.views, toy.alphas, toy.settings(steps=2, extra_rank=extra_rank),
                    toy.attach)
    path = save_lora(result.lora, tmp_path / "refined.safetensors")
    saved = load_file(str(path))
    assert list(saved) == list(toy.lora) or set(saved) == set(toy.lora)
    for key, tensor in toy.lora.items():
        shape = list(tensor.shape)
        if key.endswith(".lora_down.weight"):
            shape[0] += extra_rank
        elif key.endswith(".lora_up.weight"):
            shape[1] += extra_rank
        assert list(saved[key].shape) == shape and saved[key].dtype == tensor.dtype, key
    check_id_lora(saved)


def test_a_nan_loss_stops_the_run_with_a_message_and_returns_nothing(toy):
    calls = []

    def predict(noisy, timesteps, condition):
        calls.append(1)
        out = toy.predict(noisy, timesteps, condition)
        return out * float("nan") if len(calls) == 3 else out

    with pytest.raises(RefineError, match="loss became nan at step 3 of 5.*Lower the learning rate"):
        refine(toy.lora, predict, toy.views, toy.alphas, toy.settings(), toy.attach)
    assert not any(m._forward_hooks for m in toy.layers.values())


def test_cancel_stops_cleanly_and_restores_the_layers(toy):
    plain = _output(toy)
    steps = []

    class Interrupted(Exception):
        pass

    def check_cancel():
        if len(steps) == 2:
            raise Interrupted()

    with pytest.raises(Interrupted):
        refine(toy.lora, toy.predict, toy.views, toy.alphas, toy.settings(), toy.attach,
               on_step=lambda step, loss: steps.append(step), check_cancel=check_cancel)
    assert steps == [1, 2]
    torch.testing.assert_close(_output(toy), plain, rtol=0, atol=0)


def test_out_of_memory_names_the_knobs(toy):
    def predict(noisy, timesteps, condition):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(RefineMemoryError, match="lower the resolution.*gradient checkpointing.*fewer steps do not help"):
        refine(toy.lora, predict, toy.views, toy.alphas, toy.settings(), toy.attach)
    assert not any(m._forward_hooks for m in toy.layers.values())


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps must be a whole number from 1"),
    ({"steps": 2.5}, "steps must be a whole number"),
    ({"learning_rate": 1.0}, "learning_rate 1.0 is out of range"),
    ({"learning_rate": 0.0}, "learning_rate 0.0 is out of range"),
    ({"learning_rate": float("nan")}, "learning_rate nan is out of range"),
    ({"face_weight": -1.0}, "face_weight must be from 0"),
    ({"extra_rank": -1}, "extra_rank must be a whole number from 0"),
])
def test_bad_settings_are_refused_before_any_work(toy, change, message):
    with pytest.raises(RefineError if "extra_rank" not in change else Exception, match=message):
        refine(toy.lora, toy.predict, toy.views, toy.alphas, toy.settings(**change), toy.attach)


def test_an_ordinary_lora_is_refused_naming_what_it_has(toy):
    ordinary = dict(toy.lora)
    ordinary["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_ff_net_0_proj.lora_down.weight"] = torch.zeros(4, 8)
    with pytest.raises(LoRAFormatError, match="1 of the 25 layers .* not attention projections .*ff_net_0_proj"):
        check_id_lora(ordinary)
    with pytest.raises(LoRAFormatError, match="text-encoder layers .*lora_te1_text_model"):
        check_id_lora({**toy.lora, "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(1.0)})
    with pytest.raises(LoRAFormatError, match="LyCORIS"):
        check_id_lora({"lora_unet_x_attn1_to_q.hada_w1_a": torch.zeros(2, 2)})
    with pytest.raises(LoRAFormatError, match="empty"):
        check_id_lora({})
    no_alpha = {k: v for k, v in toy.lora.items() if not k.endswith(".alpha")}
    with pytest.raises(LoRAFormatError, match="lacks alpha"):
        check_id_lora(no_alpha)


def test_a_lora_for_another_unet_is_refused(toy):
    other = random_id_lora({"lora_unet_up_blocks_9_attentions_0_transformer_blocks_0_attn1_to_q":
                            torch.nn.Linear(32, 32)})
    with pytest.raises(RefineError, match="1 of the 1 layers .*up_blocks_9.*another base model"):
        refine(other, toy.predict, toy.views, toy.alphas, toy.settings(), toy.attach)


def test_views_are_square_crops_with_mirrors_and_their_face_masks():
    photo = np.zeros((80, 120, 3), np.uint8)
    landmarks = np.stack([np.linspace(70, 90, 106), np.linspace(20, 60, 106)], 1)  # face on the right
    landmarks[::2, 0] = 70
    views = training_views([photo], [landmarks], ["cap"], resolution=32, seed=0, flips=True, small_crops=1)
    assert len(views) == 4 and all(v.pixels.shape == (32, 32, 3) and v.mask.shape == (32, 32) for v in views)
    assert views[0].mask.max() > 0.5
    np.testing.assert_array_equal(views[1].mask, views[0].mask[:, ::-1])
    assert views[1].source.endswith("(mirrored)")
    again = training_views([photo], [landmarks], ["cap"], resolution=32, seed=0)
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(views, again))


def test_captions_start_with_the_trigger_words_one_line_per_photo():
    assert captions_for("", 2) == ["fcsks fxhks fhyks, a photo of a person"] * 2
    assert captions_for("a man outdoors\na man smiling", 3) == [
        "fcsks fxhks fhyks, a man outdoors", "fcsks fxhks fhyks, a man smiling", "fcsks fxhks fhyks, a man smiling"]


def test_face_pixels_weigh_more_and_the_weights_average_one():
    mask = np.zeros((32, 32), np.float32)
    mask[:16] = 1.0
    weights = loss_weights(mask, (4, 4), face_weight=2.0)
    assert weights.shape == (4, 4)
    assert float(weights.mean()) == pytest.approx(1.0)
    assert float(weights[0, 0]) == pytest.approx(3 * float(weights[3, 0]))
    assert torch.equal(loss_weights(mask, (4, 4), 0.0), torch.ones(4, 4))


def test_the_loss_curve_is_a_picture():
    image = loss_curve_image([1.0, 0.8, 0.9, 0.5, 0.4])
    assert image.dtype == np.uint8 and image.shape == (256, 512, 3)
    assert loss_curve_image([]).shape == (256, 512, 3)


def test_refine_on_an_sdxl_shaped_diffusers_unet_through_the_command_line_adapter():
    """The path of the `refine` command: a Backbone's VAE, text encoders with SDXL's size conditioning,
    and forward hooks on the 560 attention projections of a UNet with SDXL's block layout."""
    pytest.importorskip("diffusers")
    from tiny_refine import SDXLShapedBackbone

    from hyperlora_core.refine import PhotoView, RefineSettings, prepare_views
    from hyperlora_core.refine.backbone import backbone_parts
    from hyperlora_core.refine.layers import attention_linears

    backbone = SDXLShapedBackbone()
    layers = attention_linears(backbone.unet)
    assert len(layers) == 560
    lora = random_id_lora(layers, rank=8)
    parts = backbone_parts(backbone, resolution=32)
    rng = np.random.default_rng(0)
    views = [PhotoView(rng.random((32, 32, 3), dtype=np.float32), np.ones((32, 32), np.float32),
                       "fcsks fxhks fhyks, a photo of a person", "p")]
    encoded = prepare_views(views, parts.encode_pixels, parts.encode_caption, 1.0)
    assert backbone.sizes_seen[0].tolist() == [[32, 32, 0, 0, 32, 32]]
    result = refine(lora, parts.predict, encoded, parts.alphas_cumprod,
                    RefineSettings(steps=2, learning_rate=1e-3, extra_rank=1, log_every=0), parts.attach)
    assert set(result.lora) == set(lora) and all(np.isfinite(result.losses))
    key = next(k for k in lora if k.endswith(".lora_up.weight"))
    assert result.lora[key].shape[1] == 9
    assert not any(m._forward_hooks for m in layers.values())
