"""Hooks and regions through ComfyUI's real sampler (in this process, CPU, the tiny SDXL UNet).

- Two people: with hard left/right regions, one sampling step gives in the left half what identity A's
  hook over the whole picture gives, and in the right half identity B's.
- Steps: with start_at 0.5 the steps before the half are the un-hooked model's, and later ones are not.
- Strength 0 changes nothing; a hook at strength s equals 'Apply HyperLoRA' at s.
- Bad inputs (non-SDXL MODEL, a LoRA that is not HyperLoRA's) are refused with a message.

One Euler step from sigma_max to 0 returns the model's (CFG-combined) prediction of the clean latent,
so comparing output latents compares predictions pixel by pixel.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from hls_comfy import COMFYUI_DIR, ROOT, TEST_PACK
from pack import load_pack, node_classes

LATENT = (1, 4, 16, 16)  # a 128 x 128 picture
CFG = 3.0
RANK = 4


@pytest.fixture(scope="module")
def comfy():
    if COMFYUI_DIR not in sys.path:
        sys.path.insert(0, COMFYUI_DIR)
    from comfy.cli_args import args
    args.cpu = True  # before comfy.model_management is imported
    import comfy.hooks
    import comfy.sample
    import comfy.samplers
    return comfy


@pytest.fixture(scope="module")
def pack(comfy):
    return load_pack("hyperlora_studio_hooks_test", ROOT)


@pytest.fixture(scope="module")
def test_pack(comfy):
    return load_pack("hls_test_pack_hooks_test", TEST_PACK)


@pytest.fixture(scope="module")
def tiny(test_pack):
    model, clip, _ = test_pack.NODE_CLASS_MAPPINGS["HLSTest_TinySDXL"]().build(seed=0)
    encode = lambda text: clip.encode_from_tokens_scheduled(clip.tokenize(text))  # noqa: E731
    return model, encode("hlsid two friends in a park"), encode("blurry"), test_pack


def random_lora(pack, seed: int):
    """A LoRA of the layout 'Generate HyperLoRA' makes for this UNet, with random factors."""
    tiny_sdxl = sys.modules["hls_test_pack_hooks_test.tiny_sdxl"]
    from hyperlora_studio_hooks_test.hyperlora_core.model.checkpoint import ModuleSpec
    from hyperlora_studio_hooks_test.hyperlora_core.model.lora import kohya_key_plan
    modules = [ModuleSpec(name, hidden, cross) for name, hidden, cross in tiny_sdxl.hyperlora_modules()]
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in kohya_key_plan(modules, RANK).items():
        tensors[key] = torch.tensor(float(RANK)) if key.endswith(".alpha") else torch.randn(shape, generator=gen) * 0.15
    return importlib.import_module("hyperlora_studio_hooks_test.nodes.lora").GeneratedLoRA(tensors, kind="id", source="test")


def hooks(pack, model, lora, strength=1.0, start_at=0.0, end_at=1.0, ramp=0.0):
    return node_classes(pack)["HLS_LoRAHooks"].execute(model, lora, strength, start_at, end_at, ramp)[0]


def sample(comfy, model, positive, negative, steps=1, callback=None):
    latent = torch.zeros(LATENT)
    noise = comfy.sample.prepare_noise(latent, 42)
    return comfy.sample.sample(model, noise, steps, CFG, "euler", "normal", positive, negative, latent,
                               callback=callback, disable_pbar=True, seed=42)


def whole_picture(comfy, positive, negative, hook_group):
    return comfy.hooks.set_conds_props(conds=[positive, negative], strength=1.0, set_cond_area="default",
                                       hooks=hook_group)


def two_people(pack, positive, negative, hooks_a, hooks_b, feather=0, outside="base model"):
    left, right, _, _ = node_classes(pack)["HLS_RegionLayout"].execute("left | right", 128, 128, feather, "")
    return node_classes(pack)["HLS_SeveralPeople"].execute(
        positive, negative, {"samples": torch.zeros(LATENT)}, outside,
        hooks_1=hooks_a, region_1=left, hooks_2=hooks_b, region_2=right).result


def test_each_half_gets_its_own_identity(comfy, pack, tiny):
    model, pos, neg, _ = tiny
    a, b = hooks(pack, model, random_lora(pack, 1)), hooks(pack, model, random_lora(pack, 2))
    regions = sample(comfy, model, *two_people(pack, pos, neg, a, b))
    only_a = sample(comfy, model, *whole_picture(comfy, pos, neg, a))
    only_b = sample(comfy, model, *whole_picture(comfy, pos, neg, b))
    half = LATENT[-1] // 2
    torch.testing.assert_close(regions[..., :half], only_a[..., :half], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(regions[..., half:], only_b[..., half:], rtol=1e-4, atol=1e-5)
    # The identities really differ, in both halves, and from the plain model.
    plain = sample(comfy, model, pos, neg)
    for side in (slice(0, half), slice(half, None)):
        assert (only_a[..., side] - only_b[..., side]).abs().max() > 1e-2
        assert (only_a[..., side] - plain[..., side]).abs().max() > 1e-2


def test_feathered_seam_blends_the_two_identities(comfy, pack, tiny):
    model, pos, neg, _ = tiny
    a, b = hooks(pack, model, random_lora(pack, 1)), hooks(pack, model, random_lora(pack, 2))
    blended = sample(comfy, model, *two_people(pack, pos, neg, a, b, feather=32))
    only_a = sample(comfy, model, *whole_picture(comfy, pos, neg, a))
    only_b = sample(comfy, model, *whole_picture(comfy, pos, neg, b))
    torch.testing.assert_close(blended[..., :2], only_a[..., :2], rtol=1e-3, atol=1e-4)  # far from the seam
    torch.testing.assert_close(blended[..., -2:], only_b[..., -2:], rtol=1e-3, atol=1e-4)
    seam = blended[..., 7:9]
    low, high = torch.minimum(only_a, only_b)[..., 7:9], torch.maximum(only_a, only_b)[..., 7:9]
    assert bool(((seam >= low - 1e-4) & (seam <= high + 1e-4)).all())  # a mix of the two, pixel by pixel


def test_steps_before_start_at_are_the_plain_models(comfy, pack, tiny):
    model, pos, neg, _ = tiny
    steps = 6

    def run(cond_pos, cond_neg):
        seen = []
        sample(comfy, model, cond_pos, cond_neg, steps=steps, callback=lambda i, x0, x, n: seen.append(x0.clone()))
        return seen

    plain = run(pos, neg)
    late = run(*whole_picture(comfy, pos, neg, hooks(pack, model, random_lora(pack, 1), start_at=0.5)))
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "normal", steps)
    half = float(sampling.percent_to_sigma(0.5))
    before = [i for i in range(steps) if float(sigmas[i]) > half]
    assert 0 < len(before) < steps
    for i in before:
        torch.testing.assert_close(late[i], plain[i], rtol=1e-5, atol=1e-6)
    assert (late[len(before)] - plain[len(before)]).abs().max() > 1e-2  # the identity comes in at the half


def test_strength_zero_changes_nothing(comfy, pack, tiny):
    model, pos, neg, _ = tiny
    zero_a = hooks(pack, model, random_lora(pack, 1), strength=0.0)
    zero_b = hooks(pack, model, random_lora(pack, 2), strength=0.0)
    plain = sample(comfy, model, pos, neg)
    # Four conditionings batched instead of two: the same sums in another order (float tolerance).
    torch.testing.assert_close(sample(comfy, model, *two_people(pack, pos, neg, zero_a, zero_b)), plain,
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sample(comfy, model, *whole_picture(comfy, pos, neg, zero_a)), plain,
                               rtol=1e-5, atol=1e-6)


def test_hook_equals_apply_hyperlora_at_the_same_strength(comfy, pack, tiny):
    model, pos, neg, _ = tiny
    lora = random_lora(pack, 3)
    hooked = sample(comfy, model, *whole_picture(comfy, pos, neg, hooks(pack, model, lora, strength=0.7)))
    (patched,) = node_classes(pack)["HLS_ApplyLoRA"].execute(model, lora, 0.7)
    torch.testing.assert_close(hooked, sample(comfy, patched, pos, neg), rtol=1e-4, atol=1e-5)


def test_hook_equals_core_create_hook_lora_from_the_saved_file(comfy, pack, tiny, tmp_path):
    from safetensors.torch import save_file
    import comfy.utils
    model, pos, neg, _ = tiny
    lora = random_lora(pack, 4)
    save_file(dict(lora), tmp_path / "a.safetensors")
    core = comfy.hooks.create_hook_lora(comfy.utils.load_torch_file(str(tmp_path / "a.safetensors")), 0.8, 0.0)
    ours = hooks(pack, model, lora, strength=0.8)
    torch.testing.assert_close(sample(comfy, model, *whole_picture(comfy, pos, neg, ours)),
                               sample(comfy, model, *whole_picture(comfy, pos, neg, core)), rtol=1e-5, atol=1e-6)


def test_non_sdxl_model_and_foreign_lora_are_refused(comfy, pack, tiny):
    model, _, _, test_pack = tiny
    errors = sys.modules["hyperlora_studio_hooks_test.hyperlora_core.errors"]
    (sd15,) = test_pack.NODE_CLASS_MAPPINGS["HLSTest_TinySD15"]().build(seed=0)
    with pytest.raises(errors.HyperLoRAError, match="SDXL"):
        hooks(pack, sd15, random_lora(pack, 1))
    foreign = {"lora_unet_input_blocks_0_0.lora_down.weight": torch.zeros(4, 4),
               "lora_unet_input_blocks_0_0.lora_up.weight": torch.zeros(4, 4),
               "lora_unet_input_blocks_0_0.alpha": torch.tensor(4.0)}
    with pytest.raises(errors.HyperLoRAError, match="not a HyperLoRA LoRA"):
        hooks(pack, model, foreign)
    with pytest.raises(errors.HyperLoRAError, match="start_at"):
        hooks(pack, model, random_lora(pack, 1), start_at=0.6, end_at=0.4)


def test_outside_every_region_draws_the_base_model_or_identity_one(comfy, pack, tiny):
    model, pos, neg, _ = tiny
    a, b = hooks(pack, model, random_lora(pack, 1)), hooks(pack, model, random_lora(pack, 2))
    left, right, _, _ = node_classes(pack)["HLS_RegionLayout"].execute("boxes", 128, 128, 0,
                                                                       "0 0 0.25 1; 0.75 0 1 1")
    latent = {"samples": torch.zeros(LATENT)}
    people = node_classes(pack)["HLS_SeveralPeople"]
    base_gap = sample(comfy, model, *people.execute(pos, neg, latent, "base model", hooks_1=a, region_1=left,
                                                    hooks_2=b, region_2=right).result)
    a_gap = sample(comfy, model, *people.execute(pos, neg, latent, "identity 1", hooks_1=a, region_1=left,
                                                 hooks_2=b, region_2=right).result)
    plain = sample(comfy, model, pos, neg)
    only_a = sample(comfy, model, *whole_picture(comfy, pos, neg, a))
    only_b = sample(comfy, model, *whole_picture(comfy, pos, neg, b))
    gap = slice(4, 12)
    # Float32 noise of predictions batched in other groups, relative to the largest value (about 360
    # here; 3e-4 apart at both torch 2.9 and 2.14), not to each element, some of which are near 0.
    atol = 2e-6 * float(only_a.abs().max())
    assert float((only_a - plain)[..., gap].abs().max()) > 100 * atol  # an identity is far outside it
    torch.testing.assert_close(base_gap[..., gap], plain[..., gap], rtol=1e-4, atol=atol)
    torch.testing.assert_close(a_gap[..., gap], only_a[..., gap], rtol=1e-4, atol=atol)
    for out in (base_gap, a_gap):
        torch.testing.assert_close(out[..., :4], only_a[..., :4], rtol=1e-4, atol=atol)
        torch.testing.assert_close(out[..., 12:], only_b[..., 12:], rtol=1e-4, atol=atol)
