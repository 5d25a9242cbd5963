"""Every file is written whole or not at all, never over a user's file, with file-system errors explained."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hyperlora_core import HyperLoRAError, save_lora
from hyperlora_core.files import atomic
from hyperlora_core.files.atomic import write_atomic

ROOT = Path(__file__).resolve().parent.parent


def _lora() -> dict[str, torch.Tensor]:
    return {"lora_unet_x.lora_down.weight": torch.ones(8, 64), "lora_unet_x.lora_up.weight": torch.ones(64, 8),
            "lora_unet_x.alpha": torch.tensor(4.0)}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_new_file_is_written_and_an_existing_one_is_never_touched(tmp_path):
    target = tmp_path / "a.bin"
    write_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(HyperLoRAError, match="already exists and will not be overwritten"):
        write_atomic(target, b"second")
    assert target.read_bytes() == b"first"
    write_atomic(target, b"third", overwrite=True)
    assert target.read_bytes() == b"third"
    assert _leftovers(tmp_path) == ["a.bin"]


def test_a_file_created_by_someone_else_meanwhile_is_kept(tmp_path, monkeypatch):
    """Exclusive create holds also for a file that appears while the bytes are being written."""
    target = tmp_path / "race.safetensors"
    real_fsync = os.fsync

    def other_writer_wins(fd):
        real_fsync(fd)
        if not target.exists():
            target.write_bytes(b"theirs")
    monkeypatch.setattr(atomic.os, "fsync", other_writer_wins)
    with pytest.raises(HyperLoRAError, match="already exists"):
        write_atomic(target, b"ours")
    assert target.read_bytes() == b"theirs"
    assert _leftovers(tmp_path) == ["race.safetensors"]


def test_a_failing_writer_leaves_nothing_behind(tmp_path):
    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "x.bin", broken)
    assert _leftovers(tmp_path) == []


KILLED_WRITER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    import torch
    from hyperlora_core import save_lora
    from hyperlora_core.files import atomic
    real_fsync = os.fsync

    def stall(fd):  # every byte is written: signal the parent and wait to be killed
        real_fsync(fd)
        open({ready!r}, "w").close()
        time.sleep(60)
    atomic.os.fsync = stall
    lora = {{"lora_unet_x.lora_down.weight": torch.ones(8, 4096), "lora_unet_x.lora_up.weight": torch.ones(4096, 8),
             "lora_unet_x.alpha": torch.tensor(4.0)}}
    save_lora(lora, {target!r})
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_writer_killed_in_the_middle_leaves_no_file_under_the_final_name(tmp_path, sig):
    out = tmp_path / "out"
    out.mkdir()
    target, ready = out / "person.safetensors", tmp_path / "ready"
    script = KILLED_WRITER.format(root=str(ROOT), ready=str(ready), target=str(target))
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the writer exited before it was killed"
            assert time.monotonic() < deadline, "the writer never reached the end of its bytes"
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -sig
    assert not target.exists()
    # At most the hidden temporary file remains, and no loader lists it as a LoRA.
    assert all(name.startswith(".person.safetensors.") and name.endswith(".partial") for name in _leftovers(out))


def test_save_lora_writes_a_loadable_file(tmp_path):
    path = save_lora(_lora(), tmp_path / "me.safetensors")
    assert set(load_file(str(path))) == set(_lora())
    assert _leftovers(tmp_path) == ["me.safetensors"]


def test_missing_folder_and_parent_that_is_a_file(tmp_path):
    with pytest.raises(HyperLoRAError, match="folder .*nowhere does not exist; create it first"):
        save_lora(_lora(), tmp_path / "nowhere" / "me.safetensors")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HyperLoRAError, match="file is a file, not a folder"):
        save_lora(_lora(), tmp_path / "file" / "sub" / "me.safetensors")


def test_unwritable_folder_says_permission_not_unexpected(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: False)
    with pytest.raises(HyperLoRAError, match="no permission to write in the folder"):
        save_lora(_lora(), tmp_path / "me.safetensors")


@pytest.mark.parametrize("code, message", [
    (errno.ENOSPC, "the disk .* is full; free some space"),
    (errno.EFBIG, "file-size limit"),
    (errno.EACCES, "no permission to write"),
    (errno.EROFS, "read-only file system"),
])
def test_file_system_errors_while_writing_are_explained(tmp_path, monkeypatch, code, message):
    def fail(fd):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(atomic.os, "fsync", fail)
    with pytest.raises(HyperLoRAError, match=message + ".*Nothing was written under that name"):
        save_lora(_lora(), tmp_path / "me.safetensors")
    assert _leftovers(tmp_path) == []


def test_nul_byte_and_over_long_names_say_what_is_allowed(tmp_path):
    with pytest.raises(HyperLoRAError, match="NUL byte"):
        save_lora(_lora(), str(tmp_path / "bad\x00name.safetensors"))
    with pytest.raises(HyperLoRAError, match="at most 255 bytes per name"):
        save_lora(_lora(), tmp_path / ("n" * 300 + ".safetensors"))
    assert _leftovers(tmp_path) == []


def test_file_system_without_hard_links_still_refuses_to_overwrite(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(atomic.os, "link", no_links)
    target = tmp_path / "fat.bin"
    write_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    with pytest.raises(HyperLoRAError, match="already exists"):
        write_atomic(target, b"two")
    assert _leftovers(tmp_path) == ["fat.bin"]


def test_permissions_are_those_of_a_plain_open_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "shared.safetensors", b"x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
