"""train/distributed.py: two processes (gloo) train as one process with the doubled batch does."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
from safetensors.torch import load_file

from hyperlora_core.train import Trainer
from tiny_training import cache, one_thread, tiny_config  # noqa: F401


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
