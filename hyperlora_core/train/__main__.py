"""``python -m hyperlora_core.train --config CONFIG`` (also under ``torchrun``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import HyperLoRAError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hyperlora_core.train",
        description="Train a HyperLoRA hyper-network on portraits with captions; the result is a release "
                    "folder that HyperLoRA.from_pretrained and the ComfyUI nodes load. Several processes: "
                    "torchrun --nproc_per_node N -m hyperlora_core.train --config CONFIG.",
    )
    parser.add_argument("--config", required=True, help="training config (.toml or .json); see example_config.toml")
    parser.add_argument("--prepare-only", action="store_true",
                        help="preprocess the photos into the cache (faces, CLIP tokens, latents) and stop")
    parser.add_argument("--max-steps", type=int, default=None, help="override training.max_steps")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=args.log_level if rank == 0 else "WARNING",
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s")
    try:
        from .config import load_config, validate
        from .trainer import Trainer

        config = load_config(args.config)
        if args.max_steps is not None:
            config.training.max_steps = args.max_steps
            validate(config)
        trainer = Trainer(config)
        trainer.prepare_data()
        if not args.prepare_only:
            trainer.run()
            if trainer.dist.is_main:
                print(f"Done: {trainer.output / 'release'} (load it with HyperLoRA.from_pretrained or the nodes).")
    except HyperLoRAError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
