"""An interrupted `download` resumes where it stopped: a run killed (SIGKILL) in the middle of a file
leaves the partial file in the staging folder, and the same command run again asks the fake Hub
(tests/fake_hub.py) for the rest only; a damaged partial file is fetched whole again."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_hub import FakeHub, serving
from hyperlora_core import cli
from hyperlora_core.constants import HF_REPO_ID, RELEASE_FILES, VARIANTS
from hyperlora_core.download.hub import PARTIAL_SUFFIX, STAGING_FOLDER
from hyperlora_core.download.transfer import human_size

ROOT = Path(__file__).resolve().parent.parent
FIDELITY = VARIANTS[0]
BIG = f"{FIDELITY}/hyper_lora_modules.safetensors"
BIG_SIZE = 24_000_000  # the case: killed 18 MB into 24 MB
PAUSE_AT = 18_000_000


def _bytes(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def hub(monkeypatch):
    files = {f"{FIDELITY}/{name}": _bytes(name, 20_000) for name in RELEASE_FILES}
    files[f"{FIDELITY}/hyper_lora_modules.json"] = json.dumps({"m": {"hidden_size": 8}}).encode()
    files[BIG] = _bytes("big", BIG_SIZE)
    with serving(monkeypatch, {HF_REPO_ID: files}) as fake:
        yield fake


@pytest.fixture
def models(tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def partials(models: Path) -> list[Path]:
    return sorted(p for p in models.rglob(f"*{PARTIAL_SUFFIX}") if STAGING_FOLDER in p.parts)


def big_gets(hub: FakeHub) -> list[str | None]:
    """The Range header of every GET of the big file's content, in order (None: the whole file)."""
    return [rng for _, path, rng in hub.body_gets() if path.endswith("/hyper_lora_modules.safetensors")]


def kill_mid_file(hub: FakeHub, models: Path) -> Path:
    """Run `download` in its own process, let the fake Hub pause PAUSE_AT bytes into the big file,
    kill the process with SIGKILL once the bytes it took in are on the disk; returns the partial file."""
    hub.pause_once[BIG] = PAUSE_AT
    env = {**os.environ, "HF_ENDPOINT": hub.url, "NO_PROXY": "127.0.0.1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.Popen([sys.executable, "-m", "hyperlora_core", "download", "--models-dir", str(models),
                             "--only", "hyperlora"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert hub.paused.wait(timeout=120), "the download never reached the pause"
        # The Hub sends nothing more while paused: once the partial file stops growing, all the
        # process will write is written.
        size, deadline = -1, time.monotonic() + 60
        while time.monotonic() < deadline:
            found = partials(models)
            now = found[0].stat().st_size if found else -1
            if now > 0 and now == size:
                break
            size = now
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (partial,) = partials(models)
    return partial


def download(capsys, models: Path) -> tuple[int, str, str]:
    code = cli.main(["download", "--models-dir", str(models), "--only", "hyperlora"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_download_killed_mid_file_resumes_with_a_range_request_for_the_rest(hub, models, capsys):
    partial = kill_mid_file(hub, models)
    final = models / "hyperlora" / FIDELITY / "hyper_lora_modules.safetensors"
    kept = partial.stat().st_size
    assert 0 < kept <= PAUSE_AT
    assert not final.exists()  # nothing half-written under the final name
    assert partial.parent == final.parent / STAGING_FOLDER
    assert big_gets(hub) == [None]

    code, out, err = download(capsys, models)
    assert code == 0, err
    assert big_gets(hub) == [None, f"bytes={kept}-"]  # the rerun asks for the rest only
    assert f"  resuming hyper_lora_modules.safetensors from {human_size(kept)} of 24.0 MB" in out
    assert final.read_bytes() == hub.repos[HF_REPO_ID][BIG]
    assert partials(models) == [] and not (final.parent / STAGING_FOLDER).exists()


def test_damaged_partial_file_is_fetched_whole_again(hub, models, capsys):
    partial = kill_mid_file(hub, models)
    kept = partial.stat().st_size
    with open(partial, "r+b") as f:  # some bytes of the kept part changed on the disk
        f.seek(kept // 2)
        damaged = bytes(b ^ 0xFF for b in f.read(64))
        f.seek(kept // 2)
        f.write(damaged)

    code, out, err = download(capsys, models)
    assert code == 0, err
    assert big_gets(hub) == [None, f"bytes={kept}-", None]  # resumed, found wrong, fetched whole
    assert "resuming hyper_lora_modules.safetensors" in out
    assert "damaged); downloading it whole again" in out
    final = models / "hyperlora" / FIDELITY / "hyper_lora_modules.safetensors"
    assert final.read_bytes() == hub.repos[HF_REPO_ID][BIG]
    assert partials(models) == []


def test_partial_file_longer_than_the_file_is_dropped_and_fetched_whole(hub, models, capsys):
    partial = kill_mid_file(hub, models)
    with open(partial, "ab") as f:
        f.write(b"\0" * (BIG_SIZE + 1 - partial.stat().st_size))

    code, out, err = download(capsys, models)
    assert code == 0, err
    assert big_gets(hub) == [None, None]
    assert "is larger than the file" in out and "downloading it whole again" in out
    final = models / "hyperlora" / FIDELITY / "hyper_lora_modules.safetensors"
    assert final.read_bytes() == hub.repos[HF_REPO_ID][BIG]


def test_transfer_that_keeps_failing_says_the_part_received_is_kept(hub, models, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 100_000)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")
    hub.stall_after[BIG] = 1_000_000  # then no answer to any reconnect
    code, out, err = download(capsys, models)
    assert code == 1
    assert "hyper_lora_modules.safetensors: download stopped" in err
    assert "the files already complete and the 1.0 MB received of this one are kept" in err
    assert [p.stat().st_size for p in partials(models)] == [1_000_000]
