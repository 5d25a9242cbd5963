"""`python -m hyperlora_core download` against a small fake Hugging Face Hub on 127.0.0.1.

The fake hub answers the calls huggingface_hub makes: the repository listing
(`GET /api/models/{repo}/revision/{rev}?blobs=true`), `HEAD /{repo}/resolve/{rev}/{path}` (ETag,
X-Repo-Commit, Content-Length; large files redirect to a "CDN" address with X-Linked-Size and
X-Linked-Etag, as the real Hub does) and `GET` with `Range` for resuming.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hyperlora_core import cli
from hyperlora_core.constants import ANTELOPEV2_FILES, HF_REPO_ID, RELEASE_FILES, VARIANTS
from hyperlora_core.download import ANTELOPEV2_REPO_ID, CLIP_REPO_ID

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FIDELITY, EDIT = VARIANTS


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


def _is_lfs(path: str) -> bool:
    return not path.endswith((".json", ".md"))


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]]
    url: str = ""
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    # path in repo -> bytes to send instead of the real content (a broken mirror)
    serve_instead: dict[str, bytes] = field(default_factory=dict)
    # path in repo -> send only this many bytes of the next GET, then drop the connection
    interrupt_once: dict[str, int] = field(default_factory=dict)

    def body_gets(self) -> list[tuple[str, str, str | None]]:
        """File downloads (GET of file content), not listings or HEAD calls."""
        return [r for r in self.requests if r[0] == "GET" and not r[1].startswith("/api/")]

    def find(self, url_path: str) -> tuple[str, str] | None:
        """(repo, path) for /{repo}/resolve/{rev}/{path} or /cdn/{repo}/{path}."""
        for repo in self.repos:
            for prefix in (f"/{repo}/resolve/{COMMIT}/", f"/{repo}/resolve/main/", f"/cdn/{repo}/"):
                if url_path.startswith(prefix):
                    return repo, url_path[len(prefix):]
        return None


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _listing(self, repo: str) -> None:
            siblings = []
            for path, data in hub.repos[repo].items():
                entry = {"rfilename": path, "size": len(data), "blobId": _git_sha1(data)}
                if _is_lfs(path):
                    entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 130}
                siblings.append(entry)
            body = json.dumps({
                "_id": "0" * 24, "id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": COMMIT,
                "private": False, "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                "createdAt": "2025-03-20T00:00:00.000Z", "lastModified": "2025-03-20T00:00:00.000Z",
                "siblings": siblings,
            }).encode()
            self._send(200, body, {"Content-Type": "application/json"})

        def do_HEAD(self) -> None:
            self._file(head=True)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            for repo in hub.repos:
                if path in (f"/api/models/{repo}/revision/main", f"/api/models/{repo}"):
                    hub.requests.append(("GET", path, None))
                    return self._listing(repo)
            self._file(head=False)

        def _file(self, head: bool) -> None:
            path = self.path.split("?")[0]
            hub.requests.append(("HEAD" if head else "GET", path, self.headers.get("Range")))
            found = hub.find(path)
            if found is None or found[1] not in hub.repos[found[0]]:
                return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, head)
            repo, name = found
            data = hub.repos[repo][name]
            lfs = _is_lfs(name)
            sha = hashlib.sha256(data).hexdigest()
            common = {"X-Repo-Commit": COMMIT, "Accept-Ranges": "bytes"}
            if head and lfs and not path.startswith("/cdn/"):
                # Large files: the Hub redirects to its CDN and names the real size and hash.
                return self._send(
                    302,
                    b"",
                    {**common, "Location": f"{hub.url}/cdn/{repo}/{name}", "X-Linked-Size": str(len(data)),
                     "X-Linked-Etag": f'"{sha}"', "ETag": '"pointer-etag"'},
                    head,
                )
            etag = sha if lfs else _git_sha1(data)
            body = hub.serve_instead.get(name, data)
            headers = {**common, "ETag": f'"{etag}"'}
            start = 0
            rng = self.headers.get("Range")
            if rng and not head:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            part = body[start:]
            cut = None if head else hub.interrupt_once.pop(name, None)
            if cut is None:
                return self._send(206 if rng and not head else 200, part, headers, head)
            # Announce the whole file, send a piece, drop the connection.
            self.send_response(206 if rng else 200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            self.wfile.write(part[:cut])
            self.wfile.flush()
            time.sleep(0.3)  # let the client take in what came before the line drops
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub(_repos())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    server.timeout = 5
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def models(tmp_path) -> Path:
    folder = tmp_path / "ComfyUI" / "models"
    folder.mkdir(parents=True)
    return folder


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["download", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expected_files(models: Path, variants=(FIDELITY,)) -> dict[Path, tuple[str, str]]:
    """Final path -> (repo, path in repo)."""
    out = {}
    for variant in variants:
        for name in RELEASE_FILES:
            out[models / "hyperlora" / variant / name] = (HF_REPO_ID, f"{variant}/{name}")
    clip_folder = models / "hyper_lora" / "clip_vit" / "clip_vit_large_14"
    out[clip_folder / "config.json"] = (CLIP_REPO_ID, "config.json")
    out[clip_folder / "model.safetensors"] = (CLIP_REPO_ID, "model.safetensors")
    out[models / "clip_vision" / "clip-vit-large-patch14.safetensors"] = (CLIP_REPO_ID, "model.safetensors")
    processor = models / "hyper_lora" / "clip_processor" / "clip_vit_large_14_processor"
    out[processor / "preprocessor_config.json"] = (CLIP_REPO_ID, "preprocessor_config.json")
    for name in ANTELOPEV2_FILES.values():
        out[models / "insightface" / "models" / "antelopev2" / name] = (ANTELOPEV2_REPO_ID, name)
    return out


def leftovers(models: Path) -> list[Path]:
    return sorted(p for p in models.rglob("*") if p.name.endswith(".incomplete"))


# --------------------------------------------------------------------------------------------


def test_every_file_lands_in_the_folder_comfyui_and_the_nodes_read(hub, models, capsys):
    code, out, err = run(capsys, "--models-dir", str(models), "--variant", "both")
    assert code == 0, err
    for path, (repo, name) in expected_files(models, VARIANTS).items():
        assert path.read_bytes() == hub.repos[repo][name], path
    # Only what is used: not the README, the .bin weights, the unused face models or the zip.
    downloaded = {r[1].rsplit("/", 1)[-1] for r in hub.body_gets()}
    assert not downloaded & {"README.md", "pytorch_model.bin", "1k3d68.onnx", "antelopev2.zip"}
    assert leftovers(models) == []


def test_clip_weights_are_stored_once_under_both_names(hub, models, capsys):
    code, _, err = run(capsys, "--models-dir", str(models), "--only", "clip")
    assert code == 0, err
    vision = models / "clip_vision" / "clip-vit-large-patch14.safetensors"
    hf_copy = models / "hyper_lora" / "clip_vit" / "clip_vit_large_14" / "model.safetensors"
    assert os.path.samefile(vision, hf_copy)
    assert len([r for r in hub.body_gets() if r[1].endswith("model.safetensors")]) == 1


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


def test_clip_file_installed_by_comfyui_manager_is_reused(hub, models, capsys):
    vision = models / "clip_vision" / "clip-vit-large-patch14.safetensors"
    vision.parent.mkdir()
    vision.write_bytes(hub.repos[CLIP_REPO_ID]["model.safetensors"])
    code, _, err = run(capsys, "--models-dir", str(models), "--only", "clip")
    assert code == 0, err
    assert not [r for r in hub.body_gets() if r[1].endswith("model.safetensors")]
    assert os.path.samefile(vision, models / "hyper_lora" / "clip_vit" / "clip_vit_large_14" / "model.safetensors")


def test_dropped_connection_is_resumed_with_a_range_request(hub, models, capsys, monkeypatch):
    from huggingface_hub import constants, file_download

    # huggingface_hub hands on data in 10 MB chunks; small chunks let a 200 kB file be cut mid-way.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 10_000)
    monkeypatch.setattr(file_download, "DOWNLOAD_CHUNK_SIZE", 10_000, raising=False)  # < 0.21 copies it
    name = f"{FIDELITY}/resampler.safetensors"
    hub.interrupt_once[name] = 70_000
    code, _, err = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 0, err
    final = models / "hyperlora" / FIDELITY / "resampler.safetensors"
    assert final.read_bytes() == hub.repos[HF_REPO_ID][name]
    ranges = [r[2] for r in hub.body_gets() if r[1].endswith("resampler.safetensors")]
    assert ranges == [None, "bytes=70000-"]
    assert leftovers(models) == []


def test_partial_file_of_an_earlier_run_is_resumed(hub, models, capsys):
    name = f"{FIDELITY}/resampler.safetensors"
    data = hub.repos[HF_REPO_ID][name]
    partial = models / "hyperlora" / FIDELITY / "resampler.safetensors.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:50_000])
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "hyperlora", "--dry-run")
    assert code == 0 and "will resume at 50,000 B" in out
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 0, err
    assert (models / "hyperlora" / FIDELITY / "resampler.safetensors").read_bytes() == data
    assert [r[2] for r in hub.body_gets() if r[1].endswith("resampler.safetensors")] == ["bytes=50000-"]
    assert leftovers(models) == []


def test_damaged_partial_file_is_downloaded_again_in_full(hub, models, capsys):
    name = f"{FIDELITY}/resampler.safetensors"
    partial = models / "hyperlora" / FIDELITY / "resampler.safetensors.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 50_000)
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 0, err
    assert (models / "hyperlora" / FIDELITY / "resampler.safetensors").read_bytes() == hub.repos[HF_REPO_ID][name]
    assert [r[2] for r in hub.body_gets() if r[1].endswith("resampler.safetensors")] == ["bytes=50000-", None]


def test_wrong_size_is_caught_and_nothing_is_left_under_the_final_name(hub, models, capsys):
    name = f"{FIDELITY}/resampler.safetensors"
    hub.serve_instead[name] = hub.repos[HF_REPO_ID][name][:-1000]
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "resampler.safetensors" in err and "200,000" in err and "199,000" in err
    folder = models / "hyperlora" / FIDELITY
    assert not (folder / "resampler.safetensors").exists()
    assert not (folder / "hyper_lora_modules.json").exists()  # the folder does not look complete
    assert leftovers(models) == []


def test_same_size_but_wrong_content_is_caught(hub, models, capsys):
    name = "glintr100.onnx"
    hub.serve_instead[name] = b"x" * len(hub.repos[ANTELOPEV2_REPO_ID][name])
    code, _, err = run(capsys, "--models-dir", str(models), "--only", "face")
    assert code == 1
    assert "glintr100.onnx" in err and "hash" in err
    assert not (models / "insightface" / "models" / "antelopev2" / name).exists()


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


def test_dry_run_lists_what_would_go_where_and_downloads_nothing(hub, models, capsys):
    code, out, err = run(capsys, "--models-dir", str(models), "--dry-run")
    assert code == 0, err
    for path in expected_files(models):
        assert str(path) in out
    assert "CC BY-NC 4.0" in out and "non-commercial research" in out
    assert hub.body_gets() == []
    assert [p for p in models.rglob("*")] == []


def test_licences_are_printed_before_the_first_download(hub, models, capsys):
    code, out, _ = run(capsys, "--models-dir", str(models), "--only", "hyperlora")
    assert code == 0
    assert out.index("CC BY-NC 4.0") < out.index("  downloading:")


def test_offline_mode_names_what_is_missing_and_how_to_get_it(hub, models, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "--models-dir", str(models))
    assert code == 1
    assert err.count("\n") == 1
    assert "offline" in err and "HF_HUB_OFFLINE" in err
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


def test_unreachable_hub_gives_one_line_with_the_manual_alternative(models, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    code, out, err = run(capsys, "--models-dir", str(models), "--only", "face")
    assert code == 1
    assert err.count("\n") == 1
    assert "could not reach" in err and f"https://huggingface.co/{ANTELOPEV2_REPO_ID}" in err


def test_missing_file_in_the_repository_is_reported(hub, models, capsys):
    del hub.repos[ANTELOPEV2_REPO_ID]["glintr100.onnx"]
    code, _, err = run(capsys, "--models-dir", str(models), "--only", "face")
    assert code == 1 and "has no file glintr100.onnx" in err


def test_models_dir_that_does_not_exist_is_bad_usage(tmp_path, capsys):
    code, _, err = run(capsys, "--models-dir", str(tmp_path / "nope"))
    assert code == 2 and err.count("\n") == 1 and "is not a folder" in err


def test_unknown_variant_is_bad_usage(models, capsys):
    code, _, err = run(capsys, "--models-dir", str(models), "--variant", "best")
    assert code == 2 and err.count("\n") == 1 and "--variant" in err


def test_module_entry_point_honours_hf_endpoint(hub, models):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "NO_PROXY": "127.0.0.1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hyperlora_core", "download", "--models-dir", str(models), "--only", "face"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (models / "insightface" / "models" / "antelopev2" / "glintr100.onnx").is_file()
