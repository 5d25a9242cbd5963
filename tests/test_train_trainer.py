"""train/trainer.py on the toy backbone: the loss goes down, captions and trigger words per sample, bf16
and gradient checkpointing, the command line. Stages: test_train_stages.py; resuming:
test_train_checkpoints.py."""

from __future__ import annotations

import json

import torch

from hyperlora_core.train import Trainer
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
