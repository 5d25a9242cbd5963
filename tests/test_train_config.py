"""train/config.py: config errors name the key, and the example config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperlora_core.train import STAGES, ConfigError
from tiny_training import cache, one_thread, tiny_config  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def test_config_errors_name_the_key(tmp_path, cache):
    with pytest.raises(ConfigError, match=r"Unknown key\(s\) in \[training\]: learning_rate"):
        tiny_config(tmp_path, cache, training={"learning_rate": 1e-4})
    with pytest.raises(ConfigError, match="training.stage must be one of base, id_clip, id_full"):
        tiny_config(tmp_path, cache, training={"stage": "id"})
    with pytest.raises(ConfigError, match="training.batch_size must be a whole number"):
        tiny_config(tmp_path, cache, training={"batch_size": "2"})


def test_example_config_is_valid():
    from hyperlora_core.train import load_config

    config = load_config(ROOT / "hyperlora_core" / "train" / "example_config.toml")
    assert config.model.kind == "sdxl" and config.training.stage in STAGES
