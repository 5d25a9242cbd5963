"""The download command against the fake Hub (tests/fake_hub.py): the repositories it serves, and how
the tests run the command and read its output. The fixtures `hub` and `models` are in conftest.py."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from hyperlora_core import cli
from hyperlora_core.constants import ANTELOPEV2_FILES, HF_REPO_ID, RELEASE_FILES, VARIANTS
from hyperlora_core.download.models import ANTELOPEV2_REPO_ID, CLIP_REPO_ID
from hyperlora_core.download.hub import STAGING_FOLDER

ROOT = Path(__file__).resolve().parent.parent
FIDELITY, EDIT = VARIANTS
# Short time-outs keep the stalled-endpoint tests quick; the bound they check is derived from them.
QUICK = {"HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}


def blob(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def fake_repos() -> dict[str, dict[str, bytes]]:
    hyper = {}
    for variant in VARIANTS:
        hyper[f"{variant}/hyper_lora_modules.json"] = json.dumps({"m": {"hidden_size": 8}}).encode()
        hyper[f"{variant}/hyper_lora_modules.safetensors"] = blob(variant + "m", 96_000)
        hyper[f"{variant}/resampler.safetensors"] = blob(variant + "r", 200_000)
        hyper[f"{variant}/id_projector.safetensors"] = blob(variant + "p", 20_000)
    hyper["README.md"] = b"# HyperLoRA\n"
    return {
        HF_REPO_ID: hyper,
        CLIP_REPO_ID: {
            "config.json": b'{"model_type": "clip"}',
            "preprocessor_config.json": b'{"crop_size": 224}',
            "model.safetensors": blob("clip", 150_000),
            "pytorch_model.bin": blob("clip-bin", 1000),
        },
        ANTELOPEV2_REPO_ID: {
            **{name: blob(name, 30_000) for name in ANTELOPEV2_FILES.values()},
            "1k3d68.onnx": blob("3d", 5000),
            "antelopev2.zip": blob("zip", 5000),
        },
    }


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["download", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_process(hub_url: str, *args: str, timeout: float, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    """The command in its own process, as a user runs it; ``timeout`` bounds a hang."""
    full = {**os.environ, "HF_ENDPOINT": hub_url, "NO_PROXY": "127.0.0.1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            **(env or {})}
    full.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "hyperlora_core", "download", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout, **popen)


def expected_files(models: Path, variants=(FIDELITY,)) -> dict[Path, tuple[str, str]]:
    """Final path -> (repo, path in repo)."""
    out = {}
    for variant in variants:
        for name in RELEASE_FILES:
            out[models / "hyperlora" / variant / name] = (HF_REPO_ID, f"{variant}/{name}")
    out[models / "clip_vision" / "clip-vit-large-patch14.safetensors"] = (CLIP_REPO_ID, "model.safetensors")
    for name in ANTELOPEV2_FILES.values():
        out[models / "insightface" / "models" / "antelopev2" / name] = (ANTELOPEV2_REPO_ID, name)
    return out


def leftovers(models: Path) -> list[Path]:
    """Anything a download leaves besides the files themselves: staging folders, partial files."""
    return sorted(p for p in models.rglob("*") if STAGING_FOLDER in p.parts or p.name.endswith(".incomplete"))


def one_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err
