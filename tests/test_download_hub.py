"""Transfers through huggingface_hub (download/hub.py) against a fake Hub on 127.0.0.1 (tests/fake_hub.py):
where the bytes come from, damaged and wrong files, no network or a stalled one, a full disk."""

from __future__ import annotations

import resource
import signal
import socket

from download_harness import FIDELITY, QUICK, leftovers, one_line, run, run_process
from fake_hub import SilentServer
from hyperlora_core.constants import HF_REPO_ID
from hyperlora_core.download.models import ANTELOPEV2_REPO_ID
from hyperlora_core.download.hub import LISTING_TRIES, STAGING_FOLDER, TRANSFER_RECONNECTS


# --------------------------------------------------------------------------------------------
# Where the bytes come from


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
