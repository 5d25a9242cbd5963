"""Reading and checking a HyperLoRA release folder.

Only JSON and safetensors are ever read: nothing here unpickles a user's file. Every shape and size
comes from the files themselves (the JSON's order of modules is kept), so the 140-module v1 release
and any smaller or later checkpoint in the same format load through the same code.
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..constants import (
    BASE_RESAMPLER_WEIGHTS,
    HF_URL,
    ID_PROJECTOR_WEIGHTS,
    MODULES_JSON,
    MODULES_WEIGHTS,
    PROJECTIONS,
    RELEASE_FILES,
    RESAMPLER_WEIGHTS,
)
from ..files.atomic import write_atomic
from ..errors import CheckpointError
from ..files.sniff import file_problem, path_problem, unsupported_dtype


_SAFETENSORS_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
MAX_JSON_BYTES = 16 * 2**20
_DOWNLOAD_AGAIN = f"Download the release files again from {HF_URL} (or `python -m hyperlora_core download`)."


@dataclass(frozen=True)
class ModuleSpec:
    """One attention module of the UNet that the hyper-network writes a LoRA for."""

    name: str
    hidden_size: int
    cross_attention_dim: int | None

    def in_features(self, projection: str) -> int:
        if projection in ("to_k", "to_v") and self.cross_attention_dim:
            return self.cross_attention_dim
        return self.hidden_size

    def out_features(self, projection: str) -> int:
        return self.hidden_size


def _layout_help(folder: Path) -> str:
    return (
        f"A HyperLoRA folder holds {', '.join(RELEASE_FILES)} (and optionally {BASE_RESAMPLER_WEIGHTS}). "
        f"Download one variant folder (e.g. sdxl_hyper_id_lora_v1_fidelity) from {HF_URL} into "
        f"ComfyUI/models/hyperlora/ (or `python -m hyperlora_core download`); checked: {folder}"
    )


def check_release_folder(folder: str | os.PathLike) -> Path:
    """Return the folder as a Path, or raise CheckpointError listing what is missing."""
    path = Path(folder)
    if not path.is_dir():
        raise CheckpointError(f"HyperLoRA folder not found: {path}. {_layout_help(path)}")
    missing = [name for name in RELEASE_FILES if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"HyperLoRA folder {path} is missing {', '.join(missing)}. {_layout_help(path)}")
    return path


def read_modules(json_path: str | os.PathLike) -> list[ModuleSpec]:
    """Read `hyper_lora_modules.json`, keeping its order (module i of the weights follows it)."""
    json_path = Path(json_path)
    problem = path_problem(json_path)
    if problem is not None:
        raise CheckpointError(f"{json_path} {problem}. It was not loaded. Download it again from {HF_URL}.")
    if json_path.stat().st_size > MAX_JSON_BYTES:
        raise CheckpointError(f"{json_path} is {json_path.stat().st_size} bytes: far too large for a "
                              f"hyper_lora_modules.json (about 15 kB). It was not loaded. Download it again from {HF_URL}.")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"), object_pairs_hook=OrderedDict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_path} is not readable JSON ({exc}). Download it again from {HF_URL}.") from exc
    except RecursionError:
        raise CheckpointError(f"{json_path} is not a hyper_lora_modules.json: it nests too deeply to read. "
                              f"Download it again from {HF_URL}.") from None
    if not isinstance(data, dict) or not data:
        raise CheckpointError(
            f"{json_path} must be a non-empty JSON object mapping module names to "
            '{"hidden_size": int, "cross_attention_dim": int or null}; found '
            f"{type(data).__name__}{' (empty)' if not data else ''}. Download it again from {HF_URL}."
        )
    modules = []
    for name, entry in data.items():
        hidden = entry.get("hidden_size") if isinstance(entry, dict) else None
        cross = entry.get("cross_attention_dim") if isinstance(entry, dict) else None
        valid = (
            isinstance(entry, dict)
            and isinstance(hidden, int) and not isinstance(hidden, bool) and hidden > 0
            and (cross is None or (isinstance(cross, int) and not isinstance(cross, bool) and cross > 0))
        )
        if not valid:
            raise CheckpointError(
                f"{json_path}: entry {name!r} must be "
                '{"hidden_size": positive int, "cross_attention_dim": positive int or null}, '
                f"found {entry!r}. Download the file again from {HF_URL}."
            )
        modules.append(ModuleSpec(name, hidden, cross))
    return modules


class SafetensorsFile:
    """A safetensors file opened for reading, with errors that name the file and the key."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        problem = file_problem(self.path)
        if problem is not None:
            raise CheckpointError(f"{self.path} is not a valid .safetensors file: it {problem}. "
                                  f"It was not loaded. {_DOWNLOAD_AGAIN}")
        try:
            self._handle = safe_open(str(self.path), framework="pt", device="cpu")
            self.keys = list(self._handle.keys())
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{self.path} is not a valid .safetensors file ({exc}); it may be truncated by an "
                f"interrupted download. It was not loaded. {_DOWNLOAD_AGAIN}"
            ) from exc
        self.metadata = self._handle.metadata() or {}
        self._check_dtypes()

    def _check_dtypes(self) -> None:
        """Every tensor must be float16, bfloat16 or float32 (a quantised or integer file is refused)."""
        _, header = self._layout()
        bad = unsupported_dtype({k: v["dtype"] for k, v in header.items() if k != "__metadata__"})
        if bad is not None:
            raise CheckpointError(
                f"{self.path}: tensor {bad[0]!r} is stored as {bad[1]}, but HyperLoRA weights must be float16, "
                "bfloat16 or float32 (a quantised or converted file does not work). It was not loaded. "
                f"{_DOWNLOAD_AGAIN}"
            )

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle.get_slice(key).get_shape())

    def tensor(self, key: str) -> torch.Tensor:
        try:
            return self._handle.get_tensor(key)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{self.path}: cannot read tensor {key!r} ({exc}). Download the file again.") from exc

    def _layout(self) -> tuple[int, dict]:
        """Where tensor data starts in the file, and each tensor's dtype and byte range."""
        if not hasattr(self, "_data_start"):
            with open(self.path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                self._header = json.loads(f.read(size))
            self._data_start = 8 + size
        return self._data_start, self._header

    def read_into(self, items: list[tuple[str, torch.Tensor]]) -> None:
        """Fill each destination tensor with the file's tensor of that key, in file order.

        A contiguous CPU destination of the stored dtype is filled by reading the file straight
        into it (one copy, no intermediate tensor); others go through a converted copy.
        """
        start, header = self._layout()
        items = sorted(items, key=lambda item: header[item[0]]["data_offsets"][0])
        with open(self.path, "rb") as f:
            for key, out in items:
                begin, end = header[key]["data_offsets"]
                direct = (out.device.type == "cpu" and out.is_contiguous()
                          and _SAFETENSORS_DTYPES.get(header[key]["dtype"]) == out.dtype
                          and out.numel() * out.element_size() == end - begin)
                if not direct:
                    out.copy_(self.tensor(key).reshape(out.shape))
                    continue
                f.seek(start + begin)
                if f.readinto(memoryview(out.view(torch.uint8).numpy()).cast("B")) != end - begin:
                    raise CheckpointError(f"{self.path} ends inside tensor {key!r}: the file is truncated. "
                                          f"Download it again from {HF_URL}.")

    def check_keys(self, required: set[str], optional: set[str] = frozenset()) -> None:
        found = set(self.keys)
        missing = sorted(required - found)
        extra = sorted(found - required - optional)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} key(s), e.g. {', '.join(missing[:5])}")
            if extra:
                parts.append(f"{len(extra)} unexpected key(s), e.g. {', '.join(extra[:5])}")
            raise CheckpointError(
                f"{self.path} does not have the HyperLoRA layout: {'; '.join(parts)}. "
                "Make sure each file sits in its own variant folder with the hyper_lora_modules.json "
                f"it was released with ({HF_URL})."
            )

    def check_shape(self, key: str, expected: tuple[int, ...]) -> None:
        found = self.shape(key)
        if found != tuple(expected):
            raise CheckpointError(
                f"{self.path}: tensor {key!r} has shape {list(found)}, expected {list(expected)}. "
                "The weights do not match hyper_lora_modules.json; download the variant folder again."
            )


@dataclass(frozen=True)
class BasisLayout:
    """Sizes of the LoRA bases, read from the module weights file."""

    hyper_dim: int
    rank: int
    base_rank: int | None  # None when the file has no Base-LoRA bases


def basis_key(index: int, projection: str, kind: str, role: str) -> str:
    """`{i}.{p}.{kind}_{role}_basis`, kind in (id, base), role in (down, up)."""
    return f"{index}.{projection}.{kind}_{role}_basis"


def expected_basis_shape(module: ModuleSpec, projection: str, role: str, hyper_dim: int, rank: int) -> tuple[int, int, int]:
    if role == "down":
        return (hyper_dim, module.in_features(projection), rank)
    return (hyper_dim, rank, module.out_features(projection))


def check_modules_file(weights: SafetensorsFile, modules: list[ModuleSpec]) -> BasisLayout:
    """Check the key set and every shape of `hyper_lora_modules.safetensors` against the JSON."""
    first = basis_key(0, PROJECTIONS[0], "id", "down")
    if first not in weights.keys:
        weights.check_keys({first})
    hyper_dim, _, rank = weights.shape(first)
    has_base = basis_key(0, PROJECTIONS[0], "base", "down") in weights.keys
    base_rank = weights.shape(basis_key(0, PROJECTIONS[0], "base", "down"))[2] if has_base else None

    kinds = {"id": rank, **({"base": base_rank} if has_base else {})}
    required = {
        basis_key(i, p, kind, role)
        for i in range(len(modules)) for p in PROJECTIONS for kind in kinds for role in ("down", "up")
    }
    weights.check_keys(required)
    for i, module in enumerate(modules):
        for p in PROJECTIONS:
            for kind, r in kinds.items():
                for role in ("down", "up"):
                    key = basis_key(i, p, kind, role)
                    weights.check_shape(key, expected_basis_shape(module, p, role, hyper_dim, r))
    return BasisLayout(hyper_dim=hyper_dim, rank=rank, base_rank=base_rank)


def sdxl_attention_modules() -> list[ModuleSpec]:
    """The 140 attention modules of the SDXL UNet, as listed by the v1 release (kohya names).

    Used to build test and benchmark checkpoints of the real size; a real checkpoint's own JSON
    always decides the order that is loaded.
    """
    blocks = [  # (diffusers prefix, attentions, transformer blocks each, width)
        ("down_blocks_1", 2, 2, 640),
        ("down_blocks_2", 2, 10, 1280),
        ("mid_block", 1, 10, 1280),
        ("up_blocks_0", 3, 10, 1280),
        ("up_blocks_1", 3, 2, 640),
    ]
    modules = []
    for prefix, attentions, depth, width in blocks:
        for a in range(attentions):
            for t in range(depth):
                stem = f"lora_unet_{prefix}_attentions_{a}_transformer_blocks_{t}"
                modules.append(ModuleSpec(f"{stem}_attn1", width, None))
                modules.append(ModuleSpec(f"{stem}_attn2", width, 2048))
    return modules


def write_modules_json(modules: list[ModuleSpec], path: str | os.PathLike) -> None:
    data = {m.name: {"hidden_size": m.hidden_size, "cross_attention_dim": m.cross_attention_dim} for m in modules}
    write_atomic(path, json.dumps(data, indent=2).encode("utf-8"), overwrite=True)


__all__ = [
    "BasisLayout",
    "ModuleSpec",
    "SafetensorsFile",
    "basis_key",
    "check_modules_file",
    "check_release_folder",
    "expected_basis_shape",
    "read_modules",
    "sdxl_attention_modules",
    "write_modules_json",
    "MODULES_JSON",
    "MODULES_WEIGHTS",
    "RESAMPLER_WEIGHTS",
    "ID_PROJECTOR_WEIGHTS",
    "BASE_RESAMPLER_WEIGHTS",
]
