"""A prepared toy dataset, a tiny training config and a worker that runs a Trainer as one rank of
several (what torchrun would start), for the trainer's tests on the toy backbone."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from hyperlora_core.train import Config, Trainer, config_from_dict
from hyperlora_core.train.data import write_index, write_item

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


def tiny_config(out: Path, cache: Path, **sections) -> Config:
    data = {
        "model": {"kind": "custom", "factory": "hyperlora_core.train.toy:build"},
        "data": {"cache": str(cache), "resolution": 32},
        "network": dict(TINY_NETWORK),
        "training": {"stage": "id_full", "max_steps": 3, "batch_size": 2, "lr": 1e-3, "seed": 0,
                     "device": "cpu", "drop_base_lora": 0.5},
        "output": {"folder": str(out / "out"), "checkpoint_every": 0, "log_every": 1},
    }
    for section, values in sections.items():
        data[section].update(values)
    return config_from_dict(data)


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
