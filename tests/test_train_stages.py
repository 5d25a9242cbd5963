"""train/stages.py: each stage trains its own parts of the network and nothing else."""

from __future__ import annotations

import pytest
import torch

from hyperlora_core.train import STAGES, Trainer
from tiny_training import cache, one_thread, tiny_config  # noqa: F401


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
