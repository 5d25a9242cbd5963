"""`python -m hyperlora_core download` through huggingface_hub against a fake Hub on 127.0.0.1
(tests/fake_hub.py): what lands where, what is never fetched, faults of the network and of the disk."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fake_hub import FakeHub, SilentServer
from hyperlora_core import cli
from hyperlora_core.constants import ANTELOPEV2_FILES, HF_REPO_ID, RELEASE_FILES, VARIANTS
from hyperlora_core.download.models import ANTELOPEV2_REPO_ID, CLIP_REPO_ID
from hyperlora_core.download.hub import LISTING_TRIES, STAGING_FOLDER, TRANSFER_RECONNECTS

ROOT = Path(__file__).resolve().parent.parent
FIDELITY, EDIT = VARIANTS
# Short time-outs keep the stalled-endpoint tests quick; the bound they check is derived from them.
QUICK = {"HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}


def _blob(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _repos() -> dict[str, dict[str, bytes]]:
    hyper = {}
    for variant in VARIANTS:
        hyper[f"{variant}/hyper_lora_modules.json"] = json.dumps({"m": {"hidden_size": 8}}).encode()
        hyper[f"{variant}/hyper_lora_modules.safetensors"] = _blob(variant + "m", 96_000)
        hyper[f"{variant}/resampler.safetensors"] = _blob(variant + "r", 200_000)
        hyper[f"{variant}/id_projector.safetensors"] = _blob(variant + "p", 20_000)
    hyper["README.md"] = b"# HyperLoRA\n"
    return {
        HF_REPO_ID: hyper,
        CLIP_REPO_ID: {
            "config.json": b'{"model_type": "clip"}',
            "preprocessor_config.json": b'{"crop_size": 224}',
            "model.safetensors": _blob("clip", 150_000),
            "pytorch_model.bin": _blob("clip-bin", 1000),
        },
        ANTELOPEV2_REPO_ID: {
            **{name: _blob(name, 30_000) for name in ANTELOPEV2_FILES.values()},
            "1k3d68.onnx": _blob("3d", 5000),
            "antelopev2.zip": _blob("zip", 5000),
        },
    }


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub(_repos()).start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield fake
    fake.stop()


@pytest.fixture
def models(tmp_path) -> Path:
    folder = tmp_path / "ComfyUI" / "models"
    folder.mkdir(parents=True)
    return folder


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


def test_large_files_come_from_the_cdn_the_hub_redirects_to(hub, models, capsys):
    assert run(capsys, "--models-dir", str(models), "--only", "hyperlora")[0] == 0
    servers = {path.rsplit("/", 1)[-1]: server for server, path, _ in hub.body_gets()}
    assert servers["resampler.safetensors"] == "cdn" and servers["hyper_lora_modules.json"] == "hub"


def test_hf_token_goes_to_the_hub_and_not_to_the_cdn(hub, models, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert run(capsys, "--models-dir", str(models), "--only", "face")[0] == 0
    to_hub = {r[4] for r in hub.requests if r[1] == "hub"}
    to_cdn = {r[4] for r in hub.requests if r[1] == "cdn"}
    assert to_hub == {"Bearer hf_test_token"}
    assert to_cdn == {None}


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
# Wrong or damaged files


def test_dropped_connection_is_resumed_with_a_range_request(hub, models, capsys, monkeypatch):
    from huggingface_hub import constants, file_download

    # huggingface_hub hands on data in 10 MB chunks; small chunks let a 200 kB file be cut mid-way.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 10_000)
    monkeypatch.setattr(file_download, "DOWNLOAD_CHUNK_SIZE", 10_000, raising=False)  # < 0.21 copies it
    name = f"{FIDELITY}/resampler.safetensors"
    hub.interrupt_once[name] = 70_000
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 0, err
    assert (models / "hyperlora" / FIDELITY / "resampler.safetensors").read_bytes() == hub.repos[HF_REPO_ID][name]
    assert [r[2] for r in hub.body_gets() if r[1].endswith("resampler.safetensors")] == [None, "bytes=70000-"]
    assert "huggingface_hub: " in out and "resume" in out  # the reconnect is shown, on one line
    assert leftovers(models) == []


def test_wrong_size_is_caught_and_nothing_is_left_under_the_final_name(hub, models, capsys):
    name = f"{FIDELITY}/resampler.safetensors"
    hub.serve_instead[name] = hub.repos[HF_REPO_ID][name][:-1000]
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 1
    assert "resampler.safetensors" in one_line(err) and "200000" in err and "199000" in err
    folder = models / "hyperlora" / FIDELITY
    assert not (folder / "resampler.safetensors").exists()
    assert not (folder / "hyper_lora_modules.json").exists()  # the folder does not look complete
    assert not [p for p in models.rglob("*.safetensors") if p.name == "resampler.safetensors"]


def test_same_size_but_wrong_content_is_caught(hub, models, capsys):
    name = "glintr100.onnx"
    hub.serve_instead[name] = b"x" * len(hub.repos[ANTELOPEV2_REPO_ID][name])
    code, _, err = run(capsys, "--models-dir", str(models), "--only", "face")
    assert code == 1
    assert "glintr100.onnx" in one_line(err) and "hash" in err
    assert not [p for p in models.rglob(name)]


def test_file_of_the_wrong_size_in_place_is_replaced(hub, models, capsys):
    target = models / "insightface" / "models" / "antelopev2" / "2d106det.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "face")
    assert code == 0, err
    assert "will replace" in out
    assert target.read_bytes() == hub.repos[ANTELOPEV2_REPO_ID]["2d106det.onnx"]


def test_verify_rehashes_files_in_place(hub, models, capsys):
    assert run(capsys, "--models-dir", str(models), "--only", "face")[0] == 0
    target = models / "insightface" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx"
    target.write_bytes(b"y" * target.stat().st_size)  # same size, damaged
    assert run(capsys, "--models-dir", str(models), "--only", "face")[0] == 0
    assert target.read_bytes() != hub.repos[ANTELOPEV2_REPO_ID]["scrfd_10g_bnkps.onnx"]
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "face", "--verify")
    assert code == 0, err
    assert target.read_bytes() == hub.repos[ANTELOPEV2_REPO_ID]["scrfd_10g_bnkps.onnx"]


def test_listing_that_is_not_the_hubs_json_is_named(hub, models, capsys):
    hub.listing_instead = b"<html><body>Please log in to the guest Wi-Fi</body></html>"
    code, _, err = run(capsys, "--models-dir", str(models), "--only", "face")
    assert code == 1
    assert "did not answer the listing of DIAMONIK7777/antelopev2 as the Hugging Face Hub does" in one_line(err)
    assert "HF_ENDPOINT" in err


def test_missing_file_in_the_repository_is_reported(hub, models, capsys):
    del hub.repos[ANTELOPEV2_REPO_ID]["glintr100.onnx"]
    code, _, err = run(capsys, "--models-dir", str(models), "--only", "face")
    assert code == 1 and "has no file glintr100.onnx" in one_line(err)


# --------------------------------------------------------------------------------------------
# No network, a stalled network


def test_offline_mode_names_what_is_missing_and_how_to_get_it(hub, models, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "--models-dir", str(models))
    assert code == 1
    assert "offline" in one_line(err) and "HF_HUB_OFFLINE" in err
    assert "resampler.safetensors" in err and "glintr100.onnx" in err
    assert f"https://huggingface.co/{HF_REPO_ID}" in err and str(models / "hyperlora" / FIDELITY) in err
    assert hub.requests == []


def test_offline_mode_with_everything_in_place_succeeds(hub, models, capsys, monkeypatch):
    assert run(capsys, "--models-dir", str(models))[0] == 0
    count = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "--models-dir", str(models))
    assert code == 0, err
    assert len(hub.requests) == count


def test_first_run_without_network_creates_the_folder_and_says_only_the_network_is_missing(tmp_path, capsys,
                                                                                           monkeypatch):
    """README's first command on a machine without ComfyUI, and without network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys)
    assert code == 1
    assert "could not reach" in one_line(err) and f"https://huggingface.co/{ANTELOPEV2_REPO_ID}" in err
    assert f"trying again in 1 s (try 2 of {LISTING_TRIES})" in out
    assert (tmp_path / "models").is_dir() and list((tmp_path / "models").rglob("*")) == []


def test_endpoint_that_accepts_and_never_answers_fails_within_the_time_outs(models):
    silent = SilentServer()
    # The listing is tried LISTING_TRIES times, HF_HUB_ETAG_TIMEOUT each, with 1 s, 2 s... between.
    bound = LISTING_TRIES * float(QUICK["HF_HUB_ETAG_TIMEOUT"]) + 2 ** LISTING_TRIES
    try:
        proc = run_process(silent.url, "--models-dir", str(models), "--only", "face", env=QUICK,
                           timeout=bound + 60)  # + start-up of Python and torch
    finally:
        silent.close()
    assert proc.returncode == 1, proc.stderr
    err = one_line(proc.stderr)
    assert "no answer from" in err and "HF_HUB_ETAG_TIMEOUT" in err and "glintr100.onnx" in err
    assert proc.stdout.count("trying again") == LISTING_TRIES - 1
    assert list(models.rglob("*")) == []


def test_transfer_that_stalls_midway_fails_within_the_time_outs_and_leaves_no_partial_file(hub, models):
    name = f"{FIDELITY}/resampler.safetensors"
    hub.stall_after[name] = 50_000
    # huggingface_hub reconnects TRANSFER_RECONNECTS times, HF_HUB_DOWNLOAD_TIMEOUT each, 1 s apart.
    bound = (TRANSFER_RECONNECTS + 1) * (float(QUICK["HF_HUB_DOWNLOAD_TIMEOUT"]) + 1)
    proc = run_process(hub.url, "--models-dir", str(models), "--only", "hyperlora", env=QUICK, timeout=bound + 60)
    assert proc.returncode == 1, proc.stderr
    err = one_line(proc.stderr)
    assert "resampler.safetensors: download stopped" in err and "HF_HUB_DOWNLOAD_TIMEOUT" in err
    assert "run the same command again" in err
    assert "huggingface_hub: " in proc.stdout  # the reconnects were shown as they happened
    folder = models / "hyperlora" / FIDELITY
    assert not (folder / "resampler.safetensors").exists()
    assert not (folder / "hyper_lora_modules.json").exists()
    assert (folder / "hyper_lora_modules.safetensors").is_file()  # what was complete is kept
    # The next run fetches what is missing.
    del hub.stall_after[name]
    proc = run_process(hub.url, "--models-dir", str(models), "--only", "hyperlora", env=QUICK, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "resampler.safetensors").read_bytes() == hub.repos[HF_REPO_ID][name]
    assert leftovers(models) == []


# --------------------------------------------------------------------------------------------
# The disk


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_is_reported_as_such_not_as_a_transfer_fault(hub, models):
    proc = run_process(hub.url, "--models-dir", str(models), "--only", "hyperlora", timeout=120,
                       preexec_fn=_file_size_limit(50_000))
    assert proc.returncode == 1, proc.stderr
    err = one_line(proc.stderr)
    assert "disk is full (or a file-size limit was hit)" in err and "free some space" in err
    assert "download stopped" not in err
    assert not [p for p in models.rglob("*.safetensors") if STAGING_FOLDER not in p.parts]


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


# --------------------------------------------------------------------------------------------
# Usage


def test_unknown_variant_is_bad_usage(models, capsys):
    code, _, err = run(capsys, "--models-dir", str(models), "--variant", "best")
    assert code == 2 and "--variant" in one_line(err)


def test_module_entry_point_honours_hf_endpoint(hub, models):
    proc = run_process(hub.url, "--models-dir", str(models), "--only", "face", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (models / "insightface" / "models" / "antelopev2" / "glintr100.onnx").is_file()


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
