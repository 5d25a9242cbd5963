"""The trainer (hyperlora_core.train) on a toy UNet and toy encoders: seconds per test, CPU only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hyperlora_core import HyperLoRA
from hyperlora_core.errors import CheckpointError
from hyperlora_core.bench.synthetic import SMALL_MODULES, make_release_folder
from hyperlora_core.train import STAGES, ConfigError, Trainer, config_from_dict
from hyperlora_core.train.backbone import check_sdxl
from hyperlora_core.train.data import DataError, write_index, write_item
from hyperlora_core.train.lora_inject import (
    LoRAState,
    PerSampleLoRALinear,
    find_attention_modules,
)
from hyperlora_core.train.toy import ToyBackbone

ROOT = Path(__file__).resolve().parent.parent
TINY_NETWORK = {"hyper_dim": 8, "rank": 4, "base_rank": 2, "dim": 32, "depth": 1, "inner": 64,
                "id_tokens": 4, "id_width": 32, "clip_width": 64}


def make_cache(folder: Path, count: int, clip_width: int = 64, seed: int = 0) -> Path:
    """A prepared dataset for the toy backbone (32 px images -> 4 x 8 x 8 latents), without face models."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for n in range(count):
        arcface = torch.randn(512, generator=gen)
        write_item(folder, f"item{n}", {
            "arcface": arcface / arcface.norm(),
            "clip_tokens": torch.randn(257, clip_width, generator=gen).half(),
            "base_clip_tokens": torch.randn(257, clip_width, generator=gen).half(),
            "latents": torch.randn(4, 8, 8, generator=gen),
            "sizes": torch.tensor([32.0, 32.0, 0.0, 0.0, 32.0, 32.0]),
        })
        items.append({"image": f"photo{n}.png", "caption": f"a photo of person {n}", "key": f"item{n}"})
    write_index(folder, items, [], {})
    return folder


def tiny_config(tmp_path: Path, cache: Path, **sections) -> Config:  # noqa: F821
    data = {
        "model": {"kind": "custom", "factory": "hyperlora_core.train.toy:build"},
        "data": {"cache": str(cache), "resolution": 32},
        "network": dict(TINY_NETWORK),
        "training": {"stage": "id_full", "max_steps": 3, "batch_size": 2, "lr": 1e-3, "seed": 0,
                     "device": "cpu", "drop_base_lora": 0.5},
        "output": {"folder": str(tmp_path / "out"), "checkpoint_every": 0, "log_every": 1},
    }
    for section, values in sections.items():
        data[section].update(values)
    return config_from_dict(data)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: on a shared 2-core machine, two contending threads make these tiny steps 50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cache(tmp_path) -> Path:
    return make_cache(tmp_path / "cache", 4)


def toy_modules():
    return [t.spec for t in find_attention_modules(ToyBackbone().unet)]


# -- 1. per-sample LoRA and a training step ------------------------------------------------------

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


def test_loss_goes_down_when_overfitting_one_example(tmp_path):
    config = tiny_config(tmp_path, make_cache(tmp_path / "one", 1), training={
        "batch_size": 1, "max_steps": 40, "lr": 3e-3, "drop_trigger": 0.0, "drop_caption": 0.0})
    trainer = Trainer(config)
    trainer.prepare_data()
    with torch.no_grad():
        before = [trainer._micro_loss(range(p, p + 1)).item() for p in range(4)]
    trainer.run()
    with torch.no_grad():
        after = [trainer._micro_loss(range(p, p + 1)).item() for p in range(4)]
    assert sum(after) < 0.7 * sum(before), (before, after)


# -- 2. export and warm start --------------------------------------------------------------------

def test_saved_folder_loads_and_generates_the_trained_lora(tmp_path, cache):
    config = tiny_config(tmp_path, cache, output={"export_dtype": "float32"})
    trainer = Trainer(config)
    trainer.run()
    release = tmp_path / "out" / "release"
    assert sorted(p.name for p in release.iterdir()) == [
        "hyper_lora_modules.json", "hyper_lora_modules.safetensors", "id_projector.safetensors",
        "resampler.safetensors"]
    model = HyperLoRA.from_pretrained(release)
    item = trainer.dataset[0]
    arcface, clip = item["arcface"][None], item["clip_tokens"][None].float()
    lora = model.generate_id_lora(arcface, clip)
    with torch.no_grad():
        factors = trainer.net.id_bank.factors(trainer.net.id_coefficients(arcface, clip))
    name = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k"
    down, up = factors[name]
    torch.testing.assert_close(lora[f"{name}.lora_down.weight"], down[0].T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lora[f"{name}.lora_up.weight"], up[0].T, rtol=1e-4, atol=1e-5)
    assert up.abs().max() > 0  # the up bases left their zero start
    assert len(lora) == 3 * 4 * 6


def test_base_stage_adds_base_resampler_and_base_bases(tmp_path, cache):
    trainer = Trainer(tiny_config(tmp_path, cache, training={"stage": "base", "max_steps": 2}))
    trainer.run()
    model = HyperLoRA.from_pretrained(tmp_path / "out" / "release")
    assert model.has_base_lora and model.base_bank.rank == 2
    lora = model.generate_base_lora(trainer.dataset[0]["base_clip_tokens"][None].float())
    assert any(v.abs().max() > 0 for k, v in lora.items() if "lora_up" in k)


def test_warm_start_from_a_release_folder_reproduces_it(tmp_path):
    release = make_release_folder(tmp_path / "release", modules=toy_modules(), hyper_dim=8, rank=4,
                                  with_base=True, dtype=torch.float32, dim=32, depth=1, inner=64)
    cache = make_cache(tmp_path / "cache", 2, clip_width=1024)
    config = tiny_config(tmp_path, cache, network={"init_from": str(release)},
                         training={"max_steps": 1, "lr": 1e-12}, output={"export_dtype": "float32"})
    trainer = Trainer(config)
    assert trainer.net.has_base and trainer.net.shape.clip_width == 1024 and trainer.net.shape.dim == 32
    trainer.run()
    original = HyperLoRA.from_pretrained(release)
    exported = HyperLoRA.from_pretrained(tmp_path / "out" / "release")
    item = trainer.dataset[1]
    a = original.generate_id_lora(item["arcface"][None], item["clip_tokens"][None].float())
    b = exported.generate_id_lora(item["arcface"][None], item["clip_tokens"][None].float())
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-5)
    assert exported.has_base_lora  # warm-started Base-LoRA parts are exported again


def test_warm_start_for_another_unet_names_the_missing_modules(tmp_path, cache):
    release = make_release_folder(tmp_path / "sdxl", modules=SMALL_MODULES[:2], hyper_dim=8, rank=4,
                                  dim=32, depth=1, inner=64)
    with pytest.raises(CheckpointError, match="lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1"):
        Trainer(tiny_config(tmp_path, cache, network={"init_from": str(release)}))


# -- 3. stages, config, resume -------------------------------------------------------------------

@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_trains_its_parts_only(tmp_path, cache, stage):
    trainer = Trainer(tiny_config(tmp_path, cache, training={"stage": stage, "max_steps": 2},
                                  network={"with_base": True}))
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    losses = trainer.run()
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    changed = {k.split(".")[0] for k, v in trainer.net.state_dict().items() if not torch.equal(v, before[k])}
    expected = {"base": {"base_resampler", "base_bank"}, "id_clip": {"resampler", "id_bank"},
                "id_full": {"id_projector", "resampler", "id_bank"}}[stage]
    assert changed == expected


def test_trigger_words_and_caption_switched_per_sample(tmp_path, cache):
    seen = []

    def run(**training):
        trainer = Trainer(tiny_config(tmp_path, cache, training={"max_steps": 1, **training}))
        encode = trainer.backbone.encode_prompts
        trainer.backbone.encode_prompts = lambda captions, sizes: (seen.append(captions), encode(captions, sizes))[1]
        trainer.prepare_data()
        trainer.train_step()
        return seen.pop()

    assert all(c.startswith("fcsks fxhks fhyks, a photo") for c in run(drop_trigger=0.0, drop_caption=0.0))
    assert all(c.startswith("a photo") for c in run(drop_trigger=1.0, drop_caption=0.0))
    assert run(drop_trigger=1.0, drop_caption=1.0) == ["", ""]
    assert run(drop_trigger=1.0, drop_caption=0.0, stage="base") == run(drop_trigger=0.0, drop_caption=0.0,
                                                                          stage="base")


def test_resumed_run_continues_exactly(tmp_path, cache):
    straight = Trainer(tiny_config(tmp_path / "a", cache, training={"max_steps": 4, "grad_accum": 2})).run()
    config = tiny_config(tmp_path / "b", cache, training={"max_steps": 4, "grad_accum": 2},
                         output={"checkpoint_every": 2})
    first = Trainer(config).run(stop_after=3)  # checkpoint at step 2, then one step lost to the "crash"
    resumed = Trainer(config)
    rest = resumed.run()
    assert first[:2] == straight[:2]
    assert rest == straight[2:]
    a = load_file(str(tmp_path / "a" / "out" / "checkpoints" / "step_00000004" / "network.safetensors"))
    b = load_file(str(tmp_path / "b" / "out" / "checkpoints" / "step_00000004" / "network.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_with_a_changed_config_says_what_changed(tmp_path, cache):
    Trainer(tiny_config(tmp_path, cache, training={"max_steps": 1})).run()
    changed = tiny_config(tmp_path, cache, training={"max_steps": 2, "lr": 5e-4, "batch_size": 1})
    with pytest.raises(ConfigError) as err:
        Trainer(changed).run()
    assert "training.lr: 0.001 -> 0.0005" in str(err.value)
    assert "training.batch_size: 2 -> 1" in str(err.value)
    assert "max_steps" not in str(err.value)  # a longer run is a resumption, not a change


def test_config_errors_name_the_key(tmp_path, cache):
    with pytest.raises(ConfigError, match=r"Unknown key\(s\) in \[training\]: learning_rate"):
        tiny_config(tmp_path, cache, training={"learning_rate": 1e-4})
    with pytest.raises(ConfigError, match="training.stage must be one of base, id_clip, id_full"):
        tiny_config(tmp_path, cache, training={"stage": "id"})
    with pytest.raises(ConfigError, match="training.batch_size must be a whole number"):
        tiny_config(tmp_path, cache, training={"batch_size": "2"})


def test_bf16_and_gradient_checkpointing(tmp_path, cache):
    plain = Trainer(tiny_config(tmp_path / "a", cache, training={"max_steps": 1}))
    plain.prepare_data()
    loss = plain._micro_loss(range(2))
    loss.backward()
    grads = [p.grad.clone() for p in plain.params]
    ckpt = Trainer(tiny_config(tmp_path / "b", cache, training={"max_steps": 1, "gradient_checkpointing": True}))
    ckpt.prepare_data()
    ckpt._micro_loss(range(2)).backward()
    for a, p in zip(grads, ckpt.params):
        torch.testing.assert_close(p.grad, a)
    bf16 = Trainer(tiny_config(tmp_path / "c", cache, training={"max_steps": 2, "mixed_precision": "bf16"}))
    losses = bf16.run()
    assert all(abs(a - b) < 0.1 * abs(b) for a, b in zip(losses, Trainer(tiny_config(
        tmp_path / "d", cache, training={"max_steps": 2})).run()))


def test_command_line_trains_and_writes_samples(tmp_path, cache):
    from hyperlora_core.train.__main__ import main

    config = {
        "model": {"kind": "custom", "factory": "hyperlora_core.train.toy:build"},
        "data": {"cache": str(cache)},
        "network": TINY_NETWORK,
        "training": {"max_steps": 2, "device": "cpu"},
        "output": {"folder": "run", "sample_every": 2, "sample_steps": 3, "log_every": 1},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["--config", str(path)]) == 0
    assert (tmp_path / "run" / "release" / "resampler.safetensors").is_file()  # relative to the config
    assert len(list((tmp_path / "run" / "samples").glob("*.png"))) == 1
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_example_config_is_valid():
    from hyperlora_core.train import load_config

    config = load_config(ROOT / "hyperlora_core" / "train" / "example_config.toml")
    assert config.model.kind == "sdxl" and config.training.stage in STAGES


# -- bad base model ------------------------------------------------------------------------------

@pytest.mark.parametrize("key, found", [
    ("cond_stage_model.transformer.text_model.embeddings.position_ids", "Stable Diffusion 1.x"),
    ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "a LoRA"),
    ("conditioner.embedders.0.model.ln_final.weight", "SDXL refiner"),
    ("double_blocks.0.img_attn.qkv.weight", "Flux"),
])
def test_base_checkpoint_of_the_wrong_kind_names_what_was_found(tmp_path, key, found):
    path = tmp_path / "model.safetensors"
    save_file({key: torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointError, match=found):
        check_sdxl(path)
    good = tmp_path / "sdxl.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}, str(good))
    check_sdxl(good)
    release = make_release_folder(tmp_path / "release", modules=SMALL_MODULES[:1], hyper_dim=4, rank=2,
                                  dim=64, depth=1, inner=64)
    with pytest.raises(CheckpointError, match="HyperLoRA release folder"):
        check_sdxl(release)


def test_training_stays_optional():
    code = ("import sys, hyperlora_core; "
            "print('hyperlora_core.train' in sys.modules, sys.modules.get('diffusers') is not None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    code = "import sys, hyperlora_core.train; print(sys.modules.get('diffusers') is not None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


# -- 4. dataset and preprocessing with the face pipeline ------------------------------------------

@pytest.fixture(scope="module")
def face_data(tmp_path_factory):
    import numpy as np
    from PIL import Image
    from tiny_clip import make_tiny_clip
    from tiny_face_models import draw_face, make_tiny_antelopev2

    root = tmp_path_factory.mktemp("faces")
    photos = root / "photos"
    photos.mkdir()
    for n, box in enumerate([(60, 50, 150, 170), (40, 40, 140, 160)]):
        image = (np.random.default_rng(n).random((200, 180, 3)) * 200).astype(np.uint8)
        Image.fromarray(draw_face(image, box, slot=0, ring=6)).save(photos / f"face{n}.png")
        (photos / f"face{n}.txt").write_text(f"a photo of person {n}\n")
    Image.fromarray(np.full((120, 120, 3), 90, np.uint8)).save(photos / "wall.png")
    (photos / "wall.txt").write_text("a grey wall")
    return {"photos": photos, "clip": make_tiny_clip(root / "clip"),
            "faces": make_tiny_antelopev2(root / "antelopev2")}


def face_config(tmp_path, face_data, **data):
    return tiny_config(tmp_path, tmp_path / "cache", data={
        "folder": str(face_data["photos"]), "face_models": str(face_data["faces"]),
        "clip_model": str(face_data["clip"]), **data}, network={"clip_width": 1024},
        training={"max_steps": 1})


def test_photos_are_preprocessed_once_and_photos_without_a_face_skipped_and_counted(tmp_path, face_data, caplog):
    from hyperlora_core.train.data import prepare_cache

    config = face_config(tmp_path, face_data)
    trainer = Trainer(config)
    with caplog.at_level("INFO", logger="hyperlora_core.train"):
        trainer.run()
    assert "Skipped 1 of 3 photos without a face" in caplog.text
    assert len(trainer.dataset) == 2 and trainer.dataset.no_face == [str(face_data["photos"] / "wall.png")]
    item = trainer.dataset[0]
    assert item["caption"] == "a photo of person 0" and item["latents"].shape == (4, 8, 8)
    assert item["clip_tokens"].shape == (257, 1024) and abs(item["arcface"].norm() - 1) < 1e-4
    assert not torch.equal(item["clip_tokens"], item["base_clip_tokens"])  # the face is blurred out in one
    report = prepare_cache(config, trainer.backbone, analyzer=object(), encoder=object())  # nothing to compute
    assert (report.reused, report.computed, len(report.no_face)) == (2, 0, 1)
    HyperLoRA.from_pretrained(tmp_path / "out" / "release")


def test_missing_caption_is_a_clear_message(tmp_path, face_data):
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(face_data["photos"], photos)
    (photos / "face1.txt").unlink()
    with pytest.raises(DataError, match=r"1 of 3 images .* have no caption file: face1.txt.*missing_caption"):
        Trainer(face_config(tmp_path, face_data, folder=str(photos))).run()


def test_jsonl_manifest_with_relative_paths(tmp_path, face_data):
    from hyperlora_core.train.data import read_manifest

    manifest = tmp_path / "train.jsonl"
    rel = os.path.relpath(face_data["photos"], tmp_path)
    manifest.write_text(json.dumps({"image": f"{rel}/face0.png", "caption": "one"}) + "\n\n"
                        + json.dumps({"file_name": f"{rel}/face1.png", "text": "two"}) + "\n")
    entries = read_manifest(manifest)
    assert [(e.image.name, e.caption) for e in entries] == [("face0.png", "one"), ("face1.png", "two")]
    manifest.write_text(json.dumps({"image": "x.png"}) + "\n")
    with pytest.raises(DataError, match=r"line 1: x.png has no \"caption\""):
        read_manifest(manifest)


# -- 5. several processes ------------------------------------------------------------------------

def _ddp_worker(rank: int, world: int, port: int, config) -> None:
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    try:
        Trainer(config).run()
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_with_gloo_equal_one_process_with_the_doubled_batch(tmp_path, cache):
    import torch.multiprocessing as mp

    training = {"max_steps": 2, "grad_accum": 2}
    one = tiny_config(tmp_path / "one", cache, training={**training, "batch_size": 2})
    Trainer(one).run()
    two = tiny_config(tmp_path / "two", cache, training={**training, "batch_size": 1})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, two), nprocs=2, join=True)
    a = load_file(str(tmp_path / "one" / "out" / "checkpoints" / "step_00000002" / "network.safetensors"))
    b = load_file(str(tmp_path / "two" / "out" / "checkpoints" / "step_00000002" / "network.safetensors"))
    assert set(a) == set(b)
    # Same up to float rounding: summing in another order can flip a near-zero gradient, which Adam
    # turns into up to a full step of lr = 1e-3 on that one weight; 1% of a step is allowed.
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")
    assert not torch.equal(a["resampler.proj_out.weight"], Trainer(tiny_config(tmp_path / "fresh", cache)).net
                           .state_dict()["resampler.proj_out.weight"])  # it did train
    logged = [json.loads(line)["loss"] for line in (tmp_path / "two" / "out" / "log.jsonl").read_text().splitlines()]
    expected = [json.loads(line)["loss"] for line in (tmp_path / "one" / "out" / "log.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(expected, rel=1e-5)
    # The same global batch on one process continues the two-process run as the one-process run goes on.
    longer = {**training, "batch_size": 2, "max_steps": 3}
    continued = Trainer(tiny_config(tmp_path / "two", cache, training=longer)).run()
    reference = Trainer(tiny_config(tmp_path / "one", cache, training=longer)).run()
    assert len(continued) == 1 and continued == pytest.approx(reference, rel=1e-4)


# -- a diffusers UNet shaped like SDXL's (skipped without diffusers) ------------------------------

class DiffusersUNetBackbone(ToyBackbone):
    """The toy text encoder and 'VAE' around a diffusers UNet2DConditionModel with SDXL's blocks."""

    def __init__(self):
        diffusers = pytest.importorskip("diffusers")
        super().__init__(context_dim=64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.unet = diffusers.UNet2DConditionModel(
                sample_size=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                block_out_channels=(16, 32, 64), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
                cross_attention_dim=64, attention_head_dim=(1, 2, 4), addition_embed_type="text_time",
                addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 64, norm_num_groups=8,
                use_linear_projection=True).requires_grad_(False).eval()
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


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory) -> Path:
    """A whole SDXL pipeline in the diffusers folder layout, a few hundred kB (character tokenizer)."""
    import string

    diffusers = pytest.importorskip("diffusers")
    import transformers

    root = tmp_path_factory.mktemp("sdxl")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ",.":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=16)
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 16, "projection_dim": 32, "bos_token_id": 0,
            "eos_token_id": 1, "pad_token_id": 1}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pipe = diffusers.StableDiffusionXLPipeline(
            vae=diffusers.AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                                        norm_num_groups=8, sample_size=32),
            text_encoder=transformers.CLIPTextModel(transformers.CLIPTextConfig(**text)),
            text_encoder_2=transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**text)),
            tokenizer=tokenizer, tokenizer_2=tokenizer,
            unet=diffusers.UNet2DConditionModel(
                sample_size=16, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(16, 32), layers_per_block=1,
                cross_attention_dim=64, attention_head_dim=(1, 2), addition_embed_type="text_time",
                addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32, norm_num_groups=8,
                use_linear_projection=True),
            scheduler=diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                                       beta_schedule="scaled_linear"))
    pipe.save_pretrained(str(root / "model"))
    return root / "model"


def test_sdxl_folder_from_photos_to_release(tmp_path, tiny_sdxl, face_data):
    config = face_config(tmp_path, face_data)
    config.model.kind, config.model.path, config.model.factory = "sdxl", str(tiny_sdxl), ""
    config.output.sample_every, config.output.sample_steps = 1, 2
    trainer = Trainer(config)
    assert [t.spec.name for t in trainer.targets] == [
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1",
        "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2",
        "lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_attn1",
        "lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_attn2",
        "lora_unet_up_blocks_0_attentions_1_transformer_blocks_0_attn1",
        "lora_unet_up_blocks_0_attentions_1_transformer_blocks_0_attn2",
    ]
    losses = trainer.run()
    assert len(losses) == 1 and trainer.dataset[0]["latents"].shape == (4, 16, 16)
    assert len(list((tmp_path / "out" / "samples").glob("*.png"))) == 1
    model = HyperLoRA.from_pretrained(tmp_path / "out" / "release")
    assert [m.name for m in model.target_modules] == [t.spec.name for t in trainer.targets]
