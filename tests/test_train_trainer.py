"""train/trainer.py on the toy backbone: the loss goes down, each stage trains its parts, captions and
trigger words per sample, exact resumption, bf16 and gradient checkpointing, the command line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hyperlora_core.train import STAGES, ConfigError, Trainer
from tiny_training import TINY_NETWORK, cache, make_cache, one_thread, tiny_config  # noqa: F401


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
