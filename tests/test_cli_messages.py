"""The command line's errors name the problem and end with the fix: a missing photo, a folder without
photos, a missing identity file, an --out folder that is a file, a file-size limit hit."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from checkpoints import make_release_folder
from hyperlora_core import IdentityFeatures, cli
from hyperlora_core.constants import VARIANTS

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *args) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return code, err


@pytest.fixture
def photo(tmp_path) -> Path:
    """A file that passes the photo listing (the errors below come before any photo is read)."""
    path = tmp_path / "me.png"
    path.write_bytes(b"\x89PNG")
    return path


def test_missing_photo_says_to_check_the_path(capsys, tmp_path):
    code, err = run(capsys, "generate", "--photos", tmp_path / "nope.jpg", "--out", tmp_path / "x.safetensors")
    assert code == 1
    assert f"photo not found: {tmp_path / 'nope.jpg'}; check the path" in err and "--photos" in err


def test_missing_picture_to_score_names_the_option(capsys, tmp_path, photo):
    code, err = run(capsys, "score", "--photos", photo, "--images", tmp_path / "nope.png")
    assert code == 1
    assert f"photo not found: {tmp_path / 'nope.png'}; check the path" in err and "given to --images" in err


@pytest.mark.parametrize("contents", [(), ("notes.txt", "list.csv")], ids=["empty", "text-files"])
def test_folder_without_photos_says_to_point_at_a_folder_of_photos(capsys, tmp_path, contents):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in contents:
        (folder / name).write_text("not a photo")
    code, err = run(capsys, "generate", "--photos", folder, "--out", tmp_path / "x.safetensors")
    assert code == 1
    assert f"the folder {folder} holds no photos (.jpg" in err
    assert err.rstrip().endswith("point --photos at a folder of photos, or name the photo files themselves")


@pytest.mark.parametrize("command", ["generate", "score"])
def test_missing_identity_file_says_to_check_the_path(capsys, tmp_path, photo, command):
    missing = tmp_path / "me_identity.safetensors"
    rest = ("--out", tmp_path / "x.safetensors") if command == "generate" else ("--images", photo)
    code, err = run(capsys, command, "--identity", missing, *rest)
    assert code == 1
    assert f"identity file not found: {missing}; check the path given to --identity" in err
    assert "--save-identity" in err


def test_out_folder_that_is_a_file_says_to_choose_another_folder(capsys, tmp_path, photo):
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" / "me.safetensors"
    code, err = run(capsys, "generate", "--photos", photo, "--out", out)
    assert code == 1
    assert f"the folder of --out {out} is a file, not a folder: {tmp_path / 'notes.txt'}" in err
    assert err.rstrip().endswith("choose another folder for --out")


def _file_size_limit(limit: int):
    """Lower the file-size limit (ulimit -f) of the command's own process: a write past it fails with EFBIG
    (SIGXFSZ ignored). Never in the test's process, whose output may go to a file larger than the limit."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return apply


def test_file_size_limit_says_to_raise_it_or_write_elsewhere(tmp_path):
    release = make_release_folder(tmp_path / VARIANTS[0], dim=64, depth=1, inner=64, hyper_dim=16, seed=5)
    identity = tmp_path / "me_identity.safetensors"
    arcface = torch.nn.functional.normalize(torch.randn(1, 512), dim=-1)
    IdentityFeatures(arcface=arcface, clip_tokens=torch.zeros(1, 257, 1024), sources=["me.png"]).save(identity)
    out = tmp_path / "me.safetensors"
    proc = subprocess.run([sys.executable, "-m", "hyperlora_core", "generate", "--identity", str(identity),
                           "--out", str(out), "--hyperlora", str(release)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, preexec_fn=_file_size_limit(4096))  # the LoRA is larger
    code, err = proc.returncode, proc.stderr
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert code == 1, err
    assert f"Cannot write {out}: the file is larger than this file system or the process's file-size limit " \
           "(ulimit -f)" in err
    assert "raise the limit (ulimit -f unlimited) or write to another disk" in err
    assert not out.exists() and not list(tmp_path.glob(".me.safetensors.*"))
