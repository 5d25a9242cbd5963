"""Peak memory per rank of the hyper-network's training step with DDP and with FSDP2, on the CPU
(Gloo), against the count 16 B x parameters (+ the gathered ID bank with FSDP2).

    torchrun --nproc_per_node N scripts/fsdp_memory.py --strategy fsdp --hyper-dim 8

Builds the trainable network for SDXL's 140 attention modules (the v1 bases at a smaller hyper_dim,
so that several ranks fit on one machine), runs --steps AdamW steps on random features and prints, per
rank, the growth of the process's peak resident memory (ru_maxrss) from just before the network was
built. The frozen UNet is left out: this is the part that FSDP2 shards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=("ddp", "fsdp"), default="fsdp")
    parser.add_argument("--hyper-dim", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from hyperlora_core.model.checkpoint import sdxl_attention_modules
    from hyperlora_core.train.config import NetworkShape
    from hyperlora_core.train.network import TrainableHyperLoRA
    from hyperlora_core.train.sharding import shard

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    shape = NetworkShape(hyper_dim=args.hyper_dim, dim=256, inner=256, depth=1, id_width=256)
    before = rss_bytes()
    net = TrainableHyperLoRA(sdxl_attention_modules(), shape, with_base=False)
    net.reset(0)
    params = sum(p.numel() for p in net.parameters())
    bank = sum(p.numel() for p in net.id_bank.parameters())
    if args.strategy == "fsdp":
        shard(net, torch.device("cpu"), world)
        model = net
    else:
        model = torch.nn.parallel.DistributedDataParallel(net)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(rank)
    for _ in range(args.steps):
        arcface = torch.randn(1, 512, generator=gen)
        clip = torch.randn(1, 257, shape.clip_width, generator=gen)
        factors = model(arcface, clip, None)["id"]
        loss = sum(down.square().mean() + up.square().mean() for down, up in factors.values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kept = 16 * params / (world if args.strategy == "fsdp" else 1)
    expected = kept + (8 * bank if args.strategy == "fsdp" else 0)
    row = {"strategy": args.strategy, "ranks": world, "rank": rank, "parameters_m": round(params / 1e6, 1),
           "id_bank_m": round(bank / 1e6, 1), "peak_growth_gb": round((peak - before) / 1e9, 3),
           "counted_gb": round(expected / 1e9, 3)}
    rows = [None] * world
    dist.all_gather_object(rows, row)
    if rank == 0:
        print(json.dumps(rows))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
