"""training.strategy = "fsdp": FSDP2 with 2 Gloo processes on the CPU follows the DDP run's losses,
resumes from its torch.distributed.checkpoint on the same or another number of ranks, and exports the
release folder a DDP run exports; started without torchrun, or resumed on a number of ranks the global
batch does not divide into, it says what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hyperlora_core.errors import ConfigError
from hyperlora_core.train import Trainer
from hyperlora_core.train.checkpoints import _check_processes
from tiny_training import make_cache, tiny_config
from train_fixtures import run_ranks

pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 needs torch >= 2.6")
from torch.distributed.fsdp import fully_shard  # noqa: E402,F401


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "out" / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A DDP run of 3 steps; an FSDP run of 2 steps, resumed for the third on 2 ranks and on 1 rank."""
    root = tmp_path_factory.mktemp("fsdp")
    cache = make_cache(root / "cache", 4)
    common = {"batch_size": 1, "grad_accum": 2}
    save = {"checkpoint_every": 1}
    run_ranks(2, tiny_config(root / "ddp", cache, training={**common, "max_steps": 3}, output=save))
    fsdp = {**common, "strategy": "fsdp"}
    run_ranks(2, tiny_config(root / "fsdp", cache, training={**fsdp, "max_steps": 2}, output=save))
    first_two = losses(root / "fsdp")
    shutil.copytree(root / "fsdp", root / "fsdp_one")
    run_ranks(2, tiny_config(root / "fsdp", cache, training={**fsdp, "max_steps": 3}, output=save))
    one_rank = {**fsdp, "batch_size": 2, "max_steps": 3}  # the same global batch on one rank
    run_ranks(1, tiny_config(root / "fsdp_one", cache, training=one_rank, output=save))
    return {"root": root, "cache": cache, "first_two": first_two}


def test_fsdp_follows_the_ddp_runs_loss(runs):
    ddp = losses(runs["root"] / "ddp")
    assert len(ddp) == 3 and len(runs["first_two"]) == 2
    assert runs["first_two"] == pytest.approx(ddp[:2], rel=1e-5)


def test_fsdp_resumes_from_its_sharded_checkpoint_on_two_ranks_and_on_one(runs):
    ddp = losses(runs["root"] / "ddp")
    resumed = losses(runs["root"] / "fsdp")
    assert len(resumed) == 3 and resumed[2] == pytest.approx(ddp[2], rel=1e-4)
    one = losses(runs["root"] / "fsdp_one")
    assert len(one) == 3 and one[2] == pytest.approx(ddp[2], rel=1e-4)
    checkpoint = runs["root"] / "fsdp" / "out" / "checkpoints" / "step_00000003"
    assert (checkpoint / "sharded" / ".metadata").is_file()
    assert json.loads((checkpoint / "state.json").read_text())["strategy"] == "fsdp"


def test_fsdp_release_has_the_ddp_releases_layout_and_weights(runs):
    ddp = runs["root"] / "ddp" / "out" / "release"
    for fsdp in (runs["root"] / "fsdp" / "out" / "release", runs["root"] / "fsdp_one" / "out" / "release"):
        assert sorted(p.name for p in fsdp.iterdir()) == sorted(p.name for p in ddp.iterdir())
        assert (fsdp / "hyper_lora_modules.json").read_text() == (ddp / "hyper_lora_modules.json").read_text()
        for name in (p.name for p in ddp.glob("*.safetensors")):
            a, b = load_file(str(ddp / name)), load_file(str(fsdp / name))
            assert list(a) == list(b)
            for key in a:
                assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
                torch.testing.assert_close(b[key].float(), a[key].float(), rtol=1e-3, atol=1e-3,
                                           msg=lambda m, key=key: f"{name} {key}: {m}")


def test_fsdp_without_torchrun_says_how_to_start_it(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    config = tiny_config(tmp_path, make_cache(tmp_path / "cache", 2), training={"strategy": "fsdp"})
    with pytest.raises(ConfigError, match="not started by torchrun .*torchrun --nproc_per_node N"):
        Trainer(config)


def test_unknown_strategy_is_named(tmp_path):
    with pytest.raises(ConfigError, match="training.strategy must be one of ddp, fsdp"):
        tiny_config(tmp_path, tmp_path, training={"strategy": "zero3"})


def test_resuming_on_ranks_the_global_batch_does_not_divide_into_is_refused(tmp_path):
    state = {"world_size": 2, "config": {"training": {"batch_size": 2}}}
    with pytest.raises(ConfigError, match=r"global batch of 4 samples \(2 processes x batch_size 2\), which does "
                                          r"not divide into 3 processes. Start 1 or 2 or 4 processes"):
        _check_processes(tmp_path, state, batch=1, world=3, changes=[])
    assert _check_processes(tmp_path, state, batch=4, world=1, changes=["training.batch_size: 2 -> 4"]) == []
