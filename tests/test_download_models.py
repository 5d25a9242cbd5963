"""`python -m hyperlora_core download`: which files land in which folder of the models folder, what is
reused instead of fetched, and the models folder itself (download/models.py), against the fake Hub."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from download_harness import FIDELITY, ROOT, VARIANTS, expected_files, leftovers, one_line, run, run_process
from hyperlora_core.constants import HF_REPO_ID, RELEASE_FILES
from hyperlora_core.download.models import CLIP_REPO_ID


# --------------------------------------------------------------------------------------------
# What lands where


def test_every_file_lands_in_the_folder_comfyui_and_the_nodes_read(hub, models, capsys):
    code, out, err = run(capsys, "--models-dir", str(models), "--variant", "both")
    assert code == 0, err
    files = expected_files(models, VARIANTS)
    for path, (repo, name) in files.items():
        assert path.read_bytes() == hub.repos[repo][name], path
    assert sorted(p for p in models.rglob("*") if p.is_file()) == sorted(files)
    # Only what generate and the nodes read: no README, CLIP configs, .bin weights, unused face models.
    downloaded = {r[1].rsplit("/", 1)[-1] for r in hub.body_gets()}
    assert not downloaded & {"README.md", "config.json", "preprocessor_config.json", "pytorch_model.bin",
                             "1k3d68.onnx", "antelopev2.zip"}
    assert leftovers(models) == []


def test_second_run_downloads_nothing(hub, models, capsys):
    assert run(capsys, "--models-dir", str(models))[0] == 0
    before = len(hub.body_gets())
    code, out, err = run(capsys, "--models-dir", str(models))
    assert code == 0, err
    assert len(hub.body_gets()) == before
    assert "Nothing to download" in out


def test_release_in_the_reference_layout_is_not_fetched_again(hub, models, capsys):
    reference = models / "hyper_lora" / "hyper_lora" / FIDELITY
    reference.mkdir(parents=True)
    for name in RELEASE_FILES:
        (reference / name).write_bytes(hub.repos[HF_REPO_ID][f"{FIDELITY}/{name}"])
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 0, err
    assert hub.body_gets() == []
    assert not (models / "hyperlora").exists()
    assert str(reference) in out


@pytest.mark.parametrize("where", [("clip_vision", "clip-vit-large-patch14.safetensors"),
                                   ("hyper_lora", "clip_vit", "clip_vit_large_14", "model.safetensors")])
def test_clip_installed_by_comfyui_manager_or_the_reference_pack_is_reused(hub, models, capsys, where):
    present = models.joinpath(*where)
    present.parent.mkdir(parents=True)
    present.write_bytes(hub.repos[CLIP_REPO_ID]["model.safetensors"])
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "clip")
    assert code == 0, err
    assert hub.body_gets() == []
    assert str(present) in out


def test_dry_run_lists_what_would_go_where_and_downloads_nothing(hub, models, capsys):
    code, out, err = run(capsys, "--models-dir", str(models), "--dry-run")
    assert code == 0, err
    for path in expected_files(models):
        assert str(path) in out
    assert "CC BY-NC 4.0" in out and "non-commercial research" in out
    assert hub.body_gets() == []
    assert list(models.rglob("*")) == []


def test_licences_and_time_outs_are_printed_before_the_first_download(hub, models, capsys):
    code, out, _ = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 0
    assert out.index("HF_HUB_DOWNLOAD_TIMEOUT") < out.index("  downloading:")
    assert out.index("CC BY-NC 4.0") < out.index("  downloading:")


# --------------------------------------------------------------------------------------------
# The models folder


def test_missing_models_folder_is_created(hub, tmp_path, capsys):
    models = tmp_path / "new" / "models"
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "face")
    assert code == 0, err
    assert f"Created the models folder {models}" in out
    assert (models / "insightface" / "models" / "antelopev2" / "glintr100.onnx").is_file()


def test_without_models_dir_the_files_go_to_models_in_the_current_folder(hub, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "--only", "face")
    assert code == 0, err
    assert f"Models folder: {tmp_path / 'models'}" in out
    assert (tmp_path / "models" / "insightface" / "models" / "antelopev2" / "glintr100.onnx").is_file()


def test_inside_comfyui_custom_nodes_the_default_is_comfyuis_models_folder(tmp_path):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "models").mkdir(parents=True)
    pack = comfyui / "custom_nodes" / "hyperlora-studio"
    shutil.copytree(ROOT / "hyperlora_core", pack / "hyperlora_core", ignore=shutil.ignore_patterns("__pycache__"))
    code = "from hyperlora_core.download.models import default_models_dir; print(default_models_dir())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(pack)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(comfyui / "models")


def test_models_folder_under_a_file_is_reported_before_any_download(hub, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    code, _, err = run(capsys, "--models-dir", str(tmp_path / "a_file" / "models"))
    assert code == 1 and "is a file, not a folder" in one_line(err)
    assert hub.requests == []


def test_models_folder_that_cannot_be_created_says_so_before_any_download(hub, capsys):
    target = Path("/sys/hyperlora-test-models")
    try:
        target.mkdir()
    except PermissionError:
        pass
    else:
        target.rmdir()
        pytest.skip("/sys is writable here")
    code, _, err = run(capsys, "--models-dir", str(target))
    assert code == 1 and f"cannot write {target}" in one_line(err)
    assert "pass --models-dir a folder you can write to" in err
    assert hub.requests == []


def test_models_folder_without_write_permission_is_refused_before_any_download(hub):
    folder = Path(tempfile.mkdtemp(prefix="hls-readonly-"))
    try:
        folder.chmod(0o755)
        models = folder / "models"
        models.mkdir(mode=0o555)
        models.chmod(0o555)
        # Root may write anywhere: run the command as "nobody" then (the code it runs is world-readable).
        as_user = {"preexec_fn": lambda: os.setuid(65534)} if os.geteuid() == 0 else {}
        try:
            proc = run_process(hub.url, "--models-dir", str(models), "--only", "face", timeout=120, **as_user)
        except (subprocess.SubprocessError, PermissionError) as exc:
            pytest.skip(f"cannot run the command as another user here: {exc}")
        if "Permission denied" in proc.stderr and "hyperlora_core" not in proc.stderr:
            pytest.skip("the user 'nobody' cannot read the Python environment here")
        assert proc.returncode == 1, proc.stderr
        assert f"cannot write into the models folder {models}" in one_line(proc.stderr)
        assert hub.requests == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
