"""The training configuration: a TOML or JSON file with five sections (see example_config.toml).

Every key is checked: an unknown key, a wrong type or an impossible value is an error that names
the key. Relative paths are read relative to the config file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constants import TRIGGER_WORDS
from ..errors import ConfigError




STAGES = ("base", "id_clip", "id_full")
STRATEGIES = ("ddp", "fsdp")
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class ModelConfig:
    kind: str = "sdxl"  # "sdxl" or "custom"
    path: str = ""  # SDXL: diffusers folder or single .safetensors file
    config: str = ""  # single file only: a local diffusers SDXL folder to take the configs from (offline)
    factory: str = ""  # custom: "package.module:function" returning a Backbone
    options: dict = field(default_factory=dict)  # custom: keyword arguments of the factory


@dataclass
class DataConfig:
    folder: str = ""  # images with a .txt caption of the same name beside each
    manifest: str = ""  # or a JSONL file (one {"image": ..., "caption": ...} per line) or .parquet
    cache: str = ""  # where the preprocessed features go (default: <output>/cache)
    face_models: str = ""  # the antelopev2 folder
    clip_model: str = ""  # CLIP ViT-L/14 vision tower (HF folder or single .safetensors)
    resolution: int = 1024  # training images: shorter side resized to this, centre crop square
    missing_caption: str = "error"  # "error" or "empty" (a photo without a .txt gets an empty caption)
    face_choice: str = "largest"  # which face of a photo with several: largest, most_confident, or 0, 1, ...
    remove_background: bool = True  # grey out all but the face in the CLIP crop, as the reference does
    provider: str = "auto"  # ONNX Runtime provider for face analysis


@dataclass
class NetworkShape:
    """Sizes of a fresh network (a warm start takes them from the release's files instead)."""

    hyper_dim: int = 128
    rank: int = 8
    base_rank: int = 4
    dim: int = 1024
    depth: int = 4
    inner: int = 768
    ff_mult: int = 4
    id_tokens: int = 16
    id_width: int = 1024
    clip_width: int = 1024

    def shape(self) -> "NetworkShape":
        """Just the sizes (a NetworkConfig carries more)."""
        return NetworkShape(**{f.name: getattr(self, f.name) for f in dataclasses.fields(NetworkShape)})


@dataclass
class NetworkConfig(NetworkShape):
    init_from: str = ""  # a release folder to warm start from (fine-tuning); sizes then come from it
    with_base: bool = False  # give a fresh network Base-LoRA parts (always on for the base stage)


@dataclass
class TrainingConfig:
    stage: str = "id_full"  # base, id_clip or id_full (spec: the paper's three stages in order)
    max_steps: int = 1000
    batch_size: int = 1  # per process
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_grad_norm: float = 1.0  # 0: no clipping
    mixed_precision: str = "no"  # no, fp16 (GPU only) or bf16
    gradient_checkpointing: bool = False
    train_bases: bool = True  # False: keep the LoRA bases fixed, train only the networks
    seed: int = 0
    device: str = "auto"  # auto (the GPU of this process if there is one), cpu, cuda
    strategy: str = "ddp"  # ddp: every rank holds the whole network; fsdp: sharded with FSDP2 (torchrun)
    trigger_words: str = TRIGGER_WORDS
    drop_trigger: float = 0.1  # chance that a sample with the ID-LoRA on has no trigger words
    drop_caption: float = 0.05  # chance that the caption (not the trigger words) is left out
    drop_id_lora: float = 0.0  # ID stages: chance that a sample is trained without its ID-LoRA
    drop_base_lora: float = 0.5  # ID stages: chance that the (frozen) Base-LoRA is off for a sample
    noise_offset: float = 0.0


@dataclass
class OutputConfig:
    folder: str = "hyperlora_training"
    checkpoint_every: int = 500  # steps between resumable checkpoints (and at the end)
    keep_checkpoints: int = 2
    export_every: int = 0  # steps between release-folder exports (0: only at the end)
    export_dtype: str = "float16"
    log_every: int = 10
    sample_every: int = 0  # steps between sample images (0: none)
    sample_prompts: list = field(default_factory=lambda: ["a portrait photo of a person, outdoors"])
    sample_steps: int = 25
    sample_guidance: float = 5.0
    resume: bool = True  # continue from the newest checkpoint in <folder>/checkpoints if there is one


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def output_dir(self) -> Path:
        return Path(self.output.folder)

    @property
    def cache_dir(self) -> Path:
        return Path(self.data.cache) if self.data.cache else self.output_dir / "cache"


# Keys that may change between a run and its resumption without changing what is learned.
RESUMABLE_CHANGES = {
    "training.max_steps", "training.device",
    "output.checkpoint_every", "output.keep_checkpoints", "output.export_every", "output.export_dtype",
    "output.log_every", "output.sample_every", "output.sample_prompts", "output.sample_steps",
    "output.sample_guidance", "output.resume", "output.folder",
    "data.cache", "data.provider", "data.face_models", "data.clip_model", "data.folder", "data.manifest",
    "model.path", "model.config",
}
_PATH_KEYS = {("model", "path"), ("model", "config"), ("data", "folder"), ("data", "manifest"),
              ("data", "cache"), ("data", "face_models"), ("data", "clip_model"), ("network", "init_from"),
              ("output", "folder")}


def _check_type(section: str, key: str, value: Any, default: Any) -> Any:
    name = f"{section}.{key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}.")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number, got {value!r}.")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}.")
        value = float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}.")
    elif isinstance(default, dict) and not isinstance(value, dict):
        raise ConfigError(f"{name} must be a table/object, got {value!r}.")
    elif isinstance(default, list) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{name} must be a list of strings, got {value!r}.")
    return value


def config_from_dict(data: dict[str, Any], base_dir: str | os.PathLike | None = None) -> Config:
    """Build and check a Config; relative paths are taken relative to ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"A training config is a table of sections, got {type(data).__name__}.")
    config = Config()
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"Unknown config section(s) {', '.join(unknown)}; the sections are {', '.join(sections)}.")
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of keys, got {values!r}.")
        target = getattr(config, section)
        known = {f.name for f in dataclasses.fields(target)}
        bad = sorted(set(values) - known)
        if bad:
            raise ConfigError(f"Unknown key(s) in [{section}]: {', '.join(bad)}. Known: {', '.join(sorted(known))}.")
        for key, value in values.items():
            value = _check_type(section, key, value, getattr(target, key))
            if (section, key) in _PATH_KEYS and value and base_dir is not None:
                value = str((Path(base_dir) / Path(value).expanduser()).resolve()) \
                    if not Path(value).expanduser().is_absolute() else str(Path(value).expanduser())
            setattr(target, key, value)
    validate(config)
    return config


def validate(config: Config) -> None:
    t, o, d, n = config.training, config.output, config.data, config.network
    checks = [
        (t.stage in STAGES, f"training.stage must be one of {', '.join(STAGES)}, got {t.stage!r}."),
        (t.strategy in STRATEGIES,
         f"training.strategy must be one of {', '.join(STRATEGIES)} (fsdp: the network sharded across the ranks "
         f"torchrun starts), got {t.strategy!r}."),
        (t.mixed_precision in MIXED_PRECISION,
         f"training.mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {t.mixed_precision!r}."),
        (t.max_steps >= 1, "training.max_steps must be at least 1."),
        (t.batch_size >= 1, "training.batch_size must be at least 1."),
        (t.grad_accum >= 1, "training.grad_accum must be at least 1."),
        (t.lr > 0, "training.lr must be positive."),
        (d.missing_caption in ("error", "empty"), "data.missing_caption must be 'error' or 'empty'."),
        (d.resolution >= 8 and d.resolution % 8 == 0, "data.resolution must be a positive multiple of 8."),
        (o.export_dtype in ("float16", "bfloat16", "float32"),
         "output.export_dtype must be float16, bfloat16 or float32."),
        (o.checkpoint_every >= 0 and o.export_every >= 0 and o.sample_every >= 0 and o.log_every >= 1,
         "output.*_every must not be negative (log_every at least 1)."),
        (n.rank >= 1 and n.base_rank >= 1 and n.hyper_dim >= 1, "network sizes must be positive."),
        (n.inner % 64 == 0, "network.inner must be a multiple of 64 (heads of 64)."),
        (config.model.kind in ("sdxl", "custom"), f"model.kind must be 'sdxl' or 'custom', got {config.model.kind!r}."),
    ]
    for name in ("drop_trigger", "drop_caption", "drop_id_lora", "drop_base_lora"):
        value = getattr(t, name)
        checks.append((0.0 <= value <= 1.0, f"training.{name} must be between 0 and 1, got {value}."))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def load_config(path: str | os.PathLike) -> Config:
    """Read a .toml or .json training config."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Training config not found: {path}.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}.") from exc
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError as exc:
                raise ConfigError("Reading a TOML config on Python 3.10 needs 'pip install tomli' "
                                  "(or write the config as JSON).") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc
    return config_from_dict(data, base_dir=path.parent)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and prefix == "":
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's config and the current one, beyond the resumable keys."""
    old, new = flatten(saved), flatten(current)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key in RESUMABLE_CHANGES or old.get(key) == new.get(key):
            continue
        changes.append(f"{key}: {old.get(key, '(not set)')!r} -> {new.get(key, '(not set)')!r}")
    return changes
