"""Training HyperLoRA: from a folder of portraits to a release folder the nodes load.

Optional part of the package (``pip install 'hyperlora-studio[train]'``): ``import hyperlora_core``
never imports it, and ``diffusers`` is imported only when an SDXL base model is loaded.

Command line: ``python -m hyperlora_core.train --config CONFIG`` (see ``example_config.toml`` and
docs/training.md). From Python::

    from hyperlora_core.train import load_config, train
    train(load_config("my_config.toml"))
"""

from .config import Config, ConfigError, config_from_dict, load_config
from .trainer import STAGES, Trainer, train

__all__ = ["STAGES", "Config", "ConfigError", "Trainer", "config_from_dict", "load_config", "train"]
