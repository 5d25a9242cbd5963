"""A worker that runs a Trainer as one rank of several (what torchrun would start), for the trainer's
tests on the toy backbone; the toy dataset and the tiny config come from tiny_training."""

from __future__ import annotations

import os
import socket

import torch

from hyperlora_core.train import Config, Trainer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_worker(rank: int, world: int, port: int, config: Config) -> None:
    """One rank of a run, with the environment torchrun gives it (for torch.multiprocessing.spawn)."""
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    try:
        Trainer(config).run()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_ranks(world: int, config: Config) -> None:
    import torch.multiprocessing as mp

    mp.spawn(rank_worker, args=(world, free_port(), config), nprocs=world, join=True)
