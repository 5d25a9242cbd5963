"""train/checkpoints.py: a run resumed from its checkpoint continues exactly, and one whose configuration
changed says what changed."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from hyperlora_core.train import ConfigError, Trainer
from tiny_training import cache, one_thread, tiny_config  # noqa: F401


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
